"""Command line: ``python -m skol_spark demo`` runs the main job on local Spark.

``demo`` trains a BiLSTMClassifier on the bundled synthetic corpus, labels
held-out documents, and prints per-class precision/recall/F1 and macro-F1
next to a per-line LogisticRegression on the same features and class weights.
``journals`` does the same on SKOL's annotated mycology journals, split by
volume.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Sequence

__all__ = ["main", "run_demo"]


def _local_spark(master: str):
    """The active session (notebook, spark-submit) or a quiet local one."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    spark = (
        SparkSession.builder.master(master)
        .appName("skol_spark")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run_demo(spark, num_docs: int = 120, epochs: int = 8, seed: int = 7, out=sys.stdout) -> dict:
    """Train, transform and evaluate on synthetic documents; returns both reports."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.sql import functions as F

    from skol_spark import BiLSTMClassifier
    from skol_spark.datasets import make_synthetic_documents
    from skol_spark.evaluation import classification_report

    train = make_synthetic_documents(spark, num_docs=num_docs, seed=seed).cache()
    test = make_synthetic_documents(spark, num_docs=max(10, num_docs // 3), seed=seed + 1000).cache()
    classifier = BiLSTMClassifier(
        windowSize=24,
        hiddenSize=32,
        numLayers=1,
        dropout=0.1,
        epochs=epochs,
        learningRate=0.005,
        weightStrategy="balanced",
        validationFraction=0.1,
        seed=seed,
    )
    started = time.perf_counter()
    model = classifier.fit(train)
    fit_seconds = time.perf_counter() - started
    bilstm = classification_report(model.transform(test), model.labels_)

    # Baseline: one line at a time, same features, same class weights (weightCol).
    weights = model.getClassWeightsUsed()
    weight_of = F.element_at(F.array(*[F.lit(w) for w in weights]), F.col("label").cast("int") + 1)
    logistic = LogisticRegression(weightCol="weight", maxIter=100).fit(train.withColumn("weight", weight_of))
    baseline = classification_report(logistic.transform(test), model.labels_)

    print(f"trained on {train.count()} lines in {fit_seconds:.1f} s; evaluated on {test.count()} lines", file=out)
    print(bilstm.format("BiLSTMClassifier (skol_spark)"), file=out)
    print(baseline.format("LogisticRegression, per line (baseline)"), file=out)
    print(f"macro-F1: BiLSTM {bilstm.macro_f1:.4f} vs baseline {baseline.macro_f1:.4f}", file=out)
    return {"bilstm": bilstm, "baseline": baseline, "model": model}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skol_spark", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train, transform and evaluate on synthetic documents")
    demo.add_argument("--docs", type=int, default=120, help="training documents (default 120)")
    demo.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--master", default="local[2]", help="Spark master when no session is active")
    journals = commands.add_parser(
        "journals", help="BiLSTM vs per-paragraph logistic regression on SKOL's annotated journals"
    )
    journals.add_argument(
        "--data",
        default=os.path.join("..", "shared", "data", "skol-annotated", "journals"),
        help="directory holding Mycotaxon/ and Persoonia/ (default ../shared/data/skol-annotated/journals)",
    )
    journals.add_argument("--epochs", type=int, help="override the tuned number of epochs")
    journals.add_argument("--num-features", type=int, default=4096, help="hashed TF-IDF size")
    journals.add_argument("--no-layout", action="store_true", help="TF-IDF only, no layout features")
    journals.add_argument("--json", help="also write the reports and settings to this JSON file")
    journals.add_argument("--master", default="local[2]", help="Spark master when no session is active")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "demo":
        run_demo(_local_spark(args.master), num_docs=args.docs, epochs=args.epochs, seed=args.seed)
    elif args.command == "journals":
        from skol_spark.journals import compare_on_journals

        if not os.path.isdir(args.data):
            parser.error(f"--data {args.data!r} is not a directory")
        overrides = {"epochs": args.epochs} if args.epochs else {}
        result = compare_on_journals(
            _local_spark(args.master), args.data, numFeatures=args.num_features,
            layout=not args.no_layout, **overrides,
        )
        print(result.format())
        if args.json:
            with open(args.json, "w", encoding="utf-8") as out:
                out.write(result.to_json())
    return 0
