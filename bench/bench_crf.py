"""What outputLayer="crf" costs and gives: fit and transform time beside the softmax, and
posterior (marginals' argmax) versus Viterbi decoding.

Run from the repository root (about 8 minutes on 2 cores):

    .venv/bin/python bench/bench_crf.py
    .venv/bin/python bench/bench_crf.py --epochs 4 --train-docs 100

First, without Spark: one training epoch and one forward pass of each network
on the same random windows, interleaved 7 times (medians): the cost of the CRF
layer itself, robust to a loaded machine (``--layer-cost-only`` stops there).

Then one local[2] Spark. Both networks are fitted ``--repeats`` times (default 2), the
order alternating between rounds, and each layer's fastest fit and transform are kept,
on the same synthetic corpus (``make_synthetic_documents``: treatments of one
Nomenclature line followed by Description lines that look like ordinary text)
with the same Params apart from ``outputLayer``. Transform is timed on a larger
corpus forced with Spark's ``noop`` writer, after a warm-up transform (TensorFlow
import, network build and trace). Macro-F1 is measured on a held-out corpus
(other documents, same class prototypes).

With ``--journals DIR`` (e.g. ``../shared/data/skol-annotated/journals``) it
instead runs ``skol_spark.skol.journals.compare_on_journals`` with
``outputLayer="crf"`` (the estimator's defaults otherwise, one network; the public split; about 10 minutes)
and compares the two decodings on the evaluation volumes.

Decoding: for the CRF network, the held-out documents are labelled on the driver
through the executors' window code (``windows.predict_block``) two ways: the
argmax of the marginals averaged over overlapping windows (what ``transform``
does), and Viterbi per window (each window's best path votes one-hot for its
positions; ties go to the marginals), at stride = window and stride = window/2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from benchlib import quiet_local_spark  # noqa: E402


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    confusion = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(float)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    return np.divide(2 * tp, denominator, out=np.zeros(k), where=denominator > 0)


def held_out_arrays(num_docs: int, num_features: int, seed: int):
    """(features (n, D), labels (n,), doc lengths) of a synthetic corpus, sorted by document."""
    from skol_spark.skol.datasets import synthetic_documents_arrow

    table = synthetic_documents_arrow(num_docs=num_docs, num_features=num_features, seed=seed)
    features = table.column("features").combine_chunks().flatten().to_numpy().reshape(-1, num_features)
    docs = table.column("doc_id").to_numpy(zero_copy_only=False)
    _, lengths = np.unique(docs, return_counts=True)
    return features.astype(np.float32), table.column("label").to_numpy().astype(np.int64), lengths


def decode(network, features, lengths, window, stride, viterbi: bool) -> np.ndarray:
    import keras

    from skol_spark.core.windows import predict_block
    from skol_spark.nn.crf import crf_parameters, emission_model, viterbi_decode

    k = network.outputs[0].shape[-1]
    emitter = emission_model(network)
    transitions, start, end = crf_parameters(network)

    def marginals(x, m):
        return keras.ops.convert_to_numpy(network([x, m], training=False))

    def viterbi_votes(x, m):
        path = viterbi_decode(keras.ops.convert_to_numpy(emitter([x, m], training=False)), transitions, start, end, m)
        return np.eye(k)[path] + 1e-3 * marginals(x, m)

    forward = viterbi_votes if viterbi else marginals
    return predict_block(forward, features, lengths, window, stride, 256, k).argmax(axis=1)


def layer_cost(repeats: int, window: int = 50, dim: int = 64, hidden: int = 32, windows: int = 512) -> None:
    """Keras only, no Spark: one training epoch and one forward pass of each network, interleaved."""
    import keras
    import tensorflow as tf

    from skol_spark.nn.crf import CRFTrainer
    from skol_spark.nn.network import WeightedSparseCategoricalCrossentropy, build_network

    rng = np.random.default_rng(0)
    x = rng.normal(size=(windows, window, dim)).astype(np.float32)
    mask = np.ones((windows, window), bool)
    mask[::4, window // 2 :] = False
    y = rng.integers(0, 3, size=(windows, window)).astype(np.int32)
    inputs = {"features": x, "mask": mask}
    runs = {}
    for layer in ("softmax", "crf"):
        net = build_network(window, dim, 3, hidden_size=hidden, num_layers=1, dropout=0.1, seed=0, output_layer=layer)
        trainer = CRFTrainer(net, [1.0, 2.0, 3.0]) if layer == "crf" else net
        loss = None if layer == "crf" else WeightedSparseCategoricalCrossentropy([1.0, 2.0, 3.0])
        trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
        forward = tf.function(lambda a, m, net=net: net([a, m], training=False))
        trainer.fit(inputs, y, batch_size=32, epochs=1, verbose=0)  # trace
        forward(x[:256], mask[:256])
        runs[layer] = (trainer, forward)
    fit_s, predict_s = {k: [] for k in runs}, {k: [] for k in runs}
    for _ in range(repeats):
        for layer, (trainer, forward) in runs.items():
            start = time.perf_counter()
            trainer.fit(inputs, y, batch_size=32, epochs=1, verbose=0)
            fit_s[layer].append(time.perf_counter() - start)
            start = time.perf_counter()
            for i in range(0, windows, 256):
                forward(x[i : i + 256], mask[i : i + 256])
            predict_s[layer].append(time.perf_counter() - start)
    print(f"\nLayer cost, Keras only ({windows} windows of {window} x {dim}, BiLSTM {hidden} x 1, "
          f"{repeats} interleaved repeats, median):")
    print("| outputLayer | train epoch s | forward s (batches of 256) |")
    print("|---|---:|---:|")
    for layer in runs:
        print(f"| {layer} | {np.median(fit_s[layer]):.2f} | {np.median(predict_s[layer]):.3f} |")
    print(f"crf / softmax: train {np.median(fit_s['crf']) / np.median(fit_s['softmax']):.2f} x, "
          f"forward {np.median(predict_s['crf']) / np.median(predict_s['softmax']):.2f} x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-docs", type=int, default=200)
    parser.add_argument("--test-docs", type=int, default=100)
    parser.add_argument("--transform-docs", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="fits and transforms per layer (fastest kept)")
    parser.add_argument("--journals", help="SKOL journals directory: the journal run instead")
    parser.add_argument("--layer-cost-only", action="store_true", help="only the Keras-level cost, no Spark")
    args = parser.parse_args()
    layer_cost(repeats=7)
    if args.layer_cost_only:
        return None
    if args.journals:
        return journals(args.journals, args.epochs if "--epochs" in sys.argv else None)

    from skol_spark import BiLSTMClassifier
    from skol_spark.skol.datasets import SYNTHETIC_LABELS, make_synthetic_documents

    spark = quiet_local_spark()
    d = args.features
    train = make_synthetic_documents(spark, num_docs=args.train_docs, num_features=d, seed=1).cache()
    test = make_synthetic_documents(spark, num_docs=args.test_docs, num_features=d, seed=2).cache()
    big = make_synthetic_documents(spark, num_docs=args.transform_docs, num_features=d, seed=3).cache()
    warm = make_synthetic_documents(spark, num_docs=4, num_features=d, seed=4).cache()
    print(f"rows: train {train.count()}, test {test.count()}, transform {big.count()}", flush=True)
    # One network for both layers (a CRF output cannot be an ensemble); the estimator's defaults otherwise.
    params = dict(windowSize=50, hiddenSize=32, numLayers=1, dropout=0.1, epochs=args.epochs,
                  learningRate=0.005, seed=0, ensembleSize=1)
    window = params["windowSize"]
    features, labels, lengths = held_out_arrays(args.test_docs, d, seed=2)
    fit_s, transform_s, f1s, models = {}, {}, {}, {}
    for round_ in range(args.repeats):  # alternate the order; keep each layer's fastest time
        for layer in ("softmax", "crf") if round_ % 2 == 0 else ("crf", "softmax"):
            start = time.perf_counter()
            model = BiLSTMClassifier(outputLayer=layer, **params).fit(train)
            fit_s[layer] = min(fit_s.get(layer, np.inf), time.perf_counter() - start)
            model.transform(warm).write.format("noop").mode("overwrite").save()
            start = time.perf_counter()
            model.transform(big).write.format("noop").mode("overwrite").save()
            transform_s[layer] = min(transform_s.get(layer, np.inf), time.perf_counter() - start)
            out = model.transform(test).select("label", "prediction").toPandas()
            f1s[layer] = per_class_f1(out["label"].to_numpy().astype(int), out["prediction"].to_numpy().astype(int), 3)
            models[layer] = model
            print(f"{layer}: fit {fit_s[layer]:.1f} s, transform {transform_s[layer]:.1f} s, "
                  f"macro-F1 {f1s[layer].mean():.3f}", flush=True)
    rows = {layer: (fit_s[layer], transform_s[layer], f1s[layer]) for layer in ("softmax", "crf")}
    print("\n| outputLayer | fit s | transform s | macro-F1 | " + " | ".join(SYNTHETIC_LABELS) + " |")
    print("|---|---:|---:|---:|" + "---:|" * 3)
    for layer, (fit, transform, f1) in rows.items():
        print(f"| {layer} | {fit:.1f} | {transform:.1f} | {f1.mean():.3f} | "
              + " | ".join(f"{v:.3f}" for v in f1) + " |")
    base = rows["softmax"]
    print(f"crf / softmax: fit {rows['crf'][0] / base[0]:.2f} x, transform {rows['crf'][1] / base[1]:.2f} x")

    compare_decodings(models["crf"].getKerasModel(), features, labels, lengths, window, SYNTHETIC_LABELS)
    spark.stop()


def compare_decodings(network, features, labels, lengths, window, names) -> None:
    print("\nCRF decoding on the held-out documents (driver, executors' window code):")
    print("| stride | decoding | macro-F1 | " + " | ".join(names) + " | positions differing |")
    print("|---:|---|---:|" + "---:|" * len(names) + "---:|")
    for stride in (window, window // 2):
        posterior = decode(network, features, lengths, window, stride, viterbi=False)
        viterbi = decode(network, features, lengths, window, stride, viterbi=True)
        differ = float((posterior != viterbi).mean())
        for name, predicted in (("posterior", posterior), ("viterbi", viterbi)):
            f1 = per_class_f1(labels, predicted, len(names))
            print(f"| {stride} | {name} | {f1.mean():.3f} | " + " | ".join(f"{v:.3f}" for v in f1)
                  + f" | {differ:.4f} |", flush=True)


def journals(root: str, epochs: int | None) -> None:
    from skol_spark.skol.journals import compare_on_journals

    spark = quiet_local_spark()
    extra = {} if epochs is None else {"epochs": epochs}
    comparison = compare_on_journals(spark, root, outputLayer="crf", **extra)
    print(comparison.format(), flush=True)
    model = comparison.model
    rows = comparison.eval_features.orderBy("doc_id", "line_number").toPandas()
    features = np.stack([v.toArray() for v in rows["features"]]).astype(np.float32)
    _, first, lengths = np.unique(rows["doc_id"].to_numpy(), return_index=True, return_counts=True)
    assert np.all(np.diff(first) > 0), "documents must be contiguous"
    compare_decodings(model.getKerasModel(), features, rows["label"].to_numpy().astype(int), lengths,
                      model.getWindowSize(), model.labels_)
    spark.stop()


if __name__ == "__main__":
    main()
