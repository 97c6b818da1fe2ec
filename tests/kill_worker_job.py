"""Run by ``tests/test_faults.py`` in a Spark of its own: a task may fail once there.

``local[1,2]``: one core, so one task runs at a time, and ``spark.task.maxFailures``
is 2 (the test session's ``local[2]`` allows no retry). The job labels
documents with a plain Python UDF downstream of the labeling UDF, in the same
stage and task, that SIGKILLs the Python worker running the
network (the worker with TensorFlow loaded) on task attempt 0 of partition 0,
while that worker is still streaming the partition. Spark retries the task;
the test compares the output with a clean run's.
The model is the one saved at ``argv[1]``; the output goes to ``argv[2]`` as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys

os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _kill_the_labeler(marker: str):
    from pyspark import TaskContext
    from pyspark.sql import functions as F

    def kill(prediction):
        context = TaskContext.get()
        if context.attemptNumber() == 0 and context.partitionId() == 0 and not os.path.exists(marker):
            import psutil

            jvm = psutil.Process(os.getppid()).parent()  # this worker <- pyspark daemon <- JVM
            labelers = []
            for process in jvm.children(recursive=True):
                try:
                    with open(f"/proc/{process.pid}/maps") as maps:
                        if "tensorflow" in maps.read():
                            labelers.append(process.pid)
                except OSError:
                    pass
            with open(marker, "w") as out:
                json.dump({"killed": labelers}, out)
            for pid in labelers:
                os.kill(pid, signal.SIGKILL)
        return prediction

    return F.udf(kill, "double")


def main(model_path: str, out_path: str) -> None:
    from conftest import jvm_documents
    from pyspark.sql import SparkSession

    from skol_spark import BiLSTMClassificationModel

    spark = (
        SparkSession.builder.master("local[1,2]")
        .appName("skol_spark-kill-worker")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "64")
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("OFF")
    model = BiLSTMClassificationModel.load(model_path)
    df = jvm_documents(spark, 4000, 2000)
    marker = out_path + ".killed"
    kill = _kill_the_labeler(marker)

    out = model.transform(df).withColumn("prediction", kill("prediction"))
    rows = out.select("doc_id", "line_number", "prediction", "probability").collect()
    with open(marker) as f:
        killed = json.load(f)["killed"]
    with open(out_path, "w") as f:
        json.dump({"killed": killed, "rows": [[r.doc_id, r.line_number, r.prediction, *r.probability] for r in rows]}, f)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
