"""Per-class precision, recall and F1 from a labelled prediction DataFrame.

The confusion matrix is counted in Spark (one ``groupBy``); only its K x K
cells reach the driver. This is the table SKOL's ``calculate_stats`` printed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame

__all__ = ["ClassificationReport", "classification_report"]


@dataclass(frozen=True)
class ClassificationReport:
    """Metrics from a confusion matrix (rows: true class, columns: predicted)."""

    labels: list[str]
    confusion: np.ndarray

    @property
    def support(self) -> np.ndarray:
        return self.confusion.sum(axis=1)

    @property
    def precision(self) -> np.ndarray:
        predicted = self.confusion.sum(axis=0)
        return np.divide(np.diag(self.confusion), predicted, out=np.zeros(len(self.labels)), where=predicted > 0)

    @property
    def recall(self) -> np.ndarray:
        support = self.support
        return np.divide(np.diag(self.confusion), support, out=np.zeros(len(self.labels)), where=support > 0)

    @property
    def f1(self) -> np.ndarray:
        p, r = self.precision, self.recall
        return np.divide(2 * p * r, p + r, out=np.zeros(len(self.labels)), where=(p + r) > 0)

    @property
    def macro_f1(self) -> float:
        """Mean F1 over classes with at least one true row."""
        present = self.support > 0
        return float(self.f1[present].mean()) if present.any() else 0.0

    @property
    def accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else 0.0

    def f1_of(self, label: str) -> float:
        return float(self.f1[self.labels.index(label)])

    def to_dict(self) -> dict:
        return {
            "labels": self.labels,
            "per_class": {
                name: {
                    "precision": float(p),
                    "recall": float(r),
                    "f1": float(f),
                    "support": int(s),
                }
                for name, p, r, f, s in zip(self.labels, self.precision, self.recall, self.f1, self.support)
            },
            "macro_f1": self.macro_f1,
            "accuracy": self.accuracy,
            "confusion": self.confusion.tolist(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format(self, title: str | None = None) -> str:
        """A fixed-width table: one line per class, then macro-F1 and accuracy."""
        width = max(12, max(len(label) for label in self.labels) + 1)
        lines = [title] if title else []
        lines.append(f"{'class':<{width}} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>9}")
        for name, p, r, f, s in zip(self.labels, self.precision, self.recall, self.f1, self.support):
            lines.append(f"{name:<{width}} {p:>9.4f} {r:>9.4f} {f:>9.4f} {int(s):>9d}")
        lines.append(f"{'macro-F1':<{width}} {'':>9} {'':>9} {self.macro_f1:>9.4f} {int(self.support.sum()):>9d}")
        lines.append(f"{'accuracy':<{width}} {'':>9} {'':>9} {self.accuracy:>9.4f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def classification_report(
    df: DataFrame,
    labels: Sequence[str],
    labelCol: str = "label",
    predictionCol: str = "prediction",
) -> ClassificationReport:
    """Count the confusion matrix of ``df`` in Spark and wrap it in a report.

    Examples
    --------
    >>> report = classification_report(model.transform(test), model.labels_)  # doctest: +SKIP
    >>> print(report)                                                          # doctest: +SKIP
    """
    k = len(labels)
    confusion = np.zeros((k, k), dtype=np.int64)
    for row in df.groupBy(labelCol, predictionCol).count().collect():
        truth, predicted, count = row[0], row[1], row[2]
        if truth is None or predicted is None:
            continue
        if not (0 <= truth < k and 0 <= predicted < k):
            raise ValueError(
                f"Expected {labelCol!r} and {predictionCol!r} in 0..{k - 1} for labels {list(labels)}. "
                f"Received: {labelCol}={truth}, {predictionCol}={predicted}"
            )
        confusion[int(truth), int(predicted)] += count
    return ClassificationReport(list(labels), confusion)
