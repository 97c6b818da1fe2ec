"""Whole documents to data-parallel workers, balanced by training windows (skol_spark.fit.distributed.balance)."""

from __future__ import annotations

import math

import pytest
from conftest import SHARED_DATA
from pyspark.sql import functions as F

from skol_spark.fit.distributed.balance import (
    BUCKETS_PER_WORKER,
    Balance,
    assign_buckets,
    balance_documents,
    partition_keys,
)

JOURNALS = SHARED_DATA / "journals"


def test_the_largest_bucket_goes_first_to_the_least_loaded_worker():
    loads = {0: 5, 1: 9, 2: 2, 3: 7, 4: 3, 5: 4}
    assignment = assign_buckets(loads, 2)
    totals = [sum(load for b, load in loads.items() if assignment[b] == w) for w in range(2)]
    assert sorted(totals) == [15, 15]
    assert assignment[1] == 0 and assignment[3] == 1  # 9 to worker 0, then 7 to the emptier worker 1
    assert assign_buckets(dict(reversed(list(loads.items()))), 2) == assignment  # order of the counts is irrelevant


def test_the_busiest_worker_ends_at_most_one_bucket_above_the_mean():
    loads = {b: (b * 7919) % 101 + 1 for b in range(300)}
    for workers in (2, 3, 8, 32):
        assignment = assign_buckets(loads, workers)
        totals = [0] * workers
        for b, load in loads.items():
            totals[assignment[b]] += load
        assert max(totals) <= sum(totals) / workers + max(loads.values())
        assert set(assignment) == set(loads)


def test_more_workers_than_buckets_leaves_some_workers_without_any():
    assignment = assign_buckets({4: 10, 9: 1}, 3)
    assert assignment == {4: 0, 9: 1}
    assert assign_buckets({}, 3) == {}


def test_ratio_is_the_busiest_worker_over_the_mean():
    assert Balance.ratio([30, 10]) == pytest.approx(1.5)
    assert Balance.ratio([5, 5, 5]) == 1.0
    assert Balance.ratio([0, 0]) == 1.0


@pytest.mark.connect
@pytest.mark.parametrize("partitions", [2, 3, 8])
def test_each_key_lands_in_its_own_partition(spark, partitions):
    keys = partition_keys(spark, partitions)
    df = spark.createDataFrame([(p, k) for p, k in enumerate(keys)], "want int, key long")
    placed = df.repartition(partitions, "key").select("want", F.spark_partition_id().alias("got")).collect()
    assert sorted((r["want"], r["got"]) for r in placed) == [(p, p) for p in range(partitions)]


def _skewed_documents(spark):
    """One 2,000-row document and 60 of 20-200 rows (positions 0..n-1), as hashing splits badly."""
    lengths = [2000] + [20 + (d * 37) % 181 for d in range(60)]
    rows = [(f"doc{d}", i, float(d)) for d, n in enumerate(lengths) for i in range(n)]
    return spark.createDataFrame(rows, "doc_id string, line_number int, x double"), lengths


@pytest.mark.connect
@pytest.mark.parametrize("workers", [2, 3])
def test_documents_stay_whole_and_the_windows_even(spark, workers):
    df, lengths = _skewed_documents(spark)
    window = 50
    placed, balance = balance_documents(df, "doc_id", workers, window)

    assert placed.columns == df.columns
    by_partition = placed.withColumn("p", F.spark_partition_id())
    assert by_partition.groupBy("doc_id").agg(F.countDistinct("p").alias("n")).filter("n > 1").count() == 0
    per_doc = by_partition.groupBy("p", "doc_id").count()
    windows = {r["p"]: r["w"] for r in per_doc.groupBy("p").agg(
        F.sum(F.ceil(F.col("count") / window)).alias("w")).collect()}
    assert [windows.get(p, 0) for p in range(workers)] == balance.windows
    assert sum(balance.windows) == sum(balance.hashed) == sum(math.ceil(n / window) for n in lengths)
    # One bucket holds at most the 40-window document plus a few 1-4 window ones.
    assert max(balance.windows) - sum(balance.windows) / workers <= 48
    assert Balance.ratio(balance.windows) <= Balance.ratio(balance.hashed)
    assert placed.count() == df.count()


def test_a_document_longer_than_the_fair_share_lands_whole_on_one_worker(spark):
    df = spark.createDataFrame([("long", i) for i in range(500)] + [("short", i) for i in range(50)],
                               "doc_id string, line_number int")
    placed, balance = balance_documents(df, "doc_id", 2, 50)
    assert sorted(balance.windows) == [1, 10]
    partitions = placed.withColumn("p", F.spark_partition_id()).groupBy("doc_id").agg(
        F.countDistinct("p").alias("n")).collect()
    assert {r["doc_id"]: r["n"] for r in partitions} == {"long": 1, "short": 1}


def test_no_rows_give_no_windows(spark):
    df = spark.createDataFrame([], "doc_id string, line_number int")
    placed, balance = balance_documents(df, "doc_id", 2, 50)
    assert balance.windows == [0, 0] and placed.count() == 0


def test_a_null_document_id_is_placed_like_any_other(spark):
    df = spark.createDataFrame([(None, 1), (None, 2), ("a", 1)], "doc_id string, line_number int")
    placed, balance = balance_documents(df, "doc_id", 2, 50)
    assert placed.count() == 3 and sum(balance.windows) == 2


def test_column_names_with_dots_are_quoted(spark):
    df = spark.createDataFrame([("a", 1), ("b", 2)], "`doc.id` string, line_number int")
    placed, balance = balance_documents(df, "doc.id", 2, 50)
    assert placed.columns == ["doc.id", "line_number"] and sorted(balance.windows) == [1, 1]


@pytest.mark.skipif(not JOURNALS.is_dir(), reason=f"SKOL annotated journals not found at {JOURNALS} (../shared is absent)")
@pytest.mark.parametrize("workers", [2, 4])
def test_skols_journals_split_evenly_where_hashing_does_not(spark, workers):
    from skol_spark.skol.datasets import read_yedda

    df, _ = read_yedda(spark, JOURNALS, unclosed="skip")
    _, balance = balance_documents(df, "doc_id", workers, 50)
    assert BUCKETS_PER_WORKER * workers >= 128
    # The longest document (one Mycotaxon volume) is a bucket of its own; LPT packs the rest around it.
    assert Balance.ratio(balance.windows) <= 1.05
    assert Balance.ratio(balance.hashed) > Balance.ratio(balance.windows)
