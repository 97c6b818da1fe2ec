"""Models saved by earlier versions of skol_spark still load and predict the same.

``tests/fixtures/model_format1`` was written by ``model.write().save()`` at
format version 1 (before the TrainedNetwork step, issue 13); the ``.npz``
beside it holds the input rows and the probabilities that version predicted.
"""

from pathlib import Path

import numpy as np
import pytest
from pyspark.ml.functions import array_to_vector

from skol_spark import BiLSTMClassificationModel

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.connect
def test_format1_directory_loads_and_predicts_as_recorded(spark):
    recorded = np.load(FIXTURES / "model_format1_predictions.npz")
    model = BiLSTMClassificationModel.load(str(FIXTURES / "model_format1"))
    assert model.labels_ == ["Misc-exposition", "Nomenclature", "Description"]
    rows = [
        (str(d), int(p), [float(x) for x in f])
        for d, p, f in zip(recorded["doc_id"], recorded["line_number"], recorded["features"])
    ]
    df = spark.createDataFrame(rows, "doc_id string, line_number int, features array<double>")
    df = df.withColumn("features", array_to_vector("features"))
    out = model.transform(df).orderBy("doc_id", "line_number").collect()
    probs = np.array([r.probability.toArray() for r in out])
    np.testing.assert_allclose(probs, recorded["probability"], atol=1e-5)
    assert [r.prediction for r in out] == list(recorded["probability"].argmax(axis=1).astype(float))
