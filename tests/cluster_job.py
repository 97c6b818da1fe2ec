"""Run by tests/test_local_cluster.py through spark-submit: fit and transform on a
local-cluster whose driver and executors get skol_spark only from a zip, shipped
by --py-files or, when the zip is given after the output path, by addPyFile in
this session; writes JSON stats to the first argument.

With ``--distributed``, the same job then fits numWorkers=2 (the cluster's two
1-core executors run the two ranks in two executor JVMs) and labels with that
model, so one cluster start checks both the driver and the data-parallel fit.
"""

import json
import logging
import os
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

distributed = "--distributed" in sys.argv[1:]
args = [a for a in sys.argv[1:] if a != "--distributed"]
spark = SparkSession.builder.getOrCreate()
if len(args) > 1:
    spark.sparkContext.addPyFile(args[1])  # also puts it on this driver's sys.path

import skol_spark  # noqa: E402
from skol_spark import BiLSTMClassifier  # noqa: E402
from skol_spark.skol.datasets import make_synthetic_documents  # noqa: E402

train = make_synthetic_documents(spark, num_docs=20, mean_length=40, num_features=8, seed=1)
model = BiLSTMClassifier(windowSize=16, hiddenSize=8, numLayers=1, epochs=1, seed=3, ensembleSize=1).fit(train)
digest = model.trainedNetwork.digest
spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "40")
labelled = model.transform(train.repartition(8, "doc_id")).agg(F.count("prediction")).first()[0]


def report(frames):
    import pandas as pd

    import skol_spark as package
    from skol_spark.transform import predict

    for _ in frames:
        pass
    yield pd.DataFrame(
        {
            "executor": [os.path.basename(os.getcwd())],
            "pid": [os.getpid()],
            "builds": [predict.build_count(digest)],
            "package": [package.__file__],
        }
    )


stats = spark.range(0, 64, 1, 32).mapInPandas(report, "executor string, pid long, builds long, package string")
result = {
    "rows": train.count(),
    "labelled": labelled,
    "driver_package": skol_spark.__file__,
    "workers": [r.asDict() for r in stats.collect()],
}


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


if distributed:
    lines = Lines()
    logging.getLogger("skol_spark").addHandler(lines)
    logging.getLogger("skol_spark").setLevel(logging.INFO)
    parallel = BiLSTMClassifier(windowSize=16, hiddenSize=8, numLayers=1, epochs=2, seed=3, ensembleSize=1,
                                 numWorkers=2).fit(train)
    result["distributed"] = {
        "labelled": parallel.transform(train).agg(F.count("prediction")).first()[0],
        "history": parallel.history,
        "lines": lines.lines,
    }
with open(args[0], "w") as out:
    json.dump(result, out)
spark.stop()
