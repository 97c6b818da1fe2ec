"""Data-parallel scaling on paper: the ring all-reduce against gradient size, a step's compute against
the per-worker batch, and the expected step time at 2 to 128 executors.

Run from the repository root (after ``make install``; about 3 minutes on 2 cores, no Spark):

    .venv/bin/python bench/bench_scaling_model.py
    .venv/bin/python bench/bench_scaling_model.py --startup-gap 10 --driver-us 60   # the switch point

1. **All-reduce**: two processes joined by skol_spark's ring
   (``fit/distributed/ring.py``) over loopback TCP sum float32 vectors from
   1,000 to 2^24 floats (median of repeats), and all-gather row blocks; the
   smallest vector's time gives this machine's per-hop latency, the largest
   its bandwidth.
2. **Compute**: one JAX process on one CPU (pinned), with a rank's settings
   for a one-core task (``stage.child_env(cpus=1)``), runs
   the SKOL network's data-parallel step (``DenseStep``: gradient and Adam
   update, no exchange; 64 units x 2 layers, projection 64, window 50,
   256-dim rows) at per-worker batches 1 to 32 windows.
3. **Model**: a step on N executors takes ``c(b) + 2 (N - 1) (alpha + S / (N
   beta))``: the compute at the per-worker batch b, then a ring all-reduce
   of the S-byte gradient (2 (N - 1) hops, each a latency alpha and 1/N of
   the gradient at bandwidth beta; two ranks swap, ``alpha + S / beta``).
   The table assumes alpha = 50 us and beta = 10 Gb/s; efficiency is c(b)
   over the step time (weak scaling: b fixed, a global batch of N b
   windows). The switch point is where the
   data-parallel fit's extra start-up is paid back by its lower time per
   position: ``n* = startup_gap / (driver_us - step / (N b W))``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchlib import pin_to_one_cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WINDOW, DIM, HIDDEN, LAYERS, EMBEDDING, CLASSES = 50, 256, 64, 2, 64, 3
LATENCY, BANDWIDTH = 50e-6, 10e9 / 8  # the model's network: 50 us a hop, 10 Gb/s

RING_SIDE = r"""
import json, sys, time
import numpy as np
from skol_spark.fit.distributed.ring import Ring
rank, peers, sizes, columns = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
ring = Ring(rank, peers, "bench", timeout=120)
out = {}
for size in sizes:
    x = np.full(size, rank + 1.0, np.float32)
    ring.allreduce(x)
    times = []
    for _ in range(30 if size < 2**22 else 6):
        t0 = time.perf_counter(); y = ring.allreduce(x); times.append(time.perf_counter() - t0)
    assert y[0] == 3.0
    out[f"allreduce {size}"] = float(np.median(times))
for c in columns:
    x = np.zeros((c, 65), np.float32)
    ring.allgather(x)
    times = []
    for _ in range(20):
        t0 = time.perf_counter(); ring.allgather(x); times.append(time.perf_counter() - t0)
    out[f"allgather {c}"] = float(np.median(times))
ring.close()
if rank == 0:
    print(json.dumps(out))
"""

COMPUTE_SIDE = r"""
import json, sys, time
import numpy as np
sys.modules.setdefault("tensorflow", None)
import keras
from skol_spark.fit.distributed.ring import Ring
from skol_spark.fit.distributed.steps import Collective, DenseStep
from skol_spark.fit.training import TrainingConfig, new_network
w, d, h, l, e, k = json.loads(sys.argv[1])
config = TrainingConfig(window_size=w, num_classes=k, class_weights=[1.0] * k, hidden_size=h, embedding_size=e,
                        num_layers=l, dropout=0.3, output_layer="softmax", epochs=1, batch_size=16, learning_rate=0.002,
                        seed=0, validation_fraction=0.0, early_stopping_patience=0, predict_batch_size=64)
network = new_network(config, d)
collective = Collective(Ring(0, ["127.0.0.1:1"], "bench"))
step = DenseStep(network, 0.002, collective, 0)
weights = collective.put(np.ones(k, np.float32))
rng = np.random.default_rng(0)
out = {"floats": step.size}
for b in json.loads(sys.argv[2]):
    state = step.state(network)
    batch = (rng.normal(size=(b, w, d)).astype(np.float32), np.ones((b, w), bool), rng.integers(0, k, (b, w)).astype(np.int32))
    step.step(state, batch, weights)[0].block_until_ready()
    times = []
    for _ in range(20):
        t0 = time.perf_counter(); step.step(state, batch, weights)[0].block_until_ready(); times.append(time.perf_counter() - t0)
    out[str(b)] = float(np.median(times))
print(json.dumps(out))
"""


def _ports(n: int) -> list[str]:
    from skol_spark.fit.distributed.ring import free_port

    return [f"127.0.0.1:{free_port('127.0.0.1')}" for _ in range(n)]


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", **extra}


def measure_ring(sizes: list[int], columns: list[int]) -> dict[str, float]:
    peers = _ports(2)
    procs = [subprocess.Popen([sys.executable, "-c", RING_SIDE, str(r), json.dumps(peers), json.dumps(sizes),
                               json.dumps(columns)], stdout=subprocess.PIPE, env=_env(), text=True) for r in (0, 1)]
    out = [p.communicate(timeout=900)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("ring processes failed")
    return json.loads(out[0].strip().splitlines()[-1])


def measure_compute(batches: list[int]) -> dict[str, float]:
    from skol_spark.fit.distributed.stage import child_env

    env = {**_env(), **child_env(cpus=1), "TF_CPP_MIN_LOG_LEVEL": "2"}
    shape = json.dumps([WINDOW, DIM, HIDDEN, LAYERS, EMBEDDING, CLASSES])
    done = subprocess.run([sys.executable, "-c", COMPUTE_SIDE, shape, json.dumps(batches)], env=env,
                          capture_output=True, text=True, timeout=1800, preexec_fn=pin_to_one_cpu())
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def ring_seconds(n: int, nbytes: float, latency: float = LATENCY, bandwidth: float = BANDWIDTH) -> float:
    """An all-reduce of ``nbytes`` over ``n`` ranks as ``Ring.allreduce`` does it: 2 (n - 1) hops of
    latency and nbytes / n; two ranks swap whole vectors, one hop of nbytes."""
    if n == 1:
        return 0.0
    if n == 2:
        return latency + nbytes / bandwidth
    return 2 * (n - 1) * (latency + nbytes / (n * bandwidth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--startup-gap", type=float, default=10.0,
                        help="seconds the data-parallel fit starts slower than the driver fit (bench_data_parallel)")
    parser.add_argument("--driver-us", type=float, default=None,
                        help="the driver fit's microseconds per position (bench_data_parallel); default: c(16)/(16 W)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()}")

    sizes = [1_000, 10_000, 100_000, 181_699, 1_000_000, 4_000_000, 16_777_216]
    ring = measure_ring(sizes, [1024, 4096, 16384])
    print("\n## ring all-reduce of float32 over 2 processes (loopback TCP), median")
    print(f"{'floats':>12} {'MB':>8} {'ms':>9}")
    for size in sizes:
        print(f"{size:>12,} {size * 4 / 2**20:>8.2f} {ring[f'allreduce {size}'] * 1e3:>9.2f}")
    # Two ranks swap whole vectors: one hop of alpha + bytes / beta. The smallest vector gives alpha,
    # the largest beta.
    alpha = ring[f"allreduce {sizes[0]}"]
    big = sizes[-1] * 4
    beta = big / (ring[f"allreduce {sizes[-1]}"] - alpha)
    print(f"this machine's loopback: alpha = {alpha * 1e6:.0f} us a hop, beta = {beta * 8 / 1e9:.1f} Gb/s "
          f"(the model below assumes {LATENCY * 1e6:.0f} us and 10 Gb/s)")
    for c in (1024, 4096, 16384):
        print(f"all-gather of {c:,} x 65 float32 rows a rank: {ring[f'allgather {c}'] * 1e3:.2f} ms")

    batches = [1, 2, 4, 8, 16, 32]
    compute = measure_compute(batches)
    floats = compute.pop("floats")
    print(f"\n## a step's compute (gradient + Adam, one pinned core) on {WINDOW}-position windows, SKOL's network")
    print(f"{'per-worker batch':>16} {'ms':>8} {'us/position':>12}")
    for b in batches:
        c = compute[str(b)]
        print(f"{b:>16} {c * 1e3:>8.1f} {c / (b * WINDOW) * 1e6:>12.1f}")

    nbytes = 4 * floats
    print("\n## expected step time at N executors: c(b) + 2 (N - 1) (alpha + S / (N beta)) (N = 2: alpha + S / beta), "
          f"S = {nbytes / 2**20:.2f} MB ({floats:,} floats), alpha = {LATENCY * 1e6:.0f} us, beta = 10 Gb/s")
    print(f"{'N':>5} {'b':>3} {'global batch':>12} {'compute ms':>10} {'all-reduce ms':>13} {'step ms':>8} "
          f"{'efficiency':>10} {'positions/s':>12} {'speed-up':>9}")
    for b in (8, 16):
        c = compute[str(b)]
        for n in (1, 2, 8, 32, 128):
            comm = ring_seconds(n, nbytes)
            step = c + comm
            rate = n * b * WINDOW / step
            print(f"{n:>5} {b:>3} {n * b:>12} {c * 1e3:>10.1f} {comm * 1e3:>13.2f} {step * 1e3:>8.1f} "
                  f"{c / step:>10.2f} {rate:>12,.0f} {rate / (b * WINDOW / c):>8.1f}x")
    driver_us = args.driver_us if args.driver_us else compute["16"] / (16 * WINDOW) * 1e6
    print(f"\n## when to switch (start-up gap {args.startup_gap:.0f} s, driver fit {driver_us:.1f} us a position "
          "per epoch)")
    for n in (2, 8, 32, 128):
        b = 8
        step = compute[str(b)] + ring_seconds(n, nbytes)
        us = step / (n * b * WINDOW) * 1e6
        gain = driver_us - us
        where = f"{args.startup_gap / (gain * 1e-6):,.0f} positions x epochs" if gain > 0 else "never"
        print(f"  N = {n:>3}: {us:.2f} us a position; pays back its start-up after {where}")


if __name__ == "__main__":
    main()
