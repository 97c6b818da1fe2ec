"""A linear-chain CRF over paragraphs: the classic sequence labeler to beat.

One sequence per document, one item per paragraph. The features are issue
11's: lowercased word unigrams (the first ``max_tokens``, binary); shape cues
(starts with a capital, binned shares of capitals / digits / punctuation, a
4-digit year, ``sp. nov.``, ``comb. nov.``, ``≡``, ``Fig.``, ``MycoBank``, a
leading ``=``, binned length and line count, a final period); and the shape
cues plus the first ``context_tokens`` words of the previous and next
paragraph, with document start / end flags.

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
    "paragraph_shape",
    "paragraph_features",
    "document_features",
    "collect_sequences",
    "fit_crf",
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


@dataclass(frozen=True)
class CRFSettings:
    """The CRF's knobs.

    ``c1`` / ``c2``: L1 / L2 regularization; ``max_iterations``: L-BFGS
    iterations (100 scores as running to convergence does, in a third of the time;
    None: until crfsuite converges); ``max_tokens``: word unigrams per
    paragraph; ``context_tokens``: words of each neighbour; ``ratio_bins``:
    bins of the capital / digit / punctuation shares.
    """

    c1: float = 0.1
    c2: float = 0.1
    max_iterations: int | None = 100
    max_tokens: int = 60
    context_tokens: int = 3
    ratio_bins: int = 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bin(value: float, bins: int) -> str:
    return str(min(bins - 1, int(value * bins)))


def paragraph_shape(text: str, ratio_bins: int = 10) -> dict[str, float]:
    """The binary shape cues of one paragraph, as ``{name: 1.0}``."""
    stripped = text.strip()
    n = max(1, len(stripped))
    capitals = sum(c.isupper() for c in stripped) / n
    digits = sum(c.isdigit() for c in stripped) / n
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


def paragraph_features(text: str, settings: CRFSettings = CRFSettings()) -> dict[str, float]:
    """Word unigrams plus shape cues of one paragraph (no context)."""
    features = {f"w={w}": 1.0 for w in _words(text, settings.max_tokens)}
    features.update(paragraph_shape(text, settings.ratio_bins))
    features["bias"] = 1.0
    return features


def document_features(texts: Sequence[str], settings: CRFSettings = CRFSettings()) -> list[dict[str, float]]:
    """One feature dict per paragraph of a document, with its neighbours' cues."""
    shapes = [paragraph_shape(t, settings.ratio_bins) for t in texts]
    heads = [_words(t, settings.context_tokens) for t in texts]
    items = []
    for i, text in enumerate(texts):
        features = paragraph_features(text, settings)
        for offset, flag in ((-1, "doc_start"), (1, "doc_end")):
            j = i + offset
            if not 0 <= j < len(texts):
                features[flag] = 1.0
                continue
            prefix = f"{offset:+d}:"
            features.update({prefix + name: 1.0 for name in shapes[j]})
            features.update({f"{prefix}w{k}={w}": 1.0 for k, w in enumerate(heads[j])})
        items.append(features)
    return items


def collect_sequences(
    df: Any,
    textCol: str = "text",
    labelCol: str = "label3",
    docCol: str = "doc_id",
    positionCol: str = "line_number",
) -> tuple[list[list[str]], list[list[str]]]:
    """A DataFrame's texts and labels collected to the driver, one list per document in order."""
    from pyspark.sql import functions as F

    pairs = F.sort_array(F.collect_list(F.struct(positionCol, textCol, labelCol)))
    rows = df.groupBy(docCol).agg(pairs.alias("items")).orderBy(docCol).collect()
    texts = [[item[1] or "" for item in row["items"]] for row in rows]
    labels = [[item[2] for item in row["items"]] for row in rows]
    return texts, labels


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
    """Fit sklearn-crfsuite's CRF (L-BFGS, no class weights) on documents of paragraphs.

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
    predicted = crf.predict([document_features(t, settings) for t in texts])
    for truth_doc, predicted_doc in zip(labels, predicted):
        for truth, guess in zip(truth_doc, predicted_doc):
            confusion[index[truth], index[guess]] += 1
    return confusion
