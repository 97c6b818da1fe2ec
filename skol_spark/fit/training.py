"""Driver side: fit the network on training rows collected by ``training_data``.

Windows are index ranges into the rows (sorted by document and position) and
are gathered batch by batch, so the training data exists once in memory.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from skol_spark.core.thresholds import macro_f1, tune_thresholds
from skol_spark.core.windows import gather_windows, predict_block, window_index, window_rows
from skol_spark.errors import ModelRebuildError
from skol_spark.fit.progress import FitProgress
from skol_spark.fit.sparse_training import LazyAdam, batch_inputs, sparse_training_model
from skol_spark.fit.training_data import FeatureRows, TrainingData
from skol_spark.nn.crf import CRFTrainer
from skol_spark.nn.network import (
    FEATURES_INPUT,
    MASK_INPUT,
    WeightedSparseCategoricalCrossentropy,
    build_network,
    ensemble_members,
    set_ensemble_weights,
)
from skol_spark.nn.projection import csr_matrix, make_forward, split_network
from skol_spark.nn.trained_network import TrainedNetwork

__all__ = ["TrainingConfig", "ValidationSplit", "split_validation", "train_network", "verify_rebuild"]

logger = logging.getLogger("skol_spark")

# The rebuild check's probe windows, densified, stay under this many bytes.
_PROBE_BYTES = 64 << 20


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
    embedding_size: int
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
    ensemble_size: int = 1
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
        inputs, mask, rows = self.inputs(self.starts[pick], self.lengths[pick])
        y = np.where(mask, self.data.labels[np.where(mask, rows, 0)], 0).astype(np.int32)
        return inputs, y, mask.astype(np.float32)

    def inputs(self, starts: np.ndarray, lengths: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
        """The network's inputs for these windows, their mask ``(B, W)`` and row index ``(B, W)``."""
        x, mask, rows = gather_windows(self.data.features, starts, lengths, self.window)
        return {FEATURES_INPUT: x, MASK_INPUT: mask}, mask, rows

    def on_epoch_end(self) -> None:
        if self.rng is not None:
            self.rng.shuffle(self.order)


class _SparseWindowBatches(_WindowBatches):
    """Batches for :func:`skol_spark.fit.sparse_training.sparse_training_model`.

    Each batch holds its distinct rows once, as a ``tf.SparseTensor`` over the
    columns they use, and a ``(B, W)`` index into them; the model projects the
    rows and gathers the windows in the graph, so no ``(B, W, D)`` array is
    ever made.
    """

    def inputs(self, starts: np.ndarray, lengths: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
        mask, rows = window_rows(starts, lengths, self.window)
        return batch_inputs(self.data, rows, mask), mask, rows


class _EpochLog(keras.callbacks.Callback):
    """Validation metrics on the validation runs (as executors predict them), and the epoch's progress."""

    def __init__(
        self,
        network: keras.Model,
        data: TrainingData,
        split: ValidationSplit,
        config: TrainingConfig,
        progress: FitProgress,
        member: int = 0,
    ):
        super().__init__()
        self.network, self.data, self.config = network, data, config
        self.progress, self.member = progress, member
        self.split, self.forward = split, None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        if self.split.has_validation:
            self.forward = self.forward or _validation_forward(self.network)
            f1, accuracy = _validation_scores(self.forward, self.data, self.split, self.config)
            logs["val_macro_f1"], logs["val_accuracy"] = f1, accuracy
        self.progress.epoch(epoch, logs, network=self.member)


class BestEpoch:
    """Early stopping on validation macro-F1, for any training loop.

    Keeps the weights of the first epoch with the best score and says to stop
    after ``patience`` epochs without a strictly better one (a line to
    ``report``, by default the ``skol_spark`` logger); ``best_epoch`` is
    1-based.
    """

    def __init__(self, patience: int, report: Callable[[str], None] | None = None):
        self.patience, self.report = patience, report or logger.info
        self.best_score, self.best_epoch, self.best_weights = -math.inf, 0, None

    def update(self, epoch: int, score: float, weights) -> bool:
        """Record ``epoch``'s (0-based) score; ``weights()`` is called only for a new best. True: stop."""
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch + 1
            self.best_weights = weights()
            return False
        if epoch + 1 - self.best_epoch >= self.patience:
            self.report(
                f"early stopping after epoch {epoch + 1}: best val_macro_f1 {self.best_score:.4f} "
                f"at epoch {self.best_epoch}"
            )
            return True
        return False


class _BestEpoch(keras.callbacks.Callback):
    """:class:`BestEpoch` for ``Model.fit`` (after _EpochLog, which logs the score); restores the
    best weights when training ends, also when all epochs ran."""

    def __init__(self, patience: int, progress: FitProgress):
        super().__init__()
        self.tracker = BestEpoch(patience, progress.line)

    @property
    def best_epoch(self) -> int:
        return self.tracker.best_epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.tracker.update(epoch, (logs or {})["val_macro_f1"], self.model.get_weights):
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.tracker.best_weights is not None:
            self.model.set_weights(self.tracker.best_weights)


def _validation_probabilities(
    forward, data: TrainingData, split: ValidationSplit, config: TrainingConfig, rows: np.ndarray
) -> np.ndarray:
    """Probabilities of ``split``'s validation ``rows``, each validation run labeled as a document."""
    return block_probabilities(forward, data.features, rows, split.val_lengths, config)


def _validation_scores(forward, data: TrainingData, split: ValidationSplit, config: TrainingConfig):
    """(macro-F1, accuracy) of the argmax on ``split``'s validation rows."""
    rows = split.val_rows
    probs = _validation_probabilities(forward, data, split, config, rows)
    return macro_f1(data.labels[rows], probs.argmax(axis=1), config.num_classes)


def ensemble_validation_score(network: keras.Model, data: TrainingData, config: TrainingConfig) -> float | None:
    """The whole network's validation macro-F1 (``ensemble_val_macro_f1``), None without validation rows."""
    split = split_validation(data.doc_lengths, config.validation_fraction, config.seed, config.window_size)
    if not split.has_validation:
        return None
    return _validation_scores(_validation_forward(network), data, split, config)[0]


def _validation_forward(network: keras.Model):
    """The executors' forward for a projected network on TensorFlow, else the whole network on windows."""
    if split_network(network) is not None and keras.backend.backend() == "tensorflow":
        return make_forward(network)
    return lambda x, m: network([x, m], training=False)


def block_probabilities(
    forward, features, rows: np.ndarray, doc_lengths: np.ndarray, config: TrainingConfig
) -> np.ndarray:
    """Per-position probabilities of whole documents (``rows`` of ``features``), as executors compute them.

    With a projecting ``forward`` the rows are projected once (sparse rows
    with a sparse product), with the projection's current weights; otherwise
    a view of the rows is densified window batch by window batch.
    """
    projection = getattr(forward, "projection", None)
    sparse = isinstance(features, FeatureRows) and features.is_sparse
    if projection is None:
        block = features.subset(rows) if isinstance(features, FeatureRows) else features[rows]
    else:
        projection.refresh()
        block = projection(csr_matrix(*features.csr_rows(rows), features.width) if sparse else features[rows])
    return predict_block(
        forward,
        block,
        doc_lengths,
        config.window_size,
        config.window_size,
        config.predict_batch_size,
        config.num_classes,
    )


def run_rows(offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Row indices of runs of consecutive rows (``offsets[i]`` to ``offsets[i] + lengths[i]``), in order."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if not len(lengths):
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.arange(int(ends[-1])) - np.repeat(ends - lengths, lengths) + np.repeat(np.asarray(offsets), lengths)


@dataclass(frozen=True)
class ValidationSplit:
    """Training and validation rows, each as runs of consecutive rows of one document.

    A run is ``(offset, length)`` in the sorted training rows. Windows, in
    training and in validation, never cross a run's ends: each run is treated
    as a document of its own.
    """

    train_offsets: np.ndarray
    train_lengths: np.ndarray
    val_offsets: np.ndarray
    val_lengths: np.ndarray

    @property
    def has_validation(self) -> bool:
        return bool(len(self.val_lengths))

    @property
    def val_rows(self) -> np.ndarray:
        return run_rows(self.val_offsets, self.val_lengths)

    def windows(self, validation: bool, window: int) -> tuple[np.ndarray, np.ndarray]:
        """Start rows and real lengths of the windows (stride ``window``) over the training or validation runs."""
        offsets, lengths = (
            (self.val_offsets, self.val_lengths) if validation else (self.train_offsets, self.train_lengths)
        )
        starts, real, run = window_index(lengths, window, window)
        if not len(starts):
            return starts, real
        local = starts - (np.cumsum(lengths) - lengths)[run]
        return np.asarray(offsets, dtype=np.int64)[run] + local, real


def split_validation(doc_lengths: np.ndarray, fraction: float, seed: int, segment: int) -> ValidationSplit:
    """Hold out about ``fraction`` of the rows for validation, as segments spread over every document.

    Each document is cut into consecutive segments of ``segment`` rows (the
    window size; a document's last segment may be shorter), and a random
    ``fraction`` of each document's segments is held out (rounded at random,
    so a one-segment document is held out with probability ``fraction``; at
    least one segment, never all); neighbouring segments on the same side are
    merged into one run. Holding
    out segments rather than whole documents keeps the validation rows a
    sample of every document and journal, and every document in training,
    also when a corpus has a few very long documents (SKOL's Mycotaxon
    volumes are one file each): a document-level split of such a corpus
    validated on a different journal's style with every seed.
    """
    doc_lengths = np.asarray(doc_lengths, dtype=np.int64)
    doc_ends = np.cumsum(doc_lengths)
    local = [np.arange(0, length, segment, dtype=np.int64) for length in doc_lengths]
    seg_docs = np.repeat(np.arange(len(doc_lengths)), [len(x) for x in local])
    seg_starts = np.concatenate(local) + (doc_ends - doc_lengths)[seg_docs] if len(local) else seg_docs
    seg_ends = np.minimum(seg_starts + segment, doc_ends[seg_docs])
    held = np.zeros(len(seg_starts), dtype=bool)
    if fraction > 0 and len(seg_starts) >= 2:
        # Stratified by document: each holds out fraction x its segments, rounded at random
        # so that small documents are held out whole as often as the fraction says.
        rng = np.random.default_rng(seed)
        counts = np.array([len(x) for x in local])
        take = np.floor(fraction * counts + rng.random(len(counts))).astype(np.int64)
        order = np.lexsort((rng.random(len(seg_starts)), seg_docs))  # each document's segments, shuffled
        rank = np.arange(len(seg_starts)) - np.repeat(np.cumsum(counts) - counts, counts)
        held[order] = rank < np.repeat(take, counts)
        if not held.any():
            held[rng.integers(len(held))] = True
        elif held.all():
            held[rng.integers(len(held))] = False
    runs = []
    for side in (False, True):
        pick = np.flatnonzero(held == side)
        # A segment opens a run unless the previous segment of its side is its neighbour in the same document.
        opens = np.ones(len(pick), dtype=bool)
        opens[1:] = (seg_starts[pick[1:]] != seg_ends[pick[:-1]]) | (seg_docs[pick[1:]] != seg_docs[pick[:-1]])
        first, last = pick[opens], pick[np.append(np.flatnonzero(opens)[1:] - 1, len(pick) - 1)] if len(pick) else pick
        runs += [seg_starts[first], seg_ends[last] - seg_starts[first]]
    return ValidationSplit(*runs)


def _documents_of(doc_lengths: np.ndarray, offsets: np.ndarray) -> int:
    """How many documents the runs starting at ``offsets`` come from."""
    return len(np.unique(np.searchsorted(np.cumsum(doc_lengths), offsets, side="right")))


def validation_thresholds(
    network: keras.Model, data: TrainingData, config: TrainingConfig
) -> list[float] | None:
    """Thresholds maximising macro-F1 on the validation rows (None when there are none).

    The validation rows are the ones training held out (same split, same
    seed: :func:`split_validation`); their probabilities are computed as
    executors compute them, each validation run as a document of its own.
    """
    split = split_validation(data.doc_lengths, config.validation_fraction, config.seed, config.window_size)
    if not split.has_validation:
        logger.warning("thresholds not tuned: %d training rows leave none for validation", len(data.labels))
        return None
    rows = split.val_rows
    probs = _validation_probabilities(_validation_forward(network), data, split, config, rows)
    thresholds, before, after = tune_thresholds(probs, data.labels[rows], config.num_classes)
    logger.info(
        "thresholds tuned on %d validation positions (%d runs from %d documents): %s; "
        "validation macro-F1 %.4f -> %.4f",
        len(rows), len(split.val_lengths), _documents_of(data.doc_lengths, split.val_offsets),
        ", ".join(f"{t:.4g}" for t in thresholds), before, after,
    )
    return thresholds


def new_network(config: TrainingConfig, num_features: int) -> keras.Model:
    """A fresh (or warm-started) network for this training.

    Its initial weights and dropout masks come from ``config.seed`` through each
    layer's own seeded initializers and generators; the process's global random
    state (Python, NumPy, TensorFlow, Keras) is neither read nor reset.
    """
    model = build_network(
        config.window_size,
        num_features,
        config.num_classes,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        dropout=config.dropout,
        seed=config.seed,
        output_layer=config.output_layer,
        embedding_size=config.embedding_size,
        ensemble_size=config.ensemble_size,
    )
    if config.initial_weights is not None:
        model.set_weights(config.initial_weights)
    return model


def compile_trainer(model: keras.Model, config: TrainingConfig, sparse_rows: bool = False) -> keras.Model:
    """``model`` compiled for training: a CRF network through its wrapper (weighted NLL, crf.py).

    With ``sparse_rows`` (``model`` from :func:`sparse_training_model`), Adam
    updates only the projection rows each batch uses (:class:`LazyAdam`).
    """
    trainer = CRFTrainer(model, config.class_weights) if config.output_layer == "crf" else model
    optimizer = LazyAdam if sparse_rows else keras.optimizers.Adam
    trainer.compile(
        optimizer=optimizer(learning_rate=config.learning_rate),
        loss=None if trainer is not model else WeightedSparseCategoricalCrossentropy(config.class_weights),
    )
    return trainer


def train_network(
    data: TrainingData, config: TrainingConfig, progress: FitProgress | None = None
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Fit a fresh (or warm-started) network; returns it and its per-epoch history.

    An ensemble (``config.ensemble_size`` M > 1) trains its members one after
    the other, member m as a single network (its layers seeded from
    ``member_seed(seed, m)``, its batches ordered by ``seed + m``), all on the same training rows and validated on the
    same held-out rows, then averages them into one network. The members go
    through one compiled training model in turn (:class:`_MemberTrainer`), so
    Keras traces the training step once, not once a member. Its history holds
    member 0's metrics under the usual names, the others' as
    ``member_<m>/<metric>``, ``best_epoch`` one value per member and
    ``ensemble_val_macro_f1`` the whole network's validation macro-F1.
    ``progress`` reports each epoch (by default it only logs).
    """
    network = new_network(config, data.num_features)
    split = split_validation(data.doc_lengths, config.validation_fraction, config.seed, config.window_size)
    members = ensemble_members(network)
    progress = progress or FitProgress(False, config.epochs, len(members))
    trainer = _MemberTrainer(members[0], data, split, config)
    if len(members) == 1:
        return network, trainer.fit(progress)
    history: dict[str, list[float]] = {}
    best = []
    starts = [(member.get_weights(), [v.numpy() for v in member.non_trainable_variables]) for member in members]
    trained = []
    for m, start in enumerate(starts):
        trainer.start_from(*start)
        one = trainer.fit(progress, m, seed=config.seed + m)
        trained.append(trainer.network.get_weights())
        progress.network_done(m, one)
        best += one.pop("best_epoch", [])
        history.update(one if m == 0 else {f"member_{m}/{k}": v for k, v in one.items()})
    for member, weights in zip(members, trained):
        member.set_weights(weights)
    set_ensemble_weights(network, members)
    if best:
        history["best_epoch"] = best
    if split.has_validation:
        score = _validation_scores(_validation_forward(network), data, split, config)[0]
        history["ensemble_val_macro_f1"] = [score]
        progress.line(f"ensemble of {len(members)}: val_macro_f1 {score:.4f}")
    return network, history


class _MemberTrainer:
    """A single network compiled for training once, then trained from one starting point after another.

    Every ensemble member has the same architecture, so one network, one
    compiled training model and one optimizer serve them all:
    :meth:`start_from` loads a member's initial weights and dropout
    generator states and puts the optimizer back to its fresh state (step 0,
    zero moments), and :meth:`fit` trains it as a network of its own would
    train. Keras keeps the traced training step between ``fit`` calls.
    """

    def __init__(self, network: keras.Model, data: TrainingData, split: ValidationSplit, config: TrainingConfig):
        self.network, self.data, self.split, self.config = network, data, split, config
        self.model, self.batches = network, _WindowBatches
        sparse = isinstance(data.features, FeatureRows) and data.features.is_sparse
        # Sparse batches (tf.SparseTensors) train softmax networks on TensorFlow; the
        # others train on dense windows.
        if (
            sparse
            and config.output_layer == "softmax"
            and keras.backend.backend() == "tensorflow"
            and split_network(network) is not None
        ):
            self.model, self.batches = sparse_training_model(network), _SparseWindowBatches
        self.trainer = compile_trainer(self.model, config, sparse_rows=self.batches is _SparseWindowBatches)
        self.trainer.optimizer.build(self.trainer.trainable_variables)
        self._fresh_optimizer = [v.numpy() for v in self.trainer.optimizer.variables]
        self._forward = None  # the validation forward, shared by the members (it reads the current weights)

    def start_from(self, weights: list[np.ndarray], states: list[np.ndarray]) -> None:
        """Train next from these weights and non-trainable states (the dropout generators'), with a fresh optimizer."""
        self.network.set_weights(weights)
        variables = self.network.non_trainable_variables
        if len(variables) != len(states):
            raise ValueError(f"Expected {len(variables)} non-trainable states. Received: {len(states)}")
        for variable, state in zip(variables, states):
            variable.assign(state)
        for variable, value in zip(self.trainer.optimizer.variables, self._fresh_optimizer):
            variable.assign(value)

    def fit(self, progress: FitProgress, member: int = 0, seed: int | None = None) -> dict[str, list[float]]:
        """Train the network in place on the split's training rows (batches ordered by ``seed``,
        by default the config's); its history."""
        config, data, split = self.config, self.data, self.split
        seed = config.seed if seed is None else seed
        train = self.batches(data, *split.windows(False, config.window_size), config.window_size,
                             config.batch_size, seed=seed)
        validation = None
        if split.has_validation:
            validation = self.batches(data, *split.windows(True, config.window_size), config.window_size,
                                      config.batch_size)
        log = _EpochLog(self.network, data, split, config, progress, member)
        log.forward = self._forward
        callbacks: list[keras.callbacks.Callback] = [log]
        if config.early_stopping_patience > 0:
            if split.has_validation:
                callbacks.append(_BestEpoch(config.early_stopping_patience, progress))
            else:
                logger.warning("early stopping is off: %d training rows leave none for validation", len(data.labels))
        history = self.trainer.fit(
            train,
            validation_data=validation,
            epochs=config.epochs,
            verbose=0,
            callbacks=callbacks,
            shuffle=False,  # the batches shuffle themselves, from the seed, not Python's global random
        )
        self._forward = log.forward
        clean = {k: [float(v) for v in values] for k, values in history.history.items()}
        if len(callbacks) > 1:
            clean["best_epoch"] = [float(callbacks[1].best_epoch)]
        return clean


def verify_rebuild(model: keras.Model, data: TrainingData, window_size: int) -> TrainedNetwork:
    """The trained network as a value, checked to rebuild from JSON and predict as ``model`` does.

    The probe is the first windows of the training documents (at most 16, and
    fewer when wide features would make them large).
    """
    probe_windows = int(min(16, max(1, _PROBE_BYTES // (4 * window_size * data.num_features))))
    starts, lengths, _ = window_index(data.doc_lengths[:8], window_size, window_size)
    x, mask, _ = gather_windows(
        data.features, starts[:probe_windows], lengths[:probe_windows], window_size
    )
    trained = TrainedNetwork.from_keras(model)
    try:
        trained.verify(model, probe=[x, mask])
    except ModelRebuildError as exc:
        raise ModelRebuildError(f"The trained network: {exc} Executors would fail the same way.") from exc
    return trained


def history_to_json(history: dict[str, list[float]]) -> str:
    return json.dumps(history, sort_keys=True)

