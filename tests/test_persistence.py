"""Saving and loading on disk, in Pipelines, in model selection and as Keras files."""

import json
import os

import keras
import numpy as np
import pytest
from conftest import assert_same_predictions, predictions
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.feature import IDF, HashingTF, RegexTokenizer, StringIndexer
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder, TrainValidationSplit
from pyspark.sql import functions as F

from skol_spark import BiLSTMClassificationModel, BiLSTMClassifier
from skol_spark.errors import ChecksumMismatchError, WrongModelClassError


def _params(model):
    return {p.name: model.getOrDefault(p) for p in model.params if model.isDefined(p)}


@pytest.mark.core
@pytest.mark.connect
def test_model_directory_round_trip(fitted, test_df, tmp_path):
    path = str(tmp_path / "model")
    fitted.write().overwrite().save(path)
    loaded = BiLSTMClassificationModel.load(path)
    assert loaded.uid == fitted.uid
    assert _params(loaded) == _params(fitted)
    assert_same_predictions(predictions(loaded, test_df), predictions(fitted, test_df))
    # Overwrite replaces; without it, an existing path is refused.
    fitted.write().overwrite().save(path)
    with pytest.raises(Exception, match="(?i)already exists"):
        fitted.save(path)


def test_metadata_is_spark_ml_json_without_weights_and_records_checksum(fitted, tmp_path):
    path = tmp_path / "model"
    fitted.write().save(str(path))
    (metadata_file,) = [p for p in (path / "metadata").iterdir() if p.name.startswith("part-")]
    metadata = json.loads(metadata_file.read_text())
    assert metadata["class"] == "skol_spark.estimator.BiLSTMClassificationModel"
    assert metadata["uid"] == fitted.uid
    assert "modelWeights" not in metadata["paramMap"]
    body = fitted.weightsBody()
    assert metadata["skolSpark"]["body"]["bytes"] == len(body)
    import hashlib

    assert metadata["skolSpark"]["body"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert "modelWeights" not in metadata["defaultParamMap"]
    assert metadata_file.stat().st_size < 60_000  # the JSON, never the weights
    assert any(p.suffix == ".parquet" for p in (path / "weights").iterdir())


def test_large_body_is_chunked_and_never_inlined(spark, tmp_path, monkeypatch):
    from skol_spark.nn.network import build_network
    from skol_spark.stores import directory as persistence

    network = build_network(8, 8, 3, hidden_size=512, num_layers=2)
    model = BiLSTMClassificationModel.fromKeras(network, labels=["a", "b", "c"])
    body = model.weightsBody()
    assert len(body) > 10_000_000  # tens of MB of float32 weights
    monkeypatch.setattr(persistence, "DISK_CHUNK_BYTES", 4 << 20)
    path = tmp_path / "big"
    model.write().save(str(path))
    metadata_bytes = sum(p.stat().st_size for p in (path / "metadata").iterdir())
    assert metadata_bytes < 200_000
    chunks = spark.read.parquet(str(path / "weights")).count()
    assert chunks == -(-len(body) // (4 << 20))
    loaded = BiLSTMClassificationModel.load(str(path))
    assert loaded.weightsBody() == body


@pytest.mark.connect
def test_checksum_is_checked_on_load(fitted, spark, tmp_path):
    path = str(tmp_path / "model")
    fitted.write().save(path)
    body = bytearray(fitted.weightsBody())
    body[len(body) // 2] ^= 0xFF
    spark.createDataFrame([(0, bytes(body))], "chunk int, data binary").coalesce(1).write.mode(
        "overwrite"
    ).parquet(os.path.join(path, "weights"))
    with pytest.raises(ChecksumMismatchError, match="SHA-256 .* does not match"):
        BiLSTMClassificationModel.load(path)


def test_loading_another_class_names_both(fitted, spark, train_df, tmp_path):
    path = str(tmp_path / "lr")
    LogisticRegression(maxIter=2).fit(train_df).save(path)
    with pytest.raises(
        WrongModelClassError,
        match="written by org.apache.spark.ml.classification.LogisticRegressionModel, not "
        "skol_spark.estimator.BiLSTMClassificationModel",
    ):
        BiLSTMClassificationModel.load(path)
    estimator_path = str(tmp_path / "estimator")
    BiLSTMClassifier().save(estimator_path)
    with pytest.raises(WrongModelClassError, match="written by skol_spark.estimator.BiLSTMClassifier, not"):
        BiLSTMClassificationModel.load(estimator_path)
    model_path = str(tmp_path / "model")
    fitted.save(model_path)
    with pytest.raises(WrongModelClassError, match="BiLSTMClassificationModel, not skol_spark.estimator.BiLSTMClassifier"):
        BiLSTMClassifier.load(model_path)


@pytest.mark.connect
def test_missing_directory_is_a_clear_error(tmp_path):
    from skol_spark.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="cannot read .*nowhere.*saved skol_spark model"):
        BiLSTMClassificationModel.load(str(tmp_path / "nowhere"))


@pytest.mark.connect
def test_estimator_round_trip_with_initial_model(fitted, tmp_path):
    estimator = BiLSTMClassifier(windowSize=12, classWeights={"Nomenclature": 3.0}, initialModel=fitted)
    path = str(tmp_path / "estimator")
    estimator.write().overwrite().save(path)
    loaded = BiLSTMClassifier.load(path)
    assert loaded.uid == estimator.uid
    assert loaded.getWindowSize() == 12 and loaded.getClassWeights() == {"Nomenclature": 3.0}
    assert loaded.getInitialModel().getModelWeights() == fitted.getModelWeights()
    assert BiLSTMClassifier.load(path).getInitialModel().uid == fitted.uid


def _text_corpus(spark):
    """Tiny labelled 'journal' lines with text, for a real feature pipeline."""
    rng = np.random.default_rng(0)
    rows = []
    for doc in range(16):
        line = 0
        while line < 40:
            if rng.random() < 0.3:
                genus = str(rng.choice(["Amanita", "Boletus", "Russula", "Cortinarius"]))
                rows.append((f"d{doc}", line, f"{genus} novus sp. nov. {rng.integers(1990, 2020)}", "Nomenclature"))
                for _ in range(int(rng.integers(1, 4))):
                    line += 1
                    rows.append((f"d{doc}", line, "Pileus 3-5 cm convex, lamellae free, spores ellipsoid", "Description"))
            else:
                text = str(rng.choice(["In this paper we study", "Acknowledgements follow", "Received 1995"]))
                rows.append((f"d{doc}", line, text, "Misc-exposition"))
            line += 1
    return spark.createDataFrame(rows, ["doc_id", "line_number", "text", "label_name"])


@pytest.mark.core
def test_pipeline_with_builtin_stages_round_trip(spark, tiny_params, tmp_path):
    df = _text_corpus(spark)
    pipeline = Pipeline(
        stages=[
            RegexTokenizer(inputCol="text", outputCol="tokens", pattern=r"\W+"),
            HashingTF(inputCol="tokens", outputCol="tf", numFeatures=64),
            IDF(inputCol="tf", outputCol="features"),
            StringIndexer(inputCol="label_name", outputCol="label"),
            BiLSTMClassifier(**dict(tiny_params, epochs=2)),
        ]
    )
    pipeline_path = str(tmp_path / "pipeline")
    pipeline.write().overwrite().save(pipeline_path)
    assert isinstance(Pipeline.load(pipeline_path).getStages()[-1], BiLSTMClassifier)
    fitted = pipeline.fit(df)
    model = fitted.stages[-1]
    assert isinstance(model, BiLSTMClassificationModel)
    assert sorted(model.labels_) == ["Description", "Misc-exposition", "Nomenclature"]
    path = str(tmp_path / "pipeline_model")
    fitted.write().overwrite().save(path)
    loaded = PipelineModel.load(path)
    assert loaded.stages[-1].uid == model.uid
    assert_same_predictions(predictions(loaded, df), predictions(fitted, df))


def test_cross_validator_and_train_validation_split(spark, train_df, tiny_params, tmp_path):
    estimator = BiLSTMClassifier(**dict(tiny_params, epochs=1))
    grid = ParamGridBuilder().addGrid(estimator.hiddenSize, [4, 8]).build()
    evaluator = MulticlassClassificationEvaluator(metricName="f1")
    small = train_df.filter(F.col("doc_id") < "doc-00012")
    cv = CrossValidator(estimator=estimator, estimatorParamMaps=grid, evaluator=evaluator, numFolds=2, seed=1)
    cv_model = cv.fit(small)
    best = cv_model.bestModel
    assert type(best) is BiLSTMClassificationModel
    # Each candidate was really trained and scored: distinct, finite metrics, and the best
    # model is the one refit with the winning grid point on all the rows.
    assert len(cv_model.avgMetrics) == 2 and len(set(cv_model.avgMetrics)) == 2
    assert all(0 < m <= 1 for m in cv_model.avgMetrics)
    winner = grid[int(np.argmax(cv_model.avgMetrics))][estimator.hiddenSize]
    assert best.getHiddenSize() == winner
    assert best.getKerasModel().get_layer("sequence").get_layer("bilstm_0").forward_layer.units == winner
    refit = estimator.copy({estimator.hiddenSize: winner}).fit(small)
    assert_same_predictions(predictions(best, small), predictions(refit, small))
    assert estimator.getHiddenSize() == 8  # the grid did not leak into the estimator
    path = str(tmp_path / "best")
    best.write().overwrite().save(path)
    assert_same_predictions(predictions(BiLSTMClassificationModel.load(path), small), predictions(best, small))
    one = ParamGridBuilder().addGrid(estimator.windowSize, [10]).build()
    tvs = TrainValidationSplit(estimator=estimator, estimatorParamMaps=one, evaluator=evaluator, trainRatio=0.7, seed=1)
    tvs_model = tvs.fit(small)
    assert type(tvs_model.bestModel) is BiLSTMClassificationModel and tvs_model.bestModel.getWindowSize() == 10
    assert len(tvs_model.validationMetrics) == 1 and 0 < tvs_model.validationMetrics[0] <= 1


@pytest.mark.core
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_save_keras_loads_in_plain_keras(fitted, test_df, tmp_path, suffix):
    path = str(tmp_path / f"net{suffix}")
    fitted.saveKeras(path)
    compiled = keras.models.load_model(path)  # skol_spark is imported: its loss is registered
    assert compiled.loss.get_config()["class_weights"] == pytest.approx(fitted.getClassWeightsUsed())
    plain = keras.models.load_model(path, compile=False)
    wrapped = BiLSTMClassificationModel.fromKeras(path, labels=fitted.labels_)
    assert wrapped.getWindowSize() == fitted.getWindowSize()
    assert_same_predictions(predictions(wrapped, test_df), predictions(fitted, test_df))
    for a, b in zip(plain.get_weights(), fitted.getKerasModel().get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="ending in .keras or .h5"):
        fitted.saveKeras(str(tmp_path / "net.bin"))


def _legacy_network(window, features, classes):
    def make_loss(weights):
        w = keras.ops.convert_to_tensor(np.asarray(weights, "float32"))

        def weighted_categorical_crossentropy(y_true, y_pred):
            return -keras.ops.sum(y_true * keras.ops.log(keras.ops.clip(y_pred, 1e-7, 1.0)) * w, axis=-1)

        return weighted_categorical_crossentropy

    inputs = keras.Input(shape=(window, features))
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))(inputs)
    net = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))
    net.compile(optimizer="adam", loss=make_loss([1.0, 8.0, 3.0]))
    return net


@pytest.mark.core
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_from_keras_accepts_the_seeds_legacy_closure_loss_files(spark, test_df, tmp_path, suffix):
    net = _legacy_network(16, 8, 3)
    path = str(tmp_path / f"legacy{suffix}")
    net.save(path)
    # Plain Keras cannot open it compiled (the .h5 loader fails with another message).
    with pytest.raises(TypeError, match="weighted_categorical_crossentropy" if suffix == ".keras" else None):
        keras.models.load_model(path)
    model = BiLSTMClassificationModel.fromKeras(path, labels=["m", "n", "d"], windowSize=16)
    out = model.transform(test_df).collect()
    assert len(out) == test_df.count()
    # Predictions equal the legacy network's own on a full window of one document.
    doc = sorted((r for r in out if r.doc_id == out[0].doc_id), key=lambda r: r.line_number)[:16]
    if len(doc) == 16:
        x = np.stack([r.features.toArray() for r in doc])[None].astype("float32")
        expected = net.predict(x, verbose=0)[0]
        np.testing.assert_allclose([r.probability.toArray() for r in doc], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"labels": ["a", "b"]}, "outputs 3 classes but 2 labels were given"),
        ({"labels": ["a", "b", "c"], "windowSize": 20}, "takes windows of 16 positions but windowSize=20"),
        ({"labels": ["a", "b", "c"], "classWeightsUsed": [1.0]}, "Expected 3 classWeightsUsed"),
    ],
)
def test_from_keras_says_what_does_not_fit(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BiLSTMClassificationModel.fromKeras(_legacy_network(16, 8, 3), **kwargs)


def test_from_keras_refuses_non_sequence_networks_and_missing_files(tmp_path):
    inputs = keras.Input(shape=(8,))
    flat = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    with pytest.raises(ValueError, match=r"input to be \(batch, window, features\)"):
        BiLSTMClassificationModel.fromKeras(flat, labels=["a", "b", "c"])
    any_length = keras.Input(shape=(None, 8))
    ragged = keras.Model(any_length, keras.layers.Dense(3, activation="softmax")(any_length))
    with pytest.raises(ValueError, match="pass windowSize"):
        BiLSTMClassificationModel.fromKeras(ragged, labels=["a", "b", "c"])
    assert BiLSTMClassificationModel.fromKeras(ragged, labels=["a", "b", "c"], windowSize=10).getWindowSize() == 10
    with pytest.raises(ValueError, match="not found"):
        BiLSTMClassificationModel.fromKeras(str(tmp_path / "none.keras"), labels=["a"])


def test_warm_start_from_a_loaded_model_continues_training(train_df, tiny_params, tmp_path):
    params = dict(tiny_params, epochs=3, learningRate=0.003)
    first = BiLSTMClassifier(**params).fit(train_df)
    path = str(tmp_path / "first")
    first.save(path)
    loaded = BiLSTMClassificationModel.load(path)
    warm = BiLSTMClassifier(initialModel=loaded, **dict(params, epochs=2)).fit(train_df)
    cold_losses, warm_losses = first.history["loss"], warm.history["loss"]
    assert warm_losses[0] < cold_losses[0]
    assert warm_losses[-1] < cold_losses[-1]
    assert warm.getClassWeightsUsed() == first.getClassWeightsUsed()
    with pytest.raises(ValueError, match="initialModel has hiddenSize=8.*hiddenSize=16"):
        BiLSTMClassifier(initialModel=loaded, **dict(params, hiddenSize=16)).fit(train_df)
