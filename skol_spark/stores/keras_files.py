"""Keras files: writing a trained network as ``.keras``/``.h5``, and checking networks trained elsewhere.

Both directions go through :class:`~skol_spark.nn.trained_network.TrainedNetwork`;
the stage classes turn it into a model (:mod:`skol_spark.stages`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from skol_spark.errors import ModelRebuildError
from skol_spark.nn.crf import CRF
from skol_spark.nn.trained_network import TrainedNetwork

if TYPE_CHECKING:
    import keras

__all__ = ["load_keras_file", "save_keras_file", "check_keras_network"]


def save_keras_file(
    network: TrainedNetwork, path: str, class_weights: Sequence[float], learning_rate: float
) -> None:
    """Write ``network`` compiled with the registered weighted loss, so it reloads compiled."""
    import keras

    from skol_spark.nn.network import WeightedSparseCategoricalCrossentropy

    if not str(path).endswith((".keras", ".h5")):
        raise ValueError(f"Expected a path ending in .keras or .h5. Received: {path!r}")
    model = network.rebuild()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=WeightedSparseCategoricalCrossentropy(list(class_weights)),
    )
    model.save(str(path))


def load_keras_file(path: str) -> keras.Model:
    """Load a ``.keras`` or ``.h5`` file without compiling it."""
    import keras

    if not os.path.exists(path):
        raise ValueError(f"Expected an existing .keras or .h5 file. Received: {path!r} (not found)")
    if not str(path).endswith((".keras", ".h5", ".hdf5")):
        raise ValueError(f"Expected a path ending in .keras or .h5. Received: {path!r}")
    return keras.models.load_model(path, compile=False)


def _shape_of(network: keras.Model) -> tuple[int | None, int | None, int | None, int]:
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


def check_keras_network(
    path_or_model: Any,
    labels: list[str],
    window_size: int | None,
    class_weights: list[float] | None,
) -> tuple[TrainedNetwork, dict[str, Any]]:
    """A network trained elsewhere as a value, and the Params it implies, after checking both.

    The network is rebuilt from its JSON (as executors will) and must predict the same.
    """
    import keras

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
    window, features, classes, _ = _shape_of(network)
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
    trained = TrainedNetwork.from_keras(network)
    try:
        trained.verify(network, probe=_probe(network, window, features))
    except ModelRebuildError as exc:
        raise ModelRebuildError(
            f"The network: {exc} Executors would fail the same way. Register its custom layers "
            "with keras.saving.register_keras_serializable."
        ) from exc
    from skol_spark.nn.network import ensemble_size_of
    from skol_spark.nn.projection import split_network

    split = split_network(network)
    members = ensemble_size_of(network)
    params = dict(
        # What the network is, not a choice: its projection's width per member, or 0 when it has none.
        embeddingSize=0 if split is None else int(split[0].units) // members,
        ensembleSize=members,
        labels=labels,
        windowSize=window,
        numFeatures=features,
        classWeightsUsed=class_weights if class_weights is not None else [1.0] * classes,
    )
    if any(isinstance(layer, CRF) for layer in network.layers):
        params["outputLayer"] = "crf"
    return trained, params


def _probe(network: Any, window: int, features: int) -> list[Any]:
    import numpy as np

    probe = [np.random.default_rng(0).normal(size=(2, window, features)).astype("float32")]
    if len(network.inputs) == 2:
        probe.append(np.ones((2, window), dtype=bool))
    return probe
