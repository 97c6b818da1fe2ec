"""What the text Pipeline's transform costs with the feature CRF beside the BiLSTM, and without.

Fits ``skol_pipeline`` (the defaults, but one epoch: the transform's cost
does not depend on how long the networks trained) on Persoonia Vol016, then
labels every public Mycotaxon volume into Spark's ``noop`` sink, in
interleaved rounds: the text features alone, the features and the BiLSTM,
and the whole default Pipeline (features, feature CRF, BiLSTM, blend).

    .venv/bin/python bench/bench_text_pipeline.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

DATA = Path("..") / "shared" / "data" / "skol-annotated" / "journals"
EVAL = [f"Mycotaxon/Vol{v}" for v in ("054", "055", "056", "057", "058", "117", "118")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from pyspark.ml import PipelineModel
    from pyspark.sql import SparkSession

    from skol_spark.skol.datasets import read_yedda, with_three_classes
    from skol_spark.skol.feature_crf import FeatureCRFModel
    from skol_spark.skol.text_pipeline import skol_pipeline
    from skol_spark.stages.blend import ProbabilityBlendModel
    from skol_spark.stages.model import BiLSTMClassificationModel

    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    train, _ = read_yedda(spark, args.data, ["Persoonia/Vol016"], unclosed="skip")
    test, _ = read_yedda(spark, args.data, EVAL, unclosed="skip")
    test = test.cache()
    rows = test.count()
    fitted = skol_pipeline(epochs=1, verbose=False, labelCol="label3").fit(with_three_classes(train))
    labeling = [s for s in fitted.stages if not hasattr(s, "getStringOrderType")]  # no label stage
    combined = (FeatureCRFModel, ProbabilityBlendModel)
    variants = {
        "features": (PipelineModel(stages=[s for s in labeling if not isinstance(s, (*combined,
                                                                                      BiLSTMClassificationModel))]),
                     "features"),
        "features + BiLSTM": (PipelineModel(stages=[s for s in labeling if not isinstance(s, combined)]),
                              "bilstmPrediction"),
        "features + CRF + BiLSTM + blend (default)": (PipelineModel(stages=labeling), "prediction"),
    }

    def run(model: PipelineModel, column: str) -> float:
        started = time.perf_counter()
        model.transform(test).select(column).write.format("noop").mode("overwrite").save()
        return time.perf_counter() - started

    run(*variants["features + CRF + BiLSTM + blend (default)"])  # Python workers start, networks build
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (model, column) in variants.items():
            seconds[name].append(run(model, column))
    base = statistics.median(seconds["features + BiLSTM"])
    print(f"{rows:,} paragraphs, local[2], median of {args.rounds} interleaved rounds")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"{name:<44} {median:7.1f} s  {rows / median:9,.0f} paragraphs/s  {median / base:5.2f} x features + BiLSTM")


if __name__ == "__main__":
    main()
