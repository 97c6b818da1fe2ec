"""Long and many documents through a real transform: streaming windows, rows preserved."""

import pytest
from conftest import assert_same_predictions, jvm_documents, predictions, small_model
from pyspark.sql import functions as F


@pytest.fixture()
def batch_rows(spark):
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)

    def set_rows(n: int) -> None:
        spark.conf.set(key, str(n))

    yield set_rows
    spark.conf.set(key, before)


def test_documents_longer_than_a_batch_match_a_single_batch(spark, batch_rows):
    df = jvm_documents(spark, 3000, 700).cache()  # 4 documents of 700 rows and one of 200
    model = small_model().copy().setWindowStride(5)  # overlapping windows carry partial sums
    batch_rows(64)
    streamed = predictions(model, df)
    batch_rows(100_000)
    whole = predictions(model, df)
    assert len(streamed) == 3000
    assert_same_predictions(streamed, whole)
    df.unpersist()


def _check_every_row_once(model, df, n: int) -> None:
    out = model.transform(df).agg(
        F.count("prediction").alias("rows"),
        F.sum("line_number").alias("positions"),
        F.sum(F.col("prediction").isin(0.0, 1.0, 2.0).cast("int")).alias("labelled"),  # not NaN
    ).first()
    expected_positions = df.agg(F.sum("line_number")).first()[0]
    assert (out.rows, out.labelled, out.positions) == (n, n, expected_positions)


def test_a_200000_row_document_streams(spark):
    n = 200_000
    _check_every_row_once(small_model(), jvm_documents(spark, n, n), n)


def test_100000_one_row_documents(spark):
    n = 100_000
    _check_every_row_once(small_model(), jvm_documents(spark, n, 1), n)
