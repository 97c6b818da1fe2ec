"""Documents to windows and back (used by the driver and the executors).

A *block* is a run of rows already sorted by document and position: a 2-D
feature array plus the length of each document in order. Windows are index
arrays into that block, so features are gathered per batch and never copied
per window up front. Document boundaries are read off an Arrow column of ids;
everything else is numpy. Decoding feature vectors is :mod:`skol_spark.core.vectors`.
"""

from __future__ import annotations

from typing import Any

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
    "document_lengths",
    "document_starts",
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
    predict_batch_size: int,
    num_classes: int,
) -> np.ndarray:
    """Per-position class probabilities ``(n, K)`` for a block of whole documents.

    Windows of all documents in the block are batched together, ``predict_batch_size``
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
    accumulate_windows(forward, features, starts, lengths, window, predict_batch_size, sums, counts)
    return sums / counts[:, None]


def accumulate_windows(
    forward: Any,
    features: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    window: int,
    predict_batch_size: int,
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
    for lo in range(0, len(starts), predict_batch_size):
        s, n_real = starts[lo : lo + predict_batch_size], lengths[lo : lo + predict_batch_size]
        if gathers_itself:
            mask, rows = window_rows(s, n_real, window)
            probs = forward.from_rows(prepared, rows, mask)
        else:
            x, mask, rows = gather_windows(features, s, n_real, window)
            size = _bucket(len(s), predict_batch_size)
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


def document_lengths(doc_ids: pa.Array) -> np.ndarray:
    """Run lengths of equal consecutive ids (rows already grouped by document)."""
    if len(doc_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.diff(np.concatenate([[0], document_starts(doc_ids), [len(doc_ids)]]))
