"""A text-to-labels Pipeline for journal paragraphs, from built-in Spark stages.

Stages: ``RegexTokenizer`` -> ``HashingTF`` -> ``IDF`` (hashed TF-IDF, sparse),
optionally cheap layout features computed in SQL (length, capitals, digits,
punctuation, line count, first and last character) assembled beside them,
then ``StringIndexer`` for the label and :class:`BiLSTMClassifier`. Every stage
is a stock Spark stage or ours, so the fitted Pipeline saves and loads.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml import Pipeline
from pyspark.ml.param import Params
from pyspark.ml.feature import (
    IDF,
    HashingTF,
    RegexTokenizer,
    SQLTransformer,
    StringIndexer,
    VectorAssembler,
)

from skol_spark.estimator import BiLSTMClassifier

__all__ = ["LAYOUT_COLUMNS", "layout_stage", "text_feature_stages", "skol_pipeline"]

LAYOUT_COLUMNS = (
    "layout_length",
    "layout_lines",
    "layout_capitals",
    "layout_digits",
    "layout_punctuation",
    "layout_starts_upper",
    "layout_ends_period",
)


def layout_stage(textCol: str = "text") -> SQLTransformer:
    """Layout features of each paragraph, as numbers near [0, 1] (lengths in log scale)."""
    t = f"`{textCol}`"
    n = f"greatest(length({t}), 1)"
    punctuation = "\\\\p{Punct}"  # Java regex \p{Punct}, escaped once for the SQL literal

    def share(pattern: str) -> str:
        return f"(length({t}) - length(regexp_replace({t}, '{pattern}', ''))) / {n}"

    expressions = [
        f"log1p(length({t})) / 8 AS layout_length",
        f"log1p(size(split({t}, '\\n'))) / 4 AS layout_lines",
        f"{share('[A-Z]')} AS layout_capitals",
        f"{share('[0-9]')} AS layout_digits",
        f"{share(punctuation)} AS layout_punctuation",
        f"CAST({t} RLIKE '^[A-Z]' AS DOUBLE) AS layout_starts_upper",
        f"CAST({t} RLIKE '[.]$' AS DOUBLE) AS layout_ends_period",
    ]
    return SQLTransformer(statement=f"SELECT *, {', '.join(expressions)} FROM __THIS__")


def text_feature_stages(
    textCol: str = "text",
    outputCol: str = "features",
    numFeatures: int = 4096,
    layout: bool = True,
    minDocFreq: int = 2,
) -> list[Params]:
    """Stages from a text column to a feature Vector column (hashed TF-IDF [+ layout])."""
    tfidf_col = "tfidf" if layout else outputCol
    stages: list[Params] = [
        RegexTokenizer(inputCol=textCol, outputCol="tokens", pattern=r"[^\p{L}\p{N}]+", toLowercase=True),
        HashingTF(inputCol="tokens", outputCol="tf", numFeatures=numFeatures),
        IDF(inputCol="tf", outputCol=tfidf_col, minDocFreq=minDocFreq),
    ]
    if layout:
        stages += [
            layout_stage(textCol),
            VectorAssembler(inputCols=[tfidf_col, *LAYOUT_COLUMNS], outputCol=outputCol),
        ]
    return stages


def skol_pipeline(
    textCol: str = "text",
    labelCol: str = "label3",
    indexedLabelCol: str = "label_index",
    numFeatures: int = 4096,
    layout: bool = True,
    **classifier_params: Any,
) -> Pipeline:
    """Text and a string label in, a Pipeline ending in :class:`BiLSTMClassifier`.

    ``labelCol`` holds class names (``label3`` from
    :func:`skol_spark.datasets.with_three_classes`); ``StringIndexer`` writes
    their indices, in alphabetical order of the names, to ``indexedLabelCol``.

    Examples
    --------
    >>> model = skol_pipeline(windowSize=50, epochs=8).fit(with_three_classes(train))  # doctest: +SKIP
    >>> model.transform(test).select("doc_id", "prediction")       # doctest: +SKIP
    """
    return Pipeline(
        stages=[
            *text_feature_stages(textCol, "features", numFeatures, layout),
            StringIndexer(inputCol=labelCol, outputCol=indexedLabelCol, stringOrderType="alphabetAsc"),
            BiLSTMClassifier(featuresCol="features", labelCol=indexedLabelCol, **classifier_params),
        ]
    )
