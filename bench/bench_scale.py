"""Transform throughput and memory as the input grows: 0.5M, 1M and 2M rows.

Run from the repository root (after ``make install``; about 10 minutes):

    .venv/bin/python bench/bench_scale.py                       # 0.5M, 1M, 2M rows + one 0.5M-row document
    .venv/bin/python bench/bench_scale.py --rows 500000 --long-document 0

One local[2] Spark. Rows are built inside the JVM (``spark.range`` and 64
``sin`` columns assembled into a dense Vector), in documents of 100 positions,
so the driver never holds them. One untrained network (BiLSTM 32 units x 1
layer, window 50, 3 classes). Each transform is forced with Spark's ``noop``
writer after a small warm-up transform (TensorFlow import, network build).
A thread samples, every 50 ms, the resident memory of the JVM and of every
Python process under it (the pyspark daemon and its workers); the table shows
the peaks during each transform. Worker memory should not grow with rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from benchlib import PeakChildMemory, jvm_documents, noop, quiet_local_spark  # noqa: E402

DIM, WINDOW, HIDDEN = 64, 50, 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[500_000, 1_000_000, 2_000_000])
    parser.add_argument("--doc-length", type=int, default=100)
    parser.add_argument("--long-document", type=int, default=500_000, help="rows of one single document (0: skip)")
    args = parser.parse_args()

    from skol_spark import BiLSTMClassificationModel
    from skol_spark.nn.network import build_network

    spark = quiet_local_spark()
    network = build_network(WINDOW, DIM, 3, hidden_size=HIDDEN, num_layers=1, dropout=0.0, seed=0)
    model = BiLSTMClassificationModel.fromKeras(network, labels=["a", "b", "c"])

    noop(model.transform(jvm_documents(spark, 20_000, args.doc_length, DIM)))  # warm up the workers
    runs = [(n, args.doc_length) for n in args.rows]
    if args.long_document:
        runs.append((args.long_document, args.long_document))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; pyspark {spark.version}; "
          f"{DIM}-dim dense features, BiLSTM {HIDDEN} x 1, window {WINDOW}")
    print(f"{'rows':>10} {'documents':>10} {'seconds':>8} {'rows/s':>8} {'worker peak MB':>15} "
          f"{'all workers MB':>15} {'JVM peak MB':>12}")
    for n, doc_length in runs:
        df = jvm_documents(spark, n, doc_length, DIM)
        with PeakChildMemory() as peak:
            t0 = time.perf_counter()
            noop(model.transform(df))
            seconds = time.perf_counter() - t0
        print(f"{n:>10,} {-(-n // doc_length):>10,} {seconds:>8.1f} {n / seconds:>8,.0f} "
              f"{peak.worker / 2**20:>15,.0f} {peak.workers_total / 2**20:>15,.0f} {peak.jvm / 2**20:>12,.0f}",
              flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
