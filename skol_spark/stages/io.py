"""Saving and loading the stages: the class names saved metadata records, readers and writers.

Saved metadata names ``skol_spark.estimator.BiLSTMClassifier``,
``skol_spark.estimator.BiLSTMClassificationModel`` and
``skol_spark.estimator.MergeLabels`` (pyspark's Pipeline reader imports that
path), whatever module defines the classes: the names are pinned here and
``skol_spark/estimator.py`` keeps the import path alive.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml.util import MLReadable, MLReader, MLWritable

from skol_spark.compat.connect import check_connect_support
from skol_spark.errors import CorruptModelError
from skol_spark.stores.directory import (
    INITIAL_MODEL_DIR,
    OverwritingWriter,
    SavedStage,
    load_model_directory,
    load_stage_directory,
    save_model_directory,
    save_stage_directory,
)

__all__ = [
    "SAVED_CLASS_NAMES", "saved_class_name", "saved_stage", "restore",
    "ParamsPersistence", "set_params", "fitted_model",
]

SAVED_CLASS_NAMES = {
    "BiLSTMClassifier": "skol_spark.estimator.BiLSTMClassifier",
    "BiLSTMClassificationModel": "skol_spark.estimator.BiLSTMClassificationModel",
    "MergeLabels": "skol_spark.estimator.MergeLabels",
    "ProbabilityBlend": "skol_spark.stages.blend.ProbabilityBlend",
    "ProbabilityBlendModel": "skol_spark.stages.blend.ProbabilityBlendModel",
    "FeatureCRF": "skol_spark.skol.feature_crf.FeatureCRF",
    "FeatureCRFModel": "skol_spark.skol.feature_crf.FeatureCRFModel",
}


def saved_class_name(cls: type) -> str:
    """The class name saved metadata records for ``cls`` (a subclass records its own path)."""
    pinned = SAVED_CLASS_NAMES.get(cls.__qualname__)
    if pinned is not None and cls.__module__.startswith("skol_spark."):
        return pinned
    return f"{cls.__module__}.{cls.__qualname__}"


def saved_stage(instance: Any) -> SavedStage:
    """The Spark ML metadata record of a stage (initialModel is saved beside it, not in it)."""
    skip = ("initialModel",)
    return SavedStage(
        saved_class_name(type(instance)),
        instance.uid,
        {p.name: v for p, v in instance._paramMap.items() if p.name not in skip},
        {p.name: v for p, v in instance._defaultParamMap.items() if p.name not in skip},
    )


def restore(cls: type, stage: SavedStage, source: str) -> Any:
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


class ModelWriter(_Writer):
    """Spark ML metadata plus the weights body, checksummed."""

    def saveImpl(self, path: str) -> None:
        save_model_directory(
            self.sparkSession, path, saved_stage(self.instance), self.instance.trainedNetwork,
            self.shouldOverwrite,
        )


class ModelReader(_Reader):
    def load(self, path: str) -> Any:
        check_connect_support("loading")
        stage, network = load_model_directory(self.sparkSession, path, saved_class_name(self.cls))
        return self.cls._from_saved(stage, network, f"Model directory {path!r}")


class ParamsWriter(_Writer):
    """A stage that is only its Params: Spark ML metadata."""

    def saveImpl(self, path: str) -> None:
        save_stage_directory(self.sparkSession, path, saved_stage(self.instance), {}, self.shouldOverwrite)


class ParamsReader(_Reader):
    def load(self, path: str) -> Any:
        check_connect_support("loading")
        stage, _ = load_stage_directory(self.sparkSession, path, saved_class_name(self.cls), "Stage directory")
        return restore(self.cls, stage, f"Stage directory {path!r}")


class ParamsPersistence(MLReadable, MLWritable):
    """Saving and loading for a stage that is only its Params (Spark ML metadata, no body)."""

    def write(self) -> ParamsWriter:
        return ParamsWriter(self)

    @classmethod
    def read(cls) -> ParamsReader:
        return ParamsReader(cls)


def set_params(stage: Any, params: dict[str, Any]) -> None:
    """Set ``params`` on ``stage``; a name it does not have is a TypeError naming the class."""
    unknown = sorted(name for name in params if not stage.hasParam(name))
    if unknown:
        raise TypeError(f"Expected Params of {type(stage).__name__}. Received unknown name(s): {unknown}.")
    stage._set(**params)


def fitted_model(estimator: Any, model_cls: type, **values: Any) -> Any:
    """A ``model_cls`` with the estimator's uid and Params, plus ``values`` (its fitted Params)."""
    model = model_cls()
    model._resetUid(estimator.uid)
    estimator._copyValues(model)
    model._set(**values)
    return model


class ClassifierWriter(_Writer):
    """The estimator's Params as Spark ML metadata, plus initialModel in its own directory."""

    def saveImpl(self, path: str) -> None:
        instance, spark = self.instance, self.sparkSession
        initial = instance.getInitialModel() if instance.isDefined(instance.initialModel) else None
        save_stage_directory(
            spark, path, saved_stage(instance), {"hasInitialModel": initial is not None}, self.shouldOverwrite
        )
        if initial is not None:
            writer = initial.write().session(spark)
            (writer.overwrite() if self.shouldOverwrite else writer).save(f"{path}/{INITIAL_MODEL_DIR}")


class ClassifierReader(_Reader):
    def __init__(self, cls: type, model_cls: type):
        super().__init__(cls)
        self.model_cls = model_cls

    def load(self, path: str) -> Any:
        check_connect_support("loading")
        stage, parsed = load_stage_directory(
            self.sparkSession, path, saved_class_name(self.cls), "Estimator directory"
        )
        instance = restore(self.cls, stage, f"Estimator directory {path!r}")
        if parsed.get("hasInitialModel"):
            initial = self.model_cls.read().session(self.sparkSession).load(f"{path}/{INITIAL_MODEL_DIR}")
            instance._set(initialModel=initial)
        return instance
