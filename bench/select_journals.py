"""Choose the BiLSTM's default settings on the training volumes only (issue 11, item 5).

Trains on Mycotaxon Vol054-056 + Vol117 and validates on Mycotaxon Vol057 +
Persoonia Vol016 (no evaluation volume is read), one configuration after the
other in one Spark session, and prints one line per configuration. The CRF
baseline and logistic regression run once, on the same split, for reference.

    .venv/bin/python bench/select_journals.py                  # the configurations below
    .venv/bin/python bench/select_journals.py --only crf-e64   # one of them
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SELECT_TRAIN = ("Mycotaxon/Vol054", "Mycotaxon/Vol055", "Mycotaxon/Vol056", "Mycotaxon/Vol117")
SELECT_VALIDATE = ("Mycotaxon/Vol057", "Persoonia/Vol016")

# Each configuration names its vocabulary width and decision, so that runs mean the
# same whatever DEFAULT_CLASSIFIER / DEFAULT_NUM_FEATURES become.
ARGMAX = dict(validationFraction=0.0, tuneThresholds=False)  # all documents trained on, argmax decision
TUNED = dict(validationFraction=0.1, tuneThresholds=True)  # 10 % held out to tune thresholds on
SOFTMAX_E64 = dict(outputLayer="softmax", embeddingSize=64)

# name -> overrides of DEFAULT_CLASSIFIER (numFeatures: the hashed word TF-IDF width)
CONFIGURATIONS = {
    # First round: output layer, projection width, class weights.
    "softmax-e64": dict(**SOFTMAX_E64, **ARGMAX, numFeatures=4096),
    "crf-e64": dict(outputLayer="crf", embeddingSize=64, **ARGMAX, numFeatures=4096),
    "softmax-e128": dict(outputLayer="softmax", embeddingSize=128, **ARGMAX, numFeatures=4096),
    "softmax-e64-sqrt": dict(**SOFTMAX_E64, **ARGMAX, numFeatures=4096, weightStrategy="sqrt_inverse"),
    "softmax-e64-none": dict(**SOFTMAX_E64, **ARGMAX, numFeatures=4096, weightStrategy="none"),
    # Second round: tuned thresholds, early stopping, a wider vocabulary (cheap with the projection).
    "softmax-e64-tuned": dict(**SOFTMAX_E64, **TUNED, numFeatures=4096),
    "softmax-e64-tuned-es": dict(**SOFTMAX_E64, **TUNED, numFeatures=4096, earlyStoppingPatience=3, epochs=12),
    "softmax-e64-16k": dict(**SOFTMAX_E64, **ARGMAX, numFeatures=16384),
    "softmax-e64-tuned-16k": dict(**SOFTMAX_E64, **TUNED, numFeatures=16384),
    "softmax-e64-tuned-64k": dict(**SOFTMAX_E64, **TUNED, numFeatures=65536),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join("..", "shared", "data", "skol-annotated", "journals"))
    parser.add_argument("--only", action="append", choices=sorted(CONFIGURATIONS))
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    from skol_spark.cli import _local_spark
    from skol_spark.journals import compare_on_journals

    spark = _local_spark("local[2]")
    results = {}
    if not args.no_baselines:
        base = compare_on_journals(spark, args.data, SELECT_TRAIN, SELECT_VALIDATE, models=("crf", "logistic"))
        for name, report in base.reports.items():
            results[name] = {"macro_f1": report.macro_f1, "nomenclature": report.f1_of("Nomenclature"),
                             "description": report.f1_of("Description")}
            print(f"{name:>14}: macro-F1 {report.macro_f1:.4f}  Nomenclature {report.f1_of('Nomenclature'):.4f}  "
                  f"Description {report.f1_of('Description'):.4f}", flush=True)
    for name in args.only or list(CONFIGURATIONS):
        started = time.perf_counter()
        result = compare_on_journals(
            spark, args.data, SELECT_TRAIN, SELECT_VALIDATE, models=("bilstm",), **CONFIGURATIONS[name]
        )
        report = result.reports["bilstm"]
        results[name] = {"macro_f1": report.macro_f1, "nomenclature": report.f1_of("Nomenclature"),
                         "description": report.f1_of("Description"), "fit_seconds": result.fit_seconds["bilstm"],
                         "settings": CONFIGURATIONS[name]}
        print(f"{name:>14}: macro-F1 {report.macro_f1:.4f}  Nomenclature {report.f1_of('Nomenclature'):.4f}  "
              f"Description {report.f1_of('Description'):.4f}  fit {result.fit_seconds['bilstm']:.0f} s "
              f"(run {time.perf_counter() - started:.0f} s)", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
