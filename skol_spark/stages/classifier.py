"""The estimator: :class:`BiLSTMClassifier`.

It checks its Params and the input schema, then hands the fit to
:func:`skol_spark.fit.orchestration.fit_network` and wraps the result in a
:class:`~skol_spark.stages.model.BiLSTMClassificationModel`.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml import Estimator
from pyspark.ml.util import MLReadable, MLWritable
from pyspark.sql import DataFrame

from skol_spark.compat.connect import check_connect_support
from skol_spark.stages.io import ClassifierReader, ClassifierWriter
from skol_spark.stages.model import BiLSTMClassificationModel
from skol_spark.stages.params import ESTIMATOR_SETTABLE, _BiLSTMParams, _HasInitialModel, add_setters
from skol_spark.stages.schema import check_batch_input, check_input_schema

__all__ = ["BiLSTMClassifier"]


@add_setters(ESTIMATOR_SETTABLE)
class BiLSTMClassifier(Estimator, _BiLSTMParams, _HasInitialModel, MLWritable, MLReadable):
    """Labels each position of a document with a class-weighted bidirectional LSTM.

    Rows are positions (lines, paragraphs); rows sharing ``docIdCol`` form one
    document, ordered by ``positionCol``. ``fit`` trains on the driver (or,
    with ``numWorkers > 1``, data-parallel on the executors) and returns a
    :class:`BiLSTMClassificationModel` that labels on the executors.

    Parameters
    ----------
    **params
        Any Param by name; each also has ``setX``/``getX``.
        ``explainParams()`` lists them with their docs and defaults:

        - columns: ``featuresCol``, ``labelCol``, ``docIdCol``, ``positionCol``,
          ``labels``, ``predictionCol``, ``probabilityCol``, ``rawPredictionCol``,
          ``handleInvalid``;
        - network: ``windowSize``, ``embeddingSize``, ``hiddenSize``, ``numLayers``,
          ``dropout``, ``outputLayer``, ``ensembleSize``;
        - training: ``epochs``, ``batchSize``, ``learningRate``, ``seed``,
          ``weightStrategy``, ``effectiveNumberBeta``, ``classWeights``,
          ``validationFraction``, ``earlyStoppingPatience``, ``tuneThresholds``,
          ``numWorkers``, ``mlflowLogging``, ``verbose``, ``initialModel``;
        - transform: ``windowStride``, ``predictBatchSize``, ``thresholds``, ``useGpu``,
          ``inferenceEngine``.

    Examples
    --------
    >>> clf = BiLSTMClassifier(windowSize=20, epochs=5)
    >>> model = clf.fit(train_df)                                     # doctest: +SKIP
    >>> model.transform(test_df).select("doc_id", "prediction")       # doctest: +SKIP
    """

    def __init__(self, **params: Any):
        super().__init__()
        self.setParams(**params)

    def setParams(self, **params: Any) -> BiLSTMClassifier:
        """Set Params by name; a value of None leaves that Param as it is."""
        unknown = sorted(name for name in params if not self.hasParam(name))
        if unknown:
            raise TypeError(
                f"Expected Params of BiLSTMClassifier. Received unknown name(s): {unknown}. "
                "explainParams() lists them."
            )
        return self._set(**{k: v for k, v in params.items() if v is not None})

    def write(self) -> Any:
        """An MLWriter: Params as Spark ML metadata, plus initialModel in its own directory."""
        return ClassifierWriter(self)

    @classmethod
    def read(cls) -> Any:
        return ClassifierReader(cls, BiLSTMClassificationModel)

    def _fit(self, dataset: DataFrame) -> BiLSTMClassificationModel:
        from skol_spark.fit.orchestration import fit_network

        check_connect_support("fit")
        check_batch_input(dataset, fitting=True)
        self._validate_params(fitting=True)
        check_input_schema(self, dataset.schema, with_label=True)
        result = fit_network(dataset, self._fit_request())
        model = BiLSTMClassificationModel()
        model._resetUid(self.uid)
        self._copyValues(model)
        model._set(
            labels=result.labels,
            numFeatures=result.num_features,
            classWeightsUsed=result.class_weights,
            trainingHistory=_history_json(result.history),
            ensembleSize=self.effectiveEnsembleSize(),
            validationFraction=self.effectiveValidationFraction(),
        )
        if result.thresholds is not None:
            model._set(thresholds=result.thresholds)
        return model._set_network(result.network)

    def _fit_request(self) -> Any:
        """The Params as the values :func:`~skol_spark.fit.orchestration.fit_network` takes."""
        from skol_spark.fit.orchestration import FitRequest, InitialNetwork

        initial = None
        if self.isDefined(self.initialModel):
            model = self.getInitialModel()
            initial = InitialNetwork(
                network=model.trainedNetwork,
                num_features=model.getNumFeatures(),
                labels=model.labels_,
                output_layer=model.getOutputLayer(),
                shape={name: model.getOrDefault(name)
                       for name in ("hiddenSize", "embeddingSize", "ensembleSize", "numLayers")},
            )
        return FitRequest(
            columns=(self.getDocIdCol(), self.getPositionCol(), self.getLabelCol(), self.getFeaturesCol()),
            labels=self.getLabels() if self.isDefined(self.labels) else None,
            training=dict(
                window_size=self.getWindowSize(),
                hidden_size=self.getHiddenSize(),
                embedding_size=self.getEmbeddingSize(),
                ensemble_size=self.effectiveEnsembleSize(),
                num_layers=self.getNumLayers(),
                dropout=self.getDropout(),
                output_layer=self.getOutputLayer(),
                epochs=self.getEpochs(),
                batch_size=self.getBatchSize(),
                learning_rate=self.getLearningRate(),
                seed=self.getSeed(),
                validation_fraction=self.effectiveValidationFraction(),
                early_stopping_patience=self.getEarlyStoppingPatience(),
                predict_batch_size=self.getPredictBatchSize(),
            ),
            weight_strategy=self.getWeightStrategy(),
            class_weights=self.getClassWeights() if self.isDefined(self.classWeights) else None,
            effective_number_beta=self.getEffectiveNumberBeta(),
            handle_invalid=self.getHandleInvalid(),
            use_gpu=self.getUseGpu(),
            num_workers=self.getNumWorkers(),
            training_engine=self.getTrainingEngine(),
            tune_thresholds=self.getTuneThresholds(),
            thresholds=self.getThresholds() if self.isSet(self.thresholds) else None,
            mlflow_logging=self.getMlflowLogging(),
            verbose=self.getVerbose(),
            params={p.name: v for p, v in self.extractParamMap().items()},
            initial=initial,
        )


def _history_json(history: dict[str, list[float]]) -> str:
    import json

    return json.dumps(history, sort_keys=True)
