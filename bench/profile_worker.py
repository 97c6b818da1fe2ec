"""Where a Python worker's time goes: label_partition under cProfile, without Spark's plumbing.

    .venv/bin/python bench/profile_worker.py --size sparse
    .venv/bin/python bench/profile_worker.py --size sparse --embedding 64   # the projected network

Collects the benchmark's rows once (sorted by document and position, as the
executors see them), then labels them in this process with one TensorFlow
thread, as one worker of a local[2] task does, and prints the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

import pyarrow.compute as pc  # noqa: E402
from bench_transform import make_data, make_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=["dense", "sparse"], default="sparse")
    parser.add_argument("--positions", type=int, default=20000)
    parser.add_argument("--embedding", type=int, default=0, help="embeddingSize of the network (0: none)")
    args = parser.parse_args()
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    df, n, dim = make_data(spark, args.size, args.positions)
    table = df.select("doc_id", "line_number", "features").toArrow()
    order = pc.sort_indices(table, sort_keys=[("doc_id", "ascending"), ("line_number", "ascending")])
    rows = table.take(order).combine_chunks().to_struct_array().combine_chunks()
    batches = [rows.slice(lo, 10000) for lo in range(0, len(rows), 10000)]
    _, model = make_model(dim, args.embedding)
    spec = dataclasses.replace(model._predict_spec(), cpus=1)
    spark.stop()

    from skol_spark.transform.predict import label_partition

    list(label_partition(spec, iter(batches)))  # build, trace
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    out = list(label_partition(spec, iter(batches)))
    profiler.disable()
    seconds = time.perf_counter() - t0
    assert sum(len(o) for o in out) == n
    print(f"{args.size}: {n} positions in {seconds:.2f} s = {n / seconds:,.0f} positions/s in one worker, 1 TF thread")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(18)


if __name__ == "__main__":
    main()
