"""The input schema a stage needs, checked before any Spark job runs."""

from __future__ import annotations

from typing import Any

from pyspark.ml.linalg import VectorUDT
from pyspark.sql import types as T

__all__ = ["check_input_schema", "check_output_columns"]


def _fail_column(name: str, what: str, received: Any, fix: str) -> None:
    raise ValueError(f"Column {name!r} {what}. Received: {received}. {fix}")


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
