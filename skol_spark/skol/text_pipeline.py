"""A text-to-labels Pipeline for journal paragraphs, from built-in Spark stages.

Stages: ``RegexTokenizer`` -> ``HashingTF`` -> ``IDF`` (hashed TF-IDF of
lowercased words, sparse); then what a taxonomist reads besides the words,
each optional and assembled beside them:

- ``shape``: case- and punctuation-preserving tokens mapped to their shape
  (``Fig.`` -> ``Xxx.``, ``1987`` -> ``dddd``, ``Agaricus`` -> ``Xxxxx``,
  ``(`` -> ``(``; runs of one character longer than four are cut to four), with
  their bigrams and trigrams (``Xxxxx : dd``), hashed into a space of their
  own (binary, IDF-weighted);
- ``cues``: nomenclatural and bibliographic cues as 0/1 columns (a year,
  ``sp. nov.``, ``comb. nov.``, ``gen. nov.``, ``nom. illeg.`` and the other
  ``nom.`` statuses, ``≡``, a leading ``=``, ``Fig.``, ``MycoBank`` or
  ``MB 123``, an author abbreviation in parentheses, ``et al.``) and the
  number of years;
- ``layout``: length, line count, shares of capitals / digits /
  punctuation, starts with a capital, ends with a period.

Context (the paragraphs around) is the sequence model's business: no stage
copies a neighbour's features. Then ``StringIndexer`` for the label and
:class:`BiLSTMClassifier`. Every stage is a stock Spark stage or ours, so the
fitted Pipeline saves and loads.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml import Pipeline
from pyspark.ml.feature import (
    IDF,
    HashingTF,
    NGram,
    RegexTokenizer,
    SQLTransformer,
    StringIndexer,
    VectorAssembler,
)
from pyspark.ml.param import Params

from skol_spark.stages.classifier import BiLSTMClassifier

__all__ = [
    "LAYOUT_COLUMNS",
    "CUE_COLUMNS",
    "layout_stage",
    "cue_stage",
    "shape_stages",
    "text_feature_stages",
    "DEFAULT_NUM_FEATURES",
    "DEFAULT_NUM_SHAPE_FEATURES",
    "DEFAULT_SHAPE_NGRAMS",
    "skol_pipeline",
]

LAYOUT_COLUMNS = (
    "layout_length",
    "layout_lines",
    "layout_capitals",
    "layout_digits",
    "layout_punctuation",
    "layout_starts_upper",
    "layout_ends_period",
)


# Width of the hashed word TF-IDF (text_feature_stages, skol_pipeline, the CLI, journals).
DEFAULT_NUM_FEATURES = 16384

# The token-shape terms: shapes and their runs of up to DEFAULT_SHAPE_NGRAMS, hashed into
# DEFAULT_NUM_SHAPE_FEATURES slots of their own. The journals hold ~27,000 shapes, shape
# bigrams and trigrams in two or more paragraphs, so fewer slots make many of them collide.
# Both chosen on the training volumes (bench/select_journals.py).
DEFAULT_NUM_SHAPE_FEATURES = 16384
DEFAULT_SHAPE_NGRAMS = 3


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


# (column, Java regex searched in the paragraph): the cues of cue_stage.
CUES = (
    ("cue_year", r"(?<![0-9])(1[5-9][0-9]{2}|20[0-9]{2})(?![0-9])"),
    ("cue_sp_nov", r"(?i)\b(sp|spec|var|f|subsp)\.\s*nov\."),
    ("cue_comb_nov", r"(?i)\b(comb|stat)\.\s*nov\."),
    ("cue_gen_nov", r"(?i)\b(gen|fam|ord)\.\s*nov\."),
    ("cue_nom_status", r"(?i)\bnom\.\s*(illeg|inval|nud|cons|rej|superfl|conf)\."),
    ("cue_equiv", "≡"),
    ("cue_starts_equals", r"^\s*="),
    ("cue_fig", r"\bFigs?\."),
    ("cue_mycobank", r"(?i)\bmycobank\b|\bMB\s*#?\s*[0-9]{3,}"),
    ("cue_author_parens", r"\(\p{Lu}[\p{L}'`.\s&-]{0,40}\)\s*\p{Lu}"),
    ("cue_et_al", r"\bet\s+al\."),
)
CUE_COLUMNS = (*(name for name, _ in CUES), "cue_years")

# Words keep a final period (``sp.``, ``A.``), numbers and single symbols stand alone.
SHAPE_TOKEN_PATTERN = r"\p{L}+\.?|\p{N}+|[^\p{L}\p{N}\s]"


def _sql_string(value: str) -> str:
    """``value`` as a Spark SQL string literal (backslashes and quotes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cue_stage(textCol: str = "text") -> SQLTransformer:
    """The columns of :data:`CUE_COLUMNS`: 0/1 per cue, and log1p(number of years) / 3."""
    t = f"`{textCol}`"
    expressions = [f"CAST(coalesce({t}, '') RLIKE {_sql_string(p)} AS DOUBLE) AS {name}" for name, p in CUES]
    year = _sql_string(CUES[0][1])
    expressions.append(f"log1p(size(regexp_extract_all(coalesce({t}, ''), {year}, 0))) / 3 AS cue_years")
    return SQLTransformer(statement=f"SELECT *, {', '.join(expressions)} FROM __THIS__")


def shape_stages(
    textCol: str = "text",
    outputCol: str = "shape_tfidf",
    numFeatures: int = DEFAULT_NUM_SHAPE_FEATURES,
    minDocFreq: int = 2,
    ngrams: int = DEFAULT_SHAPE_NGRAMS,
) -> list[Params]:
    """Stages from text to the IDF-weighted, hashed, binary bag of token shapes.

    The terms are the shapes and their runs of 2 to ``ngrams`` (``ngrams=1``:
    the shapes alone).
    """
    if ngrams < 1:
        raise ValueError(f"Expected ngrams >= 1. Received: {ngrams}")
    runs = [f"shape_{n}grams" for n in range(2, ngrams + 1)]
    shape = "regexp_replace(regexp_replace(regexp_replace(t, '\\\\p{Lu}', 'X'), '\\\\p{Ll}', 'x'), '\\\\p{N}', 'd')"
    short = f"regexp_replace({shape}, '(.)\\\\1{{4,}}', '$1$1$1$1')"
    return [
        RegexTokenizer(inputCol=textCol, outputCol="shape_tokens", pattern=SHAPE_TOKEN_PATTERN,
                       gaps=False, toLowercase=False, minTokenLength=1),
        SQLTransformer(statement=f"SELECT *, transform(shape_tokens, t -> {short}) AS shapes FROM __THIS__"),
        *(NGram(inputCol="shapes", outputCol=run, n=n) for n, run in enumerate(runs, start=2)),
        SQLTransformer(statement=f"SELECT *, concat({', '.join(['shapes', *runs])}) AS shape_terms FROM __THIS__"),
        HashingTF(inputCol="shape_terms", outputCol="shape_tf", numFeatures=numFeatures, binary=True),
        IDF(inputCol="shape_tf", outputCol=outputCol, minDocFreq=minDocFreq),
    ]


def text_feature_stages(
    textCol: str = "text",
    outputCol: str = "features",
    numFeatures: int = DEFAULT_NUM_FEATURES,
    layout: bool = True,
    minDocFreq: int = 2,
    *,
    shape: bool = True,
    cues: bool = True,
    numShapeFeatures: int = DEFAULT_NUM_SHAPE_FEATURES,
    shapeNgrams: int = DEFAULT_SHAPE_NGRAMS,
) -> list[Params]:
    """Stages from a text column to a feature Vector column.

    Hashed TF-IDF of words, then (each optional) token shapes and their runs
    of up to ``shapeNgrams`` (``numShapeFeatures`` hashed slots),
    nomenclatural cues and layout.
    ``shape=False, cues=False`` keeps the words and, with ``layout``, the layout columns.
    """
    if numShapeFeatures < 1:
        raise ValueError(f"Expected numShapeFeatures >= 1. Received: {numShapeFeatures}")
    if shapeNgrams < 1:
        raise ValueError(f"Expected shapeNgrams >= 1. Received: {shapeNgrams}")
    parts = ["tfidf"] if (layout or shape or cues) else [outputCol]
    stages: list[Params] = [
        RegexTokenizer(inputCol=textCol, outputCol="tokens", pattern=r"[^\p{L}\p{N}]+", toLowercase=True),
        HashingTF(inputCol="tokens", outputCol="tf", numFeatures=numFeatures),
        IDF(inputCol="tf", outputCol=parts[0], minDocFreq=minDocFreq),
    ]
    if shape:
        stages += shape_stages(textCol, "shape_tfidf", numShapeFeatures, minDocFreq, shapeNgrams)
        parts.append("shape_tfidf")
    if cues:
        stages.append(cue_stage(textCol))
        parts += CUE_COLUMNS
    if layout:
        stages.append(layout_stage(textCol))
        parts += LAYOUT_COLUMNS
    if len(parts) > 1:
        stages.append(VectorAssembler(inputCols=parts, outputCol=outputCol))
    return stages


def skol_pipeline(
    textCol: str = "text",
    labelCol: str = "label3",
    indexedLabelCol: str = "label_index",
    numFeatures: int = DEFAULT_NUM_FEATURES,
    layout: bool = True,
    shape: bool = True,
    cues: bool = True,
    numShapeFeatures: int = DEFAULT_NUM_SHAPE_FEATURES,
    shapeNgrams: int = DEFAULT_SHAPE_NGRAMS,
    **classifier_params: Any,
) -> Pipeline:
    """Text and a string label in, a Pipeline ending in :class:`BiLSTMClassifier`.

    ``labelCol`` holds class names (``label3`` from
    :func:`skol_spark.skol.datasets.with_three_classes`); ``StringIndexer`` writes
    their indices, in alphabetical order of the names, to ``indexedLabelCol``.
    ``numFeatures``, ``layout``, ``shape``, ``cues``, ``numShapeFeatures`` and
    ``shapeNgrams`` choose the features (:func:`text_feature_stages`); ``classifier_params``
    are :class:`BiLSTMClassifier` Params, whose defaults are the settings chosen
    on the journals.

    Examples
    --------
    >>> model = skol_pipeline(windowSize=50, epochs=8).fit(with_three_classes(train))  # doctest: +SKIP
    >>> model.transform(test).select("doc_id", "prediction")       # doctest: +SKIP
    """
    return Pipeline(
        stages=[
            *text_feature_stages(
                textCol, "features", numFeatures, layout,
                shape=shape, cues=cues, numShapeFeatures=numShapeFeatures, shapeNgrams=shapeNgrams,
            ),
            StringIndexer(inputCol=labelCol, outputCol=indexedLabelCol, stringOrderType="alphabetAsc"),
            BiLSTMClassifier(
                featuresCol="features", labelCol=indexedLabelCol, **classifier_params
            ),
        ]
    )
