"""Data sets: YEDDA-annotated journal text, and a seeded synthetic corpus.

:func:`read_yedda` reads SKOL's annotated journals (see :mod:`skol_spark.skol.yedda`
for the format and how malformed markup is counted) into one row per block.

The synthetic corpus imitates a taxonomic journal. A document is a run of
ordinary text ("Misc-exposition") broken by taxon treatments: one
"Nomenclature" line followed by a few "Description" lines. Features are noisy
class prototypes; Description lines look much like ordinary text, so a model
that sees one line at a time confuses them, while a sequence model can use
the Nomenclature line just before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from skol_spark.compat.shims import arrow_to_spark
from skol_spark.skol.yedda import KEPT_CLASSES, OTHER_CLASS, ParseProblems, read_yedda_files
from skol_spark.stages.labels import MergeLabels

__all__ = [
    "SYNTHETIC_LABELS",
    "make_synthetic_documents",
    "synthetic_documents_arrow",
    "read_yedda",
    "three_class_labels",
    "with_three_classes",
]

SYNTHETIC_LABELS = ["Misc-exposition", "Nomenclature", "Description"]


def synthetic_documents_arrow(
    num_docs: int = 60,
    mean_length: int = 80,
    num_features: int = 16,
    seed: int = 0,
    noise: float = 1.0,
    feature_seed: int = 0,
) -> pa.Table:
    """The synthetic corpus as an Arrow table: doc_id, line_number, label, features.

    ``label`` is the class index in :data:`SYNTHETIC_LABELS` (Misc-exposition
    0, Nomenclature 1, Description 2); features are ``list<float>`` of length
    ``num_features``. Documents have at least one line; roughly 75% of lines
    are Misc-exposition, 5% Nomenclature and 20% Description. ``seed`` draws
    the documents; ``feature_seed`` the class prototypes, so corpora drawn with
    different seeds but one ``feature_seed`` (train and test) share them.
    """
    prototype_rng = np.random.default_rng(feature_seed)
    prototypes = prototype_rng.normal(size=(3, num_features))
    # Description sits close to ordinary text; Nomenclature stands out.
    prototypes[2] = prototypes[0] + 0.35 * prototype_rng.normal(size=num_features)
    rng = np.random.default_rng(seed)
    doc_ids, positions, labels = [], [], []
    for doc in range(num_docs):
        length = max(1, int(rng.poisson(mean_length)))
        sequence: list[int] = []
        while len(sequence) < length:
            sequence.extend([0] * int(rng.geometric(1 / 8)))
            if rng.random() < 0.6:
                sequence.append(1)
                sequence.extend([2] * int(rng.integers(2, 7)))
        sequence = sequence[:length]
        doc_ids.extend([f"doc-{doc:05d}"] * length)
        positions.extend(range(length))
        labels.extend(sequence)
    label_array = np.asarray(labels, dtype=np.int64)
    features = prototypes[label_array] + noise * rng.normal(size=(len(labels), num_features))
    # A line-level cue shared by Nomenclature lines and some ordinary lines
    # (headings), so a per-line model cannot tell them apart reliably.
    headings = (label_array == 0) & (rng.random(len(labels)) < 0.06)
    features[headings] = prototypes[1] + noise * rng.normal(size=(int(headings.sum()), num_features))
    flat = pa.array(features.astype(np.float32).reshape(-1))
    offsets = pa.array(np.arange(0, len(flat) + 1, num_features, dtype=np.int32))
    return pa.table(
        {
            "doc_id": pa.array(doc_ids),
            "line_number": pa.array(positions, pa.int32()),
            "label": pa.array(label_array.astype(np.float64)),
            "features": pa.ListArray.from_arrays(offsets, flat),
        }
    )


def make_synthetic_documents(
    spark: SparkSession,
    num_docs: int = 60,
    mean_length: int = 80,
    num_features: int = 16,
    seed: int = 0,
    noise: float = 1.0,
    as_vectors: bool = True,
    feature_seed: int = 0,
) -> DataFrame:
    """The synthetic corpus as a Spark DataFrame, one row per line.

    Columns: ``doc_id`` (string), ``line_number`` (int), ``label`` (double,
    with StringIndexer-style ML attributes naming the classes) and
    ``features`` (a dense Vector, or ``array<float>`` with ``as_vectors=False``).

    Examples
    --------
    >>> df = make_synthetic_documents(spark, num_docs=10, seed=1)   # doctest: +SKIP
    """
    table = synthetic_documents_arrow(num_docs, mean_length, num_features, seed, noise, feature_seed)
    df = arrow_to_spark(spark, table)
    label = F.col("label").alias(
        "label",
        metadata={"ml_attr": {"type": "nominal", "name": "label", "vals": SYNTHETIC_LABELS}},
    )
    features = F.col("features")
    if as_vectors:
        from pyspark.ml.functions import array_to_vector

        features = array_to_vector(features)
    return df.select("doc_id", "line_number", label, features.alias("features"))


def read_yedda(
    spark: SparkSession,
    root: str | os.PathLike,
    volumes: Sequence[str] | None = None,
    pattern: str = "*.txt.ann",
    unclosed: str = "error",
) -> tuple[DataFrame, ParseProblems]:
    """Read YEDDA-annotated files under ``root`` into a DataFrame, one row per block.

    Parameters
    ----------
    spark : SparkSession
    root : str or path-like
        Directory of annotated files, e.g. ``.../skol-annotated/journals``.
    volumes : sequence of str, optional
        Subdirectories of ``root`` to read (``"Mycotaxon/Vol054"``), or single
        files under it (``"Persoonia/Vol016/n1.txt.ann"``); all by default.
    pattern : str
        File name pattern, searched recursively.
    unclosed : {"error", "skip"}
        What a block opened and never closed does: raise a ``YeddaError``
        naming its file and line, or leave its text out
        (:func:`skol_spark.skol.yedda.read_yedda_files`). SKOL's journals have
        68 such blocks: read them with ``"skip"``.

    Returns
    -------
    (DataFrame, ParseProblems)
        Columns ``doc_id`` (the file's path under ``root``), ``line_number``
        (the block's order in its file), ``text`` and ``label`` (the raw label);
        and the markup irregularities counted while parsing (also logged), so
        that malformed blocks are reported, never silently dropped.

    Examples
    --------
    >>> df, problems = read_yedda(spark, "shared/data/skol-annotated/journals", unclosed="skip")  # doctest: +SKIP
    >>> with_three_classes(df).groupBy("label3").count().show()                  # doctest: +SKIP
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"Expected a directory of YEDDA files. Received: {str(root)!r} (not a directory)")
    directories: Iterable[Path] = [root / v for v in volumes] if volumes else [root]
    paths = []
    for directory in directories:
        found = [directory] if directory.is_file() else sorted(directory.rglob(pattern))
        if not found:
            raise ValueError(f"No files matching {pattern!r} under {str(directory)!r}.")
        paths.extend(found)
    paths = list(dict.fromkeys(paths))  # a file given alone and inside a given directory is read once
    table, problems = read_yedda_files(paths, root=root, unclosed=unclosed)
    # Materialized once so that the plan is no LocalRelation: Spark's optimizer
    # evaluates projections over a LocalRelation on the driver
    # (ConvertToLocalRelation), which ran a 1 GB driver out of heap on the
    # text features' token arrays for 40,000 paragraphs.
    return arrow_to_spark(spark, table).localCheckpoint(), problems


def three_class_labels(inputCol: str = "label", outputCol: str = "label3") -> MergeLabels:
    """SKOL's 3-class label as a Pipeline stage: Nomenclature and Description kept, the rest Misc-exposition.

    At the head of a Pipeline it is saved with the fitted model, so the saved
    model maps raw labels again when it is evaluated.
    """
    return MergeLabels(inputCol=inputCol, outputCol=outputCol, keep=list(KEPT_CLASSES), other=OTHER_CLASS)


def with_three_classes(df: DataFrame, labelCol: str = "label", outputCol: str = "label3") -> DataFrame:
    """Add SKOL's 3-class label (:func:`three_class_labels`); null labels stay null."""
    return three_class_labels(labelCol, outputCol).transform(df)
