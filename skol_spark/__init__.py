"""skol_spark: sequence labeling of documents in Spark with a class-weighted BiLSTM.

>>> from skol_spark import BiLSTMClassifier, BiLSTMClassificationModel, model_from_json

The public names load on first use (PEP 562), so ``import skol_spark`` costs
neither TensorFlow's start-up (seconds) nor needs pyspark: the Spark-free
packages (``skol_spark.core``, ``skol_spark.nn``, ``skol_spark.transform.predict``,
``skol_spark.skol.yedda``) work without pyspark, and asking for a Spark stage
without it raises an ``ImportError`` that names the missing extra.

The packages, by role: ``stages`` (the Estimator, the Model, their Params),
``nn`` (the network), ``fit`` (driver-side training, ``fit.distributed`` on
the executors), ``transform`` (executor-side labeling), ``stores`` (directories,
Redis, Keras files), ``skol`` (the SKOL application), ``cli`` (the command line),
over ``core`` and ``compat``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

__all__ = [
    "BiLSTMClassifier",
    "BiLSTMClassificationModel",
    "WeightedSparseCategoricalCrossentropy",
    "model_from_json",
    "__version__",
]

_HOME = {
    "BiLSTMClassifier": "skol_spark.stages.classifier",
    "BiLSTMClassificationModel": "skol_spark.stages.model",
    "WeightedSparseCategoricalCrossentropy": "skol_spark.nn.network",
    "model_from_json": "skol_spark.nn.network",
}

SPARK_MISSING = (
    "skol_spark's Spark stages need pyspark>=3.5, which is not installed. Install it with "
    "pip install 'skol_spark[spark]', or run where a Spark runtime provides it"
)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'skol_spark' has no attribute {name!r}")
    try:
        module = importlib.import_module(_HOME[name])
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "pyspark":
            raise ImportError(f"{SPARK_MISSING} (asked for skol_spark.{name}).") from exc
        raise
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
