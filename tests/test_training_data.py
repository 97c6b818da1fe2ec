"""Training rows streamed to the driver: one compact copy, dense or CSR, read in order."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from skol_spark.core.vectors import dense_features
from skol_spark.errors import InvalidRowError
from skol_spark.fit.training_data import (
    FeatureRows,
    arrow_to_training_data,
    collect_training_data,
    rows_from_batches,
)

VECTOR = pa.struct(
    [
        pa.field("type", pa.int8(), nullable=False),
        pa.field("size", pa.int32()),
        pa.field("indices", pa.list_(pa.field("element", pa.int32(), nullable=False))),
        pa.field("values", pa.list_(pa.field("element", pa.float64(), nullable=False))),
    ]
)


def vectors(rows: list[np.ndarray], sparse: list[bool]) -> pa.StructArray:
    """Spark's VectorUDT layout: dense rows carry values only, sparse rows size+indices+values."""
    kinds, sizes, indices, values = [], [], [], []
    for row, is_sparse in zip(rows, sparse):
        if is_sparse:
            nz = np.flatnonzero(row)
            kinds.append(0), sizes.append(len(row)), indices.append(nz.tolist()), values.append(row[nz].tolist())
        else:
            kinds.append(1), sizes.append(None), indices.append(None), values.append(row.tolist())
    return pa.StructArray.from_arrays(
        [
            pa.array(kinds, pa.int8()),
            pa.array(sizes, pa.int32()),
            pa.array(indices, VECTOR.field("indices").type),
            pa.array(values, VECTOR.field("values").type),
        ],
        fields=list(VECTOR),
    )


def batch(docs, positions, labels, features) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(docs), pa.array(positions, pa.int32()), pa.array(labels, pa.float64()), features],
        names=["doc", "pos", "label", "features"],
    )


def random_rows(rng, n, width, density):
    dense = rng.normal(size=(n, width)) * (rng.random((n, width)) < density)
    return [row for row in dense]


@pytest.mark.parametrize(
    "density, dense_every, expect_sparse",
    [(0.05, 10, True), (0.9, 2, False)],  # share of nonzeros; every k-th vector stored dense
)
def test_batches_in_any_order_give_sorted_rows(density, dense_every, expect_sparse):
    rng = np.random.default_rng(0)
    width, n = 40, 90
    rows = random_rows(rng, n, width, density)
    docs = [f"d{i % 7}" for i in range(n)]
    positions = list(rng.permutation(n))
    labels = [float(i % 3) for i in range(n)]
    sparse = [i % dense_every != 0 for i in range(n)]  # dense and sparse vectors mixed
    batches = [
        batch(docs[lo:hi], positions[lo:hi], labels[lo:hi], vectors(rows[lo:hi], sparse[lo:hi]))
        for lo, hi in [(60, 90), (0, 25), (25, 60)]  # arrival order differs from row order
    ]
    data = rows_from_batches(batches, "doc", "pos", "label", "features", expected_rows=n)

    assert data.features.is_sparse is expect_sparse
    order = sorted(range(n), key=lambda i: (docs[i], positions[i]))
    expected = np.stack([rows[i] for i in order]).astype(np.float32)
    np.testing.assert_array_equal(data.features[np.arange(n)], expected)
    np.testing.assert_array_equal(data.labels, [labels[i] for i in order])
    assert data.doc_lengths.tolist() == [sum(d == f"d{k}" for d in docs) for k in range(7)]
    # Any index shape: windows index with (B, W) arrays.
    idx = np.array([[0, 5, 9], [89, 1, 1]])
    np.testing.assert_array_equal(data.features[idx], expected[idx])


def test_same_rows_as_a_whole_table():
    rng = np.random.default_rng(1)
    rows = random_rows(rng, 50, 16, 0.5)
    table = pa.Table.from_batches(
        [batch([f"d{i % 4}" for i in range(50)], list(range(50)), [0.0] * 50, vectors(rows, [False] * 50))]
    )
    data = arrow_to_training_data(table, "doc", "pos", "label", "features")
    sorted_table = table.sort_by([("doc", "ascending"), ("pos", "ascending")])
    np.testing.assert_array_equal(
        data.features[np.arange(50)], dense_features(sorted_table.column("features"))
    )


def test_more_rows_than_counted_still_fit():
    rows = [np.arange(4.0) + i for i in range(10)]
    data = rows_from_batches(
        [batch(["a"] * 10, list(range(10)), [0.0] * 10, vectors(rows, [False] * 10))],
        "doc", "pos", "label", "features", expected_rows=3,
    )
    np.testing.assert_array_equal(data.features[np.arange(10)], np.stack(rows))


def test_rows_of_different_widths_across_batches_are_refused():
    first = batch(["a"], [0], [0.0], vectors([np.ones(4)], [False]))
    second = batch(["a"], [1], [0.0], vectors([np.ones(5)], [False]))
    with pytest.raises(
        InvalidRowError,
        match=r"column 'features': wrong feature length \(expected length 4\) at document 'a', pos=1",
    ):
        rows_from_batches([first, second], "doc", "pos", "label", "features")


def defective_batch():
    """One valid document 'a' (positions 0-3) and one row of every defect fit can meet."""
    ok = np.arange(4.0)
    rows = [
        ("a", 0, 0.0, ok), ("a", 1, 1.0, ok), ("a", 2, 2.0, ok), ("a", 3, 0.0, ok),
        (None, 0, 0.0, ok),  # null document
        ("b", None, 0.0, ok),  # null position
        ("b", 1, None, ok),  # null label
        ("b", 2, 7.0, ok),  # label outside 0..2
        ("b", 3, 0.5, ok),  # not a class index
        ("b", 4, 0.0, None),  # null features
        ("b", 5, 0.0, np.arange(3.0)),  # wrong length
        ("b", 6, 0.0, np.array([0.0, np.nan, 1.0, 2.0])),  # NaN feature
        ("b", 7, 0.0, np.array([0.0, np.inf, 1.0, 2.0])),  # infinite feature
        ("c", 1, 0.0, ok), ("c", 1, 1.0, ok),  # duplicate position: both rows go
        ("c", 2, 1.0, ok),
    ]
    features = vectors([r[3] if r[3] is not None else np.zeros(0) for r in rows], [False] * len(rows))
    valid = pa.array([r[3] is not None for r in rows])
    features = pa.StructArray.from_arrays(features.flatten(), fields=list(VECTOR), mask=pc.invert(valid))
    return batch([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], features)


@pytest.mark.parametrize("mode", ["skip", "keep"])
def test_invalid_rows_are_left_out_of_training(mode, caplog):
    with caplog.at_level("WARNING", logger="skol_spark"):
        data = rows_from_batches(
            [defective_batch()], "doc", "pos", "label", "features",
            handle_invalid=mode, width=4, num_classes=3,
        )
    assert data.doc_lengths.tolist() == [4, 1]  # document a whole, c's position 2 only
    assert data.labels.tolist() == [0, 1, 2, 0, 1]
    np.testing.assert_array_equal(data.features[np.arange(5)], np.tile(np.arange(4.0), (5, 1)))
    assert "fit left out 11 invalid rows" in caplog.text
    assert "'duplicate position': 2" in caplog.text and "'non-finite features': 2" in caplog.text


def test_every_row_invalid_is_a_clear_error():
    only_bad = defective_batch().slice(4)
    with pytest.raises(ValueError, match="Every training row is invalid"):
        rows_from_batches([only_bad.slice(0, 9)], "doc", "pos", "label", "features", handle_invalid="skip", width=4, num_classes=3)


@pytest.mark.parametrize(
    "row, match",
    [
        (4, "column 'doc_id': null document id at document None, pos=0"),
        (5, "column 'pos': null position at document 'b', pos=None"),
        (6, "column 'label': null label at document 'b', pos=1"),
        (7, "column 'label': label outside the model's classes at document 'b', pos=2"),
        (9, "column 'features': null features at document 'b', pos=4"),
        (11, "column 'features': non-finite features at document 'b', pos=6"),
    ],
)
def test_error_names_column_document_and_position(row, match):
    one = defective_batch().slice(row, 1)
    names = dict(doc_col="doc_id")  # messages use the caller's column names
    one = one.rename_columns(["doc_id", "pos", "label", "features"])
    with pytest.raises(InvalidRowError, match=match.replace("(", r"\(").replace(")", r"\)")):
        rows_from_batches([one], names["doc_col"], "pos", "label", "features", width=4, num_classes=3)


def test_feature_rows_index_with_integers_only():
    rows = FeatureRows.from_dense(np.ones((3, 2)))
    with pytest.raises(TypeError, match="integer-array indexing only"):
        rows[np.array([True, False, True])]


def test_streamed_collection_equals_spark_to_arrow(spark, train_df):
    """The streamed path (Spark's Arrow collect socket, batch by batch) loses and adds nothing."""
    columns = ["doc_id", "line_number", "label", "features"]
    small = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "37")  # many batches
    try:
        streamed = collect_training_data(train_df, *columns)
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", small)
    whole = arrow_to_training_data(train_df.select(*columns).toArrow(), *columns)
    n = len(whole.labels)
    assert len(streamed.labels) == n == train_df.count()
    np.testing.assert_array_equal(streamed.features[np.arange(n)], whole.features[np.arange(n)])
    np.testing.assert_array_equal(streamed.labels, whole.labels)
    np.testing.assert_array_equal(streamed.doc_lengths, whole.doc_lengths)


@pytest.mark.connect
def test_private_stream_and_public_fallback_give_the_same_rows(spark, train_df):
    """Both collection paths of spark_collect, on whichever pyspark this run has."""
    from skol_spark.fit import collect as spark_collect

    selected = train_df.select("doc_id", "line_number", "label", "features")

    def table(batches):
        whole = pa.Table.from_batches(list(batches))
        return whole.sort_by([("doc_id", "ascending"), ("line_number", "ascending")])

    streamed = table(spark_collect.arrow_batches(selected))
    public = table(spark_collect.arrow_batches(selected, public_only=True))
    assert streamed.num_rows == public.num_rows == train_df.count()
    assert streamed.equals(public)


def test_falling_back_from_the_private_stream_warns_once_per_process(spark, train_df, monkeypatch, caplog):
    import logging

    from skol_spark.fit import collect as spark_collect

    selected = train_df.select("doc_id", "line_number", "label", "features")
    monkeypatch.setattr(spark_collect, "_warned", False)
    monkeypatch.setattr(spark_collect, "_private_streams_known", lambda: False)
    caplog.set_level(logging.WARNING, logger="skol_spark")
    rows = [sum(b.num_rows for b in spark_collect.arrow_batches(selected)) for _ in range(2)]
    assert rows == [train_df.count()] * 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "one Arrow table" in r.getMessage()]
    assert len(warnings) == 1 and "private collect API" in warnings[0].getMessage()
    caplog.clear()
    list(spark_collect.arrow_batches(selected, public_only=True))  # asked for: no warning
    assert not caplog.records
