"""Bad input rows: one definition of "invalid", shared by fit (driver) and transform (executors).

A row is invalid when the model cannot place it in a document or read its
features. ``row_defects`` gives each row a defect code (0 = valid), checked in
this order, so a row with several defects reports the first:

============================  ===============================================
``null document id``          ``docIdCol`` is null
``null position``             ``positionCol`` is null
``NaN position``              ``positionCol`` is NaN
``null features``             ``featuresCol`` is null
``wrong feature length``      the vector's length differs from the model's
``non-finite features``       a NaN or infinite feature value
``duplicate position``        another row of the same document has the same
                              position (every such row is invalid, so the
                              outcome never depends on row order)
``null label`` (fit)          ``labelCol`` is null or NaN
``label outside ...`` (fit)   not a class index 0..K-1 of the labels
============================  ===============================================

``handleInvalid`` then says what happens: "error" raises :class:`InvalidRowError`
naming the column, the document and the position of the first invalid row;
"skip" leaves the row out; "keep" keeps it at transform with null outputs (at fit, "keep" is "skip": a
row without a usable label or features cannot be trained on).
Only valid rows form the documents the network sees.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skol_spark.core.vectors import list_sizes, vector_struct_parts
from skol_spark.errors import InvalidRowError

__all__ = [
    "HANDLE_INVALID",
    "DEFECTS",
    "InvalidRowError",
    "row_defects",
    "duplicate_rows",
    "feature_widths",
    "describe",
]

HANDLE_INVALID = ("error", "skip", "keep")

(
    VALID, NULL_DOC, NULL_POSITION, NAN_POSITION, NULL_FEATURES, WRONG_LENGTH, NON_FINITE, DUPLICATE,
    NULL_LABEL, UNSEEN_LABEL,
) = range(10)
# code -> (what is wrong, which Param names the column)
DEFECTS = {
    NULL_DOC: ("null document id", "docIdCol"),
    NULL_POSITION: ("null position", "positionCol"),
    NAN_POSITION: ("NaN position", "positionCol"),
    NULL_FEATURES: ("null features", "featuresCol"),
    WRONG_LENGTH: ("wrong feature length", "featuresCol"),
    NON_FINITE: ("non-finite features", "featuresCol"),
    DUPLICATE: ("duplicate position", "positionCol"),
    NULL_LABEL: ("null label", "labelCol"),  # fit only
    UNSEEN_LABEL: ("label outside the model's classes", "labelCol"),  # fit only
}


def feature_widths(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the vector's length (0 for null rows) and whether all its values are finite."""
    n = len(column)
    if pa.types.is_struct(column.type):
        # Null rows have no values; their widths are meaningless and masked by the caller.
        parts = vector_struct_parts(column)
        widths, values, counts = parts.widths(), parts.values, parts.value_counts
    else:
        counts = list_sizes(column) if n else np.zeros(0, np.int64)
        widths = counts.copy()
        values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    bad_values = ~np.isfinite(values)
    if bad_values.any():
        row_of_value = np.repeat(np.arange(n), counts)
        finite = np.bincount(row_of_value[bad_values], minlength=n) == 0
    else:
        finite = np.ones(n, dtype=bool)
    return widths, finite


def row_defects(
    docs: pa.Array,
    positions: pa.Array,
    features: pa.Array,
    width: int | None,
    sorted_rows: bool = True,
    labels: pa.Array | None = None,
    num_classes: int | None = None,
) -> tuple[np.ndarray, int | None]:
    """Defect code per row (0 = valid) and the feature width used.

    Duplicate positions are found only when ``sorted_rows``: rows grouped by
    document and sorted by position within it (as Spark's sort leaves them,
    nulls first and NaN last); unsorted rows (fit) are checked with
    :func:`duplicate_rows` once sorted. ``width`` None means the first non-null
    row's width is the expected one (fit without a model or vector metadata).
    ``labels`` (fit) are checked to be class indices, below ``num_classes``
    when given.
    """
    n = len(docs)
    codes = np.zeros(n, dtype=np.int8)
    widths, finite = feature_widths(features)
    features_null = _nulls(features)
    if width is None:
        candidates = np.flatnonzero(~features_null)
        width = int(widths[candidates[0]]) if len(candidates) else None
    pos = positions.to_numpy(zero_copy_only=False)
    pos_null = _nulls(positions)
    pos_nan = np.zeros(n, dtype=bool)
    if pos.dtype.kind == "f":
        pos_nan = np.isnan(pos) & ~pos_null
    elif pos.dtype == object:  # ints with nulls come back as objects
        pos = np.where(pos_null, 0, pos).astype(np.int64)
    checks = [
        (NULL_DOC, _nulls(docs)),
        (NULL_POSITION, pos_null),
        (NAN_POSITION, pos_nan),
        (NULL_FEATURES, features_null),
        (WRONG_LENGTH, ~features_null & (widths != (width if width is not None else -1))),
        (NON_FINITE, ~features_null & ~finite),
    ]
    if sorted_rows:
        checks.append((DUPLICATE, _duplicates(docs, pos, ~(_nulls(docs) | pos_null | pos_nan))))
    if labels is not None:
        checks += _label_checks(labels, num_classes)
    for code, rows in reversed(checks):  # the first check wins
        codes[rows] = code
    return codes, width


def _label_checks(labels: pa.Array, num_classes: int | None) -> list[tuple[int, np.ndarray]]:
    """Rows whose label is null or NaN, and rows whose label is not a class index."""
    values = labels.to_numpy(zero_copy_only=False).astype(np.float64)
    null = np.isnan(values)
    whole = ~null & (values == np.floor(np.where(null, 0, values))) & (values >= 0)
    if num_classes is not None:
        whole &= values < num_classes
    return [(NULL_LABEL, null), (UNSEEN_LABEL, ~null & ~whole)]


def _nulls(column: pa.Array) -> np.ndarray:
    if column.null_count == 0:
        return np.zeros(len(column), dtype=bool)
    return column.is_null().to_numpy(zero_copy_only=False)


def duplicate_rows(docs: pa.Array, positions: pa.Array) -> np.ndarray:
    """Rows sharing their (document, position) with another row; rows sorted by both, no nulls."""
    return _duplicates(docs, positions.to_numpy(zero_copy_only=False), np.ones(len(docs), dtype=bool))


def _duplicates(docs: pa.Array, pos: np.ndarray, keyed: np.ndarray) -> np.ndarray:
    """Rows whose (document, position) another keyed row shares; rows sorted by both."""
    n = len(pos)
    if n < 2:
        return np.zeros(n, dtype=bool)
    same_doc = pc.equal(docs.slice(1), docs.slice(0, n - 1)).fill_null(False).to_numpy(zero_copy_only=False)
    pair = same_doc & (pos[1:] == pos[:-1]) & keyed[1:] & keyed[:-1]
    out = np.zeros(n, dtype=bool)
    out[1:] |= pair
    out[:-1] |= pair
    return out


def describe(
    code: int, docs: pa.Array, positions: pa.Array, row: int, columns: dict[str, str], width: int | None
) -> str:
    """A one-line message for an invalid row: the defect, its column, document and position."""
    what, param = DEFECTS[int(code)]
    column = columns[param]
    doc, position = docs[row].as_py(), positions[row].as_py()
    detail = f" (expected length {width})" if code == WRONG_LENGTH else ""
    return (
        f"Invalid row in column {column!r}: {what}{detail} at document {doc!r}, "
        f"{columns['positionCol']}={position!r}. Fix the input, or set handleInvalid='skip' "
        "to leave such rows out (or 'keep' to keep them with null predictions at transform)."
    )


def first_invalid(codes: np.ndarray) -> int | None:
    bad = np.flatnonzero(codes)
    return int(bad[0]) if len(bad) else None


def summary(codes: np.ndarray) -> dict[str, int]:
    """How many rows of each defect, for logs."""
    counts = np.bincount(codes.astype(np.int64), minlength=len(DEFECTS) + 1)
    return {DEFECTS[c][0]: int(counts[c]) for c in DEFECTS if counts[c]}
