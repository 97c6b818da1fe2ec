"""The driver fit on JAX: the data-parallel worker as the only rank, in a child process of the driver.

Keras fixes its backend once per process and the driver's is TensorFlow
(the rebuild check, tuned thresholds, and any transform in the same
session). A fit with ``trainingEngine="jax"`` (or ``"auto"`` on a fit long
enough to pay for the start) therefore runs
:mod:`skol_spark.fit.distributed.worker` in a child process with
``KERAS_BACKEND=jax``, as one rank: the same compiled step programs as
``numWorkers > 1``, with nothing exchanged (a single rank's row-sparse step
updates the kernel rows it used in place: ``sparse_steps`` "local").

:class:`JaxFit` starts the child before the driver collects the rows, so its
imports overlap the collect; :meth:`JaxFit.train` writes the collected rows
(checked and sorted by the driver's own code) and the feature width, waits
for the weights, and rebuilds them on TensorFlow with
``model_from_json(compile=False)``: the rebuild must reproduce the child's
probabilities on probe windows. Epochs reach the driver's progress as they
end (a loopback connection).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skol_spark.errors import TrainingEngineError
from skol_spark.fit.distributed.worker import (
    DATA,
    INITIAL,
    MEMBERS,
    PROBE,
    RESULT_META,
    RESULT_WEIGHTS,
    ROWS_DONE,
    SPEC,
    failure_report,
    write_hint,
    write_training_data,
)
from skol_spark.fit.progress import FitProgress
from skol_spark.nn.trained_network import TrainedNetwork, weights_to_bytes

__all__ = ["JaxFit", "choose_engine", "estimated_steps", "jax_installed"]

logger = logging.getLogger("skol_spark")

# "auto" trains on JAX from this many optimizer steps (all networks and epochs). With XLA's
# compilation cache empty, JAX tied TensorFlow at 160 steps and lost at 40 (the children's imports and
# compiling); with it warm, JAX won from 40 (BENCHMARKS.md, "Training engine by fit length").
JAX_FROM_STEPS = 200
_LOG_TAIL = 4000


def jax_installed() -> bool:
    return importlib.util.find_spec("jax") is not None and importlib.util.find_spec("jaxlib") is not None


def estimated_steps(rows: int, training: dict[str, Any]) -> int:
    """Optimizer steps of a driver fit on ``rows`` rows: every network, every epoch (windows counted
    as if documents were one long run; shorter documents make more)."""
    kept = rows * (1.0 - training["validation_fraction"])
    per_epoch = math.ceil(kept / training["window_size"] / training["batch_size"])
    return training["ensemble_size"] * training["epochs"] * per_epoch


def choose_engine(engine: str, *, output_layer: str, use_gpu: bool, steps: int) -> str:
    """``"tensorflow"`` or ``"jax"`` for a driver fit (the estimator has checked the explicit choices).

    ``"auto"`` picks JAX when it is installed, the network has a softmax output, ``useGpu`` is off
    and the fit takes at least :data:`JAX_FROM_STEPS` steps.
    """
    if engine != "auto":
        return engine
    if output_layer != "softmax" or use_gpu or steps < JAX_FROM_STEPS or not jax_installed():
        return "tensorflow"
    return "jax"


@dataclass
class JaxResult:
    network: TrainedNetwork
    model: Any  # the network rebuilt on this process's backend (TensorFlow)
    history: dict[str, list[float]]
    class_weights: list[float]
    counts: list[int]


def _numbered(arrays: Any, prefix: str) -> list[Any]:
    """``arrays[prefix + "0"]``, ``arrays[prefix + "1"]``, ... in order."""
    return [arrays[f"{prefix}{i}"] for i in range(sum(name.startswith(prefix) for name in arrays.files))]


class _Child:
    """One child process: its directory, log and process."""

    def __init__(self, spec: dict[str, Any], initial: bytes | None, cpus: int | None):
        from skol_spark.fit.distributed.stage import child_env

        self.workdir = Path(tempfile.mkdtemp(prefix="skol-spark-jax-fit-"))
        (self.workdir / SPEC).write_text(json.dumps(spec))
        if initial is not None:
            (self.workdir / INITIAL).write_bytes(initial)
        self.members = spec.get("members")
        self.log = open(self.workdir / "log.txt", "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "skol_spark.fit.distributed.worker", str(self.workdir)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=child_env(cpus=cpus),
        )

    def give(self, data_file: Path, hint: dict[str, Any]) -> None:
        write_hint(self.workdir, hint)
        if data_file.parent != self.workdir:
            try:
                os.link(data_file, self.workdir / DATA)
            except OSError:
                shutil.copyfile(data_file, self.workdir / DATA)
        (self.workdir / ROWS_DONE).touch()

    def failure(self, code: int) -> str:
        self.log.flush()
        what, detail = failure_report(self.workdir, code, _LOG_TAIL)
        return f"The driver fit on JAX failed: {what}\n--- its traceback or log tail ---\n{detail}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class JaxFit:
    """One driver fit's JAX children: started at once, given the rows by :meth:`train`, always :meth:`close`d.

    A single network trains in one child with every core. An ensemble's members are independent,
    and one network's small steps do not keep two cores busy: with C cores, n = min(C, members)
    children train members k, k + n, ... side by side, each on its own core(s), and the driver
    joins them into one network.
    """

    def __init__(self, request: Any, labels: list[str], progress: FitProgress, initial: list[Any] | None):
        from skol_spark.fit.distributed.stage import ProgressListener

        if not jax_installed():
            raise TrainingEngineError(
                "trainingEngine='jax' needs the jax package on the driver: pip install 'skol_spark[distributed]' "
                "(or set trainingEngine='auto' or 'tensorflow')."
            )
        self.started = time.time()
        self.listener = ProgressListener("127.0.0.1", progress)
        members = request.training["ensemble_size"]
        cpus = os.cpu_count() or 1
        count = max(1, min(members, cpus))
        spec = {
            "rank": 0, "num_workers": 1, "peers": ["127.0.0.1:0"], "token": secrets.token_hex(16),
            "timeout_seconds": 60, "columns": list(request.columns), "labels": labels,
            "config": {**request.training, "num_classes": len(labels), "class_weights": []},
            "handle_invalid": request.handle_invalid, "width": None,
            "weight_strategy": request.weight_strategy, "class_weights": request.class_weights,
            "effective_number_beta": request.effective_number_beta, "row_sparse_exchange": None,
            "parent_pid": os.getpid(), "driver_started": self.started, "task_started": 0.0,
        }
        body = None if initial is None else weights_to_bytes(initial)
        self.children: list[_Child] = []
        for k in range(count):  # child 0 reports its epochs as they end
            progress_address = {"address": self.listener.address, "token": self.listener.token} if k == 0 else None
            own = {**spec, "progress": progress_address,
                   "members": None if count == 1 else list(range(k, members, count))}
            self.children.append(_Child(own, body, None if count == 1 else max(1, cpus // count)))

    def train(self, data: Any, config: Any) -> JaxResult:
        """Train on the collected ``data``; the network, rebuilt and checked on this process's backend."""
        from skol_spark.fit.distributed.stage import check_rebuild, report_missed_epochs

        hint = {"width": data.num_features, "sparse": bool(getattr(data.features, "is_sparse", False))}
        data_file = self.children[0].workdir / DATA
        write_training_data(data, data_file)
        for child in self.children:
            child.give(data_file, hint)
        running = list(self.children)
        while running:  # the first to fail fails the fit (close() stops the others)
            for child in list(running):
                code = child.process.poll()
                if code is not None and code != 0:
                    raise TrainingEngineError(child.failure(code))
                if code == 0:
                    running.remove(child)
            time.sleep(0.05)
        self.listener.close()
        metas = [json.loads((c.workdir / RESULT_META).read_text()) for c in self.children]
        first = self.children[0].workdir
        network = TrainedNetwork(metas[0]["architecture"], (first / RESULT_WEIGHTS).read_bytes())
        probe = (first / PROBE).read_bytes() if (first / PROBE).exists() else None
        if len(self.children) == 1:
            history = metas[0]["history"]
            model = check_rebuild(network, probe, where="on JAX")
        else:
            network, model, history = self._join(network, metas, data, config)
        phases = metas[0]["timings"]["phases"]
        logger.info(
            "driver fit on JAX: %s, %d steps per epoch, %d process(es); the first had imported JAX at %.1f s, "
            "compiled at %.1f s, ended its first epoch at %.1f s and trained at %.1f s; %.1f s in all",
            metas[0]["steps"], metas[0]["steps_per_epoch"], len(self.children), phases.get("imports", math.nan),
            phases.get("forward_compiled", math.nan), phases.get("first_epoch", math.nan),
            phases.get("trained", math.nan), time.time() - self.started,
        )
        logger.debug("driver fit on JAX: timings %s", json.dumps([m["timings"] for m in metas]))
        report_missed_epochs(history, self.listener.progress, self.listener.logged)
        return JaxResult(network, model, history, metas[0]["class_weights"], metas[0]["counts"])

    def _join(self, network: TrainedNetwork, metas: list[dict], data: Any, config: Any) -> tuple:
        """One ensemble from the children's members, rebuilt from the first child's architecture and
        weights with every member's own weights put in, checked to predict the mean of the members'
        JAX probabilities on the probe; the network, its Keras model and the history."""
        import io

        import numpy as np

        from skol_spark.fit.distributed.stage import check_probe
        from skol_spark.fit.training import ensemble_validation_score
        from skol_spark.nn.network import set_member_weights
        from skol_spark.nn.projection import PROJECTION_LAYER, SEQUENCE_MODEL

        model = network.rebuild()
        weights, member_probs, best = {}, {}, {}
        history: dict[str, list[float]] = {}
        probe = None
        for child, meta in zip(self.children, metas):
            with np.load(child.workdir / MEMBERS) as arrays:
                for m in child.members:
                    weights[m] = tuple(_numbered(arrays, f"{m}/{part}/") for part in (PROJECTION_LAYER, SEQUENCE_MODEL))
            if (child.workdir / PROBE).exists():
                with np.load(child.workdir / PROBE) as arrays:
                    probe = probe or {"x": arrays["x"], "mask": arrays["mask"]}
                    member_probs.update({m: arrays["members"][m] for m in child.members})
            own = dict(meta["history"])
            best.update(zip(child.members, own.pop("best_epoch", [])))
            history.update(own)
        set_member_weights(model, weights)
        if best:
            history["best_epoch"] = [best[m] for m in sorted(best)]
        score = ensemble_validation_score(model, data, config)
        if score is not None:
            history["ensemble_val_macro_f1"] = [score]
            self.listener.progress.line(f"ensemble of {len(weights)}: val_macro_f1 {score:.4f}")
        if probe is not None:
            buffer = io.BytesIO()
            np.savez(buffer, probs=np.mean([member_probs[m] for m in sorted(member_probs)], axis=0), **probe)
            check_probe(model, buffer.getvalue(), "on JAX")
        return TrainedNetwork.from_keras(model), model, history

    def close(self) -> None:
        """Stop the children that still run and remove their files."""
        for child in self.children:
            child.close()
        self.listener.close()
