"""The Params of :class:`BiLSTMClassifier` and :class:`BiLSTMClassificationModel`, by concern.

Each Param is declared once, with its doc, a type converter that rejects bad
values when they are set, and its one default (:meth:`_BiLSTMParams.__init__`).
As in pyspark.ml, the estimator and the model share the mixins, so a model
records how it was trained; only the fitted network's Params are the model's
own. Checks that involve several Params live in one method,
:meth:`_BiLSTMParams._validate_params`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (
    HasFeaturesCol,
    HasLabelCol,
    HasPredictionCol,
    HasProbabilityCol,
    HasRawPredictionCol,
    HasSeed,
)

from skol_spark.core.class_weights import WEIGHT_STRATEGIES
from skol_spark.core.devices import INFERENCE_ENGINES, TRAINING_ENGINES
from skol_spark.core.invalid import HANDLE_INVALID
from skol_spark.core.thresholds import check_thresholds

__all__ = [
    "OUTPUT_LAYERS",
    "INFERENCE_ENGINE_CONF",
    "HELD_OUT_FRACTION",
    "WEIGHT_STRATEGIES",
    "add_setters",
]

OUTPUT_LAYERS = ("softmax", "crf")

# The Spark conf that forces the Keras inference path for every model in a session.
INFERENCE_ENGINE_CONF = "spark.skol_spark.inferenceEngine"

# The share of rows held out when early stopping or tuned thresholds need validation rows
# and validationFraction is not set.
HELD_OUT_FRACTION = 0.1


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


def _param(name: str, doc: str, converter: Callable[[Any], Any]) -> Param:
    return Param(Params._dummy(), name, doc, typeConverter=converter)


def _getter(name: str) -> Callable[[Any], Any]:
    def get(self: Params) -> Any:
        return self.getOrDefault(name)

    get.__name__ = get.__qualname__ = "get" + name[0].upper() + name[1:]
    get.__doc__ = f"The value of :py:attr:`{name}` (set or default)."
    return get


def add_setters(names: Iterable[str]) -> Callable[[type], type]:
    """A class decorator giving the class ``setX(value)`` for each Param name ``x`` in ``names``.

    Each setter converts and checks ``value`` (the Param's typeConverter) and returns the stage.
    """

    def decorate(cls: type) -> type:
        for name in names:
            method = "set" + name[0].upper() + name[1:]

            def setter(self: Params, value: Any, _name: str = name) -> Any:
                return self._set(**{_name: value})

            setter.__name__ = method
            setter.__qualname__ = f"{cls.__name__}.{method}"
            setter.__doc__ = f"Set :py:attr:`{name}`; returns this stage."
            setattr(cls, method, setter)
        return cls

    return decorate


class _DocumentColumnParams(
    HasFeaturesCol, HasLabelCol, HasPredictionCol, HasProbabilityCol, HasRawPredictionCol
):
    """Where documents, positions, features and labels are, what the output columns are called,
    and what happens to rows the network cannot use."""

    docIdCol: Param[str] = _param(
        "docIdCol", "document id column: rows with the same id form one sequence.", TypeConverters.toString
    )
    positionCol: Param[str] = _param(
        "positionCol",
        "position column: orders the rows of a document (line or paragraph number).",
        TypeConverters.toString,
    )
    labels: Param[list[str]] = _param(
        "labels",
        "class names by label index; taken from the label column's ML attributes (StringIndexer) when not set.",
        TypeConverters.toListString,
    )
    handleInvalid: Param[str] = _param(
        "handleInvalid",
        "what to do with rows the model cannot use (null document id, null or NaN "
        "position, null, wrong-length or non-finite features, duplicate positions; at fit "
        "also null or unknown labels): 'error' raises naming the column, document and "
        "position; 'skip' leaves them out; 'keep' keeps them at transform with null "
        "prediction and probability (at fit it acts as 'skip').",
        _one_of("handleInvalid", HANDLE_INVALID),
    )

    getDocIdCol = _getter("docIdCol")
    getPositionCol = _getter("positionCol")
    getLabels = _getter("labels")
    getHandleInvalid = _getter("handleInvalid")


class _NetworkParams(Params):
    """The shape of the network: window, projection, BiLSTM, output layer, ensemble."""

    windowSize: Param[int] = _param(
        "windowSize", "positions per window the network sees (> 0).", _positive_int("windowSize")
    )
    hiddenSize: Param[int] = _param("hiddenSize", "LSTM units per direction (> 0).", _positive_int("hiddenSize"))
    embeddingSize: Param[int] = _param(
        "embeddingSize",
        "width E of the linear projection each position's features go through before the "
        "BiLSTM (>= 0; 0 feeds the features to the BiLSTM directly). Each row is projected "
        "once, sparse vectors with a sparse product, so fit and transform cost grow with the "
        "non-zeros of a row, not the vector length.",
        _checked("embeddingSize", TypeConverters.toInt, lambda v: v >= 0, "a non-negative integer"),
    )
    ensembleSize: Param[int] = _param(
        "ensembleSize",
        "number of networks trained one after the other, each from its own seed, on the same "
        "rows and averaged into one network (>= 1): lower variance for that many times the fit "
        "and transform cost (numWorkers > 1 trains each member data-parallel). Needs "
        "outputLayer='softmax' and embeddingSize > 0; left at its default, it is 1 where those do not hold.",
        _positive_int("ensembleSize"),
    )
    numLayers: Param[int] = _param(
        "numLayers", "number of stacked bidirectional LSTM layers (> 0).", _positive_int("numLayers")
    )
    dropout: Param[float] = _param(
        "dropout",
        "dropout rate after each LSTM layer and on its inputs, in [0, 1).",
        _checked("dropout", TypeConverters.toFloat, lambda v: 0 <= v < 1, "a rate in [0, 1)"),
    )
    outputLayer: Param[str] = _param(
        "outputLayer",
        "the network's output: 'softmax' (a softmax per position, trained on class-weighted "
        "cross-entropy) or 'crf' (a linear-chain CRF over each window, trained on the "
        "class-weighted negative log-likelihood; probabilities are its per-position marginals).",
        _one_of("outputLayer", OUTPUT_LAYERS),
    )

    getWindowSize = _getter("windowSize")
    getHiddenSize = _getter("hiddenSize")
    getEmbeddingSize = _getter("embeddingSize")
    getEnsembleSize = _getter("ensembleSize")
    getNumLayers = _getter("numLayers")
    getDropout = _getter("dropout")
    getOutputLayer = _getter("outputLayer")


class _TrainingParams(HasSeed):
    """How fit trains: optimisation, class weights, validation rows, where it runs, tracking."""

    epochs: Param[int] = _param("epochs", "training epochs (> 0).", _positive_int("epochs"))
    batchSize: Param[int] = _param(
        "batchSize", "training windows per gradient step (> 0).", _positive_int("batchSize")
    )
    learningRate: Param[float] = _param(
        "learningRate",
        "Adam learning rate (> 0).",
        _checked("learningRate", TypeConverters.toFloat, lambda v: v > 0, "a positive number"),
    )
    validationFraction: Param[float] = _param(
        "validationFraction",
        "share of the training rows held out for validation metrics, early stopping and tuneThresholds, in "
        "[0, 1); 0 = none. Each document is cut into windowSize-long segments and that share of every "
        "document's segments (rounded at random) is held out, each held-out run predicted on its own. "
        f"Left unset, it is {HELD_OUT_FRACTION} when earlyStoppingPatience > 0 or tuneThresholds=True.",
        _checked("validationFraction", TypeConverters.toFloat, lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    )
    earlyStoppingPatience: Param[int] = _param(
        "earlyStoppingPatience",
        "epochs without a better validation macro-F1 before training stops, then the best "
        "epoch's weights are restored (history['best_epoch']); 0 = off.",
        _checked("earlyStoppingPatience", TypeConverters.toInt, lambda v: v >= 0, "an integer >= 0"),
    )
    tuneThresholds: Param[bool] = _param(
        "tuneThresholds",
        "after training, set the model's thresholds to those that maximise macro-F1 on the "
        "validation rows: trades the recall class weights buy on rare classes back for precision.",
        TypeConverters.toBoolean,
    )
    weightStrategy: Param[str] = _param(
        "weightStrategy",
        "how class weights follow from the label distribution: "
        + ", ".join(WEIGHT_STRATEGIES)
        + ". Ignored when classWeights is set.",
        _checked(
            "weightStrategy", TypeConverters.toString, lambda v: v in WEIGHT_STRATEGIES,
            "one of " + ", ".join(WEIGHT_STRATEGIES),
        ),
    )
    effectiveNumberBeta: Param[float] = _param(
        "effectiveNumberBeta",
        "beta of the 'effective_number' strategy (Cui et al. 2019), in [0, 1).",
        _checked("effectiveNumberBeta", TypeConverters.toFloat, lambda v: 0 <= v < 1, "a number in [0, 1)"),
    )
    classWeights: Param[dict[str, float]] = _param(
        "classWeights",
        "explicit class weights {label name or index: weight}; classes left out get 1.0. "
        "Overrides weightStrategy.",
        _to_class_weights,
    )
    numWorkers: Param[int] = _param(
        "numWorkers",
        "processes that train the network (> 0). 1 trains on the driver. More trains data-parallel "
        "on the executors in one Spark barrier stage (one JAX process per worker, CPU, needs the "
        "jax package): each worker reads whole documents, the whole gradient is all-reduced once "
        "per step, and no training row reaches the driver. A step then uses numWorkers * "
        "ceil(batchSize / numWorkers) windows.",
        _positive_int("numWorkers"),
    )
    trainingEngine: Param[str] = _param(
        "trainingEngine",
        "what trains the network on the driver (numWorkers=1): 'jax' runs Keras on JAX in child "
        "processes of the driver (the 'distributed' extra: jax; softmax output, CPU), whose steps are "
        "about twice as fast as TensorFlow's on a CPU; 'tensorflow' runs Keras on TensorFlow in the "
        "driver; 'auto' picks JAX when it is installed, the output is softmax, useGpu is off and the fit "
        "is long enough (200 steps or more) to pay for the children's start, else TensorFlow. Either way "
        "the model is the same Keras network (rebuilt on TensorFlow and checked); the two engines "
        "draw different random numbers, so a seed reproduces a fit per engine.",
        _one_of("trainingEngine", TRAINING_ENGINES),
    )
    mlflowLogging: Param[bool] = _param(
        "mlflowLogging",
        "when fit runs inside an active MLflow run, log to it the estimator's Params, the "
        "per-epoch metrics (step = epoch, 1-based), best_epoch and the class weights used "
        "(class_weights.json); never starts a run, never fails the fit. False logs nothing.",
        TypeConverters.toBoolean,
    )

    verbose: Param[bool] = _param(
        "verbose",
        "write fit's progress to stderr on the driver: a line when training starts, then one per "
        "epoch (for an ensemble, one per network once it has trained). False writes nothing; "
        "either way every epoch is logged on the skol_spark.progress logger (INFO).",
        TypeConverters.toBoolean,
    )

    getEpochs = _getter("epochs")
    getBatchSize = _getter("batchSize")
    getLearningRate = _getter("learningRate")
    getValidationFraction = _getter("validationFraction")
    getEarlyStoppingPatience = _getter("earlyStoppingPatience")
    getTuneThresholds = _getter("tuneThresholds")
    getWeightStrategy = _getter("weightStrategy")
    getEffectiveNumberBeta = _getter("effectiveNumberBeta")
    getClassWeights = _getter("classWeights")
    getNumWorkers = _getter("numWorkers")
    getTrainingEngine = _getter("trainingEngine")
    getMlflowLogging = _getter("mlflowLogging")
    getVerbose = _getter("verbose")


class _TransformParams(Params):
    """How transform labels: window stride, batch size, decision thresholds, device."""

    windowStride: Param[int] = _param(
        "windowStride",
        "step between prediction windows (0 < stride <= windowSize; default windowSize). "
        "Overlapping windows average their probabilities.",
        _positive_int("windowStride"),
    )
    predictBatchSize: Param[int] = _param(
        "predictBatchSize", "windows per prediction call on the executors (> 0).", _positive_int("predictBatchSize")
    )
    thresholds: Param[list[float]] = _param(
        "thresholds",
        "per-class thresholds of the decision, as Spark ML's: the class with the largest "
        "probability / threshold is predicted (values >= 0, at most one 0, one per class). "
        "Unset: the most probable class. probability and rawPrediction do not change.",
        lambda value: check_thresholds(TypeConverters.toListFloat(value)),
    )
    useGpu: Param[bool] = _param(
        "useGpu",
        "run the network on the GPU Spark assigns to each task (and the driver's for fit); "
        "without one, fall back to the CPU with a warning. Decides this model's placement only.",
        TypeConverters.toBoolean,
    )

    def getWindowStride(self) -> int:
        """The prediction stride; windowSize when not set."""
        if self.isDefined(self.windowStride):
            return self.getOrDefault(self.windowStride)
        return self.getOrDefault("windowSize")

    inferenceEngine: Param[str] = _param(
        "inferenceEngine",
        "what runs the network on the executors: 'auto' runs it compiled by ONNX Runtime on the "
        "CPU (the 'fast' extra: onnxruntime), checked against Keras on probe windows when "
        "each worker builds it, and falls back to Keras with one warning saying why (a layer it "
        "does not translate, a mismatch, a missing package); 'keras' always runs Keras. The Spark "
        f"conf {INFERENCE_ENGINE_CONF}=keras forces Keras for every model of the session.",
        _one_of("inferenceEngine", INFERENCE_ENGINES),
    )

    getPredictBatchSize = _getter("predictBatchSize")
    getThresholds = _getter("thresholds")
    getUseGpu = _getter("useGpu")
    getInferenceEngine = _getter("inferenceEngine")


class _BiLSTMParams(_DocumentColumnParams, _NetworkParams, _TrainingParams, _TransformParams):
    """Every Param of both the estimator and the model, with its one default.

    The defaults are the settings chosen on SKOL's journals (BENCHMARKS.md):
    three 64-unit, 2-layer BiLSTMs over a 64-wide projection, averaged,
    trained 8 epochs in batches of 16 with balanced class weights.
    """

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._setDefault(
            docIdCol="doc_id",
            positionCol="line_number",
            handleInvalid="error",
            windowSize=50,
            hiddenSize=64,
            embeddingSize=64,
            ensembleSize=3,
            numLayers=2,
            dropout=0.3,
            outputLayer="softmax",
            epochs=8,
            batchSize=16,
            learningRate=0.002,
            seed=0,
            validationFraction=0.0,
            earlyStoppingPatience=0,
            tuneThresholds=False,
            weightStrategy="balanced",
            effectiveNumberBeta=0.999,
            numWorkers=1,
            trainingEngine="auto",
            mlflowLogging=True,
            verbose=True,
            predictBatchSize=256,
            useGpu=False,
            inferenceEngine="auto",
        )

    def _ensemble_conflict(self) -> str | None:
        """Why the other Params rule out an ensemble, or None when they allow one."""
        if self.getOutputLayer() != "softmax" or self.getEmbeddingSize() == 0:
            return (
                "Expected outputLayer='softmax' and embeddingSize > 0 with ensembleSize > 1: members "
                "share one projection and average their probabilities. Received: "
                f"ensembleSize={self.getEnsembleSize()}, outputLayer={self.getOutputLayer()!r}, "
                f"embeddingSize={self.getEmbeddingSize()}. Set ensembleSize=1 or change the others."
            )
        return None

    def effectiveEnsembleSize(self) -> int:
        """The networks fit trains: ensembleSize, or 1 when it is left at its default and the
        other Params rule out an ensemble (a CRF output, no projection)."""
        if not self.isSet(self.ensembleSize) and self._ensemble_conflict() is not None:
            return 1
        return self.getEnsembleSize()

    def effectiveValidationFraction(self) -> float:
        """The share of rows fit holds out: validationFraction, or, when it is not set,
        HELD_OUT_FRACTION if early stopping or tuned thresholds need validation rows."""
        if self.isSet(self.validationFraction):
            return self.getValidationFraction()
        if self.getEarlyStoppingPatience() > 0 or self.getTuneThresholds():
            return HELD_OUT_FRACTION
        return self.getValidationFraction()

    def _validate_params(self, fitting: bool) -> None:
        """Every check that involves more than one Param; fit runs all of them, transform the
        window's. A ValueError names the Params, their values and the fix."""
        if self.getWindowStride() > self.getWindowSize():
            raise ValueError(
                "Expected windowStride <= windowSize, so that windows cover every "
                f"position. Received: windowStride={self.getWindowStride()}, "
                f"windowSize={self.getWindowSize()}. Lower windowStride or leave it unset."
            )
        if not fitting:
            return
        conflict = self._ensemble_conflict() if self.effectiveEnsembleSize() > 1 else None
        if conflict:
            raise ValueError(conflict)
        held_out = self.effectiveValidationFraction()
        if self.getEarlyStoppingPatience() > 0 and held_out <= 0:
            raise ValueError(
                "Expected validationFraction > 0 with earlyStoppingPatience > 0: early stopping "
                "watches the validation macro-F1. Received: "
                f"earlyStoppingPatience={self.getEarlyStoppingPatience()}, validationFraction={held_out}. "
                "Set validationFraction (e.g. 0.1), or leave it unset, or earlyStoppingPatience=0."
            )
        if self.getTuneThresholds() and held_out <= 0:
            raise ValueError(
                "Expected validationFraction > 0 with tuneThresholds=True: thresholds are tuned on "
                f"the validation rows. Received: validationFraction={held_out}. "
                "Set validationFraction (e.g. 0.1), or leave it unset, or tuneThresholds=False."
            )
        if self.getTuneThresholds() and self.isSet(self.thresholds):
            raise ValueError(
                "Expected either thresholds or tuneThresholds=True, not both: tuning replaces them. "
                f"Received: thresholds={self.getThresholds()}, tuneThresholds=True. Clear thresholds "
                "or set tuneThresholds=False."
            )
        if self.getNumWorkers() > 1:
            self._validate_data_parallel()
        elif self.getTrainingEngine() == "jax":
            if self.getOutputLayer() != "softmax":
                raise ValueError(
                    "Expected outputLayer='softmax' with trainingEngine='jax': the CRF training wrapper runs "
                    f"on TensorFlow. Received: trainingEngine='jax', outputLayer={self.getOutputLayer()!r}. "
                    "Set trainingEngine='auto' or 'tensorflow'."
                )
            if self.getUseGpu():
                raise ValueError(
                    "Expected useGpu=False with trainingEngine='jax': the JAX fit runs on the driver's CPU. "
                    "Received: trainingEngine='jax', useGpu=True. Set trainingEngine='auto' or 'tensorflow' "
                    "to train on the GPU."
                )

    def _validate_data_parallel(self) -> None:
        """What numWorkers > 1 cannot do."""
        workers = self.getNumWorkers()
        if self.getTuneThresholds():
            raise ValueError(
                "Expected tuneThresholds=False with numWorkers > 1: thresholds are tuned on validation "
                f"documents held on the driver. Received: numWorkers={workers}, tuneThresholds=True. "
                "Set the thresholds Param explicitly, or numWorkers=1."
            )
        if self.getOutputLayer() != "softmax":
            raise ValueError(
                "Expected outputLayer='softmax' with numWorkers > 1: the CRF training wrapper does not run "
                f"data-parallel. Received: numWorkers={workers}, outputLayer={self.getOutputLayer()!r}. "
                "Set numWorkers=1 to train the CRF on the driver."
            )
        if self.getUseGpu():
            raise ValueError(
                "Expected useGpu=False with numWorkers > 1: data-parallel training runs on the "
                f"executors' CPUs. Received: numWorkers={workers}, useGpu=True. Set useGpu=False, "
                "or numWorkers=1 to train on the driver's GPU."
            )


class _FittedNetworkParams(Params):
    """What only a fitted model holds: the network, its weights, and what training used."""

    modelJson: Param[str] = _param(
        "modelJson", "Keras architecture JSON of the trained network (model.to_json()).", TypeConverters.toString
    )
    modelWeights: Param[str] = _param(
        "modelWeights", "trained weights: an .npz body (no pickle), base64-encoded.", TypeConverters.toString
    )
    numFeatures: Param[int] = _param(
        "numFeatures", "length of the feature vectors the network expects.", _positive_int("numFeatures")
    )
    classWeightsUsed: Param[list[float]] = _param(
        "classWeightsUsed", "class weights training used, by label index.", TypeConverters.toListFloat
    )
    trainingHistory: Param[str] = _param(
        "trainingHistory", "per-epoch training loss and validation metrics, as JSON.", TypeConverters.toString
    )

    getModelJson = _getter("modelJson")
    getModelWeights = _getter("modelWeights")
    getNumFeatures = _getter("numFeatures")
    getClassWeightsUsed = _getter("classWeightsUsed")
    getTrainingHistory = _getter("trainingHistory")

    def explainParam(self, param: str | Param) -> str:
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

    initialModel: Param[Any] = _param(
        "initialModel",
        "a fitted BiLSTMClassificationModel whose weights training starts from; it must have the "
        "same features, classes, hiddenSize, embeddingSize, ensembleSize, numLayers and outputLayer.",
        _to_fitted_model,
    )

    getInitialModel = _getter("initialModel")


def param_names(*mixins: type) -> list[str]:
    """The names of the Params the mixins declare, in declaration order."""
    names: list[str] = []
    for mixin in mixins:
        for klass in reversed(mixin.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Param) and name not in names:
                    names.append(name)
    return names


# Which Params each stage can set: the estimator every one; the model its columns and
# how it labels (training Params record how it was trained).
ESTIMATOR_SETTABLE = param_names(_BiLSTMParams, _HasInitialModel)
MODEL_SETTABLE = [
    name for name in param_names(_DocumentColumnParams, _TransformParams) if name not in ("labelCol", "labels")
]
