"""Saving and loading: DefaultParams-style metadata plus one binary weights body.

A saved model is two parts, produced and consumed by one pair of functions
(:func:`model_to_parts`, :func:`model_from_parts`) shared by every place a
model is kept:

* ``metadata``: the JSON Spark ML's ``DefaultParamsWriter`` writes (class, uid,
  Spark version, paramMap, defaultParamMap), without the weights, plus a
  ``skolSpark`` section recording the body's format, size and SHA-256;
* ``body``: the weights as an ``.npz`` archive (numpy arrays only, no pickle).

On disk (any filesystem Spark can write) the directory holds ``metadata/``
(one JSON line, as Spark ML writes it) and ``weights/`` (Parquet rows of
binary chunks, so bodies of any size avoid Spark's row limits). The Redis
store (:mod:`skol_spark.stores`) keeps the same two parts under one key.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import TYPE_CHECKING, Any

from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReader, MLWriter
from pyspark.sql import SparkSession

from skol_spark.connect import check_connect_support, is_remote
from skol_spark.errors import (
    ChecksumMismatchError,
    CorruptModelError,
    ModelLoadError,
    UnsafeModelError,
    WrongModelClassError,
)
from skol_spark.network import model_from_json, weights_digest, weights_from_bytes

if TYPE_CHECKING:
    from skol_spark.estimator import BiLSTMClassificationModel, BiLSTMClassifier

__all__ = [
    "FORMAT_VERSION",
    "model_to_parts",
    "model_from_parts",
    "ModelWriter",
    "ModelReader",
    "ClassifierWriter",
    "ClassifierReader",
]

FORMAT_VERSION = 1
BODY_PARAMS = ("modelWeights",)
DISK_CHUNK_BYTES = 8 << 20
METADATA_DIR, WEIGHTS_DIR, INITIAL_MODEL_DIR = "metadata", "weights", "initialModel"


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def parse_metadata(metadata: str | bytes, expected: type, source: str) -> dict[str, Any]:
    """Parse saved metadata and check it was written by ``expected``."""
    try:
        parsed = json.loads(metadata)
        written_by = parsed["class"]
    except (TypeError, ValueError, KeyError) as exc:
        raise CorruptModelError(
            f"{source}: the metadata is not Spark ML model metadata ({type(exc).__name__}: {exc})"
        ) from exc
    if written_by != _class_name(expected):
        raise WrongModelClassError(
            f"{source} was written by {written_by}, not {_class_name(expected)}. "
            f"Load it with {written_by.rsplit('.', 1)[-1]}.load instead."
        )
    return parsed


def model_to_parts(model: "BiLSTMClassificationModel", spark_version: str) -> tuple[str, bytes]:
    """The metadata JSON (without weights) and the weights body of ``model``."""
    body = model.weightsBody()
    metadata = {
        "class": _class_name(type(model)),
        "timestamp": int(round(time.time() * 1000)),
        "sparkVersion": spark_version,
        "uid": model.uid,
        "paramMap": {p.name: v for p, v in model._paramMap.items() if p.name not in BODY_PARAMS},
        "defaultParamMap": {p.name: v for p, v in model._defaultParamMap.items()},
        "skolSpark": {
            "formatVersion": FORMAT_VERSION,
            "body": {"format": "npz", "bytes": len(body), "sha256": weights_digest(body)},
        },
    }
    return json.dumps(metadata, separators=(",", ":")), body


def model_from_parts(
    cls: "type[BiLSTMClassificationModel]", metadata: str | bytes, body: bytes, source: str
) -> "BiLSTMClassificationModel":
    """Rebuild a model from its two parts, checking class, checksum and architecture.

    The architecture is rebuilt once here in Keras safe mode, so a payload
    asking for a ``Lambda`` layer or an unknown class is refused at load time,
    never executed on the executors.
    """
    parsed = parse_metadata(metadata, cls, source)
    record = parsed.get("skolSpark", {})
    if record.get("formatVersion") != FORMAT_VERSION:
        raise CorruptModelError(
            f"{source}: unsupported skol_spark format version {record.get('formatVersion')!r}; "
            f"this version reads {FORMAT_VERSION}."
        )
    expected = record.get("body", {})
    if len(body) != expected.get("bytes"):
        raise CorruptModelError(
            f"{source}: the weights body is truncated or padded: {len(body)} bytes, "
            f"the metadata records {expected.get('bytes')}."
        )
    digest = weights_digest(body)
    if digest != expected.get("sha256"):
        raise ChecksumMismatchError(
            f"{source}: the weights body's SHA-256 {digest[:16]}... does not match the "
            f"recorded {str(expected.get('sha256'))[:16]}...; the body is corrupt."
        )
    model = cls()
    model._resetUid(parsed["uid"])
    try:
        DefaultParamsReader.getAndSetParams(model, parsed)
    except (AttributeError, TypeError, ValueError, AssertionError) as exc:
        raise CorruptModelError(f"{source}: the metadata's Params do not fit {cls.__name__}: {exc}") from exc
    model._set(modelWeights=base64.b64encode(body).decode("ascii"))
    _check_network(model, source)
    return model


def _check_network(model: "BiLSTMClassificationModel", source: str) -> None:
    """Rebuild the architecture in safe mode and fit the weights into it."""
    if not model.isDefined(model.modelJson):
        raise CorruptModelError(f"{source}: the metadata holds no modelJson.")
    try:
        weights = weights_from_bytes(model.weightsBody())
    except ValueError as exc:
        raise CorruptModelError(f"{source}: {exc}") from exc
    try:
        network = model_from_json(model.getModelJson(), compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types here
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text or "unsafe" in text.lower():
            raise UnsafeModelError(
                f"{source}: the architecture asks for code Keras safe mode refuses to run "
                f"({text.splitlines()[0][:200]})."
            ) from exc
        raise CorruptModelError(
            f"{source}: the architecture cannot be rebuilt ({type(exc).__name__}: "
            f"{text.splitlines()[0][:200] if text else ''})."
        ) from exc
    try:
        network.set_weights(weights)
    except ValueError as exc:
        raise CorruptModelError(
            f"{source}: the weights do not fit the architecture ({exc})."
        ) from exc
    _check_shapes(model, network, source)


def _check_shapes(model: "BiLSTMClassificationModel", network: Any, source: str) -> None:
    """The Params the executors rely on must agree with the network they describe."""
    window, features = network.inputs[0].shape[1], network.inputs[0].shape[2]
    checks = [(model.numFeatures, features, "input features")]
    checks.append((model.labels, network.outputs[0].shape[-1], "output classes"))
    if window is not None:  # a network with a free time axis takes any windowSize
        checks.append((model.windowSize, window, "positions per window"))
    for param, actual, what in checks:
        if not model.isDefined(param):
            continue
        recorded = model.getOrDefault(param)
        count = len(recorded) if isinstance(recorded, list) else recorded
        if count != actual:
            raise CorruptModelError(
                f"{source}: the metadata's {param.name} ({recorded!r}) does not match the "
                f"network, which has {actual} {what}."
            )


def _save_mode(overwrite: bool) -> str:
    # "error", not "errorifexists": Spark Connect's writer accepts only the short name.
    return "overwrite" if overwrite else "error"


def _write_text(spark: SparkSession, path: str, text: str, overwrite: bool) -> None:
    frame = spark.createDataFrame([(text,)], schema="value string").coalesce(1)
    frame.write.mode(_save_mode(overwrite)).text(path)


def _read_text(spark: SparkSession, path: str, source: str) -> str:
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


class _OverwritingWriter(MLWriter):
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


class ModelWriter(_OverwritingWriter):
    """Writes a :class:`BiLSTMClassificationModel` as ``metadata/`` plus ``weights/``."""

    def __init__(self, instance: "BiLSTMClassificationModel"):
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        spark = self.sparkSession
        metadata, body = model_to_parts(self.instance, spark.version)
        _write_text(spark, os.path.join(path, METADATA_DIR), metadata, self.shouldOverwrite)
        chunks = [
            (i, body[lo : lo + DISK_CHUNK_BYTES])
            for i, lo in enumerate(range(0, max(len(body), 1), DISK_CHUNK_BYTES))
        ]
        frame = spark.createDataFrame(chunks, schema="chunk int, data binary").coalesce(1)
        frame.write.mode(_save_mode(self.shouldOverwrite)).parquet(os.path.join(path, WEIGHTS_DIR))


class ModelReader(MLReader):
    """Reads what :class:`ModelWriter` wrote, checking class and checksum."""

    def __init__(self, cls: "type[BiLSTMClassificationModel]"):
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> "BiLSTMClassificationModel":
        check_connect_support("loading")
        spark = self.sparkSession
        source = f"Model directory {path!r}"
        metadata = _read_text(spark, os.path.join(path, METADATA_DIR), source)
        parse_metadata(metadata, self.cls, source)  # wrong class: fail before the body
        try:
            rows = spark.read.parquet(os.path.join(path, WEIGHTS_DIR)).collect()
        except Exception as exc:  # noqa: BLE001
            raise CorruptModelError(
                f"{source}: cannot read the weights body ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]})."
            ) from exc
        rows = sorted(rows, key=lambda r: r["chunk"])
        if [r["chunk"] for r in rows] != list(range(len(rows))):
            raise CorruptModelError(f"{source}: weight chunks are missing or duplicated.")
        body = b"".join(bytes(r["data"]) for r in rows)
        return model_from_parts(self.cls, metadata, body, source)


class ClassifierWriter(_OverwritingWriter):
    """Writes a :class:`BiLSTMClassifier`: its Params, and its initialModel if any."""

    def __init__(self, instance: "BiLSTMClassifier"):
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        instance, spark = self.instance, self.sparkSession
        params = {p.name: v for p, v in instance._paramMap.items() if p.name != "initialModel"}
        initial = instance.getOrDefault("initialModel") if instance.isDefined("initialModel") else None
        metadata = DefaultParamsWriter._get_metadata_to_save(
            instance, spark, {"hasInitialModel": initial is not None}, params
        )
        _write_text(spark, os.path.join(path, METADATA_DIR), metadata, self.shouldOverwrite)
        if initial is not None:
            writer = initial.write().session(spark)
            if self.shouldOverwrite:
                writer = writer.overwrite()
            writer.save(os.path.join(path, INITIAL_MODEL_DIR))


class ClassifierReader(MLReader):
    """Reads what :class:`ClassifierWriter` wrote."""

    def __init__(self, cls: "type[BiLSTMClassifier]"):
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> "BiLSTMClassifier":
        from skol_spark.estimator import BiLSTMClassificationModel

        check_connect_support("loading")
        spark = self.sparkSession
        source = f"Estimator directory {path!r}"
        parsed = parse_metadata(_read_text(spark, os.path.join(path, METADATA_DIR), source), self.cls, source)
        instance = self.cls()
        instance._resetUid(parsed["uid"])
        DefaultParamsReader.getAndSetParams(instance, parsed)
        if parsed.get("hasInitialModel"):
            initial = BiLSTMClassificationModel.read().session(spark).load(
                os.path.join(path, INITIAL_MODEL_DIR)
            )
            instance._set(initialModel=initial)
        return instance
