"""The network's input projection, applied to each feature row once, and the forward pass over a block's rows.

A network built with ``embedding_size`` E > 0 (:func:`skol_spark.nn.network.build_network`)
is ``features (W, D) -> projection (Dense D -> E) -> sequence [(W, E), mask]``.
The projection acts on each position on its own, so a block of rows can be
projected once, sparse rows with a CSR x dense product that never makes the
``(n, D)`` dense array, and windows are gathered from the ``(n, E)`` result:
the BiLSTM never sees D, and a position covered by several windows is
projected once, not once per window.

Used on executors (:mod:`skol_spark.transform.predict`, which imports it lazily) and
on the driver (training's validation and rebuild check).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse

from skol_spark.core.vectors import dense_features, single_width, vector_struct_parts

# Layer names build_network gives the projection and the nested sequence model.
PROJECTION_LAYER = "projection"
SEQUENCE_MODEL = "sequence"

__all__ = ["split_network", "arrow_rows", "csr_matrix", "project_rows", "Projection", "RowsForward", "make_forward"]


def split_network(model: Any) -> tuple[Any, Any] | None:
    """``(projection layer, sequence model)`` of a projected network, else None.

    Only the exact shape :func:`~skol_spark.nn.network.build_network` makes is
    split: two inputs, a linear ``Dense`` named ``projection`` on the features
    and a nested model named ``sequence`` on ``[projected rows, mask]``.
    Anything else (format 1 saves, which have no projection, and networks
    wrapped with ``fromKeras`` that lack one) runs whole over ``(n, D)`` rows.
    """
    import keras

    layers = {layer.name: layer for layer in model.layers}
    projection, sequence = layers.get(PROJECTION_LAYER), layers.get(SEQUENCE_MODEL)
    if len(model.layers) != 4 or len(model.inputs) != 2 or projection is None or sequence is None:
        return None
    if not isinstance(projection, keras.layers.Dense) or not isinstance(sequence, keras.Model):
        return None
    if projection.get_config().get("activation") != "linear":
        return None
    if len(sequence.inputs) != 2 or sequence.inputs[0].shape[-1] != projection.units:
        return None
    return projection, sequence


def csr_matrix(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, width: int) -> Any:
    """A float32 scipy CSR matrix over existing arrays (no copy when dtypes already fit)."""
    return scipy.sparse.csr_matrix(
        (np.asarray(values, np.float32), indices, indptr), shape=(len(indptr) - 1, width)
    )


def arrow_rows(column: pa.Array | pa.ChunkedArray) -> tuple[Any, int]:
    """A batch's feature rows and their width: CSR when any row is a sparse vector, else dense float32.

    Raises ``ValueError`` (as :func:`skol_spark.core.windows.dense_features`) when
    rows differ in length or one is null.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(column)
    if pa.types.is_struct(column.type) and n and not column.null_count:
        parts = vector_struct_parts(column)
        if not (parts.kind == 1).all():
            width = single_width(parts.widths())
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(parts.value_counts, out=indptr[1:])
            return csr_matrix(indptr, parts.columns(np.int32), parts.values, width), width
    dense = dense_features(column)
    return dense, dense.shape[1]


def project_rows(rows: Any, kernel: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``rows @ kernel + bias`` as float32 ``(n, E)``; ``rows`` dense ``(n, D)`` or scipy sparse."""
    out = np.asarray(rows @ kernel, dtype=np.float32)
    if bias is not None:
        out += bias
    return out


class Projection:
    """A projection layer's weights as numpy, applied to blocks of rows.

    The weights are read once; :meth:`refresh` rereads them (during training,
    where they change between epochs).
    """

    def __init__(self, layer: Any):
        self.layer = layer
        self.units = int(layer.units)
        self._weights: tuple[np.ndarray, np.ndarray | None] | None = None

    def refresh(self) -> None:
        self._weights = None

    def __call__(self, rows: Any) -> np.ndarray:
        if self._weights is None:
            import keras

            kernel = keras.ops.convert_to_numpy(self.layer.kernel).astype(np.float32)
            bias = None
            if self.layer.use_bias:
                bias = keras.ops.convert_to_numpy(self.layer.bias).astype(np.float32)
            self._weights = (kernel, bias)
        return project_rows(rows, *self._weights)


class RowsForward:
    """The network over windows gathered inside TensorFlow from a block's feature rows.

    The block's features become a tensor once; each call passes only a
    ``(B, W)`` row index and mask, and ``tf.gather`` builds the windows in the
    graph. No ``(B, W, D)`` numpy batch is made or copied, and one
    shape-polymorphic trace serves every batch size.

    A projected network (:func:`skol_spark.nn.projection.split_network`) runs in
    two parts: ``projection`` turns a block's rows (dense or CSR) into
    ``(n, E)`` rows once, and the windows gathered from those run through the
    ``sequence`` model. Other networks run whole over ``(n, D)`` rows.
    """

    def __init__(self, model: Any, device: str | None = None):
        import tensorflow as tf

        self._device = device
        self.model = model
        split = split_network(model)
        self.projection = None
        if split is not None:
            self.projection, model = Projection(split[0]), split[1]
        window, num_features = model.inputs[0].shape[1], model.inputs[0].shape[2]
        with_mask = len(model.inputs) == 2

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, num_features], tf.float32),
                tf.TensorSpec([None, window], tf.int32),
                tf.TensorSpec([None, window], tf.bool),
            ],
            reduce_retracing=True,
        )
        def forward(features, rows, mask):
            x = tf.gather(features, tf.maximum(rows, 0)) * tf.cast(mask, tf.float32)[..., None]
            return model([x, mask], training=False) if with_mask else model(x, training=False)

        self._forward = forward
        self._tf = tf

    def _scope(self) -> Any:
        return self._tf.device(self._device) if self._device else contextlib.nullcontext()

    def prepare(self, features: np.ndarray) -> Any:
        with self._scope():
            return self._tf.convert_to_tensor(features, dtype=self._tf.float32)

    def from_rows(self, prepared: Any, rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with self._scope():
            return self._forward(prepared, rows.astype(np.int32), mask).numpy()


def make_forward(model: Any, device: str | None = None) -> Any:
    """The compiled forward pass: windows gathered in-graph on TensorFlow (on ``device``, a
    TensorFlow device name, when given), else numpy windows."""
    import keras

    if keras.backend.backend() == "tensorflow":
        return RowsForward(model, device)
    if len(model.inputs) == 2:
        return lambda x, m: keras.ops.convert_to_numpy(model([x, m], training=False))
    return lambda x, m: keras.ops.convert_to_numpy(model(x, training=False))
