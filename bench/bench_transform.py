"""Transform and fit speed of skol_spark against the limit and the alternatives.

Run from the repository root (after ``make install``):

    .venv/bin/python bench/bench_transform.py                 # both sizes, 5 rounds
    .venv/bin/python bench/bench_transform.py --sizes dense --rounds 3

One process, one local[2] Spark, the same synthetic documents and the same
network (BiLSTM 64 units x 2 layers, window 50) for every contender; rounds
are interleaved and medians reported. Each measurement forces full
evaluation with Spark's ``noop`` writer. CPU seconds are summed over the whole
process tree (this driver, the JVM, the Python workers) with psutil.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
import pyarrow as pa  # noqa: E402
from benchlib import PeakRSS, noop, quiet_local_spark  # noqa: E402

WINDOW, HIDDEN, LAYERS = 50, 64, 2


def tree_cpu_seconds() -> float:
    """User + system CPU of this process and all its descendants, reaped ones included."""
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, tree CPU seconds) of one call."""
    gc.collect()
    cpu0, t0 = tree_cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, tree_cpu_seconds() - cpu0


def make_data(spark, kind: str, positions: int, seed: int = 0):
    """Row-per-position documents: 256-dim dense vectors, or 4096-dim sparse hashed TF-IDF."""
    from pyspark.ml.feature import IDF, HashingTF
    from pyspark.sql import functions as F

    from skol_spark.skol.datasets import make_synthetic_documents

    docs = max(1, positions // 100)
    if kind == "dense":
        df = make_synthetic_documents(spark, num_docs=docs, mean_length=100, num_features=256, seed=seed)
        dim = 256
    else:
        rng = np.random.default_rng(seed)
        vocabulary = np.array([f"w{i}" for i in range(20000)])
        lengths = rng.poisson(100, size=docs).clip(1)
        rows = pd.DataFrame(
            {
                "doc_id": np.repeat([f"doc-{d:05d}" for d in range(docs)], lengths),
                "line_number": np.concatenate([np.arange(n) for n in lengths]).astype("int32"),
            }
        )
        tokens = [list(vocabulary[rng.zipf(1.3, size=int(rng.integers(5, 40))) % len(vocabulary)]) for _ in range(len(rows))]
        rows["tokens"] = tokens
        base = spark.createDataFrame(rows)
        tf = HashingTF(inputCol="tokens", outputCol="tf", numFeatures=4096).transform(base)
        df = IDF(inputCol="tf", outputCol="features").fit(tf).transform(tf).select(
            "doc_id", "line_number", "features", F.lit(0.0).alias("label")
        )
        dim = 4096
    df = df.cache()
    n = df.count()
    return df, n, dim


def make_model(dim: int, embedding: int = 0, hidden: int = HIDDEN, layers: int = LAYERS):
    from skol_spark import BiLSTMClassificationModel
    from skol_spark.nn.network import build_network

    network = build_network(
        WINDOW, dim, 3, hidden_size=hidden, num_layers=layers, dropout=0.0, seed=0, embedding_size=embedding
    )
    return network, BiLSTMClassificationModel.fromKeras(network, labels=["a", "b", "c"], windowSize=WINDOW)


def floor_job(df):
    """The cheapest movement of the same columns through Python: a no-op mapInArrow."""
    data = df.select("doc_id", "line_number", "features")

    def identity(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from batches

    return lambda: noop(data.mapInArrow(identity, data.schema))


def model_rate(network, dim: int, positions: int, threads: int = 2) -> float:
    """Positions/s of the network alone: compiled forward on fixed-shape batches."""
    import tensorflow as tf

    batch = 256
    x = np.random.default_rng(0).normal(size=(batch, WINDOW, dim)).astype("float32")
    m = np.ones((batch, WINDOW), bool)
    forward = tf.function(lambda a, b: network([a, b], training=False))
    forward(x, m)  # trace once
    steps = max(1, positions // (batch * WINDOW))
    t0 = time.perf_counter()
    for _ in range(steps):
        forward(x, m).numpy()
    return steps * batch * WINDOW / (time.perf_counter() - t0)


def predict_batch_udf_job(df, network, dim: int):
    """Spark's predict_batch_udf on windows built from the same rows by Spark operations."""
    from pyspark.ml.functions import predict_batch_udf, vector_to_array
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    model_json, weights = network.to_json(), network.get_weights()

    def make_predict_fn():
        from skol_spark.nn.network import model_from_json

        net = model_from_json(model_json)
        net.set_weights(weights)

        def predict(x):
            x = x.reshape(-1, WINDOW, dim).astype("float32")
            mask = np.ones(x.shape[:2], bool)
            return net.predict([x, mask], verbose=0).reshape(len(x), -1)

        return predict

    udf = predict_batch_udf(
        make_predict_fn, return_type=T.ArrayType(T.FloatType()), batch_size=256, input_tensor_shapes=[[WINDOW * dim]]
    )
    rows = df.select(
        "doc_id", "line_number", vector_to_array("features", "float32").alias("x")
    ).withColumn("window", F.floor(F.col("line_number") / WINDOW))
    windows = rows.groupBy("doc_id", "window").agg(
        F.sort_array(F.collect_list(F.struct("line_number", "x"))).alias("rows")
    )
    # Pad every window to WINDOW rows so the tensor shape is fixed.
    zero = F.array_repeat(F.lit(0.0).cast("float"), dim)
    padded = windows.withColumn(
        "flat",
        F.flatten(
            F.concat(
                F.transform("rows", lambda r: r["x"]),
                F.array_repeat(zero, WINDOW - F.size("rows")),
            )
        ),
    )
    scored = padded.withColumn("probs", udf("flat"))
    out = scored.select(
        "doc_id",
        F.posexplode(F.transform("rows", lambda r: r["line_number"])).alias("i", "line_number"),
        "probs",
    ).withColumn("probability", F.slice("probs", F.col("i") * 3 + 1, 3))
    return lambda: noop(out.select("doc_id", "line_number", "probability"))


def _row_to_dense(vector: dict, dim: int) -> np.ndarray:
    """One VectorUDT struct (as pandas hands it over) to a dense row, in Python."""
    if vector["type"] == 1:
        return np.asarray(vector["values"], dtype="float32")
    row = np.zeros(dim, dtype="float32")
    row[np.asarray(vector["indices"], dtype=int)] = vector["values"]
    return row


def rebuild_job(df, network, dim: int):
    """The original project's way: rebuild the network per Arrow batch, convert rows one by one."""
    from pyspark.sql import functions as F

    model_json, weights = network.to_json(), network.get_weights()

    def label(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from skol_spark.nn.network import model_from_json

        for frame in frames:
            net = model_from_json(model_json)
            net.set_weights(weights)
            features = np.array([_row_to_dense(v, dim) for v in frame["features"]])
            n = len(frame)
            pad = (-n) % WINDOW
            x = np.concatenate([features, np.zeros((pad, features.shape[1]), "float32")]).reshape(-1, WINDOW, features.shape[1])
            mask = np.arange(x.shape[0] * WINDOW).reshape(-1, WINDOW) < n
            probs = net.predict([x, mask], verbose=0).reshape(-1, 3)[:n]
            yield pd.DataFrame({"doc_id": frame["doc_id"], "line_number": frame["line_number"], "prediction": probs.argmax(1).astype(float)})

    sorted_rows = df.repartition("doc_id").sortWithinPartitions("doc_id", "line_number")
    out = sorted_rows.select("doc_id", "line_number", "features").mapInPandas(
        label, "doc_id string, line_number int, prediction double"
    )
    return lambda: noop(out.withColumn("p", F.col("prediction")))


def run_size(spark, kind: str, positions: int, rounds: int, include_slow: bool) -> dict:
    from pyspark.sql import functions as F

    df, n, dim = make_data(spark, kind, positions)
    network, model = make_model(dim)
    jobs = {
        "floor": floor_job(df),
        "skol_spark": lambda: noop(model.transform(df)),
    }
    if include_slow:
        jobs["predict_batch_udf"] = predict_batch_udf_job(df, network, dim)
        jobs["rebuild"] = rebuild_job(df, network, dim)
    for job in jobs.values():  # warm up workers, trace, build caches
        job()
    wall: dict[str, list[float]] = {k: [] for k in jobs}
    cpu: dict[str, list[float]] = {k: [] for k in jobs}
    for r in range(rounds):
        for name, job in jobs.items():
            if name == "rebuild" and r >= 2:
                continue  # slow and stable: two rounds suffice
            w, c = measure(job)
            wall[name].append(w)
            cpu[name].append(c)
    model_pos = statistics.median(model_rate(network, dim, max(n, 20000)) for _ in range(3))
    rates = {k: n / statistics.median(v) for k, v in wall.items()}
    cpu_k = {k: 1000 * statistics.median(v) / n for k, v in cpu.items()}
    rates["model"] = model_pos
    rates["limit"] = 1 / (1 / rates["floor"] + 1 / model_pos)
    model_cpu_k = 1000 * 2 / model_pos  # two threads busy for 1/rate seconds per position
    cpu_k["model"] = model_cpu_k
    digest = model.trainedNetwork.digest

    def report_builds(frames):
        from skol_spark.transform import predict

        for _ in frames:
            pass
        yield pd.DataFrame({"pid": [os.getpid()], "builds": [predict.build_count(digest)]})

    worker_builds = (
        spark.range(0, 8, 1, 8)
        .mapInPandas(report_builds, "pid long, builds long")
        .groupBy("pid")
        .agg(F.max("builds").alias("builds"))
        .collect()
    )
    df.unpersist()
    return {"kind": kind, "positions": n, "dim": dim, "rates": rates, "cpu_per_1k": cpu_k, "worker_builds": {r.pid: r.builds for r in worker_builds}}


def print_size(result: dict) -> None:
    rates, cpu = result["rates"], result["cpu_per_1k"]
    print(f"\n## {result['kind']}: {result['positions']} positions, {result['dim']}-dim features")
    print(f"{'contender':<20} {'positions/s':>12} {'CPU-s/1k pos':>13} {'vs limit':>9}")
    for name in ("floor", "model", "limit", "skol_spark", "predict_batch_udf", "rebuild"):
        if name in rates:
            c = f"{cpu[name]:.3f}" if name in cpu else ""
            print(f"{name:<20} {rates[name]:>12,.0f} {c:>13} {rates[name] / rates['limit']:>9.2f}")
    s = rates["skol_spark"]
    print(f"skol_spark / limit = {s / rates['limit']:.2f} (target >= 0.8)")
    print(f"skol_spark CPU / (floor + model) = {cpu['skol_spark'] / (cpu['floor'] + cpu['model']):.2f} (target <= 1.25)")
    if "predict_batch_udf" in rates:
        print(f"skol_spark / predict_batch_udf = {s / rates['predict_batch_udf']:.2f} (target >= 1.5)")
        print(f"skol_spark / rebuild = {s / rates['rebuild']:.2f} (target >= 5)")
    print(f"builds of this network per Python worker (pid: count), over all its transforms: {result['worker_builds']}")


def fit_comparison(spark, positions: int, epochs: int = 2) -> dict:
    """BiLSTMClassifier.fit against plain Keras fit on the same windows plus the Arrow transfer."""
    import keras

    from skol_spark import BiLSTMClassifier
    from skol_spark.core.windows import gather_windows, window_index
    from skol_spark.fit.training_data import arrow_to_training_data
    from skol_spark.nn.network import WeightedSparseCategoricalCrossentropy, build_network
    from skol_spark.skol.datasets import make_synthetic_documents

    df = make_synthetic_documents(spark, num_docs=max(1, positions // 100), mean_length=100, num_features=256, seed=3)
    df = df.cache()
    n = df.count()
    # The plain Keras network below has no input projection, so neither does this one (embeddingSize=0,
    # hence one network); the estimator's defaults otherwise.
    params = dict(windowSize=WINDOW, hiddenSize=HIDDEN, numLayers=LAYERS, dropout=0.0, epochs=epochs, batchSize=32,
                  embeddingSize=0)
    base_rss = psutil.Process().memory_info().rss
    with PeakRSS() as peak:
        t0 = time.perf_counter()
        model = BiLSTMClassifier(**params).fit(df)
        ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = df.select("doc_id", "line_number", "label", "features").toArrow()
    transfer = time.perf_counter() - t0
    data = arrow_to_training_data(table, "doc_id", "line_number", "label", "features")
    del table
    starts, lengths, _ = window_index(data.doc_lengths, WINDOW, WINDOW)
    x, mask, rows = gather_windows(data.features, starts, lengths, WINDOW)
    y = np.where(mask, data.labels[np.where(mask, rows, 0)], 0)
    keras.utils.set_random_seed(0)
    network = build_network(WINDOW, 256, 3, hidden_size=HIDDEN, num_layers=LAYERS, dropout=0.0, seed=0)
    network.compile(optimizer=keras.optimizers.Adam(1e-3), loss=WeightedSparseCategoricalCrossentropy(model.getClassWeightsUsed()))
    t0 = time.perf_counter()
    network.fit([x, mask], y, sample_weight=mask.astype("float32"), batch_size=32, epochs=epochs, verbose=0, shuffle=True)
    plain = time.perf_counter() - t0
    windows_bytes = len(data.labels) * data.num_features * 4  # float32 rows, as training windows hold them
    df.unpersist()
    return {
        "positions": n,
        "ours": ours,
        "plain_fit": plain,
        "transfer": transfer,
        "peak_rss_growth": peak.peak - base_rss,
        "windows_bytes": windows_bytes,
        "base_rss": base_rss,
    }


def print_fit(results: list[dict]) -> None:
    print("\n## fit: BiLSTMClassifier.fit vs plain Keras fit + Arrow transfer (256-dim, 2 epochs)")
    print(f"{'positions':>10} {'ours s':>8} {'keras s':>8} {'arrow s':>8} {'ratio':>6} {'RSS growth MB':>14} {'f32 data MB':>12} {'growth/data':>12}")
    for r in results:
        ratio = r["ours"] / (r["plain_fit"] + r["transfer"])
        print(
            f"{r['positions']:>10} {r['ours']:>8.1f} {r['plain_fit']:>8.1f} {r['transfer']:>8.2f} {ratio:>6.2f} "
            f"{r['peak_rss_growth'] / 2**20:>14.0f} {r['windows_bytes'] / 2**20:>12.0f} "
            f"{r['peak_rss_growth'] / max(1, r['windows_bytes']):>12.2f}"
        )
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        slope = (hi["peak_rss_growth"] - lo["peak_rss_growth"]) / max(1, hi["windows_bytes"] - lo["windows_bytes"])
        print(f"RSS growth per extra byte of float32 data, {lo['positions']} -> {hi['positions']} positions: {slope:.2f}")
    print("target: ratio <= 1.15; RSS growth <= 1.3 x float32 data + fixed overhead")


def cold_start(spark_factory, positions: int) -> tuple[float, float]:
    """Seconds from transform to the first output rows on fresh Python workers, then warm."""
    spark = spark_factory()
    df, _, dim = make_data(spark, "dense", positions)
    _, model = make_model(dim)
    cold, _ = measure(lambda: model.transform(df).take(1))
    warm, _ = measure(lambda: model.transform(df).take(1))
    spark.stop()
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["dense", "sparse"], choices=["dense", "sparse"])
    parser.add_argument("--positions", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-alternatives", action="store_true", help="only floor, model, skol_spark")
    parser.add_argument("--skip-fit", action="store_true")
    parser.add_argument("--skip-cold", action="store_true")
    args = parser.parse_args()

    def new_session():
        return quiet_local_spark(driver_memory="6g")

    if not args.skip_cold:
        cold, warm = cold_start(new_session, args.positions)
    spark = new_session()
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"pyspark {spark.version}; rounds {args.rounds} (medians)")
    for kind in args.sizes:
        print_size(run_size(spark, kind, args.positions, args.rounds, not args.skip_alternatives))
    if not args.skip_fit:
        fit_comparison(spark, 2000, epochs=1)  # pay the process's one-off Keras/TF costs first
        print_fit([fit_comparison(spark, args.positions * k) for k in (1, 4)])
    if not args.skip_cold:
        print(f"\n## cold start: first output rows {cold:.1f} s on fresh workers, {warm:.1f} s warm")


if __name__ == "__main__":
    main()
