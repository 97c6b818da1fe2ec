"""The BiLSTM combined with the feature CRF, as ``skol_pipeline`` combines them, on the selection protocol's folds.

Offline, from :mod:`select_journals`' saved runs: for each leave-one-volume-out
and transfer fold, the feature CRF (``FEATURE_CRF``, the baseline's recipe) is
fitted on the fold's training volumes and its per-paragraph marginals
(sklearn-crfsuite's ``predict_marginals``) are cached beside the runs. Then
the BiLSTM's probabilities (averaged over the given seeds) and the marginals
are combined by :func:`skol_spark.stages.blend.blend_probabilities`, the rule
``ProbabilityBlend`` runs: the weighted geometric mean, the CRF's exponent
``w`` and the BiLSTM's ``1 - w``, times the prior correction
``(n_max / n_c) ** g`` from the fold's training label counts (the run's class
weights are those counts' inverse). Each ``w`` of ``--crf-weights`` is scored
with each ``g`` of ``--corrections``; the defaults' pair is marked.

    .venv/bin/python bench/select_journals.py run --configs base-e1 --seeds 0,1,2
    .venv/bin/python bench/mix_crf.py --config base-e1 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from select_journals import DATA, FOLDS, RESULTS, _slug  # noqa: E402

from skol_spark.skol.protocol import DEFAULT_BLOCK_SIZE, block_confusions, paired_bootstrap  # noqa: E402
from skol_spark.skol.text_pipeline import DEFAULT_CRF_WEIGHT, DEFAULT_PRIOR_CORRECTION  # noqa: E402
from skol_spark.stages.blend import blend_probabilities, prior_bias  # noqa: E402
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


def _fold_inputs(args: argparse.Namespace, seeds: list[int]) -> dict[str, tuple]:
    """Per fold: the class names, the BiLSTM's probabilities (mean over seeds), the CRF marginals,
    the labels, the training label counts (from the run's class weights) and the feature CRF's macro-F1."""
    runs, cache = Path(args.results) / "runs", Path(args.results) / "feature_crf_marginals"
    cache.mkdir(parents=True, exist_ok=True)
    spark, out = None, {}
    for fold in FOLDS:
        files = [runs / args.config / _slug(fold) / f"seed{s}.json" for s in seeds]
        baseline = runs / "feature_crf" / _slug(fold) / "seed0.json"
        if not all(f.exists() for f in [*files, baseline]):
            print(f"{fold}: no run of {args.config} for every seed, or of feature_crf; skipped", file=sys.stderr)
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
        # Balanced class weights are n / (k * n_c): the counts' ratios are the weights' inverse ratios.
        counts_ratio = 1.0 / np.asarray(runs_of_seeds[0]["class_weights"])
        record = json.loads(baseline.read_text())
        viterbi = record["rows"]
        out[fold] = (labels, bilstm, crf, np.asarray(rows["label"]), counts_ratio, record["report"]["macro_f1"],
                     [rows["docs"][d] for d in rows["doc"]], np.asarray(rows["line_number"]),
                     _blocks([viterbi["docs"][d] for d in viterbi["doc"]], viterbi["line_number"], viterbi["label"],
                             viterbi["prediction"], len(labels)))
    return out


def _blocks(docs: list[str], lines: Any, truth: Any, predicted: Any, k: int) -> tuple[list, np.ndarray]:
    return block_confusions(docs, np.asarray(lines), np.asarray(truth).astype(int), np.asarray(predicted).astype(int),
                            k, DEFAULT_BLOCK_SIZE)


def _markdown(folds: dict[str, tuple], args: argparse.Namespace) -> str:
    """One row per model, one column per fold, then the LOVO mean and pooled P / R of the rare classes."""
    names = list(folds)
    lovo = [f for f in names if f.startswith("lovo:")]
    short = [f.split(":")[1].replace("Mycotaxon/Vol", "M").replace("Persoonia/Vol", "P")
             .replace("Persoonia -> Mycotaxon", "P -> M").replace("Mycotaxon -> Persoonia", "M -> P") for f in names]
    notes: list[str] = []
    table = ["| model | " + " | ".join(short) + " | LOVO mean | Nomenclature P / R | Description P / R |",
             "|---|" + "---:|" * (len(names) + 3)]
    table.append("| feature CRF | " + " | ".join(f"{folds[f][5]:.4f}" for f in names)
                 + f" | {np.mean([folds[f][5] for f in lovo]):.4f} | | |")
    for title, w, g in ((f"BiLSTM ({args.config}, seeds {args.seeds} averaged)", 0.0, 0.0),
                        (f"**blend, the defaults** (w = {DEFAULT_CRF_WEIGHT}, g = {DEFAULT_PRIOR_CORRECTION})",
                         DEFAULT_CRF_WEIGHT, DEFAULT_PRIOR_CORRECTION)):
        macro, pooled = {}, 0
        blocks = {}
        for fold, (labels, bilstm, crf, y, counts, _, docs, positions, (keys, _)) in folds.items():
            p = blend_probabilities([bilstm, crf], [1 - w, w], prior_bias(list(counts), g))
            matrix = confusion(y, p.argmax(axis=1), len(labels))
            macro[fold] = ClassificationReport(labels, matrix).macro_f1
            mine, blocks[fold] = _blocks(docs, positions, y, p.argmax(axis=1), len(labels))
            assert mine == keys, f"{fold}: the runs cover different rows"
            if fold != "public":
                pooled = pooled + matrix
        report = ClassificationReport(labels, pooled)
        pr = {name: f"{p:.3f} / {r:.3f}" for name, p, r in zip(labels, report.precision, report.recall)}
        table.append(f"| {title} | " + " | ".join(f"{macro[f]:.4f}" for f in names)
                     + f" | {np.mean([macro[f] for f in lovo]):.4f} | {pr['Nomenclature']} | {pr['Description']} |")
        viterbi = {f: folds[f][8][1] for f in names}
        intervals = [f"LOVO mean {paired_bootstrap({f: blocks[f] for f in lovo}, {f: viterbi[f] for f in lovo}).format()}"]
        intervals += [f"{f.split(':')[1]} {paired_bootstrap([blocks[f]], [viterbi[f]], 'pooled').format()}"
                      for f in names if f.startswith("transfer:")]
        notes.append(f"{title} - feature CRF, macro-F1 (95 % paired block bootstrap): " + "; ".join(intervals))
    return "\n".join(table + [""] + notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--config", default="base-e1")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--crf-weights", default=f"0,0.5,{DEFAULT_CRF_WEIGHT},0.7,1",
                        help="the CRF's exponents w (0: the BiLSTM alone, 1: the CRF marginals alone)")
    parser.add_argument("--corrections", default=f"0,0.4,{DEFAULT_PRIOR_CORRECTION},0.8",
                        help="prior corrections g")
    parser.add_argument("--markdown", action="store_true",
                        help="instead: per-fold macro-F1 of the feature CRF, the BiLSTM and the defaults' blend")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    folds = _fold_inputs(args, seeds)
    if not folds:
        raise SystemExit("no fold has every run")
    if args.markdown:
        print(_markdown(folds, args))
        return
    folds.pop("public", None)  # a report, not a judge
    lovo = [f for f in folds if f.startswith("lovo:")]
    transfer = [f for f in folds if f.startswith("transfer:")]
    print(f"{args.config} (seeds {args.seeds}) with the feature CRF: p ∝ bias^g-corrected p_BiLSTM^(1-w) · p_CRF^w")
    print(f"{len(lovo)} leave-one-volume-out folds, {len(transfer)} transfer folds; deltas against the feature "
          "CRF (Viterbi, the protocol's baseline); P / R pooled over all their rows")
    header = "w     g     LOVO    Δ CRF    ≥ CRF  " + "  ".join(f"Δ {f.split(':')[1]:<24}" for f in transfer)
    print(header)
    for w in [float(x) for x in args.crf_weights.split(",")]:
        for g in [float(x) for x in args.corrections.split(",")]:
            macro, pooled, labels = {}, 0, []
            for fold, (labels, bilstm, crf, y, counts, *_) in folds.items():
                p = blend_probabilities([bilstm, crf], [1 - w, w], prior_bias(list(counts), g))
                matrix = confusion(y, p.argmax(axis=1), len(labels))
                macro[fold], pooled = ClassificationReport(labels, matrix).macro_f1, pooled + matrix
            report = ClassificationReport(labels, pooled)
            mean = np.mean([macro[f] for f in lovo]) if lovo else float("nan")
            delta = mean - np.mean([folds[f][5] for f in lovo]) if lovo else float("nan")
            wins = sum(macro[f] >= folds[f][5] for f in lovo)
            mark = " <- defaults" if (w, g) == (DEFAULT_CRF_WEIGHT, DEFAULT_PRIOR_CORRECTION) else ""
            print(f"{w:<5} {g:<5} {mean:.4f}  {delta:+.4f}  {wins}/{len(lovo)}    "
                  + "  ".join(f"{macro[f] - folds[f][5]:+.4f}{'':<20}" for f in transfer)
                  + "  " + "  ".join(f"{name[:4]} {p:.3f}/{r:.3f}"
                                     for name, p, r in zip(labels, report.precision, report.recall)
                                     if name != "Misc-exposition")
                  + mark)


if __name__ == "__main__":
    main()
