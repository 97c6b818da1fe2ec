"""Networks trained elsewhere: load a Keras file or model, check it, wrap it as a Model."""

from __future__ import annotations

import base64
import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from skol_spark.network import strip_compile_config, model_from_json, weights_to_bytes

if TYPE_CHECKING:
    import keras

    from skol_spark.estimator import BiLSTMClassificationModel

__all__ = ["load_keras_file", "wrap_keras_network"]


def load_keras_file(path: str) -> "keras.Model":
    """Load a ``.keras`` or ``.h5`` file without compiling it."""
    import keras

    if not os.path.exists(path):
        raise ValueError(f"Expected an existing .keras or .h5 file. Received: {path!r} (not found)")
    if not str(path).endswith((".keras", ".h5", ".hdf5")):
        raise ValueError(f"Expected a path ending in .keras or .h5. Received: {path!r}")
    return keras.models.load_model(path, compile=False)


def _shape_of(network: "keras.Model") -> tuple[int | None, int | None, int | None, int]:
    """(window, features, classes, number of inputs), refusing shapes that do not fit."""
    inputs = network.inputs
    if len(inputs) not in (1, 2):
        raise ValueError(
            "Expected a network with one input (batch, window, features), optionally plus a "
            f"boolean mask (batch, window). Received {len(inputs)} inputs."
        )
    features_shape = tuple(inputs[0].shape)
    if len(features_shape) != 3:
        raise ValueError(
            "Expected the network's input to be (batch, window, features). Received: "
            f"{features_shape}. skol_spark labels sequences; wrap a sequence model."
        )
    if len(inputs) == 2 and tuple(inputs[1].shape)[1:] != features_shape[1:2]:
        raise ValueError(
            "Expected the second input to be a (batch, window) mask. Received: "
            f"{tuple(inputs[1].shape)} beside features {features_shape}."
        )
    output_shape = tuple(network.outputs[0].shape) if len(network.outputs) == 1 else None
    if output_shape is None or len(output_shape) != 3:
        raise ValueError(
            "Expected one output of shape (batch, window, classes): one probability vector per "
            f"position. Received: {[tuple(o.shape) for o in network.outputs]}."
        )
    return features_shape[1], features_shape[2], output_shape[2], len(inputs)


def wrap_keras_network(
    cls: "type[BiLSTMClassificationModel]",
    path_or_model: Any,
    labels: list[str],
    window_size: int | None,
    class_weights: list[float] | None,
    params: dict[str, Any],
) -> "BiLSTMClassificationModel":
    """Check a network against the Params and return it as a fitted model."""
    import keras

    from skol_spark.training import ModelRebuildError

    if isinstance(path_or_model, (str, os.PathLike)):
        network = load_keras_file(os.fspath(path_or_model))
    elif isinstance(path_or_model, keras.Model):
        network = path_or_model
    else:
        raise ValueError(
            "Expected a .keras/.h5 path or a keras.Model. Received: "
            f"{type(path_or_model).__name__}"
        )
    labels = [str(label) for label in labels]
    window, features, classes, num_inputs = _shape_of(network)
    if classes != len(labels):
        raise ValueError(
            f"The network outputs {classes} classes but {len(labels)} labels were given "
            f"({labels}). Pass one label per output unit, in output order."
        )
    if features is None:
        raise ValueError("The network's feature axis has no fixed size; skol_spark needs one.")
    if window is None and window_size is None:
        raise ValueError(
            "The network accepts windows of any length; pass windowSize to say how many "
            "positions each prediction window holds."
        )
    if window is not None and window_size is not None and window != window_size:
        raise ValueError(
            f"The network takes windows of {window} positions but windowSize={window_size}. "
            f"Pass windowSize={window} or leave it out."
        )
    window = window if window is not None else window_size
    if class_weights is not None and len(class_weights) != classes:
        raise ValueError(
            f"Expected {classes} classWeightsUsed, one per class. Received: {class_weights}"
        )
    model_json = json.dumps(strip_compile_config(json.loads(network.to_json())))
    try:
        rebuilt = model_from_json(model_json, compile=False)
        rebuilt.set_weights(network.get_weights())
    except Exception as exc:  # noqa: BLE001
        raise ModelRebuildError(
            f"The network cannot be rebuilt from its JSON ({type(exc).__name__}: {exc}); "
            "executors would fail the same way. Register its custom layers with "
            "keras.saving.register_keras_serializable."
        ) from exc
    probe = [np.random.default_rng(0).normal(size=(2, window, features)).astype("float32")]
    if num_inputs == 2:
        probe.append(np.ones((2, window), dtype=bool))
    probe_input = probe if num_inputs == 2 else probe[0]
    expected = keras.ops.convert_to_numpy(network(probe_input, training=False))
    actual = keras.ops.convert_to_numpy(rebuilt(probe_input, training=False))
    if not np.allclose(expected, actual, atol=1e-5):
        raise ModelRebuildError("The network rebuilt from its JSON predicts differently.")
    body = weights_to_bytes(network.get_weights())
    model = cls()
    model._set(
        **params,
        labels=labels,
        windowSize=window,
        numFeatures=features,
        modelJson=model_json,
        modelWeights=base64.b64encode(body).decode("ascii"),
        classWeightsUsed=class_weights if class_weights is not None else [1.0] * classes,
    )
    return model
