"""skol_spark: sequence labeling of documents in Spark with a class-weighted BiLSTM.

>>> from skol_spark import BiLSTMClassifier, BiLSTMClassificationModel, model_from_json
"""

from skol_spark.estimator import BiLSTMClassificationModel, BiLSTMClassifier
from skol_spark.network import WeightedSparseCategoricalCrossentropy, model_from_json

__version__ = "0.1.0"

__all__ = [
    "BiLSTMClassifier",
    "BiLSTMClassificationModel",
    "WeightedSparseCategoricalCrossentropy",
    "model_from_json",
    "__version__",
]
