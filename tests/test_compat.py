"""The version shims of skol_spark.compat.shims, both branches on whatever stack runs them."""

import numpy as np
import pyarrow as pa
import pytest

from skol_spark.compat import shims as compat

pytestmark = pytest.mark.core


def _table():
    return pa.table(
        {
            "doc": pa.array(["a", "a", None, "b"]),
            "position": pa.array([0, 1, 2, None], pa.int32()),
            "features": pa.array([[1.0, 2.0], None, [], [3.5]], pa.list_(pa.float32())),
        }
    )


@pytest.fixture(params=[True, False], ids=["pyarrow15+", "pyarrow14"])
def struct_array_branch(request, monkeypatch):
    """Each branch of compat's struct-array shims: pyarrow's own methods (where it has them), then the fallback."""
    native = request.param
    if native and not compat._TABLE_STRUCT_ARRAYS:
        pytest.skip("this pyarrow has no Table.to_struct_array / Table.from_struct_array")
    monkeypatch.setattr(compat, "_TABLE_STRUCT_ARRAYS", native)
    return native


def test_struct_array_round_trip(struct_array_branch):
    table = _table()
    array = compat.table_to_struct_array(table)
    assert isinstance(array, pa.StructArray) and array.type == pa.struct(list(table.schema))
    assert array.to_pylist() == table.to_pylist()
    assert compat.struct_array_to_table(array).equals(table)


def test_struct_array_to_table_makes_null_rows_null_fields(struct_array_branch):
    """A null output row (handleInvalid='keep') is null in every column either way."""
    table = _table()
    columns = [column.combine_chunks() for column in table.columns]
    masked = pa.StructArray.from_arrays(columns, fields=list(table.schema), mask=pa.array([False, True, False, False]))
    rows = compat.struct_array_to_table(masked).to_pylist()
    assert rows[1] == {"doc": None, "position": None, "features": None}
    assert rows[0] == table.to_pylist()[0]


def test_connect_client_is_none_for_classic_sessions(spark, spark_connect):
    class Classic35:  # pyspark 3.5's classic SparkSession.client raises RuntimeError
        @property
        def client(self):
            raise RuntimeError("Only supported with Spark Connect; however, the current Spark session does not use Spark Connect.")

    assert compat.connect_client(Classic35()) is None
    assert (compat.connect_client(spark) is not None) == spark_connect


def test_arrow_to_spark_via_rows_keeps_types_nulls_and_lists(spark):
    table = _table()
    df = compat.arrow_to_spark_via_rows(spark, table)
    assert df.schema.simpleString() == "struct<doc:string,position:int,features:array<float>>"
    assert [r.asDict() for r in df.collect()] == table.to_pylist()
    assert np.isclose(compat.arrow_to_spark(spark, table).where("doc = 'b'").first().features[0], 3.5)


def test_vector_array_conversions_keep_nulls_null(spark):
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField("id", T.IntegerType()), T.StructField("v", VectorUDT())])
    df = spark.createDataFrame([(0, Vectors.dense([1.0, 2.0])), (1, None)], schema)
    arrays = df.select("id", compat.vector_to_array(df["v"], "float32").alias("a"))
    rows = arrays.select("id", "a", compat.array_to_vector(arrays["a"]).alias("v")).orderBy("id").collect()
    assert rows[0].a == [1.0, 2.0] and list(rows[0].v) == [1.0, 2.0]
    assert rows[1].a is None and rows[1].v is None
