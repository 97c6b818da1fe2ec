"""Pinned import path: Keras files and architecture JSON saved by skol_spark 0.1 name this module.

Importing it registers skol_spark's Keras objects (package ``skol_spark``), so
``keras.models.load_model(path)`` finds the loss and layers a saved network
names. They live in :mod:`skol_spark.nn.network` and :mod:`skol_spark.nn.crf`.
"""

from skol_spark.nn.crf import CRF
from skol_spark.nn.network import (
    FeatureSlice,
    WeightedSparseCategoricalCrossentropy,
    build_network,
    model_from_json,
)

__all__ = ["CRF", "FeatureSlice", "WeightedSparseCategoricalCrossentropy", "build_network", "model_from_json"]
