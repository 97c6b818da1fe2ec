"""Whole documents to workers, balanced by training windows (``numWorkers > 1``).

A synchronous step waits for every rank, and every rank runs as many steps
as the rank with the most windows (the others feed empty ones), so an epoch
lasts as long as the busiest rank's share. Hashing documents to workers
balances their number, not their length: on SKOL's annotated journals (116
documents of 4 to 10,331 paragraphs) it gives the busiest of two workers
1.05x the mean of windows, of four 1.68x, of eight 2.50x; this module's
assignment gives 1.00x, 1.00x and 1.34x (one document alone is 1.34x an
eighth).

:func:`balance_documents`

1. hashes each document into one of ``numWorkers * BUCKETS_PER_WORKER``
   buckets and counts each bucket's training windows (``ceil(rows /
   windowSize)`` per document) in one aggregation; only the buckets' counts
   reach the driver, never a document id;
2. gives the buckets to workers largest first, each to the worker with the
   fewest windows so far (the LPT rule: the busiest worker ends at most one
   bucket above the mean);
3. tags each row with a partitioning key that Spark's hash partitioner sends
   to exactly its worker's partition (:func:`partition_keys`), and
   repartitions by it.

A document larger than the fair share still lands whole on one worker.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

__all__ = ["Balance", "assign_buckets", "balance_documents", "partition_keys"]

BUCKETS_PER_WORKER = 64
_KEY = "__skol_spark_worker_key"


@dataclass(frozen=True)
class Balance:
    """Training windows per worker, as assigned and as hashing documents alone would have split them."""

    windows: list[int]
    hashed: list[int]

    @staticmethod
    def ratio(loads: list[int]) -> float:
        """The busiest worker's windows over the mean (1.0: perfectly even; 0 windows: 1.0)."""
        total = sum(loads)
        return max(loads) * len(loads) / total if total else 1.0


def assign_buckets(loads: dict[int, int], num_workers: int) -> dict[int, int]:
    """Bucket -> worker, largest bucket first to the least loaded worker (ties: the lower bucket, the
    lower worker), so the same counts always give the same assignment."""
    heap = [(0, worker) for worker in range(num_workers)]
    assignment = {}
    for bucket, load in sorted(loads.items(), key=lambda item: (-item[1], item[0])):
        total, worker = heapq.heappop(heap)
        assignment[bucket] = worker
        heapq.heappush(heap, (total + load, worker))
    return assignment


def partition_keys(spark: Any, num_partitions: int) -> list[int]:
    """For each partition p, a bigint that ``repartition(num_partitions, col)`` sends to partition p.

    Spark's hash partitioner places a row in ``pmod(hash(key), n)`` (Murmur3,
    as ``functions.hash``); Spark itself evaluates that over candidate keys,
    so the keys hold on any version and on Spark Connect.
    """
    from pyspark.sql import functions as F

    found: dict[int, int] = {}
    start, count = 0, 64 * num_partitions
    while len(found) < num_partitions:
        rows = (
            spark.range(start, start + count)
            .select(F.pmod(F.hash("id"), F.lit(num_partitions)).alias("p"), "id")
            .groupBy("p").agg(F.min("id").alias("id"))
            .collect()
        )
        for row in rows:
            found.setdefault(int(row["p"]), int(row["id"]))
        start += count
    return [found[p] for p in range(num_partitions)]


def balance_documents(selected: Any, doc: str, num_workers: int, window: int) -> tuple[Any, Balance]:
    """``selected`` in ``num_workers`` partitions, each document whole in one, balanced by training
    windows; and the windows each worker got."""
    from pyspark.sql import functions as F

    document = F.col(f"`{doc}`")
    buckets = num_workers * BUCKETS_PER_WORKER
    bucket = F.pmod(F.hash(document), F.lit(buckets))
    per_document = selected.groupBy(bucket.alias("bucket"), document).count()
    rows = (
        per_document.groupBy("bucket")
        .agg(F.sum(F.ceil(F.col("count") / F.lit(window))).alias("windows"))
        .collect()
    )
    loads = {int(row["bucket"]): int(row["windows"]) for row in rows}
    assignment = assign_buckets(loads, num_workers)
    windows, hashed = [0] * num_workers, [0] * num_workers
    for b, load in loads.items():
        windows[assignment[b]] += load
        hashed[b % num_workers] += load  # buckets is a multiple of n: pmod(hash, n) == bucket mod n
    if not assignment:  # no rows: nothing to place
        return selected.repartition(num_workers, document), Balance(windows, hashed)
    keys = partition_keys(selected.sparkSession, num_workers)
    mapping = F.create_map(*[F.lit(x) for b, w in sorted(assignment.items()) for x in (b, keys[w])])
    placed = (
        selected.withColumn(_KEY, F.element_at(mapping, bucket).cast("long"))
        .repartition(num_workers, F.col(_KEY))
        .drop(_KEY)
    )
    return placed, Balance(windows, hashed)
