"""The fitted model: :class:`BiLSTMClassificationModel`, a Transformer holding its network as Params.

``transform`` hands labeling to :func:`skol_spark.transform.udf.label_dataframe`;
saving and loading go through :mod:`skol_spark.stages.io` and the stores,
which take a :class:`~skol_spark.nn.trained_network.TrainedNetwork` plus a
:class:`~skol_spark.stores.directory.SavedStage` and never import this class.
"""

from __future__ import annotations

import json
from typing import Any

from pyspark.ml import Model
from pyspark.ml.util import MLReadable, MLWritable
from pyspark.sql import DataFrame

from skol_spark.compat.connect import check_connect_support
from skol_spark.core.devices import INFERENCE_ENGINES
from skol_spark.core.thresholds import check_thresholds
from skol_spark.nn.trained_network import TrainedNetwork
from skol_spark.stages.io import ModelReader, ModelWriter, restore, saved_class_name, saved_stage
from skol_spark.stages.params import (
    INFERENCE_ENGINE_CONF,
    MODEL_SETTABLE,
    _BiLSTMParams,
    _FittedNetworkParams,
    add_setters,
)
from skol_spark.stages.schema import check_input_schema, check_output_columns
from skol_spark.stores.directory import SavedStage
from skol_spark.transform.predict import PredictSpec
from skol_spark.transform.udf import USE_ARROW_UDF, label_dataframe

__all__ = ["BiLSTMClassificationModel"]


@add_setters(MODEL_SETTABLE)
class BiLSTMClassificationModel(Model, _BiLSTMParams, _FittedNetworkParams, MLWritable, MLReadable):
    """A fitted :class:`BiLSTMClassifier`: the network's JSON and weights as Params.

    ``transform`` groups rows by document on the executors, rebuilds the
    network once per Python worker, and adds ``predictionCol`` (double),
    ``probabilityCol`` and ``rawPredictionCol`` (log-probabilities, Vectors) to
    every input row. The output works with ``MulticlassClassificationEvaluator``.
    The column Params, ``windowStride``, ``predictBatchSize``, ``thresholds``,
    ``handleInvalid``, ``useGpu`` and ``inferenceEngine`` can be set on the model; the training
    Params record how it was trained.

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
        return ModelWriter(self)

    @classmethod
    def read(cls) -> Any:
        return ModelReader(cls)

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
        from skol_spark.stores.redis_store import REDIS_CHUNK_BYTES, save_to_redis

        save_to_redis(
            saved_stage(self), self.trainedNetwork, client_or_url, key, ttl, overwrite,
            chunkBytes or REDIS_CHUNK_BYTES,
        )

    @classmethod
    def loadFromRedis(cls, client_or_url: Any, key: str) -> BiLSTMClassificationModel:
        """Load the model stored under ``key``, verifying class, checksum and architecture."""
        from skol_spark.stores.redis_store import load_from_redis

        stage, network = load_from_redis(client_or_url, key, saved_class_name(cls))
        return cls._from_saved(stage, network, f"Redis key {key!r}")

    def saveKeras(self, path: str) -> None:
        """Write the network as a Keras file (``.keras``, or ``.h5`` when the path ends so).

        The network is compiled with :class:`WeightedSparseCategoricalCrossentropy`
        and the class weights training used, so ``keras.models.load_model(path)``
        returns it compiled once ``skol_spark.network`` is imported, and
        ``load_model(path, compile=False)`` works without skol_spark.
        A CRF network (``outputLayer="crf"``) carries the same loss applied to
        its marginals (not the CRF's sequence NLL), and its ``CRF`` layer needs
        ``skol_spark.crf`` imported to load, compiled or not.
        """
        from skol_spark.stores.keras_files import save_keras_file

        weights = self.getClassWeightsUsed() if self.isDefined(self.classWeightsUsed) else [1.0] * self.numClasses
        save_keras_file(self.trainedNetwork, path, weights, self.getLearningRate())

    @classmethod
    def fromKeras(
        cls,
        path_or_model: Any,
        labels: list[str],
        windowSize: int | None = None,
        classWeightsUsed: list[float] | None = None,
        **params: Any,
    ) -> BiLSTMClassificationModel:
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
        from skol_spark.stores.keras_files import check_keras_network

        network, implied = check_keras_network(path_or_model, labels, windowSize, classWeightsUsed)
        model = cls()
        model._set(**{**params, **implied})
        return model._set_network(network)

    def clearThresholds(self) -> BiLSTMClassificationModel:
        """Decide by the largest probability again."""
        self.clear(self.thresholds)
        return self

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

    def _set_network(self, network: TrainedNetwork) -> BiLSTMClassificationModel:
        """Hold ``network`` in the modelJson and modelWeights Params."""
        self._set(modelJson=network.architecture, modelWeights=network.weights_base64)
        self._trained = (self.getModelJson(), self.getModelWeights(), network)
        return self

    @classmethod
    def _from_saved(cls, stage: SavedStage, network: TrainedNetwork, source: str) -> BiLSTMClassificationModel:
        """A model from what a store gave back (checked there)."""
        return restore(cls, stage, source)._set_network(network)

    def weightsBody(self) -> bytes:
        """The weights as an ``.npz`` body."""
        return self.trainedNetwork.weights

    def getKerasModel(self) -> Any:
        """The network, rebuilt from its JSON (uncompiled) with the trained weights."""
        return self.trainedNetwork.rebuild()

    def _predict_spec(self, session_engine: str | None = None) -> PredictSpec:
        """What the executors need; ``session_engine`` is the session's ``INFERENCE_ENGINE_CONF``
        (its "keras" overrides the inferenceEngine Param)."""
        engine = self.getInferenceEngine()
        if session_engine is not None:
            if session_engine not in INFERENCE_ENGINES:
                raise ValueError(
                    f"Expected the Spark conf {INFERENCE_ENGINE_CONF} to be one of "
                    f"{', '.join(map(repr, INFERENCE_ENGINES))}. Received: {session_engine!r}. "
                    "Set it to 'keras' to force the Keras path, or unset it."
                )
            engine = "keras" if session_engine == "keras" else engine
        thresholds = None
        if self.isDefined(self.thresholds):
            thresholds = tuple(check_thresholds(self.getThresholds(), self.numClasses))
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
            thresholds=thresholds,
            inference_engine=engine,
        )

    def _transform(self, dataset: DataFrame) -> DataFrame:
        check_connect_support("transform")
        self._validate_params(fitting=False)
        check_input_schema(self, dataset.schema, with_label=False)
        outputs = (self.getPredictionCol(), self.getProbabilityCol(), self.getRawPredictionCol())
        check_output_columns(dataset.columns, list(outputs))
        session_engine = dataset.sparkSession.conf.get(INFERENCE_ENGINE_CONF, None)
        return label_dataframe(dataset, self._predict_spec(session_engine), outputs)
