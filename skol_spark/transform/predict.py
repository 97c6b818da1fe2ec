"""Executor side: label the rows of one Spark partition.

Runs inside Spark's Python workers. It imports numpy and pyarrow at module
level and Keras lazily, never pyspark, so it can be tested without Spark.

The network is rebuilt from its :class:`~skol_spark.nn.trained_network.TrainedNetwork`
at most once per Python worker and device, and kept in a small module-level
cache keyed by its digest and the device. Module state is the only state
that outlives a task in a reused worker; a cache in a closure would be
pickled, and rebuilt, with every task. Labeling sets no environment variable
and hides no device (:mod:`skol_spark.core.devices`); TensorFlow's thread
pools are sized once, to the cores of the first task that runs the network
(a task whose rows all fail the checks imports no Keras).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from skol_spark.core import invalid
from skol_spark.core.devices import device_scope, task_device
from skol_spark.core.thresholds import predict_with_thresholds
from skol_spark.core.vectors import dense_features
from skol_spark.core.windows import accumulate_windows, document_lengths, stream_windows
from skol_spark.nn.trained_network import TrainedNetwork

__all__ = ["PredictSpec", "label_rows", "label_partition", "get_network", "build_count"]

logger = logging.getLogger(__name__)

_CACHE_SIZE = 4
_cache: OrderedDict[tuple[str, str | None, str], Callable] = OrderedDict()
_cache_lock = threading.Lock()
_builds: dict[str, int] = {}
_threads_configured = False


@dataclass(frozen=True)
class PredictSpec:
    """Everything a worker needs, copied out of the model before the UDF is made.

    Field names follow the model's Params (``window_size`` is ``windowSize``).
    """

    network: TrainedNetwork
    window_size: int
    window_stride: int
    predict_batch_size: int
    num_classes: int
    num_features: int
    features_col: str
    doc_id_col: str
    position_col: str
    vector_output: bool = True
    cpus: int = 0
    handle_invalid: str = "error"
    use_gpu: bool = False
    gpu_addresses: tuple[str, ...] = ()
    thresholds: tuple[float, ...] | None = None
    inference_engine: str = "auto"


def build_count(digest: str | None = None) -> int:
    """How many times this process built a network (for ``digest``, or in all)."""
    if digest is None:
        return sum(_builds.values())
    return _builds.get(digest, 0)


def _configure_threads(cpus: int) -> None:
    """Size TensorFlow's pools to the cores the task owns, the first time a task says how many."""
    global _threads_configured
    if _threads_configured or cpus <= 0:  # 0: not known (no TaskContext); a later task may say
        return
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(cpus)
            tf.config.threading.set_inter_op_parallelism_threads(cpus)
        except RuntimeError:  # TensorFlow already initialized in this process.
            logger.debug("TensorFlow threads already configured")
    _threads_configured = True


def get_network(
    network: TrainedNetwork, device: str | None = None, engine: str = "auto", threads: int = 0
) -> Callable:
    """The forward pass of ``network`` on ``device`` (a TensorFlow device name, None for the
    backend's default), rebuilt once per process, device and ``engine``, cached by the weights' digest.

    ``engine`` "auto" runs the compiled ONNX Runtime path (:mod:`skol_spark.nn.fast_forward`,
    ``threads`` intra-op threads, 0 for its default) when the network translates and
    matches Keras, else Keras, with one WARNING saying why; "keras" runs Keras.
    """
    digest = network.digest
    key = (digest, device, engine)
    with _cache_lock:
        forward = _cache.get(key)
        if forward is not None:
            _cache.move_to_end(key)
            return forward
    with device_scope(device):
        from skol_spark.nn.fast_forward import select_forward  # imports Keras: only where a network runs

        forward, reason = select_forward(network.rebuild(), device, engine, threads)
    if reason is not None:
        logger.warning(
            "skol_spark: network %s runs on Keras, not on the compiled ONNX Runtime path: %s. "
            "Set inferenceEngine='keras' to choose Keras and silence this.",
            digest[:12], reason,
        )
    with _cache_lock:
        _cache[key] = forward
        _builds[digest] = _builds.get(digest, 0) + 1
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    logger.info(
        "built network %s (%s) on %s in process %d", digest[:12], type(forward).__name__,
        device or "the default device", os.getpid(),
    )
    return forward


def _list_array(values: np.ndarray) -> pa.ListArray:
    """Rows of a 2-D array as an Arrow list<double> column, without Python objects."""
    n, k = values.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), pa.float64()))


# Spark's Arrow type for a VectorUDT value, nullability included: pyarrow < 16 cannot
# cast a nullable field to it, which Spark 4.1's Arrow UDF does with what a UDF returns.
_VECTOR_TYPE = pa.struct(
    [
        pa.field("type", pa.int8(), nullable=False),
        pa.field("size", pa.int32()),
        pa.field("indices", pa.list_(pa.field("element", pa.int32(), nullable=False))),
        pa.field("values", pa.list_(pa.field("element", pa.float64(), nullable=False))),
    ]
)


def _vector_struct(values: np.ndarray) -> pa.StructArray:
    """Rows of a 2-D array as Spark's dense VectorUDT struct, of exactly Spark's Arrow type."""
    n, k = values.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    dense = pa.ListArray.from_arrays(
        offsets, pa.array(values.reshape(-1), pa.float64()), type=_VECTOR_TYPE.field("values").type
    )
    return pa.StructArray.from_arrays(
        [
            pa.array(np.ones(n, dtype=np.int8)),
            pa.nulls(n, _VECTOR_TYPE.field("size").type),
            pa.nulls(n, _VECTOR_TYPE.field("indices").type),
            dense,
        ],
        fields=list(_VECTOR_TYPE),
    )


def _rows(forward: Any, column: pa.Array) -> np.ndarray:
    """A batch's (valid) rows for ``forward``: float32 ``(n, D)`` features, or, when
    ``forward`` projects its input, the projected ``(n, E)`` rows (sparse vectors
    projected without densifying)."""
    projection = getattr(forward, "projection", None)
    if projection is None:
        return dense_features(column)
    from skol_spark.nn.projection import arrow_rows

    return projection(arrow_rows(column)[0])


def _output(spec: PredictSpec, probs: np.ndarray) -> pa.StructArray:
    """Prediction, probability and rawPrediction columns for rows' probabilities."""
    raw = np.log(np.clip(probs, 1e-12, None))
    as_column = _vector_struct if spec.vector_output else _list_array
    return pa.StructArray.from_arrays(
        [
            pa.array(predict_with_thresholds(probs, spec.thresholds).astype(np.float64)),
            as_column(probs),
            as_column(raw),
        ],
        names=["prediction", "probability", "rawPrediction"],
    )


@dataclass
class _Carry:
    """The open document's last rows, which later windows still need, and their partial sums."""

    keys: pa.StructArray  # (doc, position) of the carried rows
    features: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    head_offset: int  # the first carried row's index within its document
    head_done: int  # windows of that document already run


def label_partition(spec: PredictSpec, batches: Iterator[pa.StructArray]) -> Iterator[pa.StructArray]:
    """Label valid rows sorted by (document, position), streaming batch by batch.

    The rows must be valid (:func:`label_rows` takes invalid ones out first;
    see :mod:`skol_spark.core.invalid`): this function does not check them again.

    Each input is a ``struct<doc, position, features>`` array; the outputs hold
    one row per input row, in the same order. Windows are labelled as soon as
    all their rows have arrived; rows are emitted once no later window can
    cover them. Only the open document's last ``window`` rows (and their
    partial sums) are carried to the next batch, so memory is bounded by the
    window and the batch, never by the document: outputs lag inputs by at most
    ``window`` rows (Spark's iterator UDFs allow that). The windows and the
    order their probabilities are summed in are those of
    :func:`skol_spark.core.windows.predict_block` on whole documents.
    """
    forward = None
    carry: _Carry | None = None
    for batch in batches:
        if len(batch) == 0:
            continue
        if forward is None:
            # Keras is imported here, at the first valid rows: a partition with no rows, or
            # whose first rows fail with handleInvalid="error", imports no TensorFlow.
            _configure_threads(spec.cpus)
            device = task_device(spec.use_gpu, spec.gpu_addresses)
            forward = get_network(spec.network, device, spec.inference_engine, spec.cpus)
        features = _rows(forward, batch.field(2))  # valid rows: one width, the model's
        keys = pa.StructArray.from_arrays([batch.field(0), batch.field(1)], names=["doc", "position"])
        out, carry = _label_block(spec, forward, carry, keys, features, last_open=True)
        if out is not None:
            yield out
    if carry is not None:
        empty = pa.StructArray.from_arrays(
            [pa.array([], carry.keys.field(0).type), pa.array([], carry.keys.field(1).type)],
            names=["doc", "position"],
        )
        out, _ = _label_block(spec, forward, carry, empty, carry.features[:0], last_open=False)
        if out is not None:
            yield out


def _label_block(
    spec: PredictSpec,
    forward: Callable,
    carry: _Carry | None,
    keys: pa.StructArray,
    features: np.ndarray,
    last_open: bool,
) -> tuple[pa.StructArray | None, _Carry | None]:
    """Run the windows a new batch completes; the finished rows' output and the new carry."""
    num_classes = spec.num_classes
    sums = np.zeros((len(keys), num_classes), dtype=np.float64)
    counts = np.zeros(len(keys), dtype=np.float64)
    head_offset = head_done = 0
    if carry is not None:
        keys = pa.concat_arrays([carry.keys, keys])
        features = np.concatenate([carry.features, features]) if len(features) else carry.features
        sums = np.concatenate([carry.sums, sums])
        counts = np.concatenate([carry.counts, counts])
        head_offset, head_done = carry.head_offset, carry.head_done
    lengths = document_lengths(keys.field(0))
    starts, window_lengths, keep, done = stream_windows(
        lengths, spec.window_size, spec.window_stride, head_offset, head_done, last_open
    )
    accumulate_windows(
        forward, features, starts, window_lengths, spec.window_size, spec.predict_batch_size, sums, counts
    )
    n = len(keys)
    finished = n - keep
    new_carry = None
    if keep:
        seen = (head_offset if len(lengths) == 1 else 0) + int(lengths[-1])
        new_carry = _Carry(
            keys=keys.slice(finished),
            features=features[finished:].copy(),
            sums=sums[finished:].copy(),
            counts=counts[finished:].copy(),
            head_offset=seen - keep,
            head_done=done,
        )
    if finished == 0:
        return None, new_carry
    return _output(spec, sums[:finished] / counts[:finished, None]), new_carry


def _placeholder_output(spec: PredictSpec) -> pa.StructArray:
    """One output row of the right layout (zeros), to stand under null rows."""
    probs = np.zeros((1, spec.num_classes))
    column = _vector_struct(probs) if spec.vector_output else _list_array(probs)
    return pa.StructArray.from_arrays(
        [pa.array([0.0]), column, column], names=["prediction", "probability", "rawPrediction"]
    )


def label_rows(spec: PredictSpec, batches: Iterator[pa.StructArray]) -> Iterator[pa.StructArray]:
    """:func:`label_partition` on the valid rows, with ``spec.handle_invalid`` for the others.

    Invalid rows (see :mod:`skol_spark.core.invalid`) raise with "error"; otherwise
    they are taken out of their documents before labeling and get a null output
    row in their place ("skip" then drops them on the JVM). Outputs stay one
    per input row, in input order.
    """
    names = {"docIdCol": spec.doc_id_col, "positionCol": spec.position_col, "featuresCol": spec.features_col}
    pending: list[np.ndarray] = []  # defect codes of rows fed to the labeler, not yet emitted
    found = np.zeros(len(invalid.DEFECTS) + 1, dtype=np.int64)

    def valid_batches() -> Iterator[pa.StructArray]:
        for batch in _whole_key_runs(batches):
            docs, positions = batch.field(0), batch.field(1)
            codes, _ = invalid.row_defects(docs, positions, batch.field(2), spec.num_features)
            bad = invalid.first_invalid(codes)
            if bad is not None and spec.handle_invalid == "error":
                raise invalid.InvalidRowError(
                    invalid.describe(codes[bad], docs, positions, bad, names, spec.num_features)
                )
            pending.append(codes)
            if bad is None:
                yield batch
            else:
                found[:] += np.bincount(codes, minlength=len(found))
                yield batch.filter(pa.array(codes == invalid.VALID))

    def emit(ready: pa.StructArray | None) -> pa.StructArray | None:
        """The longest run of pending rows whose valid rows ``ready`` covers."""
        codes = np.concatenate(pending) if len(pending) != 1 else pending[0]
        valid = np.flatnonzero(codes == invalid.VALID)
        have = 0 if ready is None else len(ready)
        end = int(valid[have]) if have < len(valid) else len(codes)
        pending[:] = [codes[end:]] if end < len(codes) else []
        if end == 0:
            return None
        rows = codes[:end] == invalid.VALID
        if ready is None:  # no valid row in this run: any row's layout will do
            ready, index = _placeholder_output(spec), np.zeros(end, dtype=np.int64)
        else:
            index = np.where(rows, np.cumsum(rows) - 1, 0)
        taken = ready.take(pa.array(index))
        # Null rows over well-formed children: Spark's vector struct has non-null fields.
        return pa.StructArray.from_arrays(
            [taken.field(i) for i in range(taken.type.num_fields)],
            fields=list(taken.type),
            mask=pa.array(~rows),
        )

    for ready in label_partition(spec, valid_batches()):
        out = emit(ready)
        if out is not None:
            yield out
    if pending:
        out = emit(None)
        if out is not None:
            yield out
    if found[1:].any():
        logger.warning(
            "%s %d invalid rows (handleInvalid=%r): %s",
            "left out" if spec.handle_invalid == "skip" else "kept with null outputs",
            int(found[1:].sum()),
            spec.handle_invalid,
            invalid.summary(np.repeat(np.arange(len(found)), found)),
        )


def _whole_key_runs(batches: Iterator[pa.StructArray]) -> Iterator[pa.StructArray]:
    """The same rows, re-cut so rows sharing a (document, position) are never split.

    Duplicate positions are found between neighbouring rows, so each batch's
    trailing run of rows with the last row's key waits for the next batch. It
    is yielded on its own (no copy) unless the next batch starts with the
    same key, the rare case where the two are joined.
    """
    held: pa.StructArray | None = None
    for batch in batches:
        if len(batch) == 0:
            continue
        if held is not None:
            if _same_key(held, len(held) - 1, batch, 0):
                batch = pa.concat_arrays([held, batch])
            else:
                yield held
            held = None
        last = len(batch) - 1
        start = last
        while start > 0 and _same_key(batch, start - 1, batch, last):
            start -= 1
        if start == 0:  # one key for the whole batch: keep collecting
            held = batch
            continue
        held = batch.slice(start)
        yield batch.slice(0, start)
    if held is not None:
        yield held


def _same_key(a: pa.StructArray, i: int, b: pa.StructArray, j: int) -> bool:
    """Whether row ``i`` of ``a`` and row ``j`` of ``b`` have the same (document, position)."""
    return a.field(0)[i].as_py() == b.field(0)[j].as_py() and a.field(1)[i].as_py() == b.field(1)[j].as_py()
