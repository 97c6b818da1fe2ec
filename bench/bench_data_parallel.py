"""numWorkers=2 against the driver fit: time per extra position, start-up, accuracy, driver RSS; weak scaling.

Run from the repository root (after ``make install``; about 20 minutes on 2 idle cores):

    .venv/bin/python bench/bench_data_parallel.py                  # local[2], then local-cluster[2,1,2048]
    .venv/bin/python bench/bench_data_parallel.py --part local --positions 96000 288000
    .venv/bin/python bench/bench_data_parallel.py --part cluster   # weak scaling only
    .venv/bin/python bench/bench_data_parallel.py --part sparse    # row-sparse exchange, 16,384 and 2^18 dims

**local** (one local[2] Spark): a SKOL-sized network (64 units x 2 layers,
projection 64, window 50, batch 16, dropout 0.3, one network), 2 epochs, on
DIM-dim dense rows built in the JVM (documents of 100 positions, ``sin`` of
the row id at DIM frequencies; the label a function of the row's first
feature, so the network can learn it) and cached, at two sizes. For each
size the driver fit (``numWorkers=1``, ``trainingEngine="auto"``: the
driver fit as users get it) and ``numWorkers=2`` run side by side, after a
warm-up fit of each kind (imports, first traces, XLA's compilation cache);
a thread samples the driver's RSS every 20 ms. The default sizes (96,000 and
288,000 positions: 240 and 720 steps) both train the driver fit on JAX
(``fit.jax_driver.JAX_FROM_STEPS``), so the slope compares one engine's
steady state; the engine "auto" picked is printed for each size. Accuracy is measured
on 20,000 other positions. From the two sizes: the time per extra position
(slope) and the start-up (intercept) of each kind, and their ratios.

**cluster** (``spark-submit --master local-cluster[2,1,2048]``, two executors
of one core): the data-parallel path with one worker (the test-only switch
``orchestration.DATA_PARALLEL_FROM = 1``, batch 8; the whole job pinned to
one CPU, since a lone rank exchanges nothing and its host loop would run on
the idle core) and with two (batch 16: 8 a worker), then both again at
16 windows a worker (``--cluster-batch``: the windows a worker), on
``--cluster-positions`` positions (192,000: a second epoch of 4-8 s; at
64,000 it lasted 1.6-2.5 s and one run's ratio swung from 1.2 to 1.9).
Steady state is the second epoch of a fit, timed by rank 0 (``first_epoch``
to ``trained``): positions per second. Each ``spark-submit`` fits twice;
the submits alternate one worker, two, two, one (``--cluster-rounds``
submits of each kind), since this VM's speed drifts over minutes (one
lone rank's step took 11.6 ms and, four minutes later, 13.6), and the ratio
is of the medians.

**sparse**: hashed sparse rows (``bench_wide_features.jvm_hashed_documents``)
at 16,384 and 2^18 dims, ``numWorkers=2``, with the projection's kernel rows
exchanged by all-gather and by dense all-reduce (forced through
``orchestration.ROW_SPARSE_EXCHANGE``): the ranks' median step parts.

Every ratio is printed; rerun on an idle machine (the load average is printed first).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import psutil  # noqa: E402
from benchlib import PeakRSS, pin_to_one_cpu, quiet_local_spark  # noqa: E402

DIM = 256
# SKOL's network, one member (ensembleSize=1 trains one network either way).
NETWORK = dict(windowSize=50, hiddenSize=64, numLayers=2, embeddingSize=64, dropout=0.3, batchSize=16,
               ensembleSize=1, learningRate=0.002, labels=["0", "1", "2"])
ROOT = Path(__file__).resolve().parents[1]


def learnable_documents(spark, positions: int, dim: int = DIM, offset: int = 0):
    """``positions`` rows in documents of 100, ``dim`` ``sin`` features; label 1 where the first feature
    is above 0.6, 2 below -0.3, else 0 (learnable from the row itself). Built in the JVM."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    i = F.col("id") + offset
    first = F.sin(i * 0.37)
    angles = F.transform(F.sequence(F.lit(1), F.lit(dim)), lambda k: F.sin(i * k * 0.37))
    return spark.range(positions).select(
        (i / 100).cast("long").alias("doc_id"),
        (i % 100).cast("int").alias("line_number"),
        array_to_vector(angles).alias("features"),
        F.when(first > 0.6, 1.0).when(first < -0.3, 2.0).otherwise(0.0).alias("label"),
    )


class Timings(logging.Handler):
    """The data-parallel fit's timings (DEBUG line of fit/distributed/stage.py), as a dict."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.last: dict | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("data-parallel timings: {"):
            self.last = json.loads(message.split(": ", 1)[1])


def attach_timings() -> Timings:
    handler = Timings()
    log = logging.getLogger("skol_spark")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    return handler


def accuracy(model, test) -> float:
    from pyspark.sql import functions as F

    row = model.transform(test).agg(F.avg((F.col("prediction") == F.col("label")).cast("double"))).first()
    return float(row[0])


def fit_once(df, workers: int, epochs: int, timings: Timings, **params) -> dict:
    from skol_spark import BiLSTMClassifier

    classifier = BiLSTMClassifier(numWorkers=workers, epochs=epochs, **{**NETWORK, **params})
    gc.collect()
    before = psutil.Process().memory_info().rss
    timings.last = None
    with PeakRSS() as peak:
        t0 = time.perf_counter()
        model = classifier.fit(df)
        seconds = time.perf_counter() - t0
    return {"workers": workers, "seconds": seconds, "growth": peak.peak - before, "model": model,
            "timings": timings.last}


def driver_steps(positions: int, epochs: int, ensemble: int = NETWORK["ensembleSize"]) -> int:
    """The optimizer steps of a driver fit of ``NETWORK`` on ``positions`` rows (no validation rows)."""
    from skol_spark.fit.jax_driver import estimated_steps

    training = {"validation_fraction": 0.0, "window_size": NETWORK["windowSize"],
                "batch_size": NETWORK["batchSize"], "ensemble_size": ensemble, "epochs": epochs}
    return estimated_steps(positions, training)


def driver_engine(positions: int, epochs: int) -> str:
    """The engine ``trainingEngine="auto"`` picks for the bench's driver fit of ``positions`` rows."""
    from skol_spark.fit.jax_driver import choose_engine

    return choose_engine("auto", output_layer="softmax", use_gpu=False, steps=driver_steps(positions, epochs))


def epoch_rate(timings: dict | None, positions: int) -> float | None:
    """Positions per second in the last epoch, as rank 0 timed it (None for the driver fit)."""
    if not timings:
        return None
    phases = timings["phases"]
    return positions / (phases["trained"] - phases["first_epoch"])


def part_local(args) -> None:
    spark = quiet_local_spark(driver_memory="6g", **{"spark.driver.maxResultSize": "4g"})
    timings = attach_timings()
    print(f"\n## local[2]: driver fit against numWorkers=2 ({DIM}-dim dense rows, {args.epochs} epochs)")
    print(f"load average before: {os.getloadavg()}")
    test = learnable_documents(spark, 20_000, offset=10**8).cache()
    test.count()
    warm = learnable_documents(spark, 4_000).cache()
    warm.count()
    engines = {n: driver_engine(n, args.epochs) for n in args.positions}
    print("driver fit's engine ('auto'):", ", ".join(f"{n:,} positions: {e}" for n, e in engines.items()))
    if len(set(engines.values())) > 1:
        print("  the two sizes train on different engines: the slope mixes them (pick sizes on one side "
              "of fit.jax_driver.JAX_FROM_STEPS)")
    for workers in (1, 2):  # the driver's warm-up on the engine the larger size uses
        engine = {"trainingEngine": engines[args.positions[-1]]} if workers == 1 else {}
        fit_once(warm, workers, 1, timings, **engine)
    rows = []
    for positions in args.positions:
        df = learnable_documents(spark, positions).cache()
        df.count()
        for workers in (1, 2):
            r = fit_once(df, workers, args.epochs, timings)
            r.update(positions=positions, accuracy=accuracy(r.pop("model"), test),
                     rate=epoch_rate(r["timings"], positions))
            rows.append(r)
            print(f"  {positions:>8,} positions, numWorkers={workers}: {r['seconds']:.1f} s, accuracy "
                  f"{r['accuracy']:.3f}, driver RSS +{r['growth'] / 2**20:.0f} MB", flush=True)
        df.unpersist()
    spark.stop()
    print(f"load average after: {os.getloadavg()}")
    report_local(rows, args.positions)


def report_local(rows: list[dict], sizes: list[int]) -> None:
    print(f"\n{'positions':>10} {'workers':>7} {'fit s':>7} {'accuracy':>8} {'RSS growth MB':>14} "
          f"{'last epoch pos/s':>17}")
    for r in rows:
        rate = f"{r['rate']:,.0f}" if r["rate"] else "-"
        print(f"{r['positions']:>10,} {r['workers']:>7} {r['seconds']:>7.1f} {r['accuracy']:>8.3f} "
              f"{r['growth'] / 2**20:>14.0f} {rate:>17}")
    lo, hi = sizes[0], sizes[-1]
    fit = {}
    for workers in (1, 2):
        a, b = [next(r for r in rows if r["positions"] == n and r["workers"] == workers) for n in (lo, hi)]
        slope = (b["seconds"] - a["seconds"]) / (hi - lo)
        fit[workers] = (slope, a["seconds"] - slope * lo, a, b)
    (d_slope, d_start, d_lo, d_hi), (w_slope, w_start, w_lo, w_hi) = fit[1], fit[2]
    print(f"\ntime per extra position: driver {d_slope * 1e6:.1f} us, numWorkers=2 {w_slope * 1e6:.1f} us: "
          f"ratio {w_slope / d_slope:.2f} (target <= 1.2)")
    print(f"start-up (intercept): driver {d_start:.1f} s, numWorkers=2 {w_start:.1f} s: "
          f"{w_start - d_start:+.1f} s (target <= +15 s)")
    for n, d, w in ((lo, d_lo, w_lo), (hi, d_hi, w_hi)):
        print(f"{n:,} positions: accuracy {w['accuracy']:.3f} vs {d['accuracy']:.3f} "
              f"(difference {abs(w['accuracy'] - d['accuracy']):.3f}, target <= 0.03); fit time ratio "
              f"{w['seconds'] / d['seconds']:.2f}")
    print(f"driver RSS growth, numWorkers=2: {w_lo['growth'] / 2**20:.0f} MB at {lo:,}, "
          f"{w_hi['growth'] / 2**20:.0f} MB at {hi:,} (driver fit: {d_lo['growth'] / 2**20:.0f}, "
          f"{d_hi['growth'] / 2**20:.0f} MB)")
    for n, w in ((lo, w_lo), (hi, w_hi)):
        if w["timings"]:
            phases = w["timings"]["phases"]
            print(f"numWorkers=2 rank 0's phases at {n:,}:", ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
            print("  per step, ms (each rank's median: compute, all-reduce, update; its mean step):",
                  [[round(ms, 1) for ms in rank] for rank in w["timings"]["ranks_step_ms"]])


CLUSTER_JOB = r"""
import json, logging, sys, time
sys.path.insert(0, sys.argv[2])
from pyspark.sql import SparkSession
import bench_data_parallel as bench
from skol_spark.fit import orchestration
spark = SparkSession.builder.getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
timings = bench.attach_timings()
orchestration.DATA_PARALLEL_FROM = 1  # numWorkers=1 on the distributed path too
positions = int(sys.argv[3])
df = bench.learnable_documents(spark, positions).repartition(2).cache()
df.count()
workers = int(sys.argv[4])
fits = []
for _ in range(2):  # the second epoch of each is steady state (the first compiles or loads its programs)
    r = bench.fit_once(df, workers, 2, timings, batchSize=int(sys.argv[5]) * workers)
    fits.append({"seconds": r["seconds"], "timings": r["timings"], "rate": bench.epoch_rate(r["timings"], positions)})
json.dump(fits, open(sys.argv[1], "w"))
spark.stop()
"""


def spark_home(tmp: Path) -> Path:
    """pyspark's package directory linked into a temp dir (local-cluster writes SPARK_HOME/work)."""
    import pyspark

    package, home = Path(pyspark.__file__).parent, tmp / "spark-home"
    home.mkdir()
    for name in ("bin", "jars", "python", "conf", "sbin"):
        if (package / name).exists():
            (home / name).symlink_to(package / name)
    return home


def part_cluster(args) -> None:
    print("\n## weak scaling on local-cluster[2,1,2048]: the data-parallel path")
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        home = spark_home(tmp)
        job = tmp / "job.py"
        job.write_text(CLUSTER_JOB)
        env = {**os.environ, "SPARK_HOME": str(home), "PYSPARK_PYTHON": sys.executable,
               "PYSPARK_DRIVER_PYTHON": sys.executable}
        for batch in args.cluster_batch:
            print(f"\n{batch} windows a worker a step")
            fits: dict[int, list[dict]] = {1: [], 2: []}
            # One, two, two, one, ...: a drift of the machine over the minutes of the runs weighs on both.
            for workers in [w for r in range(args.cluster_rounds) for w in ((1, 2) if r % 2 == 0 else (2, 1))]:
                command = [str(home / "bin" / "spark-submit"), "--master", "local-cluster[2,1,2048]",
                           "--conf", "spark.ui.enabled=false", "--conf", "spark.driver.memory=2g",
                           "--conf", "spark.sql.shuffle.partitions=2", str(job), str(tmp / "out.json"),
                           str(Path(__file__).parent), str(args.cluster_positions), str(workers), str(batch)]
                # One worker of one core: the whole job on one CPU, or a lone rank's host loop (which
                # queues its steps without waiting) would borrow the idle second core.
                pin = pin_to_one_cpu() if workers == 1 else None
                done = subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True, preexec_fn=pin)
                if done.returncode:
                    raise SystemExit(done.stderr[-4000:])
                for fit in json.loads((tmp / "out.json").read_text()):
                    fits[workers].append(fit)
                    report_fit(workers, fit)
            report_cluster(fits[1], fits[2])
    print(f"load average after: {os.getloadavg()}")


def report_fit(workers: int, fit: dict) -> None:
    steps = [[round(ms, 1) for ms in rank] for rank in fit["timings"]["ranks_step_ms"]]
    print(f"  {workers} worker(s): fit {fit['seconds']:.1f} s, second epoch {fit['rate']:,.0f} positions/s; step ms "
          f"(compute, all-reduce, update; mean step) {steps}", flush=True)


def report_cluster(one: list[dict], two: list[dict]) -> None:
    import statistics

    rate = {n: statistics.median(f["rate"] for f in fits) for n, fits in ((1, one), (2, two))}
    # The gradient's own time (no exchange in it): above 1, the two cores ran slower together than one alone.
    compute = {n: statistics.median(rank[0] for f in fits for rank in f["timings"]["ranks_step_ms"])
               for n, fits in ((1, one), (2, two))}
    print(f"weak scaling: 2 workers / 1 worker steady-state positions/s = {rate[2] / rate[1]:.2f} (target >= 1.6; "
          f"medians of {len(two)} and {len(one)} fits: {rate[2]:,.0f} / {rate[1]:,.0f}); a rank's gradient "
          f"{compute[2]:.1f} ms with two, {compute[1]:.1f} alone", flush=True)


def part_sparse(args) -> None:
    import bench_wide_features
    from bench_wide_features import jvm_hashed_documents

    from skol_spark.fit import orchestration

    spark = quiet_local_spark(driver_memory="6g", **{"spark.driver.maxResultSize": "4g"})
    timings = attach_timings()
    print("\n## row-sparse steps: the kernel rows exchanged by all-gather or by dense all-reduce, numWorkers=2")
    print(f"load average before: {os.getloadavg()}")
    params = dict(labels=["0.0", "1.0", "2.0"], dropout=0.0)
    for dim in (16_384, 2**18):
        bench_wide_features.DIM = dim
        df = jvm_hashed_documents(spark, args.sparse_positions)[0].cache()
        df.count()
        for exchange in ("gather", "dense", "gather", "dense"):  # the first of each warms up
            orchestration.ROW_SPARSE_EXCHANGE = exchange
            r = fit_once(df, 2, 1, timings, **params)
            steps = r["timings"]["ranks_step_ms"]
            print(f"  {dim:>7,} dims, {exchange:>6}: fit {r['seconds']:.1f} s; step ms per rank (compute, "
                  f"exchange, update) {[[round(x, 1) for x in s] for s in steps]}", flush=True)
        df.unpersist()
    orchestration.ROW_SPARSE_EXCHANGE = None
    spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["local", "cluster", "sparse", "all"], default="all")
    parser.add_argument("--positions", type=int, nargs=2, default=[96_000, 288_000])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cluster-positions", type=int, default=192_000)
    parser.add_argument("--cluster-batch", type=int, nargs="+", default=[8, 16],
                        help="windows a worker a step (weak scaling)")
    parser.add_argument("--cluster-rounds", type=int, default=2,
                        help="spark-submits of each kind per batch size, alternating (two fits each)")
    parser.add_argument("--sparse-positions", type=int, default=20_000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"load average {os.getloadavg()}")
    if args.part in ("local", "all"):
        part_local(args)
    if args.part in ("cluster", "all"):
        part_cluster(args)
    if args.part in ("sparse", "all"):
        part_sparse(args)


if __name__ == "__main__":
    main()
