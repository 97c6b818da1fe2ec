"""Data-parallel fit on the executors (``numWorkers > 1``): one barrier stage, a JAX process per rank.

The driver never sees a training row. :func:`fit_on_executors` selects the
four training columns, repartitions them by document into ``numWorkers``
partitions (each worker holds whole documents, and about as many training
windows as the others: :mod:`~skol_spark.fit.distributed.balance`) and runs
one barrier stage over them (``mapInArrow(..., barrier=True)``, classic
Spark and Spark Connect alike). Each barrier task (:func:`_run_rank`)

1. picks a free port and learns every rank's ``host:port`` with
   ``BarrierTaskContext.allGather``;
2. starts :mod:`skol_spark.fit.distributed.worker` in a child process with
   ``KERAS_BACKEND=jax`` (the Python worker may already hold Keras on
   TensorFlow, and a process cannot switch backends) before its rows arrive,
   so that the child's imports and compiling overlap their transfer; the
   children connect in a ring over TCP and train together, one all-reduce of
   the whole gradient per step;
3. streams its partition's Arrow batches to a file the child reads;
4. fails with the child's error and log tail if the child fails (which fails
   the whole stage: Spark kills the other tasks, whose children die with
   them), or, on rank 0, returns the weights, the architecture JSON, the
   history, timings and a probe as the stage's one output row.

Back on the driver the weights go into the architecture rebuilt on
TensorFlow with the project's ``model_from_json(json, compile=False)`` and
``set_weights``, and the rebuild must reproduce rank 0's JAX probabilities
on the probe windows; every rank's per-step weight checksums must agree.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skol_spark.compat.connect import is_remote
from skol_spark.compat.executors import EXECUTOR_IMPORT_ERROR, on_executors
from skol_spark.errors import DistributedTrainingError, ModelRebuildError
from skol_spark.fit.distributed.balance import Balance, balance_documents
from skol_spark.fit.distributed.ring import free_port
from skol_spark.fit.distributed.worker import (
    INITIAL,
    PEER_LOST,
    PROBE,
    RESULT_META,
    RESULT_WEIGHTS,
    ROWS,
    ROWS_DONE,
    SPEC,
    failure_report,
    write_hint,
)
from skol_spark.fit.progress import FitProgress
from skol_spark.nn.trained_network import TrainedNetwork

__all__ = [
    "DistributedFit",
    "DistributedSpec",
    "ProgressListener",
    "check_probe",
    "check_rebuild",
    "child_env",
    "fit_on_executors",
    "report_missed_epochs",
]

logger = logging.getLogger("skol_spark")

RESULT_SCHEMA = "architecture string, weights binary, meta string, probe binary"
_ERROR_START, _ERROR_END = "<<skol_spark worker error>>", "<</skol_spark worker error>>"
_LOG_TAIL = 4000
# How long a task whose child lost its peers waits before failing, so that the
# rank with the real error (or whose process was killed) fails the stage first.
_PEER_LOSS_GRACE = 10.0
# XLA's compiled programs kept per user and machine; the least recently used go beyond this.
_CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class DistributedSpec:
    """What every rank needs to train its share (JSON, plus the warm-start weights body)."""

    num_workers: int
    columns: tuple[str, str, str, str]  # document, position, label, features
    labels: list[str]
    config: dict  # TrainingConfig fields; the workers fill in class_weights and initial_weights
    handle_invalid: str
    width: int | None
    weight_strategy: str
    class_weights: dict[str, float] | None
    effective_number_beta: float
    initial_weights: bytes | None = field(default=None, repr=False)
    # How long a rank waits for its ring neighbours to connect (they start with their tasks).
    timeout_seconds: int = 600
    # The ranks' shared secret: a connection to a rank's port that does not send it is dropped.
    token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    # How the kernel rows of a row-sparse step are exchanged ("gather" or "dense"); None: whichever
    # moves fewer floats (sparse_steps.choose_exchange). Benchmarks force one to time both.
    row_sparse_exchange: str | None = None

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        fields.pop("initial_weights")
        return json.dumps(fields)


@dataclass(frozen=True)
class DistributedFit:
    """What the barrier stage gave back, checked."""

    network: TrainedNetwork
    history: dict[str, list[float]]
    class_weights: list[float]
    counts: list[int]
    num_features: int
    digests: np.ndarray  # (ranks, steps + 1): after every step, then the final weights
    steps_per_epoch: int
    timings: dict[str, Any] = field(default_factory=dict)  # start-up phases and step parts (worker.py)


def check_cluster_slots(dataset: Any, num_workers: int) -> None:
    """Refuse a barrier stage the cluster cannot run at once (classic Spark; Connect cannot tell)."""
    try:
        slots = dataset.sparkSession.sparkContext.defaultParallelism
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        return
    if num_workers > slots:
        raise ValueError(
            f"Expected numWorkers <= the cluster's task slots ({slots}, spark.default.parallelism): "
            "a barrier stage starts all its tasks at once or waits for them. "
            f"Received: numWorkers={num_workers}. Lower numWorkers or add executor cores."
        )


def fit_on_executors(dataset: Any, spec: DistributedSpec, progress: FitProgress) -> DistributedFit:
    """Train on the executors in one barrier stage; the result of rank 0, checked on the driver.

    Rank 0's epochs reach ``progress`` as they end (classic Spark), or from the history at the end.
    """
    from pyspark.sql import functions as F

    check_cluster_slots(dataset, spec.num_workers)
    balancing = time.monotonic()
    selected, balance = balance_documents(
        dataset.select(*[F.col(f"`{c}`") for c in spec.columns]), spec.columns[0], spec.num_workers,
        spec.config["window_size"],
    )
    logger.info(
        "documents to %d workers: %s training windows each (busiest %.2fx the mean; hashing documents "
        "would give %.2fx), %.1f s", spec.num_workers, balance.windows, Balance.ratio(balance.windows),
        Balance.ratio(balance.hashed), time.monotonic() - balancing,
    )
    listener = _progress_listener(dataset, progress)
    address = None if listener is None else {"address": listener.address, "token": listener.token}
    started = time.monotonic()
    fields = {**json.loads(spec.to_json()), "progress": address, "driver_started": time.time()}
    spec_json, initial = json.dumps(fields), spec.initial_weights

    run = on_executors(__name__, "_run_rank", spec_json, initial)
    try:
        rows = selected.mapInArrow(run, RESULT_SCHEMA, barrier=True).collect()
    except Exception as exc:  # noqa: BLE001 - Spark wraps the task's error; find the worker's own
        error = _task_error(str(exc))
        if error is None:
            raise
        raise error from None
    finally:
        if listener is not None:
            listener.close()
    if len(rows) != 1:
        raise DistributedTrainingError(f"Expected one result row from rank 0. Received: {len(rows)} rows.")
    row = rows[0]
    meta = json.loads(row["meta"])
    fit = DistributedFit(
        network=TrainedNetwork(row["architecture"], bytes(row["weights"])),
        history=meta["history"],
        class_weights=meta["class_weights"],
        counts=meta["counts"],
        num_features=meta["num_features"],
        digests=np.asarray(meta["digests"], dtype=np.int64),
        steps_per_epoch=meta["steps_per_epoch"],
        timings=meta["timings"],
    )
    stage_seconds = time.monotonic() - started
    _check_ranks_agree(fit.digests)
    check_rebuild(fit.network, row["probe"])
    fit.timings["phases"]["stage_end"] = round(stage_seconds, 3)
    logger.info(
        "data-parallel fit on %d workers: %d steps per epoch of %d windows (%d per worker), %s; "
        "weight digests of all %d ranks agree after each of %d steps; %.1f s",
        spec.num_workers, fit.steps_per_epoch, meta["local_batch"] * spec.num_workers, meta["local_batch"],
        meta["steps"], fit.digests.shape[0], fit.digests.shape[1] - 1, time.monotonic() - started,
    )
    _log_timings(fit.timings, meta["all_reduce_floats"])
    report_missed_epochs(fit.history, progress, set() if listener is None else listener.logged)
    return fit


def _task_error(message: str) -> DistributedTrainingError | None:
    """The worker's own error in Spark's exception text, or the executors' failed import; else None."""
    found = re.search(re.escape(_ERROR_START) + r"(.*?)" + re.escape(_ERROR_END), message, re.S)
    if found is not None:
        return DistributedTrainingError(found.group(1).strip())
    found = re.search(re.escape(EXECUTOR_IMPORT_ERROR) + r"[^\n]*", message)
    if found is not None:
        return DistributedTrainingError(found.group(0).strip())
    return None


def _log_timings(timings: dict[str, Any], floats: int) -> None:
    """Rank 0's phases (seconds since the driver started the stage), every rank's median step parts and
    the slowest rank's mean step."""
    phases = ", ".join(f"{name} {seconds:.1f}" for name, seconds in timings["phases"].items())
    ranks = np.asarray(timings["ranks_step_ms"], dtype=float)
    parts, means = ranks[:, :3], ranks[:, 3]
    timed = parts[~np.isnan(parts).any(axis=1)]
    compute, exchange, update = np.median(timed, axis=0) if len(timed) else (np.nan,) * 3
    mean_step = np.nanmax(means) if np.isfinite(means).any() else np.nan
    logger.info(
        "data-parallel timings: rank 0 reached %s s; per step (median over ranks of each rank's median, ms): "
        "compute %.1f, all-reduce of %d floats %.1f, update %.1f; mean step %.1f ms", phases, compute, floats,
        exchange, update, mean_step,
    )
    logger.debug("data-parallel timings: %s", json.dumps(timings))


class ProgressListener:
    """Rank 0's epochs, reported on the driver as they end (classic Spark: executors reach the driver).

    One TCP connection, authenticated by a random token; epochs it never
    heard of are reported from the history once the stage ends.
    """

    def __init__(self, host: str, progress: FitProgress) -> None:
        self.progress, self.token, self.logged = progress, secrets.token_hex(16), set()
        self.server = socket.create_server((host, 0))
        self.address = f"{host}:{self.server.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True, name="skol-progress")
        self.thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self.server.accept()
            with connection, connection.makefile("r", encoding="utf-8") as lines:
                if lines.readline().strip() != self.token:
                    return
                for line in lines:
                    entry = json.loads(line)
                    self.progress.epoch(entry["epoch"], entry["logs"])
                    self.logged.add(entry["epoch"])
        except (OSError, ValueError, KeyError):
            pass  # the history still carries every epoch

    def close(self) -> None:
        """Stop listening; a connection still open is read to its end (rank 0 closes it when done)."""
        self.server.close()
        self.thread.join(timeout=5)


def _progress_listener(dataset: Any, progress: FitProgress) -> ProgressListener | None:
    if is_remote():
        return None  # the client may not be reachable from the executors
    try:
        return ProgressListener(dataset.sparkSession.conf.get("spark.driver.host"), progress)
    except Exception:  # noqa: BLE001 - no live progress; the history is logged at the end
        return None


def report_missed_epochs(history: dict[str, list[float]], progress: FitProgress, logged: set[int]) -> None:
    metrics = {k: v for k, v in history.items() if k != "best_epoch"}
    for epoch in range(max((len(v) for v in metrics.values()), default=0)):
        if epoch not in logged:
            progress.epoch(epoch, {k: v[epoch] for k, v in metrics.items() if epoch < len(v)})


def _check_ranks_agree(digests: np.ndarray) -> None:
    differ = np.flatnonzero((digests != digests[0]).any(axis=0))
    if len(differ):
        raise DistributedTrainingError(
            f"The workers' weights differ after step {int(differ[0]) + 1} (digests "
            f"{digests[:, differ[0]].tolist()}): the gradients were not synchronised."
        )


def check_rebuild(network: TrainedNetwork, probe: bytes | None, where: str = "on the executors") -> Any:
    """Rebuild on this process's backend from JSON + weights; it must predict what rank 0's JAX network
    did. The rebuilt Keras model."""
    rebuilt = network.rebuild()
    if probe:
        check_probe(rebuilt, probe, where)
    return rebuilt


def check_probe(model: Any, probe: bytes, where: str) -> None:
    """``model`` must predict the probe's probabilities (``x``, ``mask`` -> ``probs``, from JAX)."""
    import keras

    with np.load(io.BytesIO(bytes(probe)), allow_pickle=False) as arrays:
        x, mask, expected = arrays["x"], arrays["mask"], arrays["probs"]
    actual = keras.ops.convert_to_numpy(model([x, mask], training=False))
    if not np.allclose(actual, expected, atol=1e-4):
        raise ModelRebuildError(
            f"The network trained {where} (JAX) predicts differently once rebuilt on "
            f"{keras.backend.backend()} (max difference {np.abs(actual - expected).max():.3g})."
        )


# --- executor side: one barrier task -------------------------------------------------------------


def _run_rank(batches: Iterator[Any], spec_json: str, initial: bytes | None) -> Iterator[Any]:
    """One barrier task: every rank's address, the training child (started first, so that its
    imports and compiling overlap the rows' transfer), the rows to a file, rank 0's result."""
    from pyspark import BarrierTaskContext

    spec = json.loads(spec_json)
    origin = spec["driver_started"]  # the rank's phases are seconds since the driver started the stage
    task_started = round(time.time() - origin, 3)
    context = BarrierTaskContext.get()
    rank = context.partitionId()
    workdir = Path(tempfile.mkdtemp(prefix=f"skol-spark-rank{rank}-", dir=_scratch_dir()))
    child = None
    try:
        host = context.getTaskInfos()[rank].address.rsplit(":", 1)[0]
        peers = context.allGather(f"{host}:{free_port()}")  # where each rank's child listens
        spec.update(rank=rank, peers=peers, parent_pid=os.getpid(), task_started=task_started)
        (workdir / SPEC).write_text(json.dumps(spec))
        if initial is not None:
            (workdir / INITIAL).write_bytes(initial)
        with open(workdir / "log.txt", "wb") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "skol_spark.fit.distributed.worker", str(workdir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=child_env(context),
            )
            _write_rows(batches, workdir, spec["columns"][3], child)
            (workdir / ROWS_DONE).touch()
            code = child.wait()
        if code != 0:
            if (workdir / PEER_LOST).exists():
                time.sleep(_PEER_LOSS_GRACE)  # lost a peer: let the rank that failed report first
            raise RuntimeError(_failure_message(rank, spec["num_workers"], code, workdir))
        if rank == 0:
            yield _result_batch(workdir, origin)
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _scratch_dir() -> str | None:
    """Spark's local directory for this executor when it says, else the system's temp directory."""
    for name in ("SPARK_LOCAL_DIRS", "LOCAL_DIRS"):
        value = os.environ.get(name)
        if value:
            return value.split(",")[0]
    return None


def _write_rows(batches: Iterator[Any], workdir: Path, features: str, child: Any = None) -> int:
    """Stream the task's record batches to an Arrow IPC file (nothing written without rows).

    After the first batch, ``hint.json`` tells the child the feature width and
    storage, so it can compile while the rest arrives. Stops early when the
    child has exited (it failed; its error is what the task reports).
    """
    import pyarrow as pa

    rows, writer, sink = 0, None, None
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            if writer is None:
                sink = pa.OSFile(str(workdir / ROWS), "wb")
                writer = pa.ipc.new_stream(sink, batch.schema)
                _write_hint(batch.column(features), workdir)
            writer.write_batch(batch)
            rows += batch.num_rows
            if child is not None and child.poll() is not None:
                break
    finally:
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
    return rows


def _write_hint(column: Any, workdir: Path) -> None:
    """The first batch's feature width and storage, for the child to compile with (no hint when the
    first rows are malformed: the child then waits for all rows)."""
    from skol_spark.fit.training_data import feature_storage

    if column.null_count:
        return
    try:
        width, sparse = feature_storage(column)
    except (ValueError, TypeError):
        return
    write_hint(workdir, {"width": width, "sparse": sparse})


def child_env(context: Any = None, cpus: int | None = None) -> dict[str, str]:
    """This task's environment, with Keras on JAX (CPU) and skol_spark importable where it came from.

    XLA's CPU runtime gets as many threads as the task has cores (``spark.task.cpus``, or ``cpus``), so
    ``numWorkers`` ranks on one executor share its cores instead of each sizing its thread pools to
    the machine: ``PJRT_NPROC`` sizes the JAX CPU client's pools, and a one-core task also runs
    XLA's matrix products single-threaded. Pools sized to the machine cost two ranks on two cores
    a quarter of their step time (their idle threads run on the other rank's core; see
    DEVELOPERS.md). Variables already set in the environment win.
    """
    import skol_spark

    root = str(Path(skol_spark.__file__).resolve().parent.parent)  # a directory or a --py-files zip
    path = [root, *[p for p in sys.path if p and p != root]]
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(path),
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    cpus = cpus or _task_cpus(context)
    if cpus and "PJRT_NPROC" not in os.environ:
        env["PJRT_NPROC"] = str(cpus)
    if cpus == 1 and "XLA_FLAGS" not in os.environ:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
    cache = _compilation_cache()
    if cache is not None and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        # JAX bounds the cache only with filelock installed (the distributed extra brings it).
        env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_COMPILATION_CACHE_MAX_SIZE=str(_CACHE_BYTES) if _has("filelock") else "-1")
    return env


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _compilation_cache() -> str | None:
    """This user's private directory for XLA's compiled programs on this machine, or None.

    JAX's persistent compilation cache: a later fit of the same network shapes
    loads its step programs instead of compiling them (seconds of every
    start-up). Compiled code is executed, so the directory must be this
    user's alone (created 0700, owner and mode checked), else no cache.
    """
    if not hasattr(os, "getuid"):
        return None
    base = Path(_scratch_dir() or tempfile.gettempdir())
    path = base / f"skol_spark-xla-cache-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    return str(path)




def _task_cpus(context: Any) -> int | None:
    try:
        return int(context.cpus())
    except Exception:  # noqa: BLE001 - no task context (tests) or an older pyspark
        return None


def _failure_message(rank: int, num_workers: int, code: int, workdir: Path) -> str:
    what, detail = failure_report(workdir, code, _LOG_TAIL)
    return (
        f"{_ERROR_START}Worker {rank} of {num_workers} failed: {what}\n"
        f"--- its traceback or log tail ---\n{detail}{_ERROR_END}"
    )


def _result_batch(workdir: Path, origin: float) -> Any:
    import pyarrow as pa

    meta = json.loads((workdir / RESULT_META).read_text())
    meta["timings"]["phases"]["exited"] = round(time.time() - origin, 3)
    architecture = meta.pop("architecture")
    probe = (workdir / PROBE).read_bytes() if (workdir / PROBE).exists() else b""
    return pa.RecordBatch.from_pydict(
        {
            "architecture": [architecture],
            "weights": [(workdir / RESULT_WEIGHTS).read_bytes()],
            "meta": [json.dumps(meta)],
            "probe": [probe],
        },
        schema=pa.schema(
            [("architecture", pa.string()), ("weights", pa.binary()), ("meta", pa.string()), ("probe", pa.binary())]
        ),
    )
