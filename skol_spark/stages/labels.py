"""Label stages: :class:`MergeLabels`, a Transformer that folds class names into fewer classes.

A Pipeline that starts with it saves the label mapping with the model, so
evaluating a saved model applies it again without being told (SKOL's three
classes: Nomenclature and Description kept, every other label
Misc-exposition). Rows without the label column pass unchanged, so the same
PipelineModel also labels unlabelled rows.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.sql import DataFrame

from skol_spark.stages.io import ParamsPersistence, set_params

__all__ = ["MergeLabels"]


class MergeLabels(Transformer, HasInputCol, HasOutputCol, ParamsPersistence):
    """Copy ``inputCol`` to ``outputCol``, replacing every label not in ``keep`` by ``other``.

    Null labels stay null. Without ``inputCol`` in the input, the input is returned unchanged.

    Parameters
    ----------
    inputCol, outputCol : str
        The label column (class names) and where the merged labels go (may be the same).
    keep : list of str
        Labels kept as they are.
    other : str
        What every other label becomes.

    Examples
    --------
    >>> stage = MergeLabels(inputCol="label", outputCol="label3", keep=["Nomenclature", "Description"],
    ...                     other="Misc-exposition")
    >>> stage.transform(df).select("label", "label3")        # doctest: +SKIP
    """

    _stored_as_params = True  # a PipelineModel in Redis records it as its Params (stages.pipeline_store)

    keep: Param[list[str]] = Param(
        Params._dummy(), "keep", "labels kept as they are.", typeConverter=TypeConverters.toListString
    )
    other: Param[str] = Param(
        Params._dummy(), "other", "what every other (non-null) label becomes.", typeConverter=TypeConverters.toString
    )

    def __init__(self, **params: Any):
        super().__init__()
        set_params(self, params)

    def getKeep(self) -> list[str]:
        return self.getOrDefault(self.keep)

    def getOther(self) -> str:
        return self.getOrDefault(self.other)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.sql import functions as F

        for param in (self.inputCol, self.outputCol, self.keep, self.other):
            if not self.isDefined(param):
                raise ValueError(f"MergeLabels needs {param.name}; set it (e.g. MergeLabels({param.name}=...)).")
        if self.getInputCol() not in dataset.columns:
            return dataset
        label = F.col(f"`{self.getInputCol()}`")
        merged = (
            F.when(label.isNull(), F.lit(None).cast("string"))
            .when(label.isin(list(self.getKeep())), label.cast("string"))
            .otherwise(F.lit(self.getOther()))
        )
        return dataset.withColumn(self.getOutputCol(), merged)
