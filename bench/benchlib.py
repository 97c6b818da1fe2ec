"""Pieces the benchmark scripts share: memory samplers, documents built inside the JVM, one-CPU pinning.

The scripts run as ``python bench/<script>.py``, so this module is importable
as ``benchlib`` from each of them.
"""

from __future__ import annotations

import os
import threading
import time

import psutil


class Sampler:
    """Calls ``sample()`` every ``interval`` seconds in a thread while the block runs."""

    interval = 0.02

    def sample(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class PeakRSS(Sampler):
    """Peak resident memory of this (driver) process."""

    def __init__(self) -> None:
        self._me = psutil.Process()
        self.peak = self._me.memory_info().rss

    def sample(self) -> None:
        self.peak = max(self.peak, self._me.memory_info().rss)


class PeakChildMemory(Sampler):
    """Peak RSS of the JVM and of the largest Python process under this one, and of all of them."""

    interval = 0.05

    def __init__(self) -> None:
        self._me = psutil.Process()
        self.jvm = self.worker = self.workers_total = 0

    def sample(self) -> None:
        total = 0
        for p in self._me.children(recursive=True):
            try:
                name, rss = p.name(), p.memory_info().rss
            except psutil.Error:
                continue
            if name.startswith("java"):
                self.jvm = max(self.jvm, rss)
            elif name.startswith("python"):
                self.worker = max(self.worker, rss)
                total += rss
        self.workers_total = max(self.workers_total, total)


def noop(df) -> None:
    """Run ``df`` to the end into Spark's ``noop`` sink: every row computed, nothing kept."""
    df.write.format("noop").mode("overwrite").save()


def jvm_documents(spark, rows: int, doc_length: int, dim: int, with_label: bool = False):
    """``rows`` positions in documents of ``doc_length``, ``dim``-dim dense features, built in the JVM.

    Features are ``sin`` of the row id at ``dim`` frequencies; the label (3
    classes) is a hash of the row id. The driver never holds the rows.
    """
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    i = F.col("id")
    columns = [
        (i / doc_length).cast("long").alias("doc_id"),
        (i % doc_length).cast("int").alias("line_number"),
        array_to_vector(F.array(*[F.sin(i * (0.37 * (k + 1))) for k in range(dim)])).alias("features"),
    ]
    if with_label:
        columns.append((F.abs(F.hash(i)) % 3).cast("double").alias("label"))
    return spark.range(rows).select(*columns)


def quiet_local_spark(driver_memory: str = "2g", **conf: str):
    """local[2] Spark with 2 shuffle partitions, no UI or progress bars, ERROR logs.

    ``conf`` adds Spark settings, e.g. ``**{"spark.driver.maxResultSize": "4g"}``.
    """
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.showConsoleProgress", "false")
    )
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def pin_to_one_cpu():
    """A ``preexec_fn`` that pins a child process (and all it starts) to one of this process's CPUs, as
    a one-core executor would have; None where the OS cannot pin."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    return lambda: os.sched_setaffinity(0, {cpu})
