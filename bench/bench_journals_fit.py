"""The journals fit of the defaults beside one network and the network without projection, in one session.

Run from the repository root, with ``../shared/data/skol-annotated`` present
(after ``make install``; about 8 minutes on 2 cores):

    .venv/bin/python bench/bench_journals_fit.py
    .venv/bin/python bench/bench_journals_fit.py --only defaults
    .venv/bin/python bench/bench_journals_fit.py --only single --only defaults
    .venv/bin/python bench/bench_journals_fit.py --only defaults --only tensorflow

The fits run on the public split of ``make journals`` (train on the
training volumes, evaluate on Mycotaxon Vol058/Vol118 + Persoonia Vol017),
one after the other in one local[2] session:

* ``before``: the network without the input projection, on the text
  features it was used with: 4,096 hashed words + layout
  (``embeddingSize=0``, every batch densified to ``(B, W, 4103)``), every
  row trained on, argmax decision;
* ``single``: the default text features, one network
  (``ensembleSize=1``), thresholds tuned on 10 % of the rows;
* ``defaults``: what ``make journals`` runs (BiLSTMClassifier's own
  defaults: 16,384 hashed words, token shapes, cues and layout,
  ``embeddingSize=64``, sparse batches, three networks averaged, every row
  trained on, argmax); with jax installed this fit is long enough for
  ``trainingEngine="auto"`` to train on JAX;
* ``tensorflow``: the defaults with ``trainingEngine="tensorflow"`` (the
  driver fit on TensorFlow, for comparison).

"fit s" is ``BiLSTMClassifier.fit`` alone (collecting the cached feature rows,
training, the rebuild check and, where they are tuned, the thresholds).
"transform s" is the fitted model's ``transform`` of the evaluation volumes'
feature rows, ``--copies`` times over (each copy its own documents), into
Spark's ``noop`` sink: the best of two runs, after the evaluation's own
transform has warmed the Python workers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchlib import noop  # noqa: E402

CONFIGURATIONS = {
    "before": dict(
        numFeatures=4096, feature_options={"shape": False, "cues": False}, embeddingSize=0,
        validationFraction=0.0, tuneThresholds=False,
    ),
    "single": dict(ensembleSize=1, validationFraction=0.1, tuneThresholds=True),
    "defaults": {},
    "tensorflow": dict(trainingEngine="tensorflow"),
}


def _transform_seconds(model, rows, copies: int, runs: int = 2) -> float:
    """The best of ``runs`` transforms of ``copies`` copies of ``rows`` into the noop sink."""
    from functools import reduce

    from pyspark.sql import functions as F

    rows = reduce(
        lambda a, b: a.unionByName(b),
        [rows.withColumn("doc_id", F.concat("doc_id", F.lit(f"#{i}"))) for i in range(copies)],
    )
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        noop(model.transform(rows))
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join("..", "shared", "data", "skol-annotated", "journals"))
    parser.add_argument("--only", action="append", choices=sorted(CONFIGURATIONS))
    parser.add_argument("--copies", type=int, default=4, help="copies of the evaluation rows transformed")
    args = parser.parse_args()

    from skol_spark.cli.main import _spark
    from skol_spark.cli.output import Output
    from skol_spark.skol.journals import compare_on_journals

    spark = _spark("local[2]", Output())  # the command line's quiet local session
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; pyspark {spark.version}")
    print(f"transform: {args.copies} x the evaluation rows")
    print(f"{'configuration':<10} {'fit s':>7} {'transform s':>12} {'macro-F1':>9} {'Description':>12} "
          f"{'Nomenclature':>13}")
    seconds, transform = {}, {}
    for name in args.only or list(CONFIGURATIONS):
        result = compare_on_journals(spark, args.data, models=("bilstm",), **CONFIGURATIONS[name])
        report, seconds[name] = result.bilstm, result.fit_seconds["bilstm"]
        transform[name] = _transform_seconds(result.model, result.eval_features, args.copies)
        print(f"{name:<10} {seconds[name]:>7.1f} {transform[name]:>12.1f} {report.macro_f1:>9.4f} "
              f"{report.f1_of('Description'):>12.4f} {report.f1_of('Nomenclature'):>13.4f}", flush=True)
        result.eval_features.unpersist()
    if "before" in seconds and "defaults" in seconds:
        print(f"fit before / defaults = {seconds['before'] / seconds['defaults']:.2f} x (target >= 3 at equal or "
              "better macro-F1)")
    if "tensorflow" in seconds and "defaults" in seconds:
        print(f"fit tensorflow / defaults = {seconds['tensorflow'] / seconds['defaults']:.2f} x")
    if "single" in seconds and "defaults" in seconds:
        print(f"defaults / single: fit {seconds['defaults'] / seconds['single']:.2f} x, transform "
              f"{transform['defaults'] / transform['single']:.2f} x")
    spark.stop()


if __name__ == "__main__":
    main()
