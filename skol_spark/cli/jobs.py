"""The train, predict and evaluate jobs behind ``skol-spark`` and ``spark-submit``.

Inputs are Parquet, CSV, JSON Lines or a directory of YEDDA files (``*.ann``,
read by :func:`skol_spark.skol.datasets.read_yedda`), one row per document position.
What training fits depends on the columns:

* a features column holding a Vector or an array of numbers (Parquet, JSON)
  and a numeric label: a :class:`BiLSTMClassifier` alone, saved as a
  :class:`BiLSTMClassificationModel`;
* the same with string labels: ``StringIndexer`` then the classifier, saved as
  a ``PipelineModel``;
* otherwise a text column (YEDDA, CSV, JSON): the text Pipeline of
  :func:`skol_spark.skol.text_pipeline.skol_pipeline`, saved as a ``PipelineModel``.

A model goes to a directory (any filesystem Spark writes) or, when it is a
:class:`BiLSTMClassificationModel`, to Redis (``redis://`` or ``rediss://``
URL plus a key). A ``PipelineModel`` is refused for Redis, before training.

Every problem a user can fix (arguments, a missing input, an unreachable
store) raises :class:`JobError` with a one-line message, checked before Spark
or training starts wherever that can be known in advance.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from skol_spark.errors import JobError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from skol_spark.stages.evaluation import ClassificationReport

__all__ = [
    "FORMATS",
    "Columns",
    "JobError",
    "detect_format",
    "read_input",
    "input_kind",
    "make_estimator",
    "check_destination",
    "save_model",
    "load_model",
    "predict",
    "evaluate",
]

FORMATS = ("parquet", "csv", "json", "yedda")
_SUFFIXES = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".ann": "yedda"}
REDIS_SCHEMES = ("redis", "rediss")
PREDICTED_LABEL = "predicted_label"
_INDEXED_LABEL = "label_index"


@dataclass(frozen=True)
class Columns:
    """Column names of the input, defaulting to those of :mod:`skol_spark.skol.datasets`."""

    doc: str = "doc_id"
    position: str = "line_number"
    text: str = "text"
    label: str = "label"
    features: str = "features"


def _is_local(path: str) -> bool:
    scheme = urlsplit(path).scheme
    return scheme in ("", "file") or len(scheme) == 1  # one letter: a Windows drive


def _local(path: str) -> Path:
    return Path(urlsplit(path).path if path.startswith("file:") else path)


def is_redis_url(location: str) -> bool:
    return urlsplit(location).scheme in REDIS_SCHEMES


def detect_format(path: str, fmt: str | None = None) -> str:
    """The input's format: ``fmt`` when given, else guessed from the local path's names."""
    if _is_local(path) and not _local(path).exists():
        raise JobError(f"Input {path!r} does not exist.")
    if fmt:
        return fmt
    if not _is_local(path):
        raise JobError(f"Cannot guess the format of the remote input {path!r}; pass --format.")
    local = _local(path)
    names = [local] if local.is_file() else [p for p in local.rglob("*") if p.is_file()]
    found = {_SUFFIXES[p.suffix] for p in names if p.suffix in _SUFFIXES}
    if "yedda" in found:
        return "yedda"
    if len(found) == 1:
        return found.pop()
    raise JobError(
        f"Cannot tell the format of {path!r} from its file names (found "
        f"{sorted(found) or 'none of .parquet .csv .json .jsonl .ann'}); pass --format."
    )


def read_input(
    spark: SparkSession, path: str, fmt: str, columns: Columns, three_classes: bool = False
) -> DataFrame:
    """The input as a DataFrame; YEDDA's fixed column names are renamed to ``columns``."""
    if fmt == "yedda":
        from skol_spark.skol.datasets import read_yedda

        df, _ = read_yedda(spark, _local(path), pattern="*.ann")
        df = df.withColumnsRenamed(
            {"doc_id": columns.doc, "line_number": columns.position, "text": columns.text,
             "label": columns.label}
        )
    elif fmt == "csv":
        # RFC 4180 quoting (as pandas and spreadsheets write it); text may span lines.
        df = spark.read.csv(path, header=True, inferSchema=True, multiLine=True, escape='"')
    elif fmt == "json":
        df = spark.read.json(path)
    elif fmt == "parquet":
        df = spark.read.parquet(path)
    else:
        raise JobError(f"Expected a format among {', '.join(FORMATS)}. Received: {fmt!r}")
    if three_classes:
        from skol_spark.skol.datasets import with_three_classes

        _require(df, [columns.label], "--three-classes")
        df = with_three_classes(df, columns.label, columns.label)
    return df


def _require(df: DataFrame, names: list[str], why: str) -> None:
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise JobError(
            f"Column(s) {missing} missing for {why}. Received columns: {df.columns}. "
            "Point --doc-col/--position-col/--text-col/--label-col/--features-col at them."
        )


def input_kind(df: DataFrame, columns: Columns) -> str:
    """``"features"`` when the features column holds numbers, else ``"text"``."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T

    fields = {f.name: f.dataType for f in df.schema.fields}
    features = fields.get(columns.features)
    if isinstance(features, VectorUDT) or (
        isinstance(features, T.ArrayType) and isinstance(features.elementType, T.NumericType)
    ):
        return "features"
    if columns.text in fields:
        return "text"
    raise JobError(
        f"Expected a features column {columns.features!r} (Vector or array of numbers) or a text "
        f"column {columns.text!r}. Received columns: {df.columns}. Set --features-col or --text-col."
    )


def make_estimator(
    df: DataFrame,
    columns: Columns,
    classifier_params: dict[str, Any],
    num_features: int | None = None,
    layout: bool = True,
    feature_options: dict[str, Any] | None = None,
) -> Any:
    """A BiLSTMClassifier, or a Pipeline ending in one when labels or text need stages first.

    ``classifier_params`` are the BiLSTMClassifier Params the user gave (its
    defaults otherwise), whatever the input. ``feature_options``
    (``shape``, ``cues``, ``numShapeFeatures``, ``shapeNgrams``) go to
    :func:`skol_spark.skol.text_pipeline.skol_pipeline` for text input.
    """
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import StringIndexer
    from pyspark.sql import types as T

    from skol_spark.skol.text_pipeline import DEFAULT_NUM_FEATURES, skol_pipeline
    from skol_spark.stages.classifier import BiLSTMClassifier

    _require(df, [columns.doc, columns.position, columns.label], "training")
    keys = dict(docIdCol=columns.doc, positionCol=columns.position)
    if input_kind(df, columns) == "text":
        return skol_pipeline(
            textCol=columns.text, labelCol=columns.label, indexedLabelCol=_INDEXED_LABEL,
            numFeatures=num_features or DEFAULT_NUM_FEATURES, layout=layout, **(feature_options or {}), **keys,
            **classifier_params,
        )
    settings = classifier_params
    if isinstance(df.schema[columns.label].dataType, T.NumericType):
        return BiLSTMClassifier(featuresCol=columns.features, labelCol=columns.label, **keys, **settings)
    return Pipeline(stages=[
        StringIndexer(inputCol=columns.label, outputCol=_INDEXED_LABEL, stringOrderType="alphabetAsc"),
        BiLSTMClassifier(featuresCol=columns.features, labelCol=_INDEXED_LABEL, **keys, **settings),
    ])


def _redis_client(url: str) -> Any:
    """A client for ``url`` that has answered a PING."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from skol_spark.stores.redis_store import _redact, redis_client

    client, _ = redis_client(url, retry=Retry(NoBackoff(), 1))  # a closed port answers at once
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        raise JobError(f"Redis at {_redact(url)} is unavailable: {exc}") from exc
    return client


def check_destination(destination: str, key: str | None, overwrite: bool, pipeline: bool | None) -> None:
    """Fail before training when the model could not be saved where asked.

    ``pipeline`` says whether training will produce a PipelineModel (None: not known yet).
    """
    if is_redis_url(destination):
        if pipeline:
            raise JobError(
                "Redis stores only a BiLSTMClassificationModel, and this input trains a "
                "PipelineModel (text or string labels). Save it to a directory, or train on a "
                "numeric features column with numeric labels."
            )
        if not key:
            raise JobError("A Redis model destination needs --key.")
        client = _redis_client(destination)
        if not overwrite and client.exists(key):
            raise JobError(f"Redis key {key!r} already holds a value; pass --overwrite to replace it.")
    elif _is_local(destination) and _local(destination).exists() and not overwrite:
        raise JobError(f"Model destination {destination!r} exists; pass --overwrite to replace it.")


def save_model(model: Any, destination: str, key: str | None = None, overwrite: bool = False) -> None:
    """Write ``model`` to a directory, or a BiLSTMClassificationModel to Redis."""
    if is_redis_url(destination):
        from skol_spark.stages.model import BiLSTMClassificationModel

        check_destination(destination, key, overwrite, not isinstance(model, BiLSTMClassificationModel))
        model.saveToRedis(destination, key, overwrite=overwrite)
        return
    writer = model.write()
    (writer.overwrite() if overwrite else writer).save(destination)


def check_source(source: str, key: str | None) -> None:
    """Fail before Spark starts when the model cannot be there."""
    if is_redis_url(source):
        if not key:
            raise JobError("A Redis model source needs --key.")
        if not _redis_client(source).exists(key):
            raise JobError(f"No model under Redis key {key!r}.")
    elif _is_local(source) and not (_local(source) / "metadata").is_dir():
        raise JobError(f"No saved model at {source!r} (expected a directory with metadata/).")


def load_model(spark: SparkSession, source: str, key: str | None = None) -> Any:
    """A BiLSTMClassificationModel or a PipelineModel ending in one, from a directory or Redis."""
    from pyspark.ml import PipelineModel

    from skol_spark.stages.model import BiLSTMClassificationModel

    check_source(source, key)
    if is_redis_url(source):
        return BiLSTMClassificationModel.loadFromRedis(source, key)
    metadata = spark.read.text(source.rstrip("/") + "/metadata").first()
    kind = json.loads(metadata[0]).get("class", "") if metadata else ""
    if kind.endswith(".BiLSTMClassificationModel"):
        return BiLSTMClassificationModel.load(source)
    if kind.endswith(".PipelineModel"):
        model = PipelineModel.load(source)
        if model.stages and isinstance(model.stages[-1], BiLSTMClassificationModel):
            return model
    raise JobError(
        f"{source!r} holds {kind or 'no readable metadata'}, not a BiLSTMClassificationModel "
        "or a PipelineModel ending in one."
    )


def _bilstm(model: Any) -> Any:
    return model.stages[-1] if hasattr(model, "stages") else model


def _label_indexer(model: Any) -> Any:
    """The fitted StringIndexer of a pipeline (its label column), if any."""
    from pyspark.ml.feature import StringIndexerModel

    return next((s for s in getattr(model, "stages", []) if isinstance(s, StringIndexerModel)), None)


def _model_names(model: Any, df: DataFrame, columns: Columns) -> dict[str, str]:
    """Input column -> the column the saved model reads, where the two differ."""
    bilstm, indexer = _bilstm(model), _label_indexer(model)
    wanted = {columns.doc: bilstm.getDocIdCol(), columns.position: bilstm.getPositionCol()}
    first = getattr(model, "stages", [bilstm])[0]
    if first is not bilstm and first is not indexer:  # a text pipeline starts at its text column
        wanted[columns.text] = first.getInputCol()
    else:
        wanted[columns.features] = bilstm.getFeaturesCol()
    if indexer is not None:
        wanted[columns.label] = indexer.getInputCol()
    renames = {have: need for have, need in wanted.items() if have != need and have in df.columns}
    clash = sorted(need for need in renames.values() if need in df.columns)
    if clash:
        raise JobError(
            f"The model reads column(s) {clash}, which the input also has besides the chosen "
            f"{sorted(renames)}. Rename or drop them first."
        )
    return renames


def predict(model: Any, df: DataFrame, columns: Columns, probability_as: str = "array") -> DataFrame:
    """The input columns plus ``prediction``, ``probability`` and ``predicted_label``."""
    from pyspark.sql import functions as F

    from skol_spark.compat.shims import vector_to_array

    indexer = _label_indexer(model)
    if indexer is not None:
        indexer.setHandleInvalid("keep")  # labels unseen in training must not stop prediction
    bilstm = _bilstm(model)
    renames = _model_names(model, df, columns)
    out = model.transform(df.withColumnsRenamed(renames))
    probability = F.col(bilstm.getProbabilityCol())
    if probability_as == "array":
        probability = vector_to_array(probability)
    names = F.array(*[F.lit(name) for name in bilstm.labels_])
    return out.select(
        *[F.col(f"`{renames.get(c, c)}`").alias(c) for c in df.columns],
        F.col(bilstm.getPredictionCol()).alias("prediction"),
        probability.alias("probability"),
        F.element_at(names, F.col(bilstm.getPredictionCol()).cast("int") + 1).alias(PREDICTED_LABEL),
    )


def evaluate(model: Any, df: DataFrame, columns: Columns) -> ClassificationReport:
    """Per-class metrics of ``model`` on labelled ``df``."""
    from skol_spark.stages.evaluation import classification_report

    _require(df, [columns.label], "evaluation")
    indexer, bilstm = _label_indexer(model), _bilstm(model)
    out = model.transform(df.withColumnsRenamed(_model_names(model, df, columns)))
    label_col = indexer.getOutputCol() if indexer is not None else columns.label
    return classification_report(out, bilstm.labels_, labelCol=label_col,
                                 predictionCol=bilstm.getPredictionCol())


def write_json(path: str, payload: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        json.dump(payload, out, indent=2)
