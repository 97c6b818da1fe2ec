"""How SKOL's labelers are compared: folds of volumes, and paired bootstrap intervals (numpy only).

**Folds.** A fold trains on some volumes and evaluates on others; a volume is
never split. :func:`lovo_folds` holds out one volume at a time (each fold
trains on all the others); :func:`journal_folds` holds out one journal at a
time (trains on every volume of the other journals), the closest the public
volumes come to a journal never seen.

**Bootstrap.** Paragraphs next to each other are not independent (a
Description follows a Nomenclature), and five Mycotaxon volumes are one file
each, so neither paragraphs nor documents make good resampling units. The
unit here is a *block*: up to ``block_size`` consecutive paragraphs of one
document (about an article's length at 100). :func:`block_confusions` sums a
model's confusion matrix per block; :func:`paired_bootstrap` resamples blocks
with replacement, the same blocks for both models (paired), within each fold
(stratified), and gives the difference of a macro-F1 statistic with its
percentile interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PUBLIC_VOLUMES",
    "DEFAULT_BLOCK_SIZE",
    "lovo_folds",
    "journal_folds",
    "block_confusions",
    "macro_f1_of",
    "BootstrapInterval",
    "paired_bootstrap",
]

# The nine annotated volumes of ../shared/data/skol-annotated, journal/volume.
PUBLIC_VOLUMES = (
    "Mycotaxon/Vol054",
    "Mycotaxon/Vol055",
    "Mycotaxon/Vol056",
    "Mycotaxon/Vol057",
    "Mycotaxon/Vol058",
    "Mycotaxon/Vol117",
    "Mycotaxon/Vol118",
    "Persoonia/Vol016",
    "Persoonia/Vol017",
)

# Consecutive paragraphs resampled together: SKOL's per-article files hold 60-90 paragraphs.
DEFAULT_BLOCK_SIZE = 100


def _check_volumes(volumes: Sequence[str], least: int, what: str) -> tuple[str, ...]:
    volumes = tuple(volumes)
    if len(set(volumes)) != len(volumes):
        raise ValueError(f"Expected distinct volumes. Received: {list(volumes)}")
    if len(volumes) < least:
        raise ValueError(f"Expected at least {least} volumes for {what}. Received: {list(volumes)}")
    return volumes


def lovo_folds(volumes: Sequence[str] = PUBLIC_VOLUMES) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Leave one volume out: ``{held-out volume: (training volumes, (held-out volume,))}`` in order."""
    volumes = _check_volumes(volumes, 2, "leave-one-volume-out")
    return {v: (tuple(u for u in volumes if u != v), (v,)) for v in volumes}


def _journal(volume: str) -> str:
    journal, sep, _ = volume.partition("/")
    if not sep or not journal:
        raise ValueError(f"Expected volumes named journal/volume. Received: {volume!r}")
    return journal


def journal_folds(volumes: Sequence[str] = PUBLIC_VOLUMES) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Leave one journal out: ``{"A -> B": (A's volumes, B's volumes)}``, for each journal B.

    Every volume of the other journals trains; every volume of B is evaluated.
    With two journals these are the two transfer directions.
    """
    volumes = _check_volumes(volumes, 2, "leave-one-journal-out")
    journals = list(dict.fromkeys(_journal(v) for v in volumes))
    if len(journals) < 2:
        raise ValueError(f"Expected volumes of at least two journals. Received: {list(volumes)}")
    folds = {}
    for held_out in journals:
        train = tuple(v for v in volumes if _journal(v) != held_out)
        sources = " + ".join(j for j in journals if j != held_out)
        folds[f"{sources} -> {held_out}"] = (train, tuple(v for v in volumes if _journal(v) == held_out))
    return folds


def block_confusions(
    docs: Sequence[str],
    positions: Sequence[int],
    truth: Sequence[int],
    predicted: Sequence[int],
    num_classes: int,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> tuple[list[tuple[str, int]], np.ndarray]:
    """Per-block confusion matrices of one model's labels.

    A row's block is ``(doc, position // block_size)``. Returns the sorted
    block keys and a ``(blocks, K, K)`` int array (rows truth, columns
    prediction) summing, over the blocks, to the whole confusion matrix.
    """
    if block_size < 1:
        raise ValueError(f"Expected block_size >= 1. Received: {block_size}")
    n = len(docs)
    if not (len(positions) == len(truth) == len(predicted) == n):
        raise ValueError(
            "Expected docs, positions, truth and predicted of one length. Received: "
            f"{n}, {len(positions)}, {len(truth)}, {len(predicted)}"
        )
    keys = [(str(d), int(p) // block_size) for d, p in zip(docs, positions)]
    ordered = sorted(set(keys))
    index = {key: i for i, key in enumerate(ordered)}
    block = np.fromiter((index[k] for k in keys), dtype=np.int64, count=n)
    truth_arr = np.asarray(truth, dtype=np.int64)
    predicted_arr = np.asarray(predicted, dtype=np.int64)
    for name, values in (("truth", truth_arr), ("predicted", predicted_arr)):
        if n and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"Expected {name} labels in [0, {num_classes}). Received: {values.min()}..{values.max()}")
    flat = (block * num_classes + truth_arr) * num_classes + predicted_arr
    counts = np.bincount(flat, minlength=len(ordered) * num_classes * num_classes)
    return ordered, counts.reshape(len(ordered), num_classes, num_classes)


def macro_f1_of(confusion: np.ndarray) -> np.ndarray:
    """Macro-F1 of ``(..., K, K)`` confusion matrices over the classes with at least one true row,
    as :class:`skol_spark.stages.evaluation.ClassificationReport` counts it."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    support = confusion.sum(axis=-1)
    called = confusion.sum(axis=-2)
    denominator = support + called
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    present = support > 0
    f1 = np.where(present, f1, 0.0)
    return f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


@dataclass(frozen=True)
class BootstrapInterval:
    """``a - b`` of a statistic on the data as it is, and its percentile interval over resamples.

    ``level`` is the interval's coverage (0.95); ``resamples`` how many were
    drawn; ``units`` the blocks resampled (over all folds).
    """

    difference: float
    low: float
    high: float
    level: float
    resamples: int
    units: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def format(self) -> str:
        return f"{self.difference:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"

    def to_dict(self) -> dict[str, float | int]:
        return {"difference": self.difference, "low": self.low, "high": self.high, "level": self.level,
                "resamples": self.resamples, "units": self.units}


def _fold_statistic(per_fold: list[np.ndarray], statistic: str) -> np.ndarray:
    """Fold confusions ``[(R, K, K), ...]`` -> ``(R,)``: the mean of per-fold macro-F1s, or the
    macro-F1 of the pooled confusion."""
    if statistic == "mean":
        return np.mean([macro_f1_of(c) for c in per_fold], axis=0)
    return macro_f1_of(np.sum(per_fold, axis=0))


def paired_bootstrap(
    a: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    b: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    statistic: str = "mean",
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapInterval:
    """Paired, fold-stratified block bootstrap of macro-F1(a) - macro-F1(b).

    ``a`` and ``b`` hold, per fold (same keys or order), the two models'
    ``(blocks, K, K)`` block confusions over the *same* blocks, or
    ``(seeds, blocks, K, K)`` for a model run with several seeds, whose
    macro-F1 is then averaged over its seeds in every resample. Each resample
    draws, in each fold, as many blocks as it has, with replacement; both
    models see the same draw. ``statistic``: ``"mean"``, the mean over folds
    of each fold's macro-F1 (a leave-one-volume-out mean), or ``"pooled"``,
    the macro-F1 of all folds' rows together.
    """
    if statistic not in ("mean", "pooled"):
        raise ValueError(f"Expected statistic 'mean' or 'pooled'. Received: {statistic!r}")
    if not 0 < level < 1:
        raise ValueError(f"Expected level in (0, 1). Received: {level}")
    if resamples < 1:
        raise ValueError(f"Expected resamples >= 1. Received: {resamples}")
    if isinstance(a, Mapping) != isinstance(b, Mapping) or len(a) != len(b) or not len(a):
        raise ValueError("Expected a and b to hold the same folds, at least one.")
    if isinstance(a, Mapping):
        if set(a) != set(b):
            raise ValueError(f"Expected a and b to hold the same folds. Received: {sorted(a)} and {sorted(b)}")
        keys = sorted(a)
        folds_a, folds_b = [np.asarray(a[k]) for k in keys], [np.asarray(b[k]) for k in keys]
    else:
        folds_a, folds_b = [np.asarray(x) for x in a], [np.asarray(x) for x in b]
    folds_a = [x if x.ndim == 4 else x[None] for x in folds_a]
    folds_b = [x if x.ndim == 4 else x[None] for x in folds_b]
    for x, y in zip(folds_a, folds_b):
        if x.shape[1:] != y.shape[1:]:
            raise ValueError(
                f"Expected both models' block confusions of a fold to have one shape. Received: {x.shape[1:]} "
                f"and {y.shape[1:]}"
            )
    rng = np.random.default_rng(seed)
    # (R, blocks) multiplicities per fold: how often each block is drawn.
    draws = [rng.multinomial(x.shape[1], np.full(x.shape[1], 1.0 / x.shape[1]), size=resamples)
             for x in folds_a]

    def resampled(folds: list[np.ndarray]) -> np.ndarray:
        # (seeds, R, K, K) per fold -> statistic per seed -> averaged over seeds: (R,)
        per_fold = [np.einsum("rb,sbij->srij", w, x) for w, x in zip(draws, folds)]
        return _fold_statistic(per_fold, statistic).mean(axis=0)

    def observed(folds: list[np.ndarray]) -> float:
        return float(_fold_statistic([x.sum(axis=1) for x in folds], statistic).mean())

    differences = resampled(folds_a) - resampled(folds_b)
    tail = (1 - level) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    return BootstrapInterval(
        observed(folds_a) - observed(folds_b), float(low), float(high), level, resamples,
        sum(x.shape[1] for x in folds_a),
    )
