"""Driver memory during fit as the training data grows: one float32 copy, streamed from Spark.

Run from the repository root (after ``make install``; about 4 minutes):

    .venv/bin/python bench/bench_fit_memory.py                       # 125k, 250k, 500k positions
    .venv/bin/python bench/bench_fit_memory.py --positions 100000 400000

One local[2] Spark. Rows are built inside the JVM (``spark.range`` and 256
``sin`` values made a dense Vector, documents of 100 positions)
and cached there, so the Python driver never holds them before ``fit``. A
small warm-up fit pays the process's one-off TensorFlow/Keras memory first.
For each size, a thread samples the driver process's RSS every 20 ms during
``BiLSTMClassifier.fit`` (1 epoch, one BiLSTM of 16 units x 1 layer, window 50); the
table shows the peak growth over the RSS before the call, next to the size of
the training rows as float32 (what the training windows index).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import psutil  # noqa: E402
from benchlib import PeakRSS, jvm_documents, quiet_local_spark  # noqa: E402

DIM = 256


def fit_once(spark, positions: int) -> dict:
    from skol_spark import BiLSTMClassifier

    df = jvm_documents(spark, positions, 100, DIM, with_label=True).cache()
    n = df.count()
    # One small network (the estimator's defaults otherwise: a 64-wide projection).
    classifier = BiLSTMClassifier(hiddenSize=16, numLayers=1, dropout=0.0, epochs=1, batchSize=64, ensembleSize=1)
    gc.collect()
    before = psutil.Process().memory_info().rss
    with PeakRSS() as peak:
        t0 = time.perf_counter()
        classifier.fit(df)
        seconds = time.perf_counter() - t0
    df.unpersist()
    return {"positions": n, "seconds": seconds, "growth": peak.peak - before, "data": n * DIM * 4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, nargs="+", default=[125_000, 250_000, 500_000])
    args = parser.parse_args()

    # fit collects the rows (as doubles, 2x the float32 size) through the driver
    spark = quiet_local_spark(driver_memory="8g", **{"spark.driver.maxResultSize": "4g"})
    fit_once(spark, 2_000)  # warm-up: TensorFlow, Keras, first traces
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; pyspark {spark.version}")
    print(f"{'positions':>10} {'fit s':>7} {'float32 MB':>11} {'peak growth MB':>15} {'growth/data':>12}")
    results = []
    for positions in args.positions:
        r = fit_once(spark, positions)
        results.append(r)
        print(
            f"{r['positions']:>10,} {r['seconds']:>7.1f} {r['data'] / 2**20:>11.0f} "
            f"{r['growth'] / 2**20:>15.0f} {r['growth'] / r['data']:>12.2f}",
            flush=True,
        )
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        slope = (hi["growth"] - lo["growth"]) / (hi["data"] - lo["data"])
        print(f"growth per extra byte of float32 data ({lo['positions']:,} -> {hi['positions']:,}): {slope:.2f}")
    print("target: growth <= 1.3 x float32 data + a fixed overhead")


if __name__ == "__main__":
    main()
