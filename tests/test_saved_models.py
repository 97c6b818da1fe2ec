"""Models saved by skol_spark 0.1 load, in every form, and predict what they predicted then.

``tests/fixtures/saved_0_1`` was written by ``tests/fixtures/make_saved_models.py``
at the commit its ``SAVED_BY.json`` names: softmax, ensemble and CRF networks as
model directories, inside PipelineModels, as Redis hashes and as Keras files,
an estimator directory holding an initialModel, and a text PipelineModel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SAVED = Path(__file__).parent / "fixtures" / "saved_0_1"
KINDS = ("softmax", "ensemble", "crf")
LABELS = ["Misc-exposition", "Nomenclature", "Description"]


@pytest.fixture(scope="module")
def expected():
    with np.load(SAVED / "expected.npz") as recorded:
        return {name: recorded[name] for name in recorded.files}


@pytest.fixture(scope="module")
def rows(spark):
    from pyspark.ml.functions import array_to_vector

    with np.load(SAVED / "rows.npz") as saved:
        data = list(zip(
            saved["doc_id"].tolist(), saved["line_number"].tolist(), saved["label"].tolist(),
            saved["text"].tolist(), saved["features"].tolist(),
        ))
    df = spark.createDataFrame(
        [(d, int(p), float(y), LABELS[int(y)], t, f) for d, p, y, t, f in data],
        "doc_id string, line_number int, label double, label_name string, text string, features array<double>",
    )
    return df.withColumn("features", array_to_vector("features")).cache()


def _probabilities(model, df):
    out = model.transform(df).orderBy("doc_id", "line_number").select("probability", "prediction").collect()
    probs = np.array([r.probability.toArray() for r in out])
    np.testing.assert_array_equal([r.prediction for r in out], probs.argmax(axis=1))
    return probs


@pytest.mark.parametrize("kind", KINDS)
def test_model_directory(kind, rows, expected):
    from skol_spark import BiLSTMClassificationModel

    model = BiLSTMClassificationModel.load(str(SAVED / kind / "directory"))
    assert model.labels_ == LABELS
    np.testing.assert_allclose(_probabilities(model, rows), expected[f"{kind}/directory"], atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_model_inside_a_pipeline(kind, rows, expected):
    from pyspark.ml import PipelineModel

    from skol_spark import BiLSTMClassificationModel

    pipeline = PipelineModel.load(str(SAVED / kind / "pipeline"))
    assert type(pipeline.stages[-1]) is BiLSTMClassificationModel
    np.testing.assert_allclose(_probabilities(pipeline, rows), expected[f"{kind}/pipeline"], atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_redis_hash(kind, rows, expected, redis_url):
    import redis

    from skol_spark import BiLSTMClassificationModel

    client = redis.Redis.from_url(redis_url)
    key = f"saved-0.1:{kind}"
    fields = {p.name.replace("_", ":"): p.read_bytes() for p in (SAVED / kind / "redis").iterdir()}
    client.delete(key)
    client.hset(key, mapping=fields)
    model = BiLSTMClassificationModel.loadFromRedis(redis_url, key)
    np.testing.assert_allclose(_probabilities(model, rows), expected[f"{kind}/directory"], atol=1e-5)


@pytest.mark.parametrize("kind,suffix", [(k, s) for k in KINDS for s in (".keras", ".h5")])
def test_keras_file(kind, suffix, rows, expected):
    from skol_spark import BiLSTMClassificationModel

    path = SAVED / kind / f"network{suffix}"
    if not path.exists():
        pytest.skip(f"0.1 could not save a {kind} network as {suffix} (SAVED_BY.json)")
    model = BiLSTMClassificationModel.fromKeras(str(path), labels=LABELS, windowSize=12)
    assert model.getOutputLayer() == ("crf" if kind == "crf" else "softmax")
    np.testing.assert_allclose(_probabilities(model, rows), expected[f"{kind}/directory"], atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_keras_file_loads_compiled_in_plain_keras(kind):
    import keras

    import skol_spark.nn.network  # noqa: F401 - registers the loss and layers saved models name

    network = keras.models.load_model(str(SAVED / kind / "network.keras"))
    assert network.loss.get_config()["class_weights"] and network.output.shape[-1] == len(LABELS)


def test_estimator_with_initial_model(rows, expected):
    from skol_spark import BiLSTMClassificationModel, BiLSTMClassifier

    estimator = BiLSTMClassifier.load(str(SAVED / "estimator_with_initial_model"))
    assert estimator.getOutputLayer() == "crf" and estimator.getHiddenSize() == 6
    initial = estimator.getInitialModel()
    assert type(initial) is BiLSTMClassificationModel
    np.testing.assert_allclose(_probabilities(initial, rows), expected["crf/directory"], atol=1e-5)


def test_text_pipeline(rows, expected):
    from pyspark.ml import PipelineModel

    model = PipelineModel.load(str(SAVED / "text_pipeline"))
    np.testing.assert_allclose(
        _probabilities(model, rows.drop("features")), expected["text_pipeline"], atol=1e-5
    )
