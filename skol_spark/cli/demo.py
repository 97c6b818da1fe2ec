"""``skol-spark demo``: the main job on its embedded default, a synthetic corpus on local Spark.

It trains a small BiLSTM (explicit Params, so that it runs in a minute), labels
held-out documents, and prints per-class precision, recall and F1 next to a
per-line LogisticRegression on the same features and class weights.
"""

from __future__ import annotations

import sys
import time

__all__ = ["run_demo"]


def run_demo(
    spark, num_docs: int = 120, epochs: int = 8, seed: int = 7, out=sys.stdout, verbose: bool = True
) -> dict:
    """Train, transform and evaluate on synthetic documents; returns both reports.

    ``verbose`` is the classifier's: training progress on stderr.
    """
    from pyspark.ml.classification import LogisticRegression
    from pyspark.sql import functions as F

    from skol_spark import BiLSTMClassifier
    from skol_spark.skol.datasets import make_synthetic_documents
    from skol_spark.stages.evaluation import classification_report

    train = make_synthetic_documents(spark, num_docs=num_docs, seed=seed).cache()
    test = make_synthetic_documents(spark, num_docs=max(10, num_docs // 3), seed=seed + 1000).cache()
    classifier = BiLSTMClassifier(
        windowSize=24,
        hiddenSize=32,
        numLayers=1,
        ensembleSize=1,
        dropout=0.1,
        epochs=epochs,
        learningRate=0.005,
        validationFraction=0.1,
        seed=seed,
        verbose=verbose,
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
