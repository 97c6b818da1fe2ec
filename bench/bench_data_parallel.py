"""numWorkers 1 vs 2: fit time and driver peak RSS at 1x and 4x data, and the per-step all-reduce cost.

Run from the repository root (after ``make install``; about 10 minutes on 2 cores):

    .venv/bin/python bench/bench_data_parallel.py
    .venv/bin/python bench/bench_data_parallel.py --positions 8000 32000 --epochs 1

One local[2] Spark. Rows are built inside the JVM (``spark.range`` and DIM
``sin`` values made a dense Vector, documents of 100 positions, 3 classes)
and cached there. For each size, ``numWorkers=1`` (the driver fit) and
``numWorkers=2`` (two barrier tasks, one JAX process each) run side by side;
a thread samples the driver process's RSS every 20 ms during ``fit``. A
small warm-up fit of each kind pays the one-off imports first.

Then two plain JAX processes (no Spark) time the all-reduce of one
float32 gradient of the benchmarked network's size over jax.distributed's
CPU collectives (gloo, loopback TCP here), the communication each step of a
data-parallel fit adds, and of one timestep's LSTM gradient: XLA's SPMD
partitioner puts an all-reduce per timestep and direction inside the
backward scan (2 x windowSize x numLayers per step, latency-bound). The
estimate for N executors takes the driver fit's time per step, divides the
computation by N (each worker runs batchSize/N windows) and adds those
all-reduces at the measured latency, scaled by a ring's 2 (N - 1) / N. That
assumes loopback latency; a real network is slower (see BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
import time

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import psutil  # noqa: E402
from benchlib import PeakRSS, jvm_documents, quiet_local_spark  # noqa: E402

DIM = 256
# One network both ways (numWorkers > 1 trains one; the estimator's default is an ensemble of three).
NETWORK = dict(windowSize=50, hiddenSize=32, embeddingSize=32, numLayers=1, dropout=0.0, batchSize=32, ensembleSize=1)


def fit_once(spark, positions: int, workers: int, epochs: int) -> dict:
    from skol_spark import BiLSTMClassifier

    df = jvm_documents(spark, positions, 100, DIM, with_label=True).cache()
    n = df.count()
    classifier = BiLSTMClassifier(numWorkers=workers, epochs=epochs, labels=["a", "b", "c"], **NETWORK)
    gc.collect()
    before = psutil.Process().memory_info().rss
    with PeakRSS() as peak:
        t0 = time.perf_counter()
        model = classifier.fit(df)
        seconds = time.perf_counter() - t0
    df.unpersist()
    weights = sum(w.size for w in model.trainedNetwork.weight_arrays())
    return {"positions": n, "workers": workers, "seconds": seconds, "growth": peak.peak - before,
            "data": n * DIM * 4, "loss": model.history["loss"][-1], "weights": weights}


ALLREDUCE = r"""
import json, sys, time
import jax, numpy as np
rank, size, coordinator, repeats = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
jax.distributed.initialize(coordinator_address=coordinator, num_processes=2, process_id=rank,
                           cluster_detection_method="deactivate")
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
mesh = Mesh(np.array(jax.devices()), ("batch",))
local = np.full((1, size), rank + 1.0, np.float32)
x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("batch")), local)
reduce = jax.jit(lambda g: g.sum(axis=0), out_shardings=NamedSharding(mesh, P()))
reduce(x).block_until_ready()  # compile
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    out = reduce(x).block_until_ready()
    times.append(time.perf_counter() - t0)
assert float(np.asarray(out.addressable_data(0))[0]) == 3.0
if rank == 0:
    print(json.dumps({"median": float(np.median(times)), "min": float(np.min(times))}))
"""


def allreduce_seconds(size: int, repeats: int = 30) -> dict:
    """Median and best time of one all-reduce of ``size`` float32 over two JAX processes (gloo)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = [
        subprocess.Popen([sys.executable, "-c", ALLREDUCE, str(r), str(size), f"127.0.0.1:{port}", str(repeats)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        for r in (0, 1)
    ]
    out = [p.communicate(timeout=600)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"all-reduce processes failed: {[p.returncode for p in procs]}")
    return json.loads(out[0].strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, nargs=2, default=[16_000, 64_000], help="1x and 4x")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    spark = quiet_local_spark(driver_memory="4g", **{"spark.driver.maxResultSize": "2g"})
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"pyspark {spark.version}; load average {os.getloadavg()[0]:.1f}")
    for workers in (1, 2):
        fit_once(spark, 2_000, workers, 1)  # warm-up: imports, first traces
    rows = []
    for positions in args.positions:
        for workers in (1, 2):
            rows.append(fit_once(spark, positions, workers, args.epochs))
    spark.stop()
    print(f"\nfit, {args.epochs} epochs, BiLSTM {NETWORK}, {DIM}-dim dense rows, local[2]")
    print(f"{'positions':>10} {'rows MB':>8} {'workers':>7} {'fit s':>7} {'driver RSS growth MB':>21} {'last loss':>9}")
    for r in rows:
        print(f"{r['positions']:>10,} {r['data'] / 2**20:>8.1f} {r['workers']:>7} {r['seconds']:>7.1f} "
              f"{r['growth'] / 2**20:>21.1f} {r['loss']:>9.4f}")
    for positions in args.positions:
        one, two = [r for r in rows if r["positions"] == positions]
        print(f"{positions:,} positions: numWorkers=2 / numWorkers=1 fit time {two['seconds'] / one['seconds']:.2f}x, "
              f"driver RSS growth {two['growth'] / 2**20:.0f} MB vs {one['growth'] / 2**20:.0f} MB")

    weights = rows[0]["weights"]
    whole = allreduce_seconds(weights)
    # XLA's SPMD partitioner all-reduces each LSTM direction's weight gradient inside the backward
    # scan (counted in the dumped HLO of Keras' train_step): 2 x windowSize x numLayers small
    # all-reduces per step, each of one timestep's (4 * hidden) x (input + hidden) gradient.
    in_loop = 2 * NETWORK["windowSize"] * NETWORK["numLayers"]
    per_timestep = 4 * NETWORK["hiddenSize"] * (NETWORK["embeddingSize"] + NETWORK["hiddenSize"] + 1)
    small = allreduce_seconds(per_timestep)
    comm = in_loop * small["median"] + whole["median"]
    print(f"\nall-reduce over 2 JAX processes (gloo, loopback): one {weights:,}-float32 gradient "
          f"({weights * 4 / 2**20:.2f} MB) median {whole['median'] * 1e3:.2f} ms; one {per_timestep:,}-float32 "
          f"timestep gradient median {small['median'] * 1e3:.3f} ms")
    print(f"per step: {in_loop} in-loop all-reduces + 1 after = {comm * 1e3:.1f} ms of communication")
    big = rows[-2]  # the driver fit on 4x data
    steps = args.epochs * -(-big["positions"] // NETWORK["windowSize"]) / NETWORK["batchSize"]
    per_step = big["seconds"] / steps
    two = rows[-1]
    print(f"measured: driver fit {per_step * 1e3:.1f} ms per step (4x, incl. Spark collect); "
          f"numWorkers=2 {two['seconds'] / steps * 1e3:.1f} ms per step (incl. start-up)")
    print("\nestimate per step with N executors (compute / N + the step's all-reduces at the measured "
          "latency; a ring's latency term grows with N, so the all-reduce column scales by 2 (N - 1) / N):")
    print(f"{'N':>4} {'compute ms':>11} {'all-reduce ms':>14} {'step ms':>8} {'speed-up':>9}")
    for n in (1, 2, 4, 8, 16, 32):
        c = 0.0 if n == 1 else comm * (2 * (n - 1) / n)
        step = per_step / n + c
        print(f"{n:>4} {per_step / n * 1e3:>11.1f} {c * 1e3:>14.2f} {step * 1e3:>8.1f} {per_step / step:>8.1f}x")

if __name__ == "__main__":
    main()
