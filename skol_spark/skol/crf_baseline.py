"""A linear-chain CRF over paragraphs: the classic sequence labeler to beat.

One sequence per document, one item per paragraph. The features are issue
11's: lowercased word unigrams (the first ``max_tokens``, binary); shape cues
(starts with a capital, binned shares of capitals / digits / punctuation, a
4-digit year, ``sp. nov.``, ``comb. nov.``, ``≡``, ``Fig.``, ``MycoBank``, a
leading ``=``, binned length and line count, a final period); and the shape
cues plus the first ``context_tokens`` words of the previous and next
paragraph, with document start / end flags.

``CRFSettings(features="rich")`` (:data:`FEATURE_CRF`) is the feature-rich
recipe, a stronger baseline: those features plus word bigrams of the first
30 words, 3- and 4-character suffixes of the first 12 words longer than 4
characters, the first and last word, counts binned 0-4 of Latin binomials,
bracketed author citations and numeric ranges, flags for type statements,
etymology, examined specimens, ``µm`` and ``×``; the shape and cue features
of the paragraphs two before and two after, the cue features of the
neighbours, and the relative position in the document in 5 bins; 150
L-BFGS iterations.

Feature extraction is pure Python. Fitting uses sklearn-crfsuite (L-BFGS),
a benchmark dependency only (``pip install "skol_spark[bench]"``), imported
when a CRF is built. It trains on the driver from rows collected by
:func:`collect_sequences`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "CRF_MISSING",
    "CRFSettings",
    "FEATURE_CRF",
    "CRF_FEATURES",
    "paragraph_cues",
    "paragraph_shape",
    "paragraph_features",
    "document_features",
    "Documents",
    "collect_documents",
    "collect_sequences",
    "fit_crf",
    "crf_predict",
    "crf_confusion",
]

CRF_MISSING = (
    "The CRF baseline needs sklearn-crfsuite, a benchmark dependency of skol_spark. "
    'Install it with: pip install "skol_spark[bench]" (or pip install sklearn-crfsuite)'
)

_WORD = re.compile(r"\w+")
_YEAR = re.compile(r"(?<!\d)(1[5-9]\d\d|20\d\d)(?!\d)")
_PUNCT = re.compile(r"[^\w\s]")
# (feature name, pattern searched in the paragraph)
_CUES = (
    ("sp_nov", re.compile(r"sp\.\s*nov\.", re.I)),
    ("comb_nov", re.compile(r"comb\.\s*nov\.", re.I)),
    ("equiv", re.compile("≡")),
    ("fig", re.compile(r"\bFig\.")),
    ("mycobank", re.compile(r"MycoBank", re.I)),
)
# The feature-rich recipe's cues: (name, pattern) counted and binned 0-4, then (name, pattern) flags.
_COUNTED_CUES = (
    ("binomials", re.compile(r"[A-Z][a-z]{2,}\s+[a-z]{3,}")),
    ("citations", re.compile(r"\([A-Z][\w.\s&]*\)")),
    ("ranges", re.compile(r"\d+(?:[.,]\d+)?\s*[-–]\s*\d+")),
)
_FLAG_CUES = (
    ("type", re.compile(r"holotype|typus|type", re.I)),
    ("etymology", re.compile(r"etymolog", re.I)),
    ("examined", re.compile(r"specimens?\s+examined", re.I)),
    ("micrometres", re.compile("[µμ]m")),
    ("times", re.compile("×")),
)
CRF_FEATURES = ("plain", "rich")


@dataclass(frozen=True)
class CRFSettings:
    """The CRF's knobs.

    ``features``: ``"plain"``, or ``"rich"`` for the feature-rich recipe
    (:data:`FEATURE_CRF`); ``c1`` / ``c2``: L1 / L2 regularization;
    ``max_iterations``: L-BFGS iterations (100 scores as running to
    convergence does, in a third of the time; None: until crfsuite converges);
    ``max_tokens``: word unigrams per paragraph; ``context_tokens``: words of
    each neighbour; ``ratio_bins``: bins of the capital / digit / punctuation
    shares; the rich recipe's ``bigram_tokens`` (words whose bigrams are
    taken), ``suffix_tokens`` (words whose suffixes are taken, if longer than
    ``suffix_min_length``), ``position_bins`` (of the relative position).
    """

    c1: float = 0.1
    c2: float = 0.1
    max_iterations: int | None = 100
    max_tokens: int = 60
    context_tokens: int = 3
    ratio_bins: int = 10
    features: str = "plain"
    bigram_tokens: int = 30
    suffix_tokens: int = 12
    suffix_min_length: int = 5
    position_bins: int = 5

    def __post_init__(self) -> None:
        if self.features not in CRF_FEATURES:
            raise ValueError(
                f"Expected CRFSettings features to be one of {', '.join(map(repr, CRF_FEATURES))}. "
                f"Received: {self.features!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The feature-rich linear-chain CRF, a public recipe: the baseline the BiLSTM's defaults must beat.
FEATURE_CRF = CRFSettings(features="rich", max_iterations=150)


def _bin(value: float, bins: int) -> str:
    return str(min(bins - 1, int(value * bins)))


def paragraph_shape(text: str, ratio_bins: int = 10) -> dict[str, float]:
    """The binary shape cues of one paragraph, as ``{name: 1.0}``."""
    stripped = text.strip()
    n = max(1, len(stripped))
    capitals = sum(map(str.isupper, stripped)) / n
    digits = sum(map(str.isdigit, stripped)) / n
    punctuation = len(_PUNCT.findall(stripped)) / n
    lines = stripped.count("\n") + 1
    shape = {
        f"cap={_bin(capitals, ratio_bins)}": 1.0,
        f"dig={_bin(digits, ratio_bins)}": 1.0,
        f"punct={_bin(punctuation, ratio_bins)}": 1.0,
        f"len={min(12, int(math.log2(len(stripped) + 1)))}": 1.0,
        f"lines={min(lines, 6)}": 1.0,
    }
    if stripped[:1].isupper():
        shape["starts_upper"] = 1.0
    if stripped.startswith("="):
        shape["starts_equals"] = 1.0
    if stripped.endswith("."):
        shape["ends_period"] = 1.0
    if _YEAR.search(stripped):
        shape["year"] = 1.0
    for name, pattern in _CUES:
        if pattern.search(stripped):
            shape[name] = 1.0
    return shape


def _words(text: str, limit: int) -> list[str]:
    return [m.group().lower() for m, _ in zip(_WORD.finditer(text), range(limit))]


def paragraph_cues(text: str) -> dict[str, float]:
    """The rich recipe's cues of one paragraph: binned counts (``binomials=2``, 0-4) and flags."""
    cues = {f"{name}={min(4, len(pattern.findall(text)))}": 1.0 for name, pattern in _COUNTED_CUES}
    cues.update({name: 1.0 for name, pattern in _FLAG_CUES if pattern.search(text)})
    return cues


def _rich_words(text: str, settings: CRFSettings) -> dict[str, float]:
    """Word bigrams, suffixes, first and last word: the rich recipe's word features."""
    words = [m.group().lower() for m in _WORD.finditer(text)]
    head = words[: settings.bigram_tokens]
    features = {f"b={a}|{b}": 1.0 for a, b in zip(head, head[1:])}
    for word in words[: settings.suffix_tokens]:
        if len(word) >= settings.suffix_min_length:
            features[f"s3={word[-3:]}"] = 1.0
            features[f"s4={word[-4:]}"] = 1.0
    if words:
        features[f"first={words[0]}"] = 1.0
        features[f"last={words[-1]}"] = 1.0
    return features


def paragraph_features(
    text: str,
    settings: CRFSettings = CRFSettings(),
    shape: dict[str, float] | None = None,
    cues: dict[str, float] | None = None,
) -> dict[str, float]:
    """Word unigrams plus shape cues of one paragraph (no context); the rich recipe adds its
    word features and cues. ``shape`` and ``cues``: the paragraph's, if already computed."""
    features = {f"w={w}": 1.0 for w in _words(text, settings.max_tokens)}
    features.update(shape if shape is not None else paragraph_shape(text, settings.ratio_bins))
    if settings.features == "rich":
        features.update(_rich_words(text, settings))
        features.update(cues if cues is not None else paragraph_cues(text))
    features["bias"] = 1.0
    return features


def document_features(texts: Sequence[str], settings: CRFSettings = CRFSettings()) -> list[dict[str, float]]:
    """One feature dict per paragraph of a document, with its neighbours' cues."""
    shapes = [paragraph_shape(t, settings.ratio_bins) for t in texts]
    heads = [_words(t, settings.context_tokens) for t in texts]
    rich = settings.features == "rich"
    cues = [paragraph_cues(t) for t in texts] if rich else []
    items = []
    for i, text in enumerate(texts):
        features = paragraph_features(text, settings, shapes[i], cues[i] if rich else None)
        for offset, flag in ((-1, "doc_start"), (1, "doc_end")):
            j = i + offset
            if not 0 <= j < len(texts):
                features[flag] = 1.0
                continue
            prefix = f"{offset:+d}:"
            features.update({prefix + name: 1.0 for name in shapes[j]})
            features.update({f"{prefix}w{k}={w}": 1.0 for k, w in enumerate(heads[j])})
            if rich:
                features.update({prefix + name: 1.0 for name in cues[j]})
        if rich:
            for offset in (-2, 2):
                j = i + offset
                if 0 <= j < len(texts):
                    prefix = f"{offset:+d}:"
                    features.update({prefix + name: 1.0 for name in (*shapes[j], *cues[j])})
            features[f"relpos={min(settings.position_bins - 1, i * settings.position_bins // len(texts))}"] = 1.0
        items.append(features)
    return items


@dataclass(frozen=True)
class Documents:
    """Documents collected to the driver: per document (sorted by id) its id, positions, texts
    and labels, paragraphs in position order."""

    doc_ids: list[str]
    positions: list[list[int]]
    texts: list[list[str]]
    labels: list[list[str]]

    def frame(self, index: dict[str, float], predicted: Sequence[Sequence[str]]) -> Any:
        """A pandas frame of doc_id, line_number, label and prediction (label indices from ``index``)."""
        import pandas as pd

        truth = [index[y] for doc in self.labels for y in doc]
        return pd.DataFrame({
            "doc_id": [d for d, positions in zip(self.doc_ids, self.positions) for _ in positions],
            "line_number": [p for positions in self.positions for p in positions],
            "label": truth,
            "prediction": [index[y] for doc in predicted for y in doc],
        })


def collect_documents(
    df: Any,
    textCol: str = "text",
    labelCol: str = "label3",
    docCol: str = "doc_id",
    positionCol: str = "line_number",
) -> Documents:
    """A DataFrame's documents collected to the driver, paragraphs in position order."""
    from pyspark.sql import functions as F

    pairs = F.sort_array(F.collect_list(F.struct(positionCol, textCol, labelCol)))
    rows = df.groupBy(docCol).agg(pairs.alias("items")).orderBy(docCol).collect()
    return Documents(
        [row[0] for row in rows],
        [[item[0] for item in row["items"]] for row in rows],
        [[item[1] or "" for item in row["items"]] for row in rows],
        [[item[2] for item in row["items"]] for row in rows],
    )


def collect_sequences(
    df: Any,
    textCol: str = "text",
    labelCol: str = "label3",
    docCol: str = "doc_id",
    positionCol: str = "line_number",
) -> tuple[list[list[str]], list[list[str]]]:
    """A DataFrame's texts and labels collected to the driver, one list per document in order."""
    documents = collect_documents(df, textCol, labelCol, docCol, positionCol)
    return documents.texts, documents.labels


def _crf_class() -> Any:
    try:
        from sklearn_crfsuite import CRF
    except ImportError as exc:
        raise ImportError(CRF_MISSING) from exc
    return CRF


def fit_crf(
    texts: Sequence[Sequence[str]],
    labels: Sequence[Sequence[str]],
    settings: CRFSettings = CRFSettings(),
) -> Any:
    """Fit sklearn-crfsuite's CRF (L-BFGS, no class weights, all possible transitions) on documents
    of paragraphs.

    Returns the fitted ``sklearn_crfsuite.CRF``; label it with
    ``crf.predict([document_features(texts, settings), ...])``.
    """
    CRF = _crf_class()
    if len(texts) != len(labels) or any(len(t) != len(y) for t, y in zip(texts, labels)):
        raise ValueError(
            "Expected one label per paragraph in every document. "
            f"Received: {len(texts)} documents of texts and {len(labels)} of labels, "
            "or a document whose texts and labels differ in length."
        )
    crf = CRF(
        algorithm="lbfgs",
        c1=settings.c1,
        c2=settings.c2,
        max_iterations=settings.max_iterations,
        all_possible_transitions=True,
    )
    crf.fit([document_features(t, settings) for t in texts], [list(y) for y in labels])
    return crf


def crf_predict(crf: Any, texts: Sequence[Sequence[str]], settings: CRFSettings = CRFSettings()) -> list[list[str]]:
    """The fitted CRF's labels (Viterbi) for documents of paragraphs."""
    return [list(y) for y in crf.predict([document_features(t, settings) for t in texts])]


def crf_confusion(
    crf: Any,
    texts: Sequence[Sequence[str]],
    labels: Sequence[Sequence[str]],
    names: Sequence[str],
    settings: CRFSettings = CRFSettings(),
) -> np.ndarray:
    """The K x K confusion matrix (rows truth, columns prediction) over ``names``."""
    index = {name: i for i, name in enumerate(names)}
    confusion = np.zeros((len(names), len(names)), dtype=np.int64)
    predicted = crf_predict(crf, texts, settings)
    for truth_doc, predicted_doc in zip(labels, predicted):
        for truth, guess in zip(truth_doc, predicted_doc):
            confusion[index[truth], index[guess]] += 1
    return confusion
