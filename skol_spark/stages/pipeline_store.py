"""A whole fitted PipelineModel under one Redis key, in the store's hash layout.

The hash is the one :mod:`skol_spark.stores.redis_store` writes for a single
model (``metadata``, ``chunks``, ``chunk:i``), staged and renamed into place
atomically; here the metadata describes the Pipeline:

``class``, ``uid``, ``sparkVersion``
    as Spark ML's metadata (``pyspark.ml.pipeline.PipelineModel``);
``stages``
    one record per stage, in order: a Spark feature stage as its JVM class,
    uid and Params (``paramMap``, ``defaultParamMap``), plus its fitted data
    (an ``IDFModel``'s ``numDocs`` and array names, a ``StringIndexerModel``'s
    labels); :class:`~skol_spark.stages.labels.MergeLabels` as its Params; a
    :class:`~skol_spark.stages.model.BiLSTMClassificationModel` as the metadata
    its own saves write, and the name of its weights body;
``skolSpark``
    the format version and the body's size and SHA-256.

The body is one ``.npz`` (numpy arrays only, no pickle) holding the IDF
vectors and document frequencies and each BiLSTM's weights body. Loading
checks the body's size and checksum, each BiLSTM as its own loader does,
builds only classes of ``org.apache.spark.ml.feature`` and skol_spark's own,
and restores every uid.

Stages whose fitted state this store does not know (``CountVectorizerModel``,
custom stages) are refused when saving, naming the stage: save such a
Pipeline to a directory. It needs a classic SparkContext (the JVM stages are
rebuilt through it); under Spark Connect it raises
:class:`~skol_spark.errors.SparkConnectUnsupportedError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from typing import Any

import numpy as np

from skol_spark.compat.connect import is_remote
from skol_spark.errors import ChecksumMismatchError, CorruptModelError, SparkConnectUnsupportedError
from skol_spark.stages.io import restore, saved_class_name, saved_stage
from skol_spark.stages.model import BiLSTMClassificationModel
from skol_spark.stores.directory import SavedStage, model_from_parts, model_to_parts, parse_metadata
from skol_spark.stores.redis_store import REDIS_CHUNK_BYTES, load_parts_from_redis, save_parts_to_redis

__all__ = ["PIPELINE_CLASS", "save_pipeline_to_redis", "load_pipeline_from_redis", "load_model_from_redis"]

PIPELINE_CLASS = "pyspark.ml.pipeline.PipelineModel"
PIPELINE_FORMAT_VERSION = 1
_FEATURE_PACKAGE = "org.apache.spark.ml.feature."
_BILSTM = saved_class_name(BiLSTMClassificationModel)


def _params_only(class_name: str) -> type | None:
    """The skol_spark stage class ``class_name`` names if it is stored as its Params alone
    (``_stored_as_params``: MergeLabels, ProbabilityBlendModel, FeatureCRFModel), else None.
    Only skol_spark's own modules are imported."""
    import importlib

    module, _, name = class_name.rpartition(".")
    if not module.startswith("skol_spark."):
        return None
    try:
        cls = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    return cls if isinstance(cls, type) and getattr(cls, "_stored_as_params", False) else None


def _refuse_connect(what: str) -> None:
    if is_remote():
        raise SparkConnectUnsupportedError(
            f"{what} a PipelineModel in Redis needs a classic SparkContext (its Spark stages are rebuilt "
            "through the JVM); under Spark Connect, save the PipelineModel to a directory."
        )


def _json_value(stage: Any, name: str, value: Any) -> Any:
    """``value`` if JSON can hold it as it is, else a ValueError naming the stage and Param."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(stage, name, v) for v in value]
    raise ValueError(
        f"Cannot store {type(stage).__name__} {stage.uid!r} in Redis: its Param {name} holds a "
        f"{type(value).__name__}. Save this PipelineModel to a directory instead."
    )


def _params(stage: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Params set and the defaults, as JSON values."""
    set_, defaults = {}, {}
    for param in stage.params:
        if stage.isSet(param):
            set_[param.name] = _json_value(stage, param.name, stage.getOrDefault(param))
        elif stage.hasDefault(param):
            defaults[param.name] = _json_value(stage, param.name, stage.getOrDefault(param))
    return set_, defaults


def _stage_record(index: int, stage: Any, arrays: dict[str, np.ndarray], spark_version: str) -> dict[str, Any]:
    """One stage's record; its arrays go into ``arrays`` under names starting with ``s<index>.``."""
    from pyspark.ml.feature import IDFModel, StringIndexerModel
    from pyspark.ml.wrapper import JavaModel, JavaParams

    if isinstance(stage, BiLSTMClassificationModel):
        metadata, body = model_to_parts(saved_stage(stage), stage.trainedNetwork, spark_version)
        arrays[f"s{index}.weights"] = np.frombuffer(body, dtype=np.uint8)
        return {"class": _BILSTM, "metadata": metadata, "body": f"s{index}.weights"}
    if getattr(type(stage), "_stored_as_params", False):
        record = saved_stage(stage)
        return {"class": record.class_name, "uid": record.uid, "paramMap": record.param_map,
                "defaultParamMap": record.default_param_map}
    java_class = stage._java_obj.getClass().getName() if isinstance(stage, JavaParams) else ""
    if not java_class.startswith(_FEATURE_PACKAGE):
        raise ValueError(
            f"Cannot store stage {index} ({type(stage).__name__} {stage.uid!r}) in Redis: the store holds "
            "Spark's feature stages, MergeLabels, FeatureCRFModel, ProbabilityBlendModel and "
            "BiLSTMClassificationModel. Save this PipelineModel "
            "to a directory instead."
        )
    param_map, default_map = _params(stage)
    record: dict[str, Any] = {"class": java_class, "uid": stage.uid, "paramMap": param_map,
                              "defaultParamMap": default_map}
    if isinstance(stage, IDFModel):
        arrays[f"s{index}.idf"] = stage.idf.toArray().astype(np.float64)
        arrays[f"s{index}.docFreq"] = np.asarray(stage.docFreq, dtype=np.int64)
        record["data"] = {"numDocs": int(stage.numDocs), "idf": f"s{index}.idf", "docFreq": f"s{index}.docFreq"}
    elif isinstance(stage, StringIndexerModel):
        record["data"] = {"labelsArray": [list(labels) for labels in stage.labelsArray]}
    elif isinstance(stage, JavaModel):
        raise ValueError(
            f"Cannot store stage {index} ({type(stage).__name__} {stage.uid!r}) in Redis: its fitted "
            "state is not one this store knows (IDFModel, StringIndexerModel). Save this PipelineModel "
            "to a directory instead."
        )
    return record


def pipeline_to_parts(model: Any, spark_version: str) -> tuple[str, bytes]:
    """The metadata JSON and the ``.npz`` body of a fitted PipelineModel (see the module doc)."""
    arrays: dict[str, np.ndarray] = {}
    stages = [_stage_record(i, stage, arrays, spark_version) for i, stage in enumerate(model.stages)]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    body = buffer.getvalue()
    metadata = {
        "class": PIPELINE_CLASS,
        "timestamp": int(round(time.time() * 1000)),
        "sparkVersion": spark_version,
        "uid": model.uid,
        "stages": stages,
        "skolSpark": {
            "formatVersion": PIPELINE_FORMAT_VERSION,
            "body": {"format": "npz", "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()},
        },
    }
    return json.dumps(metadata, separators=(",", ":")), body


def save_pipeline_to_redis(
    model: Any,
    client_or_url: Any,
    key: str,
    ttl: float | None = None,
    overwrite: bool = True,
    chunkBytes: int | None = None,
) -> None:
    """Store a fitted PipelineModel under ``key``, atomically, as one hash.

    Parameters
    ----------
    model : pyspark.ml.PipelineModel
        Spark feature stages, :class:`MergeLabels` and BiLSTM models, in any order
        (what ``skol-spark train`` and ``skol_pipeline`` fit).
    client_or_url, key, ttl, overwrite, chunkBytes
        As :meth:`BiLSTMClassificationModel.saveToRedis`.

    Examples
    --------
    >>> save_pipeline_to_redis(fitted, "redis://localhost:6379/0", "skol:text")   # doctest: +SKIP
    >>> load_pipeline_from_redis("redis://localhost:6379/0", "skol:text").transform(df)  # doctest: +SKIP
    """
    from pyspark import __version__ as spark_version

    _refuse_connect("Saving")
    metadata, body = pipeline_to_parts(model, spark_version)
    save_parts_to_redis(metadata, body, client_or_url, key, ttl, overwrite, chunkBytes or REDIS_CHUNK_BYTES)


def _arrays(body: bytes, parsed: dict[str, Any], source: str) -> dict[str, np.ndarray]:
    expected = parsed.get("skolSpark", {}).get("body", {})
    if len(body) != expected.get("bytes"):
        raise CorruptModelError(
            f"{source}: the body is truncated or padded: {len(body)} bytes, the metadata records "
            f"{expected.get('bytes')}."
        )
    if hashlib.sha256(body).hexdigest() != expected.get("sha256"):
        raise ChecksumMismatchError(f"{source}: the body's SHA-256 does not match the recorded one; it is corrupt.")
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError) as exc:
        raise CorruptModelError(f"{source}: the body is not an .npz archive ({exc}).") from exc


def _java_stage(record: dict[str, Any], arrays: dict[str, np.ndarray], source: str) -> Any:
    """A Spark feature stage, rebuilt in the JVM with its uid and fitted data, wrapped for Python."""
    from pyspark import SparkContext
    from pyspark.ml.wrapper import JavaParams, JavaWrapper

    java_class, uid = record["class"], record["uid"]
    name = java_class[len(_FEATURE_PACKAGE):]
    if not java_class.startswith(_FEATURE_PACKAGE) or not name.isidentifier():
        raise CorruptModelError(f"{source}: refusing to build stage class {java_class!r}.")
    context = SparkContext._active_spark_context
    if context is None:
        raise CorruptModelError(f"{source}: loading a PipelineModel needs an active SparkSession.")
    jvm, gateway = context._jvm, context._gateway
    data = record.get("data")
    if name == "IDFModel":
        idf = _java_doubles(gateway, arrays[data["idf"]])
        doc_freq = _java_longs(gateway, arrays[data["docFreq"]])
        old = jvm.org.apache.spark.mllib.feature.IDFModel(
            jvm.org.apache.spark.mllib.linalg.Vectors.dense(idf), doc_freq, int(data["numDocs"])
        )
        java = jvm.org.apache.spark.ml.feature.IDFModel(uid, old)
    elif name == "StringIndexerModel":
        labels = JavaWrapper._new_java_array([list(x) for x in data["labelsArray"]], jvm.java.lang.String)
        java = jvm.org.apache.spark.ml.feature.StringIndexerModel(uid, labels)
    elif data is None:
        java = JavaWrapper._new_java_obj(java_class, uid)
    else:
        raise CorruptModelError(f"{source}: stage {java_class} carries data this version cannot rebuild.")
    stage = JavaParams._from_java(java)
    stage._set(**record.get("paramMap", {}))
    stage._setDefault(**record.get("defaultParamMap", {}))
    return stage


def _java_doubles(gateway: Any, values: np.ndarray) -> Any:
    """A Java double[] holding ``values``, sent as one byte array."""
    array = gateway.new_array(gateway.jvm.double, len(values))
    raw = np.ascontiguousarray(values, dtype=">f8").tobytes()
    gateway.jvm.java.nio.ByteBuffer.wrap(bytearray(raw)).asDoubleBuffer().get(array)
    return array


def _java_longs(gateway: Any, values: np.ndarray) -> Any:
    """A Java long[] holding ``values``, sent as one byte array."""
    array = gateway.new_array(gateway.jvm.long, len(values))
    raw = np.ascontiguousarray(values, dtype=">i8").tobytes()
    gateway.jvm.java.nio.ByteBuffer.wrap(bytearray(raw)).asLongBuffer().get(array)
    return array


def pipeline_from_parts(metadata: str | bytes, body: bytes, source: str) -> Any:
    """The PipelineModel :func:`pipeline_to_parts` described, checked (see the module doc)."""
    from pyspark.ml import PipelineModel

    parsed = parse_metadata(metadata, PIPELINE_CLASS, source)
    version = parsed.get("skolSpark", {}).get("formatVersion")
    if version != PIPELINE_FORMAT_VERSION:
        raise CorruptModelError(
            f"{source}: unsupported pipeline format version {version!r}; this version reads {PIPELINE_FORMAT_VERSION}."
        )
    arrays = _arrays(body, parsed, source)
    stages = []
    try:
        for record in parsed["stages"]:
            if record["class"] == _BILSTM:
                weights = arrays[record["body"]].tobytes()
                stage, network = model_from_parts(record["metadata"], weights, _BILSTM, source)
                stages.append(BiLSTMClassificationModel._from_saved(stage, network, source))
            elif (params_only := _params_only(record["class"])) is not None:
                saved = SavedStage(record["class"], record["uid"], record.get("paramMap", {}),
                                   record.get("defaultParamMap", {}))
                stages.append(restore(params_only, saved, source))
            else:
                stages.append(_java_stage(record, arrays, source))
    except (KeyError, TypeError) as exc:
        raise CorruptModelError(f"{source}: a stage record is incomplete ({type(exc).__name__}: {exc}).") from exc
    model = PipelineModel(stages=stages)
    model._resetUid(parsed.get("uid", model.uid))
    return model


def load_pipeline_from_redis(client_or_url: Any, key: str) -> Any:
    """The PipelineModel :func:`save_pipeline_to_redis` stored under ``key``, checked."""
    _refuse_connect("Loading")
    metadata, body, source = load_parts_from_redis(client_or_url, key)
    return pipeline_from_parts(metadata, body, source)


def load_model_from_redis(client_or_url: Any, key: str) -> Any:
    """Whatever skol_spark stored under ``key``: a BiLSTMClassificationModel or a PipelineModel."""
    metadata, body, source = load_parts_from_redis(client_or_url, key)
    try:
        kind = json.loads(metadata).get("class")
    except (TypeError, ValueError):
        kind = None
    if kind == PIPELINE_CLASS:
        _refuse_connect("Loading")
        return pipeline_from_parts(metadata, body, source)
    stage, network = model_from_parts(metadata, body, _BILSTM, source)
    return BiLSTMClassificationModel._from_saved(stage, network, source)
