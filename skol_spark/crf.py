"""Pinned import path: Keras files saved by skol_spark 0.1 name this module for the ``CRF`` layer.

Importing it registers the layer (package ``skol_spark``). It lives in :mod:`skol_spark.nn.crf`.
"""

from skol_spark.nn.crf import CRF, viterbi_decode

__all__ = ["CRF", "viterbi_decode"]
