"""Class weights from a label distribution (the per-class counts of the training rows).

With ``N`` labelled positions, ``K`` classes and ``n_c`` positions of class ``c``:

==================  ==============================================================
strategy            weight of class ``c``
==================  ==============================================================
``none``            ``1``
``inverse``         ``N / n_c``
``balanced``        ``N / (K * n_c)`` (scikit-learn's "balanced")
``sqrt_inverse``    ``sqrt(N / n_c)``
``effective_number``  ``(1 - beta) / (1 - beta ** n_c)``, scaled to sum to ``K``
                    (Cui et al., "Class-Balanced Loss Based on Effective Number of
                    Samples", CVPR 2019)
==================  ==============================================================

A class with no positions gets weight ``1`` (it contributes nothing to the loss).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["WEIGHT_STRATEGIES", "compute_class_weights", "resolve_class_weights"]

WEIGHT_STRATEGIES = ("none", "inverse", "balanced", "sqrt_inverse", "effective_number")

logger = logging.getLogger(__name__)


def compute_class_weights(
    counts: Sequence[int], strategy: str, beta: float = 0.999
) -> list[float]:
    """Weights by label index from per-class counts, following ``strategy``."""
    if strategy not in WEIGHT_STRATEGIES:
        raise ValueError(
            f"Expected weightStrategy to be one of {', '.join(WEIGHT_STRATEGIES)}. "
            f"Received: {strategy!r}"
        )
    n = np.asarray(counts, dtype=np.float64)
    k = len(n)
    present = n > 0
    weights = np.ones(k)
    total = n.sum()
    if strategy == "inverse":
        weights[present] = total / n[present]
    elif strategy == "balanced":
        weights[present] = total / (k * n[present])
    elif strategy == "sqrt_inverse":
        weights[present] = np.sqrt(total / n[present])
    elif strategy == "effective_number":
        effective = (1.0 - np.power(beta, n[present])) / (1.0 - beta)
        raw = 1.0 / effective
        weights[present] = raw / raw.sum() * present.sum()
    return [float(w) for w in weights]


def resolve_class_weights(
    counts: Sequence[int],
    labels: Sequence[str],
    strategy: str,
    explicit: Mapping[str, float] | None = None,
    beta: float = 0.999,
) -> list[float]:
    """The weights training uses: explicit ones when given, else the strategy's.

    ``explicit`` is keyed by label name or by label index (as a string); classes
    it leaves out get 1.0.
    """
    missing = [labels[i] for i, c in enumerate(counts) if c == 0]
    if missing:
        logger.warning("classes with no training positions: %s", ", ".join(missing))
    if not explicit:
        return compute_class_weights(counts, strategy, beta)
    weights = [1.0] * len(labels)
    for key, weight in explicit.items():
        if key in labels:
            weights[labels.index(key)] = float(weight)
        elif key.lstrip("-").isdigit() and 0 <= int(key) < len(labels):
            weights[int(key)] = float(weight)
        else:
            raise ValueError(
                f"classWeights key {key!r} is not a label. Expected one of the label "
                f"names {list(labels)} or an index 0..{len(labels) - 1}."
            )
    return weights
