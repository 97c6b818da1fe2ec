"""Every documented input error: a ValueError naming the column or Param."""

import pytest
from pyspark.ml.linalg import Vectors
from pyspark.sql import functions as F

from skol_spark import BiLSTMClassifier
from skol_spark.errors import InvalidRowError, ModelRebuildError
from skol_spark.fit.training import TrainingData, verify_rebuild

FAST = dict(windowSize=8, hiddenSize=4, numLayers=1, epochs=1, ensembleSize=1)


def _rows(spark, rows, label_meta=True):
    df = spark.createDataFrame(rows, ["doc_id", "line_number", "label", "features"])
    if label_meta:
        meta = {"ml_attr": {"type": "nominal", "name": "label", "vals": ["a", "b", "c"]}}
        # select, not withColumn: under Spark Connect withColumn drops the alias's metadata.
        df = df.select("doc_id", "line_number", F.col("label").alias("label", metadata=meta), "features")
    return df


@pytest.fixture(scope="module")
def good(spark):
    return _rows(spark, [("d", i, float(i % 3), Vectors.dense([1.0, float(i)])) for i in range(9)])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"windowSize": 0}, "Expected windowSize to be a positive integer. Received: windowSize=0"),
        ({"windowStride": -2}, "windowStride"),
        ({"embeddingSize": -1}, "Expected embeddingSize to be a non-negative integer. Received: embeddingSize=-1"),
        ({"epochs": 0}, "epochs"),
        ({"dropout": 1.0}, "dropout"),
        ({"learningRate": 0.0}, "learningRate"),
        ({"validationFraction": 1.5}, "validationFraction"),
        ({"weightStrategy": "median"}, "Expected weightStrategy to be one of none, inverse"),
        ({"classWeights": {"a": -1.0}}, "classWeights"),
    ],
)
def test_bad_param_values_are_refused_when_set(params, match):
    with pytest.raises(ValueError, match=match):
        BiLSTMClassifier(**params)
    with pytest.raises(ValueError, match=match):
        BiLSTMClassifier().setParams(**params)


def test_stride_longer_than_window(good):
    with pytest.raises(ValueError, match="windowStride <= windowSize.*windowStride=9, windowSize=8"):
        BiLSTMClassifier(windowStride=9, **FAST).fit(good)


@pytest.mark.connect
@pytest.mark.parametrize("column", ["features", "label", "doc_id", "line_number"])
def test_missing_column(good, column):
    with pytest.raises(ValueError, match=f"Column '{column}' is missing"):
        BiLSTMClassifier(**FAST).fit(good.drop(column))


def test_missing_column_through_param(good):
    with pytest.raises(ValueError, match="Column 'page' is missing.*Received columns"):
        BiLSTMClassifier(positionCol="page", **FAST).fit(good)


@pytest.mark.connect
@pytest.mark.parametrize(
    "column, value, match",
    [
        ("features", lambda: F.lit("text"), "Column 'features' must hold a Vector or array<float|double>.*Received: string"),
        ("features", lambda: F.array(F.lit(1), F.lit(2)), "Received: array<int>"),
        ("label", lambda: F.lit("b"), "Column 'label' must hold a numeric class index.*StringIndexer"),
        ("line_number", lambda: F.lit("3"), "Column 'line_number' must hold a numeric position"),
        ("doc_id", lambda: F.array(F.lit("d")), "Column 'doc_id' must hold a string or integer document id"),
    ],
)
def test_wrong_column_type(good, column, value, match):
    with pytest.raises(ValueError, match=match):
        BiLSTMClassifier(**FAST).fit(good.withColumn(column, value()))


def test_wrong_column_type_at_transform(good, fitted):
    with pytest.raises(ValueError, match="Column 'features' must hold a Vector"):
        fitted.transform(good.withColumn("features", F.lit(1.0)))


@pytest.mark.connect
def test_label_outside_the_classes(spark):
    df = _rows(spark, [("d", 0, 0.0, Vectors.dense([1.0])), ("d", 1, 5.0, Vectors.dense([2.0]))])
    with pytest.raises(
        InvalidRowError,
        match=r"column 'label': label outside the model's classes at document 'd', line_number=1",
    ):
        BiLSTMClassifier(**FAST).fit(df)


@pytest.mark.parametrize("bad", [-1.0, 0.5])
def test_label_that_is_no_class_index(spark, bad):
    df = _rows(spark, [("d", 0, 0.0, Vectors.dense([1.0])), ("d", 1, bad, Vectors.dense([2.0]))])
    with pytest.raises(
        InvalidRowError,
        match=r"column 'label': label outside the model's classes at document 'd', line_number=1",
    ):
        BiLSTMClassifier(**FAST).fit(df)


def test_features_of_different_lengths(spark):
    # One partition, so the first row seen (which sets the expected length) is line 0.
    df = _rows(spark, [("d", 0, 0.0, Vectors.dense([1.0, 2.0])), ("d", 1, 1.0, Vectors.dense([2.0]))]).coalesce(1)
    with pytest.raises(
        InvalidRowError,
        match=r"column 'features': wrong feature length \(expected length 2\) at document 'd', line_number=1",
    ):
        BiLSTMClassifier(**FAST).fit(df)


def test_class_weights_key_that_is_no_label(good):
    with pytest.raises(ValueError, match="classWeights key 'Key' is not a label.*\\['a', 'b', 'c'\\]"):
        BiLSTMClassifier(classWeights={"Key": 3.0}, **FAST).fit(good)


def test_empty_training_data(good):
    with pytest.raises(ValueError, match="training DataFrame is empty"):
        BiLSTMClassifier(**FAST).fit(good.limit(0))


@pytest.mark.connect
@pytest.mark.parametrize(
    "rows, match",
    [
        ([(None, 0, 0.0, Vectors.dense([1.0]))], "column 'doc_id': null document id at document None, line_number=0"),
        ([("d", None, 0.0, Vectors.dense([1.0]))], "column 'line_number': null position at document 'd', line_number=None"),
        ([("d", 0, 0.0, None)], "column 'features': null features at document 'd', line_number=0"),
        ([("d", 0, None, Vectors.dense([1.0]))], "column 'label': null label at document 'd', line_number=0"),
        (
            [("d", 1, 0.0, Vectors.dense([1.0])), ("d", 1, 1.0, Vectors.dense([1.0]))],
            "Invalid row in column 'line_number': duplicate position at document 'd', line_number=1",
        ),
    ],
)
def test_nulls_and_duplicate_positions_at_fit(spark, rows, match):
    df = _rows(spark, rows + [("e", 0, 2.0, Vectors.dense([1.0]))])
    with pytest.raises(ValueError, match=match):
        BiLSTMClassifier(**FAST).fit(df)


@pytest.mark.connect
def test_output_column_clash_at_transform(fitted, test_df):
    with pytest.raises(ValueError, match=r"Output column\(s\) \['prediction'\] already exist"):
        fitted.transform(test_df.withColumn("prediction", F.lit(0.0)))


@pytest.mark.connect
def test_wrong_feature_length_at_transform_names_the_column(spark, fitted):
    df = spark.createDataFrame([("d", 0, Vectors.dense([1.0, 2.0]))], ["doc_id", "line_number", "features"])
    with pytest.raises(
        Exception,
        match=r"column 'features': wrong feature length \(expected length 8\) at document 'd', line_number=0",
    ):
        fitted.transform(df).collect()


def test_network_that_cannot_be_rebuilt_fails_at_fit_time():
    import keras
    import numpy as np

    class Unregistered(keras.layers.Layer):
        def call(self, x):
            return x

    features = keras.Input(shape=(4, 2))
    mask = keras.Input(shape=(4,), dtype="bool")
    outputs = keras.layers.Dense(2, activation="softmax")(Unregistered()(features))
    model = keras.Model([features, mask], outputs)
    data = TrainingData(np.zeros((4, 2), "float32"), np.zeros(4, "int32"), np.array([4]))
    with pytest.raises(ModelRebuildError, match="cannot be rebuilt from its JSON"):
        verify_rebuild(model, data, window_size=4)
