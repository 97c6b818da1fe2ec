"""One local Spark session for the whole run, and small shared fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Spark's Python workers must run this interpreter (the system one lacks pyarrow).
os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skol-annotated"


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("skol_spark-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.python.worker.reuse", "true")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def train_df(spark):
    from skol_spark.datasets import make_synthetic_documents

    return make_synthetic_documents(spark, num_docs=40, mean_length=60, num_features=8, seed=1).cache()


@pytest.fixture(scope="session")
def test_df(spark):
    from skol_spark.datasets import make_synthetic_documents

    return make_synthetic_documents(spark, num_docs=12, mean_length=60, num_features=8, seed=2).cache()


TINY = dict(windowSize=16, hiddenSize=8, numLayers=1, dropout=0.0, epochs=3, learningRate=0.01, seed=3)


@pytest.fixture(scope="session")
def tiny_params():
    return dict(TINY)


@pytest.fixture(scope="session")
def fitted(train_df, tiny_params):
    from skol_spark import BiLSTMClassifier

    return BiLSTMClassifier(validationFraction=0.2, **tiny_params).fit(train_df)
