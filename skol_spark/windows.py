"""Documents to windows and back, in numpy only (used by the driver and the executors).

A *block* is a run of rows already sorted by document and position: a 2-D
feature array plus the length of each document in order. Windows are index
arrays into that block, so features are gathered per batch and never copied
per window up front.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "window_starts",
    "window_index",
    "gather_windows",
    "predict_block",
    "accumulate_windows",
    "stream_windows",
    "dense_features",
    "document_lengths",
    "document_starts",
    "first_duplicate_position",
    "vector_struct_parts",
]


def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Start offsets of the windows covering a document of ``length`` positions.

    Windows step by ``stride``; the last one is aligned to the document's end,
    so only documents shorter than ``window`` need padding.
    """
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - window + 1, stride, dtype=np.int64)
    if starts[-1] + window < length:
        starts = np.append(starts, length - window)
    return starts


def window_index(
    doc_lengths: np.ndarray, window: int, stride: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows over a block: start row, number of real positions, and document of each."""
    doc_lengths = np.asarray(doc_lengths, dtype=np.int64)
    doc_offsets = np.concatenate([[0], np.cumsum(doc_lengths)[:-1]]).astype(np.int64)
    starts, lengths, docs = [], [], []
    for doc, (offset, length) in enumerate(zip(doc_offsets, doc_lengths)):
        local = window_starts(int(length), window, stride)
        starts.append(offset + local)
        lengths.append(np.minimum(window, length - local))
        docs.append(np.full(len(local), doc, dtype=np.int64))
    if not starts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(starts), np.concatenate(lengths), np.concatenate(docs)


def window_rows(starts: np.ndarray, lengths: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mask ``(B, W)`` of real steps and their row index ``(B, W)`` (-1 where padded)."""
    steps = np.arange(window)
    mask = steps[None, :] < lengths[:, None]
    return mask, np.where(mask, starts[:, None] + steps[None, :], -1)


def gather_windows(
    features: np.ndarray, starts: np.ndarray, lengths: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows ``(B, W, D)``, their mask ``(B, W)`` and row index ``(B, W)``.

    Padded steps hold zeros and ``mask == False``; their row index is -1.
    """
    mask, rows = window_rows(starts, lengths, window)
    gathered = features[np.where(mask, rows, 0)]
    gathered[~mask] = 0
    return gathered, mask, rows


def _bucket(n: int, limit: int) -> int:
    """Batch size to pad ``n`` windows to: one small shape or the full one.

    Two shapes mean at most two traces of the compiled forward pass per
    worker, while a small remainder is not padded to a full batch.
    """
    small = min(32, limit)
    return small if n <= small else max(limit, n)


def predict_block(
    forward: Any,
    features: np.ndarray,
    doc_lengths: np.ndarray,
    window: int,
    stride: int,
    batch_windows: int,
    num_classes: int,
) -> np.ndarray:
    """Per-position class probabilities ``(n, K)`` for a block of whole documents.

    Windows of all documents in the block are batched together, ``batch_windows``
    per ``forward`` call. ``forward`` is either a callable on numpy windows
    ``(x (B, W, D), mask (B, W))``, whose calls are padded to a fixed bucket
    shape, or an object with ``prepare(features)`` and
    ``from_rows(prepared, rows, mask)`` that gathers the windows itself.
    Positions covered by several windows get the mean of their probabilities.
    """
    n = features.shape[0]
    sums = np.zeros((n, num_classes), dtype=np.float64)
    counts = np.zeros(n, dtype=np.float64)
    starts, lengths, _ = window_index(doc_lengths, window, stride)
    accumulate_windows(forward, features, starts, lengths, window, batch_windows, sums, counts)
    return sums / counts[:, None]


def accumulate_windows(
    forward: Any,
    features: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    window: int,
    batch_windows: int,
    sums: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Add each window's per-step probabilities into ``sums`` ``(n, K)`` and ``counts`` ``(n,)``.

    ``starts`` and ``lengths`` are row offsets into ``features`` and the real
    steps of each window; ``forward`` is as in :func:`predict_block`.
    """
    if len(starts) == 0:
        return
    n, num_classes = sums.shape
    gathers_itself = hasattr(forward, "from_rows")
    prepared = forward.prepare(features) if gathers_itself else None
    for lo in range(0, len(starts), batch_windows):
        s, l = starts[lo : lo + batch_windows], lengths[lo : lo + batch_windows]
        if gathers_itself:
            mask, rows = window_rows(s, l, window)
            probs = forward.from_rows(prepared, rows, mask)
        else:
            x, mask, rows = gather_windows(features, s, l, window)
            size = _bucket(len(s), batch_windows)
            if size > len(s):
                x = np.concatenate([x, np.zeros((size - len(s),) + x.shape[1:], x.dtype)])
                mask = np.concatenate([mask, np.zeros((size - len(s), window), bool)])
            probs = np.asarray(forward(x, mask))[: len(s)]
        valid = rows >= 0
        flat_rows, flat_probs = rows[valid], probs[valid]
        for k in range(num_classes):
            sums[:, k] += np.bincount(flat_rows, weights=flat_probs[:, k], minlength=n)
        counts += np.bincount(flat_rows, minlength=n)


def stream_windows(
    doc_lengths: np.ndarray,
    window: int,
    stride: int,
    head_offset: int = 0,
    head_done: int = 0,
    last_open: bool = False,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Windows to run over one block of a stream of rows sorted by document.

    The block's first document may continue one begun in earlier blocks: its
    first row here is its row ``head_offset``, and its first ``head_done``
    windows (of :func:`window_starts`) have already run. With ``last_open``,
    the block's last document may go on in the next block, so only its windows
    that end inside the block run now; the final, end-aligned window of
    :func:`window_starts` waits until the document's length is known. Run to
    the end, the stream runs exactly the windows of :func:`window_index` on
    whole documents, in the same order.

    Returns the windows' block-relative starts and real lengths, how many rows
    at the end of the block later windows still need (``keep``, at most
    ``window``; 0 unless ``last_open``), and the last document's windows run so
    far (its ``head_done`` in the next block).
    """
    doc_lengths = np.asarray(doc_lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(doc_lengths)[:-1]]).astype(np.int64)
    starts, lengths = [], []
    keep = done = 0
    last = len(doc_lengths) - 1
    for d, (offset, rows) in enumerate(zip(offsets.tolist(), doc_lengths.tolist())):
        head, done = (head_offset, head_done) if d == 0 else (0, 0)
        seen = head + rows
        if d == last and last_open:
            local = np.arange(done * stride, seen - window + 1, stride, dtype=np.int64)
            keep = min(seen, window)
        else:
            local = window_starts(seen, window, stride)[done:]
        starts.append(offset - head + local)
        lengths.append(np.minimum(window, seen - local))
        done += len(local)
    if not starts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, 0, 0
    return np.concatenate(starts), np.concatenate(lengths), keep, done


def document_starts(doc_ids: pa.Array) -> np.ndarray:
    """Row offsets (> 0) where a new document begins, rows being grouped by document."""
    n = len(doc_ids)
    if n < 2:
        return np.zeros(0, dtype=np.int64)
    changed = pc.not_equal(doc_ids.slice(1), doc_ids.slice(0, n - 1))
    return np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1


def first_duplicate_position(doc_ids: pa.Array, positions: np.ndarray) -> int | None:
    """Row ``i`` whose (document, position) row ``i + 1`` repeats, or None.

    Rows must be grouped by document and sorted by position within it.
    """
    if len(positions) < 2:
        return None
    same_doc = np.ones(len(positions) - 1, dtype=bool)
    same_doc[document_starts(doc_ids) - 1] = False
    duplicate = same_doc & (positions[1:] == positions[:-1])
    return int(np.flatnonzero(duplicate)[0]) if duplicate.any() else None


def document_lengths(doc_ids: pa.Array) -> np.ndarray:
    """Run lengths of equal consecutive ids (rows already grouped by document)."""
    if len(doc_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.diff(np.concatenate([[0], document_starts(doc_ids), [len(doc_ids)]]))


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
        sizes = _list_sizes(column)
        width = single_width(sizes)
        values = column.flatten().to_numpy(zero_copy_only=False)
        return values.astype(dtype, copy=False).reshape(n, width)
    raise ValueError(f"features of Arrow type {column.type} are neither vectors nor numeric arrays")


def _list_sizes(column: pa.Array) -> np.ndarray:
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
    value_counts = _list_sizes(values_col)
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


def iter_slices(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    for lo in range(0, n, size):
        yield slice(lo, min(n, lo + size))
