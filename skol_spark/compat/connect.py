"""Spark Connect: telling it from classic Spark, and refusing clients too old for it.

Under Spark Connect (Databricks shared and serverless clusters, ``sc://``
URLs, ``SparkSession.builder.remote(...)``) there is no SparkContext, no RDD
and no JVM on the client. skol_spark needs none of them on pyspark 4.0 or
newer: training collects through ``DataFrame.toArrow()``, prediction is an
Arrow (or pandas) UDF, and saving writes Spark DataFrames. Older Connect
clients lack ``toArrow`` and their ML persistence goes through a
SparkContext, so they are refused up front with
:class:`~skol_spark.errors.SparkConnectUnsupportedError`.
"""

from __future__ import annotations

import re

from skol_spark.errors import SparkConnectUnsupportedError

__all__ = ["MIN_CONNECT_VERSION", "is_remote", "check_connect_support"]

MIN_CONNECT_VERSION = (4, 0)


def is_remote() -> bool:
    """True when the running Spark session is a Spark Connect client."""
    try:
        from pyspark.sql.utils import is_remote as _pyspark_is_remote
    except ImportError:  # pragma: no cover - Spark without Connect
        return False
    return bool(_pyspark_is_remote())


def _major_minor(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"Expected a Spark version like '4.0.1'. Received: {version!r}")
    return int(match.group(1)), int(match.group(2))


def check_connect_support(what: str, client_version: str | None = None) -> None:
    """Raise when ``what`` (e.g. "fit") runs on Spark Connect with a pyspark client before 4.0."""
    if not is_remote():
        return
    if client_version is None:
        from pyspark import __version__ as client_version
    if _major_minor(client_version) < MIN_CONNECT_VERSION:
        need = ".".join(map(str, MIN_CONNECT_VERSION))
        raise SparkConnectUnsupportedError(
            f"skol_spark {what} on Spark Connect needs pyspark >= {need} on the client. "
            f"Received: pyspark {client_version}, whose Connect DataFrame has no toArrow() and "
            "whose Spark ML persistence needs a SparkContext. Upgrade pyspark, or use a classic "
            "(single-user) cluster."
        )
