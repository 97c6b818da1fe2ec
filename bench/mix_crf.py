"""The BiLSTM's probabilities averaged with the feature CRF's marginals, on the selection protocol's folds.

Offline, from :mod:`select_journals`' saved runs: for each leave-one-volume-out
and transfer fold, the feature CRF (``FEATURE_CRF``, the baseline's recipe) is
fitted on the fold's training volumes and its per-paragraph marginals
(sklearn-crfsuite's ``predict_marginals``) are cached beside the runs; then
``a * p_BiLSTM + (1 - a) * marginals`` is scored for several ``a``, the
BiLSTM's probabilities averaged over the given seeds.

    .venv/bin/python bench/select_journals.py run --configs base-e1 --seeds 0,1
    .venv/bin/python bench/mix_crf.py --config base-e1 --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from select_journals import DATA, FOLDS, RESULTS, _slug  # noqa: E402

from skol_spark.stages.evaluation import ClassificationReport  # noqa: E402


def crf_marginals(spark, data: Path, fold: str, labels: list[str]) -> list:
    """``[doc_id, line_number, [p per label]]`` of the fold's held-out paragraphs."""
    from skol_spark.skol.crf_baseline import FEATURE_CRF, collect_documents, document_features, fit_crf
    from skol_spark.skol.journals import load_volumes

    train_volumes, eval_volumes = FOLDS[fold]
    train = collect_documents(load_volumes(spark, data, train_volumes))
    test = collect_documents(load_volumes(spark, data, eval_volumes))
    crf = fit_crf(train.texts, train.labels, FEATURE_CRF)
    marginals = crf.predict_marginals([document_features(t, FEATURE_CRF) for t in test.texts])
    return [[doc, int(p), [m.get(name, 0.0) for name in labels]]
            for doc, positions, ms in zip(test.doc_ids, test.positions, marginals) for p, m in zip(positions, ms)]


def confusion(y: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """``(k, k)`` counts, rows the true class (:class:`ClassificationReport`'s layout)."""
    return np.bincount(y * k + predicted, minlength=k * k).reshape(k, k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--config", default="base-e1")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--weights", default="0,0.3,0.5,0.7,1", help="values of a (1: the BiLSTM alone)")
    args = parser.parse_args()
    runs, seeds = Path(args.results) / "runs", [int(s) for s in args.seeds.split(",")]
    alphas = [float(a) for a in args.weights.split(",")]
    cache = Path(args.results) / "feature_crf_marginals"
    cache.mkdir(parents=True, exist_ok=True)
    spark = None
    scores: dict[str, dict[float, float]] = {}
    pooled: dict[float, np.ndarray] = {}
    labels: list[str] = []
    for fold in [f for f in FOLDS if f != "public"]:
        files = [runs / args.config / _slug(fold) / f"seed{s}.json" for s in seeds]
        if not all(f.exists() for f in files):
            print(f"{fold}: no run for every seed of {args.config}; skipped", file=sys.stderr)
            continue
        runs_of_seeds = [json.loads(f.read_text()) for f in files]
        labels, rows = runs_of_seeds[0]["labels"], runs_of_seeds[0]["rows"]
        path = cache / f"{_slug(fold)}.json"
        if not path.exists():
            if spark is None:
                from pyspark.sql import SparkSession

                spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
            path.write_text(json.dumps(crf_marginals(spark, Path(args.data), fold, labels)))
        index = {(rows["docs"][d], line): i for i, (d, line) in enumerate(zip(rows["doc"], rows["line_number"]))}
        bilstm = np.mean([np.asarray(run["rows"]["probability"]) for run in runs_of_seeds], axis=0)
        crf = np.zeros_like(bilstm)
        for doc, line, marginal in json.loads(path.read_text()):
            crf[index[(doc, line)]] = marginal
        y = np.asarray(rows["label"])
        scores[fold] = {}
        for a in alphas:
            counts = confusion(y, (a * bilstm + (1 - a) * crf).argmax(axis=1), len(labels))
            scores[fold][a] = ClassificationReport(labels, counts).macro_f1
            pooled[a] = pooled.get(a, 0) + counts
    print(f"macro-F1 of a * {args.config} (seeds {args.seeds}) + (1 - a) * feature CRF marginals")
    print("fold".ljust(40) + "".join(f"a={a:<8}" for a in alphas))
    for fold, row in scores.items():
        print(fold.ljust(40) + "".join(f"{row[a]:<10.4f}" for a in alphas))
    lovo = [f for f in scores if f.startswith("lovo:")]
    if lovo:
        print("LOVO mean".ljust(40) + "".join(f"{np.mean([scores[f][a] for f in lovo]):<10.4f}" for a in alphas))
    for a, counts in pooled.items():
        report = ClassificationReport(labels, counts)
        print(f"a={a}: pooled P / R  " + "  ".join(
            f"{name} {p:.3f} / {r:.3f}" for name, p, r in zip(labels, report.precision, report.recall)))


if __name__ == "__main__":
    main()
