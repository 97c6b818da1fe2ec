"""The labeling UDF and the Spark plan around it (driver side of ``transform``).

:func:`label_dataframe` groups the rows by document on the executors
(``repartition`` + ``sortWithinPartitions``), runs an iterator UDF over
``struct(doc, position, features)`` and adds the three output columns. The
UDF is an ``arrow_udf`` on Spark 4.1+ and a ``pandas_udf`` before; either way
its body is :func:`skol_spark.transform.predict.label_rows`, and what it ships is a
:class:`~skol_spark.transform.predict.PredictSpec`. The function Spark pickles
is made by :func:`skol_spark.compat.executors.on_executors`: it imports this
module on the executor, or fails naming the executors' Python and the fixes.
This module imports no stage class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow as pa
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from skol_spark.compat.shims import struct_array_to_table, table_to_struct_array
from skol_spark.transform.predict import PredictSpec

__all__ = ["USE_ARROW_UDF", "label_dataframe"]

_OUTPUT = "__skol_spark_output"
# Spark 4.1+ has Arrow-native UDFs; older versions go through pandas.
USE_ARROW_UDF = hasattr(F, "arrow_udf")


def _col(name: str) -> Any:
    return F.col(f"`{name}`")


def label_dataframe(
    dataset: DataFrame, spec: PredictSpec, outputs: tuple[str, str, str]
) -> DataFrame:
    """``dataset`` with ``outputs`` (prediction, probability, rawPrediction) added to every row.

    With ``spec.handle_invalid == "skip"`` rows the model cannot use are left
    out; otherwise every input row comes out once.
    """
    doc, position, features = spec.doc_id_col, spec.position_col, spec.features_col
    feature_input = _col(features)
    if not spec.vector_output and isinstance(dataset.schema[features].dataType, VectorUDT):
        from skol_spark.compat.shims import vector_to_array

        feature_input = vector_to_array(feature_input, "float32")
    labelled = group_documents(dataset, doc, position).withColumn(
        _OUTPUT, _labeling_udf(spec)(F.struct(_col(doc), _col(position), feature_input))
    )
    if spec.handle_invalid == "skip":  # invalid rows came back with a null output
        labelled = labelled.where(F.col(f"{_OUTPUT}.prediction").isNotNull())
    probability = F.col(f"{_OUTPUT}.probability")
    raw = F.col(f"{_OUTPUT}.rawPrediction")
    if not spec.vector_output:
        from skol_spark.compat.shims import array_to_vector

        probability, raw = array_to_vector(probability), array_to_vector(raw)
    return labelled.select(
        *[_col(c) for c in dataset.columns],
        F.col(f"{_OUTPUT}.prediction").alias(outputs[0]),
        probability.alias(outputs[1]),
        raw.alias(outputs[2]),
    )


def group_documents(dataset: DataFrame, doc: str, position: str) -> DataFrame:
    """``dataset`` with each document's rows in one partition, in position order: what labeling reads."""
    return dataset.repartition(_col(doc)).sortWithinPartitions(_col(doc), _col(position))


def output_type(vector_output: bool) -> T.StructType:
    """The labeling UDF's return type: prediction, then probability and rawPrediction as Vectors
    (``vector_output``, the Arrow UDF) or as arrays of doubles (the pandas UDF)."""
    scores = VectorUDT() if vector_output else T.ArrayType(T.DoubleType())
    return T.StructType(
        [
            T.StructField("prediction", T.DoubleType()),
            T.StructField("probability", scores),
            T.StructField("rawPrediction", scores),
        ]
    )


def _labeling_udf(spec: PredictSpec) -> Any:
    """The per-partition labeling UDF; what it ships is ``spec`` and the entry point's name.

    The function Spark pickles comes from :func:`skol_spark.compat.executors.on_executors`,
    so an executor that cannot import skol_spark fails with a message saying so.
    """
    from skol_spark.compat.executors import on_executors

    return_type = output_type(spec.vector_output)
    if spec.vector_output:
        types = (Iterator[pa.Array], Iterator[pa.Array])
        function = on_executors(__name__, "label_arrow_batches", spec, types=types)
        return F.arrow_udf(function, return_type).asNondeterministic()
    types = (Iterator[pd.DataFrame], Iterator[pd.DataFrame])
    function = on_executors(__name__, "label_pandas_frames", spec, types=types)
    return F.pandas_udf(function, return_type).asNondeterministic()


def label_arrow_batches(batches: Iterator[pa.Array], spec: PredictSpec) -> Iterator[pa.Array]:
    """Executor side of the Arrow UDF: the rows' outputs, batch by batch."""
    from skol_spark.transform.predict import label_rows

    yield from label_rows(_with_task_resources(spec), batches)


def label_pandas_frames(frames: Iterator[pd.DataFrame], spec: PredictSpec) -> Iterator[pd.DataFrame]:
    """Executor side of the pandas UDF (Spark < 4.1): frames in, frames out, through Arrow."""
    from skol_spark.transform.predict import label_rows

    arrays = (
        table_to_struct_array(pa.Table.from_pandas(frame, preserve_index=False))
        for frame in frames
    )
    for out in label_rows(_with_task_resources(spec), arrays):
        yield struct_array_to_table(out).to_pandas()


def _with_task_resources(spec: PredictSpec) -> PredictSpec:
    """``spec`` with the cores and GPU addresses Spark gave the running task."""
    from pyspark import TaskContext

    from skol_spark.core.devices import gpu_addresses

    context = TaskContext.get()
    if context is None:
        return dataclasses.replace(spec, cpus=0, gpu_addresses=())
    return dataclasses.replace(
        spec, cpus=context.cpus(), gpu_addresses=tuple(gpu_addresses(context.resources()))
    )
