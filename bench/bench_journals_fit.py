"""The journals fit before and after the input projection, side by side in one session (issue 14).

Run from the repository root, with ``../shared/data/skol-annotated`` present
(after ``make install``; about 8 minutes on 2 cores):

    .venv/bin/python bench/bench_journals_fit.py
    .venv/bin/python bench/bench_journals_fit.py --only defaults

Both fits run on the public split of ``make journals`` (train on the
training volumes, evaluate on Mycotaxon Vol058/Vol118 + Persoonia Vol017),
one after the other in one local[2] session:

* ``before``: the configuration of before issue 14: 4,096 hashed words +
  layout, no projection (``embeddingSize=0``, every batch densified to
  ``(B, W, 4103)``), all documents trained on, argmax decision;
* ``defaults``: what ``make journals`` runs today (16,384 hashed words,
  token shapes, cues and layout, ``embeddingSize=64``, sparse batches,
  thresholds tuned on 10 % of the rows).

"fit s" is ``BiLSTMClassifier.fit`` alone (collecting the cached feature rows,
training, the rebuild check and, for the defaults, tuning the thresholds).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIGURATIONS = {
    "before": dict(
        numFeatures=4096, feature_options={"shape": False, "cues": False}, embeddingSize=0,
        validationFraction=0.0, tuneThresholds=False,
    ),
    "defaults": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join("..", "shared", "data", "skol-annotated", "journals"))
    parser.add_argument("--only", action="append", choices=sorted(CONFIGURATIONS))
    args = parser.parse_args()

    from skol_spark.cli import _local_spark
    from skol_spark.journals import compare_on_journals

    spark = _local_spark("local[2]")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; pyspark {spark.version}")
    print(f"{'configuration':<10} {'fit s':>7} {'macro-F1':>9} {'Description':>12} {'Nomenclature':>13}")
    seconds = {}
    for name in args.only or list(CONFIGURATIONS):
        result = compare_on_journals(spark, args.data, models=("bilstm",), **CONFIGURATIONS[name])
        report, seconds[name] = result.bilstm, result.fit_seconds["bilstm"]
        print(f"{name:<10} {seconds[name]:>7.1f} {report.macro_f1:>9.4f} {report.f1_of('Description'):>12.4f} "
              f"{report.f1_of('Nomenclature'):>13.4f}", flush=True)
    if len(seconds) == 2:
        print(f"fit before / defaults = {seconds['before'] / seconds['defaults']:.2f} x (target >= 3 at equal or "
              "better macro-F1)")
    spark.stop()


if __name__ == "__main__":
    main()
