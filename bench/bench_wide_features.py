"""Very wide hashed features (2^18 dims): driver memory during fit and worker memory during transform as rows grow.

Run from the repository root (after ``make install``; about 15 minutes on 2 cores):

    .venv/bin/python bench/bench_wide_features.py
    .venv/bin/python bench/bench_wide_features.py --fit 250000 500000 --transform 500000 1000000

One local[2] Spark. Rows are built inside the JVM, so the Python driver never
holds them before ``fit``: documents of 100 lines, 5-40 words a line drawn
log-uniformly from 50,000 (a Zipf-like vocabulary, from a hash of the row id,
so the data is the same every run), ``HashingTF`` with 2^18 features and
``IDF``, cached. The network is ``embeddingSize=64`` into one BiLSTM of 16
units x 1 layer, window 50: small, so that the rows, not the network, are what grows.

* fit: ``BiLSTMClassifier.fit`` (1 epoch, batch 64, no validation) after a
  warm-up fit; a thread samples the driver process's RSS every 20 ms; the
  table shows the peak growth over the RSS before the call next to the CSR
  training rows the driver keeps (8 bytes a stored value, 16 a row). Target:
  growth <= 1.3 x CSR data + a fixed part (the 2^18 x 64
  projection kernel and Adam's two moments, 3 x 64 MB, plus TensorFlow).
* transform: the fitted model over growing inputs, forced with Spark's noop
  writer after a warm-up; the peak RSS of the largest Python worker should not
  grow with rows.
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
from benchlib import PeakChildMemory, PeakRSS, noop, quiet_local_spark  # noqa: E402

DIM, EMBEDDING, HIDDEN, WINDOW, VOCABULARY = 2**18, 64, 16, 50, 50_000


def jvm_hashed_documents(spark, positions: int, idf=None, doc_length: int = 100):
    """(rows with 2^18-dim hashed TF-IDF built in the JVM, the IDF model used); ``idf`` reuses one."""
    from pyspark.ml.feature import IDF, HashingTF
    from pyspark.sql import functions as F

    i = F.col("id")
    n_words = (F.abs(F.xxhash64(i, F.lit(-1))) % 36 + 5).cast("int")
    # Word k of row i: log-uniform over the vocabulary, from a hash of (i, k).
    def uniform(salt):  # in [0, 1), from a hash of the row id
        return F.abs(F.xxhash64(i, salt)) % 1_000_003 / 1_000_003.0

    def word(k):
        return F.concat(F.lit("w"), F.floor(F.exp(uniform(k) * F.log(F.lit(float(VOCABULARY))))).cast("string"))

    rows = spark.range(positions).select(
        (i / doc_length).cast("long").alias("doc_id"),
        (i % doc_length).cast("int").alias("line_number"),
        F.transform(F.sequence(F.lit(1), n_words), word).alias("tokens"),
        F.floor(uniform(F.lit(7)) * 3).cast("double").alias("label"),
    )
    tf = HashingTF(inputCol="tokens", outputCol="tf", numFeatures=DIM).transform(rows)
    idf = idf or IDF(inputCol="tf", outputCol="features").fit(tf)
    return idf.transform(tf).select("doc_id", "line_number", "features", "label"), idf


def csr_bytes(df) -> int:
    """What the driver's CSR training rows take: 8 bytes a stored value, 16 a row (indptr, order)."""
    total = df.rdd.map(lambda r: int(r["features"].numNonzeros())).sum()
    return 8 * total + 16 * df.count()


def classifier():
    from skol_spark import BiLSTMClassifier

    return BiLSTMClassifier(
        windowSize=WINDOW, hiddenSize=HIDDEN, numLayers=1, dropout=0.0, epochs=1, batchSize=64,
        embeddingSize=EMBEDDING, ensembleSize=1, labels=["0.0", "1.0", "2.0"],
    )


def fit_once(df) -> dict:
    gc.collect()
    before = psutil.Process().memory_info().rss
    with PeakRSS() as peak:
        t0 = time.perf_counter()
        model = classifier().fit(df)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "growth": peak.peak - before, "model": model}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", type=int, nargs="*", default=[250_000, 500_000, 1_000_000], help="positions")
    parser.add_argument("--transform", type=int, nargs="*", default=[250_000, 500_000, 1_000_000], help="rows")
    args = parser.parse_args()

    spark = quiet_local_spark(driver_memory="6g", **{"spark.driver.maxResultSize": "4g"})
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, load average "
          f"{os.getloadavg()[0]:.1f}; pyspark {spark.version}; {DIM}-dim hashed TF-IDF, embeddingSize {EMBEDDING}, "
          f"BiLSTM {HIDDEN} x 1, window {WINDOW}")
    warm, idf = jvm_hashed_documents(spark, 5_000)
    model = fit_once(warm)["model"]  # TensorFlow, Keras, first traces: the process's one-off memory
    if args.fit:
        print("\n## fit, 1 epoch: driver peak RSS growth against the CSR training rows")
        print(f"{'positions':>10} {'fit s':>7} {'CSR MB':>8} {'growth MB':>10} {'growth/CSR':>11}")
    results = []
    for positions in args.fit:
        df = jvm_hashed_documents(spark, positions, idf)[0].cache()
        data = csr_bytes(df)
        r = fit_once(df)
        model = r.pop("model")
        df.unpersist()
        results.append(dict(r, positions=positions, data=data))
        print(f"{positions:>10,} {r['seconds']:>7.1f} {data / 2**20:>8.0f} {r['growth'] / 2**20:>10.0f} "
              f"{r['growth'] / data:>11.2f}", flush=True)
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        slope = (hi["growth"] - lo["growth"]) / (hi["data"] - lo["data"])
        fixed = lo["growth"] - slope * lo["data"]
        print(f"growth per extra CSR byte ({lo['positions']:,} -> {hi['positions']:,}): {slope:.2f}; "
              f"fixed part ~{fixed / 2**20:.0f} MB (kernel + Adam moments: {3 * DIM * EMBEDDING * 4 / 2**20:.0f} MB)")
        print("target: growth <= 1.3 x CSR data + a fixed part")
    if args.transform:
        noop(model.transform(jvm_hashed_documents(spark, 20_000, idf)[0]))  # warm the workers
        print("\n## transform: peak RSS of the Python workers and the JVM")
        print(f"{'rows':>10} {'seconds':>8} {'rows/s':>8} {'worker peak MB':>15} {'all workers MB':>15} "
              f"{'JVM peak MB':>12}")
    for rows in args.transform:
        df = jvm_hashed_documents(spark, rows, idf)[0]
        with PeakChildMemory() as peak:
            t0 = time.perf_counter()
            noop(model.transform(df))
            seconds = time.perf_counter() - t0
        print(f"{rows:>10,} {seconds:>8.1f} {rows / seconds:>8,.0f} {peak.worker / 2**20:>15,.0f} "
              f"{peak.workers_total / 2**20:>15,.0f} {peak.jvm / 2**20:>12,.0f}", flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
