"""Where a driver fit's training step goes: skol_spark's sparse step against bare Keras steps.

Run from the repository root (after ``make install``; about 3 minutes):

    .venv/bin/python bench/bench_fit_step.py
    .venv/bin/python bench/bench_fit_step.py --steps 100 --features 32768

The defaults' network (64 units x 2 layers, projection 64, window 50,
dropout 0.3), batches of 16 windows with masked tails, 3 classes. Per step,
medians over ``--steps`` steps after a warm-up:

* ``bare Keras, TensorFlow``: ``train_on_batch`` of the sequence model on
  dense 64-dim windows (no projection), Keras' own settings (no XLA on CPU);
* ``bare Keras, TensorFlow + XLA``: the same compiled with ``jit_compile=True``;
* ``bare Keras, JAX``: the same on the JAX backend (a subprocess: the backend
  is chosen once per process);
* ``skol_spark sparse step``: what fit runs on sparse rows
  (``sparse_training_model`` + ``LazyAdam``), split into building the batch
  (``batch_inputs``) and the step itself;
* ``sparse step, sequence model under XLA``: a prototype of the same step
  with the sequence model's forward and backward pass in one XLA-compiled
  function (the sparse projection, its row-sparse gradient and LazyAdam stay
  outside), with its first step (the compilation) beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WINDOW, HIDDEN, LAYERS, EMBEDDING, BATCH, CLASSES = 50, 64, 2, 64, 16, 3


def _batch(rng, width: int):
    import numpy as np

    lengths = rng.integers(WINDOW // 2, WINDOW + 1, size=BATCH)
    mask = np.arange(WINDOW)[None] < lengths[:, None]
    x = (rng.normal(size=(BATCH, WINDOW, width)) * mask[..., None]).astype("float32")
    y = np.where(mask, rng.integers(0, CLASSES, size=(BATCH, WINDOW)), 0).astype("int32")
    return x, mask, y


def bare_step_ms(steps: int, jit: bool) -> float:
    """Median ms of ``train_on_batch`` of the bare sequence model on dense windows (this process's backend)."""
    import keras
    import numpy as np

    from skol_spark.nn.network import WeightedSparseCategoricalCrossentropy, build_sequence

    model = build_sequence(WINDOW, EMBEDDING, CLASSES, HIDDEN, LAYERS, 0.3, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.002), loss=WeightedSparseCategoricalCrossentropy([1.0] * CLASSES),
                  jit_compile=jit)
    rng = np.random.default_rng(0)
    batches = [_batch(rng, EMBEDDING) for _ in range(8)]
    times = []
    for i in range(steps + 5):
        x, mask, y = batches[i % len(batches)]
        started = time.perf_counter()
        model.train_on_batch([x, mask], y, sample_weight=mask.astype("float32"))
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[5:])


def sparse_step_ms(steps: int, features: int, nonzeros: int) -> tuple[float, float]:
    """(batch building ms, step ms) of fit's sparse path on rows of ``nonzeros`` random columns."""
    import numpy as np

    from skol_spark.core.windows import window_rows
    from skol_spark.fit.sparse_training import batch_inputs, sparse_training_model
    from skol_spark.fit.training import TrainingConfig, compile_trainer
    from skol_spark.nn.network import build_network

    rng = np.random.default_rng(0)
    data = _sparse_data(features, nonzeros)
    n = len(data.labels)
    network = build_network(WINDOW, features, CLASSES, HIDDEN, LAYERS, 0.3, seed=0, embedding_size=EMBEDDING)
    config = TrainingConfig(WINDOW, CLASSES, [1.0] * CLASSES, HIDDEN, EMBEDDING, LAYERS, 0.3, "softmax", 1, BATCH,
                            0.002, 0, 0.0, 0, 256)
    trainer = compile_trainer(sparse_training_model(network), config, sparse_rows=True)
    build, step = [], []
    for _ in range(steps + 5):
        starts = rng.integers(0, n - WINDOW, size=BATCH)
        lengths = rng.integers(WINDOW // 2, WINDOW + 1, size=BATCH)
        started = time.perf_counter()
        mask, index = window_rows(starts, lengths, WINDOW)
        inputs = batch_inputs(data, index, mask)
        y = np.where(mask, data.labels[np.maximum(index, 0)], 0).astype(np.int32)
        built = time.perf_counter()
        trainer.train_on_batch(inputs, y, sample_weight=mask.astype("float32"))
        build.append(built - started)
        step.append(time.perf_counter() - built)
    return 1000 * statistics.median(build[5:]), 1000 * statistics.median(step[5:])


def _sparse_data(features: int, nonzeros: int):
    import numpy as np

    from skol_spark.fit.training_data import FeatureRows, TrainingData

    rng = np.random.default_rng(0)
    n = 40 * BATCH * WINDOW
    indptr = np.arange(0, (n + 1) * nonzeros, nonzeros)
    columns = np.sort(rng.integers(0, features, size=(n, nonzeros)), axis=1).reshape(-1).astype(np.int32)
    values = rng.random(n * nonzeros).astype(np.float32)
    rows = FeatureRows(np.arange(n), features, csr=(indptr, columns, values))
    return TrainingData(features=rows, labels=rng.integers(0, CLASSES, n), doc_lengths=np.full(n // WINDOW, WINDOW))


def xla_sequence_step_ms(steps: int, features: int, nonzeros: int) -> tuple[float, float]:
    """(first step s, median step ms) of the sparse step with the sequence model's gradient under XLA."""
    import numpy as np
    import tensorflow as tf

    from skol_spark.core.windows import window_rows
    from skol_spark.fit.sparse_training import LazyAdam, batch_inputs
    from skol_spark.nn.network import WeightedSparseCategoricalCrossentropy, build_network
    from skol_spark.nn.projection import split_network

    data = _sparse_data(features, nonzeros)
    projection, sequence = split_network(
        build_network(WINDOW, features, CLASSES, HIDDEN, LAYERS, 0.3, seed=0, embedding_size=EMBEDDING))
    loss_fn = WeightedSparseCategoricalCrossentropy([1.0] * CLASSES)
    optimizer = LazyAdam(0.002)
    variables = [projection.kernel, projection.bias, *sequence.trainable_variables]
    optimizer.build(variables)

    @tf.function(jit_compile=True)
    def sequence_gradients(windows, mask, y, weights):
        with tf.GradientTape() as tape:
            tape.watch(windows)
            loss = loss_fn(y, sequence([windows, mask], training=True), sample_weight=weights)
        return loss, tape.gradient(loss, [windows, *sequence.trainable_variables])

    def per_step(dtype):
        return tf.TensorSpec([None, WINDOW], dtype)

    @tf.function(input_signature=[tf.SparseTensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32),
                                  per_step(tf.int32), per_step(tf.bool), per_step(tf.int32), per_step(tf.float32)])
    def step(rows, columns, index, mask, y, weights):
        projected = tf.sparse.sparse_dense_matmul(rows, tf.gather(projection.kernel, columns)) + projection.bias
        loss, (windows_grad, *grads) = sequence_gradients(tf.gather(projected, index), mask, y, weights)
        projected_grad = tf.math.unsorted_segment_sum(
            tf.reshape(windows_grad, [-1, EMBEDDING]), tf.reshape(index, [-1]), tf.shape(projected)[0])
        kernel_rows_grad = tf.sparse.sparse_dense_matmul(rows, projected_grad, adjoint_a=True)
        optimizer.apply([tf.IndexedSlices(kernel_rows_grad, columns), tf.reduce_sum(projected_grad, 0), *grads],
                        variables)
        return loss

    rng = np.random.default_rng(1)
    times = []
    for _ in range(steps + 5):
        mask, index = window_rows(rng.integers(0, len(data.labels) - WINDOW, size=BATCH),
                                  rng.integers(WINDOW // 2, WINDOW + 1, size=BATCH), WINDOW)
        inputs = batch_inputs(data, index, mask)
        y = np.where(mask, data.labels[np.maximum(index, 0)], 0).astype(np.int32)
        started = time.perf_counter()
        float(step(inputs["rows"], inputs["columns"], inputs["row_index"], mask, y, mask.astype("float32")))
        times.append(time.perf_counter() - started)
    return times[0], 1000 * statistics.median(times[5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--features", type=int, default=32768)
    parser.add_argument("--nonzeros", type=int, default=40)
    parser.add_argument("--jax-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jax_only:  # the subprocess: KERAS_BACKEND=jax
        print(json.dumps({"jax": bare_step_ms(args.steps, jit=True)}))
        return
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    jax_run = subprocess.run([sys.executable, __file__, "--jax-only", "--steps", str(args.steps)], env=env,
                             capture_output=True, text=True)
    jax_ms = json.loads(jax_run.stdout.strip().splitlines()[-1])["jax"] if jax_run.returncode == 0 else float("nan")
    tf_ms = bare_step_ms(args.steps, jit=False)
    xla_ms = bare_step_ms(args.steps, jit=True)
    build_ms, step_ms = sparse_step_ms(args.steps, args.features, args.nonzeros)
    compile_s, xla_step_ms = xla_sequence_step_ms(args.steps, args.features, args.nonzeros)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; batch {BATCH} windows of "
          f"{WINDOW}, 64 x 2 units, dropout 0.3; ms per step (medians of {args.steps})")
    rows = [("bare Keras, TensorFlow", tf_ms), ("bare Keras, TensorFlow + XLA", xla_ms), ("bare Keras, JAX", jax_ms),
            (f"skol_spark sparse step ({args.features} dims): batch", build_ms),
            ("skol_spark sparse step: train_on_batch", step_ms), ("skol_spark sparse step: total", build_ms + step_ms),
            ("sparse step, sequence model under XLA", xla_step_ms)]
    for name, ms in rows:
        print(f"{name:<48} {ms:>8.1f} {ms / tf_ms:>6.2f} x bare TF")
    print(f"sparse step under XLA: first step (tracing and compiling) {compile_s:.1f} s")


if __name__ == "__main__":
    main()
