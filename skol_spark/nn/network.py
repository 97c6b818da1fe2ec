"""The Keras side: the BiLSTM network, its class-weighted loss, and rebuilding it.

Everything here is plain Keras 3 (``keras.ops``), so it runs on the driver and
on executors alike and has no Spark dependency.

The original SKOL code compiled its network with a closure loss; Keras saved
only the closure's name, and every rebuild failed with
``TypeError: Could not locate function 'weighted_categorical_crossentropy'``.
Two things prevent that here:

* :class:`WeightedSparseCategoricalCrossentropy` is a registered ``Loss`` whose
  ``get_config`` carries the class weights, so compiled models round-trip;
* :func:`model_from_json` drops the compile configuration before deserializing
  (``keras.models.model_from_json`` has no ``compile`` argument), so even a
  model compiled with an unknown loss rebuilds for inference.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import initializers, layers, ops

from skol_spark.nn.crf import CRF, CRF_LAYER, EMISSIONS_LAYER
from skol_spark.nn.projection import PROJECTION_LAYER, SEQUENCE_MODEL

__all__ = [
    "WeightedSparseCategoricalCrossentropy",
    "weighted_crossentropy",
    "FeatureSlice",
    "build_network",
    "ensemble_members",
    "set_ensemble_weights",
    "set_member_weights",
    "model_from_json",
    "strip_compile_config",
]

FEATURES_INPUT = "features"
MASK_INPUT = "mask"
PROJECTED_INPUT = "projected"
MEMBER_PREFIX = "member_"


@keras.saving.register_keras_serializable(package="skol_spark")
class WeightedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels, each position weighted by its class.

    Parameters
    ----------
    class_weights : sequence of float
        One weight per class, indexed by label.
    from_logits : bool, default False
        Whether ``y_pred`` holds logits rather than probabilities.

    Keras masks (from the network's padding mask) zero the padded positions
    and the mean is taken over real positions only.

    Examples
    --------
    >>> loss = WeightedSparseCategoricalCrossentropy([1.0, 5.0])
    >>> float(loss(np.array([[1]]), np.array([[[0.5, 0.5]]])))  # doctest: +ELLIPSIS
    3.46...
    """

    def __init__(
        self,
        class_weights: Sequence[float],
        from_logits: bool = False,
        reduction: str = "sum_over_batch_size",
        name: str = "weighted_sparse_categorical_crossentropy",
        dtype: Any = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        weights = [float(w) for w in class_weights]
        if not weights or any(not np.isfinite(w) or w < 0 for w in weights):
            raise ValueError(
                "Expected class_weights to be a non-empty list of finite, "
                f"non-negative numbers. Received: class_weights={list(class_weights)}"
            )
        self.class_weights = weights
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        return weighted_crossentropy(y_true, y_pred, self.class_weights, self.from_logits)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"class_weights": list(self.class_weights), "from_logits": self.from_logits}
        )
        return config


def weighted_crossentropy(y_true, y_pred, class_weights, from_logits: bool = False):
    """Per-position cross-entropy times the weight of the position's class (a list or a tensor)."""
    y_true = ops.cast(y_true, "int32")
    # Sequence outputs: (batch, steps) labels against (batch, steps, K).
    if len(y_true.shape) == len(y_pred.shape):
        y_true = ops.squeeze(y_true, axis=-1)
    per_position = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=from_logits)
    weights = ops.take(ops.convert_to_tensor(class_weights, dtype=per_position.dtype), y_true)
    return per_position * weights


@keras.saving.register_keras_serializable(package="skol_spark")
class FeatureSlice(layers.Layer):
    """Columns ``start:stop`` of the last axis: one ensemble member's share of the projected rows.

    Parameters
    ----------
    start, stop : int
        The half-open column range kept.
    """

    def __init__(self, start: int, stop: int, **kwargs: Any):
        super().__init__(**kwargs)
        if not 0 <= int(start) < int(stop):
            raise ValueError(f"Expected 0 <= start < stop. Received: start={start}, stop={stop}")
        self.start, self.stop = int(start), int(stop)

    def call(self, inputs):
        return inputs[..., self.start : self.stop]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.stop - self.start)

    def get_config(self):
        config = super().get_config()
        config.update({"start": self.start, "stop": self.stop})
        return config


def build_network(
    window_size: int,
    num_features: int,
    num_classes: int,
    hidden_size: int = 128,
    num_layers: int = 2,
    dropout: float = 0.3,
    seed: int | None = None,
    output_layer: str = "softmax",
    embedding_size: int = 0,
    ensemble_size: int = 1,
) -> keras.Model:
    """The functional BiLSTM: ``[features (W, D), mask (W,)] -> probabilities (W, K)``.

    ``output_layer`` "softmax" gives a softmax per position; "crf" gives emission
    scores (a Dense layer named "emissions") into a linear-chain :class:`~skol_spark.nn.crf.CRF`
    whose output is the per-position marginals.

    The boolean mask input marks real positions; padded positions are skipped
    by both LSTM directions, so a position's prediction never depends on how
    much padding follows it, and the mask reaches the loss through Keras'
    mask propagation.

    With ``embedding_size`` E > 0 the first layer is a linear ``Dense`` D -> E
    named ``projection``, applied to each position on its own. For a softmax
    output the rest is a nested model named ``sequence`` taking
    ``[(W, E), mask]`` (:func:`build_sequence`); executors and training use that
    split (:func:`skol_spark.nn.projection.split_network`) to project each row
    once, sparse rows with a sparse product; the saved JSON is still the whole
    model. A CRF network keeps its layers flat (the CRF training wrapper looks
    them up by name) and runs whole.

    With ``ensemble_size`` M > 1 (softmax and E > 0 only) the network is M
    BiLSTMs averaged: one projection D -> M x E (member m's rows are its
    columns ``m E .. (m + 1) E``, so every row is still projected once), and a
    ``sequence`` model that slices them (:class:`FeatureSlice`), runs each
    member's nested model ``member_m`` and averages their probabilities. It is
    still one Keras model, rebuilt by :func:`model_from_json`, and it splits
    like a single network (:func:`skol_spark.nn.projection.split_network`), so
    executors need nothing else. :func:`ensemble_members` and
    :func:`set_ensemble_weights` go from it to M single networks and back.
    """
    if num_layers < 1:
        raise ValueError(f"Expected num_layers >= 1. Received: num_layers={num_layers}")
    if embedding_size < 0:
        raise ValueError(f"Expected embedding_size >= 0. Received: embedding_size={embedding_size}")
    if output_layer not in ("softmax", "crf"):
        raise ValueError(
            f'Expected output_layer "softmax" or "crf". Received: output_layer={output_layer!r}'
        )
    if ensemble_size < 1:
        raise ValueError(f"Expected ensemble_size >= 1. Received: ensemble_size={ensemble_size}")
    if ensemble_size > 1 and (output_layer != "softmax" or not embedding_size):
        raise ValueError(
            'Expected output_layer="softmax" and embedding_size > 0 with ensemble_size > 1. Received: '
            f"output_layer={output_layer!r}, embedding_size={embedding_size}, ensemble_size={ensemble_size}"
        )
    features = keras.Input(shape=(window_size, num_features), name=FEATURES_INPUT)
    mask = keras.Input(shape=(window_size,), dtype="bool", name=MASK_INPUT)
    x = features
    if embedding_size:
        x = layers.Dense(
            embedding_size * ensemble_size,
            kernel_initializer=initializers.GlorotUniform(seed=_offset(seed, 900)),
            name=PROJECTION_LAYER,
        )(features)
        if output_layer == "softmax":
            shape = (window_size, embedding_size, num_classes, hidden_size, num_layers, dropout)
            if ensemble_size == 1:
                sequence = build_sequence(*shape, seed)
            else:
                sequence = _ensemble_sequence(*shape, seed, ensemble_size)
            return keras.Model(inputs=[features, mask], outputs=sequence([x, mask]), name="skol_bilstm")
    outputs = _bilstm_stack(x, mask, num_classes, hidden_size, num_layers, dropout, seed, output_layer)
    return keras.Model(inputs=[features, mask], outputs=outputs, name="skol_bilstm")


def build_sequence(
    window_size: int,
    width: int,
    num_classes: int,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    seed: int | None,
    name: str = SEQUENCE_MODEL,
) -> keras.Model:
    """The BiLSTM layers and the softmax over projected rows: ``[(W, E), mask] -> (W, K)``."""
    rows = keras.Input(shape=(window_size, width), name=PROJECTED_INPUT)
    mask = keras.Input(shape=(window_size,), dtype="bool", name=MASK_INPUT)
    outputs = _bilstm_stack(rows, mask, num_classes, hidden_size, num_layers, dropout, seed, "softmax")
    return keras.Model(inputs=[rows, mask], outputs=outputs, name=name)


def member_seed(seed: int | None, member: int) -> int | None:
    """The seed of ensemble member ``member`` (member 0 has the network's own)."""
    return None if seed is None else seed + 1000 * member


def _ensemble_sequence(window_size, width, num_classes, hidden_size, num_layers, dropout, seed, members):
    """``[(W, M x E), mask] -> (W, K)``: M member sequence models over their slices, probabilities averaged."""
    rows = keras.Input(shape=(window_size, width * members), name=PROJECTED_INPUT)
    mask = keras.Input(shape=(window_size,), dtype="bool", name=MASK_INPUT)
    outputs = []
    for m in range(members):
        member = build_sequence(
            window_size, width, num_classes, hidden_size, num_layers, dropout, member_seed(seed, m),
            name=f"{MEMBER_PREFIX}{m}",
        )
        share = FeatureSlice(m * width, (m + 1) * width, name=f"slice_{m}")(rows)
        outputs.append(member([share, mask]))
    return keras.Model(inputs=[rows, mask], outputs=layers.Average(name="mean")(outputs), name=SEQUENCE_MODEL)


def ensemble_members(network: keras.Model) -> list[keras.Model]:
    """The members of an ensemble network as single networks, with their current weights.

    A network that is no ensemble comes back alone (the same object).
    Training a member trains a copy: :func:`set_ensemble_weights` puts the
    members' weights back.
    """
    members = _member_models(network)
    if not members:
        return [network]
    projection = network.get_layer(PROJECTION_LAYER)
    kernel, bias = projection.get_weights()
    width = kernel.shape[1] // len(members)
    window, features = network.inputs[0].shape[1], network.inputs[0].shape[2]
    singles = []
    for m, member in enumerate(members):
        rows = keras.Input(shape=(window, features), name=FEATURES_INPUT)
        mask = keras.Input(shape=(window,), dtype="bool", name=MASK_INPUT)
        own = layers.Dense(width, kernel_initializer="zeros", name=PROJECTION_LAYER)  # weights set below
        clone = keras.models.clone_model(member)
        clone.name = SEQUENCE_MODEL
        single = keras.Model([rows, mask], clone([own(rows), mask]), name=network.name)
        own.set_weights([kernel[:, m * width : (m + 1) * width], bias[m * width : (m + 1) * width]])
        clone.set_weights(member.get_weights())
        singles.append(single)
    return singles


def set_ensemble_weights(network: keras.Model, singles: Sequence[keras.Model]) -> None:
    """Put the weights of single networks (from :func:`ensemble_members`) into the ensemble ``network``."""
    members = _member_models(network)
    if len(members) != len(singles):
        raise ValueError(f"Expected {len(members)} member networks. Received: {len(singles)}")
    set_member_weights(network, {
        m: (single.get_layer(PROJECTION_LAYER).get_weights(), single.get_layer(SEQUENCE_MODEL).get_weights())
        for m, single in enumerate(singles)
    })


def set_member_weights(network: keras.Model, weights: dict[int, tuple[list[Any], list[Any]]]) -> None:
    """Put members' weights into the ensemble ``network``: ``{member: (projection weights, sequence
    weights)}``, as a single network of :func:`ensemble_members` holds them; the others keep theirs."""
    members = _member_models(network)
    projection = network.get_layer(PROJECTION_LAYER)
    kernel, bias = projection.get_weights()
    width = kernel.shape[1] // len(members)
    for m, (own, sequence) in weights.items():
        kernel[:, m * width : (m + 1) * width], bias[m * width : (m + 1) * width] = own
        members[m].set_weights(sequence)
    projection.set_weights([kernel, bias])


def _member_models(network: keras.Model) -> list[keras.Model]:
    """The nested member models of an ensemble network's ``sequence`` model, in order (none for others)."""
    try:
        sequence = network.get_layer(SEQUENCE_MODEL)
    except ValueError:
        return []
    if not isinstance(sequence, keras.Model):
        return []
    members = [layer for layer in sequence.layers if layer.name.startswith(MEMBER_PREFIX)]
    return sorted(members, key=lambda layer: int(layer.name[len(MEMBER_PREFIX):]))


def ensemble_size_of(network: keras.Model) -> int:
    """How many averaged members ``network`` has (1 for a single network)."""
    return max(1, len(_member_models(network)))


def _offset(seed: int | None, offset: int) -> int | None:
    """A layer's own seed: the network's plus a fixed offset (below 1000, the member stride)."""
    return None if seed is None else seed + offset


def _lstm(hidden_size: int, dropout: float, seed: int | None, backwards: bool) -> layers.LSTM:
    """One direction of a BiLSTM layer, its initial weights and dropout masks drawn from ``seed``."""
    return layers.LSTM(
        hidden_size,
        return_sequences=True,
        dropout=dropout,
        go_backwards=backwards,
        seed=_offset(seed, 2),
        kernel_initializer=initializers.GlorotUniform(seed=seed),
        recurrent_initializer=initializers.Orthogonal(seed=_offset(seed, 1)),
    )


def _bilstm_stack(x, mask, num_classes, hidden_size, num_layers, dropout, seed, output_layer):
    for i in range(num_layers):
        x = layers.Bidirectional(
            _lstm(hidden_size, dropout, _offset(seed, 10 * i), backwards=False),
            backward_layer=_lstm(hidden_size, dropout, _offset(seed, 10 * i + 5), backwards=True),
            name=f"bilstm_{i}",
        )(x, mask=mask)
        if dropout > 0:
            x = layers.Dropout(dropout, seed=_offset(seed, 500 + i))(x)
    output = initializers.GlorotUniform(seed=_offset(seed, 700))
    if output_layer == "crf":
        emissions = layers.Dense(num_classes, kernel_initializer=output, name=EMISSIONS_LAYER)(x)
        return CRF(name=CRF_LAYER)(emissions, mask=mask)
    return layers.Dense(num_classes, activation="softmax", kernel_initializer=output, name="probabilities")(x)


def strip_compile_config(config: Any) -> Any:
    """Remove what a compiled model's JSON says about its loss and optimizer."""
    if isinstance(config, dict):
        return {
            k: strip_compile_config(v)
            for k, v in config.items()
            if k not in ("compile_config", "training_config")
        }
    return config


def model_from_json(
    json_string: str,
    custom_objects: dict | None = None,
    compile: bool = False,
    safe_mode: bool = True,
) -> keras.Model:
    """Rebuild a Keras model from its architecture JSON.

    Parameters
    ----------
    json_string : str
        What ``model.to_json()`` returned.
    custom_objects : dict, optional
        Extra classes or functions for deserialization.
    compile : bool, default False
        With False (the point of this function) the compile configuration
        (loss, optimizer, metrics) is dropped before deserializing, so a model
        compiled with a loss Keras cannot locate still rebuilds for inference.
        With True the configuration is kept and Keras compiles the model, which
        needs every object it names to be registered or in ``custom_objects``.
    safe_mode : bool, default True
        Keras safe mode: refuses ``Lambda`` layers and other arbitrary code.

    Returns
    -------
    keras.Model
        The uncompiled (or compiled) model, with freshly initialized weights.

    Examples
    --------
    >>> net = model_from_json(trained.to_json())  # doctest: +SKIP
    >>> net.set_weights(trained.get_weights())    # doctest: +SKIP
    """
    try:
        config = json.loads(json_string)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "Expected a Keras model JSON string (from model.to_json()). "
            f"Received something that is not JSON: {exc}"
        ) from exc
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            "Expected a Keras model JSON object with a 'class_name'. "
            f"Received: {str(json_string)[:80]!r}"
        )
    if not compile:
        config = strip_compile_config(config)
    # Keras draws a default seed from Python's global `random` for every unseeded initializer
    # and dropout generator a JSON names (networks built elsewhere); put its state back, so
    # rebuilding never moves the caller's random stream.
    state = random.getstate()
    try:
        return keras.saving.deserialize_keras_object(config, custom_objects=custom_objects, safe_mode=safe_mode)
    finally:
        random.setstate(state)
