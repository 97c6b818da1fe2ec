"""Driver side: fit the network on training rows collected by ``training_data``.

Windows are index ranges into the rows (sorted by document and position) and
are gathered batch by batch, so the training data exists once in memory.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

import keras

from skol_spark.crf import CRFTrainer
from skol_spark.errors import ModelRebuildError
from skol_spark.network import (
    FEATURES_INPUT,
    MASK_INPUT,
    WeightedSparseCategoricalCrossentropy,
    build_network,
)
from skol_spark.trained_network import TrainedNetwork
from skol_spark.training_data import FeatureRows, TrainingData
from skol_spark.windows import gather_windows, predict_block, window_index

__all__ = ["TrainingConfig", "train_network", "verify_rebuild"]

logger = logging.getLogger("skol_spark")


@dataclass(frozen=True)
class TrainingConfig:
    """What training needs, built from the estimator's Params (whose defaults apply).

    Field names follow the Params (``window_size`` is ``windowSize``); there
    are no defaults here, so a Param's default lives in ``params.py`` only.
    """

    window_size: int
    num_classes: int
    class_weights: Sequence[float]
    hidden_size: int
    num_layers: int
    dropout: float
    output_layer: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    validation_fraction: float
    early_stopping_patience: int
    predict_batch_size: int
    initial_weights: list[np.ndarray] | None = field(default=None, repr=False)


class _WindowBatches(keras.utils.PyDataset):
    """Training batches gathered from the shared feature array on demand."""

    def __init__(self, data: TrainingData, starts, lengths, window, batch_size, seed=None):
        super().__init__()
        self.data, self.starts, self.lengths = data, starts, lengths
        self.window, self.batch_size = window, batch_size
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.order = np.arange(len(starts))
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.starts) / self.batch_size)

    def __getitem__(self, i: int):
        pick = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        x, mask, rows = gather_windows(
            self.data.features, self.starts[pick], self.lengths[pick], self.window
        )
        y = np.where(mask, self.data.labels[np.where(mask, rows, 0)], 0).astype(np.int32)
        return {FEATURES_INPUT: x, MASK_INPUT: mask}, y, mask.astype(np.float32)

    def on_epoch_end(self) -> None:
        if self.rng is not None:
            self.rng.shuffle(self.order)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(macro-F1 over classes present in truth or prediction, accuracy)."""
    confusion = np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
    tp = np.diag(confusion).astype(float)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=present)
    accuracy = tp.sum() / max(1, confusion.sum())
    return float(f1[present].mean()) if present.any() else 0.0, float(accuracy)


class _EpochLog(keras.callbacks.Callback):
    """Validation metrics on whole validation documents, and one log line per epoch."""

    def __init__(self, data: TrainingData, val_docs: np.ndarray | None, config: TrainingConfig):
        super().__init__()
        self.data, self.config = data, config
        self.val = None
        if val_docs is not None and len(val_docs):
            offsets = np.concatenate([[0], np.cumsum(data.doc_lengths)])
            rows = np.concatenate([np.arange(offsets[d], offsets[d + 1]) for d in val_docs])
            # A view of the validation rows: windows are densified batch by batch.
            features = data.features
            view = features.subset(rows) if isinstance(features, FeatureRows) else features[rows]
            self.val = (view, data.labels[rows], data.doc_lengths[val_docs])

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        if self.val is not None:
            features, labels, lengths = self.val
            network = getattr(self.model, "network", self.model)  # a CRFTrainer's network
            forward = lambda x, m: network([x, m], training=False)  # noqa: E731
            probs = predict_block(
                forward,
                features,
                lengths,
                self.config.window_size,
                self.config.window_size,
                self.config.predict_batch_size,
                self.config.num_classes,
            )
            f1, accuracy = macro_f1(labels, probs.argmax(axis=1), self.config.num_classes)
            logs["val_macro_f1"], logs["val_accuracy"] = f1, accuracy
        logger.info(
            "epoch %d/%d %s",
            epoch + 1,
            self.config.epochs,
            " ".join(f"{k}={float(v):.4f}" for k, v in sorted(logs.items())),
        )


class _BestEpoch(keras.callbacks.Callback):
    """Early stopping on validation macro-F1 (logged by _EpochLog, which runs first).

    Keeps the weights of the first epoch with the best score, stops after
    ``patience`` epochs without a strictly better one, and restores them when
    training ends; ``best_epoch`` is 1-based.
    """

    def __init__(self, patience: int):
        super().__init__()
        self.patience = patience
        self.best_score, self.best_epoch, self.best_weights = -math.inf, 0, None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        score = (logs or {})["val_macro_f1"]
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch + 1
            self.best_weights = self.model.get_weights()
        elif epoch + 1 - self.best_epoch >= self.patience:
            logger.info(
                "early stopping after epoch %d: best validation macro-F1 %.4f at epoch %d",
                epoch + 1, self.best_score, self.best_epoch,
            )
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def split_documents(num_docs: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation document indices; validation keeps at least one document."""
    docs = np.arange(num_docs)
    if fraction <= 0 or num_docs < 2:
        return docs, docs[:0]
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(num_docs)
    n_val = min(num_docs - 1, max(1, round(fraction * num_docs)))
    return np.sort(shuffled[n_val:]), np.sort(shuffled[:n_val])


def train_network(data: TrainingData, config: TrainingConfig) -> tuple[keras.Model, dict[str, list[float]]]:
    """Fit a fresh (or warm-started) network; returns it and its per-epoch history."""
    keras.utils.set_random_seed(config.seed)
    model = build_network(
        config.window_size,
        data.num_features,
        config.num_classes,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        dropout=config.dropout,
        seed=config.seed,
        output_layer=config.output_layer,
    )
    if config.initial_weights is not None:
        model.set_weights(config.initial_weights)
    # A CRF network is trained through a wrapper whose loss is the weighted NLL (crf.py).
    trainer = CRFTrainer(model, config.class_weights) if config.output_layer == "crf" else model
    trainer.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=None if trainer is not model else WeightedSparseCategoricalCrossentropy(config.class_weights),
    )
    train_docs, val_docs = split_documents(
        len(data.doc_lengths), config.validation_fraction, config.seed
    )
    starts, lengths, window_doc = window_index(data.doc_lengths, config.window_size, config.window_size)
    is_train = np.isin(window_doc, train_docs)
    train = _WindowBatches(
        data, starts[is_train], lengths[is_train], config.window_size, config.batch_size, seed=config.seed
    )
    validation = None
    if len(val_docs):
        validation = _WindowBatches(
            data, starts[~is_train], lengths[~is_train], config.window_size, config.batch_size
        )
    callbacks: list[keras.callbacks.Callback] = [_EpochLog(data, val_docs, config)]
    if config.early_stopping_patience > 0:
        if len(val_docs):
            callbacks.append(_BestEpoch(config.early_stopping_patience))
        else:
            logger.warning("early stopping is off: %d document(s) leave none for validation", len(data.doc_lengths))
    history = trainer.fit(
        train,
        validation_data=validation,
        epochs=config.epochs,
        verbose=0,
        callbacks=callbacks,
    )
    clean = {k: [float(v) for v in values] for k, values in history.history.items()}
    if len(callbacks) > 1:
        clean["best_epoch"] = [float(callbacks[1].best_epoch)]
    return model, clean


def verify_rebuild(model: keras.Model, data: TrainingData, window_size: int) -> TrainedNetwork:
    """The trained network as a value, checked to rebuild from JSON and predict as ``model`` does.

    The probe is the first windows of the training documents.
    """
    starts, lengths, _ = window_index(data.doc_lengths[:8], window_size, window_size)
    x, mask, _ = gather_windows(data.features, starts[:16], lengths[:16], window_size)
    trained = TrainedNetwork.from_keras(model)
    try:
        trained.verify(model, probe=[x, mask])
    except ModelRebuildError as exc:
        raise ModelRebuildError(f"The trained network: {exc} Executors would fail the same way.") from exc
    return trained


def history_to_json(history: dict[str, list[float]]) -> str:
    return json.dumps(history, sort_keys=True)

