"""Steady-state training speed without Spark: epochs of train_network on synthetic CSR rows.

    .venv/bin/python bench/bench_fit_epochs.py

16,000 positions in documents of 100, 20 non-zeros a row, one BiLSTM of the
estimator's defaults (64 units x 2 layers, window 50) without dropout, batch
32, 3 epochs; prints each epoch's seconds (the first one pays tracing) and the
median of the later ones as positions/s, for 4,096 dims without and with the
projection (E=64) and 2^18 dims with it.
"""

import time

import keras
import numpy as np

from skol_spark import BiLSTMClassifier
from skol_spark.fit.training import TrainingConfig, train_network
from skol_spark.fit.training_data import FeatureRows, TrainingData

POSITIONS = 16_000
rng = np.random.default_rng(0)


def data(n: int, dim: int, nnz: int = 20) -> TrainingData:
    """``n`` CSR rows of ``nnz`` random non-zeros in documents of 100, random labels of 3 classes."""
    idx = np.sort(rng.integers(0, dim, (n, nnz)), axis=1).astype(np.int32)
    indptr = np.arange(0, (n + 1) * nnz, nnz)
    csr = (indptr, idx.ravel(), rng.random(n * nnz).astype(np.float32))
    return TrainingData(FeatureRows(np.arange(n), dim, csr=csr), rng.integers(0, 3, n), np.full(n // 100, 100))


def config(embedding: int) -> TrainingConfig:
    """The TrainingConfig fit would build: the estimator's defaults apart from what is named here."""
    classifier = BiLSTMClassifier(
        embeddingSize=embedding, ensembleSize=1, dropout=0.0, epochs=3, batchSize=32, learningRate=1e-3
    )
    return TrainingConfig(**classifier._fit_request().training, num_classes=3, class_weights=[1.0, 1.0, 1.0])


class EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.started)


timer = EpochTimer()
keras_fit = keras.Model.fit


def timed_fit(self, *args, **kwargs):  # time the epochs of the fit train_network runs
    kwargs["callbacks"] = [*kwargs.get("callbacks", []), timer]
    return keras_fit(self, *args, **kwargs)


keras.Model.fit = timed_fit
for dim, embedding in [(4096, 0), (4096, 64), (2**18, 64)]:
    timer.times = []
    train_network(data(POSITIONS, dim), config(embedding))
    epochs = ", ".join(f"{t:.1f}" for t in timer.times)
    print(f"D={dim} E={embedding}: epoch seconds [{epochs}], steady "
          f"{POSITIONS / np.median(timer.times[1:]):.0f} positions/s", flush=True)
