"""The decision rule: which class a position gets from its probabilities.

Without thresholds the prediction is the most probable class. With
``thresholds`` (Spark ML's meaning, as ``ProbabilisticClassificationModel``'s
Param) it is the class with the largest ``p / t``: one ``t`` per class, all
``>= 0`` and at most one ``0`` (a class whose ``t`` is 0 wins wherever its
probability is above 0).

A network trained with class weights predicts rare classes generously: its
errors on SKOL's journals are false positives of Nomenclature and Description.
:func:`tune_thresholds` chooses the thresholds that maximise macro-F1 on
validation rows, by coordinate ascent over per-class log offsets, so that
the decision, not the training, trades recall for precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["check_thresholds", "macro_f1", "predict_with_thresholds", "tune_thresholds"]

# Candidate log offsets of one class's score (thresholds from e^-4 to e^4 relative
# to the others), tried by coordinate ascent.
_LOG_OFFSETS = np.round(np.arange(-4.0, 4.0001, 0.1), 10)


def check_thresholds(thresholds: Sequence[float], num_classes: int | None = None) -> list[float]:
    """``thresholds`` as floats, after Spark ML's rules (and one per class when ``num_classes`` is given)."""
    values = [float(t) for t in thresholds]
    if not values or any(not np.isfinite(t) or t < 0 for t in values) or sum(t == 0 for t in values) > 1:
        raise ValueError(
            "Expected thresholds to be finite values >= 0 with at most one 0 (the class with the "
            f"largest probability / threshold is predicted). Received: thresholds={list(thresholds)!r}"
        )
    if num_classes is not None and len(values) != num_classes:
        raise ValueError(
            f"Expected one threshold per class ({num_classes}). Received: {len(values)} thresholds "
            f"{values}. Set thresholds to a list of {num_classes} values, or clear it."
        )
    return values


def predict_with_thresholds(probs: np.ndarray, thresholds: Sequence[float] | None = None) -> np.ndarray:
    """Class index per row of ``probs``: the argmax of ``p / t`` (of ``p`` without thresholds)."""
    if thresholds is None:
        return probs.argmax(axis=1)
    t = np.asarray(thresholds, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(t > 0, probs / np.where(t > 0, t, 1.0), np.where(probs > 0, np.inf, 0.0))
    return scores.argmax(axis=1)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(macro-F1 over classes present in truth or prediction, accuracy)."""
    confusion = np.bincount(
        np.asarray(y_true) * num_classes + np.asarray(y_pred), minlength=num_classes**2
    ).reshape(num_classes, num_classes)
    tp = np.diag(confusion).astype(float)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=present)
    accuracy = tp.sum() / max(1, confusion.sum())
    return float(f1[present].mean()) if present.any() else 0.0, float(accuracy)


def tune_thresholds(
    probs: np.ndarray, labels: np.ndarray, num_classes: int, rounds: int = 3
) -> tuple[list[float], float, float]:
    """Thresholds maximising macro-F1 of ``labels`` from ``probs``; (thresholds, F1 before, F1 after).

    Coordinate ascent over each class's log offset, a few rounds: a class's
    offset moves only for a strictly better score and, among equally good
    offsets, to the one nearest its current value, so that flat stretches of a
    small validation set do not push thresholds to extremes. The thresholds
    are ``exp(-offset)`` scaled to sum to 1; all equal when nothing helps.
    """
    labels = np.asarray(labels, dtype=np.int64)
    log_p = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))
    offsets = np.zeros(num_classes)
    before = best = macro_f1(labels, log_p.argmax(axis=1), num_classes)[0]
    for _ in range(rounds):
        moved = False
        for c in range(num_classes):
            trial = offsets.copy()
            scores = []
            for value in _LOG_OFFSETS:
                trial[c] = value
                scores.append(macro_f1(labels, (log_p + trial).argmax(axis=1), num_classes)[0])
            scores = np.asarray(scores)
            top = scores.max()
            if top > best + 1e-12:
                candidates = _LOG_OFFSETS[scores == top]
                offsets[c] = candidates[np.argmin(np.abs(candidates - offsets[c]))]
                best, moved = top, True
        if not moved:
            break
    thresholds = np.exp(-(offsets - offsets.max()))
    return (thresholds / thresholds.sum()).tolist(), before, best
