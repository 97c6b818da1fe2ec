"""Every exception skol_spark raises on purpose, in one place.

Rows the model cannot use, networks that cannot be rebuilt, saving and loading
models, Spark clients and streaming inputs skol_spark cannot run on,
annotated files that cannot be read, and command-line jobs.
"""

from __future__ import annotations

__all__ = [
    "InvalidRowError",
    "ModelRebuildError",
    "ModelLoadError",
    "WrongModelClassError",
    "CorruptModelError",
    "ChecksumMismatchError",
    "UnsafeModelError",
    "ModelNotFoundError",
    "ModelExistsError",
    "StoreUnavailableError",
    "SparkConnectUnsupportedError",
    "StreamingInputError",
    "DistributedTrainingError",
    "TrainingEngineError",
    "JobError",
    "YeddaError",
]


class InvalidRowError(ValueError):
    """An input row the model cannot use, with handleInvalid="error" (see ``skol_spark.core.invalid``)."""


class ModelRebuildError(RuntimeError):
    """A network cannot be rebuilt from its JSON as executors rebuild it, or predicts differently."""


class ModelLoadError(Exception):
    """Base class: a saved model could not be written or read back."""


class WrongModelClassError(ModelLoadError, ValueError):
    """The saved model was written by another class than the one loading it."""


class CorruptModelError(ModelLoadError, ValueError):
    """The saved metadata or body is malformed, truncated or inconsistent."""


class ChecksumMismatchError(CorruptModelError):
    """The body's SHA-256 differs from the one recorded in the metadata."""


class UnsafeModelError(CorruptModelError):
    """The architecture asks for code Keras safe mode refuses to run (Lambda, unknown classes)."""


class ModelNotFoundError(ModelLoadError, KeyError):
    """No model is stored under the key."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelExistsError(ModelLoadError, FileExistsError):
    """A model is already stored under the key and overwriting was not asked for."""


class StoreUnavailableError(ModelLoadError, ConnectionError):
    """The store could not be reached or dropped the connection."""


class SparkConnectUnsupportedError(RuntimeError):
    """The session is a Spark Connect client too old for what was asked (pyspark < 4.0)."""


class StreamingInputError(ValueError):
    """A streaming DataFrame given to fit or transform, which need each document whole (use foreachBatch)."""


class DistributedTrainingError(RuntimeError):
    """A data-parallel fit (numWorkers > 1) failed on a worker; the message carries that worker's error."""


class TrainingEngineError(RuntimeError):
    """The driver fit on JAX (trainingEngine) could not run: jax is missing, or its process failed
    (the message carries that process's error)."""


class JobError(ValueError):
    """A problem with a command-line job's arguments, inputs or model store that the user can fix."""


class YeddaError(ValueError):
    """A YEDDA-annotated file that cannot be read as asked: not UTF-8, no annotated block, or a
    block opened and never closed; the message names the file and, where it applies, the line."""
