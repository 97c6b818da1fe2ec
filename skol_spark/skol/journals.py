"""SKOL's real task: label mycology journal paragraphs, evaluated by volume.

Training and evaluation volumes never share a paragraph or an article: the
split is by volume. Three models are compared on the same split: the BiLSTM;
a linear-chain CRF over paragraphs (:mod:`skol_spark.skol.crf_baseline`, its own
hand-written features, trained on the driver); and a per-paragraph
``LogisticRegression`` on the BiLSTM's features with the same class weights
(``weightCol``), the baseline the original project settled on.

:func:`transfer_on_journals` repeats the comparison across journals: trained
on Mycotaxon's training volumes, evaluated on Persoonia's evaluation volume,
and the reverse (:data:`TRANSFER_SPLITS`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import StringIndexer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from skol_spark.core.class_weights import compute_class_weights
from skol_spark.skol.crf_baseline import CRFSettings, collect_sequences, crf_confusion, fit_crf
from skol_spark.skol.datasets import read_yedda, with_three_classes
from skol_spark.skol.text_pipeline import DEFAULT_NUM_FEATURES, text_feature_stages
from skol_spark.stages.classifier import BiLSTMClassifier
from skol_spark.stages.evaluation import ClassificationReport, classification_report

__all__ = [
    "TRAIN_VOLUMES",
    "EVAL_VOLUMES",
    "TRANSFER_SPLITS",
    "MODELS",
    "JournalComparison",
    "compare_on_journals",
    "transfer_on_journals",
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

# Journal transfer: one journal's training volumes in, the other journal's
# evaluation volumes out, so no evaluated volume is ever one settings are chosen on.
TRANSFER_SPLITS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Mycotaxon -> Persoonia": (
        tuple(v for v in TRAIN_VOLUMES if v.startswith("Mycotaxon/")),
        tuple(v for v in EVAL_VOLUMES if v.startswith("Persoonia/")),
    ),
    "Persoonia -> Mycotaxon": (
        tuple(v for v in TRAIN_VOLUMES if v.startswith("Persoonia/")),
        tuple(v for v in EVAL_VOLUMES if v.startswith("Mycotaxon/")),
    ),
}

# The compared models, in table order.
MODELS = ("bilstm", "crf", "logistic")
MODEL_TITLES = {
    "bilstm": "BiLSTMClassifier (skol_spark)",
    "crf": "linear-chain CRF (sklearn-crfsuite, own features)",
    "logistic": "LogisticRegression per paragraph, same features and weights",
}



@dataclass
class JournalComparison:
    """Reports of the compared models on the evaluation volumes, with the settings used.

    ``reports`` and ``fit_seconds`` are keyed by the names in :data:`MODELS`
    (those that ran); ``bilstm``, ``crf`` and ``baseline`` (the logistic
    regression) are shortcuts, None for a model that did not run.
    """

    reports: dict[str, ClassificationReport]
    settings: dict[str, Any]
    fit_seconds: dict[str, float]
    history: dict[str, list[float]] = field(default_factory=dict)
    model: Any = field(default=None, repr=False)
    features: Any = field(default=None, repr=False)
    eval_features: Any = field(default=None, repr=False)

    @property
    def bilstm(self) -> ClassificationReport | None:
        return self.reports.get("bilstm")

    @property
    def crf(self) -> ClassificationReport | None:
        return self.reports.get("crf")

    @property
    def baseline(self) -> ClassificationReport | None:
        return self.reports.get("logistic")

    def table(self) -> str:
        """One line per model: macro-F1, F1 per class, accuracy, fit seconds."""
        labels = next(iter(self.reports.values())).labels
        header = f"{'model':<10} {'macro-F1':>9} " + " ".join(f"{label:>16}" for label in labels)
        lines = [header + f" {'accuracy':>9} {'fit s':>7}"]
        for name, report in self.reports.items():
            f1 = " ".join(f"{report.f1_of(label):>16.4f}" for label in labels)
            lines.append(
                f"{name:<10} {report.macro_f1:>9.4f} {f1} {report.accuracy:>9.4f} "
                f"{self.fit_seconds.get(name, float('nan')):>7.1f}"
            )
        return "\n".join(lines)

    def format(self) -> str:
        lines = [self.table(), ""]
        for name, report in self.reports.items():
            lines += [report.format(MODEL_TITLES[name]), ""]
        if self.bilstm is not None:
            for name in ("crf", "logistic"):
                other = self.reports.get(name)
                if other is not None:
                    lines.append(
                        f"BiLSTM vs {name}: macro-F1 gain {self.bilstm.macro_f1 - other.macro_f1:+.4f}; "
                        f"Nomenclature F1 gain {self.bilstm.f1_of('Nomenclature') - other.f1_of('Nomenclature'):+.4f}; "
                        f"Description F1 gain {self.bilstm.f1_of('Description') - other.f1_of('Description'):+.4f}"
                    )
        return "\n".join(lines).rstrip()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "settings": self.settings,
            "fit_seconds": self.fit_seconds,
            "history": self.history,
        }
        # The logistic regression is stored under "baseline", the key readers of this JSON use.
        for name, key in (("bilstm", "bilstm"), ("crf", "crf"), ("logistic", "baseline")):
            if name in self.reports:
                out[key] = self.reports[name].to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def load_volumes(spark: SparkSession, root: str | os.PathLike, volumes: Sequence[str]) -> DataFrame:
    """Annotated volumes as rows with the raw ``label`` and the 3-class ``label3``.

    The journals' unclosed blocks (68, counted in their README) are left out, as they
    have been in every measurement of BENCHMARKS.md.
    """
    df, problems = read_yedda(spark, root, volumes, unclosed="skip")
    logger.info("read %s: %s", ", ".join(volumes), problems)
    return with_three_classes(df)


def _check_models(models: Sequence[str]) -> tuple[str, ...]:
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(
            f"Expected models to be a non-empty subset of {', '.join(MODELS)}. Received: {list(models)}"
        )
    return tuple(m for m in MODELS if m in models)


def compare_on_journals(
    spark: SparkSession,
    root: str | os.PathLike,
    train_volumes: Sequence[str] = TRAIN_VOLUMES,
    eval_volumes: Sequence[str] = EVAL_VOLUMES,
    numFeatures: int = DEFAULT_NUM_FEATURES,
    layout: bool = True,
    max_docs: int | None = None,
    models: Sequence[str] = MODELS,
    crf: CRFSettings = CRFSettings(),
    feature_options: dict[str, Any] | None = None,
    **classifier_params: Any,
) -> JournalComparison:
    """Fit features on the training volumes, then the chosen models; evaluate each.

    ``models`` picks from :data:`MODELS` (``("crf", "logistic")`` for a quick
    run without the BiLSTM); ``max_docs`` keeps only the first documents of
    each split; ``crf`` holds the CRF's settings; ``feature_options`` go to
    :func:`skol_spark.skol.text_pipeline.text_feature_stages` (BiLSTM and logistic
    regression features); ``classifier_params`` are BiLSTMClassifier Params (its defaults otherwise).
    The logistic regression weights classes as the BiLSTM's ``weightStrategy`` does.
    """
    models = _check_models(models)
    classifier = BiLSTMClassifier(**classifier_params)
    train = load_volumes(spark, root, train_volumes)
    test = load_volumes(spark, root, eval_volumes)
    if max_docs is not None:
        train, test = _first_docs(train, max_docs), _first_docs(test, max_docs)
    features = Pipeline(
        stages=[
            *text_feature_stages("text", "features", numFeatures, layout, **(feature_options or {})),
            StringIndexer(inputCol="label3", outputCol="label_index", stringOrderType="alphabetAsc"),
        ]
    ).fit(train)
    labels = list(features.stages[-1].labels)
    keep = ["doc_id", "line_number", "features", F.col("label_index").alias("label")]
    train_f = features.transform(train).select(*keep).cache()
    test_f = features.transform(test).select(*keep).cache()
    train_f.count(), test_f.count()

    reports: dict[str, ClassificationReport] = {}
    fit_seconds: dict[str, float] = {}
    model, history, thresholds = None, {}, None
    if "bilstm" in models:
        started = time.perf_counter()
        model = classifier.fit(train_f)
        fit_seconds["bilstm"] = time.perf_counter() - started
        reports["bilstm"] = classification_report(model.transform(test_f), labels)
        weights, history = model.getClassWeightsUsed(), model.history
        if model.isDefined(model.thresholds):
            thresholds = dict(zip(labels, model.getThresholds()))
    else:
        counts = dict(train_f.groupBy("label").count().collect())
        weights = compute_class_weights(
            [counts.get(float(i), 0) for i in range(len(labels))], classifier.getWeightStrategy()
        )
    if "crf" in models:
        train_texts, train_labels = collect_sequences(train)
        started = time.perf_counter()
        fitted = fit_crf(train_texts, train_labels, crf)
        fit_seconds["crf"] = time.perf_counter() - started
        test_texts, test_labels = collect_sequences(test)
        reports["crf"] = ClassificationReport(labels, crf_confusion(fitted, test_texts, test_labels, labels, crf))
    if "logistic" in models:
        weight = F.element_at(F.array(*[F.lit(w) for w in weights]), F.col("label").cast("int") + 1)
        started = time.perf_counter()
        logistic = LogisticRegression(weightCol="weight", maxIter=100, regParam=1e-4).fit(
            train_f.withColumn("weight", weight)
        )
        fit_seconds["logistic"] = time.perf_counter() - started
        reports["logistic"] = classification_report(logistic.transform(test_f), labels)
    train_f.unpersist()
    settings = {
        "train_volumes": list(train_volumes),
        "eval_volumes": list(eval_volumes),
        "numFeatures": numFeatures,
        "layout": layout,
        "feature_options": dict(feature_options or {}),
        "max_docs": max_docs,
        "models": list(models),
        "classifier": {p.name: v for p, v in classifier.extractParamMap().items()},
        "crf": crf.to_dict(),
        "class_weights": dict(zip(labels, weights)),
        "thresholds": thresholds,
    }
    return JournalComparison(reports, settings, fit_seconds, history, model, features, test_f)


@dataclass
class JournalTransfer:
    """One :class:`JournalComparison` per direction of :data:`TRANSFER_SPLITS`."""

    directions: dict[str, JournalComparison]

    def format(self) -> str:
        parts = []
        for name, result in self.directions.items():
            train, evaluate = result.settings["train_volumes"], result.settings["eval_volumes"]
            parts.append(f"{name}: trained on {', '.join(train)}; evaluated on {', '.join(evaluate)}")
            parts.append(result.table())
            parts.append("")
        return "\n".join(parts).rstrip()

    def to_dict(self) -> dict[str, Any]:
        return {"transfer": {name: r.to_dict() for name, r in self.directions.items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def transfer_on_journals(
    spark: SparkSession,
    root: str | os.PathLike,
    splits: dict[str, tuple[Sequence[str], Sequence[str]]] = TRANSFER_SPLITS,
    **options: Any,
) -> JournalTransfer:
    """:func:`compare_on_journals` once per (train, evaluate) pair of ``splits``."""
    return JournalTransfer(
        {
            name: compare_on_journals(spark, root, train, evaluate, **options)
            for name, (train, evaluate) in splits.items()
        }
    )


def _first_docs(df: DataFrame, n: int) -> DataFrame:
    docs = [r[0] for r in df.select("doc_id").distinct().orderBy("doc_id").limit(n).collect()]
    return df.filter(F.col("doc_id").isin(docs))
