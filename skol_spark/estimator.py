"""Pinned import path: saved metadata names ``skol_spark.estimator.<class>``.

pyspark's Pipeline and CrossValidator readers import the class a saved stage
names, and skol_spark's models and estimators record this path
(:data:`skol_spark.stages.io.SAVED_CLASS_NAMES`). The classes live in
:mod:`skol_spark.stages`.
"""

from skol_spark.stages.classifier import BiLSTMClassifier
from skol_spark.stages.labels import MergeLabels
from skol_spark.stages.model import BiLSTMClassificationModel

__all__ = ["BiLSTMClassifier", "BiLSTMClassificationModel", "MergeLabels"]
