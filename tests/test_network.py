"""The network, its loss, and rebuilding it from JSON (Keras only, no Spark)."""

import json

import keras
import numpy as np
import pytest

import skol_spark
from skol_spark.nn.network import (
    WeightedSparseCategoricalCrossentropy,
    build_network,
    model_from_json,
)
from skol_spark.nn.trained_network import weights_from_bytes, weights_to_bytes

D, K = 6, 3


def _legacy_model(window=7):
    """The seed's production failure: a model compiled with a closure loss."""

    def make_loss(weights):
        w = keras.ops.convert_to_tensor(np.asarray(weights, "float32"))

        def weighted_categorical_crossentropy(y_true, y_pred):
            y_pred = keras.ops.clip(y_pred, 1e-7, 1.0)
            return -keras.ops.sum(y_true * keras.ops.log(y_pred) * w, axis=-1)

        return weighted_categorical_crossentropy

    inputs = keras.Input(shape=(window, D))
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))(inputs)
    outputs = keras.layers.Dense(K, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=make_loss([1.0, 5.0, 3.0]))
    return model


def test_legacy_closure_loss_fails_in_keras_and_rebuilds_with_skol_spark():
    legacy = _legacy_model()
    json_string = legacy.to_json()
    with pytest.raises(TypeError, match="Could not locate function 'weighted_categorical_crossentropy'"):
        keras.models.model_from_json(json_string)
    rebuilt = skol_spark.model_from_json(json_string, compile=False)
    rebuilt.set_weights(legacy.get_weights())
    x = np.random.default_rng(0).normal(size=(3, 7, D)).astype("float32")
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), legacy.predict(x, verbose=0), rtol=1e-6)


def test_compiled_model_with_registered_loss_round_trips_compiled(tmp_path):
    net = build_network(5, D, K, hidden_size=4, num_layers=1, dropout=0.0, seed=1)
    net.compile(optimizer="adam", loss=WeightedSparseCategoricalCrossentropy([1.0, 4.0, 2.0]))
    again = model_from_json(net.to_json(), compile=True)
    assert isinstance(again.loss, WeightedSparseCategoricalCrossentropy)
    assert again.loss.class_weights == [1.0, 4.0, 2.0]
    path = tmp_path / "net.keras"
    net.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.loss.get_config()["class_weights"] == [1.0, 4.0, 2.0]


def test_loss_config_round_trip():
    loss = WeightedSparseCategoricalCrossentropy([0.5, 2.0], from_logits=True, name="w")
    config = keras.saving.serialize_keras_object(loss)
    assert config["registered_name"] == "skol_spark>WeightedSparseCategoricalCrossentropy"
    again = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
    assert again.get_config() == loss.get_config()


def test_loss_refuses_bad_weights():
    with pytest.raises(ValueError, match="class_weights.*Received"):
        WeightedSparseCategoricalCrossentropy([1.0, -2.0])


def test_loss_weights_each_position_by_its_class():
    y_true = np.array([[0, 1]])
    y_pred = np.array([[[0.5, 0.5], [0.25, 0.75]]], dtype="float32")
    loss = WeightedSparseCategoricalCrossentropy([1.0, 3.0])
    expected = (-np.log(0.5) * 1.0 + -np.log(0.75) * 3.0) / 2
    assert float(loss(y_true, y_pred)) == pytest.approx(expected, rel=1e-5)


def test_padding_changes_neither_loss_nor_predictions():
    """Padded steps, whatever they hold, count for nothing."""
    rng = np.random.default_rng(0)
    short = build_network(5, D, K, hidden_size=4, num_layers=2, dropout=0.0, seed=2)
    long = build_network(9, D, K, hidden_size=4, num_layers=2, dropout=0.0, seed=2)
    long.set_weights(short.get_weights())
    loss = WeightedSparseCategoricalCrossentropy([1.0, 4.0, 2.0])
    for net in (short, long):
        net.compile(optimizer="adam", loss=loss)
    x = rng.normal(size=(2, 5, D)).astype("float32")
    y = rng.integers(0, K, size=(2, 5))
    x_padded = np.concatenate([x, rng.normal(size=(2, 4, D)).astype("float32") * 10], axis=1)
    y_padded = np.concatenate([y, rng.integers(0, K, size=(2, 4))], axis=1)
    mask_short = np.ones((2, 5), bool)
    mask_long = np.concatenate([mask_short, np.zeros((2, 4), bool)], axis=1)
    loss_short = short.evaluate([x, mask_short], y, verbose=0)
    loss_long = long.evaluate([x_padded, mask_long], y_padded, sample_weight=mask_long.astype("float32"), verbose=0)
    assert loss_long == pytest.approx(loss_short, rel=1e-5)
    np.testing.assert_allclose(
        long.predict([x_padded, mask_long], verbose=0)[:, :5],
        short.predict([x, mask_short], verbose=0),
        rtol=1e-5,
        atol=1e-6,
    )


def test_model_from_json_refuses_non_json_and_lambda_layers():
    with pytest.raises(ValueError, match="not JSON"):
        model_from_json("{not json")
    with pytest.raises(ValueError, match="class_name"):
        model_from_json("[1, 2]")
    inputs = keras.Input(shape=(3,))
    unsafe = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    with pytest.raises(ValueError, match="(?i)unsafe|lambda"):
        model_from_json(unsafe.to_json())


def test_weights_body_round_trip_without_pickle():
    weights = [np.arange(6, dtype="float32").reshape(2, 3), np.ones(4, "float32")]
    again = weights_from_bytes(weights_to_bytes(weights))
    assert [w.dtype for w in again] == ["float32", "float32"]
    for a, b in zip(weights, again):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="not a valid .npz"):
        weights_from_bytes(b"garbage")
