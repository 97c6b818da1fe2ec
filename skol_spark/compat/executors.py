"""The functions Spark ships to the executors, made so that a missing skol_spark says so.

Spark pickles a UDF's function with cloudpickle; a function defined at module
level is pickled by reference (module and name), so an executor whose Python
cannot import skol_spark fails while unpickling it, inside pyspark's worker,
with a bare ``No module named 'skol_spark'`` before any of our code runs.
:func:`on_executors` returns a small function defined inside it, which
cloudpickle pickles by value and which imports only the standard library: it
imports the real entry point (``module:name``) inside a ``try`` and, when that
fails, raises a ``ModuleNotFoundError`` naming the interpreter the executor
runs, the driver's, and the fixes. The entry point's arguments travel as one
cloudpickle payload, unpickled only after the import succeeded.

Nothing runs on the driver: a plan using the function stays lazy.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["EXECUTOR_IMPORT_ERROR", "on_executors"]

# The start of the message raised on an executor that cannot import skol_spark; the
# driver finds it in Spark's exception.
EXECUTOR_IMPORT_ERROR = "skol_spark cannot be imported on the executors"


def on_executors(
    module: str, name: str, *args: Any, types: tuple[Any, Any] | None = None
) -> Callable[[Any], Any]:
    """A function of one argument (the partition's iterator) calling ``module.name(it, *args)``.

    ``types`` (argument type, return type) become its type hints, from which
    pyspark tells a pandas or Arrow UDF's kind.
    """
    from pyspark import cloudpickle

    payload = cloudpickle.dumps(args)
    driver_python = sys.executable

    def run(iterator):
        import importlib

        try:
            target = getattr(importlib.import_module(module), name)
        except ImportError as exc:
            import platform
            import sys as executor_sys

            raise ModuleNotFoundError(
                f"{EXECUTOR_IMPORT_ERROR}: {exc}. The executors run Python "
                f"{executor_sys.executable} ({platform.python_version()}); the driver runs "
                f"{driver_python}. Give the executors a Python with skol_spark and its "
                "dependencies: set PYSPARK_PYTHON to it before the session starts "
                "(spark.pyspark.python with spark-submit), or ship the package with "
                "spark-submit --py-files skol_spark.zip or spark.sparkContext.addPyFile('skol_spark.zip').",
                name=getattr(exc, "name", None),
            ) from None
        import pickle

        return target(iterator, *pickle.loads(payload))

    if types is not None:
        run.__annotations__ = {"iterator": types[0], "return": types[1]}
    return run
