"""The per-position input projection (embeddingSize) against no projection, the floors and the network alone.

Run from the repository root (after ``make install``; about 15 minutes on 2 cores):

    .venv/bin/python bench/bench_projection.py
    .venv/bin/python bench/bench_projection.py --sizes sparse4096 --rounds 3 --skip-fit

One process, one local[2] Spark, interleaved rounds, medians; everything in a
table is measured in the same run, so read the ratios (the machine may be
shared). Network: BiLSTM 64 units x 2 layers, window 50, 3 classes, no dropout;
"E=64" adds the linear projection D -> 64 (``embeddingSize=64``), "E=0" is the
network without it (as before the projection existed).

Per input (sparse hashed TF-IDF of 4,096 and 2^18 dims, dense 256 dims):

* ``floor``: a no-op ``mapInArrow`` over the same three columns;
* ``grouped floor``: the same after ``repartition(doc)`` + ``sortWithinPartitions``
  (what transform does before labeling): the limit for any per-document labeler;
* ``grouped no-op labeling UDF``: transform's own plan around an Arrow UDF that gives every
  row the same probabilities, in transform's output (Spark 4.1+): Spark's UDF path without
  skol_spark's labeling code;
* ``transform E=0`` / ``E=64``: ``model.transform`` written to Spark's noop sink;
* ``transform E=64, 1-unit BiLSTM``: the same transform around a BiLSTM of one
  unit and one layer, whose cost is negligible: the plumbing's own ceiling;
* ``E=64 executor code alone``: ``predict.label_partition`` (what the UDF runs)
  in this process on Arrow batches of 10k sorted rows, no Spark;
* ``dense-input BiLSTM``: the E=0 network alone in this process, no Spark, on
  fixed-shape ``(256, 50, D)`` float32 batches (skipped for 2^18 dims: 3.4 GB a batch);
* for 4,096 dims, input already grouped upstream (``repartition(doc)``, cached):
  the floor with only the sort (no second shuffle) and transform on that input,
  with the number of shuffles Spark left in transform's plan.

Fit: ``BiLSTMClassifier.fit`` (1 epoch, batch 32) with E=0 and E=64 on the
4,096-dim data (E=0 densifies each batch's windows), and E=64 on 2^18 dims at
two sizes with the driver's peak RSS growth against the CSR training data.

``--engines`` runs only the inference engines side by side (``inferenceEngine``
"keras" against "auto", the ONNX Runtime path), at the defaults' network
(64 units x 2 layers, projection 64, window 50), one network and the
defaults' ensemble of 3, on ``--docs`` documents of ``--doc-length``
positions: sparse 4,096-dim rows with exactly 40 non-zeros, and dense
256-dim rows. In this process, on the executor path (``label_partition`` on
sorted Arrow batches of 10k rows, one thread, as a task with one core): the
network's own calls (``from_rows``) and the whole executor code, in
us/position, the same batches for both engines. Through Spark: the grouped
floor and ``model.transform`` with each engine:

    .venv/bin/python bench/bench_projection.py --engines --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
import pyarrow as pa  # noqa: E402
from bench_transform import HIDDEN, LAYERS, WINDOW, make_model, measure, model_rate  # noqa: E402
from benchlib import PeakChildMemory, PeakRSS, noop, quiet_local_spark  # noqa: E402

EMBEDDING = 64  # the network is bench_transform's: window 50, 64 units x 2 layers
LABELS = ["a", "b", "c"]


def hashed_documents(spark, positions: int, dim: int, seed: int = 0):
    """Documents of ~100 lines, 5-40 Zipf words a line, hashed TF-IDF of ``dim`` dims, labels 0-2."""
    from pyspark.ml.feature import IDF, HashingTF
    from pyspark.sql import functions as F

    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"w{i}" for i in range(50000)])
    lengths = rng.poisson(100, size=max(1, positions // 100)).clip(1)
    rows = pd.DataFrame(
        {
            "doc_id": np.repeat([f"doc-{d:05d}" for d in range(len(lengths))], lengths),
            "line_number": np.concatenate([np.arange(n) for n in lengths]).astype("int32"),
        }
    )
    rows["tokens"] = [
        list(vocabulary[rng.zipf(1.3, size=int(rng.integers(5, 40))) % len(vocabulary)]) for _ in range(len(rows))
    ]
    rows["label"] = rng.integers(0, 3, len(rows)).astype(float)
    tf = HashingTF(inputCol="tokens", outputCol="tf", numFeatures=dim).transform(spark.createDataFrame(rows))
    df = IDF(inputCol="tf", outputCol="features").fit(tf).transform(tf)
    return df.select("doc_id", "line_number", "features", F.col("label").cast("double").alias("label"))


def dense_documents(spark, positions: int, dim: int = 256):
    from pyspark.sql import functions as F

    from skol_spark.skol.datasets import make_synthetic_documents

    df = make_synthetic_documents(spark, num_docs=max(1, positions // 100), mean_length=100, num_features=dim, seed=0)
    return df.select("doc_id", "line_number", "features", F.col("label").cast("double").alias("label"))


def _identity(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield from batches


def _grouped(df):
    """``df`` grouped as transform groups it: ``repartition(doc)`` + ``sortWithinPartitions(doc, position)``."""
    from skol_spark.transform.udf import group_documents

    return group_documents(df, "doc_id", "line_number")


def floors(df) -> dict:
    data = df.select("doc_id", "line_number", "features")
    grouped = _grouped(data)
    return {
        "floor": lambda: noop(data.mapInArrow(_identity, data.schema)),
        "grouped floor": lambda: noop(grouped.mapInArrow(_identity, grouped.schema)),
    }


def udf_floor(df, spec):
    """The grouped floor of a labeling UDF: transform's own plan (repartition + sort, an Arrow UDF over
    ``struct(doc, position, features)``, every input column kept) around a UDF that gives every row
    the same probabilities, built into transform's output by ``predict._output`` (``spec``'s): what
    Spark's UDF path costs without skol_spark's labeling code. None before Spark 4.1 (no ``arrow_udf``)."""
    from pyspark.sql import functions as F

    from skol_spark.transform.predict import _output
    from skol_spark.transform.udf import USE_ARROW_UDF, output_type

    if not USE_ARROW_UDF:
        return None

    def constant(arrays: Iterator[pa.Array]) -> Iterator[pa.Array]:
        for array in arrays:
            yield _output(spec, np.full((len(array), len(LABELS)), 1 / len(LABELS)))

    udf = F.arrow_udf(constant, output_type(vector_output=True)).asNondeterministic()
    labelled = _grouped(df).withColumn("out", udf(F.struct("doc_id", "line_number", "features")))
    out = labelled.select(*df.columns, "out.prediction", "out.probability", "out.rawPrediction")
    return lambda: noop(out)


def exchanges(df) -> int:
    """Shuffles in a DataFrame's physical plan (classic Spark)."""
    return df._jdf.queryExecution().executedPlan().toString().count("Exchange hashpartitioning")


def pregrouped_jobs(df, model) -> tuple[dict, int]:
    """Input grouped upstream (``repartition(doc)``, cached): the sort-only floor and transform on it.

    Spark's planner drops transform's own ``repartition(doc)`` when the child
    is already hash-partitioned on the same column into as many partitions
    (EnsureRequirements); the plan's shuffle count shows whether it did.
    """
    from pyspark.sql import functions as F

    pre = df.select("doc_id", "line_number", "features").repartition(F.col("doc_id")).cache()
    pre.count()
    sorted_only = pre.sortWithinPartitions("doc_id", "line_number")
    jobs = {
        "pre-grouped floor (sort only)": lambda: noop(sorted_only.mapInArrow(_identity, pre.schema)),
        "transform E=64, pre-grouped": lambda: noop(model.transform(pre)),
    }
    # The cached plan's own (upstream) shuffles appear in both strings.
    return jobs, exchanges(model.transform(pre)) - exchanges(pre)


def executor_rate(df, model) -> float:
    """Positions/s of the labeling code transform runs on executors, in this process, on Arrow batches of 10k rows."""
    from skol_spark.transform import predict

    table = df.select("doc_id", "line_number", "features").sort("doc_id", "line_number").toArrow()
    rows = pa.StructArray.from_arrays([table.column(i).combine_chunks() for i in range(3)], names=table.column_names)
    batches = [rows.slice(lo, 10000) for lo in range(0, len(rows), 10000)]
    spec = model._predict_spec()
    list(predict.label_partition(spec, iter(batches)))  # build and trace once
    t0 = time.perf_counter()
    list(predict.label_partition(spec, iter(batches)))
    return len(rows) / (time.perf_counter() - t0)


def run_input(spark, name: str, df, dim: int, rounds: int) -> dict:
    df = df.cache()
    n = df.count()
    jobs = floors(df)
    _, model64 = make_model(dim, EMBEDDING)
    no_op_udf = udf_floor(df, model64._predict_spec())
    if no_op_udf is not None:
        jobs["grouped no-op labeling UDF"] = no_op_udf
    wide = dim > 65536
    if not wide:
        network0, model0 = make_model(dim, 0)
        jobs["transform E=0"] = lambda: noop(model0.transform(df))
    jobs["transform E=64"] = lambda: noop(model64.transform(df))
    # The same plumbing around a BiLSTM of 1 unit x 1 layer: what transform costs without the network.
    _, tiny = make_model(dim, EMBEDDING, hidden=1, layers=1)
    jobs["transform E=64, 1-unit BiLSTM"] = lambda: noop(tiny.transform(df))
    shuffles = None
    if name == "sparse4096":
        extra, shuffles = pregrouped_jobs(df, model64)
        jobs.update(extra)
    for job in jobs.values():  # warm workers, traces, caches
        job()
    wall: dict[str, list[float]] = {k: [] for k in jobs}
    with PeakChildMemory() as children:
        for _ in range(rounds):
            for key, job in jobs.items():
                wall[key].append(measure(job)[0])
    rates = {k: n / statistics.median(v) for k, v in wall.items()}
    rates["E=64 executor code alone (no Spark)"] = executor_rate(df, model64)
    if not wide:
        rates["dense-input BiLSTM (no Spark)"] = statistics.median(
            model_rate(network0, dim, max(n, 20000)) for _ in range(3)
        )
    df.unpersist()
    return {"name": name, "positions": n, "dim": dim, "rates": rates, "worker_rss": children.worker,
            "pregrouped_shuffles": shuffles}


def print_input(r: dict) -> None:
    rates = r["rates"]
    grouped = rates["grouped floor"]
    print(f"\n## {r['name']}: {r['positions']} positions, {r['dim']}-dim features (positions/s; ratio to the grouped floor)")
    for key, rate in rates.items():
        print(f"{key:<32} {rate:>10,.0f} {rate / grouped:>6.2f}")
    t = rates["transform E=64"]
    if "transform E=0" in rates:
        print(f"transform E=64 / E=0 = {t / rates['transform E=0']:.2f}")
    if "dense-input BiLSTM (no Spark)" in rates:
        print(f"transform E=64 / dense-input BiLSTM alone = {t / rates['dense-input BiLSTM (no Spark)']:.2f}")
    if r["pregrouped_shuffles"] is not None:
        print(
            f"input grouped upstream: floor x{rates['pre-grouped floor (sort only)'] / grouped:.2f} without the "
            f"second shuffle; transform x{rates['transform E=64, pre-grouped'] / t:.2f}; shuffles left in "
            f"transform added to the plan on that input: {r['pregrouped_shuffles']}"
        )
    print(f"peak Python worker RSS {r['worker_rss'] / 2**20:.0f} MB")


def fit_once(df, embedding: int, label: str) -> dict:
    from skol_spark import BiLSTMClassifier

    base = psutil.Process().memory_info().rss
    with PeakRSS() as peak:
        t0 = time.perf_counter()
        model = BiLSTMClassifier(
            windowSize=WINDOW, hiddenSize=HIDDEN, numLayers=LAYERS, dropout=0.0, epochs=1, batchSize=32,
            embeddingSize=embedding, ensembleSize=1, labels=LABELS,
        ).fit(df)
        seconds = time.perf_counter() - t0
    del model
    return {"label": label, "seconds": seconds, "rss_growth": peak.peak - base}


def csr_bytes(df) -> int:
    """What the driver's CSR training rows take: 8 bytes a stored value, 16 a row (indptr, order)."""
    nnz = df.select("features").rdd.map(lambda r: int(r[0].numNonzeros())).sum()
    return 8 * nnz + 16 * df.count()


def fit_comparison(spark, positions: int) -> None:
    results = []
    sparse = hashed_documents(spark, positions, 4096, seed=1).cache()
    n = sparse.count()
    fit_once(hashed_documents(spark, 2000, 4096, seed=2), EMBEDDING, "warm-up")  # one-off TF/Keras costs
    for embedding in (0, EMBEDDING):
        results.append(dict(fit_once(sparse, embedding, f"4096-dim E={embedding}"), positions=n, data=csr_bytes(sparse)))
    sparse.unpersist()
    for k in (1, 3):
        wide = hashed_documents(spark, positions * k, 2**18, seed=3).cache()
        m = wide.count()
        results.append(dict(fit_once(wide, EMBEDDING, f"2^18-dim E={EMBEDDING}"), positions=m, data=csr_bytes(wide)))
        wide.unpersist()
    print("\n## fit: 1 epoch, batch 32 (driver peak RSS growth over the RSS before fit)")
    print(f"{'input':<18} {'positions':>9} {'seconds':>8} {'pos/s':>8} {'RSS growth MB':>14} {'CSR data MB':>12}")
    for r in results:
        print(
            f"{r['label']:<18} {r['positions']:>9} {r['seconds']:>8.1f} {r['positions'] / r['seconds']:>8,.0f} "
            f"{r['rss_growth'] / 2**20:>14.0f} {r['data'] / 2**20:>12.1f}"
        )
    print(f"fit 4096-dim E=0 / E=64 time = {results[0]['seconds'] / results[1]['seconds']:.2f}")
    lo, hi = results[2], results[3]
    slope = (hi["rss_growth"] - lo["rss_growth"]) / max(1, hi["data"] - lo["data"])
    fixed = EMBEDDING * 2**18 * 4 * 4 / 2**20  # kernel, its gradient and two Adam moments
    print(f"2^18 dims: RSS growth per extra CSR byte {slope:.2f}; projection kernel + Adam state ~{fixed:.0f} MB fixed")


def fixed_sparse_documents(spark, docs: int, length: int, dim: int = 4096, nonzeros: int = 40, seed: int = 0):
    """``docs`` documents of ``length`` positions, each row ``nonzeros`` random columns of ``dim``, positive values."""
    from pyspark.ml.linalg import SparseVector

    rng = np.random.default_rng(seed)
    rows = []
    for d in range(docs):
        for p in range(length):
            columns = np.sort(rng.choice(dim, nonzeros, replace=False))
            rows.append((f"doc-{d:05d}", p, SparseVector(dim, columns.tolist(), rng.random(nonzeros).tolist()), 0.0))
    return spark.createDataFrame(rows, _vector_rows())


def _vector_rows():
    """The schema of the documents above (VectorUDT needs pyspark, imported late)."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T

    return T.StructType([T.StructField("doc_id", T.StringType()), T.StructField("line_number", T.IntegerType()),
                         T.StructField("features", VectorUDT()), T.StructField("label", T.DoubleType())])


def fixed_dense_documents(spark, docs: int, length: int, dim: int = 256, seed: int = 0):
    from pyspark.ml.linalg import DenseVector

    rng = np.random.default_rng(seed)
    values = rng.normal(size=(docs * length, dim))
    rows = [(f"doc-{i // length:05d}", i % length, DenseVector(values[i]), 0.0) for i in range(docs * length)]
    return spark.createDataFrame(rows, _vector_rows())


class _TimedForward:
    """A forward pass that adds up the seconds its network calls (``from_rows``) take."""

    def __init__(self, forward):
        self.forward, self.projection, self.seconds = forward, forward.projection, 0.0

    def prepare(self, features):
        return self.forward.prepare(features)

    def from_rows(self, prepared, rows, mask):
        started = time.perf_counter()
        out = self.forward.from_rows(prepared, rows, mask)
        self.seconds += time.perf_counter() - started
        return out


def executor_path_seconds(spec, batches) -> tuple[float, float]:
    """(network seconds, executor code seconds) of ``label_partition`` over ``batches``, one thread."""
    from skol_spark.transform import predict

    timed = _TimedForward(predict.get_network(spec.network, "/CPU:0", spec.inference_engine, spec.cpus))
    original = predict.get_network
    predict.get_network = lambda *args, **kwargs: timed
    try:
        started = time.perf_counter()
        for _ in predict.label_partition(spec, iter(batches)):
            pass
        return timed.seconds, time.perf_counter() - started
    finally:
        predict.get_network = original


def engine_comparison(spark, docs: int, length: int, rounds: int) -> None:
    """Keras against the ONNX Runtime path, in process and through Spark, beside the grouped floor."""
    import dataclasses

    from skol_spark import BiLSTMClassificationModel
    from skol_spark.nn.network import build_network
    from skol_spark.transform import predict

    predict._configure_threads(1)  # this process's TensorFlow: one thread, as an executor task with one core
    inputs = {"sparse 4,096-dim, 40 non-zeros": (fixed_sparse_documents(spark, docs, length), 4096),
              "dense 256-dim": (fixed_dense_documents(spark, docs, length), 256)}
    print(f"\n## inference engines: {docs} documents x {length} positions; network 64 x 2, projection 64, window 50")
    header = (f"{'input':<32} {'network':<10} {'path':<22} {'Keras':>9} {'fast':>9} {'floor':>9} "
              f"{'fast/Keras':>10} {'fast/floor':>10}")
    lines = []
    for input_name, (df, dim) in inputs.items():
        df = df.cache()
        n = df.count()
        table = df.select("doc_id", "line_number", "features").sort("doc_id", "line_number").toArrow()
        rows = pa.StructArray.from_arrays([table.column(i).combine_chunks() for i in range(3)], names=table.column_names)
        batches = [rows.slice(lo, 10000) for lo in range(0, len(rows), 10000)]
        grouped = floors(df)["grouped floor"]
        for members in (1, 3):
            network = build_network(WINDOW, dim, len(LABELS), hidden_size=HIDDEN, num_layers=LAYERS, dropout=0.0,
                                    seed=0, embedding_size=EMBEDDING, ensemble_size=members)
            keras_model = BiLSTMClassificationModel.fromKeras(network, labels=LABELS, windowSize=WINDOW,
                                                              inferenceEngine="keras")
            fast_model = keras_model.copy({keras_model.inferenceEngine: "auto"})
            specs = {e: dataclasses.replace(m._predict_spec(), cpus=1) for e, m in
                     (("keras", keras_model), ("auto", fast_model))}
            jobs = {"floor": grouped, "keras": lambda m=keras_model, d=df: noop(m.transform(d)),
                    "auto": lambda m=fast_model, d=df: noop(m.transform(d))}
            for spec in specs.values():
                executor_path_seconds(spec, batches)  # build, trace and warm
            for job in jobs.values():
                job()
            network_s, code_s, wall = ({e: [] for e in specs}, {e: [] for e in specs}, {k: [] for k in jobs})
            with PeakChildMemory() as children:
                for _ in range(rounds):
                    for engine, spec in specs.items():
                        a, b = executor_path_seconds(spec, batches)
                        network_s[engine].append(a)
                        code_s[engine].append(b)
                    for key, job in jobs.items():
                        wall[key].append(measure(job)[0])
            label = "1 network" if members == 1 else f"ensemble of {members}"
            us = lambda seconds, n=n: 1e6 * statistics.median(seconds) / n  # noqa: E731
            for path, values in (("network (in process)", network_s), ("executor code (in process)", code_s)):
                k, f = us(values["keras"]), us(values["auto"])
                lines.append(f"{input_name:<32} {label:<10} {path:<22} {k:>9.2f} {f:>9.2f} {'':>9} {k / f:>10.2f} {'':>10}")
            k, f, g = us(wall["keras"]), us(wall["auto"]), us(wall["floor"])
            lines.append(f"{input_name:<32} {label:<10} {'transform (Spark)':<22} {k:>9.2f} {f:>9.2f} {g:>9.2f} "
                         f"{k / f:>10.2f} {g / f:>10.2f}")
            lines.append(f"{'':<32} {label:<10} peak Python worker RSS {children.worker / 2**20:,.0f} MB")
        df.unpersist()
    print("us/position (medians); fast/Keras and fast/floor are speed ratios (higher is faster)")
    print(header)
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", action="store_true", help="only the inference engines side by side")
    parser.add_argument("--docs", type=int, default=400, help="documents (--engines)")
    parser.add_argument("--doc-length", type=int, default=50, help="positions a document (--engines)")
    parser.add_argument("--sizes", nargs="*", default=["sparse4096", "hashed2^18", "dense256"])
    parser.add_argument("--positions", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-fit", action="store_true")
    args = parser.parse_args()

    spark = quiet_local_spark(driver_memory="6g")
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"load {os.getloadavg()[0]:.1f}; pyspark {spark.version}; rounds {args.rounds} (medians)")
    if args.engines:
        engine_comparison(spark, args.docs, args.doc_length, args.rounds)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        spark.stop()
        return
    makers = {
        "sparse4096": lambda: (hashed_documents(spark, args.positions, 4096), 4096),
        "hashed2^18": lambda: (hashed_documents(spark, args.positions, 2**18), 2**18),
        "dense256": lambda: (dense_documents(spark, args.positions), 256),
    }
    for name in args.sizes:
        df, dim = makers[name]()
        print_input(run_input(spark, name, df, dim, args.rounds))
    if not args.skip_fit:
        fit_comparison(spark, args.positions)
    spark.stop()


if __name__ == "__main__":
    main()
