"""Structured Streaming: fit and transform refuse a stream with their own error; foreachBatch labels
a file source like a batch transform; CompleteDocumentsLabeler holds split documents back until whole."""

import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TINY, small_model

from skol_spark import BiLSTMClassifier
from skol_spark.compat.shims import arrow_to_spark
from skol_spark.errors import StreamingInputError
from skol_spark.stages.streaming import CompleteDocumentsLabeler

WIDTH = 8


def documents(lengths: dict[str, int], seed: int = 0) -> pa.Table:
    """Rows of documents of the given lengths: doc_id, line_number, label, features, is_last."""
    rng = np.random.default_rng(seed)
    docs = [d for d, n in lengths.items() for _ in range(n)]
    positions = [i for n in lengths.values() for i in range(n)]
    features = rng.normal(size=(len(docs), WIDTH)).astype(np.float32)
    return pa.table({
        "doc_id": docs,
        "line_number": pa.array(positions, pa.int32()),
        "label": pa.array([float(i % 3) for i in positions]),
        "features": pa.array(list(features), pa.list_(pa.float32())),
        "is_last": [i == lengths[d] - 1 for d, i in zip(docs, positions)],
    })


def write_files(directory, tables: list[pa.Table]) -> None:
    """One Parquet file per table, each modified a second after the one before: the file source
    takes files in modification-time order, and files written within one clock tick tie."""
    directory.mkdir(parents=True, exist_ok=True)
    first = time.time() - len(tables)
    for k, table in enumerate(tables):
        path = directory / f"part-{k:03d}.parquet"
        pq.write_table(table, path)
        os.utime(path, (first + k, first + k))


def pieces(table: pa.Table, cuts: list[tuple[str, int, int]]) -> pa.Table:
    """The rows of (doc_id, first position, end position) ranges, in that order."""
    rows = table.to_pylist()
    return pa.Table.from_pylist(
        [r for doc, lo, hi in cuts for r in rows if r["doc_id"] == doc and lo <= r["line_number"] < hi],
        schema=table.schema,
    )


def labels_of(df) -> dict:
    """{(doc_id, line_number): (prediction, probability)}, one entry per row (duplicates fail)."""
    rows = df.select("doc_id", "line_number", "prediction", "probability").collect()
    out = {(r.doc_id, r.line_number): (r.prediction, np.asarray(r.probability.toArray())) for r in rows}
    assert len(out) == len(rows), "a row was labeled twice"
    return out


def assert_same_labels(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key, (prediction, probability) in expected.items():
        assert got[key][0] == prediction, key
        assert np.allclose(got[key][1], probability, atol=1e-6), key


def stream_of(spark, source, files_per_trigger: int = 1):
    return (spark.readStream.schema(spark.read.parquet(str(source)).schema)
            .option("maxFilesPerTrigger", files_per_trigger).parquet(str(source)))


def run(stream, function, checkpoint) -> None:
    query = stream.writeStream.foreachBatch(function).option("checkpointLocation", str(checkpoint)).start()
    try:
        query.processAllAvailable()
    finally:
        query.stop()


@pytest.mark.core
def test_transform_of_a_stream_names_foreach_batch(spark, tmp_path):
    write_files(tmp_path / "in", [documents({"a": 5})])
    stream = stream_of(spark, tmp_path / "in")
    with pytest.raises(StreamingInputError, match=r"foreachBatch.*must arrive whole in one micro-batch"):
        small_model().transform(stream)


def test_fit_on_a_stream_is_refused(spark, tmp_path):
    write_files(tmp_path / "in", [documents({"a": 5})])
    with pytest.raises(StreamingInputError, match=r"batch DataFrame.*spark\.read instead of spark\.readStream"):
        BiLSTMClassifier(**TINY).fit(stream_of(spark, tmp_path / "in"))


@pytest.mark.core
def test_foreach_batch_labels_a_file_stream_as_a_batch_transform_does(spark, tmp_path):
    """Each file holds whole documents, so each micro-batch does too: the README's recipe."""
    model = small_model()
    table = documents({"a": 40, "b": 7, "c": 23, "d": 31, "e": 18})
    write_files(tmp_path / "in", [pieces(table, [(d, 0, 99) for d in docs]) for docs in ("ab", "c", "de")])
    sink, batches = str(tmp_path / "labeled"), []

    def label(batch, batch_id):
        batches.append(batch_id)
        model.transform(batch).write.mode("append").parquet(sink)

    run(stream_of(spark, tmp_path / "in"), label, tmp_path / "checkpoint")

    assert batches == [0, 1, 2]  # one file per micro-batch
    expected = labels_of(model.transform(spark.read.parquet(str(tmp_path / "in"))))
    assert_same_labels(labels_of(spark.read.parquet(sink)), expected)


def test_documents_split_across_micro_batches_are_labeled_when_whole(spark, tmp_path):
    model = small_model()
    table = documents({"a": 40, "b": 9, "c": 30})
    write_files(tmp_path / "in", [
        pieces(table, [("a", 0, 20), ("b", 0, 9)]),     # b whole; a's first half
        pieces(table, [("c", 0, 12)]),                  # nothing ends
        pieces(table, [("c", 12, 30), ("a", 20, 40)]),  # a and c end
    ])
    sink, labeled_in = str(tmp_path / "labeled"), {}

    def append(labeled, batch_id):
        labeled_in[batch_id] = sorted({r.doc_id for r in labeled.select("doc_id").collect()})
        labeled.write.mode("append").parquet(sink)

    labeler = CompleteDocumentsLabeler(model, append, statePath=str(tmp_path / "pending"), endCol="is_last")
    run(stream_of(spark, tmp_path / "in"), labeler, tmp_path / "checkpoint")

    assert labeled_in == {0: ["b"], 1: [], 2: ["a", "c"]}
    expected = labels_of(model.transform(spark.read.parquet(str(tmp_path / "in"))))
    assert_same_labels(labels_of(spark.read.parquet(sink)), expected)
    assert spark.read.parquet(labeler.slot(2)).count() == 0  # nothing left pending


def test_a_replayed_micro_batch_gives_the_same_rows_and_stragglers_wait_at_most_max_wait_batches(spark, tmp_path):
    """Called as foreachBatch calls it: a replay (same batch_id) reads the same pending rows; a document
    whose end row never comes is labeled maxWaitBatches micro-batches after it started."""
    model = small_model()
    table = documents({"a": 30, "z": 12})
    first = pieces(table, [("a", 0, 18), ("z", 0, 12)])
    frames = [
        arrow_to_spark(spark, first.set_column(4, "is_last", pa.array([False] * first.num_rows))),  # z never ends
        arrow_to_spark(spark, pieces(table, [("a", 18, 30)])),
        arrow_to_spark(spark, pieces(table, [("a", 0, 0)])),  # an empty micro-batch
    ]
    got = []
    labeler = CompleteDocumentsLabeler(
        model, lambda labeled, batch_id: got.append((batch_id, labels_of(labeled))),
        statePath=str(tmp_path / "pending"), endCol="is_last", maxWaitBatches=2,
    )
    for batch_id in (0, 1, 1, 2):  # micro-batch 1 replayed
        labeler(frames[batch_id], batch_id)

    assert [(batch_id, sorted({doc for doc, _ in rows})) for batch_id, rows in got] == [
        (0, []), (1, ["a"]), (1, ["a"]), (2, ["z"])]
    assert_same_labels(got[2][1], got[1][1])
    whole = labels_of(model.transform(arrow_to_spark(spark, table)))
    assert_same_labels({**got[1][1], **got[3][1]}, whole)
    # Labeling each piece as it came would have cut document a in two and labeled it differently.
    cut = labels_of(model.transform(frames[0].where("doc_id = 'a'")))
    assert any(not np.allclose(cut[key][1], whole[key][1], atol=1e-6) for key in cut)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(endCol="ends"), r"Column 'ends' \(endCol\) is missing"),
        (dict(endCol="line_number"), r"Column 'line_number' \(endCol\) must be boolean"),
        (dict(endCol="is_last", docIdCol="document"), r"Column 'document' \(docIdCol\) is missing"),
        (dict(endCol="is_last", maxWaitBatches=0), r"maxWaitBatches to be a whole number >= 1"),
        (dict(endCol="is_last", statePath=""), r"Expected statePath"),
    ],
)
def test_labeler_arguments_are_checked(spark, tmp_path, kwargs, match):
    batch = arrow_to_spark(spark, documents({"a": 3}))
    arguments = {"statePath": str(tmp_path / "pending"), **kwargs}
    with pytest.raises(ValueError, match=match):
        CompleteDocumentsLabeler(small_model(), lambda labeled, batch_id: None, **arguments)(batch, 0)
