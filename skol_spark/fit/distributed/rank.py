"""One rank's share of a data-parallel fit: its batches, the epochs, validation, early stopping, members.

Runs inside the worker process (:mod:`skol_spark.fit.distributed.worker`)
on Keras' JAX backend. Every rank runs the same number of steps of the same
shape (a local batch of ``ceil(batchSize / numWorkers)`` windows; a rank
short of windows feeds fully masked ones, which add nothing to the sums), so
the one all-reduce per step always meets all ranks. Validation metrics are
computed from every rank's validation runs (summed confusion matrices and
loss sums), so all ranks see one ``val_macro_f1`` and early stopping stops
them at the same epoch. An ensemble trains its members one after the other
as the driver fit does, each data-parallel, with the same compiled programs.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Clock", "RankBatches", "train_members"]

logger = logging.getLogger("skol_spark")

# One step in this many (from the second) is timed part by part, waiting for each part; the others
# run asynchronously.
_TIMED_EVERY = 8


class Clock:
    """Wall-clock phases of the rank (seconds since ``origin``, the driver starting the stage), timed
    step parts, and every step's wall time (from one step's return to the next's, within an epoch)."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.phases: dict[str, float] = {}
        self.parts: dict[str, list[float]] = {}
        self.steps: list[float] = []
        self._last: float | None = None
        self._stepped: float | None = None

    def stepped(self, first: bool) -> None:
        """A step returned (``first``: the epoch's first, whose time since the last epoch is not counted)."""
        now = time.perf_counter()
        if not first and self._stepped is not None:
            self.steps.append(now - self._stepped)
        self._stepped = now

    def mark(self, phase: str) -> None:
        self.phases[phase] = round(time.time() - self.origin, 3)

    def start_step(self, timed: bool) -> Clock | None:
        if not timed:
            return None
        self._last = time.perf_counter()
        return self

    def aside(self, part: str, work: Any) -> Any:
        """``work`` (a callable, or None) timed as ``part`` and left out of the lap it runs in."""
        if work is None:
            return None

        def timed() -> None:
            started = time.perf_counter()
            work()
            spent = time.perf_counter() - started
            self.parts.setdefault(part, []).append(spent)
            self._last += spent

        return timed

    def lap(self, part: str, result: Any) -> None:
        """Wait for ``result`` and charge the time since the previous lap to ``part``."""
        result.block_until_ready()
        now = time.perf_counter()
        self.parts.setdefault(part, []).append(now - self._last)
        self._last = now

    def summary(self) -> dict[str, Any]:
        parts = {k: 1e3 * float(np.median(v)) for k, v in self.parts.items()}
        if self.steps:
            parts["step (mean)"] = 1e3 * float(np.mean(self.steps))
        return {"phases": self.phases, "step_ms": parts}


class RankBatches:
    """This rank's windows in batches of exactly ``batch`` windows, ``steps`` per epoch.

    Windows past this rank's own are empty (mask False, label 0). The order
    is reshuffled every epoch from ``seed``; ``None`` keeps it. ``pack``
    turns a batch's row index and mask into the step's inputs (default: the
    dense ``(B, W, D)`` windows).
    """

    def __init__(self, data: Any, starts: np.ndarray, lengths: np.ndarray, window: int, batch: int,
                 steps: int, seed: Any = None, pack: Any = None):
        self.data, self.starts, self.lengths = data, starts, lengths
        self.window, self.batch, self.steps = window, batch, steps
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.order = np.arange(len(starts))
        self.pack = pack or dense_windows

    def shuffle(self) -> None:
        if self.rng is not None:
            self.rng.shuffle(self.order)

    def __getitem__(self, i: int) -> tuple[Any, np.ndarray, np.ndarray]:
        from skol_spark.core.windows import window_rows

        pick = self.order[i * self.batch : (i + 1) * self.batch]
        starts, lengths = np.zeros(self.batch, np.int64), np.zeros(self.batch, np.int64)
        starts[: len(pick)], lengths[: len(pick)] = self.starts[pick], self.lengths[pick]
        mask, rows = window_rows(starts, lengths, self.window)
        y = np.where(mask, self.data.labels[np.where(mask, rows, 0)] if len(self.data.labels) else 0, 0)
        return self.pack(self.data, rows, mask), mask, y.astype(np.int32)


class _NextBatch:
    """An epoch's batches, each built ahead when a step has time for it: during the gradient exchange,
    while this rank would wait for its slowest peer."""

    def __init__(self, batches: RankBatches) -> None:
        self.batches, self._built = batches, {}

    def builder(self, i: int) -> Any:
        """What builds batch ``i`` (None past the epoch's last)."""
        if i >= self.batches.steps:
            return None

        def build() -> None:
            self._built[i] = self.batches[i]

        return build

    def take(self, i: int) -> tuple[Any, np.ndarray, np.ndarray]:
        built = self._built.pop(i, None)
        return self.batches[i] if built is None else built


def dense_windows(data: Any, rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The ``(B, W, D)`` float32 windows of row index ``rows`` (zeros where ``mask`` is False)."""
    x = np.zeros((*rows.shape, data.num_features), np.float32)
    if mask.any():
        x[mask] = data.features[rows[mask]]
    return x


@dataclass
class RankRun:
    """What the members' training needs besides the programs: data, split, settings, collectives."""

    data: Any
    split: Any
    config: Any
    rank: int
    steps: int
    local_batch: int
    class_weights: Any  # on the device
    collective: Any
    allgather: Any  # numpy all-gather of small arrays (worker._allgather)
    validating: bool  # whether any rank holds validation rows (every rank then takes part)
    progress: Any  # rank 0's channel to the driver, or None
    clock: Clock
    digests: list[Any] = field(default_factory=list)


def train_members(run: RankRun, step: Any, forward: Any, members: list[Any],
                  only: list[int] | None = None) -> dict[str, list[float]]:
    """Train each member in turn (values written back into it); the fit's history, as the driver's.

    ``only`` trains those members alone (the others keep their values; another process trains them)
    and leaves out ``ensemble_val_macro_f1``, which needs them all.
    """
    history: dict[str, list[float]] = {}
    best: list[float] = []
    member_probs = []
    for m, member in enumerate(members):
        if only is not None and m not in only:
            continue
        if len(members) > 1:
            logger.info("ensemble member %d of %d", m + 1, len(members))
        state, one = _train(run, step, forward, step.state(member), m)
        step.assign(member, state)
        best += one.pop("best_epoch", [])
        history.update(one if m == 0 else {f"member_{m}/{k}": v for k, v in one.items()})
        if len(members) > 1 and run.validating and only is None:
            member_probs.append(_validation_probabilities(run, forward, state))
    if best:
        history["best_epoch"] = best
    if member_probs:
        # The ensemble averages its members' probabilities (an Average layer).
        logs = _validation_metrics(run, np.mean(member_probs, axis=0))
        history["ensemble_val_macro_f1"] = [logs["val_macro_f1"]]
        logger.info("ensemble of %d: validation macro-F1 %.4f", len(members), logs["val_macro_f1"])
    return history


def _train(run: RankRun, step: Any, forward: Any, state: dict[str, Any], member: int) -> tuple[dict, dict]:
    """One member, data-parallel: its final state and history."""
    from skol_spark.fit.training import BestEpoch

    config = run.config
    window = config.window_size
    train_windows = run.split.windows(False, window)
    batches = RankBatches(run.data, *train_windows, window, run.local_batch, run.steps,
                          seed=(config.seed + member, run.rank), pack=getattr(step, "pack", None))
    tracker = None
    if config.early_stopping_patience > 0 and run.validating:
        tracker = BestEpoch(config.early_stopping_patience)
    history: dict[str, list[float]] = {}
    count = 0
    for epoch in range(config.epochs):
        batches.shuffle()
        losses = []
        upcoming = _NextBatch(batches)
        for i in range(run.steps):
            batch = upcoming.take(i)
            timed = count % _TIMED_EVERY == 1
            if timed and run.digests:  # a lone rank's steps queue up unawaited: time this one alone
                run.digests[-1].block_until_ready()
            clock = run.clock.start_step(timed)
            digest, loss = step.step(state, batch, run.class_weights, clock, meanwhile=upcoming.builder(i + 1))
            run.clock.stepped(first=i == 0)
            run.digests.append(digest)
            losses.append(loss)
            count += 1
        if "first_epoch" not in run.clock.phases:
            losses[-1].block_until_ready()
            run.clock.mark("first_epoch")
        logs = {"loss": float(np.mean([float(x) for x in losses]))}
        if run.validating:
            logs.update(_validation_metrics(run, _validation_probabilities(run, forward, state)))
        for k, v in logs.items():
            history.setdefault(k, []).append(float(v))
        _report(run, epoch, logs)
        if tracker is not None and tracker.update(epoch, logs["val_macro_f1"], lambda: step.weights(state)):
            break
    if tracker is not None:
        history["best_epoch"] = [float(tracker.best_epoch)]
        if tracker.best_weights is not None:
            step.restore(state, tracker.best_weights)
    return state, history


def _validation_probabilities(run: RankRun, forward: Any, state: dict[str, Any]) -> np.ndarray:
    """This rank's validation positions' probabilities ``(n, K)``, predicted as executors would."""
    from skol_spark.fit.training import block_probabilities

    split = run.split
    if not split.has_validation:
        return np.zeros((0, run.config.num_classes), np.float32)
    forward.use(state)
    return block_probabilities(forward, run.data.features, split.val_rows, split.val_lengths, run.config)


def _validation_metrics(run: RankRun, probs: np.ndarray) -> dict[str, float]:
    """val_loss (weighted cross-entropy per real position), val_macro_f1 and val_accuracy over the
    validation positions of all ranks: one all-gather of confusion counts and loss sums."""
    from skol_spark.core.thresholds import macro_f1

    k = run.config.num_classes
    labels = run.data.labels[run.split.val_rows] if run.split.has_validation else np.zeros(0, np.int64)
    confusion = np.zeros(k * k, np.int64)
    loss_sum = 0.0
    if len(labels):
        confusion = np.bincount(labels * k + probs.argmax(axis=1), minlength=k * k)
        p = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1 - 1e-7)
        weights = np.asarray(run.config.class_weights, np.float64)
        loss_sum = float(np.sum(-np.log(p) * weights[labels]))
    total = run.allgather(confusion).sum(axis=0)
    loss = run.allgather(np.array([loss_sum], np.float32)).sum()
    logs: dict[str, float] = {}
    if total.sum():
        cells = np.arange(k * k)  # every rank's validation positions, as (truth, prediction) pairs
        truth, predicted = np.repeat(cells // k, total), np.repeat(cells % k, total)
        logs["val_loss"] = float(loss / total.sum())
        logs["val_macro_f1"], logs["val_accuracy"] = macro_f1(truth, predicted, k)
    return logs


def _report(run: RankRun, epoch: int, logs: dict[str, float]) -> None:
    """Rank 0's epoch line: its log, and the driver's listener when it can reach one."""
    if run.rank != 0:
        return
    line = json.dumps({"epoch": epoch, "logs": {k: float(v) for k, v in logs.items()}})
    print("epoch " + line, flush=True)  # this rank's log (in an error's tail)
    progress = run.progress
    if progress is None or progress.get("closed"):
        return
    try:
        if "channel" not in progress:
            host, port = progress["address"].rsplit(":", 1)
            progress["channel"] = socket.create_connection((host, int(port)), timeout=10)
            progress["channel"].sendall((progress["token"] + "\n").encode())
        progress["channel"].sendall((line + "\n").encode())
    except OSError:
        progress["closed"] = True  # the history still reaches the driver with the result
