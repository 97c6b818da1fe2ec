"""Shims for the older stacks skol_spark supports (Spark 3.5, pandas 1.5, pyarrow 14).

Each function does what the newest library does in one call and falls back to
the older library's way; callers never test versions themselves.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

__all__ = [
    "array_to_vector",
    "arrow_to_spark",
    "connect_client",
    "struct_array_to_table",
    "table_to_struct_array",
    "vector_to_array",
]

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
    """A DataFrame from an Arrow table (Spark 4 takes it directly; 3.5 as Python rows)."""
    try:
        return spark.createDataFrame(table)
    except (TypeError, ValueError):  # Spark 3.5 has no Arrow-table input.
        return arrow_to_spark_via_rows(spark, table)


def arrow_to_spark_via_rows(spark: Any, table: pa.Table) -> Any:
    """Spark 3.5's way: Python rows with the table's schema.

    Without Arrow conversion on, Spark 3.5 infers no type for a pandas column
    of numpy arrays, and pandas turns an int column with nulls into floats,
    so the rows are Python values and the schema is the table's.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    rows = list(zip(*(column.to_pylist() for column in table.columns)))
    return spark.createDataFrame(rows, schema=from_arrow_schema(table.schema))


def vector_to_array(column: Any, dtype: str = "float64") -> Any:
    """``pyspark.ml.functions.vector_to_array`` with null for a null vector (Spark 3.5 raises)."""
    from pyspark.ml.functions import vector_to_array as to_array
    from pyspark.sql import functions as F

    return F.when(column.isNotNull(), to_array(column, dtype))


def array_to_vector(column: Any) -> Any:
    """``pyspark.ml.functions.array_to_vector`` with null for a null array (Spark 3.5 raises)."""
    from pyspark.ml.functions import array_to_vector as to_vector
    from pyspark.sql import functions as F

    return F.when(column.isNotNull(), to_vector(column))
