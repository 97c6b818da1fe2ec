"""The feature-rich linear-chain CRF as a Pipeline stage: :class:`FeatureCRF` and :class:`FeatureCRFModel`.

The recipe is :data:`skol_spark.skol.crf_baseline.FEATURE_CRF` (hand-made
paragraph features with the neighbours' cues, L-BFGS). ``fit`` collects the
labelled documents to the driver, as the BiLSTM's driver fit does, and trains
crfsuite there; the model file is kept, base64-encoded, as a Param, so
the fitted stage is self-contained and saves with a Pipeline. ``transform``
groups rows by document on the executors (the BiLSTM's plan: repartition by
document, sort by position), computes each document's features and the
CRF's per-paragraph marginals in an iterator pandas UDF, and adds
``probabilityCol`` (a Vector over the class indices 0..K-1) and
``predictionCol`` (the class of largest marginal) to every row.

Its marginals are what :class:`skol_spark.stages.blend.ProbabilityBlend`
combines with the BiLSTM's probabilities in
:func:`skol_spark.skol.text_pipeline.skol_pipeline`. It trains and tags with
python-crfsuite (a dependency of skol_spark), on the driver and the executors.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasLabelCol, HasPredictionCol, HasProbabilityCol
from pyspark.sql import DataFrame

from skol_spark.skol.crf_baseline import FEATURE_CRF, CRFSettings, document_features
from skol_spark.stages.blend import check_class_indices
from skol_spark.stages.io import ParamsPersistence, fitted_model, set_params

__all__ = ["FeatureCRF", "FeatureCRFModel", "train_crf", "label_frames"]

CRF_STAGE_MISSING = (
    "FeatureCRF needs python-crfsuite, a dependency of skol_spark, on the driver and the executors. "
    "Install it with: pip install python-crfsuite"
)


def _pycrfsuite() -> Any:
    try:
        import pycrfsuite
    except ImportError as exc:
        raise ImportError(CRF_STAGE_MISSING) from exc
    return pycrfsuite


def train_crf(texts: list[list[str]], labels: list[list[str]], settings: CRFSettings) -> bytes:
    """The crfsuite model file of a linear-chain CRF fitted on documents of paragraphs (L-BFGS,
    every possible transition: sklearn-crfsuite's ``CRF(all_possible_transitions=True)``)."""
    pycrfsuite = _pycrfsuite()
    trainer = pycrfsuite.Trainer(algorithm="lbfgs", verbose=False)
    params = {"c1": settings.c1, "c2": settings.c2, "feature.possible_transitions": True}
    if settings.max_iterations is not None:
        params["max_iterations"] = settings.max_iterations
    trainer.set_params(params)
    for document, document_labels in zip(texts, labels):
        trainer.append(document_features(document, settings), document_labels)
    with tempfile.TemporaryDirectory(prefix="skol-crf-") as directory:
        path = os.path.join(directory, "model.crfsuite")
        trainer.train(path)
        with open(path, "rb") as handle:
            return handle.read()


class _CRFParams(HasLabelCol, HasPredictionCol, HasProbabilityCol):
    textCol: Param[str] = Param(
        Params._dummy(), "textCol", "the paragraph text.", typeConverter=TypeConverters.toString
    )
    docIdCol: Param[str] = Param(
        Params._dummy(), "docIdCol", "the document key.", typeConverter=TypeConverters.toString
    )
    positionCol: Param[str] = Param(
        Params._dummy(), "positionCol", "the paragraph's position in its document (orders the sequence).",
        typeConverter=TypeConverters.toString,
    )
    c1: Param[float] = Param(Params._dummy(), "c1", "L1 regularization (>= 0).", typeConverter=TypeConverters.toFloat)
    c2: Param[float] = Param(Params._dummy(), "c2", "L2 regularization (>= 0).", typeConverter=TypeConverters.toFloat)
    maxIter: Param[int] = Param(
        Params._dummy(), "maxIter", "L-BFGS iterations (>= 1).", typeConverter=TypeConverters.toInt
    )

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._setDefault(
            textCol="text", labelCol="label", docIdCol="doc_id", positionCol="line_number",
            predictionCol="crfPrediction", probabilityCol="crfProbability",
            c1=FEATURE_CRF.c1, c2=FEATURE_CRF.c2, maxIter=FEATURE_CRF.max_iterations,
        )

    def getTextCol(self) -> str:
        return self.getOrDefault(self.textCol)

    def getDocIdCol(self) -> str:
        return self.getOrDefault(self.docIdCol)

    def getPositionCol(self) -> str:
        return self.getOrDefault(self.positionCol)

    def settings(self) -> CRFSettings:
        """The crf_baseline settings these Params stand for."""
        c1, c2, iterations = self.getOrDefault(self.c1), self.getOrDefault(self.c2), self.getOrDefault(self.maxIter)
        if c1 < 0 or c2 < 0 or iterations < 1:
            raise ValueError(
                f"Expected FeatureCRF c1 >= 0, c2 >= 0 and maxIter >= 1. Received: {c1}, {c2}, {iterations}"
            )
        return CRFSettings(features=FEATURE_CRF.features, c1=c1, c2=c2, max_iterations=iterations)

    def _require(self, dataset: DataFrame, columns: list[str], name: str) -> None:
        missing = [c for c in columns if c not in dataset.columns]
        if missing:
            raise ValueError(f"{name}: the input has no column(s) {missing}. It has: {dataset.columns}")


class FeatureCRF(Estimator, _CRFParams, ParamsPersistence):
    """A linear-chain CRF over each document's paragraphs, with hand-made features (see the module doc).

    ``labelCol`` holds class indices 0..K-1 (a ``StringIndexer``'s output);
    rows with a null label are left out of the fit.

    Examples
    --------
    >>> crf = FeatureCRF(textCol="text", labelCol="label_index").fit(train)   # doctest: +SKIP
    >>> crf.transform(test).select("crfPrediction", "crfProbability")          # doctest: +SKIP
    """

    def __init__(self, **params: Any):
        super().__init__()
        set_params(self, params)

    def _fit(self, dataset: DataFrame) -> FeatureCRFModel:
        from pyspark.sql import functions as F

        from skol_spark.skol.crf_baseline import collect_documents

        settings = self.settings()
        _pycrfsuite()
        label = self.getLabelCol()
        self._require(dataset, [self.getTextCol(), label, self.getDocIdCol(), self.getPositionCol()], "FeatureCRF")
        labelled = dataset.where(F.col(f"`{label}`").isNotNull())
        documents = collect_documents(labelled, self.getTextCol(), label, self.getDocIdCol(), self.getPositionCol())
        values = {y for doc in documents.labels for y in doc}
        if not values:
            raise ValueError(f"FeatureCRF needs labelled rows to fit; {label!r} has none.")
        check_class_indices(values, "FeatureCRF")
        labels = [[str(int(y)) for y in doc] for doc in documents.labels]
        blob = train_crf(documents.texts, labels, settings)
        return fitted_model(self, FeatureCRFModel, crfModel=base64.b64encode(blob).decode("ascii"),
                            numClasses=int(max(values)) + 1)


class FeatureCRFModel(Model, _CRFParams, ParamsPersistence):
    """A fitted :class:`FeatureCRF`: the crfsuite model file (base64) and the number of classes as Params."""

    _stored_as_params = True  # a PipelineModel in Redis records it as its Params (stages.pipeline_store)

    crfModel: Param[str] = Param(
        Params._dummy(), "crfModel", "the crfsuite model file, base64-encoded.", typeConverter=TypeConverters.toString
    )
    numClasses: Param[int] = Param(
        Params._dummy(), "numClasses", "K: probabilities are over class indices 0..K-1.",
        typeConverter=TypeConverters.toInt,
    )

    def getNumClasses(self) -> int:
        return self.getOrDefault(self.numClasses)

    def marginals(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), K)`` marginals of one document's paragraphs, in order, on this process."""
        return _document_marginals(_tagger(self.getOrDefault(self.crfModel)), texts, self.getNumClasses(),
                                   self.settings())

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        from skol_spark.compat.executors import on_executors
        from skol_spark.compat.shims import array_to_vector
        from skol_spark.transform.udf import group_documents

        doc, position, text = self.getDocIdCol(), self.getPositionCol(), self.getTextCol()
        self._require(dataset, [doc, position, text], "FeatureCRFModel")
        # What Spark ships: the model file, K and the settings; an executor that cannot import
        # skol_spark fails naming its Python (as the BiLSTM's transform does).
        label = on_executors(__name__, "label_frames", self.getOrDefault(self.crfModel), self.getNumClasses(),
                             self.settings(), types=(Iterator[pd.DataFrame], Iterator[pd.Series]))
        udf = F.pandas_udf(label, T.ArrayType(T.DoubleType()))
        scored = "__skol_spark_crf"
        out = group_documents(dataset, doc, position).withColumn(
            scored, udf(F.struct(F.col(f"`{doc}`").alias("doc"), F.col(f"`{text}`").alias("text")))
        )
        winner = F.array_position(F.col(scored), F.array_max(F.col(scored))) - 1
        return out.select(
            *[F.col(f"`{c}`") for c in dataset.columns if c not in (self.getPredictionCol(), self.getProbabilityCol())],
            winner.cast("double").alias(self.getPredictionCol()),
            array_to_vector(F.col(scored)).alias(self.getProbabilityCol()),
        )


# One tagger per model and Python worker: opening parses the model file.
_TAGGERS: dict[str, tuple[Any, bytes]] = {}


def _tagger(blob: str) -> Any:
    pycrfsuite = _pycrfsuite()
    key = hashlib.sha256(blob.encode("ascii")).hexdigest()
    cached = _TAGGERS.get(key)
    if cached is None:
        model = base64.b64decode(blob)
        tagger = pycrfsuite.Tagger()
        tagger.open_inmemory(model)
        _TAGGERS.clear()
        # The tagger reads the model's bytes in place: they live as long as it does.
        cached = _TAGGERS[key] = (tagger, model)
    return cached[0]


def _document_marginals(tagger: Any, texts: list[str], k: int, settings: CRFSettings) -> np.ndarray:
    out = np.zeros((len(texts), k))
    if not texts:
        return out
    tagger.set(document_features(texts, settings))
    known = [(int(name), name) for name in tagger.labels()]
    for i in range(len(texts)):
        for index, name in known:
            out[i, index] = tagger.marginal(name, i)
    return out


def label_frames(frames: Iterator[pd.DataFrame], blob: str, k: int, settings: CRFSettings) -> Iterator[pd.Series]:
    """Executor side: rows arrive grouped by document and in position order, a document possibly
    split across frames; each document is labelled whole, and the outputs keep the input's order."""
    tagger = _tagger(blob)
    pending: list[pd.DataFrame] = []
    for frame in frames:
        pending.append(frame)
        rows = pd.concat(pending, ignore_index=True) if len(pending) > 1 else frame
        last = rows["doc"].iloc[-1] if len(rows) else None
        done = rows[rows["doc"] != last] if last is not None else rows
        pending[:] = [rows[len(done):]]
        if len(done):
            yield _label_documents(tagger, done, k, settings)
    if pending and len(pending[0]):
        yield _label_documents(tagger, pending[0], k, settings)


def _label_documents(tagger: Any, rows: pd.DataFrame, k: int, settings: CRFSettings) -> pd.Series:
    texts = rows["text"].fillna("").astype(str).tolist()
    docs = rows["doc"].tolist()
    out: list[list[float]] = []
    start = 0
    for end in range(1, len(docs) + 1):
        if end == len(docs) or docs[end] != docs[start]:
            out.extend(_document_marginals(tagger, texts[start:end], k, settings).tolist())
            start = end
    return pd.Series(out)
