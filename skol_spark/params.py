"""Params shared by :class:`BiLSTMClassifier` and :class:`BiLSTMClassificationModel`.

Each Param is declared once here, with its doc string, a type converter that
rejects bad values when they are set, and one default.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (
    HasFeaturesCol,
    HasLabelCol,
    HasPredictionCol,
    HasProbabilityCol,
    HasRawPredictionCol,
    HasSeed,
)

from skol_spark.class_weights import WEIGHT_STRATEGIES
from skol_spark.invalid import HANDLE_INVALID
from skol_spark.thresholds import check_thresholds

__all__ = ["OUTPUT_LAYERS", "WEIGHT_STRATEGIES", "_BiLSTMParams", "_BiLSTMModelParams", "_HasInitialModel"]

OUTPUT_LAYERS = ("softmax", "crf")


def _checked(
    name: str, convert: Callable[[Any], Any], check: Callable[[Any], bool], expected: str
) -> Callable[[Any], Any]:
    """A type converter for Param ``name`` that also checks the value's range."""

    def converter(value: Any) -> Any:
        converted = convert(value)
        if not check(converted):
            raise ValueError(f"Expected {name} to be {expected}. Received: {name}={value!r}")
        return converted

    return converter


def _one_of(name: str, choices: tuple[str, ...]) -> Callable[[Any], str]:
    """A converter accepting one of ``choices`` (strings), naming them quoted when it refuses."""
    return _checked(
        name, TypeConverters.toString, lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices)
    )


def _positive_int(name: str) -> Callable[[Any], int]:
    return _checked(name, TypeConverters.toInt, lambda v: v > 0, "a positive integer")


def _to_class_weights(value: Any) -> dict[str, float]:
    """Explicit class weights: a dict keyed by label name or index, or a list by index."""
    if isinstance(value, (list, tuple)):
        value = dict(enumerate(value))
    if not isinstance(value, dict):
        raise TypeError(
            "Expected classWeights as a dict {label name or index: weight} or a list "
            f"of weights by label index. Received: {type(value).__name__}"
        )
    weights = {}
    for key, weight in value.items():
        weight = float(weight)
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(
                "Expected classWeights values to be finite and >= 0. "
                f"Received: {key!r}: {weight!r}"
            )
        weights[str(key)] = weight
    return weights


class _BiLSTMParams(
    HasFeaturesCol,
    HasLabelCol,
    HasPredictionCol,
    HasProbabilityCol,
    HasRawPredictionCol,
    HasSeed,
):
    """Params of both the estimator and the model."""

    docIdCol: "Param[str]" = Param(
        Params._dummy(),
        "docIdCol",
        "document id column: rows with the same id form one sequence.",
        typeConverter=TypeConverters.toString,
    )
    positionCol: "Param[str]" = Param(
        Params._dummy(),
        "positionCol",
        "position column: orders the rows of a document (line or paragraph number).",
        typeConverter=TypeConverters.toString,
    )
    labels: "Param[list[str]]" = Param(
        Params._dummy(),
        "labels",
        "class names by label index; taken from the label column's ML attributes "
        "(StringIndexer) when not set.",
        typeConverter=TypeConverters.toListString,
    )
    windowSize: "Param[int]" = Param(
        Params._dummy(),
        "windowSize",
        "positions per window the network sees (> 0).",
        typeConverter=_positive_int("windowSize"),
    )
    windowStride: "Param[int]" = Param(
        Params._dummy(),
        "windowStride",
        "step between prediction windows (0 < stride <= windowSize; default windowSize). "
        "Overlapping windows average their probabilities.",
        typeConverter=_positive_int("windowStride"),
    )
    hiddenSize: "Param[int]" = Param(
        Params._dummy(),
        "hiddenSize",
        "LSTM units per direction (> 0).",
        typeConverter=_positive_int("hiddenSize"),
    )
    embeddingSize: "Param[int]" = Param(
        Params._dummy(),
        "embeddingSize",
        "width E of the linear projection each position's features go through before the "
        "BiLSTM (>= 0; 0 feeds the features to the BiLSTM directly). Each row is projected "
        "once, sparse vectors with a sparse product, so fit and transform cost grow with the "
        "non-zeros of a row, not the vector length.",
        typeConverter=_checked(
            "embeddingSize", TypeConverters.toInt, lambda v: v >= 0, "a non-negative integer"),
    )
    ensembleSize: "Param[int]" = Param(
        Params._dummy(),
        "ensembleSize",
        "number of networks trained one after the other (seeds seed, seed + 1, ...) on the same "
        "rows and averaged into one network (>= 1): lower variance for that many times the fit "
        "and transform cost. Needs outputLayer='softmax', embeddingSize > 0 and numWorkers=1.",
        typeConverter=_positive_int("ensembleSize"),
    )
    numLayers: "Param[int]" = Param(
        Params._dummy(),
        "numLayers",
        "number of stacked bidirectional LSTM layers (> 0).",
        typeConverter=_positive_int("numLayers"),
    )
    dropout: "Param[float]" = Param(
        Params._dummy(),
        "dropout",
        "dropout rate after each LSTM layer and on its inputs, in [0, 1).",
        typeConverter=_checked(
            "dropout", TypeConverters.toFloat, lambda v: 0 <= v < 1, "a rate in [0, 1)"),
    )
    outputLayer: "Param[str]" = Param(
        Params._dummy(),
        "outputLayer",
        "the network's output: 'softmax' (a softmax per position, trained on class-weighted "
        "cross-entropy) or 'crf' (a linear-chain CRF over each window, trained on the "
        "class-weighted negative log-likelihood; probabilities are its per-position marginals).",
        typeConverter=_one_of("outputLayer", OUTPUT_LAYERS),
    )
    epochs: "Param[int]" = Param(
        Params._dummy(), "epochs", "training epochs (> 0).", typeConverter=_positive_int("epochs")
    )
    batchSize: "Param[int]" = Param(
        Params._dummy(),
        "batchSize",
        "training windows per gradient step (> 0).",
        typeConverter=_positive_int("batchSize"),
    )
    learningRate: "Param[float]" = Param(
        Params._dummy(),
        "learningRate",
        "Adam learning rate (> 0).",
        typeConverter=_checked(
            "learningRate", TypeConverters.toFloat, lambda v: v > 0, "a positive number"),
    )
    validationFraction: "Param[float]" = Param(
        Params._dummy(),
        "validationFraction",
        "share of the training rows held out for validation metrics, early stopping and tuneThresholds, in "
        "[0, 1); 0 = none. Each document is cut into windowSize-long segments and that share of every "
        "document's segments (rounded at random) is held out, each held-out run predicted on its own.",
        typeConverter=_checked(
            "validationFraction", TypeConverters.toFloat, lambda v: 0 <= v < 1, "a fraction in [0, 1)"
        ),
    )
    earlyStoppingPatience: "Param[int]" = Param(
        Params._dummy(),
        "earlyStoppingPatience",
        "epochs without a better validation macro-F1 before training stops, then the best "
        "epoch's weights are restored (history['best_epoch']); 0 = off. Needs validationFraction > 0.",
        typeConverter=_checked(
            "earlyStoppingPatience", TypeConverters.toInt, lambda v: v >= 0, "an integer >= 0"
        ),
    )
    predictBatchSize: "Param[int]" = Param(
        Params._dummy(),
        "predictBatchSize",
        "windows per prediction call on the executors (> 0).",
        typeConverter=_positive_int("predictBatchSize"),
    )
    weightStrategy: "Param[str]" = Param(
        Params._dummy(),
        "weightStrategy",
        "how class weights follow from the label distribution: "
        + ", ".join(WEIGHT_STRATEGIES)
        + ". Ignored when classWeights is set.",
        typeConverter=_checked(
            "weightStrategy", TypeConverters.toString,
            lambda v: v in WEIGHT_STRATEGIES,
            "one of " + ", ".join(WEIGHT_STRATEGIES),
        ),
    )
    effectiveNumberBeta: "Param[float]" = Param(
        Params._dummy(),
        "effectiveNumberBeta",
        "beta of the 'effective_number' strategy (Cui et al. 2019), in [0, 1).",
        typeConverter=_checked(
            "effectiveNumberBeta", TypeConverters.toFloat, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    )
    classWeights: "Param[dict[str, float]]" = Param(
        Params._dummy(),
        "classWeights",
        "explicit class weights {label name or index: weight}; classes left out get 1.0. "
        "Overrides weightStrategy.",
        typeConverter=_to_class_weights,
    )

    handleInvalid: "Param[str]" = Param(
        Params._dummy(),
        "handleInvalid",
        "what to do with rows the model cannot use (null document id, null or NaN "
        "position, null, wrong-length or non-finite features, duplicate positions; at fit "
        "also null or unknown labels): 'error' raises naming the column, document and "
        "position; 'skip' leaves them out; 'keep' keeps them at transform with null "
        "prediction and probability (at fit it acts as 'skip').",
        typeConverter=_one_of("handleInvalid", HANDLE_INVALID),
    )
    useGpu: "Param[bool]" = Param(
        Params._dummy(),
        "useGpu",
        "run the network on the GPU Spark assigns to each task (and the driver's for fit); "
        "without one, fall back to the CPU with a warning. False hides GPUs from the workers.",
        typeConverter=TypeConverters.toBoolean,
    )
    numWorkers: "Param[int]" = Param(
        Params._dummy(),
        "numWorkers",
        "processes that train the network (> 0). 1 trains on the driver. More trains data-parallel "
        "on the executors in one Spark barrier stage (JAX's multi-process runtime and Keras' "
        "DataParallel, CPU, needs the jax package): each worker reads whole documents, gradients "
        "are all-reduced every step, and no training row reaches the driver. A step then uses "
        "numWorkers * ceil(batchSize / numWorkers) windows.",
        typeConverter=_positive_int("numWorkers"),
    )
    mlflowLogging: "Param[bool]" = Param(
        Params._dummy(),
        "mlflowLogging",
        "when fit runs inside an active MLflow run, log to it the estimator's Params, the "
        "per-epoch metrics (step = epoch, 1-based), best_epoch and the class weights used "
        "(class_weights.json); never starts a run, never fails the fit. False logs nothing.",
        typeConverter=TypeConverters.toBoolean,
    )

    thresholds: "Param[list[float]]" = Param(
        Params._dummy(),
        "thresholds",
        "per-class thresholds of the decision, as Spark ML's: the class with the largest "
        "probability / threshold is predicted (values >= 0, at most one 0, one per class). "
        "Unset: the most probable class. probability and rawPrediction do not change.",
        typeConverter=lambda value: check_thresholds(TypeConverters.toListFloat(value)),
    )
    tuneThresholds: "Param[bool]" = Param(
        Params._dummy(),
        "tuneThresholds",
        "after training, set the model's thresholds to those that maximise macro-F1 on the "
        "validation rows (needs validationFraction > 0): trades the recall class weights "
        "buy on rare classes back for precision.",
        typeConverter=TypeConverters.toBoolean,
    )

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._setDefault(
            handleInvalid="error",
            docIdCol="doc_id",
            positionCol="line_number",
            windowSize=50,
            hiddenSize=128,
            embeddingSize=64,
            ensembleSize=1,
            numLayers=2,
            dropout=0.3,
            outputLayer="softmax",
            epochs=10,
            batchSize=32,
            learningRate=0.001,
            seed=0,
            validationFraction=0.0,
            earlyStoppingPatience=0,
            tuneThresholds=False,
            predictBatchSize=256,
            weightStrategy="inverse",
            effectiveNumberBeta=0.999,
            useGpu=False,
            numWorkers=1,
            mlflowLogging=True,
        )

    def getDocIdCol(self) -> str:
        return self.getOrDefault(self.docIdCol)

    def getPositionCol(self) -> str:
        return self.getOrDefault(self.positionCol)

    def getLabels(self) -> list[str]:
        return self.getOrDefault(self.labels)

    def getWindowSize(self) -> int:
        return self.getOrDefault(self.windowSize)

    def getWindowStride(self) -> int:
        """The prediction stride; windowSize when not set."""
        if self.isDefined(self.windowStride):
            return self.getOrDefault(self.windowStride)
        return self.getWindowSize()

    def getHiddenSize(self) -> int:
        return self.getOrDefault(self.hiddenSize)

    def getEmbeddingSize(self) -> int:
        return self.getOrDefault(self.embeddingSize)

    def getEnsembleSize(self) -> int:
        return self.getOrDefault(self.ensembleSize)

    def getNumLayers(self) -> int:
        return self.getOrDefault(self.numLayers)

    def getDropout(self) -> float:
        return self.getOrDefault(self.dropout)

    def getOutputLayer(self) -> str:
        return self.getOrDefault(self.outputLayer)

    def getEpochs(self) -> int:
        return self.getOrDefault(self.epochs)

    def getBatchSize(self) -> int:
        return self.getOrDefault(self.batchSize)

    def getLearningRate(self) -> float:
        return self.getOrDefault(self.learningRate)

    def getValidationFraction(self) -> float:
        return self.getOrDefault(self.validationFraction)

    def getEarlyStoppingPatience(self) -> int:
        return self.getOrDefault(self.earlyStoppingPatience)

    def getThresholds(self) -> list[float]:
        return self.getOrDefault(self.thresholds)

    def getTuneThresholds(self) -> bool:
        return self.getOrDefault(self.tuneThresholds)

    def getPredictBatchSize(self) -> int:
        return self.getOrDefault(self.predictBatchSize)

    def getWeightStrategy(self) -> str:
        return self.getOrDefault(self.weightStrategy)

    def getEffectiveNumberBeta(self) -> float:
        return self.getOrDefault(self.effectiveNumberBeta)

    def getHandleInvalid(self) -> str:
        return self.getOrDefault(self.handleInvalid)

    def getClassWeights(self) -> dict[str, float]:
        return self.getOrDefault(self.classWeights)

    def getUseGpu(self) -> bool:
        return self.getOrDefault(self.useGpu)

    def getNumWorkers(self) -> int:
        return self.getOrDefault(self.numWorkers)

    def getMlflowLogging(self) -> bool:
        return self.getOrDefault(self.mlflowLogging)

    def _ensemble_conflict(self) -> str | None:
        """Why the other Params rule out ``ensembleSize > 1``, or None when they allow it."""
        if self.getOutputLayer() != "softmax" or self.getEmbeddingSize() == 0:
            return (
                "Expected outputLayer='softmax' and embeddingSize > 0 with ensembleSize > 1: members "
                "share one projection and average their probabilities. Received: "
                f"ensembleSize={self.getEnsembleSize()}, outputLayer={self.getOutputLayer()!r}, "
                f"embeddingSize={self.getEmbeddingSize()}. Set ensembleSize=1 or change the others."
            )
        if self.getNumWorkers() > 1:
            return (
                "Expected numWorkers=1 with ensembleSize > 1: ensembles train on the driver. Received: "
                f"ensembleSize={self.getEnsembleSize()}, numWorkers={self.getNumWorkers()}. "
                "Set one of them to 1."
            )
        return None

    def _check_training_params(self) -> None:
        """Cross-param checks of training only."""
        conflict = self._ensemble_conflict() if self.getEnsembleSize() > 1 else None
        if conflict:
            raise ValueError(conflict)
        if self.getEarlyStoppingPatience() > 0 and self.getValidationFraction() <= 0:
            raise ValueError(
                "Expected validationFraction > 0 with earlyStoppingPatience > 0: early stopping "
                "watches the validation macro-F1. Received: "
                f"earlyStoppingPatience={self.getEarlyStoppingPatience()}, "
                f"validationFraction={self.getValidationFraction()}. Set validationFraction "
                "(e.g. 0.1) or earlyStoppingPatience=0."
            )
        if self.getTuneThresholds() and self.getValidationFraction() <= 0:
            raise ValueError(
                "Expected validationFraction > 0 with tuneThresholds=True: thresholds are tuned on "
                f"the validation rows. Received: validationFraction={self.getValidationFraction()}. "
                "Set validationFraction (e.g. 0.1) or tuneThresholds=False."
            )
        if self.getTuneThresholds() and self.isSet(self.thresholds):
            raise ValueError(
                "Expected either thresholds or tuneThresholds=True, not both: tuning replaces them. "
                f"Received: thresholds={self.getThresholds()}, tuneThresholds=True. Clear thresholds "
                "or set tuneThresholds=False."
            )

    def _check_window_params(self) -> None:
        """Cross-param checks the per-Param converters cannot make."""
        if self.getWindowStride() > self.getWindowSize():
            raise ValueError(
                "Expected windowStride <= windowSize, so that windows cover every "
                f"position. Received: windowStride={self.getWindowStride()}, "
                f"windowSize={self.getWindowSize()}. Lower windowStride or leave it unset."
            )


class _BiLSTMModelParams(_BiLSTMParams):
    """What a fitted model adds: the network, its weights, and what training used."""

    modelJson: "Param[str]" = Param(
        Params._dummy(),
        "modelJson",
        "Keras architecture JSON of the trained network (model.to_json()).",
        typeConverter=TypeConverters.toString,
    )
    modelWeights: "Param[str]" = Param(
        Params._dummy(),
        "modelWeights",
        "trained weights: an .npz body (no pickle), base64-encoded.",
        typeConverter=TypeConverters.toString,
    )
    numFeatures: "Param[int]" = Param(
        Params._dummy(),
        "numFeatures",
        "length of the feature vectors the network expects.",
        typeConverter=_positive_int("numFeatures"),
    )
    classWeightsUsed: "Param[list[float]]" = Param(
        Params._dummy(),
        "classWeightsUsed",
        "class weights training used, by label index.",
        typeConverter=TypeConverters.toListFloat,
    )
    trainingHistory: "Param[str]" = Param(
        Params._dummy(),
        "trainingHistory",
        "per-epoch training loss and validation metrics, as JSON.",
        typeConverter=TypeConverters.toString,
    )

    def getModelJson(self) -> str:
        return self.getOrDefault(self.modelJson)

    def getModelWeights(self) -> str:
        return self.getOrDefault(self.modelWeights)

    def getNumFeatures(self) -> int:
        return self.getOrDefault(self.numFeatures)

    def getClassWeightsUsed(self) -> list[float]:
        return self.getOrDefault(self.classWeightsUsed)

    def getTrainingHistory(self) -> str:
        return self.getOrDefault(self.trainingHistory)

    def explainParam(self, param: "str | Param") -> str:
        """As pyspark's, but the network Params show a one-line summary, not their value."""
        param = self._resolveParam(param)
        if param.name not in _SUMMARIZED or not self.isSet(param):
            return super().explainParam(param)
        return f"{param.name}: {param.doc} (current: {_summary(param.name, self.getOrDefault(param))})"


# Params whose values (architecture JSON, base64 weights, history) are too long to print.
_SUMMARIZED = ("modelJson", "modelWeights", "trainingHistory")


def _summary(name: str, value: str) -> str:
    """One line about a network Param's value: its kind and size, or the epochs it covers."""
    if name == "trainingHistory":
        try:
            history = json.loads(value)
            epochs = max((len(v) for v in history.values()), default=0)
            return f"<{epochs} epochs of {', '.join(sorted(history))}>"
        except (ValueError, TypeError, AttributeError):
            pass
    what = {"modelJson": "Keras architecture JSON", "modelWeights": "base64 .npz weights"}
    return f"<{what.get(name, 'JSON')}, {len(value):,} characters>"


def _to_fitted_model(value: Any) -> Any:
    if not (hasattr(value, "getModelJson") and hasattr(value, "trainedNetwork")):
        raise TypeError(
            "Expected initialModel to be a fitted BiLSTMClassificationModel. "
            f"Received: {type(value).__name__}"
        )
    return value


class _HasInitialModel(Params):
    """The estimator-only Param for warm starts (a model object, saved beside the metadata)."""

    initialModel: "Param[Any]" = Param(
        Params._dummy(),
        "initialModel",
        "a fitted BiLSTMClassificationModel whose weights training starts from; it must "
        "have the same features, classes, hiddenSize, embeddingSize, ensembleSize, numLayers and outputLayer.",
        typeConverter=_to_fitted_model,
    )

    def getInitialModel(self) -> Any:
        return self.getOrDefault(self.initialModel)
