"""Spark DataFrames to Arrow record batches on the driver, as they arrive.

``fit`` reads its training rows through :func:`arrow_batches`, which hands
over one record batch at a time so the caller can convert and drop it:

* classic Spark: batches read straight off Spark's Arrow collect socket
  (``collectAsArrowToPython``, a private API, used only on the pyspark
  versions listed in :data:`PRIVATE_STREAM_VERSIONS`, the ones CI tests);
* Spark Connect: the client's batch iterator (also private, same versions);
* anything else: the public ``DataFrame.toArrow()`` (pyspark 4), or
  ``toPandas()`` through Arrow (pyspark 3.5), which collect the whole table first.

``public_only=True`` forces the public path; CI runs it on every version.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from skol_spark.compat.shims import connect_client

__all__ = ["PRIVATE_STREAM_VERSIONS", "arrow_batches"]

logger = logging.getLogger("skol_spark")

# (first, last) pyspark major.minor whose private collect APIs this module knows.
PRIVATE_STREAM_VERSIONS = ((4, 0), (4, 3))


def _pyspark_version() -> tuple[int, int]:
    from pyspark import __version__

    match = re.match(r"(\d+)\.(\d+)", __version__)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _private_streams_known() -> bool:
    first, last = PRIVATE_STREAM_VERSIONS
    return first <= _pyspark_version() <= last


def arrow_batches(df: Any, public_only: bool = False) -> Iterator[pa.RecordBatch]:
    """Record batches of ``df`` as they arrive on the driver, in no particular order.

    On the pyspark versions of :data:`PRIVATE_STREAM_VERSIONS`, classic Spark
    and Spark Connect stream batch by batch, so the caller can convert and
    drop each one; otherwise (or with ``public_only``) the public API collects
    the whole table first.
    """
    stream = None
    if not public_only:
        if _private_streams_known():
            stream = _classic_stream(df) or _connect_stream(df)
        if stream is None:
            _warn_whole_table()
    if stream is None:
        yield from _whole_table(df).to_batches()
        return
    yield from stream


_warned = False


def _warn_whole_table() -> None:
    """One WARNING per process that training rows are collected as one table, not streamed."""
    global _warned
    if _warned:
        return
    _warned = True
    from pyspark import __version__

    first, last = (".".join(map(str, v)) for v in PRIVATE_STREAM_VERSIONS)
    logger.warning(
        "skol_spark: streaming the training rows needs pyspark %s to %s's private collect API; "
        "pyspark %s here, so fit collects them as one Arrow table first (the driver briefly holds "
        "them twice).", first, last, __version__,
    )


def _whole_table(df: Any) -> pa.Table:
    """The whole DataFrame as one Arrow table, through the public API where there is one."""
    if hasattr(df, "toArrow"):  # pyspark >= 4.0, classic and Connect
        return df.toArrow()
    # pyspark 3.5 has no public Arrow collect; this is what its toPandas() uses.
    return pa.Table.from_batches(df._collect_as_arrow())


def _classic_stream(df: Any) -> Iterator[pa.RecordBatch] | None:
    """Batches read straight off Spark's Arrow collect socket, unordered."""
    jdf = getattr(df, "_jdf", None)
    if jdf is None or not hasattr(df, "toArrow"):  # Connect, or Spark < 4
        return None
    try:
        from pyspark.errors.exceptions.captured import unwrap_spark_exception
        from pyspark.serializers import UTF8Deserializer, read_int
        from pyspark.sql.pandas.serializers import ArrowStreamSerializer
        from pyspark.util import _load_from_socket
    except ImportError:
        return None

    class _Unordered(ArrowStreamSerializer):
        def load_stream(self, stream):  # type: ignore[override]
            yield from super().load_stream(stream)
            count = read_int(stream)
            if count == -1:
                raise RuntimeError(
                    f"Spark failed while sending training rows: {UTF8Deserializer().loads(stream)}"
                )
            for _ in range(count):  # the batch order, which we do not need
                read_int(stream)

    def batches() -> Iterator[pa.RecordBatch]:
        port, secret, server = jdf.collectAsArrowToPython()
        try:
            loaded = _load_from_socket((port, secret), _Unordered())
            if hasattr(loaded, "__enter__"):  # pyspark 4.1+: a context manager closing the socket
                with loaded as stream:
                    yield from stream
            else:  # pyspark 4.0: the batch generator itself
                yield from loaded
        finally:
            with unwrap_spark_exception():
                server.getResult()

    return batches()


def _connect_stream(df: Any) -> Iterator[pa.RecordBatch] | None:
    """Batches of a Spark Connect DataFrame as the server sends them."""
    session, plan = getattr(df, "_session", None), getattr(df, "_plan", None)
    client = connect_client(session)
    if plan is None or not hasattr(client, "to_table_as_iterator"):
        return None

    def batches() -> Iterator[pa.RecordBatch]:
        query = plan.to_proto(client)
        for item in client.to_table_as_iterator(query, plan.observations):
            if isinstance(item, pa.Table):
                yield from item.to_batches()

    return batches()
