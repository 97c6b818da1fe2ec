"""Arrow columns of feature vectors to numpy: Spark ML Vectors and numeric arrays.

Spark sends a ``VectorUDT`` column as a struct ``(type, size, indices,
values)``: type 1 is a dense vector, type 0 a sparse one. These functions
split such a column into numpy arrays, or scatter it into one dense
``(n, D)`` array, without making a Python object per row. Used by fit on the
driver, by the executors and by the invalid-row checks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa

__all__ = ["VectorParts", "dense_features", "list_sizes", "single_width", "vector_struct_parts"]


def dense_features(column: pa.Array | pa.ChunkedArray, dtype=np.float32) -> np.ndarray:
    """A 2-D ``(n, D)`` array from an Arrow column of ML Vectors or numeric lists.

    Vectors arrive as Spark's VectorUDT struct ``(type, size, indices, values)``:
    type 1 is dense, type 0 sparse. Both are scattered into one preallocated
    array with numpy; no Python object is made per row. Raises ``ValueError``
    when rows differ in length or a row is null.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(column)
    if column.null_count:
        raise ValueError(f"{column.null_count} of {n} feature rows are null")
    if pa.types.is_struct(column.type):
        return _dense_from_vector_struct(column, n, dtype)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(column.type):
        sizes = list_sizes(column)
        width = single_width(sizes)
        values = column.flatten().to_numpy(zero_copy_only=False)
        return values.astype(dtype, copy=False).reshape(n, width)
    raise ValueError(f"features of Arrow type {column.type} are neither vectors nor numeric arrays")


def list_sizes(column: pa.Array) -> np.ndarray:
    offsets = np.asarray(column.offsets)
    return np.diff(offsets).astype(np.int64) if len(offsets) else np.zeros(0, np.int64)


def single_width(sizes: np.ndarray) -> int:
    if len(sizes) == 0:
        return 0
    lo, hi = int(sizes.min()), int(sizes.max())
    if lo != hi:
        raise ValueError(f"feature rows have different lengths (from {lo} to {hi})")
    return lo


class VectorParts(NamedTuple):
    """The numpy pieces of an Arrow column of Spark ML Vectors (VectorUDT structs)."""

    kind: np.ndarray  # per row: 1 dense, 0 sparse
    size: np.ndarray  # per row: declared size (sparse rows), 0 for dense rows
    value_counts: np.ndarray  # per row: number of stored values
    value_starts: np.ndarray  # per row: offset of its first value in ``values``
    values: np.ndarray  # all stored values, row after row (float64)
    row_of_value: np.ndarray  # per value: its row
    sparse_indices: np.ndarray  # column indices of the sparse rows' values, in row order

    def widths(self) -> np.ndarray:
        """Each row's vector length (null rows, whose type is missing, count as dense)."""
        dense = np.nan_to_num(self.kind.astype(np.float64), nan=1.0) == 1
        return np.where(dense, self.value_counts, self.size).astype(np.int64)

    def columns(self, dtype=np.int64) -> np.ndarray:
        """The column index of every stored value: its rank in a dense row, its index in a sparse one."""
        dense_rows = self.kind[self.row_of_value] == 1
        columns = np.empty(len(self.values), dtype=dtype)
        if dense_rows.any():
            rank = np.arange(len(self.values)) - np.repeat(self.value_starts, self.value_counts)
            columns[dense_rows] = rank[dense_rows]
        if (~dense_rows).any():
            # Sparse rows' indices, flattened in row order, line up with their values.
            columns[~dense_rows] = self.sparse_indices
        return columns


def vector_struct_parts(column: pa.StructArray) -> VectorParts:
    """Split a VectorUDT struct column ``(type, size, indices, values)`` into numpy arrays."""
    kind = column.field("type").to_numpy(zero_copy_only=False)
    values_col = column.field("values")
    value_counts = list_sizes(values_col)
    offsets = np.asarray(values_col.offsets)
    return VectorParts(
        kind=kind,
        size=column.field("size").fill_null(0).to_numpy(zero_copy_only=False),
        value_counts=value_counts,
        value_starts=(offsets[:-1] - offsets[0]) if len(offsets) else np.zeros(0, np.int64),
        values=values_col.flatten().to_numpy(zero_copy_only=False),
        row_of_value=np.repeat(np.arange(len(column)), value_counts),
        sparse_indices=column.field("indices").flatten().to_numpy(zero_copy_only=False),
    )


def _dense_from_vector_struct(column: pa.StructArray, n: int, dtype) -> np.ndarray:
    parts = vector_struct_parts(column)
    width = single_width(parts.widths())
    if n and (parts.kind == 1).all():  # all dense: the values are already row-major
        return parts.values.astype(dtype, copy=False).reshape(n, width)
    out = np.zeros((n, width), dtype=dtype)
    if n == 0:
        return out
    out[parts.row_of_value, parts.columns()] = parts.values
    return out
