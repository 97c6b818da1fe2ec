"""Driver side: training a projected network on sparse rows, at a cost independent of their width.

A batch of windows holds its distinct rows once, as a ``tf.SparseTensor``
whose columns are renumbered to the feature columns the batch uses (``C`` of
them, ``columns`` naming each). The projection multiplies those rows by the
``C`` kernel rows it gathers, so the kernel's gradient is row-sparse
(``tf.IndexedSlices`` over the used columns), and :class:`LazyAdam` updates
only those rows and their moments. Neither the forward pass, nor the
gradient, nor the update ever touches the ``D x E`` kernel whole: a step costs
the same at 2^12 and at 2^18 hashed features.

The training model shares the network's layers; it is never saved (the
network is), so its layer and optimizer need no serialization.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
import numpy as np

from skol_spark.fit.training_data import TrainingData
from skol_spark.nn.network import MASK_INPUT
from skol_spark.nn.projection import split_network

__all__ = ["LazyAdam", "sparse_training_model", "batch_inputs", "row_sparse_batch", "RowSparseBatch"]

ROWS_INPUT, COLUMNS_INPUT, ROW_INDEX_INPUT = "rows", "columns", "row_index"


class LazyAdam(keras.optimizers.Adam):
    """Adam that updates only the rows a row-sparse gradient names (TensorFlow backend).

    A dense gradient gets Adam's update. A ``tf.IndexedSlices`` gradient (the
    projection kernel's, from :func:`sparse_training_model`) updates the first
    and second moments and the weights of its rows only, with the usual bias
    correction; the other rows keep their moments until a batch uses them
    (as ``tf.keras``'s former ``LazyAdam`` and PyTorch's ``SparseAdam`` do).
    Dense Adam would instead rewrite all ``D x E`` weights and both moments
    every step.
    """

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        import tensorflow as tf

        if not isinstance(gradient, tf.IndexedSlices) or self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        # Repeated rows (not made by sparse_training_model, but legal) are summed first.
        rows, position = tf.unique(gradient.indices)
        values = tf.math.unsorted_segment_sum(tf.cast(gradient.values, dtype), position, tf.shape(rows)[0])
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = tf.cast(learning_rate, dtype) * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        m_rows = beta_1 * tf.gather(m.value, rows) + (1 - beta_1) * values
        v_rows = beta_2 * tf.gather(v.value, rows) + (1 - beta_2) * tf.square(values)
        self.assign(m, tf.IndexedSlices(m_rows, rows))
        self.assign(v, tf.IndexedSlices(v_rows, rows))
        self.assign_sub(variable, tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))


class _RowSparseProjection(keras.layers.Layer):
    """``network``'s projection over rows whose columns are renumbered to ``columns``.

    ``rows`` is ``(U, C)`` sparse, ``columns`` the ``C`` kernel rows it uses:
    ``rows @ kernel[columns] + bias`` equals the projection of the rows in
    their original ``D`` columns.
    """

    def __init__(self, projection: keras.layers.Dense, **kwargs: Any):
        super().__init__(**kwargs)
        self.projection = projection

    def call(self, rows: Any, columns: Any) -> Any:
        import tensorflow as tf

        out = tf.sparse.sparse_dense_matmul(rows, tf.gather(self.projection.kernel, columns))
        return out + self.projection.bias if self.projection.use_bias else out


def sparse_training_model(network: keras.Model) -> keras.Model:
    """A model sharing ``network``'s layers: ``[rows (U, C), columns (C,), row index (B, W), mask] -> (B, W, K)``.

    ``network`` must be projected (:func:`skol_spark.nn.projection.split_network`).
    The rows are projected through the kernel rows of their columns only,
    windows of projected rows are gathered in the graph and run through the
    ``sequence`` model; training it trains ``network``.
    """
    projection, sequence = split_network(network)
    window = network.inputs[0].shape[1]
    rows = keras.Input(shape=(None,), sparse=True, name=ROWS_INPUT)
    columns = keras.Input(shape=(), dtype="int32", name=COLUMNS_INPUT)
    index = keras.Input(shape=(window,), dtype="int32", name=ROW_INDEX_INPUT)
    mask = keras.Input(shape=(window,), dtype="bool", name=MASK_INPUT)
    projected = _RowSparseProjection(projection, name="row_sparse_projection")(rows, columns)
    windows = keras.ops.take(projected, index, axis=0)
    return keras.Model(
        [rows, columns, index, mask], sequence([windows, mask]), name="skol_bilstm_sparse_training"
    )


def row_sparse_batch(data: TrainingData, rows: np.ndarray, mask: np.ndarray) -> RowSparseBatch:
    """The distinct rows of windows whose row index is ``rows`` ``(B, W)``, stored once as COO over
    the distinct columns they use (numpy; both training backends build their inputs from it)."""
    distinct, inverse = np.unique(rows[mask], return_inverse=True)
    index = np.zeros(rows.shape, dtype=np.int32)
    index[mask] = inverse
    indptr, columns, values = data.features.csr_rows(distinct)
    used, renumbered = np.unique(columns, return_inverse=True)
    at_row = np.repeat(np.arange(len(distinct)), np.diff(indptr))
    return RowSparseBatch(index, at_row, renumbered, np.asarray(values, np.float32), used, len(distinct))


class RowSparseBatch(NamedTuple):
    """Windows over distinct rows: ``index`` ``(B, W)`` into the ``rows`` distinct rows, whose
    stored values sit at ``(at_row, at_column)``, ``at_column`` indexing ``columns`` (the feature
    columns used, ascending)."""

    index: np.ndarray
    at_row: np.ndarray
    at_column: np.ndarray
    values: np.ndarray
    columns: np.ndarray
    rows: int


def batch_inputs(data: TrainingData, rows: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """The inputs of :func:`sparse_training_model` for windows whose row index is ``rows`` ``(B, W)``.

    The windows' distinct rows are stored once, with their columns renumbered
    to the distinct columns they use.
    """
    import tensorflow as tf

    batch = row_sparse_batch(data, rows, mask)
    at = np.stack([batch.at_row, batch.at_column], axis=1)
    sparse = tf.SparseTensor(at.astype(np.int64), batch.values, (batch.rows, len(batch.columns)))
    return {
        ROWS_INPUT: sparse,
        COLUMNS_INPUT: batch.columns.astype(np.int32),
        ROW_INDEX_INPUT: batch.index,
        MASK_INPUT: mask,
    }
