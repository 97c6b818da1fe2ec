"""Combining classifiers: :class:`ProbabilityBlend`, log-linear pooling of class probabilities.

Two (or more) models that label the same rows, each writing a probability
Vector over the same classes in the same order, are combined per row as

    p(c) ∝ bias(c) · Π_i p_i(c) ^ w_i

(a weighted geometric mean, renormalized), and the class with the largest
``p`` is the prediction. ``bias`` is a prior correction fitted from the label
counts: ``bias(c) = (n_max / n_c) ^ priorCorrection``. At 0 it is 1 for every
class; at 1 it divides by the training prior; in between it moves the decision
partway toward the rare classes. Fitting counts the labels and nothing else,
and ``transform`` is Spark SQL (no Python UDF), so both run under Spark Connect.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasLabelCol, HasPredictionCol, HasProbabilityCol, HasRawPredictionCol
from pyspark.sql import DataFrame

from skol_spark.stages.io import ParamsPersistence, fitted_model, set_params

__all__ = ["ProbabilityBlend", "ProbabilityBlendModel", "prior_bias", "blend_probabilities", "check_class_indices"]

# Probabilities are floored here before their logarithm: a model that is certain (p = 0 for a class)
# vetoes that class without making every score -inf.
_FLOOR = 1e-9


def check_class_indices(values: Any, name: str) -> None:
    """Refuse label values that are not class indices 0, 1, ... (a StringIndexer's output)."""
    if any(isinstance(v, (str, bytes, bool)) or not isinstance(v, (int, float)) or v < 0 or float(v) != int(v)
           for v in values):
        shown = sorted(values, key=str)[:10]
        raise ValueError(f"Expected {name} labels to be class indices 0, 1, ... Received: {shown}")


def prior_bias(counts: list[int], correction: float) -> list[float]:
    """``(n_max / n_c) ** correction`` per class; a class never seen gets 1."""
    most = max(counts) if counts else 0
    return [float((most / n) ** correction) if n > 0 else 1.0 for n in counts]


def blend_probabilities(probabilities: list[Any], weights: list[float], bias: list[float]) -> Any:
    """The blend of ``(rows, classes)`` arrays in numpy, the same rule :class:`ProbabilityBlendModel`
    runs in Spark SQL (for offline checks and benchmarks)."""
    import numpy as np

    scores = sum(w * np.log(np.maximum(np.asarray(p, dtype=np.float64), _FLOOR))
                 for w, p in zip(weights, probabilities))
    scores = scores + np.log(np.asarray(bias, dtype=np.float64))
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    return scores / scores.sum(axis=1, keepdims=True)


def _weighted_log(weight: float) -> Any:
    """``(score, p) -> score + weight * log(max(p, floor))`` for ``zip_with``."""
    from pyspark.sql import functions as F

    return lambda score, p: score + F.lit(weight) * F.log(F.greatest(p, F.lit(_FLOOR)))


class _BlendParams(HasLabelCol, HasPredictionCol, HasProbabilityCol, HasRawPredictionCol):
    probabilityCols: Param[list[str]] = Param(
        Params._dummy(), "probabilityCols",
        "the probability Vector columns combined, each over the same classes in the same order.",
        typeConverter=TypeConverters.toListString,
    )
    weights: Param[list[float]] = Param(
        Params._dummy(), "weights",
        "the exponent of each of probabilityCols in the weighted geometric mean (>= 0, not all 0).",
        typeConverter=TypeConverters.toListFloat,
    )
    priorCorrection: Param[float] = Param(
        Params._dummy(), "priorCorrection",
        "bias(c) = (n_max / n_c) ** priorCorrection from the training label counts (0: none, 1: full).",
        typeConverter=TypeConverters.toFloat,
    )

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._setDefault(
            labelCol="label", predictionCol="prediction", probabilityCol="probability",
            rawPredictionCol="rawPrediction", weights=[0.5, 0.5], priorCorrection=0.0,
        )

    def getProbabilityCols(self) -> list[str]:
        return self.getOrDefault(self.probabilityCols)

    def getWeights(self) -> list[float]:
        return self.getOrDefault(self.weights)

    def getPriorCorrection(self) -> float:
        return self.getOrDefault(self.priorCorrection)

    def _check_params(self, name: str) -> None:
        cols = self.getProbabilityCols() if self.isDefined(self.probabilityCols) else None
        if not cols or len(cols) < 2:
            raise ValueError(f"{name} needs probabilityCols, two or more probability columns. Received: {cols}")
        weights = self.getWeights()
        if len(weights) != len(cols) or any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(
                f"Expected {name} weights to be {len(cols)} finite numbers >= 0, one per probability column, "
                f"not all 0. Received: {weights}"
            )
        correction = self.getPriorCorrection()
        if not math.isfinite(correction) or correction < 0:
            raise ValueError(f"Expected {name} priorCorrection to be a finite number >= 0. Received: {correction}")

    def _check_columns(self, dataset: DataFrame, name: str) -> None:
        missing = [c for c in self.getProbabilityCols() if c not in dataset.columns]
        if missing:
            raise ValueError(f"{name}: the input has no column(s) {missing}. It has: {dataset.columns}")


class ProbabilityBlend(Estimator, _BlendParams, ParamsPersistence):
    """Combine the probability columns of several classifiers of the same rows (see the module doc).

    ``fit`` counts the labels of ``labelCol`` (class indices 0..K-1) to set the
    prior correction; the model adds ``predictionCol`` (double),
    ``probabilityCol`` and ``rawPredictionCol`` (log-probabilities).

    Examples
    --------
    >>> blend = ProbabilityBlend(probabilityCols=["bilstmProbability", "crfProbability"],
    ...                          weights=[0.4, 0.6], priorCorrection=0.6, labelCol="label_index")
    >>> blend.fit(labelled).transform(scored).select("prediction", "probability")  # doctest: +SKIP
    """

    def __init__(self, **params: Any):
        super().__init__()
        set_params(self, params)
        if params:  # a reader builds an empty stage, then sets its Params
            self._check_params("ProbabilityBlend")

    def _fit(self, dataset: DataFrame) -> ProbabilityBlendModel:
        from pyspark.sql import functions as F

        self._check_params("ProbabilityBlend")
        label = self.getLabelCol()
        if label not in dataset.columns:
            raise ValueError(f"ProbabilityBlend: the input has no label column {label!r}. It has: {dataset.columns}")
        rows = dataset.where(F.col(f"`{label}`").isNotNull()).groupBy(F.col(f"`{label}`").alias("c")).count().collect()
        if not rows:
            raise ValueError(f"ProbabilityBlend needs labelled rows to fit; {label!r} has none.")
        indices = [row["c"] for row in rows]
        check_class_indices(indices, "ProbabilityBlend")
        names = [str(v) for v in dataset.schema[label].metadata.get("ml_attr", {}).get("vals", [])]
        counts = [0] * max(int(max(indices)) + 1, len(names))
        for row in rows:
            counts[int(row["c"])] = int(row["count"])
        names += [str(i) for i in range(len(names), len(counts))]
        return fitted_model(self, ProbabilityBlendModel, classBias=prior_bias(counts, self.getPriorCorrection()),
                            labels=names)


class ProbabilityBlendModel(Model, _BlendParams, ParamsPersistence):
    """A fitted :class:`ProbabilityBlend`: the weights, the per-class bias and the class names as Params."""

    _stored_as_params = True  # a PipelineModel in Redis records it as its Params (stages.pipeline_store)

    classBias: Param[list[float]] = Param(
        Params._dummy(), "classBias", "the prior correction per class, in class-index order.",
        typeConverter=TypeConverters.toListFloat,
    )

    labels: Param[list[str]] = Param(
        Params._dummy(), "labels",
        "class names by index (the label column's ML attributes, a StringIndexer's labels; else the indices).",
        typeConverter=TypeConverters.toListString,
    )

    def getClassBias(self) -> list[float]:
        return self.getOrDefault(self.classBias)

    @property
    def labels_(self) -> list[str]:
        """Class names by index, as the BiLSTM model's ``labels_``."""
        return list(self.getOrDefault(self.labels))

    @property
    def numClasses(self) -> int:
        return len(self.getClassBias())

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.sql import functions as F

        from skol_spark.compat.shims import array_to_vector, vector_to_array

        self._check_params("ProbabilityBlendModel")
        self._check_columns(dataset, "ProbabilityBlendModel")
        k, cols = self.numClasses, self.getProbabilityCols()
        arrays = [vector_to_array(F.col(f"`{c}`")) for c in cols]
        scores = F.array(*[F.lit(math.log(b)) for b in self.getClassBias()])
        for weight, array in zip(self.getWeights(), arrays):
            scores = F.zip_with(scores, array, _weighted_log(weight))
        sizes = F.array(*[F.size(a) for a in arrays])
        missing = functools.reduce(lambda a, b: a | b, [F.col(f"`{c}`").isNull() for c in cols])
        checked = F.when(missing, F.lit(None).cast("array<double>")).when(
            F.forall(sizes, lambda n: n == k), scores
        ).otherwise(F.raise_error(F.concat(
            F.lit(f"ProbabilityBlendModel expects {k} classes in each of {cols}; a row has sizes "),
            F.array_join(sizes.cast("array<string>"), ", "), F.lit(".")
        )).cast("array<double>"))
        top = "__blend_top"
        log_z = F.log(F.aggregate(F.transform(F.col(top + "_s"), lambda s: F.exp(s - F.array_max(F.col(top + "_s")))),
                                  F.lit(0.0), lambda acc, x: acc + x)) + F.array_max(F.col(top + "_s"))
        log_p = F.transform(F.col(top + "_s"), lambda s: s - F.col(top + "_z"))
        out = (
            dataset.withColumn(top + "_s", checked)
            .withColumn(top + "_z", log_z)
            .withColumn(self.getRawPredictionCol(), array_to_vector(log_p))
            .withColumn(self.getProbabilityCol(), array_to_vector(F.transform(log_p, F.exp)))
            .withColumn(self.getPredictionCol(),
                        (F.array_position(F.col(top + "_s"), F.array_max(F.col(top + "_s"))) - 1).cast("double"))
        )
        return out.drop(top + "_s", top + "_z")
