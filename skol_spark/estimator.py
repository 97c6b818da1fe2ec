"""The public pyspark.ml stages: :class:`BiLSTMClassifier` and its fitted model.

The stages check Params and schemas, then hand the work on: training to
``training_data``/``training`` on the driver, labeling to ``udf``/``predict``
on the executors, saving and loading to ``persistence``, ``stores`` and
``keras_files``, which take a :class:`~skol_spark.trained_network.TrainedNetwork`
plus a :class:`~skol_spark.persistence.SavedStage` and never import these
classes back. Saved metadata names ``skol_spark.estimator.<class>``.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np

from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.util import MLReadable, MLReader, MLWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from skol_spark.class_weights import resolve_class_weights
from skol_spark.connect import check_connect_support
from skol_spark.errors import CorruptModelError
from skol_spark.params import _BiLSTMModelParams, _BiLSTMParams, _HasInitialModel
from skol_spark.persistence import (
    INITIAL_MODEL_DIR,
    OverwritingWriter,
    SavedStage,
    load_model_directory,
    load_stage_directory,
    save_model_directory,
    save_stage_directory,
)
from skol_spark.predict import PredictSpec
from skol_spark.thresholds import check_thresholds
from skol_spark.trained_network import TrainedNetwork
from skol_spark.udf import USE_ARROW_UDF, label_dataframe

__all__ = ["BiLSTMClassifier", "BiLSTMClassificationModel"]

logger = logging.getLogger("skol_spark")


def _fail_column(name: str, what: str, received: Any, fix: str) -> None:
    raise ValueError(f"Column {name!r} {what}. Received: {received}. {fix}")


def _check_input_schema(params: _BiLSTMParams, schema: T.StructType, with_label: bool) -> None:
    """Check columns and their types before any Spark job runs."""
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
            params.getDocIdCol(),
            "must hold a string or integer document id",
            doc.simpleString(),
            "Cast it to string.",
        )
    position = fields[params.getPositionCol()]
    if not isinstance(position, T.NumericType):
        _fail_column(
            params.getPositionCol(),
            "must hold a numeric position",
            position.simpleString(),
            "Cast it to int or double.",
        )
    if with_label and not isinstance(fields[params.getLabelCol()], T.NumericType):
        _fail_column(
            params.getLabelCol(),
            "must hold a numeric class index 0..K-1",
            fields[params.getLabelCol()].simpleString(),
            "Index string labels with StringIndexer.",
        )


def _labels_from_metadata(schema: T.StructType, label_col: str) -> list[str] | None:
    """Class names StringIndexer left in the label column's ML attributes."""
    attrs = schema[label_col].metadata.get("ml_attr", {})
    values = attrs.get("vals")
    return [str(v) for v in values] if values else None


class BiLSTMClassifier(Estimator, _BiLSTMParams, _HasInitialModel, MLWritable, MLReadable):
    """Labels each position of a document with a class-weighted bidirectional LSTM.

    Rows are positions (lines, paragraphs); rows sharing ``docIdCol`` form one
    document, ordered by ``positionCol``. Training runs on the driver with
    Keras; the fitted :class:`BiLSTMClassificationModel` predicts on the
    executors.

    Parameters
    ----------
    featuresCol, labelCol, docIdCol, positionCol : str
        Input columns: a Vector or array<float|double>, the class index as
        double (StringIndexer output), the document id, the position.
    predictionCol, probabilityCol, rawPredictionCol : str
        Output columns of the fitted model.
    labels : list of str, optional
        Class names by index; by default read from the label column's metadata.
    windowSize, windowStride : int
        Positions per window (50) and the prediction stride (= windowSize).
    hiddenSize, numLayers, dropout : network shape (128, 2, 0.3).
    outputLayer : str, default "softmax"
        "softmax" or "crf": a linear-chain CRF over each window (learned
        transitions, start and end scores) trained on the class-weighted
        negative log-likelihood; ``probability`` then holds its per-position
        marginals and ``prediction`` their argmax.
    embeddingSize : int
        Width of the per-position linear projection before the BiLSTM (64; 0 for
        none). Sparse feature rows are projected once each, with a sparse product.
    ensembleSize : int, default 1
        Networks trained one after the other (seeds seed, seed + 1, ...) and
        averaged into one network: less seed-to-seed variance for that many
        times the fit and transform cost (softmax output, embeddingSize > 0).
    epochs, batchSize, learningRate, seed, validationFraction : training (10, 32, 1e-3, 0, 0.0).
    earlyStoppingPatience : int, default 0 (off)
        With validationFraction > 0: stop after this many epochs without a better
        validation macro-F1 and keep the best epoch's weights; ``model.history``
        then holds ``best_epoch`` (``[n]``, 1-based). Off by default so that
        ``epochs`` alone decides, as before.
    predictBatchSize : int
        Windows per prediction call on the executors (256).
    weightStrategy : str
        "none", "inverse" (default), "balanced", "sqrt_inverse" or "effective_number".
    classWeights : dict, optional
        Explicit weights by label name or index; overrides weightStrategy.
    useGpu : bool, default False
        Run on the GPU Spark assigns to each task (the driver's GPU for fit),
        falling back to the CPU with a warning; False keeps workers off GPUs.
    initialModel : BiLSTMClassificationModel, optional
        Warm start: training begins from this model's weights (same features,
        classes, hiddenSize, embeddingSize, ensembleSize, numLayers and outputLayer) and compiles with the current weights.
    numWorkers : int, default 1
        1 trains on the driver. More trains data-parallel on the executors in one
        barrier stage (JAX multi-process, Keras DataParallel, CPU; needs jax on the
        executors): whole documents per worker, gradients all-reduced every step,
        no training row on the driver. The result is the same kind of model.

    Examples
    --------
    >>> clf = BiLSTMClassifier(windowSize=20, epochs=5, weightStrategy="balanced")
    >>> model = clf.fit(train_df)                                     # doctest: +SKIP
    >>> model.transform(test_df).select("doc_id", "prediction")       # doctest: +SKIP
    """

    @keyword_only
    def __init__(
        self,
        *,
        featuresCol: str | None = None,
        labelCol: str | None = None,
        docIdCol: str | None = None,
        positionCol: str | None = None,
        predictionCol: str | None = None,
        probabilityCol: str | None = None,
        rawPredictionCol: str | None = None,
        labels: list[str] | None = None,
        windowSize: int | None = None,
        windowStride: int | None = None,
        hiddenSize: int | None = None,
        embeddingSize: int | None = None,
        ensembleSize: int | None = None,
        numLayers: int | None = None,
        dropout: float | None = None,
        outputLayer: str | None = None,
        epochs: int | None = None,
        batchSize: int | None = None,
        learningRate: float | None = None,
        seed: int | None = None,
        validationFraction: float | None = None,
        earlyStoppingPatience: int | None = None,
        thresholds: list[float] | None = None,
        tuneThresholds: bool | None = None,
        predictBatchSize: int | None = None,
        weightStrategy: str | None = None,
        effectiveNumberBeta: float | None = None,
        classWeights: dict[str, float] | None = None,
        useGpu: bool | None = None,
        initialModel: "BiLSTMClassificationModel | None" = None,
        handleInvalid: str | None = None,
        mlflowLogging: bool | None = None,
        numWorkers: int | None = None,
    ):
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        featuresCol: str | None = None,
        labelCol: str | None = None,
        docIdCol: str | None = None,
        positionCol: str | None = None,
        predictionCol: str | None = None,
        probabilityCol: str | None = None,
        rawPredictionCol: str | None = None,
        labels: list[str] | None = None,
        windowSize: int | None = None,
        windowStride: int | None = None,
        hiddenSize: int | None = None,
        embeddingSize: int | None = None,
        ensembleSize: int | None = None,
        numLayers: int | None = None,
        dropout: float | None = None,
        outputLayer: str | None = None,
        epochs: int | None = None,
        batchSize: int | None = None,
        learningRate: float | None = None,
        seed: int | None = None,
        validationFraction: float | None = None,
        earlyStoppingPatience: int | None = None,
        thresholds: list[float] | None = None,
        tuneThresholds: bool | None = None,
        predictBatchSize: int | None = None,
        weightStrategy: str | None = None,
        effectiveNumberBeta: float | None = None,
        classWeights: dict[str, float] | None = None,
        useGpu: bool | None = None,
        initialModel: "BiLSTMClassificationModel | None" = None,
        handleInvalid: str | None = None,
        mlflowLogging: bool | None = None,
        numWorkers: int | None = None,
    ) -> "BiLSTMClassifier":
        """Set Params by keyword; None leaves a Param as it is."""
        return self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def setFeaturesCol(self, value: str) -> "BiLSTMClassifier":
        return self._set(featuresCol=value)

    def setLabelCol(self, value: str) -> "BiLSTMClassifier":
        return self._set(labelCol=value)

    def setDocIdCol(self, value: str) -> "BiLSTMClassifier":
        return self._set(docIdCol=value)

    def setPositionCol(self, value: str) -> "BiLSTMClassifier":
        return self._set(positionCol=value)

    def setPredictionCol(self, value: str) -> "BiLSTMClassifier":
        return self._set(predictionCol=value)

    def setProbabilityCol(self, value: str) -> "BiLSTMClassifier":
        return self._set(probabilityCol=value)

    def setRawPredictionCol(self, value: str) -> "BiLSTMClassifier":
        return self._set(rawPredictionCol=value)

    def setLabels(self, value: list[str]) -> "BiLSTMClassifier":
        return self._set(labels=value)

    def setWindowSize(self, value: int) -> "BiLSTMClassifier":
        return self._set(windowSize=value)

    def setWindowStride(self, value: int) -> "BiLSTMClassifier":
        return self._set(windowStride=value)

    def setHiddenSize(self, value: int) -> "BiLSTMClassifier":
        return self._set(hiddenSize=value)

    def setEmbeddingSize(self, value: int) -> "BiLSTMClassifier":
        return self._set(embeddingSize=value)

    def setEnsembleSize(self, value: int) -> "BiLSTMClassifier":
        return self._set(ensembleSize=value)

    def setNumLayers(self, value: int) -> "BiLSTMClassifier":
        return self._set(numLayers=value)

    def setDropout(self, value: float) -> "BiLSTMClassifier":
        return self._set(dropout=value)

    def setOutputLayer(self, value: str) -> "BiLSTMClassifier":
        return self._set(outputLayer=value)

    def setEpochs(self, value: int) -> "BiLSTMClassifier":
        return self._set(epochs=value)

    def setBatchSize(self, value: int) -> "BiLSTMClassifier":
        return self._set(batchSize=value)

    def setLearningRate(self, value: float) -> "BiLSTMClassifier":
        return self._set(learningRate=value)

    def setSeed(self, value: int) -> "BiLSTMClassifier":
        return self._set(seed=value)

    def setValidationFraction(self, value: float) -> "BiLSTMClassifier":
        return self._set(validationFraction=value)

    def setEarlyStoppingPatience(self, value: int) -> "BiLSTMClassifier":
        return self._set(earlyStoppingPatience=value)

    def setThresholds(self, value: list[float]) -> "BiLSTMClassifier":
        return self._set(thresholds=value)

    def setTuneThresholds(self, value: bool) -> "BiLSTMClassifier":
        return self._set(tuneThresholds=value)

    def setPredictBatchSize(self, value: int) -> "BiLSTMClassifier":
        return self._set(predictBatchSize=value)

    def setWeightStrategy(self, value: str) -> "BiLSTMClassifier":
        return self._set(weightStrategy=value)

    def setEffectiveNumberBeta(self, value: float) -> "BiLSTMClassifier":
        return self._set(effectiveNumberBeta=value)

    def setClassWeights(self, value: dict[str, float]) -> "BiLSTMClassifier":
        return self._set(classWeights=value)

    def setHandleInvalid(self, value: str) -> "BiLSTMClassifier":
        return self._set(handleInvalid=value)

    def setInitialModel(self, value: "BiLSTMClassificationModel") -> "BiLSTMClassifier":
        return self._set(initialModel=value)

    def setUseGpu(self, value: bool) -> "BiLSTMClassifier":
        return self._set(useGpu=value)

    def setMlflowLogging(self, value: bool) -> "BiLSTMClassifier":
        return self._set(mlflowLogging=value)

    def setNumWorkers(self, value: int) -> "BiLSTMClassifier":
        return self._set(numWorkers=value)

    def write(self) -> Any:
        """An MLWriter: Params as Spark ML metadata, plus initialModel in its own directory."""
        return _ClassifierWriter(self)

    @classmethod
    def read(cls) -> Any:
        return _ClassifierReader(cls)

    def _label_values(self, dataset: DataFrame) -> tuple[list[str], int]:
        """Class names and the number of rows, from one aggregation of the label column.

        Only labels that can be class indices count here; every row is checked
        (once, with the other defects of :mod:`skol_spark.invalid`) while it is
        streamed to the driver.
        """
        label_col = self.getLabelCol()
        rows = dataset.groupBy(F.col(f"`{label_col}`")).agg(F.count(F.lit(1)).alias("count")).collect()
        total = sum(int(row["count"]) for row in rows)
        if not total:
            raise ValueError("The training DataFrame is empty: fit needs labelled rows.")
        indices = [
            int(v) for v in (row[0] for row in rows)
            if v is not None and not math.isnan(v) and v >= 0 and float(v) == int(v)
        ]
        if self.isDefined(self.labels):
            labels = self.getLabels()
        else:
            labels = _labels_from_metadata(dataset.schema, label_col) or [
                str(i) for i in range(max(indices, default=-1) + 1)
            ]
        if not labels:
            raise ValueError(f"Column {label_col!r} has no valid class index; nothing to fit on.")
        return labels, total

    def _expected_width(self, dataset: DataFrame) -> int | None:
        """Feature length fit must see: the initial model's, else the column's ML metadata."""
        if self.isDefined(self.initialModel):
            return self.getInitialModel().getNumFeatures()
        attrs = dataset.schema[self.getFeaturesCol()].metadata.get("ml_attr", {})
        size = attrs.get("num_attrs")
        return int(size) if isinstance(size, int) and size > 0 else None

    def _fit(self, dataset: DataFrame) -> "BiLSTMClassificationModel":
        from skol_spark.devices import training_device
        from skol_spark.training import train_network, validation_thresholds, verify_rebuild
        from skol_spark.training_data import collect_training_data

        check_connect_support("fit")
        self._check_window_params()
        self._check_training_params()
        _check_input_schema(self, dataset.schema, with_label=True)
        if self.getNumWorkers() > 1:
            from skol_spark.distributed import check_distributed_params

            check_distributed_params(
                self.getNumWorkers(), self.getUseGpu(), self.getOutputLayer(), self.getTuneThresholds()
            )
        labels, total = self._label_values(dataset)
        if self.isSet(self.thresholds):
            check_thresholds(self.getThresholds(), len(labels))
        if self.getNumWorkers() > 1:
            return self._fit_on_executors(dataset, labels)
        columns = [self.getDocIdCol(), self.getPositionCol(), self.getLabelCol(), self.getFeaturesCol()]
        data = collect_training_data(
            dataset,
            *columns,
            expected_rows=total,
            handle_invalid=self.getHandleInvalid(),
            width=self._expected_width(dataset),
            num_classes=len(labels),
        )
        logger.info(
            "training rows on the driver: %d x %d, %s storage, %.1f MB",
            len(data.labels),
            data.num_features,
            "sparse" if data.features.is_sparse else "dense",
            data.features.nbytes / 2**20,
        )
        counts = np.bincount(data.labels, minlength=len(labels)).tolist()
        explicit = self.getClassWeights() if self.isDefined(self.classWeights) else None
        class_weights = resolve_class_weights(
            counts, labels, self.getWeightStrategy(), explicit, self.getEffectiveNumberBeta()
        )
        _log_class_weights(labels, class_weights, counts)
        config = self._training_config(
            len(labels), class_weights, self._initial_weights(data.num_features, labels)
        )
        with training_device(self.getUseGpu(), _driver_gpu_addresses(dataset)):
            network, history = train_network(data, config)
            trained = verify_rebuild(network, data, config.window_size)
            tuned = validation_thresholds(network, data, config) if self.getTuneThresholds() else None
        return self._fitted_model(labels, data.num_features, class_weights, history, trained, tuned)

    def _training_config(self, num_classes: int, class_weights: list[float], initial_weights: Any) -> Any:
        from skol_spark.training import TrainingConfig

        return TrainingConfig(
            window_size=self.getWindowSize(),
            num_classes=num_classes,
            class_weights=class_weights,
            hidden_size=self.getHiddenSize(),
            embedding_size=self.getEmbeddingSize(),
            ensemble_size=self.getEnsembleSize(),
            num_layers=self.getNumLayers(),
            dropout=self.getDropout(),
            output_layer=self.getOutputLayer(),
            epochs=self.getEpochs(),
            batch_size=self.getBatchSize(),
            learning_rate=self.getLearningRate(),
            seed=self.getSeed(),
            validation_fraction=self.getValidationFraction(),
            early_stopping_patience=self.getEarlyStoppingPatience(),
            predict_batch_size=self.getPredictBatchSize(),
            initial_weights=initial_weights,
        )

    def _fit_on_executors(self, dataset: DataFrame, labels: list[str]) -> "BiLSTMClassificationModel":
        """numWorkers > 1: data-parallel training in one barrier stage (skol_spark.distributed)."""
        from skol_spark.distributed import distributed_spec, fit_on_executors
        from skol_spark.trained_network import weights_to_bytes

        explicit = self.getClassWeights() if self.isDefined(self.classWeights) else None
        resolve_class_weights([1] * len(labels), labels, self.getWeightStrategy(), explicit)  # keys, before the stage
        width = self._expected_width(dataset)
        initial = self._initial_weights(width, labels)  # None without initialModel (width is its then)
        spec = distributed_spec(
            self._training_config(len(labels), [], None),
            num_workers=self.getNumWorkers(),
            columns=(self.getDocIdCol(), self.getPositionCol(), self.getLabelCol(), self.getFeaturesCol()),
            labels=labels,
            handle_invalid=self.getHandleInvalid(),
            width=width,
            weight_strategy=self.getWeightStrategy(),
            class_weights=explicit,
            effective_number_beta=self.getEffectiveNumberBeta(),
            initial_weights=None if initial is None else weights_to_bytes(initial),
        )
        fit = fit_on_executors(dataset, spec)
        _log_class_weights(labels, fit.class_weights, fit.counts)
        return self._fitted_model(labels, fit.num_features, fit.class_weights, fit.history, fit.network)

    def _fitted_model(
        self,
        labels: list[str],
        num_features: int,
        class_weights: list[float],
        history: dict[str, list[float]],
        trained: TrainedNetwork,
        tuned: list[float] | None = None,
    ) -> "BiLSTMClassificationModel":
        from skol_spark.training import history_to_json

        if self.getMlflowLogging():
            from skol_spark.tracking import log_fit

            params = {p.name: v for p, v in self.extractParamMap().items()}
            log_fit(params, history, labels, class_weights)
        model = BiLSTMClassificationModel()
        model._resetUid(self.uid)
        self._copyValues(model)
        model._set(
            labels=labels,
            numFeatures=num_features,
            classWeightsUsed=class_weights,
            trainingHistory=history_to_json(history),
        )
        if tuned is not None:
            model._set(thresholds=tuned)
        return model._set_network(trained)

    def _initial_weights(self, num_features: int, labels: list[str]) -> list[Any] | None:
        """The warm-start weights (None without initialModel), after checking they fit this training."""
        if not self.isDefined(self.initialModel):
            return None
        initial = self.getInitialModel()
        if initial.getNumFeatures() != num_features or initial.numClasses != len(labels):
            raise ValueError(
                f"initialModel was trained on {initial.getNumFeatures()} features and "
                f"{initial.numClasses} classes; this data has {num_features} features and "
                f"{len(labels)} classes ({labels}). Warm-start only from a model of the same task."
            )
        if initial.getOutputLayer() != self.getOutputLayer():
            raise ValueError(
                f"initialModel has outputLayer={initial.getOutputLayer()!r}; this estimator has "
                f"outputLayer={self.getOutputLayer()!r}. Set them equal to warm-start."
            )
        shape = ("hiddenSize", "embeddingSize", "ensembleSize", "numLayers")
        theirs = [initial.getOrDefault(name) for name in shape]
        ours = [self.getOrDefault(name) for name in shape]
        if theirs != ours:
            raise ValueError(
                "initialModel has "
                + ", ".join(f"{name}={value}" for name, value in zip(shape, theirs))
                + "; this estimator has "
                + ", ".join(f"{name}={value}" for name, value in zip(shape, ours))
                + ". Set them equal to warm-start."
            )
        return initial.trainedNetwork.weight_arrays()


def _log_class_weights(labels: list[str], class_weights: list[float], counts: list[int]) -> None:
    logger.info(
        "class weights: %s",
        ", ".join(f"{name}={w:.4g} (n={n})" for name, w, n in zip(labels, class_weights, counts)),
    )


def _driver_gpu_addresses(dataset: DataFrame) -> list[str]:
    """GPUs Spark assigned to the driver (spark.driver.resource.gpu.*); none under Spark Connect."""
    from skol_spark.devices import gpu_addresses

    try:
        resources = dataset.sparkSession.sparkContext.resources
    except Exception:  # noqa: BLE001 - Spark Connect has no SparkContext
        return []
    return gpu_addresses(resources)


class BiLSTMClassificationModel(Model, _BiLSTMModelParams, MLWritable, MLReadable):
    """A fitted :class:`BiLSTMClassifier`: the network's JSON and weights as Params.

    ``transform`` groups rows by document on the executors, rebuilds the
    network once per Python worker, and adds ``predictionCol`` (double),
    ``probabilityCol`` and ``rawPredictionCol`` (log-probabilities, Vectors) to
    every input row. The output works with ``MulticlassClassificationEvaluator``.

    Examples
    --------
    >>> model = BiLSTMClassifier(epochs=3).fit(train_df)     # doctest: +SKIP
    >>> model.labels_, model.history["loss"]                 # doctest: +SKIP
    >>> model.transform(test_df).show()                      # doctest: +SKIP
    >>> model.write().overwrite().save("/models/bilstm")     # doctest: +SKIP
    >>> model.saveToRedis("redis://localhost:6379/0", "skol:bilstm")  # doctest: +SKIP
    """

    def __init__(self) -> None:
        super().__init__()

    def write(self) -> Any:
        """An MLWriter: Spark ML metadata plus the weights body, checksummed."""
        return _ModelWriter(self)

    @classmethod
    def read(cls) -> Any:
        return _ModelReader(cls)

    def saveToRedis(
        self,
        client_or_url: Any,
        key: str,
        ttl: float | None = None,
        overwrite: bool = True,
        chunkBytes: int | None = None,
    ) -> None:
        """Store this model in Redis under ``key``, atomically.

        Parameters
        ----------
        client_or_url : redis.Redis or str
            A client, or a URL: ``redis://[:password@]host:port/db``, ``rediss://`` for TLS.
        key : str
            The Redis key; the model is one hash there.
        ttl : float, optional
            Seconds until Redis drops the model; None keeps it.
        overwrite : bool, default True
            With False, raise ``ModelExistsError`` when the key is taken.
        chunkBytes : int, optional
            Largest body piece per hash field (default 64 MiB).
        """
        from skol_spark.stores import REDIS_CHUNK_BYTES, save_to_redis

        save_to_redis(
            _saved_stage(self), self.trainedNetwork, client_or_url, key, ttl, overwrite,
            chunkBytes or REDIS_CHUNK_BYTES,
        )

    @classmethod
    def loadFromRedis(cls, client_or_url: Any, key: str) -> "BiLSTMClassificationModel":
        """Load the model stored under ``key``, verifying class, checksum and architecture."""
        from skol_spark.stores import load_from_redis

        stage, network = load_from_redis(client_or_url, key, _class_name(cls))
        return cls._from_saved(stage, network, f"Redis key {key!r}")

    def saveKeras(self, path: str) -> None:
        """Write the network as a Keras file (``.keras``, or ``.h5`` when the path ends so).

        The network is compiled with :class:`WeightedSparseCategoricalCrossentropy`
        and the class weights training used, so ``keras.models.load_model(path)``
        returns it compiled once skol_spark is imported, and
        ``load_model(path, compile=False)`` works without skol_spark.
        A CRF network (``outputLayer="crf"``) carries the same loss applied to
        its marginals (not the CRF's sequence NLL), and its ``CRF`` layer needs
        ``skol_spark.crf`` imported to load, compiled or not.
        """
        from skol_spark.keras_files import save_keras_file

        save_keras_file(self.trainedNetwork, path, self._class_weights_or_ones(), self.getLearningRate())

    def _class_weights_or_ones(self) -> list[float]:
        if self.isDefined(self.classWeightsUsed):
            return self.getClassWeightsUsed()
        return [1.0] * self.numClasses

    @classmethod
    def fromKeras(
        cls,
        path_or_model: Any,
        labels: list[str],
        windowSize: int | None = None,
        classWeightsUsed: list[float] | None = None,
        **params: Any,
    ) -> "BiLSTMClassificationModel":
        """Wrap a sequence-labeling network trained elsewhere.

        Parameters
        ----------
        path_or_model : str or keras.Model
            A ``.keras`` or ``.h5`` file, or a model. Files are loaded with
            ``compile=False``, so models compiled with a loss Keras cannot locate
            (such as SKOL's closure ``weighted_categorical_crossentropy``) work.
        labels : list of str
            Class names, one per output unit.
        windowSize : int, optional
            Positions per window; required when the network's time axis is not fixed.
        classWeightsUsed : list of float, optional
            The class weights the network was trained with, kept for the record.
        **params
            Other Params, e.g. ``featuresCol="tfidf"``, ``docIdCol="file"``.

        The network takes ``(batch, window, features)`` (and optionally a boolean
        ``(batch, window)`` mask) and returns ``(batch, window, len(labels))``
        probabilities. It is rebuilt from its JSON here, as the executors will.
        """
        from skol_spark.keras_files import check_keras_network

        network, implied = check_keras_network(path_or_model, labels, windowSize, classWeightsUsed)
        model = cls()
        model._set(**{**params, **implied})
        return model._set_network(network)

    def setFeaturesCol(self, value: str) -> "BiLSTMClassificationModel":
        return self._set(featuresCol=value)

    def setDocIdCol(self, value: str) -> "BiLSTMClassificationModel":
        return self._set(docIdCol=value)

    def setPositionCol(self, value: str) -> "BiLSTMClassificationModel":
        return self._set(positionCol=value)

    def setPredictionCol(self, value: str) -> "BiLSTMClassificationModel":
        return self._set(predictionCol=value)

    def setProbabilityCol(self, value: str) -> "BiLSTMClassificationModel":
        return self._set(probabilityCol=value)

    def setRawPredictionCol(self, value: str) -> "BiLSTMClassificationModel":
        return self._set(rawPredictionCol=value)

    def setWindowStride(self, value: int) -> "BiLSTMClassificationModel":
        return self._set(windowStride=value)

    def setHandleInvalid(self, value: str) -> "BiLSTMClassificationModel":
        return self._set(handleInvalid=value)

    def setPredictBatchSize(self, value: int) -> "BiLSTMClassificationModel":
        return self._set(predictBatchSize=value)

    def setThresholds(self, value: list[float]) -> "BiLSTMClassificationModel":
        """Decide by the largest probability / threshold (Spark ML's ``thresholds``); see :mod:`skol_spark.thresholds`."""
        return self._set(thresholds=value)

    def clearThresholds(self) -> "BiLSTMClassificationModel":
        """Decide by the largest probability again."""
        self.clear(self.thresholds)
        return self

    def setUseGpu(self, value: bool) -> "BiLSTMClassificationModel":
        return self._set(useGpu=value)

    @property
    def labels_(self) -> list[str]:
        """Class names by prediction index."""
        return self.getLabels()

    @property
    def numClasses(self) -> int:
        return len(self.getLabels())

    @property
    def history(self) -> dict[str, list[float]]:
        """Per-epoch training loss and validation metrics."""
        return json.loads(self.getTrainingHistory()) if self.isDefined(self.trainingHistory) else {}

    @property
    def trainedNetwork(self) -> TrainedNetwork:
        """The network as a value (architecture JSON, weights body, digest), from the Params."""
        architecture, weights = self.getModelJson(), self.getModelWeights()
        cached = getattr(self, "_trained", None)
        if cached is None or cached[0] is not architecture or cached[1] is not weights:
            cached = (architecture, weights, TrainedNetwork.from_params(architecture, weights))
            self._trained = cached
        return cached[2]

    def _set_network(self, network: TrainedNetwork) -> "BiLSTMClassificationModel":
        """Hold ``network`` in the modelJson and modelWeights Params."""
        self._set(modelJson=network.architecture, modelWeights=network.weights_base64)
        self._trained = (self.getModelJson(), self.getModelWeights(), network)
        return self

    @classmethod
    def _from_saved(cls, stage: SavedStage, network: TrainedNetwork, source: str) -> "BiLSTMClassificationModel":
        """A model from what a store gave back (checked there)."""
        return _restore(cls, stage, source)._set_network(network)

    def weightsBody(self) -> bytes:
        """The weights as an ``.npz`` body."""
        return self.trainedNetwork.weights

    def getKerasModel(self) -> Any:
        """The network, rebuilt from its JSON (uncompiled) with the trained weights."""
        return self.trainedNetwork.rebuild()

    def _predict_spec(self) -> PredictSpec:
        return PredictSpec(
            network=self.trainedNetwork,
            window_size=self.getWindowSize(),
            window_stride=self.getWindowStride(),
            predict_batch_size=self.getPredictBatchSize(),
            num_classes=self.numClasses,
            num_features=self.getNumFeatures(),
            features_col=self.getFeaturesCol(),
            doc_id_col=self.getDocIdCol(),
            position_col=self.getPositionCol(),
            vector_output=USE_ARROW_UDF,
            handle_invalid=self.getHandleInvalid(),
            use_gpu=self.getUseGpu(),
            thresholds=self._checked_thresholds(),
        )

    def _checked_thresholds(self) -> tuple[float, ...] | None:
        if not self.isDefined(self.thresholds):
            return None
        return tuple(check_thresholds(self.getThresholds(), self.numClasses))

    def _transform(self, dataset: DataFrame) -> DataFrame:
        check_connect_support("transform")
        self._check_window_params()
        _check_input_schema(self, dataset.schema, with_label=False)
        outputs = [self.getPredictionCol(), self.getProbabilityCol(), self.getRawPredictionCol()]
        clash = [c for c in outputs if c in dataset.columns]
        if clash:
            raise ValueError(
                f"Output column(s) {clash} already exist in the input. Received columns: "
                f"{dataset.columns}. Drop them or set predictionCol/probabilityCol/rawPredictionCol."
            )
        return label_dataframe(dataset, self._predict_spec(), tuple(outputs))


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _saved_stage(instance: Any) -> SavedStage:
    """The Spark ML metadata record of a stage (initialModel is saved beside it, not in it)."""
    skip = ("initialModel",)
    return SavedStage(
        _class_name(type(instance)),
        instance.uid,
        {p.name: v for p, v in instance._paramMap.items() if p.name not in skip},
        {p.name: v for p, v in instance._defaultParamMap.items() if p.name not in skip},
    )


def _restore(cls: type, stage: SavedStage, source: str) -> Any:
    """A fresh ``cls`` with the saved uid and Params (defaults not saved keep the class's)."""
    instance = cls()
    instance._resetUid(stage.uid)
    try:
        instance._set(**stage.param_map)
        instance._setDefault(**stage.default_param_map)
    except (AttributeError, TypeError, ValueError) as exc:
        raise CorruptModelError(f"{source}: the metadata's Params do not fit {cls.__name__}: {exc}") from exc
    return instance


class _Writer(OverwritingWriter):
    def __init__(self, instance: Any):
        super().__init__()
        self.instance = instance


class _Reader(MLReader):
    def __init__(self, cls: type):
        super().__init__()
        self.cls = cls


class _ModelWriter(_Writer):
    def saveImpl(self, path: str) -> None:
        save_model_directory(
            self.sparkSession, path, _saved_stage(self.instance), self.instance.trainedNetwork,
            self.shouldOverwrite,
        )


class _ModelReader(_Reader):
    def load(self, path: str) -> BiLSTMClassificationModel:
        check_connect_support("loading")
        stage, network = load_model_directory(self.sparkSession, path, _class_name(self.cls))
        return self.cls._from_saved(stage, network, f"Model directory {path!r}")


class _ClassifierWriter(_Writer):
    def saveImpl(self, path: str) -> None:
        instance, spark = self.instance, self.sparkSession
        initial = instance.getInitialModel() if instance.isDefined(instance.initialModel) else None
        save_stage_directory(
            spark, path, _saved_stage(instance), {"hasInitialModel": initial is not None}, self.shouldOverwrite
        )
        if initial is not None:
            writer = initial.write().session(spark)
            (writer.overwrite() if self.shouldOverwrite else writer).save(f"{path}/{INITIAL_MODEL_DIR}")


class _ClassifierReader(_Reader):
    def load(self, path: str) -> BiLSTMClassifier:
        check_connect_support("loading")
        stage, parsed = load_stage_directory(self.sparkSession, path, _class_name(self.cls))
        instance = _restore(self.cls, stage, f"Estimator directory {path!r}")
        if parsed.get("hasInitialModel"):
            initial = BiLSTMClassificationModel.read().session(self.sparkSession).load(
                f"{path}/{INITIAL_MODEL_DIR}"
            )
            instance._set(initialModel=initial)
        return instance
