"""SKOL's real task: label mycology journal paragraphs, evaluated by volume.

Training and evaluation volumes never share a paragraph or an article: the
split is by volume. The BiLSTM is compared with a per-paragraph
``LogisticRegression`` on the same features with the same class weights
(``weightCol``), the baseline the original project settled on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import StringIndexer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from skol_spark.datasets import read_yedda, with_three_classes
from skol_spark.estimator import BiLSTMClassifier
from skol_spark.evaluation import ClassificationReport, classification_report
from skol_spark.text_pipeline import text_feature_stages

__all__ = [
    "TRAIN_VOLUMES",
    "EVAL_VOLUMES",
    "DEFAULT_CLASSIFIER",
    "JournalComparison",
    "compare_on_journals",
]

logger = logging.getLogger("skol_spark")

TRAIN_VOLUMES = (
    "Mycotaxon/Vol054",
    "Mycotaxon/Vol055",
    "Mycotaxon/Vol056",
    "Mycotaxon/Vol057",
    "Mycotaxon/Vol117",
    "Persoonia/Vol016",
)
EVAL_VOLUMES = ("Mycotaxon/Vol058", "Mycotaxon/Vol118", "Persoonia/Vol017")

# Chosen on the training volumes only (see BENCHMARKS.md).
DEFAULT_CLASSIFIER: dict[str, Any] = dict(
    windowSize=50,
    hiddenSize=64,
    numLayers=2,
    dropout=0.3,
    epochs=8,
    batchSize=16,
    learningRate=0.002,
    weightStrategy="balanced",
    seed=0,
)


@dataclass
class JournalComparison:
    """BiLSTM and baseline reports on the evaluation volumes, with the settings used."""

    bilstm: ClassificationReport
    baseline: ClassificationReport
    settings: dict[str, Any]
    fit_seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    model: Any = field(default=None, repr=False)
    features: Any = field(default=None, repr=False)
    eval_features: Any = field(default=None, repr=False)

    def format(self) -> str:
        lines = [
            self.bilstm.format("BiLSTMClassifier (skol_spark)"),
            "",
            self.baseline.format("LogisticRegression per paragraph, same features and weights"),
            "",
            f"macro-F1 gain {self.bilstm.macro_f1 - self.baseline.macro_f1:+.4f}; "
            f"Nomenclature F1 gain {self.bilstm.f1_of('Nomenclature') - self.baseline.f1_of('Nomenclature'):+.4f}; "
            f"Description F1 gain {self.bilstm.f1_of('Description') - self.baseline.f1_of('Description'):+.4f}",
            f"BiLSTM training: {self.fit_seconds:.0f} s",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bilstm": self.bilstm.to_dict(),
            "baseline": self.baseline.to_dict(),
            "settings": self.settings,
            "fit_seconds": self.fit_seconds,
            "history": self.history,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def load_volumes(spark: SparkSession, root: str | os.PathLike, volumes: Sequence[str]) -> DataFrame:
    """Annotated volumes as rows with the raw ``label`` and the 3-class ``label3``."""
    df, problems = read_yedda(spark, root, volumes)
    logger.info("read %s: %s", ", ".join(volumes), problems)
    return with_three_classes(df)


def compare_on_journals(
    spark: SparkSession,
    root: str | os.PathLike,
    train_volumes: Sequence[str] = TRAIN_VOLUMES,
    eval_volumes: Sequence[str] = EVAL_VOLUMES,
    numFeatures: int = 4096,
    layout: bool = True,
    max_docs: int | None = None,
    **classifier_params: Any,
) -> JournalComparison:
    """Fit features on the training volumes, then the BiLSTM and the baseline; evaluate both.

    ``max_docs`` keeps only the first documents of each split (for quick runs);
    ``classifier_params`` override :data:`DEFAULT_CLASSIFIER`.
    """
    params = {**DEFAULT_CLASSIFIER, **classifier_params}
    train = load_volumes(spark, root, train_volumes)
    test = load_volumes(spark, root, eval_volumes)
    if max_docs is not None:
        train, test = _first_docs(train, max_docs), _first_docs(test, max_docs)
    features = Pipeline(
        stages=[
            *text_feature_stages("text", "features", numFeatures, layout),
            StringIndexer(inputCol="label3", outputCol="label_index", stringOrderType="alphabetAsc"),
        ]
    ).fit(train)
    keep = ["doc_id", "line_number", "features", F.col("label_index").alias("label")]
    train_f = features.transform(train).select(*keep).cache()
    test_f = features.transform(test).select(*keep).cache()
    train_f.count(), test_f.count()

    started = time.perf_counter()
    model = BiLSTMClassifier(**params).fit(train_f)
    fit_seconds = time.perf_counter() - started
    labels = model.labels_
    bilstm = classification_report(model.transform(test_f), labels)

    weights = model.getClassWeightsUsed()
    weight = F.element_at(F.array(*[F.lit(w) for w in weights]), F.col("label").cast("int") + 1)
    logistic = LogisticRegression(weightCol="weight", maxIter=100, regParam=1e-4).fit(
        train_f.withColumn("weight", weight)
    )
    baseline = classification_report(logistic.transform(test_f), labels)
    train_f.unpersist()
    settings = {
        "train_volumes": list(train_volumes),
        "eval_volumes": list(eval_volumes),
        "numFeatures": numFeatures,
        "layout": layout,
        "max_docs": max_docs,
        "classifier": params,
        "class_weights": dict(zip(labels, weights)),
    }
    return JournalComparison(
        bilstm, baseline, settings, fit_seconds, model.history, model, features, test_f
    )


def _first_docs(df: DataFrame, n: int) -> DataFrame:
    docs = [r[0] for r in df.select("doc_id").distinct().orderBy("doc_id").limit(n).collect()]
    return df.filter(F.col("doc_id").isin(docs))
