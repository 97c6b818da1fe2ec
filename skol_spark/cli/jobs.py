"""The train, predict and evaluate jobs behind ``skol-spark`` and ``spark-submit``.

Inputs are Parquet, CSV, JSON Lines or YEDDA files (``*.ann``, read by
:func:`skol_spark.skol.datasets.read_yedda`), one row per document position:
one or several files or directories, or a glob, of one format. What training
fits depends on the columns:

* a features column holding a Vector or an array of numbers (Parquet, JSON)
  and a numeric label: a :class:`BiLSTMClassifier` alone, saved as a
  :class:`BiLSTMClassificationModel`;
* the same with string labels: ``StringIndexer`` then the classifier, saved as
  a ``PipelineModel``;
* otherwise a text column (YEDDA, CSV, JSON): the text Pipeline of
  :func:`skol_spark.skol.text_pipeline.skol_pipeline`, saved as a ``PipelineModel``.

With ``three_classes`` the Pipeline starts with SKOL's 3-class mapping
(:func:`skol_spark.skol.datasets.three_class_labels`), so the saved model maps
labels again when it is evaluated. Predicting leaves the label stages out.

A model goes to a directory (any filesystem Spark writes) or to Redis
(``redis://`` or ``rediss://`` URL plus a key): a
:class:`BiLSTMClassificationModel` as one hash, a ``PipelineModel`` whole
(:mod:`skol_spark.stages.pipeline_store`). A save that fails after training
keeps the model in a local directory named in the error.

Every problem a user can fix (arguments, a missing input, an unreachable
store) raises :class:`JobError` with a one-line message, checked before Spark
or training starts wherever that can be known in advance.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import time
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
    "expand_inputs",
    "detect_format",
    "read_input",
    "input_kind",
    "make_estimator",
    "check_destination",
    "check_classes",
    "save_model",
    "save_or_keep",
    "load_model",
    "predict",
    "evaluate",
]

FORMATS = ("parquet", "csv", "json", "yedda")
_SUFFIXES = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".ann": "yedda"}
REDIS_SCHEMES = ("redis", "rediss")
PREDICTED_LABEL = "predicted_label"
_INDEXED_LABEL = "label_index"
_THREE_CLASS_LABEL = "label3"


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


def expand_inputs(paths: list[str]) -> list[str]:
    """The input paths with local globs expanded (sorted), each once; every local one must exist."""
    found: list[str] = []
    for path in paths:
        if not _is_local(path):
            found.append(path)  # Spark expands remote globs itself
        elif glob.has_magic(path):
            matches = sorted(glob.glob(str(_local(path)), recursive=True))  # ** spans directories
            if not matches:
                raise JobError(f"Input {path!r} matches no file.")
            found.extend(matches)
        elif not _local(path).exists():
            raise JobError(f"Input {path!r} does not exist.")
        else:
            found.append(path)
    return list(dict.fromkeys(found))  # a path given twice, or by two globs, is read once


def detect_format(paths: list[str], fmt: str | None = None) -> str:
    """The inputs' format: ``fmt`` when given, else guessed from the local paths' names."""
    if fmt:
        return fmt
    remote = [p for p in paths if not _is_local(p)]
    if remote:
        raise JobError(f"Cannot guess the format of the remote input {remote[0]!r}; pass --format.")
    names = []
    for path in paths:
        local = _local(path)
        names += [local] if local.is_file() else [p for p in local.rglob("*") if p.is_file()]
    found = {_SUFFIXES[p.suffix] for p in names if p.suffix in _SUFFIXES}
    if "yedda" in found:
        return "yedda"
    if len(found) == 1:
        return found.pop()
    shown = paths[0] if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more)"
    raise JobError(
        f"Cannot tell the format of {shown!r} from its file names (found "
        f"{sorted(found) or 'none of .parquet .csv .json .jsonl .ann'}); pass --format."
    )


def read_input(
    spark: SparkSession, paths: list[str], fmt: str, columns: Columns, three_classes: bool = False,
    skip_unclosed: bool = False,
) -> DataFrame:
    """The inputs as one DataFrame; YEDDA's fixed column names are renamed to ``columns``.

    ``three_classes`` maps the label column in place (predict, evaluate); training
    puts the mapping in the Pipeline instead (:func:`make_estimator`).
    """
    if fmt == "yedda":
        df = _read_yedda(spark, paths, skip_unclosed).withColumnsRenamed(
            {"doc_id": columns.doc, "line_number": columns.position, "text": columns.text,
             "label": columns.label}
        )
    elif fmt == "csv":
        # RFC 4180 quoting (as pandas and spreadsheets write it); text may span lines.
        df = spark.read.csv(paths, header=True, inferSchema=True, multiLine=True, escape='"')
    elif fmt == "json":
        df = spark.read.json(paths)
    elif fmt == "parquet":
        df = spark.read.parquet(*paths)
    else:
        raise JobError(f"Expected a format among {', '.join(FORMATS)}. Received: {fmt!r}")
    if three_classes:
        from skol_spark.skol.datasets import with_three_classes

        _require(df, [columns.label], "--three-classes")
        df = with_three_classes(df, columns.label, columns.label)
    return df


def _read_yedda(spark: SparkSession, paths: list[str], skip_unclosed: bool) -> DataFrame:
    """YEDDA files and directories (local); ``doc_id`` is each file's path under their common directory."""
    from skol_spark.skol.datasets import read_yedda

    if not all(_is_local(p) for p in paths):
        raise JobError("YEDDA input is read on the driver: give local files or directories.")
    locals_ = [_local(p).resolve() for p in paths]
    root = Path(os.path.commonpath([p if p.is_dir() else p.parent for p in locals_]))
    volumes = [p.relative_to(root).as_posix() for p in locals_]
    df, _ = read_yedda(spark, root, volumes, pattern="*.ann", unclosed="skip" if skip_unclosed else "error")
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
    three_classes: bool = False,
) -> Any:
    """A BiLSTMClassifier, or a Pipeline ending in one when labels or text need stages first.

    ``classifier_params`` are the BiLSTMClassifier Params the user gave (its
    defaults otherwise), whatever the input. ``feature_options`` (the feature
    switches, and ``crf``, ``crfWeight``, ``priorCorrection``) go to
    :func:`skol_spark.skol.text_pipeline.skol_pipeline` for text input.
    ``three_classes`` puts SKOL's 3-class mapping at the Pipeline's head.
    """
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import StringIndexer

    from skol_spark.skol.datasets import three_class_labels
    from skol_spark.skol.text_pipeline import DEFAULT_NUM_FEATURES, skol_pipeline
    from skol_spark.stages.classifier import BiLSTMClassifier

    _require(df, [columns.doc, columns.position, columns.label], "training")
    keys = dict(docIdCol=columns.doc, positionCol=columns.position)
    label, head = columns.label, []
    if three_classes:
        if _numeric_labels(df, columns):
            raise JobError(
                f"--three-classes maps class names, and the label column {columns.label!r} holds numbers. "
                "Leave it out, or point --label-col at the class names."
            )
        label, head = _THREE_CLASS_LABEL, [three_class_labels(columns.label, _THREE_CLASS_LABEL)]
    if input_kind(df, columns) == "text":
        text = skol_pipeline(
            textCol=columns.text, labelCol=label, indexedLabelCol=_INDEXED_LABEL,
            numFeatures=num_features or DEFAULT_NUM_FEATURES, layout=layout, **(feature_options or {}), **keys,
            **classifier_params,
        )
        return Pipeline(stages=[*head, *text.getStages()]) if head else text
    settings = classifier_params
    if not head and _numeric_labels(df, columns):
        return BiLSTMClassifier(featuresCol=columns.features, labelCol=label, **keys, **settings)
    return Pipeline(stages=[
        *head,
        StringIndexer(inputCol=label, outputCol=_INDEXED_LABEL, stringOrderType="alphabetAsc"),
        BiLSTMClassifier(featuresCol=columns.features, labelCol=_INDEXED_LABEL, **keys, **settings),
    ])


def _numeric_labels(df: DataFrame, columns: Columns) -> bool:
    from pyspark.sql import types as T

    return isinstance(df.schema[columns.label].dataType, T.NumericType)


def check_classes(df: DataFrame, estimator: Any, where: str) -> None:
    """Refuse, before fitting, training rows with fewer than two classes (after the label stages)."""
    from pyspark.sql import functions as F

    stages = estimator.getStages() if hasattr(estimator, "getStages") else [estimator]
    mappings, indexer = _label_stages(stages)
    labelled = df
    for stage in mappings:
        labelled = stage.transform(labelled)
    label = _label_input(stages[-1], [], indexer) if not mappings else mappings[-1].getOutputCol()
    rows = (labelled.where(F.col(f"`{label}`").isNotNull()).groupBy(F.col(f"`{label}`"))
            .count().orderBy(F.desc("count")).limit(2).collect())
    if len(rows) < 2:
        found = f"only {rows[0][0]!r} ({rows[0][1]:,} rows)" if rows else "no labelled row"
        after = " after --three-classes" if mappings else ""
        raise JobError(
            f"Training needs at least two classes; {where} has {found}{after}. "
            "Add documents of the other classes."
        )


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


def check_destination(destination: str, key: str | None, overwrite: bool) -> None:
    """Fail before training when the model could not be saved where asked."""
    if is_redis_url(destination):
        if not key:
            raise JobError("A Redis model destination needs --key.")
        client = _redis_client(destination)
        if not overwrite and client.exists(key):
            raise JobError(f"Redis key {key!r} already holds a value; pass --overwrite to replace it.")
    elif _is_local(destination):
        local = _local(destination)
        if local.exists() and not overwrite:
            raise JobError(f"Model destination {destination!r} exists; pass --overwrite to replace it.")
        parent = next((p for p in local.absolute().parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise JobError(f"Model destination {destination!r} is under {str(parent)!r}, which is a file.")


def save_model(model: Any, destination: str, key: str | None = None, overwrite: bool = False) -> None:
    """Write ``model`` to a directory, or to Redis under ``key`` (a PipelineModel whole)."""
    if is_redis_url(destination):
        from skol_spark.stages.model import BiLSTMClassificationModel
        from skol_spark.stages.pipeline_store import save_pipeline_to_redis

        check_destination(destination, key, overwrite)
        if isinstance(model, BiLSTMClassificationModel):
            model.saveToRedis(destination, key, overwrite=overwrite)
        else:
            save_pipeline_to_redis(model, destination, key, overwrite=overwrite)
        return
    writer = model.write()
    (writer.overwrite() if overwrite else writer).save(destination)


def save_or_keep(model: Any, destination: str, key: str | None, overwrite: bool, where: str) -> None:
    """:func:`save_model`; if that fails, the model goes to a new local directory the JobError names."""
    try:
        save_model(model, destination, key, overwrite)
        return
    except Exception as exc:  # noqa: BLE001 - whatever broke the save, the training is not thrown away
        reason = _first_line(exc)
    kept = keep_locally(model)
    if kept is None:
        raise JobError(f"Could not save the model to {where}: {reason}. Keeping it locally failed too.")
    to = f"--to {destination}" + (f" --to-key {key}" if key else "")
    raise JobError(
        f"Could not save the model to {where}: {reason}. The trained model is kept in {kept}; "
        f"copy it with: skol-spark copy --model {kept} {to}"
    )


def keep_locally(model: Any) -> str | None:
    """Save ``model`` to a fresh directory in the working directory (else the temp directory)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for parent in (os.getcwd(), tempfile.gettempdir()):
        try:
            kept = tempfile.mkdtemp(prefix=f"skol-spark-unsaved-{stamp}-", dir=parent)
            model.write().overwrite().save(kept)
            return kept
        except Exception:  # noqa: BLE001 - try the next place
            continue
    return None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


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
        from skol_spark.stages.pipeline_store import load_model_from_redis

        model, kind = load_model_from_redis(source, key), "the Redis key"
    else:
        metadata = spark.read.text(source.rstrip("/") + "/metadata").first()
        kind = json.loads(metadata[0]).get("class", "") if metadata else ""
        model = None
        if kind.endswith(".BiLSTMClassificationModel"):
            model = BiLSTMClassificationModel.load(source)
        elif kind.endswith(".PipelineModel"):
            model = PipelineModel.load(source)
    if isinstance(model, BiLSTMClassificationModel) or (
        isinstance(model, PipelineModel)
        and any(isinstance(stage, BiLSTMClassificationModel) for stage in model.stages)
    ):
        return model
    raise JobError(
        f"{source!r} holds {kind or 'no readable metadata'}, not a BiLSTMClassificationModel "
        "or a PipelineModel with one."
    )


def _bilstm(model: Any) -> Any:
    """The (last) BiLSTM of a model or Pipeline: its labels and its document keys."""
    from skol_spark.stages.model import BiLSTMClassificationModel

    stages = getattr(model, "stages", [model])
    return next((s for s in reversed(stages) if isinstance(s, BiLSTMClassificationModel)), stages[-1])


def _output(model: Any) -> Any:
    """The stage whose prediction and probability columns are the model's: the last one (the
    BiLSTM, or the blend of the BiLSTM and the CRF)."""
    return model.stages[-1] if hasattr(model, "stages") else model


def _label_stages(stages: list[Any]) -> tuple[list[Any], Any]:
    """The stages that only serve the label: the label mappings, and the indexer feeding the BiLSTM."""
    from skol_spark.stages.labels import MergeLabels

    label = stages[-1].getLabelCol()
    mappings = [s for s in stages if isinstance(s, MergeLabels)]
    indexer = next(
        (s for s in stages if hasattr(s, "getStringOrderType") and s.getOutputCol() == label), None
    )  # a StringIndexer or its model
    return mappings, indexer


def _label_input(bilstm: Any, mappings: list[Any], indexer: Any) -> str:
    """The label column a model (or Pipeline) reads from its input."""
    if mappings:
        return mappings[0].getInputCol()
    return indexer.getInputCol() if indexer is not None else bilstm.getLabelCol()


def _model_names(model: Any, df: DataFrame, columns: Columns) -> dict[str, str]:
    """Input column -> the column the saved model reads, where the two differ."""
    stages = getattr(model, "stages", [model])
    bilstm = _bilstm(model)
    mappings, indexer = _label_stages(stages)
    wanted = {columns.doc: bilstm.getDocIdCol(), columns.position: bilstm.getPositionCol()}
    first = next(s for s in stages if s is not indexer and s not in mappings)
    if first is not bilstm:  # a text pipeline starts at its text column
        wanted[columns.text] = first.getInputCol()
    else:
        wanted[columns.features] = bilstm.getFeaturesCol()
    if mappings or indexer is not None:
        wanted[columns.label] = _label_input(bilstm, mappings, indexer)
    renames = {have: need for have, need in wanted.items() if have != need and have in df.columns}
    clash = sorted(need for need in renames.values() if need in df.columns)
    if clash:
        raise JobError(
            f"The model reads column(s) {clash}, which the input also has besides the chosen "
            f"{sorted(renames)}. Rename or drop them first."
        )
    return renames


def predict(model: Any, df: DataFrame, columns: Columns, probability_as: str = "array") -> DataFrame:
    """The input columns plus ``prediction``, ``probability`` and ``predicted_label``.

    The stages that only serve the label are left out: the input needs no label column.
    """
    from pyspark.ml import PipelineModel
    from pyspark.sql import functions as F

    from skol_spark.compat.shims import vector_to_array

    bilstm, output = _bilstm(model), _output(model)
    renames = _model_names(model, df, columns)
    labeling = model
    if isinstance(model, PipelineModel):
        mappings, indexer = _label_stages(model.stages)
        labeling = PipelineModel(stages=[s for s in model.stages if s is not indexer and s not in mappings])
    out = labeling.transform(df.withColumnsRenamed(renames))
    probability = F.col(output.getProbabilityCol())
    if probability_as == "array":
        probability = vector_to_array(probability)
    names = F.array(*[F.lit(name) for name in bilstm.labels_])
    return out.select(
        *[F.col(f"`{renames.get(c, c)}`").alias(c) for c in df.columns],
        F.col(output.getPredictionCol()).alias("prediction"),
        probability.alias("probability"),
        F.element_at(names, F.col(output.getPredictionCol()).cast("int") + 1).alias(PREDICTED_LABEL),
    )


def evaluate(model: Any, df: DataFrame, columns: Columns, where: str = "the input") -> ClassificationReport:
    """Per-class metrics of ``model`` on labelled ``df``, with the label stages the model was saved with.

    Labels the model never saw are refused (one aggregation) before anything is labelled.
    """
    from skol_spark.stages.evaluation import classification_report

    _require(df, [columns.label], "evaluation")
    stages = getattr(model, "stages", [model])
    bilstm, output = _bilstm(model), _output(model)
    mappings, indexer = _label_stages(stages)
    renamed = df.withColumnsRenamed(_model_names(model, df, columns))
    if indexer is not None:
        _check_known_labels(renamed, mappings, indexer, where)
    out = model.transform(renamed)
    label_col = indexer.getOutputCol() if indexer is not None else columns.label
    return classification_report(out, bilstm.labels_, labelCol=label_col,
                                 predictionCol=output.getPredictionCol())


def _check_known_labels(df: DataFrame, mappings: list[Any], indexer: Any, where: str) -> None:
    from pyspark.sql import functions as F

    for stage in mappings:
        df = stage.transform(df)
    label = F.col(f"`{indexer.getInputCol()}`")
    known = [str(name) for name in indexer.labelsArray[0]]
    unseen = (df.where(label.isNotNull() & ~label.cast("string").isin(known)).groupBy(label)
              .count().orderBy(F.desc("count")).collect())
    if unseen:
        shown = ", ".join(f"{row[0]} ({row[1]:,} rows)" for row in unseen[:5])
        more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
        hint = "" if mappings else " (--three-classes maps SKOL's labels to its three classes first)"
        raise JobError(
            f"{where} has labels the model was not trained on: {shown}{more}. It knows "
            f"{', '.join(known)}{hint}."
        )


def write_json(path: str, payload: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        json.dump(payload, out, indent=2)
