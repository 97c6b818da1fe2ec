"""Driver side: training rows, streamed out of Spark into one compact copy.

``fit`` needs every training row on the driver, sorted by (document,
position). The rows arrive as Arrow record batches; each batch is converted as
it arrives and then dropped, so the driver holds the data once, in float32:

* dense features go into one preallocated ``(n, D)`` float32 array;
* sparse features (hashed TF-IDF and the like) stay sparse, as CSR
  (``indptr``, int32 ``indices``, float32 ``values``), and are densified only
  for the rows of one training batch at a time.

Rows are kept in arrival order; only the small key columns are sorted, and
:class:`FeatureRows` maps sorted row numbers to stored rows. So there is no
sorted copy of the features either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skol_spark.core import invalid
from skol_spark.core.vectors import dense_features, single_width, vector_struct_parts
from skol_spark.core.windows import document_lengths
from skol_spark.fit.collect import arrow_batches

__all__ = ["FeatureRows", "TrainingData", "collect_training_data", "arrow_to_training_data", "feature_storage"]

logger = logging.getLogger("skol_spark")

# Store features sparse when at most this share of the first batch's cells is
# stored explicitly: CSR costs 8 bytes per stored value against 4 per dense cell.
_SPARSE_DENSITY = 0.25


class FeatureRows:
    """Feature rows addressed in (document, position) order, stored once.

    Behaves like a read-only float32 ``(n, D)`` array for integer-array
    indexing: ``rows[idx]`` has shape ``idx.shape + (D,)``. That is all the
    window gathering needs.
    """

    def __init__(
        self,
        order: np.ndarray,
        width: int,
        dense: np.ndarray | None = None,
        csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if (dense is None) == (csr is None):
            raise ValueError("FeatureRows needs exactly one of dense or csr storage")
        self.order = np.asarray(order, dtype=np.int64)
        self.width = int(width)
        self.dense, self.csr = dense, csr

    @classmethod
    def from_dense(cls, features: np.ndarray) -> FeatureRows:
        """Rows already in order (tests, benchmarks)."""
        features = np.asarray(features, dtype=np.float32)
        return cls(np.arange(len(features)), features.shape[1], dense=features)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.order), self.width)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def is_sparse(self) -> bool:
        return self.csr is not None

    @property
    def nbytes(self) -> int:
        parts = [self.dense] if self.dense is not None else list(self.csr)
        return int(sum(p.nbytes for p in parts) + self.order.nbytes)

    def __len__(self) -> int:
        return len(self.order)

    def subset(self, rows: np.ndarray) -> FeatureRows:
        """These rows (sorted row numbers), sharing the storage: nothing is copied or densified."""
        return FeatureRows(self.order[rows], self.width, dense=self.dense, csr=self.csr)

    def __getitem__(self, index: Any) -> np.ndarray:
        index = np.asarray(index)
        if index.dtype == bool or not np.issubdtype(index.dtype, np.integer):
            raise TypeError("FeatureRows supports integer-array indexing only")
        stored = self.order[index.ravel()]
        if self.dense is not None:
            out = self.dense[stored]
        else:
            out = self._densify(stored)
        return out.reshape(index.shape + (self.width,))

    def csr_rows(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR ``(indptr, indices, values)`` of rows ``index`` (1-D), without densifying (sparse storage only)."""
        indptr, indices, values = self.csr
        counts, at = self.value_positions(self.order[np.asarray(index).ravel()])
        out_indptr = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=out_indptr[1:])
        return out_indptr, indices[at], values[at]

    def value_positions(self, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored values per row of ``stored``, and where each of them is in ``indices``/``values``."""
        indptr = self.csr[0]
        begin, end = indptr[stored], indptr[stored + 1]
        counts = end - begin
        # Position of each stored value: its row's begin plus its rank in the row.
        rank = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        return counts, np.repeat(begin, counts) + rank

    def _densify(self, stored: np.ndarray) -> np.ndarray:
        indices, values = self.csr[1], self.csr[2]
        out = np.zeros((len(stored), self.width), dtype=np.float32)
        counts, at = self.value_positions(stored)
        if len(at):
            out[np.repeat(np.arange(len(stored)), counts), indices[at]] = values[at]
        return out


@dataclass
class TrainingData:
    """Training rows in (document, position) order: features, labels, document lengths."""

    features: FeatureRows | np.ndarray
    labels: np.ndarray
    doc_lengths: np.ndarray

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])


class _FeatureSink:
    """Features of record batches appended in arrival order, dense or CSR."""

    def __init__(self, expected_rows: int | None) -> None:
        self.expected = expected_rows
        self.rows = 0
        self.width: int | None = None
        self.dense: np.ndarray | None = None
        self.sparse_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    def add(self, column: pa.Array) -> None:
        n = len(column)
        if n == 0:
            return
        if column.null_count:
            raise ValueError(f"{column.null_count} of {n} feature rows are null")
        parts = vector_struct_parts(column) if pa.types.is_struct(column.type) else None
        width = _width(column, parts)
        if self.width is None:
            self.width = width
            if _stored_sparse(n, width, parts):
                self.sparse_parts = []
            else:
                capacity = max(n, self.expected or 0)
                self.dense = np.empty((capacity, width), dtype=np.float32)  # paged in as filled
        elif width != self.width:
            raise ValueError(
                f"feature rows have different lengths (from {min(width, self.width)} to "
                f"{max(width, self.width)})"
            )
        if self.sparse_parts is not None:
            self.sparse_parts.append(_csr_piece(parts))
        else:
            if self.rows + n > len(self.dense):  # more rows than counted: grow once
                grown = np.empty((max(2 * len(self.dense), self.rows + n), width), np.float32)
                grown[: self.rows] = self.dense[: self.rows]
                self.dense = grown
            target = self.dense[self.rows : self.rows + n]
            if parts is not None and (parts.kind == 1).all():
                target[:] = parts.values.reshape(n, width)  # cast in place, no float32 temporary
            else:
                target[:] = dense_features(column)
        self.rows += n

    def finish(self, order: np.ndarray) -> FeatureRows:
        width = self.width or 0
        if self.sparse_parts is not None:
            counts = np.concatenate([p[0] for p in self.sparse_parts])
            indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            indices = np.concatenate([p[1] for p in self.sparse_parts])
            values = np.concatenate([p[2] for p in self.sparse_parts])
            self.sparse_parts = None
            return FeatureRows(order, width, csr=(indptr, indices, values))
        dense = self.dense if self.dense is not None else np.zeros((0, width), np.float32)
        if len(dense) != self.rows:
            dense = dense[: self.rows]
        return FeatureRows(order, width, dense=dense)


def feature_storage(column: pa.Array) -> tuple[int, bool]:
    """(width, stored sparse) of the rows a first batch's feature column starts: what training will hold."""
    parts = vector_struct_parts(column) if pa.types.is_struct(column.type) else None
    width = _width(column, parts)
    return width, _stored_sparse(len(column), width, parts)


def _stored_sparse(rows: int, width: int, parts: Any) -> bool:
    """Sparse storage when the vectors store at most _SPARSE_DENSITY of the cells."""
    return parts is not None and len(parts.values) <= _SPARSE_DENSITY * rows * max(1, width)


def _width(column: pa.Array, parts: Any) -> int:
    if parts is None:  # numeric lists; dense_features checks them when they are copied
        return dense_features(column.slice(0, 1)).shape[1]
    return single_width(parts.widths())


def _csr_piece(parts: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values per row, int32 column indices, float32 values) of one batch."""
    return parts.value_counts.astype(np.int64), parts.columns(np.int32), parts.values.astype(np.float32)


class _KeySink:
    """The small columns (document, position, label) of every batch, in arrival order."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self.chunks: dict[str, list[pa.Array]] = {name: [] for name in self.names}

    def add(self, batch: pa.RecordBatch) -> None:
        # Copied: a column read off a stream is a slice of the batch's whole
        # message body, and keeping it would keep that body (features too) alive.
        for name in self.names:
            self.chunks[name].append(pa.concat_arrays([batch.column(name)]))

    def table(self, schema: pa.Schema | None) -> pa.Table:
        if schema is None:
            schema = pa.schema([(n, pa.null()) for n in self.names])
        arrays = [pa.chunked_array(self.chunks[n], type=schema.field(n).type) for n in self.names]
        return pa.table(arrays, names=self.names)


def rows_from_batches(
    batches: Iterable[pa.RecordBatch],
    doc_id_col: str,
    position_col: str,
    label_col: str,
    features_col: str,
    expected_rows: int | None = None,
    schema: pa.Schema | None = None,
    handle_invalid: str = "error",
    width: int | None = None,
    num_classes: int | None = None,
) -> TrainingData:
    """Consume record batches (dropping each) into sorted :class:`TrainingData`.

    Invalid rows (see :mod:`skol_spark.core.invalid`; labels must be class indices
    below ``num_classes`` when given) raise :class:`InvalidRowError` naming the
    column, document and position with ``handle_invalid="error"``, and are
    left out otherwise; ``width`` is the expected feature length (None: the
    first row's).
    """
    names = {
        "docIdCol": doc_id_col, "positionCol": position_col, "labelCol": label_col, "featuresCol": features_col,
    }
    keys = _KeySink([doc_id_col, position_col, label_col])
    features = _FeatureSink(expected_rows)
    skipped = np.zeros(len(invalid.DEFECTS) + 1, dtype=np.int64)
    for batch in batches:
        schema = batch.schema
        docs, positions = batch.column(doc_id_col), batch.column(position_col)
        codes, width = invalid.row_defects(
            docs, positions, batch.column(features_col), width, sorted_rows=False,
            labels=batch.column(label_col), num_classes=num_classes,
        )
        bad = invalid.first_invalid(codes)
        if bad is not None:
            if handle_invalid == "error":
                raise invalid.InvalidRowError(
                    invalid.describe(codes[bad], docs, positions, bad, names, width)
                )
            skipped += np.bincount(codes, minlength=len(skipped))
            skipped[invalid.VALID] = 0
            batch = batch.filter(pa.array(codes == invalid.VALID))
        keys.add(batch)
        features.add(batch.column(features_col))
        del batch, docs, positions
    table = keys.table(schema)
    order = pc.sort_indices(table, sort_keys=[(doc_id_col, "ascending"), (position_col, "ascending")])
    docs = table.column(doc_id_col).take(order).combine_chunks()
    positions = table.column(position_col).take(order).combine_chunks()
    duplicate = invalid.duplicate_rows(docs, positions)
    if duplicate.any():
        if handle_invalid == "error":
            i = int(np.flatnonzero(duplicate)[0])
            raise invalid.InvalidRowError(
                invalid.describe(invalid.DUPLICATE, docs, positions, i, names, width)
                + " Positions must be unique within a document."
            )
        skipped[invalid.DUPLICATE] += int(duplicate.sum())
        keep = pa.array(~duplicate)
        order, docs, positions = order.filter(keep), docs.filter(keep), positions.filter(keep)
    if skipped.any():
        logger.warning(
            "fit left out %d invalid rows (handleInvalid=%r): %s",
            int(skipped.sum()),
            handle_invalid,
            invalid.summary(np.repeat(np.arange(len(skipped)), skipped)),
        )
    if len(docs) == 0 and skipped.any():
        raise ValueError(
            f"Every training row is invalid ({int(skipped.sum())} rows left out); nothing to fit on."
        )
    labels = table.column(label_col).take(order).to_numpy().astype(np.int32)
    return TrainingData(
        features=features.finish(order.to_numpy()),
        labels=labels,
        doc_lengths=document_lengths(docs),
    )


def arrow_to_training_data(
    table: pa.Table, doc_id_col: str, position_col: str, label_col: str, features_col: str, **options: Any
) -> TrainingData:
    """:func:`rows_from_batches` over an Arrow table already in memory."""
    return rows_from_batches(
        table.to_batches(), doc_id_col, position_col, label_col, features_col, table.num_rows,
        table.schema, **options,
    )


def collect_training_data(
    df: Any,
    doc_id_col: str,
    position_col: str,
    label_col: str,
    features_col: str,
    expected_rows: int | None = None,
    **options: Any,
) -> TrainingData:
    """Stream the four columns of ``df`` to the driver as sorted training rows.

    ``options`` go to :func:`rows_from_batches` (handle_invalid, width, num_classes).
    """
    selected = df.select(*[_column(df, c) for c in (doc_id_col, position_col, label_col, features_col)])
    return rows_from_batches(
        arrow_batches(selected), doc_id_col, position_col, label_col, features_col, expected_rows,
        **options,
    )


def _column(df: Any, name: str) -> Any:
    from pyspark.sql import functions as F

    return F.col(f"`{name}`")
