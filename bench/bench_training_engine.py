"""The driver fit on TensorFlow against the driver fit on JAX (``trainingEngine``), by fit length.

Run from the repository root (after ``make install``; about 10 minutes on 2 idle cores):

    .venv/bin/python bench/bench_training_engine.py
    .venv/bin/python bench/bench_training_engine.py --cold-cache   # every JAX fit compiles afresh
    .venv/bin/python bench/bench_training_engine.py --positions 16000 64000 --ensemble 3

One local[2] Spark. The rows are ``bench_data_parallel``'s learnable
256-dim dense documents of 100 positions (built in the JVM, cached); the
network is SKOL's (64 units x 2 layers, projection 64, window 50, batch 16,
dropout 0.3), ``--ensemble`` networks (default 1), 2 epochs. For each size
both engines fit one after the other, after one warm-up fit of each (the
TensorFlow import and first traces, XLA's compilation cache); JAX's children
start afresh at every fit, as they do for a user. ``--cold-cache`` gives
every JAX fit an empty compilation cache (a new machine, or a new network
shape). Printed: the optimizer
steps of the fit (all networks and epochs; ``trainingEngine="auto"`` picks
JAX from ``jax_driver.JAX_FROM_STEPS``), each engine's ``fit`` seconds,
their ratio and the accuracy of each model on 20,000 other positions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_data_parallel import NETWORK, driver_steps, learnable_documents  # noqa: E402
from benchlib import quiet_local_spark  # noqa: E402


def _accuracy(model, rows) -> float:
    from pyspark.sql import functions as F

    out = model.transform(rows).agg(F.avg((F.col("prediction") == F.col("label")).cast("double"))).first()
    return float(out[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, nargs="+", default=[16_000, 64_000, 192_000])
    parser.add_argument("--ensemble", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cold-cache", action="store_true", help="an empty XLA compilation cache for every JAX fit")
    args = parser.parse_args()

    from skol_spark import BiLSTMClassifier
    from skol_spark.fit.jax_driver import JAX_FROM_STEPS

    spark = quiet_local_spark(driver_memory="6g", **{"spark.driver.maxResultSize": "4g"})
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; pyspark {spark.version}; "
          f"auto trains on JAX from {JAX_FROM_STEPS} steps")
    params = dict(NETWORK, ensembleSize=args.ensemble, epochs=args.epochs, verbose=False, mlflowLogging=False)
    test = learnable_documents(spark, 20_000, offset=10_000_000).cache()
    test.count()
    warm = learnable_documents(spark, 4_000, offset=20_000_000).cache()
    for engine in ("tensorflow", "jax"):
        BiLSTMClassifier(trainingEngine=engine, **{**params, "epochs": 1}).fit(warm)
    print(f"{'positions':>9} {'steps':>6} {'tensorflow s':>13} {'jax s':>7} {'tf / jax':>9} "
          f"{'tf accuracy':>12} {'jax accuracy':>13}", flush=True)
    for positions in args.positions:
        rows = learnable_documents(spark, positions).cache()
        rows.count()
        seconds, accuracy = {}, {}
        for engine in ("tensorflow", "jax"):
            cache = tempfile.mkdtemp(prefix="skol-bench-xla-") if args.cold_cache else None
            if cache is not None:
                os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
            started = time.perf_counter()
            model = BiLSTMClassifier(trainingEngine=engine, **params).fit(rows)
            seconds[engine] = time.perf_counter() - started
            if cache is not None:
                shutil.rmtree(cache, ignore_errors=True)
            accuracy[engine] = _accuracy(model, test)
        print(f"{positions:>9,} {driver_steps(positions, args.epochs, args.ensemble):>6} {seconds['tensorflow']:>13.1f} "
              f"{seconds['jax']:>7.1f} {seconds['tensorflow'] / seconds['jax']:>9.2f} "
              f"{accuracy['tensorflow']:>12.3f} {accuracy['jax']:>13.3f}", flush=True)
        rows.unpersist()
    spark.stop()


if __name__ == "__main__":
    main()
