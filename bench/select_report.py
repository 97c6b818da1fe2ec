"""Tables from the runs bench/select_journals.py saved: scores, targets, intervals, decision rules.

Pure numpy on the run files; no Spark. Imported by select_journals.py (``report``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from skol_spark.skol.protocol import DEFAULT_BLOCK_SIZE, block_confusions, macro_f1_of, paired_bootstrap

BASELINES = ("feature_crf", "crf", "logistic")
RARE = ("Nomenclature", "Description")
# The A of the prior rule argmax p_c / w_c^A tried by "nested" (0: argmax).
PRIOR_EXPONENTS = (0.0, 0.25, 0.5, 0.75, 1.0)


class Run:
    """One saved run: per-row truth, prediction, probabilities, and the class weights used."""

    def __init__(self, record: dict) -> None:
        rows = record["rows"]
        self.record = record
        self.labels = record["labels"]
        self.docs = [rows["docs"][i] for i in rows["doc"]]
        self.positions = np.asarray(rows["line_number"])
        self.truth = np.asarray(rows["label"])
        self.prediction = np.asarray(rows["prediction"])
        self.probability = np.asarray(rows["probability"]) if "probability" in rows else None
        self.weights = np.asarray(record["class_weights"])
        self.fit_seconds = record.get("fit_seconds") or 0.0

    def decide(self, rule: str) -> np.ndarray:
        """Labels under ``rule``: ``argmax`` (as saved) or ``prior:A``."""
        if rule == "argmax" or self.probability is None:
            return self.prediction
        exponent = float(rule.split(":")[1])
        return np.argmax(self.probability / self.weights ** exponent, axis=1)

    def blocks(self, predicted: np.ndarray) -> np.ndarray:
        return block_confusions(self.docs, self.positions, self.truth, predicted, len(self.labels),
                                DEFAULT_BLOCK_SIZE)[1]


def _averaged(runs: list[Run]) -> Run:
    """The seeds' runs as one: probabilities averaged (what an ensemble of those networks gives)."""
    first = runs[0]
    for other in runs[1:]:
        if not (np.array_equal(other.truth, first.truth) and np.array_equal(other.positions, first.positions)):
            raise ValueError("runs of one fold hold different rows")
    merged = Run(first.record)
    merged.probability = np.mean([r.probability for r in runs], axis=0)
    merged.prediction = np.argmax(merged.probability, axis=1)
    merged.fit_seconds = float(np.sum([r.fit_seconds for r in runs]))
    return merged


def load(results: Path, name: str, folds: list[str], seeds: list[int], run_path: Callable) -> dict:
    """fold -> [Run per seed], for the folds where every seed's run exists."""
    out = {}
    for fold in folds:
        paths = [run_path(results, name, fold, seed) for seed in seeds]
        if all(p.exists() for p in paths):
            out[fold] = [Run(json.loads(p.read_text())) for p in paths]
    return out


def _seed_blocks(runs: list[Run], rule: str) -> np.ndarray:
    """(seeds, blocks, K, K) of one fold under ``rule``."""
    return np.stack([r.blocks(r.decide(rule)) for r in runs])


def _nested_rule(model_runs: dict, fold: str) -> str:
    """The prior rule that scores best (pooled macro-F1) on the LOVO folds chosen for ``fold``:
    the other volumes for a LOVO fold, the source journal's volumes for a transfer fold."""
    if fold.startswith("lovo:"):
        chosen = [f for f in model_runs if f.startswith("lovo:") and f != fold]
    elif fold.startswith("transfer:"):
        source = fold.split(":", 1)[1].split(" -> ")[0]
        chosen = [f for f in model_runs if f.startswith(f"lovo:{source}/")]
    else:
        chosen = [f for f in model_runs if f.startswith("lovo:")]
    best, best_score = "argmax", -1.0
    if not chosen:
        return best
    for exponent in PRIOR_EXPONENTS:
        rule = f"prior:{exponent}"
        confusion = sum(_seed_blocks(model_runs[f], rule).sum(axis=1) for f in chosen)
        score = float(np.mean(macro_f1_of(confusion)))
        if score > best_score + 1e-9:
            best, best_score = rule, score
    return best


class Scored:
    """A model's (seeds, blocks, K, K) per fold under one decision rule, and what it scores."""

    def __init__(self, name: str, model_runs: dict, rule: str) -> None:
        self.name, self.rule, self.runs = name, rule, model_runs
        self.blocks = {}
        self.rules = {}
        for fold, runs in model_runs.items():
            self.rules[fold] = _nested_rule(model_runs, fold) if rule == "nested" else rule
            self.blocks[fold] = _seed_blocks(runs, self.rules[fold])
        self.labels = next(iter(model_runs.values()))[0].labels

    def macro_f1(self, fold: str) -> float:
        return float(np.mean(macro_f1_of(self.blocks[fold].sum(axis=1))))

    def pooled(self, folds: list[str]) -> np.ndarray:
        """(seeds, K, K): the folds' rows together."""
        return sum(self.blocks[f].sum(axis=1) for f in folds)

    def precision_recall(self, folds: list[str], label: str) -> tuple[float, float, float]:
        k = self.labels.index(label)
        c = self.pooled(folds).astype(float)
        p = np.mean(c[:, k, k] / np.maximum(c[:, :, k].sum(axis=1), 1))
        r = np.mean(c[:, k, k] / np.maximum(c[:, k, :].sum(axis=1), 1))
        return float(p), float(r), float(2 * p * r / max(p + r, 1e-12))

    def fit_seconds(self, folds: list[str]) -> float:
        return float(np.mean([r.fit_seconds for f in folds for r in self.runs[f]]))


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:"
                                                                  for i in range(len(header))) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), *(fmt.format(*r) for r in rows)])


def _short(fold: str) -> str:
    return fold.split(":", 1)[-1].replace("Mycotaxon/Vol", "M").replace("Persoonia/Vol", "P")


def report(results: Path, names: list[str], args, all_folds: list[str], run_path: Callable) -> str:
    """Every table for configurations ``names`` against the baselines."""
    seeds = [int(s) for s in args.seeds.split(",")]
    scored: list[Scored] = []
    for base in BASELINES:
        runs = load(results, base, all_folds, [0], run_path)
        if runs:
            scored.append(Scored(base, runs, "argmax"))
    rules = ["argmax"] + ([f"prior:{a}" for a in PRIOR_EXPONENTS[1:]] + ["nested"] if args.decisions else [])
    for name in names:
        runs = load(results, name, all_folds, seeds, run_path)
        if not runs:
            continue
        variants = [(f"{name}", runs)]
        if args.ensemble:
            ens = [int(s) for s in args.ensemble.split(",")]
            ens_runs = load(results, name, all_folds, ens, run_path)
            if ens_runs:
                variants.append((f"{name} ens({args.ensemble})", {f: [_averaged(r)] for f, r in ens_runs.items()}))
        for label, model_runs in variants:
            for rule in rules:
                scored.append(Scored(label if rule == "argmax" else f"{label} {rule}", model_runs, rule))
    if not scored:
        return "no runs found"
    lovo = [f for f in all_folds if f.startswith("lovo:")]
    transfer = [f for f in all_folds if f.startswith("transfer:")]
    feature_crf = next((s for s in scored if s.name == "feature_crf"), None)
    md = args.markdown
    out = []

    # 1. Summary.
    header = ["model", "LOVO mean", "wins vs feature CRF", *[_short(f) for f in transfer], "public",
              *[f"{c[:4]}. P / R" for c in RARE], "fit s"]
    rows = []
    for s in scored:
        have_lovo = all(f in s.blocks for f in lovo)
        row = [s.name, f"{np.mean([s.macro_f1(f) for f in lovo]):.4f}" if have_lovo else "-"]
        if have_lovo and feature_crf is not None and s is not feature_crf:
            row.append(f"{sum(s.macro_f1(f) >= feature_crf.macro_f1(f) for f in lovo)} / {len(lovo)}")
        else:
            row.append("")
        row += [f"{s.macro_f1(f):.4f}" if f in s.blocks else "-" for f in transfer]
        row.append(f"{s.macro_f1('public'):.4f}" if "public" in s.blocks else "-")
        pooled_folds = [f for f in lovo + transfer if f in s.blocks]
        for label in RARE:
            p, r, _ = s.precision_recall(pooled_folds, label) if pooled_folds else (np.nan, np.nan, np.nan)
            row.append(f"{p:.3f} / {r:.3f}")
        row.append(f"{s.fit_seconds(pooled_folds):.0f}" if pooled_folds else "-")
        rows.append(row)
    out += [f"Macro-F1 (BiLSTM seeds {args.seeds}; P / R pooled over the LOVO and transfer rows)",
            _table(header, rows, md), ""]

    # 2. Per volume.
    header = ["model", *[_short(f) for f in lovo]]
    rows = [[s.name, *[f"{s.macro_f1(f):.4f}" if f in s.blocks else "-" for f in lovo]] for s in scored]
    out += ["Leave one volume out: macro-F1 per held-out volume", _table(header, rows, md), ""]

    # 3. Per-class precision / recall / F1, pooled over LOVO rows and over transfer rows.
    header = ["model", "rows", *[f"{c} P / R / F1" for c in ("Description", "Misc-exposition", "Nomenclature")]]
    rows = []
    for s in scored:
        for title, folds in (("LOVO", lovo), ("transfer", transfer)):
            if all(f in s.blocks for f in folds):
                cells = [f"{p:.3f} / {r:.3f} / {f1:.3f}" for p, r, f1 in
                         (s.precision_recall(folds, c) for c in s.labels)]
                rows.append([s.name, title, *cells])
    out += ["Per class, pooled", _table(header, rows, md), ""]

    # 4. Paired bootstrap intervals against each baseline.
    header = ["model", "vs", "LOVO mean", *[_short(f) for f in transfer], "public"]
    rows = []
    for s in scored:
        if s.name in BASELINES:
            continue
        for base in (b for b in scored if b.name in BASELINES):
            cells = []
            if all(f in s.blocks and f in base.blocks for f in lovo):
                cells.append(paired_bootstrap({f: s.blocks[f] for f in lovo}, {f: base.blocks[f] for f in lovo},
                                              "mean", args.resamples).format())
            else:
                cells.append("-")
            for f in [*transfer, "public"]:
                ok = f in s.blocks and f in base.blocks
                cells.append(paired_bootstrap([s.blocks[f]], [base.blocks[f]], "pooled",
                                              args.resamples).format() if ok else "-")
            rows.append([s.name, base.name, *cells])
    out += ["Macro-F1 difference [95 % paired block-bootstrap interval] (blocks of "
            f"{DEFAULT_BLOCK_SIZE} paragraphs resampled within each fold; {args.resamples} resamples)",
            _table(header, rows, md), ""]

    # 5. Targets against the feature CRF.
    if feature_crf is not None:
        out.append("Targets (against the feature CRF)")
        for s in scored:
            if s.name in BASELINES or not all(f in s.blocks for f in lovo + transfer):
                continue
            gain = np.mean([s.macro_f1(f) for f in lovo]) - np.mean([feature_crf.macro_f1(f) for f in lovo])
            wins = sum(s.macro_f1(f) >= feature_crf.macro_f1(f) for f in lovo)
            transfer_gain = [s.macro_f1(f) - feature_crf.macro_f1(f) for f in transfer]
            gaps = [s.precision_recall(lovo + transfer, c) for c in RARE]
            ok = [gain >= 0.02, wins >= 8, all(g >= 0.06 for g in transfer_gain),
                  all(abs(p - r) <= 0.05 for p, r, _ in gaps)]
            out.append(
                f"{s.name}: LOVO mean {gain:+.4f} ({'met' if ok[0] else 'not met'}), {wins}/9 volumes "
                f"({'met' if ok[1] else 'not met'}); transfer {', '.join(f'{g:+.4f}' for g in transfer_gain)} "
                f"({'met' if ok[2] else 'not met'}); |P - R| "
                + ", ".join(f"{c} {abs(p - r):.3f}" for c, (p, r, _) in zip(RARE, gaps))
                + f" ({'met' if ok[3] else 'not met'})"
            )
        out.append("")
    nested = [s for s in scored if s.rule == "nested"]
    for s in nested:
        chosen = ", ".join(f"{_short(f)} {r.split(':')[-1]}" for f, r in s.rules.items())
        out.append(f"{s.name}: prior exponent chosen per fold: {chosen}")
    return "\n".join(out).rstrip()
