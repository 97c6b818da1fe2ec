"""Choose the BiLSTM's default settings on the training volumes only.

No evaluation volume is ever read. Two ways to split the training volumes:

* ``--split folds`` (the default): two folds, each training on about half of
  the training volumes of both journals and validating on the other half
  (fold A trains on Mycotaxon Vol054, Vol056, the odd articles of Vol117 and
  Persoonia Vol016 issues n1-n2; fold B on the rest), as the public split
  trains and evaluates on both journals; every configuration runs with each
  of ``--seeds`` on both folds, and the line shows the mean (the seed alone
  moves one fold's macro-F1 by up to 0.04, more than most effects measured);
* ``--split select``: train on Mycotaxon Vol054-056 + Vol117, validate on
  Mycotaxon Vol057 + Persoonia Vol016, one seed (a single split, cheaper and
  noisier than the folds).

One configuration after the other in one Spark session; the CRF baseline and
the logistic regression run once per split for reference.

    .venv/bin/python bench/select_journals.py --only shape16k-tri-ens3-argmax      # the defaults; folds, seeds 0-2
    .venv/bin/python bench/select_journals.py --split select --only crf-e64 --seeds 0
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


def _articles(parity: int) -> tuple[str, ...]:
    return tuple(f"Mycotaxon/Vol117/s{i}.txt.ann" for i in range(1, 50) if i % 2 == parity)


FOLD_A = ("Mycotaxon/Vol054", "Mycotaxon/Vol056", *_articles(1),
          "Persoonia/Vol016/n1.txt.ann", "Persoonia/Vol016/n2.txt.ann")
FOLD_B = ("Mycotaxon/Vol055", "Mycotaxon/Vol057", *_articles(0),
          "Persoonia/Vol016/n3.txt.ann", "Persoonia/Vol016/n4.txt.ann")
# split name -> [(train, validate), ...]
SPLITS = {"folds": [(FOLD_A, FOLD_B), (FOLD_B, FOLD_A)], "select": [(SELECT_TRAIN, SELECT_VALIDATE)]}

# A configuration is a set of BiLSTMClassifier Params over the estimator's own defaults (plus
# compare_on_journals' numFeatures and feature_options). Each names its vocabulary width, token
# shapes, decision and number of networks, so that a configuration's runs mean the same whatever
# the defaults become; what it leaves out (window, units, layers, epochs, ...) is the estimator's.
ARGMAX = dict(validationFraction=0.0, tuneThresholds=False)  # every row trained on, argmax decision
TUNED = dict(validationFraction=0.1, tuneThresholds=True)  # 10 % of the rows held out to tune thresholds on
SOFTMAX_E64 = dict(outputLayer="softmax", embeddingSize=64)


def _shapes(width: int, ngrams: int) -> dict:
    """Token shapes and their runs of up to ``ngrams``, hashed into ``width`` slots."""
    return dict(feature_options=dict(numShapeFeatures=width, shapeNgrams=ngrams))


SHAPES_512 = _shapes(512, 2)  # narrow token shapes: shapes and shape bigrams in 512 slots (they collide)
CHOSEN_SHAPES = _shapes(16384, 3)  # the default text features' shapes: up to trigrams in 16,384 slots


def _config(**params) -> dict:
    """``params`` over the estimator's defaults; one network unless ``params`` name ``ensembleSize``."""
    return {"ensembleSize": 1, **params}


# name -> the configuration (numFeatures: the hashed word TF-IDF width). The names are those of
# recorded runs: keep them, and add a name rather than change what one means.
CONFIGURATIONS = {
    # Narrow shapes, 4,096 hashed words: the output layer (softmax or a linear-chain CRF), the
    # projection's width and the class weights.
    "softmax-e64": _config(**SOFTMAX_E64, **ARGMAX, numFeatures=4096, **SHAPES_512),
    "crf-e64": _config(outputLayer="crf", embeddingSize=64, **ARGMAX, numFeatures=4096, **SHAPES_512),
    "softmax-e128": _config(outputLayer="softmax", embeddingSize=128, **ARGMAX, numFeatures=4096, **SHAPES_512),
    "softmax-e64-sqrt": _config(**SOFTMAX_E64, **ARGMAX, numFeatures=4096, weightStrategy="sqrt_inverse",
                                **SHAPES_512),
    "softmax-e64-none": _config(**SOFTMAX_E64, **ARGMAX, numFeatures=4096, weightStrategy="none", **SHAPES_512),
    # Narrow shapes: tuned thresholds, early stopping, and a wider word vocabulary (cheap with the
    # projection).
    "softmax-e64-tuned": _config(**SOFTMAX_E64, **TUNED, numFeatures=4096, **SHAPES_512),
    "softmax-e64-tuned-es": _config(**SOFTMAX_E64, **TUNED, numFeatures=4096, earlyStoppingPatience=3,
                                    epochs=12, **SHAPES_512),
    "softmax-e64-16k": _config(**SOFTMAX_E64, **ARGMAX, numFeatures=16384, **SHAPES_512),
    "softmax-e64-tuned-16k": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, **SHAPES_512),
    "softmax-e64-tuned-64k": _config(**SOFTMAX_E64, **TUNED, numFeatures=65536, **SHAPES_512),
    # Narrow shapes, 16,384 words: one network against three averaged into one, tuned or argmax.
    "ensemble3-tuned-16k": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, ensembleSize=3, **SHAPES_512),
    "softmax-e64-16k-argmax": _config(**SOFTMAX_E64, **ARGMAX, numFeatures=16384, **SHAPES_512),
    "ensemble3-16k-argmax": _config(**SOFTMAX_E64, **ARGMAX, numFeatures=16384, ensembleSize=3, **SHAPES_512),
    # Larger batches, the learning rate scaled with the batch (the fit is latency-bound: a step of
    # 64 windows costs little more than one of 16).
    "tuned-16k-b32": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, batchSize=32, learningRate=0.003,
                             **SHAPES_512),
    "tuned-16k-b64": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, batchSize=64, learningRate=0.004,
                             **SHAPES_512),
    # Longer windows (more of a list or a key in view); wider token-shape hashing (the journals
    # hold ~3,600 shapes and shape bigrams in two or more paragraphs, which 512 slots make
    # collide), shape trigrams and 4-grams, and more hashed words beside them.
    "tuned-16k-w100": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, windowSize=100, **SHAPES_512),
    "tuned-16k-shape4k": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, **_shapes(4096, 2)),
    "tuned-16k-shape16k": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, **_shapes(16384, 2)),
    "tuned-64k-shape4k": _config(**SOFTMAX_E64, **TUNED, numFeatures=65536, **_shapes(4096, 2)),
    "tuned-16k-shape4k-tri": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, **_shapes(4096, 3)),
    "tuned-16k-shape16k-tri": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, **CHOSEN_SHAPES),
    "tuned-16k-shape64k-tri": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, **_shapes(65536, 3)),
    "tuned-16k-shape16k-4grams": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, **_shapes(16384, 4)),
    # The default text features, one network: with them the training loss falls to ~0.01 while
    # the held-out loss rises from epoch 3, hence fewer epochs, or early stopping on the held-out
    # rows' macro-F1.
    "shape16k-tri-e6": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, **CHOSEN_SHAPES, epochs=6),
    "shape16k-tri-es2": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, **CHOSEN_SHAPES,
                                earlyStoppingPatience=2),
    # The default text features: one, two or three networks averaged into one, argmax or tuned
    # thresholds. shape16k-tri-ens3-argmax is BiLSTMClassifier's defaults.
    "shape16k-tri-argmax": _config(**SOFTMAX_E64, **ARGMAX, numFeatures=16384, **CHOSEN_SHAPES),
    "shape16k-tri-ens3-argmax": _config(**SOFTMAX_E64, **ARGMAX, numFeatures=16384, **CHOSEN_SHAPES,
                                        ensembleSize=3),
    "shape16k-tri-ens2-argmax": _config(**SOFTMAX_E64, **ARGMAX, numFeatures=16384, **CHOSEN_SHAPES,
                                        ensembleSize=2),
    "shape16k-tri-ens3-tuned": _config(**SOFTMAX_E64, **TUNED, numFeatures=16384, **CHOSEN_SHAPES,
                                       ensembleSize=3),
}


def _scores(report) -> dict:
    return {"macro_f1": report.macro_f1, "nomenclature": report.f1_of("Nomenclature"),
            "description": report.f1_of("Description")}


def _line(name: str, runs: list[dict]) -> str:
    mean = {k: sum(r[k] for r in runs) / len(runs) for k in ("macro_f1", "nomenclature", "description")}
    each = " ".join(f"{r['macro_f1']:.4f}" for r in runs)
    fit = sum(r.get("fit_seconds", 0.0) for r in runs) / len(runs)
    return (f"{name:>22}: macro-F1 {mean['macro_f1']:.4f}  Nomenclature {mean['nomenclature']:.4f}  "
            f"Description {mean['description']:.4f}  fit {fit:.0f} s  (runs: {each})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join("..", "shared", "data", "skol-annotated", "journals"))
    parser.add_argument("--split", choices=sorted(SPLITS), default="folds")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated BiLSTM seeds, each run on every fold")
    parser.add_argument("--only", action="append", choices=sorted(CONFIGURATIONS))
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    from skol_spark.cli.main import _spark
    from skol_spark.cli.output import Output
    from skol_spark.skol.journals import compare_on_journals

    spark = _spark("local[2]", Output())  # the command line's quiet local session
    folds = SPLITS[args.split]
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, list[dict]] = {}
    if not args.no_baselines:
        for train, validate in folds:
            base = compare_on_journals(spark, args.data, train, validate, models=("crf", "logistic"))
            for name, report in base.reports.items():
                results.setdefault(name, []).append(_scores(report))
        for name in ("crf", "logistic"):
            print(_line(name, results[name]), flush=True)
    for name in args.only or list(CONFIGURATIONS):
        started = time.perf_counter()
        for seed in seeds:
            for train, validate in folds:
                result = compare_on_journals(
                    spark, args.data, train, validate, models=("bilstm",), **{"seed": seed, **CONFIGURATIONS[name]}
                )
                results.setdefault(name, []).append(
                    dict(_scores(result.bilstm), fit_seconds=result.fit_seconds["bilstm"], seed=seed)
                )
        print(_line(name, results[name]) + f" (run {time.perf_counter() - started:.0f} s)", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"split": args.split, "seeds": seeds, "results": results}, out, indent=2)


if __name__ == "__main__":
    main()
