"""One rank of a data-parallel fit: the process each barrier task starts (``numWorkers > 1``).

Run as ``python -m skol_spark.fit.distributed.worker WORKDIR`` by
:mod:`skol_spark.fit.distributed.stage`, with ``KERAS_BACKEND=jax``: a Python worker
of Spark may already hold Keras on TensorFlow (``transform`` caches its
network there), and Keras fixes its backend once per process.

The task starts this process before it writes its rows, so imports,
connecting and compiling overlap with the rows' transfer. ``WORKDIR`` holds
``spec.json`` and optionally ``initial.npz`` (warm-start weights) from the
start; ``hint.json`` (the first batch's feature width and storage) as soon as
the task has seen one; ``rows.arrow`` (this rank's rows, whole documents),
complete once ``rows.done`` exists. The driver fit on JAX
(:mod:`skol_spark.fit.jax_driver`) runs it as the only rank and writes the
rows it collected, already checked and sorted, as ``data.npz`` instead. The rank

1. connects to its neighbours in the ranks' ring (:mod:`~skol_spark.fit.distributed.ring`,
   in a thread) while it imports JAX and Keras (never TensorFlow: see
   :func:`_without_tensorflow`);
2. on the hint, builds the network and compiles its step programs
   (:mod:`skol_spark.fit.distributed.steps`) while the rows still arrive;
3. turns its rows into sorted training data with the driver fit's own code
   (``training_data.rows_from_batches``: same invalid-row rules), holds out
   validation segments with ``seed + rank``, and makes one all-gather of
   width, storage, class counts (summed: the class weights) and window counts;
4. trains (:mod:`skol_spark.fit.distributed.rank`): one all-reduce of the
   whole gradient per step;
5. on rank 0, writes ``weights.npz`` / ``result.json``: weights, architecture
   JSON, history, class weights, every rank's per-step weight checksums,
   timings, and a probe for the driver's cross-backend check.

On any error it writes ``error.txt`` (the exception) and exits non-zero; when
the error says another rank went away (a failed collective) it also writes
``peer_lost``, so that its task waits and the rank with the cause fails the
stage first. It dies with its parent task (``PR_SET_PDEATHSIG`` plus a
watchdog thread).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
import traceback
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from skol_spark.fit.distributed.ring import PeerLostError

__all__ = ["PeerLostError", "main"]

logger = logging.getLogger("skol_spark")

SPEC, ROWS, DATA, ROWS_DONE, HINT, INITIAL, RESULT_WEIGHTS, RESULT_META, PROBE, MEMBERS, ERROR, PEER_LOST = (
    "spec.json", "rows.arrow", "data.npz", "rows.done", "hint.json", "initial.npz", "weights.npz", "result.json",
    "probe.npz", "members.npz", "error.txt", "peer_lost",
)
# What an error says when another rank went away (besides PeerLostError): a rank that fails with
# one of these failed because of a peer, and lets that peer's error be reported.
_PEER_LOSS_MARKERS = ("socket closed", "connection reset", "connection refused", "broken pipe")
# Probe windows the driver checks the TensorFlow rebuild against stay under this size.
_PROBE_BYTES = 4 << 20
_POLL_SECONDS = 0.02


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


def _without_tensorflow() -> None:
    """Make ``import tensorflow`` and ``import sklearn`` fail in this process, before Keras is imported.

    Keras' serializer asks whether TensorFlow is importable (to recognise its
    ``TensorShape``) when a ``Bidirectional`` layer is built or a model saved,
    and Keras imports scikit-learn for its wrappers; both cost seconds of
    start-up (TensorFlow also hundreds of MB) on a JAX rank that uses
    neither, and Keras does without them. This process runs nothing but the rank.
    """
    for name in ("tensorflow", "sklearn"):
        sys.modules.setdefault(name, None)


class _Peers:
    """This rank's ring (:mod:`~skol_spark.fit.distributed.ring`), connected in a thread from the start."""

    def __init__(self, spec: dict) -> None:
        from skol_spark.fit.distributed.ring import Ring

        self._ring: Any = None
        self._failure: BaseException | None = None

        def connect() -> None:
            try:
                self._ring = Ring(spec["rank"], spec["peers"], spec["token"], spec["timeout_seconds"])
            except BaseException as exc:  # noqa: BLE001 - raised where the ring is first needed
                self._failure = exc

        self._thread = threading.Thread(target=connect, daemon=True, name="ring-connect")
        self._thread.start()

    @property
    def ring(self) -> Any:
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        return self._ring


_PEERS: _Peers | None = None


def _allgather(values: np.ndarray) -> np.ndarray:
    """``values`` of every rank, stacked by rank (a collective: every rank must call it)."""
    return _PEERS.ring.allgather(np.asarray(values))


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
    """CRC-32 of the weights' bytes."""
    crc = 0
    for w in weights:
        crc = zlib.crc32(np.ascontiguousarray(w).tobytes(), crc)
    return crc


def _wait_for(workdir: Path, *names: str) -> str:
    """Block until one of ``names`` exists in ``workdir``; the first found."""
    while True:
        for name in names:
            if (workdir / name).exists():
                return name
        time.sleep(_POLL_SECONDS)


def _load_rows(workdir: Path, spec: dict) -> Any:
    """This rank's training data (None without rows), checked and sorted as the driver fit does."""
    import pyarrow as pa

    from skol_spark.fit.training_data import rows_from_batches

    _wait_for(workdir, ROWS_DONE)
    if (workdir / DATA).exists():
        return read_training_data(workdir / DATA)
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


def write_hint(workdir: Path, hint: dict[str, Any]) -> None:
    """Give the child its rows' width and storage (``{"width", "sparse"}``) before the rows: it
    compiles while they are written. Written whole or not at all (the child polls for the file)."""
    part = workdir / (HINT + ".part")
    part.write_text(json.dumps(hint))
    part.rename(workdir / HINT)


def failure_report(workdir: Path, code: int, log_tail: int = 4000) -> tuple[str, str]:
    """``(what, detail)`` of a child that ended with ``code``: its ``error.txt`` (first paragraph,
    then the traceback) when it wrote one, else the exit code and the tail of its ``log.txt``."""
    error = workdir / ERROR
    if error.exists():
        what, _, detail = error.read_text().partition("\n\n")
    else:
        what = f"the process ended with code {code}"
        detail = (workdir / "log.txt").read_bytes()[-log_tail:].decode("utf-8", "replace")
    return what, detail[-log_tail:]


def write_training_data(data: Any, path: Path) -> None:
    """``data`` (a :class:`~skol_spark.fit.training_data.TrainingData`) as one ``.npz``, read back by
    :func:`read_training_data`."""
    features = data.features
    arrays = {"labels": data.labels, "doc_lengths": data.doc_lengths}
    if isinstance(features, np.ndarray):
        arrays.update(order=np.arange(len(features)), width=features.shape[1], dense=features)
    elif features.is_sparse:
        indptr, indices, values = features.csr
        arrays.update(order=features.order, width=features.width, indptr=indptr, indices=indices, values=values)
    else:
        arrays.update(order=features.order, width=features.width, dense=features.dense)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def read_training_data(path: Path) -> Any:
    from skol_spark.fit.training_data import FeatureRows, TrainingData

    with np.load(path, allow_pickle=False) as arrays:
        if "dense" in arrays.files:
            features = FeatureRows(arrays["order"], int(arrays["width"]), dense=arrays["dense"])
        else:
            csr = (arrays["indptr"], arrays["indices"], arrays["values"])
            features = FeatureRows(arrays["order"], int(arrays["width"]), csr=csr)
        return TrainingData(features, arrays["labels"], arrays["doc_lengths"])


def _empty_data(width: int, sparse: bool) -> Any:
    from skol_spark.fit.training_data import FeatureRows, TrainingData

    empty = np.zeros(0, np.int64)
    if sparse:
        csr = (np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
        features = FeatureRows(empty, width, csr=csr)
    else:
        features = FeatureRows.from_dense(np.zeros((0, width), np.float32))
    return TrainingData(features, np.zeros(0, np.int32), empty)


def _agree(data: Any, num_classes: int, windows: tuple[int, int]) -> tuple[int, bool, np.ndarray, np.ndarray]:
    """One all-gather: the feature width all ranks saw, whether every rank with rows stores them sparse,
    the class counts summed over ranks, and every rank's (training, validation) window counts ``(ranks, 2)``."""
    width = -1 if data is None else data.num_features
    storage = -1 if data is None else int(bool(getattr(data.features, "is_sparse", False)))
    counts = np.zeros(num_classes, np.int64) if data is None else np.bincount(data.labels, minlength=num_classes)
    gathered = _allgather(np.concatenate([[width, storage], counts, windows]).astype(np.int64))
    widths = sorted({int(w) for w in gathered[:, 0] if w >= 0})
    if not widths:
        raise ValueError("Every worker received no training rows; nothing to fit on.")
    if len(widths) > 1:
        raise ValueError(
            f"feature rows have different lengths across workers (from {widths[0]} to {widths[-1]})"
        )
    sparse = bool((gathered[:, 1] == 1).any() and not (gathered[:, 1] == 0).any())
    return widths[0], sparse, gathered[:, 2 : 2 + num_classes].sum(axis=0), gathered[:, 2 + num_classes :]


class _Programs:
    """The network for one feature width and storage, its members and their compiled programs."""

    def __init__(self, config: Any, width: int, sparse: bool, local_batch: int, collective: Any, rank: int,
                 clock: Any):
        from skol_spark.fit.distributed.sparse_steps import RowSparseStep
        from skol_spark.fit.distributed.steps import DenseStep, Forward
        from skol_spark.fit.training import new_network
        from skol_spark.nn.network import ensemble_members
        from skol_spark.nn.projection import split_network

        self.width, self.sparse = width, sparse
        self.network = new_network(config, width)
        self.members = ensemble_members(self.network)
        if sparse and split_network(self.members[0]) is not None:
            self.step = RowSparseStep(
                self.members[0], config.learning_rate, collective, rank, config.window_size, local_batch
            )
        else:  # dense rows, or sparse rows densified batch by batch for a network without projection
            self.step = DenseStep(self.members[0], config.learning_rate, collective, rank)
        self.description = "whole-network steps on dense windows"
        self.forward = Forward(self.members[0], config.predict_batch_size, collective)
        clock.mark("network")
        if isinstance(self.step, DenseStep):
            self.step.warm_up((local_batch, config.window_size, width), config.num_classes)
        else:
            self.step.warm_up(config.num_classes)
        clock.mark("step_compiled")
        self.forward.warm_up(self.step.state(self.members[0]))
        clock.mark("forward_compiled")

    def configure_sparse(self, data: Any, windows: tuple, local_batch: int, spec: dict) -> None:
        """Fix a row-sparse step's padded shapes (agreed by all ranks) and its kernel exchange."""
        from skol_spark.fit.distributed.sparse_steps import choose_exchange, sparse_bounds, typical_sizes

        if not hasattr(self.step, "configure"):
            return
        bounds = _allgather(np.array(sparse_bounds(data, *windows, local_batch), np.int64)).max(axis=0)
        columns = int(bounds[1])
        exchange = spec.get("row_sparse_exchange") or choose_exchange(
            spec["num_workers"], columns, self.width, self.step.units
        )
        typical = typical_sizes(data, *windows, local_batch, spec.get("rank", 0))
        self.step.configure((int(bounds[0]), columns), exchange, typical)
        how = {"gather": "kernel rows exchanged by all-gather", "dense": "kernel rows exchanged by dense all-reduce",
               "local": "one rank: nothing exchanged"}[exchange]
        self.description = (
            f"row-sparse steps (up to {int(bounds[0])} values and {columns} columns a batch, padded to "
            f"{len(self.step.sizes)} sizes; {how})"
        )


def train(workdir: Path, spec: dict, clock: Any) -> None:
    """Train this rank's share; rank 0 writes the result files."""
    import dataclasses

    from skol_spark.core.class_weights import resolve_class_weights
    from skol_spark.fit.distributed.rank import RankRun, train_members
    from skol_spark.fit.distributed.steps import Collective
    from skol_spark.fit.training import TrainingConfig, split_validation
    from skol_spark.nn.network import set_ensemble_weights
    from skol_spark.nn.trained_network import weights_from_bytes

    rank, num_workers, labels = spec["rank"], spec["num_workers"], spec["labels"]
    collective = Collective(lambda: _PEERS.ring)
    initial = None
    if (workdir / INITIAL).exists():
        initial = weights_from_bytes((workdir / INITIAL).read_bytes())
    config = dataclasses.replace(
        TrainingConfig(**spec["config"]), class_weights=[1.0] * len(labels), initial_weights=initial
    )
    local_batch = math.ceil(config.batch_size / num_workers)
    programs = None
    if _wait_for(workdir, HINT, ROWS_DONE) == HINT:  # compiled while the task still writes the rows
        hint = json.loads((workdir / HINT).read_text())
        programs = _Programs(config, hint["width"], hint["sparse"], local_batch, collective, rank, clock)
    data = _load_rows(workdir, spec)
    clock.mark("rows_loaded")
    window, seed = config.window_size, config.seed
    doc_lengths = np.zeros(0, np.int64) if data is None else data.doc_lengths
    # Validation rows: segments of this rank's documents, drawn with the fit's fraction and a per-rank seed.
    split = split_validation(doc_lengths, config.validation_fraction, seed + rank, window)
    train_windows, val_windows = split.windows(False, window), split.windows(True, window)
    width, sparse, counts, windows = _agree(data, len(labels), (len(train_windows[0]), len(val_windows[0])))
    clock.mark("agreed")
    if data is None:
        data = _empty_data(width, sparse)
    class_weights = resolve_class_weights(
        counts.tolist(), labels, spec["weight_strategy"], spec["class_weights"], spec["effective_number_beta"]
    )
    config = dataclasses.replace(config, class_weights=class_weights)
    if programs is None or programs.width != width or programs.sparse != sparse:
        programs = _Programs(config, width, sparse, local_batch, collective, rank, clock)
    programs.configure_sparse(data, train_windows, local_batch, spec)
    run = RankRun(
        data=data, split=split, config=config, rank=rank,
        steps=max(1, math.ceil(int(windows[:, 0].max()) / local_batch)), local_batch=local_batch,
        class_weights=collective.put(np.asarray(class_weights, np.float32)), collective=collective,
        allgather=_allgather, validating=bool(windows[:, 1].max()),
        progress=spec.get("progress") if rank == 0 else None, clock=clock,
    )
    only = spec.get("members")  # the members this process trains (the driver fit on JAX splits them)
    history = train_members(run, programs.step, programs.forward, programs.members, only)
    clock.mark("trained")
    if len(programs.members) > 1:
        set_ensemble_weights(programs.network, programs.members)
    channel = (run.progress or {}).get("channel")
    if channel is not None:
        channel.close()
    steps = np.array([int(d) for d in np.asarray(run.digests, np.uint32)] + [_digest(programs.network.get_weights())])
    all_digests = _allgather(steps.astype(np.int64))
    timings = _allgather(np.array(_step_times(clock), np.float32))
    print("phases " + json.dumps(clock.phases), flush=True)  # this rank's log
    if rank == 0:
        _write_result(workdir, programs, data, doc_lengths, config, {
            "history": history,
            "class_weights": class_weights,
            "counts": counts.tolist(),
            "num_features": width,
            "digests": all_digests.tolist(),
            "steps_per_epoch": run.steps,
            "local_batch": local_batch,
            "all_reduce_floats": programs.step.size,
            "steps": programs.description,
            "members": only,
            "timings": {**clock.summary(), "ranks_step_ms": timings.tolist()},
        }, clock)


def _step_times(clock: Any) -> list[float]:
    """This rank's median step parts in ms (compute, all-reduce, update) and its mean step's wall time
    (NaN when never timed)."""
    parts = clock.summary()["step_ms"]
    return [parts.get(k, math.nan) for k in ("compute", "all-reduce", "update", "step (mean)")]


def _write_result(workdir: Path, programs: _Programs, data: Any, doc_lengths: np.ndarray, config: Any,
                  meta: dict, clock: Any) -> None:
    from skol_spark.core.windows import gather_windows, window_index
    from skol_spark.nn.trained_network import TrainedNetwork

    trained = TrainedNetwork.from_keras(programs.network)
    (workdir / RESULT_WEIGHTS).write_bytes(trained.weights)
    window, width = config.window_size, programs.width
    starts, lengths, _ = window_index(doc_lengths, window, window)  # probe windows: the first of rank 0's rows
    probe_count = int(min(8, max(1, _PROBE_BYTES // max(1, 4 * window * width)), len(starts)))
    if probe_count:
        x, mask, _ = gather_windows(data.features, starts[:probe_count], lengths[:probe_count], window)
        forward, probs = programs.forward, []
        for member in programs.members:  # an ensemble's output is its members' mean
            forward.use(programs.step.state(member))
            inputs = x
            if forward.projection is not None:
                inputs = forward.projection(x.reshape(-1, width)).reshape(len(x), window, -1)
            probs.append(forward(inputs, mask))
        np.savez(workdir / PROBE, x=x, mask=mask, probs=np.mean(probs, axis=0), members=np.stack(probs))
    if meta.get("members") is not None:  # the trained members' own weights, for the driver to join
        from skol_spark.nn.projection import PROJECTION_LAYER, SEQUENCE_MODEL

        arrays = {}
        for m in meta["members"]:
            for part in (PROJECTION_LAYER, SEQUENCE_MODEL):
                weights = programs.members[m].get_layer(part).get_weights()
                arrays.update({f"{m}/{part}/{i}": w for i, w in enumerate(weights)})
        np.savez(workdir / MEMBERS, **arrays)
    clock.mark("result")
    meta["timings"]["phases"] = clock.phases
    (workdir / RESULT_META).write_text(json.dumps({"architecture": trained.architecture, **meta}))


def main(argv: list[str]) -> None:
    global _PEERS
    workdir = Path(argv[1])
    spec = json.loads((workdir / SPEC).read_text())
    _die_with_parent(spec["parent_pid"])
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    from skol_spark.fit.distributed.rank import Clock

    clock = Clock(spec["driver_started"])
    clock.phases["task"] = spec["task_started"]
    clock.mark("process")
    try:
        _PEERS = _Peers(spec)
        _without_tensorflow()
        import jax  # noqa: F401 - imported here, so that the phase below is what imports cost
        import keras  # noqa: F401

        clock.mark("imports")
        train(workdir, spec, clock)
    except BaseException as exc:  # noqa: BLE001 - reported to the task, which fails the stage with it
        if _lost_a_peer(exc):
            (workdir / PEER_LOST).touch()
        (workdir / ERROR).write_text(
            f"{type(exc).__name__}: {exc}\n\n" + "".join(traceback.format_exception(exc))[-6000:]
        )
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)  # the results are written; tearing down the interpreter's JAX and Keras state takes seconds


if __name__ == "__main__":
    main(sys.argv)
