"""Run by tests/test_distributed.py through spark-submit: a numWorkers=2 fit on a local-cluster
of two 1-core executors (so the two ranks run in two executor JVMs), then a transform; prints JSON."""

import json
import logging
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import skol_spark
from skol_spark import BiLSTMClassifier
from skol_spark.skol.datasets import make_synthetic_documents


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


lines = Lines()
logging.getLogger("skol_spark").addHandler(lines)
logging.getLogger("skol_spark").setLevel(logging.INFO)
spark = SparkSession.builder.getOrCreate()
train = make_synthetic_documents(spark, num_docs=20, mean_length=40, num_features=8, seed=1)
model = BiLSTMClassifier(windowSize=16, hiddenSize=8, numLayers=1, epochs=2, seed=3, numWorkers=2).fit(train)
labelled = model.transform(train).agg(F.count("prediction")).first()[0]
with open(sys.argv[1], "w") as out:
    json.dump(
        {
            "rows": train.count(),
            "labelled": labelled,
            "history": model.history,
            "lines": lines.lines,
            "driver_package": skol_spark.__file__,
        },
        out,
    )
spark.stop()
