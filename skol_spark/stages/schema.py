"""The input schema a stage needs, checked before any Spark job runs."""

from __future__ import annotations

from typing import Any

from pyspark.ml.linalg import VectorUDT
from pyspark.sql import types as T

from skol_spark.errors import StreamingInputError

__all__ = ["check_batch_input", "check_input_schema", "check_output_columns"]


def _fail_column(name: str, what: str, received: Any, fix: str) -> None:
    raise ValueError(f"Column {name!r} {what}. Received: {received}. {fix}")


def check_batch_input(dataset: Any, fitting: bool) -> None:
    """Refuse a streaming DataFrame: fit and transform need each document whole, sorted by position."""
    if not dataset.isStreaming:
        return
    if fitting:
        raise StreamingInputError(
            "BiLSTMClassifier.fit needs a batch DataFrame. Received: a streaming DataFrame "
            "(isStreaming is True). Training reads every document whole: train on a batch read of "
            "the same source (spark.read instead of spark.readStream)."
        )
    raise StreamingInputError(
        "BiLSTMClassificationModel.transform needs a batch DataFrame. Received: a streaming DataFrame "
        "(isStreaming is True); labeling sorts each document's rows by position, which Structured "
        "Streaming cannot do. Label each micro-batch in writeStream.foreachBatch, e.g. "
        "foreachBatch(lambda batch, batch_id: model.transform(batch).write.mode('append').saveAsTable(...)); "
        "a document must arrive whole in one micro-batch (for example, whole documents per file). "
        "For documents split across micro-batches use skol_spark.stages.streaming.CompleteDocumentsLabeler."
    )


def check_input_schema(params: Any, schema: T.StructType, with_label: bool) -> None:
    """The document, position and features columns (and the label, for fit) exist and have usable types."""
    fields = {f.name: f.dataType for f in schema.fields}
    required = [params.getFeaturesCol(), params.getDocIdCol(), params.getPositionCol()]
    if with_label:
        required.append(params.getLabelCol())
    for name in required:
        if name not in fields:
            raise ValueError(
                f"Column {name!r} is missing. Received columns: {sorted(fields)}. "
                "Add it or point the matching *Col Param at another column."
            )
    features = fields[params.getFeaturesCol()]
    if not (
        isinstance(features, VectorUDT)
        or (
            isinstance(features, T.ArrayType)
            and isinstance(features.elementType, (T.FloatType, T.DoubleType))
        )
    ):
        _fail_column(
            params.getFeaturesCol(),
            "must hold a Vector or array<float|double> per row",
            features.simpleString(),
            "Assemble features with VectorAssembler, HashingTF or array_to_vector.",
        )
    doc = fields[params.getDocIdCol()]
    if not isinstance(doc, (T.StringType, T.IntegralType)):
        _fail_column(
            params.getDocIdCol(), "must hold a string or integer document id", doc.simpleString(), "Cast it to string."
        )
    position = fields[params.getPositionCol()]
    if not isinstance(position, T.NumericType):
        _fail_column(
            params.getPositionCol(), "must hold a numeric position", position.simpleString(),
            "Cast it to int or double.",
        )
    if with_label and not isinstance(fields[params.getLabelCol()], T.NumericType):
        _fail_column(
            params.getLabelCol(),
            "must hold a numeric class index 0..K-1",
            fields[params.getLabelCol()].simpleString(),
            "Index string labels with StringIndexer.",
        )


def check_output_columns(columns: list[str], outputs: list[str]) -> None:
    """The output columns must not exist in the input."""
    clash = [c for c in outputs if c in columns]
    if clash:
        raise ValueError(
            f"Output column(s) {clash} already exist in the input. Received columns: "
            f"{columns}. Drop them or set predictionCol/probabilityCol/rawPredictionCol."
        )
