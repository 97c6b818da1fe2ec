"""Which device the network runs on: the GPU Spark assigned, or the CPU.

A model's ``useGpu`` decides where that model runs and nothing else. On
TensorFlow each labeling task asks :func:`task_device` for a device name
(the GPU Spark assigned to the task, ``TaskContext.get().resources()["gpu"]``,
or ``/CPU:0``) and rebuilds and runs its network inside ``tf.device`` of it;
the worker's cache keeps one network per (weights, device). Nothing is
hidden from TensorFlow or from other libraries' UDFs in a reused worker, and
no environment variable is set. The one process-wide setting is TensorFlow's
memory growth on every GPU, turned on before TensorFlow first initializes
its devices, so that TensorFlow takes GPU memory only as a model uses it
(without it, TensorFlow reserves nearly all of every GPU's memory at its
first operation, even one on the CPU). With ``useGpu=True`` and no GPU the
network runs on the CPU, with one warning line per process. Other Keras
backends use their default device.

Only the standard library is imported at module level (no pyspark); the
framework is imported when a device is chosen.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "INFERENCE_ENGINES",
    "TRAINING_ENGINES",
    "gpu_addresses",
    "pick_gpu",
    "task_device",
    "device_scope",
    "training_device",
]

logger = logging.getLogger(__name__)

NO_GPU_WARNING = (
    "skol_spark: useGpu=True but no GPU is available to {where}; running on the CPU. "
    "Request GPUs with spark.executor.resource.gpu.amount and spark.task.resource.gpu.amount."
)

# What runs the network on the executors (the model's inferenceEngine): "auto", ONNX Runtime on
# the CPU when it can (skol_spark.nn.fast_forward), else Keras; "keras", Keras always.
INFERENCE_ENGINES = ("auto", "keras")
# What trains the network in a driver fit (the estimator's trainingEngine): Keras on TensorFlow in
# the driver, or on JAX in a child process of it (skol_spark.fit.jax_driver); "auto" chooses.
TRAINING_ENGINES = ("auto", "tensorflow", "jax")

_lock = threading.Lock()
_warned = False
_memory_growth_done = False


def gpu_addresses(resources: Mapping[str, Any] | None) -> list[str]:
    """The GPU addresses in a ``TaskContext.resources()`` or ``SparkContext.resources`` mapping."""
    if not resources:
        return []
    info = resources.get("gpu")
    return [str(a) for a in info.addresses] if info is not None else []


def pick_gpu(use_gpu: bool, addresses: Sequence[str], where: str = "this Spark task") -> str | None:
    """The GPU address to run on, or None for the CPU.

    With ``use_gpu`` and no address, logs the fallback warning, at most once
    per process.
    """
    global _warned
    if not use_gpu:
        return None
    if addresses:
        return str(addresses[0])
    with _lock:
        if not _warned:
            _warned = True
            logger.warning(NO_GPU_WARNING.format(where=where))
    return None


def _allow_memory_growth(tf: Any) -> None:
    """Memory growth on every GPU, once, if TensorFlow has not initialized its devices yet."""
    global _memory_growth_done
    with _lock:
        if _memory_growth_done:
            return
        _memory_growth_done = True
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # devices already initialized in this process
            logger.debug("TensorFlow devices already initialized; memory growth left as it is")
            return


def task_device(use_gpu: bool, addresses: Sequence[str]) -> str | None:
    """The TensorFlow device a task's network runs on: ``/GPU:i`` for the GPU Spark assigned
    (by its address), else ``/CPU:0``; None on other Keras backends (their default device)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pick_gpu(use_gpu, addresses)
        return None
    import tensorflow as tf

    _allow_memory_growth(tf)
    address = pick_gpu(use_gpu, addresses)
    if address is None:
        return "/CPU:0"
    gpus = tf.config.list_physical_devices("GPU")
    for index, gpu in enumerate(gpus):
        if gpu.name.rsplit(":", 1)[-1] == address:
            return f"/GPU:{index}"
    pick_gpu(True, [], f"this Python worker (Spark assigned GPU {address}, TensorFlow sees {len(gpus)})")
    return "/CPU:0"


@contextlib.contextmanager
def device_scope(device: str | None) -> Iterator[None]:
    """``tf.device(device)`` for a device from :func:`task_device`; nothing for None."""
    if device is None:
        yield
        return
    import tensorflow as tf

    with tf.device(device):
        yield


def visible_gpus() -> list[str]:
    """The GPUs TensorFlow uses in this process (logical devices), for checks and logs."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return []
    import tensorflow as tf

    return [d.name for d in tf.config.list_logical_devices("GPU")]


@contextlib.contextmanager
def training_device(use_gpu: bool, addresses: Sequence[str]) -> Iterator[str]:
    """Driver side: a TensorFlow device scope for training; yields the device name.

    ``use_gpu=False`` trains on ``/CPU:0``; ``use_gpu=True`` on the driver's
    GPU (its Spark-assigned address if any, else the first visible GPU), or
    on the CPU with the fallback warning. The driver process is not otherwise
    changed. On JAX and PyTorch backends the framework's default device is used.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        yield "default"
        return
    import tensorflow as tf

    device = "/CPU:0"
    if use_gpu:
        gpus = tf.config.list_physical_devices("GPU")
        index = 0
        for i, gpu in enumerate(gpus):
            if addresses and gpu.name.rsplit(":", 1)[-1] == str(addresses[0]):
                index = i
        if pick_gpu(True, [str(index)] if gpus else [], "the Spark driver") is not None:
            with contextlib.suppress(RuntimeError, ValueError):
                tf.config.experimental.set_memory_growth(gpus[index], True)
            device = f"/GPU:{index}"
    with tf.device(device):
        yield device
