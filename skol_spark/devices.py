"""Which device the network runs on: the GPU Spark assigned, or the CPU.

Executors settle this once per Python worker, through the framework's own
device visibility, never through environment variables: a reused worker
also runs other libraries' UDFs, and ``CUDA_VISIBLE_DEVICES`` set by one
task would hide the GPU from all of them. On TensorFlow, ``useGpu=False``
(the default) makes no GPU visible *to TensorFlow*
(``tf.config.set_visible_devices([], "GPU")``), so it never claims GPU
memory; ``useGpu=True`` makes only the GPU Spark assigned to the task
(``TaskContext.get().resources()["gpu"]``) visible, with memory growth on,
and falls back to the CPU with one warning line per process when there is
none. TensorFlow fixes its visible devices when it first initializes them,
so a Python worker keeps the device of the first task it labels. Other Keras
backends use their default device.

Only the standard library is imported at module level (no pyspark); the
framework is imported when a device is settled.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Iterator, Mapping, Sequence

__all__ = [
    "gpu_addresses",
    "pick_gpu",
    "configure_worker_devices",
    "training_device",
]

logger = logging.getLogger(__name__)

NO_GPU_WARNING = (
    "skol_spark: useGpu=True but no GPU is available to {where}; running on the CPU. "
    "Request GPUs with spark.executor.resource.gpu.amount and spark.task.resource.gpu.amount."
)

_lock = threading.Lock()
_UNSET = object()
_worker_address: Any = _UNSET
_warned = False


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


def configure_worker_devices(use_gpu: bool, addresses: Sequence[str]) -> str | None:
    """Settle this worker process's device, once; returns the GPU address or None.

    Changes no environment variable: on TensorFlow it sets which GPUs
    TensorFlow sees (none, or ``address``'s with memory growth), which TensorFlow
    allows until its devices are initialized; after that it keeps them.
    """
    global _worker_address
    with _lock:
        settled = _worker_address is not _UNSET
    if settled:
        if use_gpu and _worker_address is None:
            pick_gpu(True, [], "this Python worker (it started on the CPU)")
        return _worker_address
    address = pick_gpu(use_gpu, addresses)
    _restrict_tensorflow(address)
    with _lock:
        _worker_address = address
    return address


def _restrict_tensorflow(address: str | None) -> None:
    """Show TensorFlow only ``address``'s GPU (none for None), with memory growth."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    try:
        gpus = tf.config.list_physical_devices("GPU")
        chosen = [g for g in gpus if address is not None and g.name.rsplit(":", 1)[-1] == address]
        tf.config.set_visible_devices(chosen, "GPU")
        for gpu in chosen:
            tf.config.experimental.set_memory_growth(gpu, True)
    except (RuntimeError, ValueError):  # devices already initialized in this process
        logger.debug("TensorFlow devices already initialized; keeping them")


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
