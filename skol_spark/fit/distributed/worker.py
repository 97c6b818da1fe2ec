"""One rank of a data-parallel fit: the child process each barrier task starts (``numWorkers > 1``).

Run as ``python -m skol_spark.fit.distributed.worker WORKDIR`` by
:mod:`skol_spark.fit.distributed.stage`, with ``KERAS_BACKEND=jax``: a Python worker
of Spark may already hold Keras on TensorFlow (``transform`` caches its
network there), and Keras fixes its backend once per process.

``WORKDIR`` holds ``spec.json`` (written by the task), ``rows.arrow`` (this
rank's rows as the task received them, whole documents) and optionally
``initial.npz`` (warm-start weights). The rank

1. joins JAX's multi-process runtime (``jax.distributed.initialize``, CPU
   collectives over gloo) at the coordinator address rank 0's task published;
2. turns its rows into sorted training data with the driver fit's own code
   (``training_data.rows_from_batches``: same invalid-row rules) and windows
   them as the driver fit does;
3. sums the per-class counts of all ranks (one all-gather) and derives the
   class weights from them, as the driver fit does from its rows;
4. trains under ``keras.distribution.DataParallel``: each step every rank
   feeds its local share of one global batch, XLA all-reduces the gradients,
   and every rank applies the same update. Ranks run the same number of
   steps; a rank that runs out of windows feeds fully masked ones, which add
   nothing to the loss (Keras averages over unmasked positions);
5. records a digest of its weights after every step and, on rank 0, writes
   ``result.npz`` / ``result.json``: weights, architecture JSON, history,
   class weights, every rank's digests and a probe for the driver's
   cross-backend check.

On any error it writes ``error.txt`` (the exception) and exits non-zero; when
the error says another rank went away (a failed collective) it also writes
``peer_lost``, so that its task waits and the rank with the cause fails the
stage first.
It dies with its parent task (``PR_SET_PDEATHSIG`` plus a watchdog thread).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import threading
import time
import traceback
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main"]

logger = logging.getLogger("skol_spark")

SPEC, ROWS, INITIAL, RESULT_WEIGHTS, RESULT_META, PROBE, ERROR, PEER_LOST = (
    "spec.json", "rows.arrow", "initial.npz", "weights.npz", "result.json", "probe.npz", "error.txt",
    "peer_lost",
)
# What JAX's coordination service and gloo say when another rank went away: a rank that
# fails with one of these failed because of a peer, and lets that peer's error be reported.
_PEER_LOSS_MARKERS = (
    "socket closed", "coordination service", "coordinationservice", "unavailable:", "deadline_exceeded",
    "heartbeat", "connection reset", "connection refused", "gloo",
)
# Probe windows the driver checks the TensorFlow rebuild against stay under this size.
_PROBE_BYTES = 4 << 20


def _die_with_parent(parent_pid: int) -> None:
    """Exit when the task that started this process goes away (killed stage, lost executor)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the watchdog below still runs
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(3)
            time.sleep(1.0)

    if os.getppid() != parent_pid:
        os._exit(3)
    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


class PeerLostError(RuntimeError):
    """A collective failed because another rank is gone (it failed, or was killed)."""


def _allgather(values: np.ndarray) -> np.ndarray:
    """``values`` of every rank, stacked by rank (a collective: every rank must call it)."""
    from jax.experimental import multihost_utils

    try:
        return np.asarray(multihost_utils.process_allgather(np.asarray(values), tiled=False))
    except Exception as exc:  # noqa: BLE001 - JAX raises RuntimeError or XlaRuntimeError here
        raise PeerLostError(f"an all-gather with the other ranks failed ({exc})") from exc


def _lost_a_peer(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says another rank went away, not what this rank did."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, PeerLostError) or any(m in str(exc).lower() for m in _PEER_LOSS_MARKERS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _digest(weights: list[Any]) -> int:
    """CRC-32 of the weights' bytes: equal on every rank after every synchronised step."""
    crc = 0
    for w in weights:
        crc = zlib.crc32(np.ascontiguousarray(w).tobytes(), crc)
    return crc


def _sync(trainer: Any) -> None:
    """Write the JAX trainer's state back into the variables (Keras keeps it apart during fit)."""
    sync = getattr(trainer, "jax_state_sync", None)
    if sync is not None:
        sync()


def _local_arrays(model: Any) -> list[np.ndarray]:
    """This rank's copy of the (replicated) variables, without any collective."""
    out = []
    for v in model.weights:
        value = v.value
        out.append(np.asarray(value.addressable_data(0)) if hasattr(value, "addressable_data") else np.asarray(value))
    return out


def _load_rows(workdir: Path, spec: dict) -> Any:
    """This rank's training data (None without rows), checked and sorted as the driver fit does."""
    import pyarrow as pa

    from skol_spark.fit.training_data import rows_from_batches

    path = workdir / ROWS
    if not path.exists() or path.stat().st_size == 0:
        return None
    doc, position, label, features = spec["columns"]
    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_stream(source)
        return rows_from_batches(
            reader, doc, position, label, features, schema=reader.schema,
            handle_invalid=spec["handle_invalid"], width=spec["width"], num_classes=len(spec["labels"]),
        )


def _empty_data(width: int) -> Any:
    from skol_spark.fit.training_data import FeatureRows, TrainingData

    return TrainingData(FeatureRows.from_dense(np.zeros((0, width), np.float32)), np.zeros(0, np.int32),
                        np.zeros(0, np.int64))


def _agree(data: Any, num_classes: int, windows: tuple[int, int]) -> tuple[int, np.ndarray, np.ndarray]:
    """One all-gather: the feature width all ranks saw, the class counts summed over ranks, and every
    rank's (training, validation) window counts ``(ranks, 2)``."""
    width = -1 if data is None else data.num_features
    counts = np.zeros(num_classes, np.int64) if data is None else np.bincount(data.labels, minlength=num_classes)
    gathered = _allgather(np.concatenate([[width], counts, windows]).astype(np.int64))
    widths = sorted({int(w) for w in gathered[:, 0] if w >= 0})
    if not widths:
        raise ValueError("Every worker received no training rows; nothing to fit on.")
    if len(widths) > 1:
        raise ValueError(
            f"feature rows have different lengths across workers (from {widths[0]} to {widths[-1]})"
        )
    return widths[0], gathered[:, 1 : 1 + num_classes].sum(axis=0), gathered[:, 1 + num_classes :]


def _batches_class():
    from skol_spark.fit.training import _WindowBatches

    class EqualSteps(_WindowBatches):
        """Exactly ``steps`` batches of ``batch_size`` windows; windows past this rank's own are fully masked."""

        def __init__(self, data, starts, lengths, window, batch_size, steps, seed=None):
            super().__init__(data, starts, lengths, window, batch_size, seed)
            self.steps = steps

        def __len__(self) -> int:
            return self.steps

        def __getitem__(self, i: int):
            inputs, y, weight = super().__getitem__(i) if i * self.batch_size < len(self.starts) else (None, None, None)
            missing = self.batch_size - (0 if y is None else len(y))
            if not missing:
                return inputs, y, weight
            from skol_spark.nn.network import FEATURES_INPUT, MASK_INPUT

            w, d = self.window, self.data.num_features
            pad = {FEATURES_INPUT: np.zeros((missing, w, d), np.float32), MASK_INPUT: np.zeros((missing, w), bool)}
            if inputs is None:
                return pad, np.zeros((missing, w), np.int32), np.zeros((missing, w), np.float32)
            inputs = {k: np.concatenate([inputs[k], pad[k]]) for k in (FEATURES_INPUT, MASK_INPUT)}
            return (inputs, np.concatenate([y, np.zeros((missing, w), y.dtype)]),
                    np.concatenate([weight, np.zeros((missing, w), weight.dtype)]))

    return EqualSteps


def _callbacks(network: Any, eval_network: Any, data: Any, split: Any, config: Any, spec_progress: Any):
    import keras

    from skol_spark.core.thresholds import macro_f1
    from skol_spark.fit.training import _validation_forward, block_probabilities

    class StepDigests(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.digests: list[int] = []

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            _sync(self.model)
            self.digests.append(_digest(_local_arrays(network)))

    class GlobalValidation(keras.callbacks.Callback):
        """Validation macro-F1 over the validation rows of all ranks (confusion matrices summed)."""

        def __init__(self) -> None:
            super().__init__()
            self.rows = None
            if split.has_validation:
                rows = split.val_rows
                self.rows = (rows, data.labels[rows], split.val_lengths)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            k = config.num_classes
            confusion = np.zeros((k, k), np.int64)
            if self.rows is not None:
                rows, labels, lengths = self.rows
                _sync(self.model)
                eval_network.set_weights(_local_arrays(network))
                probs = block_probabilities(_validation_forward(eval_network), data.features, rows, lengths, config)
                confusion = np.bincount(labels * k + probs.argmax(axis=1), minlength=k * k).reshape(k, k)
            total = _allgather(confusion.ravel()).sum(axis=0).reshape(k, k)
            if logs is not None and total.sum():
                cells = np.arange(k * k)  # every rank's validation positions, as (truth, prediction) pairs
                truth, predicted = np.repeat(cells // k, total.ravel()), np.repeat(cells % k, total.ravel())
                logs["val_macro_f1"], logs["val_accuracy"] = macro_f1(truth, predicted, k)

    class Progress(keras.callbacks.Callback):
        """Rank 0 sends one line per epoch to the driver's listener, when there is one it can reach."""

        def __init__(self) -> None:
            super().__init__()
            self.channel = None
            self.target = spec_progress

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            line = json.dumps({"epoch": epoch, "logs": {k: float(v) for k, v in (logs or {}).items()}})
            print("epoch " + line, flush=True)  # this rank's log (in an error's tail)
            if self.target is None:
                return
            try:
                if self.channel is None:
                    host, port = self.target["address"].rsplit(":", 1)
                    self.channel = socket.create_connection((host, int(port)), timeout=10)
                    self.channel.sendall((self.target["token"] + "\n").encode())
                self.channel.sendall((line + "\n").encode())
            except OSError:
                self.target = None  # the history still reaches the driver with the result

        def on_train_end(self, logs: dict | None = None) -> None:
            if self.channel is not None:
                self.channel.close()

    return StepDigests(), GlobalValidation(), Progress()


def train(workdir: Path, spec: dict) -> None:
    """Train this rank's share; rank 0 writes the result files."""
    import dataclasses

    import keras

    from skol_spark.core.class_weights import resolve_class_weights
    from skol_spark.core.windows import gather_windows, window_index
    from skol_spark.fit.training import (
        TrainingConfig,
        _BestEpoch,
        compile_trainer,
        new_network,
        split_validation,
    )
    from skol_spark.nn.trained_network import TrainedNetwork, weights_from_bytes

    rank, num_workers = spec["rank"], spec["num_workers"]
    labels = spec["labels"]
    data = _load_rows(workdir, spec)
    fraction, seed = spec["config"]["validation_fraction"], spec["config"]["seed"]
    window = spec["config"]["window_size"]
    doc_lengths = np.zeros(0, np.int64) if data is None else data.doc_lengths
    # Validation rows: segments of this rank's documents, drawn with the fit's fraction and a per-rank seed.
    split = split_validation(doc_lengths, fraction, seed + rank, window)
    train_windows, val_windows = split.windows(False, window), split.windows(True, window)
    width, counts, windows = _agree(data, len(labels), (len(train_windows[0]), len(val_windows[0])))
    if data is None:
        data = _empty_data(width)
    class_weights = resolve_class_weights(
        counts.tolist(), labels, spec["weight_strategy"], spec["class_weights"], spec["effective_number_beta"]
    )
    initial = None
    if (workdir / INITIAL).exists():
        initial = weights_from_bytes((workdir / INITIAL).read_bytes())
    config = dataclasses.replace(
        TrainingConfig(**spec["config"]), class_weights=class_weights, initial_weights=initial
    )
    local_batch = math.ceil(config.batch_size / num_workers)
    train_steps = max(1, math.ceil(int(windows[:, 0].max()) / local_batch))
    val_steps = math.ceil(int(windows[:, 1].max()) / local_batch)

    eval_network = new_network(config, width)  # a plain local copy, for validation forwards
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=__import__("jax").devices(), auto_shard_dataset=False)
    )
    network = new_network(config, width)
    trainer = compile_trainer(network, config)
    batches = _batches_class()
    train = batches(data, *train_windows, config.window_size, local_batch, train_steps, seed=config.seed + rank)
    validation = None
    if val_steps:
        validation = batches(data, *val_windows, config.window_size, local_batch, val_steps)
    digests, global_validation, progress = _callbacks(
        network, eval_network, data, split, config, spec.get("progress") if rank == 0 else None
    )
    callbacks = [digests, progress]
    if val_steps:
        callbacks = [digests, global_validation, progress]
        if config.early_stopping_patience > 0:
            callbacks.append(_BestEpoch(config.early_stopping_patience))
    history = trainer.fit(
        train, validation_data=validation, epochs=config.epochs, verbose=0, callbacks=callbacks, shuffle=False
    )
    clean = {k: [float(v) for v in values] for k, values in history.history.items()}
    if isinstance(callbacks[-1], _BestEpoch):
        clean["best_epoch"] = [float(callbacks[-1].best_epoch)]
    final = _local_arrays(network)
    all_digests = _allgather(np.array(digests.digests + [_digest(final)], np.int64))
    if rank != 0:
        return
    trained = TrainedNetwork.from_keras(network)
    (workdir / RESULT_WEIGHTS).write_bytes(trained.weights)
    per_window = 4 * config.window_size * width
    starts, lengths, _ = window_index(doc_lengths, window, window)  # probe windows: the first of rank 0's rows
    probe_count = int(min(8, max(1, _PROBE_BYTES // max(1, per_window)), len(starts)))
    if probe_count:
        eval_network.set_weights(final)
        x, mask, _ = gather_windows(data.features, starts[:probe_count], lengths[:probe_count], config.window_size)
        probs = keras.ops.convert_to_numpy(eval_network([x, mask], training=False))
        np.savez(workdir / PROBE, x=x, mask=mask, probs=probs)
    meta = {
        "architecture": trained.architecture,
        "history": clean,
        "class_weights": class_weights,
        "counts": counts.tolist(),
        "num_features": width,
        "digests": all_digests.tolist(),
        "steps_per_epoch": train_steps,
        "local_batch": local_batch,
    }
    (workdir / RESULT_META).write_text(json.dumps(meta))


def main(argv: list[str]) -> int:
    workdir = Path(argv[1])
    spec = json.loads((workdir / SPEC).read_text())
    _die_with_parent(spec["parent_pid"])
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    try:
        import jax

        jax.distributed.initialize(
            coordinator_address=spec["coordinator"],
            num_processes=spec["num_workers"],
            process_id=spec["rank"],
            cluster_detection_method="deactivate",
            initialization_timeout=spec["timeout_seconds"],
            heartbeat_timeout_seconds=spec["heartbeat_seconds"],
            shutdown_timeout_seconds=spec["shutdown_seconds"],
        )
        train(workdir, spec)
    except BaseException as exc:  # noqa: BLE001 - reported to the task, which fails the stage with it
        if _lost_a_peer(exc):
            (workdir / PEER_LOST).touch()
        (workdir / ERROR).write_text(
            f"{type(exc).__name__}: {exc}\n\n" + "".join(traceback.format_exception(exc))[-6000:]
        )
        sys.stdout.flush()
        os._exit(1)  # not sys.exit: JAX's exit hook would wait for the other ranks at a shutdown barrier
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
