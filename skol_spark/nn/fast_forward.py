"""The compiled forward pass: a rebuilt network's ONNX graph run by ONNX Runtime on the CPU.

:class:`OnnxForward` has the interface of :class:`~skol_spark.nn.projection.RowsForward`
(``projection``, ``prepare``, ``from_rows``), so the executors' window code
(:func:`skol_spark.core.windows.accumulate_windows`) runs either. A projected
network keeps its projection in numpy (each row once, sparse rows never
densified) and runs its ``sequence`` model in ONNX Runtime; other networks
run whole. The graph comes from :func:`skol_spark.nn.onnx_graph.network_graph`;
:func:`probe_difference` compares it with Keras on windows with masked tails.

Why ONNX Runtime: on the TensorFlow backend on CPU, Keras' LSTM is a
``tf.while_loop`` that multiplies each step's input by the kernel and
dispatches every op per step; ONNX Runtime's LSTM kernel multiplies all the
steps' inputs in one product and loops over the recurrent product only
(BENCHMARKS.md, "Executors' network cost").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from skol_spark.core.devices import INFERENCE_ENGINES
from skol_spark.nn.crf import crf_marginals_numpy
from skol_spark.nn.onnx_graph import FEATURES, MASK, ROWS, network_graph
from skol_spark.nn.projection import Projection, split_network

__all__ = ["OnnxForward", "probe_difference", "select_forward", "PROBE_TOLERANCE", "CHUNK_WINDOWS"]

# The fast path is used only when it matches Keras this closely on the probe (probabilities).
PROBE_TOLERANCE = 1e-5
# Windows per ONNX Runtime call: a batch's windows run in chunks of this many (chunks of
# 16-64 windows ran 10-25 % faster than whole batches of 256 in interleaved runs).
CHUNK_WINDOWS = 64
# The probe's windows, densified for the Keras reference, stay under this many bytes.
_PROBE_BYTES = 64 << 20


class OnnxForward:
    """A network's forward pass in ONNX Runtime over windows gathered from a block's rows.

    Parameters
    ----------
    model : keras.Model
        The network as :func:`~skol_spark.nn.network.model_from_json` rebuilt it.
    threads : int, default 0
        ONNX Runtime's intra-op threads (the task's cores); 0 lets it choose.

    Raises :class:`~skol_spark.nn.onnx_graph.UnsupportedNetworkError` for a
    network the graph does not cover, ``ImportError`` without onnxruntime.
    """

    def __init__(self, model: Any, threads: int = 0):
        import onnxruntime as ort

        split = split_network(model)
        self.projection = None
        self.network = model
        if split is not None:
            self.projection, self.network = Projection(split[0]), split[1]
        graph = network_graph(self.network)
        self._crf = graph.crf
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle pool threads sleep rather than spin: executors share their cores with Spark's other tasks.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self._session = ort.InferenceSession(graph.model, options, providers=["CPUExecutionProvider"])
        self.window = int(self.network.inputs[0].shape[1])
        self.width = int(self.network.inputs[0].shape[2])

    def prepare(self, features: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(features, dtype=np.float32)

    def from_rows(self, prepared: np.ndarray, rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, W, K)`` of the windows whose row index is ``rows`` (-1 where
        padded) and mask ``mask`` (real steps first)."""
        rows = np.asarray(rows, dtype=np.int64)
        mask = np.asarray(mask, dtype=bool)
        out = []
        for lo in range(0, len(rows), CHUNK_WINDOWS):
            chunk_mask = mask[lo : lo + CHUNK_WINDOWS]
            feeds = {FEATURES: prepared, ROWS: rows[lo : lo + CHUNK_WINDOWS], MASK: chunk_mask}
            (probs,) = self._session.run(None, feeds)
            if self._crf is not None:
                probs = crf_marginals_numpy(probs, *self._crf, chunk_mask)
            out.append(probs)
        return out[0] if len(out) == 1 else np.concatenate(out)


def probe_windows(window: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``(n, width)`` and windows over them (row index, mask): full windows, windows
    with masked tails of several lengths, a one-step window, rows shared between windows."""
    rng = np.random.default_rng(seed)
    count = int(max(2, min(8, _PROBE_BYTES // (4 * window * width))))
    n = int(max(1, min(3 * window, _PROBE_BYTES // (4 * width))))
    features = rng.normal(size=(n, width)).astype(np.float32)
    lengths = np.array([window, max(1, window - 1), max(1, window // 2), 1, window, min(window, 3),
                        max(1, window - 7), window])[:count]
    mask = np.arange(window)[None, :] < lengths[:, None]
    rows = np.where(mask, rng.integers(0, n, size=(count, window)), -1)
    return features, rows, mask


def probe_difference(forward: OnnxForward) -> float:
    """The largest difference between ``forward``'s probabilities and Keras' on the probe windows'
    real positions (the part after the projection, which both run in numpy)."""
    features, rows, mask = probe_windows(forward.window, forward.width)
    import keras

    windows = features[np.maximum(rows, 0)] * mask[..., None]
    inputs = [windows, mask] if len(forward.network.inputs) == 2 else windows
    expected = keras.ops.convert_to_numpy(forward.network(inputs, training=False))
    actual = forward.from_rows(forward.prepare(features), rows, mask)
    if expected.shape != actual.shape:
        return float("inf")
    return float(np.abs(expected - actual)[mask].max())


def select_forward(model: Any, device: str | None, engine: str, threads: int = 0) -> tuple[Any, str | None]:
    """The forward pass transform runs for ``model``, and why it is Keras' (None when it is not).

    ``engine`` "auto" takes :class:`OnnxForward` when the network translates and
    matches Keras on the probe windows (:data:`PROBE_TOLERANCE`), on the CPU;
    "keras" (or a GPU ``device``) takes Keras' own
    (:func:`~skol_spark.nn.projection.make_forward`). The reason is None when
    Keras was asked for (the engine or a GPU), a sentence when the fast path
    was wanted and could not be had.
    """
    from skol_spark.nn.projection import make_forward

    if engine not in INFERENCE_ENGINES:
        raise ValueError(
            f"Expected inferenceEngine one of {', '.join(map(repr, INFERENCE_ENGINES))}. Received: {engine!r}"
        )
    if engine == "keras" or (device is not None and "GPU" in device.upper()):
        return make_forward(model, device), None
    try:
        fast = OnnxForward(model, threads)
        difference = probe_difference(fast)
    except ImportError as exc:
        reason = (f"the {exc.name or 'onnxruntime'} package is not installed on this worker "
                  "(pip install 'skol_spark[fast]')")
    except Exception as exc:  # noqa: BLE001 - an unsupported layer, or anything ONNX Runtime refuses
        text = str(exc).splitlines()[0][:300] if str(exc) else ""
        kind = "" if type(exc).__name__ == "UnsupportedNetworkError" else f"{type(exc).__name__}: "
        reason = f"the network has no ONNX translation ({kind}{text})"
    else:
        if difference <= PROBE_TOLERANCE:
            return fast, None
        reason = (f"its ONNX graph predicts differently from Keras on the probe windows "
                  f"(max |difference| {difference:.3g} > {PROBE_TOLERANCE:g})")
    return make_forward(model, device), reason
