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

And, off unless asked for (their ``DEFAULT_*`` constants say which are on):

- ``wordTerms``: word bigrams of the first 30 words, 3- and 4-character
  suffixes of the first 12 words longer than 4 characters, the first and
  the last word, hashed into a space of their own (binary, IDF-weighted);
- ``taxonCues``: counts (0-4, scaled to [0, 1]) of Latin binomials,
  bracketed author citations and numeric ranges; flags for type statements,
  etymology, examined specimens, ``µm`` and ``×``;
- ``position``: the paragraph's relative position in its document;
- ``relativeLayout``: length, line count and characters per line
  standardized within the document (a z-score, clipped to +-3, over 3), a
  view of layout that does not depend on a journal's page and column width;
- ``wordVectors``: the mean of the paragraph's word vectors, from a Spark
  ``Word2Vec`` fitted on the training text (nothing downloaded; the vectors
  are saved with the fitted Pipeline and applied on the executors).

``position`` and ``relativeLayout`` look at the whole document (window
functions over ``docCol``, ordered by ``positionCol``). Context (the
paragraphs around) is the sequence model's business: no stage copies a
neighbour's features. Then ``StringIndexer`` for the label and
:class:`BiLSTMClassifier`. Every stage is a stock Spark stage or ours, so the
fitted Pipeline saves and loads.
"""

from __future__ import annotations

import inspect
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
    Word2Vec,
)
from pyspark.ml.param import Params

from skol_spark.stages.classifier import BiLSTMClassifier

__all__ = [
    "LAYOUT_COLUMNS",
    "CUE_COLUMNS",
    "TAXON_CUE_COLUMNS",
    "RELATIVE_LAYOUT_COLUMNS",
    "layout_stage",
    "taxon_cue_stage",
    "relative_layout_stage",
    "position_stage",
    "word_term_stages",
    "cue_stage",
    "shape_stages",
    "text_feature_stages",
    "DEFAULT_NUM_FEATURES",
    "DEFAULT_NUM_SHAPE_FEATURES",
    "DEFAULT_SHAPE_NGRAMS",
    "DEFAULT_WORD_TERMS",
    "DEFAULT_NUM_WORD_TERM_FEATURES",
    "DEFAULT_TAXON_CUES",
    "DEFAULT_POSITION",
    "DEFAULT_RELATIVE_LAYOUT",
    "DEFAULT_WORD_VECTORS",
    "DEFAULT_CRF",
    "DEFAULT_CRF_WEIGHT",
    "DEFAULT_PRIOR_CORRECTION",
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

# The optional inputs (chosen by leave-one-volume-out and leave-one-journal-out, bench/select_journals.py).
DEFAULT_WORD_TERMS = False
DEFAULT_NUM_WORD_TERM_FEATURES = 16384
DEFAULT_TAXON_CUES = False
DEFAULT_POSITION = False
DEFAULT_RELATIVE_LAYOUT = False
DEFAULT_WORD_VECTORS = 0  # Word2Vec vector size; 0: none

# The feature-rich CRF beside the BiLSTM, their probabilities combined by ProbabilityBlend: the
# CRF's exponent in the weighted geometric mean (the BiLSTM's is 1 - DEFAULT_CRF_WEIGHT) and the
# prior correction toward the rare classes. Chosen by leave-one-volume-out and leave-one-journal-out
# with three seeds (bench/mix_crf.py on bench/select_journals.py's runs): the pair that meets every
# target of the protocol; the optimum is flat (weights 0.55-0.7 and corrections 0.5-0.65 score
# within 0.003 macro-F1).
DEFAULT_CRF = True
DEFAULT_CRF_WEIGHT = 0.62
DEFAULT_PRIOR_CORRECTION = 0.6


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


# (column, Java regex): counted (up to 4, over 4), then flags (0/1); the cues of taxon_cue_stage.
TAXON_COUNTS = (
    ("cue_binomials", r"[A-Z][a-z]{2,}\s+[a-z]{3,}"),
    ("cue_citations", r"\([A-Z][\w.\s&]*\)"),
    ("cue_ranges", r"\d+(?:[.,]\d+)?\s*[-–]\s*\d+"),
)
TAXON_FLAGS = (
    ("cue_type", r"(?i)holotype|typus|type"),
    ("cue_etymology", r"(?i)etymolog"),
    ("cue_examined", r"(?i)specimens?\s+examined"),
    ("cue_micrometres", "[µμ]m"),
    ("cue_times", "×"),
)
TAXON_CUE_COLUMNS = tuple(name for name, _ in (*TAXON_COUNTS, *TAXON_FLAGS))
RELATIVE_LAYOUT_COLUMNS = ("layout_rel_length", "layout_rel_lines", "layout_rel_line_width")


def taxon_cue_stage(textCol: str = "text") -> SQLTransformer:
    """The columns of :data:`TAXON_CUE_COLUMNS`: counts up to 4 over 4, then 0/1 flags."""
    t = f"coalesce(`{textCol}`, '')"
    expressions = [f"least(size(regexp_extract_all({t}, {_sql_string(p)}, 0)), 4) / 4.0 AS {name}"
                   for name, p in TAXON_COUNTS]
    expressions += [f"CAST({t} RLIKE {_sql_string(p)} AS DOUBLE) AS {name}" for name, p in TAXON_FLAGS]
    return SQLTransformer(statement=f"SELECT *, {', '.join(expressions)} FROM __THIS__")


def position_stage(docCol: str = "doc_id", positionCol: str = "line_number") -> SQLTransformer:
    """``position_relative``: 0 at a document's first paragraph, 1 at its last."""
    p, w = f"`{positionCol}`", f"(PARTITION BY `{docCol}`)"
    expression = f"({p} - min({p}) OVER {w}) / greatest(max({p}) OVER {w} - min({p}) OVER {w}, 1)"
    return SQLTransformer(statement=f"SELECT *, CAST({expression} AS DOUBLE) AS position_relative FROM __THIS__")


def relative_layout_stage(textCol: str = "text", docCol: str = "doc_id") -> SQLTransformer:
    """:data:`RELATIVE_LAYOUT_COLUMNS`: log length, log line count and log characters per line
    as z-scores within the document, clipped to +-3 and divided by 3."""
    t = f"coalesce(`{textCol}`, '')"
    lines = f"size(split({t}, '\\n'))"
    measures = {
        "layout_rel_length": f"log1p(length({t}))",
        "layout_rel_lines": f"log1p({lines})",
        "layout_rel_line_width": f"log1p(length({t}) / {lines})",
    }
    w = f"(PARTITION BY `{docCol}`)"
    expressions = [
        f"greatest(least(({x} - avg({x}) OVER {w}) / greatest(stddev_pop({x}) OVER {w}, 0.1), 3), -3) / 3 AS {name}"
        for name, x in measures.items()
    ]
    return SQLTransformer(statement=f"SELECT *, {', '.join(expressions)} FROM __THIS__")


def word_term_stages(
    tokensCol: str = "tokens", outputCol: str = "word_terms_tfidf",
    numFeatures: int = DEFAULT_NUM_WORD_TERM_FEATURES, minDocFreq: int = 2,
) -> list[Params]:
    """Stages from lowercased words to the IDF-weighted, hashed, binary bag of word bigrams (first
    30 words), 3- and 4-character suffixes (first 12 words longer than 4 characters), and the
    first and last word."""
    w = f"`{tokensCol}`"
    head = f"filter(slice({w}, 1, 12), t -> length(t) > 4)"
    terms = (
        "concat(word_bigrams, "
        f"transform({head}, t -> concat('s3:', substring(t, -3))), "
        f"transform({head}, t -> concat('s4:', substring(t, -4))), "
        f"transform(slice({w}, 1, 1), t -> concat('first:', t)), "
        f"transform(slice({w}, -1, 1), t -> concat('last:', t)))"
    )
    return [
        SQLTransformer(statement=f"SELECT *, slice({w}, 1, 30) AS head_tokens FROM __THIS__"),
        NGram(inputCol="head_tokens", outputCol="word_bigrams", n=2),
        SQLTransformer(statement=f"SELECT *, {terms} AS word_terms FROM __THIS__"),
        HashingTF(inputCol="word_terms", outputCol="word_terms_tf", numFeatures=numFeatures, binary=True),
        IDF(inputCol="word_terms_tf", outputCol=outputCol, minDocFreq=minDocFreq),
    ]


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
    wordTerms: bool = DEFAULT_WORD_TERMS,
    numWordTermFeatures: int = DEFAULT_NUM_WORD_TERM_FEATURES,
    taxonCues: bool = DEFAULT_TAXON_CUES,
    position: bool = DEFAULT_POSITION,
    relativeLayout: bool = DEFAULT_RELATIVE_LAYOUT,
    wordVectors: int = DEFAULT_WORD_VECTORS,
    docCol: str = "doc_id",
    positionCol: str = "line_number",
    seed: int = 0,
) -> list[Params]:
    """Stages from a text column to a feature Vector column.

    Hashed TF-IDF of words, then (each optional) token shapes and their runs
    of up to ``shapeNgrams`` (``numShapeFeatures`` hashed slots),
    nomenclatural cues and layout; word bigrams, suffixes and first / last
    words (``wordTerms``, ``numWordTermFeatures`` slots), taxonomic cues
    (``taxonCues``), the relative position in the document (``position``),
    layout standardized within the document (``relativeLayout``), and the
    mean of ``wordVectors``-dimensional Word2Vec vectors (0: none; fitted
    with ``seed``). ``position`` and ``relativeLayout`` need the document
    (``docCol``) and position (``positionCol``) columns.
    ``shape=False, cues=False`` keeps the words and, with ``layout``, the layout columns.
    """
    for name, value in (("numShapeFeatures", numShapeFeatures), ("shapeNgrams", shapeNgrams),
                        ("numWordTermFeatures", numWordTermFeatures)):
        if value < 1:
            raise ValueError(f"Expected {name} >= 1. Received: {value}")
    if wordVectors < 0:
        raise ValueError(f"Expected wordVectors >= 0 (0: no word vectors). Received: {wordVectors}")
    extra = shape or cues or layout or wordTerms or taxonCues or position or relativeLayout or wordVectors
    parts = ["tfidf"] if extra else [outputCol]
    stages: list[Params] = [
        RegexTokenizer(inputCol=textCol, outputCol="tokens", pattern=r"[^\p{L}\p{N}]+", toLowercase=True),
        HashingTF(inputCol="tokens", outputCol="tf", numFeatures=numFeatures),
        IDF(inputCol="tf", outputCol=parts[0], minDocFreq=minDocFreq),
    ]
    if shape:
        stages += shape_stages(textCol, "shape_tfidf", numShapeFeatures, minDocFreq, shapeNgrams)
        parts.append("shape_tfidf")
    if wordTerms:
        stages += word_term_stages("tokens", "word_terms_tfidf", numWordTermFeatures, minDocFreq)
        parts.append("word_terms_tfidf")
    if wordVectors:
        stages.append(Word2Vec(inputCol="tokens", outputCol="word_vector", vectorSize=wordVectors, minCount=5,
                               seed=seed))
        parts.append("word_vector")
    if cues:
        stages.append(cue_stage(textCol))
        parts += CUE_COLUMNS
    if taxonCues:
        stages.append(taxon_cue_stage(textCol))
        parts += TAXON_CUE_COLUMNS
    if layout:
        stages.append(layout_stage(textCol))
        parts += LAYOUT_COLUMNS
    if relativeLayout:
        stages.append(relative_layout_stage(textCol, docCol))
        parts += RELATIVE_LAYOUT_COLUMNS
    if position:
        stages.append(position_stage(docCol, positionCol))
        parts.append("position_relative")
    if len(parts) > 1:
        stages.append(VectorAssembler(inputCols=parts, outputCol=outputCol))
    return stages


# The keyword-only options of text_feature_stages that skol_pipeline takes beside the classifier's Params.
_FEATURE_OPTIONS = tuple(
    name for name, p in inspect.signature(text_feature_stages).parameters.items()
    if p.kind is p.KEYWORD_ONLY and name not in ("docCol", "positionCol", "seed")
)


def skol_pipeline(
    textCol: str = "text",
    labelCol: str = "label3",
    indexedLabelCol: str = "label_index",
    numFeatures: int = DEFAULT_NUM_FEATURES,
    layout: bool = True,
    crf: bool = DEFAULT_CRF,
    crfWeight: float = DEFAULT_CRF_WEIGHT,
    priorCorrection: float = DEFAULT_PRIOR_CORRECTION,
    **params: Any,
) -> Pipeline:
    """Text and a string label in, a Pipeline of the text features, :class:`BiLSTMClassifier` and,
    with ``crf``, the feature-rich CRF, the two combined.

    ``labelCol`` holds class names (``label3`` from
    :func:`skol_spark.skol.datasets.with_three_classes`); ``StringIndexer`` writes
    their indices, in alphabetical order of the names, to ``indexedLabelCol``.
    ``numFeatures``, ``layout`` and the options of :func:`text_feature_stages`
    among ``params`` (``shape``, ``cues``, ``numShapeFeatures``,
    ``shapeNgrams``, ``wordTerms``, ``numWordTermFeatures``, ``taxonCues``,
    ``position``, ``relativeLayout``, ``wordVectors``; their defaults are the
    ``DEFAULT_*`` constants) choose the features, whose document and position
    columns are the classifier's ``docIdCol`` and ``positionCol``; the other
    ``params`` are :class:`BiLSTMClassifier` Params, whose defaults are the
    settings chosen on the journals.

    With ``crf`` (the default) a :class:`~skol_spark.skol.feature_crf.FeatureCRF`
    labels the same paragraphs from their text, and a
    :class:`~skol_spark.stages.blend.ProbabilityBlend` writes ``predictionCol``,
    ``probabilityCol`` and ``rawPredictionCol``: the weighted geometric mean of
    the two models' probabilities (the CRF's exponent ``crfWeight``, the
    BiLSTM's ``1 - crfWeight``) with the prior correction ``priorCorrection``
    toward the rare classes. The BiLSTM's own outputs are kept as
    ``bilstmPrediction``, ``bilstmProbability`` and ``bilstmRawPrediction``, the
    CRF's as ``crfPrediction`` and ``crfProbability``. With ``crf=False`` the
    BiLSTM writes the outputs itself.

    Examples
    --------
    >>> model = skol_pipeline(windowSize=50, epochs=8).fit(with_three_classes(train))  # doctest: +SKIP
    >>> model.transform(test).select("doc_id", "prediction")       # doctest: +SKIP
    """
    options = {name: params.pop(name) for name in list(params) if name in _FEATURE_OPTIONS}
    outputs = {name: params.pop(name) for name in _OUTPUTS if name in params} if crf else {}
    if crf:
        params.update({name: f"bilstm{column[0].upper()}{column[1:]}" for name, column in _OUTPUTS.items()})
    classifier = BiLSTMClassifier(featuresCol="features", labelCol=indexedLabelCol, **params)
    stages: list[Any] = [
        *text_feature_stages(
            textCol, "features", numFeatures, layout, **options,
            docCol=classifier.getDocIdCol(), positionCol=classifier.getPositionCol(), seed=classifier.getSeed(),
        ),
        StringIndexer(inputCol=labelCol, outputCol=indexedLabelCol, stringOrderType="alphabetAsc"),
    ]
    if not crf:
        return Pipeline(stages=[*stages, classifier])
    from skol_spark.skol.feature_crf import FeatureCRF
    from skol_spark.stages.blend import ProbabilityBlend

    if not 0 <= crfWeight <= 1:
        raise ValueError(f"Expected crfWeight to be in [0, 1]. Received: {crfWeight}")
    # The CRF fits before the BiLSTM: its fit reads the text and the labels only.
    feature_crf = FeatureCRF(textCol=textCol, labelCol=indexedLabelCol, docIdCol=classifier.getDocIdCol(),
                             positionCol=classifier.getPositionCol())
    blend = ProbabilityBlend(
        probabilityCols=[classifier.getProbabilityCol(), feature_crf.getProbabilityCol()],
        weights=[1 - crfWeight, crfWeight], priorCorrection=priorCorrection, labelCol=indexedLabelCol,
        **{name: outputs.get(name, column) for name, column in _OUTPUTS.items()},
    )
    return Pipeline(stages=[*stages, feature_crf, classifier, blend])


# The outputs the last stage writes, and their default columns.
_OUTPUTS = {"predictionCol": "prediction", "probabilityCol": "probability", "rawPredictionCol": "rawPrediction"}
