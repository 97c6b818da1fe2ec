"""Saving and loading: DefaultParams-style metadata plus one binary weights body.

A saved model is two parts, produced and consumed by one pair of functions
(:func:`model_to_parts`, :func:`model_from_parts`) shared by every place a
model is kept. They take and give a :class:`SavedStage` (class name, uid and
Params, as Spark ML metadata records them) and a
:class:`~skol_spark.nn.trained_network.TrainedNetwork`; they never see the stage
classes, which build themselves from those two values (:mod:`skol_spark.stages`).

* ``metadata``: the JSON Spark ML's ``DefaultParamsWriter`` writes (class, uid,
  Spark version, paramMap, defaultParamMap), without the weights, plus a
  ``skolSpark`` section recording the body's format, size and SHA-256;
* ``body``: the weights as an ``.npz`` archive (numpy arrays only, no pickle).

On disk (any filesystem Spark can write) the directory holds ``metadata/``
(one JSON line, as Spark ML writes it) and ``weights/`` (Parquet rows of
binary chunks, so bodies of any size avoid Spark's row limits). The Redis
store (:mod:`skol_spark.stores.redis_store`) keeps the same two parts under one key.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.ml.util import MLWriter
from pyspark.sql import SparkSession

from skol_spark.compat.connect import check_connect_support, is_remote
from skol_spark.errors import (
    ChecksumMismatchError,
    CorruptModelError,
    ModelLoadError,
    ModelRebuildError,
    UnsafeModelError,
    WrongModelClassError,
)
from skol_spark.nn.trained_network import TrainedNetwork

__all__ = [
    "FORMAT_VERSION",
    "SavedStage",
    "model_to_parts",
    "model_from_parts",
    "parse_metadata",
    "OverwritingWriter",
    "save_model_directory",
    "load_model_directory",
    "save_stage_directory",
    "load_stage_directory",
    "INITIAL_MODEL_DIR",
]

# 2: networks may start with a per-position projection (Param embeddingSize).
# 1: no projection; such a model loads with embeddingSize=0 and runs whole.
FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)
# Params that hold the network: the body is saved apart, the JSON stays in the metadata.
NETWORK_PARAMS = ("modelJson", "modelWeights")
DISK_CHUNK_BYTES = 8 << 20
METADATA_DIR, WEIGHTS_DIR, INITIAL_MODEL_DIR = "metadata", "weights", "initialModel"


@dataclass(frozen=True)
class SavedStage:
    """What Spark ML metadata says about a stage: its class, uid and Params.

    ``param_map`` holds the Params set explicitly, ``default_param_map`` the
    defaults, both as JSON values; neither holds the network's weights.
    """

    class_name: str
    uid: str
    param_map: dict[str, Any] = field(default_factory=dict)
    default_param_map: dict[str, Any] = field(default_factory=dict)

    def param(self, name: str, default: Any = None) -> Any:
        return self.param_map.get(name, self.default_param_map.get(name, default))

    def metadata(self, spark_version: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "class": self.class_name,
            "timestamp": int(round(time.time() * 1000)),
            "sparkVersion": spark_version,
            "uid": self.uid,
            "paramMap": self.param_map,
            "defaultParamMap": self.default_param_map,
            **(extra or {}),
        }


def parse_metadata(metadata: str | bytes, class_name: str, source: str) -> dict[str, Any]:
    """Parse saved metadata and check it was written by ``class_name``."""
    try:
        parsed = json.loads(metadata)
        written_by = parsed["class"]
    except (TypeError, ValueError, KeyError) as exc:
        raise CorruptModelError(
            f"{source}: the metadata is not Spark ML model metadata ({type(exc).__name__}: {exc})"
        ) from exc
    if written_by != class_name:
        raise WrongModelClassError(
            f"{source} was written by {written_by}, not {class_name}. "
            f"Load it with {written_by.rsplit('.', 1)[-1]}.load instead."
        )
    return parsed


def _stage_of(parsed: dict[str, Any]) -> SavedStage:
    return SavedStage(
        parsed["class"], parsed.get("uid", ""), parsed.get("paramMap") or {}, parsed.get("defaultParamMap") or {}
    )


def model_to_parts(stage: SavedStage, network: TrainedNetwork, spark_version: str) -> tuple[str, bytes]:
    """The metadata JSON (with the architecture, without weights) and the weights body."""
    param_map = {k: v for k, v in stage.param_map.items() if k not in NETWORK_PARAMS}
    param_map["modelJson"] = network.architecture
    saved = SavedStage(stage.class_name, stage.uid, param_map, stage.default_param_map)
    record = {
        "formatVersion": FORMAT_VERSION,
        "body": {"format": "npz", "bytes": len(network.weights), "sha256": network.digest},
    }
    metadata = saved.metadata(spark_version, {"skolSpark": record})
    return json.dumps(metadata, separators=(",", ":")), network.weights


def model_from_parts(
    metadata: str | bytes, body: bytes, class_name: str, source: str
) -> tuple[SavedStage, TrainedNetwork]:
    """The stage record and network of a saved model, after checking all of it.

    Checks the class, the format version, the body's size and SHA-256, and
    rebuilds the architecture once in Keras safe mode (so a payload asking for
    a ``Lambda`` layer or an unknown class is refused here, never executed on
    the executors) with the weights in it, and that the Params the executors
    rely on (numFeatures, labels, windowSize) describe that network.
    """
    parsed = parse_metadata(metadata, class_name, source)
    record = parsed.get("skolSpark", {})
    version = record.get("formatVersion")
    if version not in READABLE_FORMAT_VERSIONS:
        raise CorruptModelError(
            f"{source}: unsupported skol_spark format version {version!r}; "
            f"this version reads {', '.join(map(str, READABLE_FORMAT_VERSIONS))}."
        )
    expected = record.get("body", {})
    if len(body) != expected.get("bytes"):
        raise CorruptModelError(
            f"{source}: the weights body is truncated or padded: {len(body)} bytes, "
            f"the metadata records {expected.get('bytes')}."
        )
    stage = _stage_of(parsed)
    if version == 1 and "embeddingSize" not in stage.param_map:  # format 1 has no projection
        params = {**stage.param_map, "embeddingSize": 0}
        stage = SavedStage(stage.class_name, stage.uid, params, stage.default_param_map)
    architecture = stage.param("modelJson")
    if not isinstance(architecture, str):
        raise CorruptModelError(f"{source}: the metadata holds no modelJson.")
    network = TrainedNetwork(architecture, body)
    if network.digest != expected.get("sha256"):
        raise ChecksumMismatchError(
            f"{source}: the weights body's SHA-256 {network.digest[:16]}... does not match the "
            f"recorded {str(expected.get('sha256'))[:16]}...; the body is corrupt."
        )
    try:
        rebuilt = network.rebuild(safe_mode=True)
    except UnsafeModelError as exc:
        raise UnsafeModelError(f"{source}: {exc}") from exc
    except ModelRebuildError as exc:
        raise CorruptModelError(f"{source}: {exc}") from exc
    _check_shapes(stage, rebuilt, source)
    return stage, network


def _check_shapes(stage: SavedStage, network: Any, source: str) -> None:
    """The Params the executors rely on must agree with the network they describe."""
    window, features = network.inputs[0].shape[1], network.inputs[0].shape[2]
    checks = [("numFeatures", features, "input features"), ("labels", network.outputs[0].shape[-1], "output classes")]
    if window is not None:  # a network with a free time axis takes any windowSize
        checks.append(("windowSize", window, "positions per window"))
    for name, actual, what in checks:
        recorded = stage.param(name)
        if recorded is None:
            continue
        count = len(recorded) if isinstance(recorded, list) else recorded
        if count != actual:
            raise CorruptModelError(
                f"{source}: the metadata's {name} ({recorded!r}) does not match the "
                f"network, which has {actual} {what}."
            )


def _save_mode(overwrite: bool) -> str:
    # "error", not "errorifexists": Spark Connect's writer accepts only the short name.
    return "overwrite" if overwrite else "error"


def write_text(spark: SparkSession, path: str, text: str, overwrite: bool) -> None:
    frame = spark.createDataFrame([(text,)], schema="value string").coalesce(1)
    frame.write.mode(_save_mode(overwrite)).text(path)


def read_text(spark: SparkSession, path: str, source: str) -> str:
    try:
        row = spark.read.text(path).first()
    except Exception as exc:  # noqa: BLE001 - AnalysisException and friends
        raise ModelLoadError(
            f"{source}: cannot read {path} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            "Is this a saved skol_spark model directory?"
        ) from exc
    if row is None:
        raise CorruptModelError(f"{source}: {path} is empty.")
    return row[0]


def _remove_for_overwrite(path: str) -> None:
    """Delete ``path`` through the Connect server's ML helper, as pyspark's Connect writers do."""
    from pyspark.ml.connect.readwrite import RemoteMLWriter  # pyspark >= 4.0, checked before

    RemoteMLWriter.handleOverwrite(path, True)


class OverwritingWriter(MLWriter):
    """An MLWriter whose overwrite empties the directory in classic Spark and under Connect.

    Classic Spark deletes through the JVM (``_handleOverwrite``); Spark Connect
    has no JVM on the client, so the server's ML helper deletes instead.
    """

    def save(self, path: str) -> None:
        check_connect_support("saving")
        if self.shouldOverwrite:
            if is_remote():
                _remove_for_overwrite(path)
            else:
                self._handleOverwrite(path)
        self.saveImpl(path)


def write_body(spark: SparkSession, path: str, body: bytes, overwrite: bool) -> None:
    """The weights body as Parquet rows of binary chunks under ``path``."""
    chunks = [
        (i, body[lo : lo + DISK_CHUNK_BYTES])
        for i, lo in enumerate(range(0, max(len(body), 1), DISK_CHUNK_BYTES))
    ]
    frame = spark.createDataFrame(chunks, schema="chunk int, data binary").coalesce(1)
    frame.write.mode(_save_mode(overwrite)).parquet(path)


def read_body(spark: SparkSession, path: str, source: str) -> bytes:
    """What :func:`write_body` wrote, with its chunks checked to be all there, once."""
    try:
        rows = spark.read.parquet(path).collect()
    except Exception as exc:  # noqa: BLE001
        raise CorruptModelError(
            f"{source}: cannot read the weights body ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]})."
        ) from exc
    rows = sorted(rows, key=lambda r: r["chunk"])
    if [r["chunk"] for r in rows] != list(range(len(rows))):
        raise CorruptModelError(f"{source}: weight chunks are missing or duplicated.")
    return b"".join(bytes(r["data"]) for r in rows)


def save_model_directory(
    spark: SparkSession, path: str, stage: SavedStage, network: TrainedNetwork, overwrite: bool
) -> None:
    """``metadata/`` (Spark ML JSON) and ``weights/`` (the body in Parquet chunks) under ``path``."""
    metadata, body = model_to_parts(stage, network, spark.version)
    write_text(spark, os.path.join(path, METADATA_DIR), metadata, overwrite)
    write_body(spark, os.path.join(path, WEIGHTS_DIR), body, overwrite)


def load_model_directory(
    spark: SparkSession, path: str, class_name: str
) -> tuple[SavedStage, TrainedNetwork]:
    """What :func:`save_model_directory` wrote, checked as :func:`model_from_parts` checks."""
    source = f"Model directory {path!r}"
    metadata = read_text(spark, os.path.join(path, METADATA_DIR), source)
    parse_metadata(metadata, class_name, source)  # wrong class: fail before reading the body
    body = read_body(spark, os.path.join(path, WEIGHTS_DIR), source)
    return model_from_parts(metadata, body, class_name, source)


def save_stage_directory(
    spark: SparkSession, path: str, stage: SavedStage, extra: dict[str, Any], overwrite: bool
) -> None:
    """A stage without a network (the estimator): its metadata only."""
    metadata = json.dumps(stage.metadata(spark.version, extra), separators=(",", ":"))
    write_text(spark, os.path.join(path, METADATA_DIR), metadata, overwrite)


def load_stage_directory(
    spark: SparkSession, path: str, class_name: str, what: str = "Stage directory"
) -> tuple[SavedStage, dict[str, Any]]:
    """What :func:`save_stage_directory` wrote: the stage record and the whole parsed metadata."""
    source = f"{what} {path!r}"
    parsed = parse_metadata(read_text(spark, os.path.join(path, METADATA_DIR), source), class_name, source)
    return _stage_of(parsed), parsed
