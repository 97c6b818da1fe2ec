"""Shims for the older stacks skol_spark supports (Spark 3.5, pandas 1.5, pyarrow 14).

Each function does what the newest library does in one call and falls back to
the older library's way; callers never test versions themselves.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

__all__ = ["arrow_to_spark", "connect_client", "struct_array_to_table", "table_to_struct_array"]

# pyarrow 15 added Table.to_struct_array and Table.from_struct_array.
_TABLE_STRUCT_ARRAYS = hasattr(pa.Table, "from_struct_array")


def table_to_struct_array(table: pa.Table) -> pa.StructArray:
    """One struct array with a field per column (``Table.to_struct_array`` is pyarrow 15+)."""
    if _TABLE_STRUCT_ARRAYS:
        return table.to_struct_array().combine_chunks()
    columns = [column.combine_chunks() for column in table.columns]
    return pa.StructArray.from_arrays(columns, fields=list(table.schema))


def struct_array_to_table(array: pa.StructArray) -> pa.Table:
    """A table with a column per struct field (``Table.from_struct_array`` is pyarrow 15+)."""
    if _TABLE_STRUCT_ARRAYS:
        return pa.Table.from_struct_array(array)
    return pa.Table.from_arrays(array.flatten(), schema=pa.schema(list(array.type)))


def connect_client(session: Any) -> Any:
    """A Spark Connect session's client, or None (classic 3.5 raises on ``.client``)."""
    try:
        return getattr(session, "client", None)
    except RuntimeError:
        return None


def arrow_to_spark(spark: Any, table: pa.Table) -> Any:
    """A DataFrame from an Arrow table (Spark 4 takes it directly; 3.5 through pandas)."""
    try:
        return spark.createDataFrame(table)
    except (TypeError, ValueError):  # Spark 3.5 has no Arrow-table input.
        return arrow_to_spark_via_pandas(spark, table)


def arrow_to_spark_via_pandas(spark: Any, table: pa.Table) -> Any:
    """Spark 3.5's way: pandas, list cells as Python lists, and the table's schema.

    Without Arrow conversion on, Spark 3.5 infers no type for a pandas column
    of numpy arrays, so the schema comes from the table's.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    frame = table.to_pandas()
    for name, field in zip(table.column_names, table.schema):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            frame[name] = [None if v is None else v.tolist() for v in frame[name]]
    return spark.createDataFrame(frame, schema=from_arrow_schema(table.schema))
