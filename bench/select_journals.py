"""Choose the BiLSTM's defaults by how they do on volumes and a journal they were not trained on.

The protocol (BENCHMARKS.md, "How the defaults are chosen"):

* **Folds.** Leave one volume out over the nine public volumes (``lovo``,
  nine folds) and leave one journal out (``transfer``, two folds). A
  configuration wins only if it wins on both. The public split (``public``)
  is run for the report only; it never chooses.
* **Seeds.** Screen with one seed; a final choice runs with at least three.
  A BiLSTM with ``ensembleSize`` M averages M networks trained one after the
  other exactly as single networks, so averaging the probabilities of single
  networks of three seeds (``--ensemble 0,1,2`` in the report) estimates what
  the 3-network ensemble does, at no extra fit.
* **Intervals.** Paired block-bootstrap intervals (blocks of 100 consecutive
  paragraphs resampled within each fold, :mod:`skol_spark.skol.protocol`) on
  the macro-F1 difference to each baseline; per-class precision and recall,
  pooled over the folds' rows.
* **Decision rules** are judged offline from the saved probabilities: argmax,
  the class weights' prior divided out (``prior:A``: argmax of p_c / w_c^A),
  and ``nested``: for each fold, the A that scores best on the other LOVO
  folds (the source journal's LOVO folds for a transfer fold).

Every run (configuration, fold, seed) is one JSON file in the results
directory (git-ignored, ``bench/results/select_journals`` by default) with
its per-row labels and the BiLSTM's probabilities; a run whose file exists is
not run again, so an interrupted run resumes, and ``report`` rebuilds every
table from the files. Text features are fitted once per fold and feature set
and cached there as Parquet.

    .venv/bin/python bench/select_journals.py run --baselines --folds lovo,transfer,public
    .venv/bin/python bench/select_journals.py run --configs base-e1,sqrt-e1 --seeds 0
    .venv/bin/python bench/select_journals.py report --configs base-e1,sqrt-e1 --decisions
    .venv/bin/python bench/select_journals.py report --configs base-e1 --ensemble 0,1,2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from select_report import BASELINES, report  # noqa: E402

from skol_spark.skol.journals import EVAL_VOLUMES, LOVO_SPLITS, TRAIN_VOLUMES, TRANSFER_SPLITS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "select_journals"
DATA = Path("..") / "shared" / "data" / "skol-annotated" / "journals"

# fold name -> (training volumes, evaluated volumes)
FOLDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    **{f"lovo:{v}": split for v, split in LOVO_SPLITS.items()},
    **{f"transfer:{name}": split for name, split in TRANSFER_SPLITS.items()},
    "public": (TRAIN_VOLUMES, EVAL_VOLUMES),
}
FOLD_GROUPS = {
    "lovo": [f for f in FOLDS if f.startswith("lovo:")],
    "transfer": [f for f in FOLDS if f.startswith("transfer:")],
    "public": ["public"],
}

# Today's BiLSTM (the estimator's defaults when this protocol was set up), every setting named,
# so that a configuration means the same whatever the defaults become. One network unless a
# configuration says otherwise.
TODAY = dict(windowSize=50, hiddenSize=64, embeddingSize=64, numLayers=2, dropout=0.3, epochs=8, batchSize=16,
             learningRate=0.002, outputLayer="softmax", weightStrategy="balanced", validationFraction=0.0,
             tuneThresholds=False, ensembleSize=1)
# Today's text features.
TODAY_FEATURES = dict(numFeatures=16384, layout=True,
                      feature_options=dict(shape=True, cues=True, numShapeFeatures=16384, shapeNgrams=3))


def _config(features: dict | None = None, **params) -> dict:
    options = {**TODAY_FEATURES["feature_options"], **(features or {})}
    return {"params": {**TODAY, **params}, "features": {**TODAY_FEATURES, "feature_options": options}}


# name -> {"params": BiLSTMClassifier Params, "features": compare_on_journals' text features}.
# Names are those of recorded runs: add a name rather than change what one means.
CONFIGURATIONS = {
    # Today's network and features, one network.
    "base-e1": _config(),
    # The class weights (the decision rule is judged offline from the same runs).
    "none-e1": _config(weightStrategy="none"),
    "sqrt-e1": _config(weightStrategy="sqrt_inverse"),
    # A linear-chain CRF output layer (one network: ensembles need softmax).
    "crfout-e1": _config(outputLayer="crf"),
    "crfout-none-e1": _config(outputLayer="crf", weightStrategy="none"),
    # Inputs the feature-rich CRF has: word bigrams, suffixes, first and last word; taxonomic
    # cue counts and flags and the relative position.
    "words-e1": _config(features=dict(wordTerms=True)),
    "taxon-e1": _config(features=dict(taxonCues=True, position=True)),
    # Layout standardized within each document, beside the absolute layout or instead of it.
    "rellayout-e1": _config(features=dict(relativeLayout=True)),
    # Word2Vec vectors fitted on each fold's training text.
    "w2v64-e1": _config(features=dict(wordVectors=64)),
    # Fewer epochs: with today's features the training loss falls below 0.01 by epoch 8 and
    # held-out volumes get confident errors.
    "ep4-e1": _config(epochs=4),
    "ep3-e1": _config(epochs=3),
    # More dropout (in and between the LSTM layers).
    "drop5-e1": _config(dropout=0.5),
}


def _slug(text: str) -> str:
    return text.replace(" -> ", "-to-").replace("/", "-").replace(":", "-").replace(" ", "_")


def _digest(value: dict) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


def _defaults_config() -> tuple[str, dict]:
    """The estimator's and the text pipeline's defaults as they are now, named by their digest."""
    from skol_spark.skol import text_pipeline as tp
    from skol_spark.stages.classifier import BiLSTMClassifier

    estimator = BiLSTMClassifier()
    params = {p.name: estimator.getOrDefault(p) for p in estimator.params
              if estimator.hasDefault(p) and p.name not in ("mlflowLogging", "seed")}
    features = dict(numFeatures=tp.DEFAULT_NUM_FEATURES, layout=True, feature_options=dict(
        shape=True, cues=True, numShapeFeatures=tp.DEFAULT_NUM_SHAPE_FEATURES, shapeNgrams=tp.DEFAULT_SHAPE_NGRAMS,
        wordTerms=tp.DEFAULT_WORD_TERMS, numWordTermFeatures=tp.DEFAULT_NUM_WORD_TERM_FEATURES,
        taxonCues=tp.DEFAULT_TAXON_CUES, position=tp.DEFAULT_POSITION, relativeLayout=tp.DEFAULT_RELATIVE_LAYOUT,
        wordVectors=tp.DEFAULT_WORD_VECTORS))
    config = {"params": params, "features": features}
    return f"defaults-{_digest(config)}", config


def configuration(name: str) -> tuple[str, dict]:
    if name == "defaults":
        return _defaults_config()
    if name not in CONFIGURATIONS:
        raise SystemExit(f"unknown configuration {name!r}; known: defaults, {', '.join(CONFIGURATIONS)}")
    return name, CONFIGURATIONS[name]


def _folds(spec: str) -> list[str]:
    out = []
    for part in spec.split(","):
        part = part.strip()
        if part in FOLD_GROUPS:
            out += FOLD_GROUPS[part]
        elif part in FOLDS:
            out.append(part)
        else:
            raise SystemExit(f"unknown fold {part!r}; known: {', '.join([*FOLD_GROUPS, *FOLDS])}")
    return list(dict.fromkeys(out))


def run_path(results: Path, model: str, fold: str, seed: int) -> Path:
    return results / "runs" / model / _slug(fold) / f"seed{seed}.json"


def _git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _write_run(path: Path, comparison, model: str, record: dict) -> None:
    """One run's JSON: what ran, its report, and its per-row labels (and probabilities)."""
    rows = comparison.rows[model]
    docs = sorted(set(rows["doc_id"]))
    index = {d: i for i, d in enumerate(docs)}
    record = {
        **record,
        "labels": comparison.reports[model].labels,
        "report": comparison.reports[model].to_dict(),
        "fit_seconds": comparison.fit_seconds.get(model),
        "class_weights": list(comparison.settings["class_weights"].values()),
        "revision": _git_revision(),
        "rows": {
            "docs": docs,
            "doc": [index[d] for d in rows["doc_id"]],
            "line_number": rows["line_number"].astype(int).tolist(),
            "label": rows["label"].astype(int).tolist(),
            "prediction": rows["prediction"].astype(int).tolist(),
        },
    }
    if "probability" in rows:
        record["rows"]["probability"] = np.round(np.stack(rows["probability"].to_numpy()), 5).tolist()
    if model == "bilstm":
        record["history"] = comparison.history
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


class FeatureCache:
    """Fold data with the text features fitted once per (fold, feature set), kept as Parquet."""

    def __init__(self, spark, data: Path, results: Path) -> None:
        self.spark, self.data, self.results = spark, data, results

    def get(self, fold: str, features: dict, vectors: bool, text: bool = True):
        from skol_spark.skol.journals import FoldData, fold_data, load_volumes

        train_volumes, eval_volumes = FOLDS[fold]
        if not vectors:
            return fold_data(self.spark, self.data, train_volumes, eval_volumes, vectors=False)
        where = self.results / "features" / _digest(features) / _slug(fold)
        meta = where / "meta.json"
        if meta.exists():
            labels = json.loads(meta.read_text())["labels"]
            # The raw text only where a model reads it (the logistic regression's class counts).
            train, test = (load_volumes(self.spark, self.data, train_volumes), None) if text else (None, None)
            train_f = self.spark.read.parquet(str(where / "train")).cache()
            test_f = self.spark.read.parquet(str(where / "test")).cache()
            return FoldData(tuple(train_volumes), tuple(eval_volumes), train, test, labels, None, train_f, test_f)
        started = time.perf_counter()
        data = fold_data(self.spark, self.data, train_volumes, eval_volumes, features["numFeatures"],
                         features["layout"], None, features["feature_options"])
        # Rows in document order so the cached files read back as the fit would see them; meta.json
        # last, so a cache without it is incomplete and is rebuilt.
        for name, df in (("train", data.train_f), ("test", data.test_f)):
            df.orderBy("doc_id", "line_number").write.mode("overwrite").parquet(str(where / name))
        meta.write_text(json.dumps({"labels": data.labels, "features": features, "fold": fold,
                                    "seconds": time.perf_counter() - started}))
        return data


def _spark():
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("select_journals")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "4").config("spark.driver.memory", "2g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run(args: argparse.Namespace) -> None:
    from skol_spark.skol.journals import compare_on_fold

    results = Path(args.results)
    spark = _spark()
    cache = FeatureCache(spark, Path(args.data), results)
    folds = _folds(args.folds)
    seeds = [int(s) for s in args.seeds.split(",")]
    todo: list[tuple[str, dict, str, int]] = []
    for model in (args.baselines.split(",") if args.baselines else []):
        if model not in BASELINES:
            raise SystemExit(f"unknown baseline {model!r}; known: {', '.join(BASELINES)}")
        todo += [(model, _config(), fold, 0) for fold in folds]
    for name in (args.configs.split(",") if args.configs else []):
        name, config = configuration(name.strip())
        todo += [(name, config, fold, seed) for seed in seeds for fold in folds]
    for name, config, fold, seed in todo:
        model = name if name in BASELINES else "bilstm"
        path = run_path(results, name, fold, seed)
        if path.exists():
            continue
        started = time.perf_counter()
        data = cache.get(fold, config["features"], vectors=model in ("bilstm", "logistic"), text=model != "bilstm")
        params = {**config["params"], "seed": seed, "mlflowLogging": False}
        comparison = compare_on_fold(data, (model,), **params)
        _write_run(path, comparison, model, {"config": name, "model": model, "fold": fold, "seed": seed,
                                             "params": config["params"], "features": config["features"]})
        for df in (data.train_f, data.test_f):
            if df is not None:
                df.unpersist()
        report_ = comparison.reports[model]
        print(f"{name:>16} {fold:<34} seed {seed}: macro-F1 {report_.macro_f1:.4f} "
              f"(fit {comparison.fit_seconds[model]:.0f} s, run {time.perf_counter() - started:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS), help="results directory (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run", help="run what is missing and save one JSON per run")
    runner.add_argument("--data", default=str(DATA))
    runner.add_argument("--configs", help=f"comma-separated: defaults, {', '.join(CONFIGURATIONS)}")
    runner.add_argument("--baselines", nargs="?", const=",".join(BASELINES), metavar="LIST",
                        help="baselines to run, comma-separated (alone: all of %(const)s); deterministic, one run "
                             "each")
    runner.add_argument("--folds", default="lovo,transfer", help="fold groups (lovo, transfer, public) or "
                                                                 "fold names, comma-separated")
    runner.add_argument("--seeds", default="0")
    reporter = commands.add_parser("report", help="tables from the saved runs")
    reporter.add_argument("--configs", required=True, help="configurations (or 'defaults'), comma-separated")
    reporter.add_argument("--seeds", default="0", help="seeds averaged in the tables (each seed scored, "
                                                       "then the scores averaged)")
    reporter.add_argument("--ensemble", help="also score the average of these seeds' probabilities, "
                                             "e.g. 0,1,2 (an estimate of a 3-network ensemble)")
    reporter.add_argument("--decisions", action="store_true", help="also score the offline decision rules")
    reporter.add_argument("--resamples", type=int, default=2000)
    reporter.add_argument("--markdown", action="store_true", help="tables as Markdown")
    args = parser.parse_args()
    if args.command == "run":
        import logging

        logging.basicConfig(format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("skol_spark").setLevel(logging.INFO)
        run(args)
    else:
        names = [configuration(n.strip())[0] for n in args.configs.split(",")]
        print(report(Path(args.results), names, args, _folds("lovo,transfer,public"), run_path))


if __name__ == "__main__":
    main()
