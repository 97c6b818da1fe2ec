"""Executors whose Python cannot import skol_spark: the error is skol_spark's own, at the action.

A fast test unpickles and calls the shipped function in an interpreter without
skol_spark (``conftest.python_without_skol_spark``), as a Python worker would;
a slow one runs a local[2] session whose workers run that interpreter, through
``transform`` and a ``numWorkers=2`` fit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import python_without_skol_spark

ROOT = Path(__file__).resolve().parents[1]
FIXES = ("PYSPARK_PYTHON", "spark.pyspark.python", "--py-files", "addPyFile")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_PYTHON")}


def test_the_shipped_function_unpickles_without_skol_spark_and_names_the_interpreter_and_the_fixes(tmp_path):
    from collections.abc import Iterator

    import pyarrow as pa
    from conftest import small_model
    from pyspark import cloudpickle

    from skol_spark.compat.executors import on_executors

    spec = small_model()._predict_spec()
    shipped = on_executors("skol_spark.transform.udf", "label_arrow_batches", spec,
                           types=(Iterator[pa.Array], Iterator[pa.Array]))
    (tmp_path / "udf.pickle").write_bytes(cloudpickle.dumps(shipped))
    python = python_without_skol_spark(tmp_path)
    script = (
        "import pickle, sys\n"
        "run = pickle.load(open('udf.pickle', 'rb'))\n"  # what a worker does first: no skol_spark needed
        "try:\n    list(run(iter([])))\n"
        "except ModuleNotFoundError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert message.startswith("skol_spark cannot be imported on the executors: No module named 'skol_spark'")
    assert f"The executors run Python {tmp_path / 'python3-without-skol'} (" in message
    assert f"the driver runs {sys.executable}" in message
    assert all(fix in message for fix in FIXES), message


def test_the_shipped_function_runs_its_entry_point_where_skol_spark_imports():
    from pyspark import cloudpickle

    from skol_spark.compat.executors import on_executors

    shipped = cloudpickle.loads(cloudpickle.dumps(on_executors("skol_spark.core.windows", "window_index", 4, 4)))
    starts, lengths, _ = shipped([5])  # window_index([5], 4, 4)
    assert list(starts) == [0, 1] and list(lengths) == [4, 4]


# Runs in its own process: PYSPARK_PYTHON must name the workers' interpreter before the JVM starts.
_JOB = """
import json, os, sys
sys.path.insert(0, {tests!r})
from pyspark.sql import SparkSession
from conftest import small_model
from skol_spark import BiLSTMClassifier
from skol_spark.skol.datasets import make_synthetic_documents

os.environ["PYSPARK_PYTHON"] = {python!r}  # importing conftest pointed it at the test's interpreter

spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
spark.sparkContext.setLogLevel("OFF")
df = make_synthetic_documents(spark, num_docs=4, mean_length=20, num_features=8).cache()
df.count()
tracker = spark.sparkContext.statusTracker()
before = len(tracker.getJobIdsForGroup())
labelled = small_model().transform(df)
after_transform = len(tracker.getJobIdsForGroup())
out = {{"jobs_before": before, "jobs_after_transform": after_transform}}
try:
    labelled.collect()
except Exception as exc:
    out["transform"] = [type(exc).__name__, str(exc)]
try:
    BiLSTMClassifier(numWorkers=2, windowSize=8, hiddenSize=4, numLayers=1, epochs=1).fit(df)
except Exception as exc:
    out["fit"] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_local_workers_without_skol_spark_fail_transform_and_fit_with_skol_sparks_error(tmp_path):
    python = python_without_skol_spark(tmp_path)
    env = {**_env(), "PYSPARK_PYTHON": str(python), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", _JOB.format(tests=str(ROOT / "tests"), python=str(python))], capture_output=True, text=True,
        cwd=tmp_path, env=env, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["jobs_after_transform"] == out["jobs_before"]  # transform stayed lazy
    kind, message = out["transform"]
    assert kind == "PythonException"
    last = message.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: skol_spark cannot be imported on the executors"), message
    assert str(tmp_path / "python3-without-skol") in last and all(fix in last for fix in FIXES), last
    assert "\tat org.apache.spark" not in message and "JVM stacktrace" not in message
    kind, message = out["fit"]
    assert kind == "DistributedTrainingError"
    assert message.startswith("skol_spark cannot be imported on the executors: No module named 'skol_spark'")
    assert str(tmp_path / "python3-without-skol") in message and "\n" not in message
