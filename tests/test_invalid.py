"""handleInvalid at transform: every row accounted for, with real Spark."""

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import types as T

from skol_spark.errors import InvalidRowError

SCHEMA = T.StructType(
    [
        T.StructField("doc_id", T.StringType()),
        T.StructField("line_number", T.DoubleType()),
        T.StructField("features", VectorUDT()),
        T.StructField("row_id", T.LongType()),
    ]
)
WIDTH = 8  # the fitted fixture's feature length


def ok_vector(rng):
    return Vectors.dense(rng.normal(size=WIDTH).tolist())


# name -> (row maker, the defect a message must name)
DEFECTS = {
    "null document": (lambda rng, doc, pos: (None, pos, ok_vector(rng)), "null document id"),
    "null position": (lambda rng, doc, pos: (doc, None, ok_vector(rng)), "null position"),
    "NaN position": (lambda rng, doc, pos: (doc, math.nan, ok_vector(rng)), "NaN position"),
    "null features": (lambda rng, doc, pos: (doc, pos, None), "null features"),
    "short features": (lambda rng, doc, pos: (doc, pos, Vectors.dense([1.0, 2.0])), "wrong feature length"),
    "sparse wrong size": (lambda rng, doc, pos: (doc, pos, Vectors.sparse(WIDTH + 3, [1], [1.0])), "wrong feature length"),
    "NaN feature": (lambda rng, doc, pos: (doc, pos, Vectors.dense([math.nan] + [0.0] * (WIDTH - 1))), "non-finite features"),
    "infinite feature": (lambda rng, doc, pos: (doc, pos, Vectors.sparse(WIDTH, [2], [math.inf])), "non-finite features"),
}


def build_rows(seed, doc_lengths, defects):
    """Valid documents, then defective rows placed into them; returns rows and the defective row ids."""
    rng = np.random.default_rng(seed)
    rows = []
    for d, length in enumerate(doc_lengths):
        for p in range(length):
            rows.append([f"doc{d}", float(p), ok_vector(rng)])
    bad_ids = set()
    for kind, doc, pos in defects:
        doc_name = f"doc{doc % len(doc_lengths)}"
        if kind == "duplicate position":
            twin = next(i for i, r in enumerate(rows) if r[0] == doc_name)
            rows.append([doc_name, rows[twin][1], ok_vector(rng)])
            bad_ids.update({twin, len(rows) - 1})
            continue
        make, _ = DEFECTS[kind]
        rows.append(list(make(rng, doc_name, float(100 + pos))))
        bad_ids.add(len(rows) - 1)
    # A defective row can make a valid-looking one a duplicate (same doc, same position).
    keyed = {}
    for i, (doc, pos, _) in enumerate(rows):
        if doc is not None and pos is not None and not math.isnan(pos):
            keyed.setdefault((doc, pos), []).append(i)
    for ids in keyed.values():
        if len(ids) > 1:
            bad_ids.update(ids)
    return [tuple(r) + (i,) for i, r in enumerate(rows)], bad_ids


def same_vector(a, b):
    if a is None or b is None:
        return a is None and b is None
    return type(a) is type(b) and np.array_equal(a.toArray(), b.toArray(), equal_nan=True)


def frame(spark, rows):
    return spark.createDataFrame(rows, SCHEMA).repartition(3)


def transformed(fitted, df, mode):
    return fitted.copy({fitted.handleInvalid: mode}).transform(df)


@pytest.mark.core
def test_keep_and_skip_account_for_every_row(spark, fitted):
    kinds = list(DEFECTS) + ["duplicate position"]
    rows, bad = build_rows(0, [30, 1, 45], [(k, i, i) for i, k in enumerate(kinds)])
    df = frame(spark, rows)

    kept = {r.row_id: r for r in transformed(fitted, df, "keep").collect()}
    assert len(kept) == len(rows)
    for row_id, doc, pos, vec in [(r[3], r[0], r[1], r[2]) for r in rows]:
        out = kept[row_id]
        assert out.doc_id == doc and same_vector(out.features, vec)  # input columns unchanged
        assert (out.line_number == pos) or (math.isnan(out.line_number) and math.isnan(pos))
        assert (out.prediction is None) == (row_id in bad)
        assert (out.probability is None) == (row_id in bad)

    skipped = transformed(fitted, df, "skip")
    assert sorted(r.row_id for r in skipped.collect()) == sorted(set(range(len(rows))) - bad)
    # The valid rows are labelled as if the defective rows had never been there.
    clean = frame(spark, [r for r in rows if r[3] not in bad])
    expected = {r.row_id: r.probability.toArray() for r in fitted.transform(clean).collect()}
    for r in skipped.collect():
        np.testing.assert_allclose(r.probability.toArray(), expected[r.row_id], atol=1e-5)
        np.testing.assert_allclose(kept[r.row_id].probability.toArray(), expected[r.row_id], atol=1e-5)


# Core: the defects whose detection differs between the pandas and the Arrow UDF path.
CORE_DEFECTS = ("NaN position", "null features", "duplicate position")


@pytest.mark.parametrize(
    "kind", [pytest.param(k, marks=pytest.mark.core) if k in CORE_DEFECTS else k
             for k in [*DEFECTS, "duplicate position"]]
)
def test_error_names_the_row(spark, fitted, kind):
    from skol_spark.transform.udf import USE_ARROW_UDF

    # The defective row ends doc0 and doc1 follows: the task meets it in its first rows (it
    # holds back only the last (document, position)), before it builds the network. A failed
    # task ends its Python worker; its replacement then imports no TensorFlow.
    rows, bad = build_rows(1, [20, 20], [(kind, 0, 7)])
    defect = DEFECTS[kind][1] if kind in DEFECTS else "duplicate position"
    position = {"null position": "None", "NaN position": "(nan|None)", "duplicate position": r"0\.0"}.get(kind, r"107\.0")
    if defect == "NaN position" and not USE_ARROW_UDF:
        defect = "(NaN|null) position"  # pandas UDFs (Spark < 4.1) see a NaN double as null
    with pytest.raises(Exception, match="Invalid row in column '(doc_id|line_number|features)': " + (
        defect
    ) + r".* at document ('doc0'|None), line_number=" + position + r"\. Fix the input"):
        fitted.transform(frame(spark, rows)).collect()


@pytest.mark.core
def test_empty_input_gives_empty_output_with_the_schema(spark, fitted):
    df = spark.createDataFrame([], SCHEMA)
    out = fitted.transform(df)
    assert out.count() == 0
    assert out.columns == SCHEMA.fieldNames() + ["prediction", "probability", "rawPrediction"]


def test_one_row_documents(spark, fitted):
    rows, _ = build_rows(2, [1] * 25, [])
    out = fitted.transform(frame(spark, rows)).collect()
    assert len(out) == 25 and all(r.prediction is not None for r in out)


def test_invalid_rows_at_fit_are_left_out_with_skip(spark, train_df, tiny_params):
    from skol_spark import BiLSTMClassifier

    bad = spark.createDataFrame(
        [("zz", 0, None, 1.0), ("zz", 1, Vectors.dense([1.0]), 1.0), (None, 2, Vectors.dense([0.0] * 8), 0.0)],
        T.StructType(
            [
                T.StructField("doc_id", T.StringType()),
                T.StructField("line_number", T.IntegerType()),
                T.StructField("features", VectorUDT()),
                T.StructField("label", T.DoubleType()),
            ]
        ),
    )
    df = train_df.select("doc_id", "line_number", "features", "label").unionByName(bad)
    with pytest.raises(
        InvalidRowError,
        match="Invalid row in column '(doc_id|features)': (null document id|null features|wrong feature length)",
    ):
        BiLSTMClassifier(**{**tiny_params, "epochs": 1}).fit(df)
    model = BiLSTMClassifier(handleInvalid="skip", **{**tiny_params, "epochs": 1}).fit(df)
    assert model.getNumFeatures() == 8 and model.getHandleInvalid() == "skip"


def test_handle_invalid_param_is_checked():
    from skol_spark import BiLSTMClassifier

    with pytest.raises(ValueError, match="Expected handleInvalid to be one of 'error', 'skip', 'keep'. Received: handleInvalid='drop'"):
        BiLSTMClassifier(handleInvalid="drop")


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 1000),
    doc_lengths=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    defects=st.lists(
        st.tuples(st.sampled_from(list(DEFECTS) + ["duplicate position"]), st.integers(0, 3), st.integers(0, 5)),
        min_size=1,
        max_size=5,
    ),
)
def test_property_every_row_accounted_for(spark, fitted, seed, doc_lengths, defects):
    rows, bad = build_rows(seed, doc_lengths, defects)
    df = frame(spark, rows)
    kept = transformed(fitted, df, "keep").select("row_id", "doc_id", "prediction").collect()
    assert sorted(r.row_id for r in kept) == list(range(len(rows)))
    assert {r.row_id for r in kept if r.prediction is None} == bad
    assert {r.row_id: r.doc_id for r in kept} == {r[3]: r[0] for r in rows}
    skipped = transformed(fitted, df, "skip").select("row_id").collect()
    assert sorted(r.row_id for r in skipped) == sorted(set(range(len(rows))) - bad)
    # "error" on each kind of defect: test_error_names_the_row (a failed task ends its Python
    # worker, so every example here would start and import a new one).


def test_duplicate_rows_only_within_a_document_and_every_such_row():
    from skol_spark.core.invalid import duplicate_rows

    ids = pa.array(["a", "a", "b", "b", "b"])
    assert not duplicate_rows(ids, pa.array([0, 1, 1, 2, 3])).any()  # 'a'@1 and 'b'@1 differ
    assert duplicate_rows(ids, pa.array([0, 1, 0, 2, 2])).tolist() == [False, False, False, True, True]
    assert not duplicate_rows(pa.array(["a"]), pa.array([5])).any()
