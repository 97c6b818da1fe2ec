"""SKOL's real task: label mycology journal paragraphs, evaluated by volume.

Training and evaluation volumes never share a paragraph or an article: the
split is by volume. Four models are compared on the same split: the BiLSTM;
two linear-chain CRFs over paragraphs (:mod:`skol_spark.skol.crf_baseline`,
hand-written features, trained on the driver): the feature-rich recipe
(``feature_crf``) and a plainer one (``crf``); and a per-paragraph
``LogisticRegression`` on the BiLSTM's features with the same class weights
(``weightCol``), the baseline the original project settled on.

:func:`compare_on_journals` runs one split (by default the public one);
:func:`transfer_on_journals` leaves one journal out (trained on every public
volume of the other, :data:`TRANSFER_SPLITS`); :func:`lovo_on_journals`
leaves one volume out (:data:`LOVO_SPLITS`). Each comparison keeps every
model's per-block confusion matrices, so the BiLSTM's gains come with paired
bootstrap intervals (:mod:`skol_spark.skol.protocol`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import StringIndexer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from skol_spark.core.class_weights import compute_class_weights
from skol_spark.skol.crf_baseline import FEATURE_CRF, CRFSettings, collect_documents, crf_predict, fit_crf
from skol_spark.skol.datasets import read_yedda, with_three_classes
from skol_spark.skol.protocol import (
    DEFAULT_BLOCK_SIZE,
    PUBLIC_VOLUMES,
    BootstrapInterval,
    block_confusions,
    journal_folds,
    lovo_folds,
    paired_bootstrap,
)
from skol_spark.skol.text_pipeline import (
    DEFAULT_CRF_WEIGHT,
    DEFAULT_NUM_FEATURES,
    DEFAULT_PRIOR_CORRECTION,
    text_feature_stages,
)
from skol_spark.stages.blend import blend_probabilities, prior_bias
from skol_spark.stages.classifier import BiLSTMClassifier
from skol_spark.stages.evaluation import ClassificationReport

__all__ = [
    "TRAIN_VOLUMES",
    "EVAL_VOLUMES",
    "TRANSFER_SPLITS",
    "LOVO_SPLITS",
    "MODELS",
    "FoldData",
    "JournalComparison",
    "JournalFolds",
    "load_volumes",
    "fold_data",
    "compare_on_fold",
    "compare_on_journals",
    "transfer_on_journals",
    "lovo_on_journals",
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

# Leave one journal out: every public volume of one journal in, every volume of the other out.
TRANSFER_SPLITS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = journal_folds(PUBLIC_VOLUMES)
# Leave one volume out: eight public volumes in, the ninth out, for each of the nine.
LOVO_SPLITS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = lovo_folds(PUBLIC_VOLUMES)

# The compared models, in table order. "blend" is what skol_pipeline's defaults label with: the
# BiLSTM's probabilities and the feature CRF's marginals combined by ProbabilityBlend's rule.
MODELS = ("bilstm", "blend", "feature_crf", "crf", "logistic")
MODEL_TITLES = {
    "bilstm": "BiLSTMClassifier (skol_spark)",
    "blend": "BiLSTM and feature-rich CRF blended (skol_pipeline's defaults)",
    "feature_crf": "linear-chain CRF, feature-rich recipe (sklearn-crfsuite)",
    "crf": "linear-chain CRF, plain features (sklearn-crfsuite)",
    "logistic": "LogisticRegression per paragraph, same features and weights",
}
# The models whose input is the text Pipeline's feature vectors.
_VECTOR_MODELS = ("bilstm", "blend", "logistic")
# The paired comparisons reported: the BiLSTM against every other model, the blend against the feature CRF.
_BLEND_BASELINE = "feature_crf"


def _comparisons(models: Sequence[str]) -> list[tuple[str, str]]:
    pairs = [("bilstm", other) for other in models if other != "bilstm"] if "bilstm" in models else []
    return pairs + ([("blend", _BLEND_BASELINE)] if "blend" in models and _BLEND_BASELINE in models else [])
# Per-class F1 gains printed beside macro-F1's.
_RARE = ("Nomenclature", "Description")


def _gains(a: ClassificationReport, b: ClassificationReport) -> str:
    parts = [f"macro-F1 gain {a.macro_f1 - b.macro_f1:+.4f}"]
    parts += [f"{label} F1 gain {a.f1_of(label) - b.f1_of(label):+.4f}" for label in _RARE if label in a.labels]
    return "; ".join(parts)


@dataclass
class JournalComparison:
    """Reports of the compared models on the evaluation volumes, with the settings used.

    ``reports``, ``fit_seconds`` and ``blocks`` are keyed by the names in
    :data:`MODELS` (those that ran); ``blocks[name]`` is the model's
    ``(blocks, K, K)`` confusion per block of ``block_size`` consecutive
    paragraphs, in the order of ``block_keys`` (the same for every model);
    ``rows[name]`` its per-row labels (pandas: doc_id, line_number, label,
    prediction, and the BiLSTM's probability). ``bilstm``, ``crf`` and
    ``baseline`` (the logistic regression) are shortcuts, None for a model
    that did not run.
    """

    reports: dict[str, ClassificationReport]
    settings: dict[str, Any]
    fit_seconds: dict[str, float]
    history: dict[str, list[float]] = field(default_factory=dict)
    model: Any = field(default=None, repr=False)
    features: Any = field(default=None, repr=False)
    eval_features: Any = field(default=None, repr=False)
    blocks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    block_keys: list[tuple[str, int]] = field(default_factory=list, repr=False)
    rows: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def bilstm(self) -> ClassificationReport | None:
        return self.reports.get("bilstm")

    @property
    def crf(self) -> ClassificationReport | None:
        return self.reports.get("crf")

    @property
    def feature_crf(self) -> ClassificationReport | None:
        return self.reports.get("feature_crf")

    @property
    def baseline(self) -> ClassificationReport | None:
        return self.reports.get("logistic")

    def bootstrap(self, other: str, resamples: int = 2000, seed: int = 0, subject: str = "bilstm") -> BootstrapInterval:
        """``subject``'s macro-F1 gain over ``other`` with its paired block-bootstrap interval."""
        return paired_bootstrap([self.blocks[subject]], [self.blocks[other]], "pooled", resamples, seed=seed)

    def table(self) -> str:
        """One line per model: macro-F1, F1 per class, accuracy, fit seconds."""
        labels = next(iter(self.reports.values())).labels
        header = f"{'model':<12} {'macro-F1':>9} " + " ".join(f"{label:>16}" for label in labels)
        lines = [header + f" {'accuracy':>9} {'fit s':>7}"]
        for name, report in self.reports.items():
            f1 = " ".join(f"{report.f1_of(label):>16.4f}" for label in labels)
            lines.append(
                f"{name:<12} {report.macro_f1:>9.4f} {f1} {report.accuracy:>9.4f} "
                f"{self.fit_seconds.get(name, float('nan')):>7.1f}"
            )
        return "\n".join(lines)

    def format(self) -> str:
        lines = [self.table(), ""]
        for name, report in self.reports.items():
            lines += [report.format(MODEL_TITLES[name]), ""]
        for subject, name in _comparisons(list(self.reports)):
            interval = self.bootstrap(name, subject=subject)
            lines.append(f"{subject} vs {name}: {_gains(self.reports[subject], self.reports[name])}; macro-F1 "
                         f"gain, 95 % block-bootstrap interval: [{interval.low:+.4f}, {interval.high:+.4f}]")
        return "\n".join(lines).rstrip()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "settings": self.settings,
            "fit_seconds": self.fit_seconds,
            "history": self.history,
        }
        # The logistic regression is stored under "baseline", the key readers of this JSON use.
        for name in MODELS:
            if name in self.reports:
                out["baseline" if name == "logistic" else name] = self.reports[name].to_dict()
        pairs = _comparisons(list(self.reports))
        if pairs:
            out["bootstrap"] = {(name if subject == "bilstm" else f"{subject}_vs_{name}"):
                                self.bootstrap(name, subject=subject).to_dict() for subject, name in pairs}
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
    """The models in table order; the blend brings the two models it combines."""
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(
            f"Expected models to be a non-empty subset of {', '.join(MODELS)}. Received: {list(models)}"
        )
    wanted = set(models) | ({"bilstm", "feature_crf"} if "blend" in models else set())
    return tuple(m for m in MODELS if m in wanted)


@dataclass
class FoldData:
    """One split's rows: raw text (``train``, ``test``: doc_id, line_number, text, label, label3)
    and, when a vector model runs, the fitted text features (``features``, a PipelineModel) and
    the feature rows (``train_f``, ``test_f``: doc_id, line_number, features, label index)."""

    train_volumes: tuple[str, ...]
    eval_volumes: tuple[str, ...]
    train: DataFrame
    test: DataFrame
    labels: list[str]
    features: Any = None
    train_f: DataFrame | None = None
    test_f: DataFrame | None = None


def fold_data(
    spark: SparkSession,
    root: str | os.PathLike,
    train_volumes: Sequence[str],
    eval_volumes: Sequence[str],
    numFeatures: int = DEFAULT_NUM_FEATURES,
    layout: bool = True,
    max_docs: int | None = None,
    feature_options: dict[str, Any] | None = None,
    vectors: bool = True,
) -> FoldData:
    """Read a split and, with ``vectors``, fit the text features on its training rows."""
    train = load_volumes(spark, root, train_volumes)
    test = load_volumes(spark, root, eval_volumes)
    if max_docs is not None:
        train, test = _first_docs(train, max_docs), _first_docs(test, max_docs)
    data = FoldData(tuple(train_volumes), tuple(eval_volumes), train, test, [])
    if not vectors:
        data.labels = sorted(r[0] for r in train.select("label3").distinct().collect())
        return data
    data.features = Pipeline(
        stages=[
            *text_feature_stages("text", "features", numFeatures, layout, **(feature_options or {})),
            StringIndexer(inputCol="label3", outputCol="label_index", stringOrderType="alphabetAsc"),
        ]
    ).fit(train)
    data.labels = list(data.features.stages[-1].labels)
    keep = ["doc_id", "line_number", "features", F.col("label_index").alias("label")]
    data.train_f = data.features.transform(train).select(*keep).cache()
    data.test_f = data.features.transform(test).select(*keep).cache()
    data.train_f.count(), data.test_f.count()
    return data


def _labelled_rows(df: DataFrame, probability: bool) -> Any:
    """A prediction DataFrame's rows on the driver (pandas), ordered by document and position."""
    columns = ["doc_id", "line_number", "label", "prediction"]
    if probability:
        from pyspark.ml.functions import vector_to_array

        df = df.withColumn("probability", vector_to_array("probability"))
        columns.append("probability")
    rows = df.select(*columns).toPandas().sort_values(["doc_id", "line_number"], kind="stable")
    return rows.reset_index(drop=True)


def _blend_rows(bilstm: Any, crf: Any, documents: Any, settings: CRFSettings, labels: list[str],
                counts: list[int], blend: tuple[float, float]) -> Any:
    """The blend's rows: the BiLSTM's probabilities and the CRF's marginals, aligned by row, combined."""
    import pandas as pd

    from skol_spark.skol.crf_baseline import document_features

    marginals = crf.predict_marginals([document_features(t, settings) for t in documents.texts])
    crf_rows = pd.DataFrame({
        "doc_id": [d for d, positions in zip(documents.doc_ids, documents.positions) for _ in positions],
        "line_number": [p for positions in documents.positions for p in positions],
        "crf": [[m.get(name, 0.0) for name in labels] for doc in marginals for m in doc],
    })
    merged = bilstm.merge(crf_rows, on=["doc_id", "line_number"], how="left")
    weight, correction = blend
    p = blend_probabilities([np.stack(merged["probability"].to_numpy()), np.stack(merged["crf"].to_numpy())],
                            [1 - weight, weight], prior_bias(counts, correction))
    out = merged[["doc_id", "line_number", "label"]].copy()
    out["prediction"], out["probability"] = p.argmax(axis=1).astype(float), list(p)
    return out


def compare_on_fold(
    data: FoldData,
    models: Sequence[str] = MODELS,
    crf: CRFSettings = CRFSettings(),
    feature_crf: CRFSettings = FEATURE_CRF,
    block_size: int = DEFAULT_BLOCK_SIZE,
    settings: dict[str, Any] | None = None,
    blend: tuple[float, float] = (DEFAULT_CRF_WEIGHT, DEFAULT_PRIOR_CORRECTION),
    **classifier_params: Any,
) -> JournalComparison:
    """Fit the chosen models on ``data``'s training rows and evaluate each on its test rows.

    ``blend`` is the CRF's weight and the prior correction of the ``"blend"`` model.
    """
    models = _check_models(models)
    classifier = BiLSTMClassifier(**classifier_params)
    labels = data.labels
    if any(m in _VECTOR_MODELS for m in models) and data.train_f is None:
        raise ValueError(f"Expected fold data with feature rows for {', '.join(models)}: build it with vectors=True.")
    rows: dict[str, Any] = {}
    fit_seconds: dict[str, float] = {}
    model, history, thresholds = None, {}, None
    if "bilstm" in models:
        started = time.perf_counter()
        model = classifier.fit(data.train_f)
        fit_seconds["bilstm"] = time.perf_counter() - started
        rows["bilstm"] = _labelled_rows(model.transform(data.test_f), probability=True)
        weights, history = model.getClassWeightsUsed(), model.history
        if model.isDefined(model.thresholds):
            thresholds = dict(zip(labels, model.getThresholds()))
    else:
        counts = dict(data.train.groupBy("label3").count().collect())
        weights = compute_class_weights([counts.get(name, 0) for name in labels], classifier.getWeightStrategy())
    crf_models = [(name, s) for name, s in (("feature_crf", feature_crf), ("crf", crf)) if name in models]
    if crf_models:
        train_docs, test_docs = collect_documents(data.train), collect_documents(data.test)
        index = {name: float(i) for i, name in enumerate(labels)}
        for name, crf_settings in crf_models:
            started = time.perf_counter()
            fitted = fit_crf(train_docs.texts, train_docs.labels, crf_settings)
            fit_seconds[name] = time.perf_counter() - started
            rows[name] = test_docs.frame(index, crf_predict(fitted, test_docs.texts, crf_settings))
            if name == "feature_crf" and "blend" in models:
                rows["blend"] = _blend_rows(rows["bilstm"], fitted, test_docs, crf_settings, labels,
                                            [sum(y == label for doc in train_docs.labels for y in doc)
                                             for label in labels], blend)
                fit_seconds["blend"] = fit_seconds["bilstm"] + fit_seconds[name]
    if "logistic" in models:
        weight = F.element_at(F.array(*[F.lit(w) for w in weights]), F.col("label").cast("int") + 1)
        started = time.perf_counter()
        logistic = LogisticRegression(weightCol="weight", maxIter=100, regParam=1e-4).fit(
            data.train_f.withColumn("weight", weight)
        )
        fit_seconds["logistic"] = time.perf_counter() - started
        rows["logistic"] = _labelled_rows(logistic.transform(data.test_f), probability=False)
    reports, blocks, keys = {}, {}, []
    for name in models:
        r = rows[name]
        keys, blocks[name] = block_confusions(
            r["doc_id"].tolist(), r["line_number"].to_numpy(), r["label"].to_numpy().astype(int),
            r["prediction"].to_numpy().astype(int), len(labels), block_size,
        )
        reports[name] = ClassificationReport(list(labels), blocks[name].sum(axis=0))
    out = {
        "train_volumes": list(data.train_volumes),
        "eval_volumes": list(data.eval_volumes),
        **(settings or {}),
        "models": list(models),
        "classifier": {p.name: v for p, v in classifier.extractParamMap().items()},
        "crf": crf.to_dict(),
        "feature_crf": feature_crf.to_dict(),
        "class_weights": dict(zip(labels, weights)),
        "thresholds": thresholds,
        "block_size": block_size,
    }
    features = data.features
    return JournalComparison(reports, out, fit_seconds, history, model, features, data.test_f, blocks, keys, rows)


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
    feature_crf: CRFSettings = FEATURE_CRF,
    feature_options: dict[str, Any] | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    **classifier_params: Any,
) -> JournalComparison:
    """Fit features on the training volumes, then the chosen models; evaluate each.

    ``models`` picks from :data:`MODELS` (``("feature_crf", "crf",
    "logistic")`` for a quick run without the BiLSTM); ``max_docs`` keeps
    only the first documents of each split; ``crf`` and ``feature_crf`` hold
    the CRFs' settings; ``feature_options`` go to
    :func:`skol_spark.skol.text_pipeline.text_feature_stages` (BiLSTM and
    logistic regression features); ``block_size``: paragraphs per bootstrap
    block; ``classifier_params`` are BiLSTMClassifier Params (its defaults
    otherwise). The logistic regression weights classes as the BiLSTM's
    ``weightStrategy`` does.
    """
    models = _check_models(models)
    data = fold_data(spark, root, train_volumes, eval_volumes, numFeatures, layout, max_docs, feature_options,
                     vectors=any(m in _VECTOR_MODELS for m in models))
    settings = {"numFeatures": numFeatures, "layout": layout, "feature_options": dict(feature_options or {}),
                "max_docs": max_docs}
    try:
        return compare_on_fold(data, models, crf, feature_crf, block_size, settings, **classifier_params)
    finally:
        if data.train_f is not None:
            data.train_f.unpersist()


@dataclass
class JournalFolds:
    """One :class:`JournalComparison` per fold (transfer direction or held-out volume).

    ``kind`` is ``"transfer"`` or ``"lovo"``, the key :meth:`to_dict` files
    the folds under. :meth:`summary` gives, per model, the mean of the folds'
    macro-F1, the pooled report (all folds' rows together), and the BiLSTM's
    gain over each baseline with paired block-bootstrap intervals (blocks
    resampled within each fold).
    """

    kind: str
    folds: dict[str, JournalComparison]

    @property
    def directions(self) -> dict[str, JournalComparison]:
        return self.folds

    def models(self) -> list[str]:
        return [m for m in MODELS if all(m in r.reports for r in self.folds.values())]

    def pooled(self, model: str) -> ClassificationReport:
        first = next(iter(self.folds.values())).reports[model]
        return ClassificationReport(first.labels, sum(r.reports[model].confusion for r in self.folds.values()))

    def mean_macro_f1(self, model: str) -> float:
        return float(np.mean([r.reports[model].macro_f1 for r in self.folds.values()]))

    def bootstrap(self, other: str, statistic: str = "mean", resamples: int = 2000,
                  subject: str = "bilstm") -> BootstrapInterval:
        return paired_bootstrap({k: r.blocks[subject] for k, r in self.folds.items()},
                                {k: r.blocks[other] for k, r in self.folds.items()}, statistic, resamples)

    def summary(self) -> dict[str, Any]:
        models = self.models()
        out: dict[str, Any] = {
            name: {"mean_macro_f1": self.mean_macro_f1(name), "pooled": self.pooled(name).to_dict(),
                   "per_fold": {k: r.reports[name].macro_f1 for k, r in self.folds.items()}}
            for name in models
        }
        for subject, name in _comparisons(models):
            out[subject][f"vs_{name}"] = {s: self.bootstrap(name, s, subject=subject).to_dict()
                                          for s in ("mean", "pooled")}
        return out

    def format(self) -> str:
        parts = []
        for name, result in self.folds.items():
            train, evaluate = result.settings["train_volumes"], result.settings["eval_volumes"]
            parts.append(f"{name}: trained on {', '.join(train)}; evaluated on {', '.join(evaluate)}")
            parts.append(result.table())
            parts.append("")
        models = self.models()
        parts.append(f"{'model':<12} {'mean macro-F1':>14} {'pooled macro-F1':>16}  pooled precision / recall")
        for name in models:
            pooled = self.pooled(name)
            pr = "  ".join(f"{label} {p:.3f} / {r:.3f}" for label, p, r in
                           zip(pooled.labels, pooled.precision, pooled.recall) if label in _RARE)
            parts.append(f"{name:<12} {self.mean_macro_f1(name):>14.4f} {pooled.macro_f1:>16.4f}  {pr}")
        for subject, name in _comparisons(models):
            mean = self.bootstrap(name, "mean", subject=subject)
            pooled = self.bootstrap(name, "pooled", subject=subject)
            wins = sum(r.reports[subject].macro_f1 >= r.reports[name].macro_f1 for r in self.folds.values())
            parts.append(f"{subject} vs {name}: mean macro-F1 gain {mean.format()}, pooled {pooled.format()} "
                         f"(95 % block-bootstrap intervals); at least its macro-F1 on {wins} of "
                         f"{len(self.folds)} folds")
        return "\n".join(parts).rstrip()

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: {name: r.to_dict() for name, r in self.folds.items()}, "summary": self.summary()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _on_folds(
    kind: str,
    spark: SparkSession,
    root: str | os.PathLike,
    splits: dict[str, tuple[Sequence[str], Sequence[str]]],
    **options: Any,
) -> JournalFolds:
    folds = {}
    for name, (train, evaluate) in splits.items():
        logger.info("%s fold %s", kind, name)
        folds[name] = compare_on_journals(spark, root, train, evaluate, **options)
    return JournalFolds(kind, folds)


def transfer_on_journals(
    spark: SparkSession,
    root: str | os.PathLike,
    splits: dict[str, tuple[Sequence[str], Sequence[str]]] = TRANSFER_SPLITS,
    **options: Any,
) -> JournalFolds:
    """:func:`compare_on_journals` once per (train, evaluate) pair of ``splits`` (leave one journal out)."""
    return _on_folds("transfer", spark, root, splits, **options)


def lovo_on_journals(
    spark: SparkSession,
    root: str | os.PathLike,
    splits: dict[str, tuple[Sequence[str], Sequence[str]]] = LOVO_SPLITS,
    **options: Any,
) -> JournalFolds:
    """:func:`compare_on_journals` once per held-out volume of ``splits`` (leave one volume out)."""
    return _on_folds("lovo", spark, root, splits, **options)


def _first_docs(df: DataFrame, n: int) -> DataFrame:
    docs = [r[0] for r in df.select("doc_id").distinct().orderBy("doc_id").limit(n).collect()]
    return df.filter(F.col("doc_id").isin(docs))
