"""A rebuilt Keras network as an ONNX graph, for the executors' compiled inference path.

Keras stays the source of truth: the graph is derived from the layers of the
model ``model_from_json`` rebuilt, weights included, and is checked against
it before use (:mod:`skol_spark.nn.fast_forward`). The graph takes a block's
rows and gathers its windows itself, like :class:`~skol_spark.nn.projection.RowsForward`,
and runs time-major inside (the LSTM nodes' layout):

    features (n, F) float32, rows (B, W) int64 (-1 where padded), mask (B, W) bool
      -> Gather (W, B, F) -> zero the padded steps -> the network's layers -> (B, W, K)

The protobuf is written by :mod:`skol_spark.nn.onnx_proto`, so only
``onnxruntime`` is needed.

Each ``Bidirectional(LSTM)`` becomes one bidirectional ONNX ``LSTM`` node
(gates reordered from Keras' i, f, c, o to ONNX's i, o, f, c; Keras' one bias
as ONNX's input bias, a zero recurrent bias). ONNX Runtime's CPU kernel
multiplies the inputs of all steps by the kernel in one product and runs only
the recurrent product per step. When Keras passes the window's mask to the
layer, ``sequence_lens`` (the mask's count of real steps) stands for it:
windows are right-padded (real steps first), so the reverse direction starts
at each window's last real step, as Keras' backward layer does when it skips
the masked steps.

Layers: ``InputLayer``, ``Dense`` (linear, softmax, tanh, sigmoid, relu),
``Activation`` of those, ``Dropout`` and other inference no-ops,
``TimeDistributed(Dense)``, ``LSTM`` (forward) and ``Bidirectional(LSTM)``
(tanh and sigmoid activations, any merge mode but None), nested functional
models, ``FeatureSlice``, ``Average``, ``Add``, ``Concatenate``, and a final
``CRF``, whose marginals are computed in numpy from the graph's emissions
(:func:`skol_spark.nn.crf.crf_marginals_numpy`). Anything else raises
:class:`UnsupportedNetworkError` naming the layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from skol_spark.nn import onnx_proto
from skol_spark.nn.crf import CRF

__all__ = ["UnsupportedNetworkError", "NetworkGraph", "network_graph", "OPSET", "IR_VERSION"]

# Opset 17 and IR version 8: read by every onnxruntime since 1.13.
OPSET = 17
IR_VERSION = 8

FEATURES, ROWS, MASK, OUTPUT = "features", "rows", "mask", "output"

_ACTIVATIONS = {"linear": None, "softmax": "Softmax", "tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu"}
# Layers that return their input at inference.
_IDENTITY_LAYERS = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                    "ActivityRegularization")


class UnsupportedNetworkError(ValueError):
    """The network has a layer (or a setting) the ONNX graph does not translate; the message names it."""


@dataclass(frozen=True)
class NetworkGraph:
    """The ONNX model (serialized) and, for a CRF network, the CRF's weights applied after it.

    ``crf`` is ``(transitions, start, end)`` when the graph outputs the CRF's
    emissions rather than the network's probabilities.
    """

    model: bytes  # a serialized ONNX ModelProto
    crf: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def network_graph(model: Any) -> NetworkGraph:
    """The ONNX graph of ``model``: ``[features (n, F), rows (B, W), mask (B, W)] -> (B, W, K)``.

    ``model`` takes ``[windows (B, W, F), mask (B, W)]`` or ``windows`` alone
    and returns ``(B, W, K)``. Raises :class:`UnsupportedNetworkError` for a
    layer or setting the graph does not cover.
    """
    import keras

    model = _functional(model)
    if len(model.inputs) not in (1, 2) or len(model.outputs) != 1:
        raise UnsupportedNetworkError(
            f"expected inputs [windows, mask] or [windows] and one output; the network has "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs"
        )
    window, width = model.inputs[0].shape[1], model.inputs[0].shape[2]
    if window is None or width is None:
        raise UnsupportedNetworkError("the network's window and feature width must be fixed")
    graph = _Graph()
    # Time-major throughout (the LSTM nodes' layout): windows (W, B, F) gathered from the block's
    # rows, padded steps (row -1) reading row 0 and zeroed; one transpose back at the end.
    index = graph.node("Max", [graph.node("Transpose", [ROWS], perm=[1, 0]), graph.const(np.zeros((), np.int64))])
    gathered = graph.node("Gather", [FEATURES, index], axis=0)
    steps_mask = graph.node("Transpose", [MASK], perm=[1, 0])
    real = graph.node("Unsqueeze", [graph.node("Cast", [steps_mask], to=onnx_proto.FLOAT), graph.const([2])])
    windows = graph.node("Mul", [gathered, real])
    lengths = graph.node("ReduceSum", [graph.node("Cast", [MASK], to=onnx_proto.INT32), graph.const([1])],
                         keepdims=0)
    inputs = [windows, MASK] if len(model.inputs) == 2 else [windows]
    graph.masks[MASK] = lengths
    crf, last = None, _producer(model.outputs[0])
    if isinstance(last.operation, CRF):
        if len(model.inputs) != 2 or last.arguments.kwargs.get("mask") is not model.inputs[1]:
            raise UnsupportedNetworkError("a CRF output must take the window's mask")
        crf = tuple(keras.ops.convert_to_numpy(v).astype(np.float64)
                    for v in (last.operation.transitions, last.operation.start, last.operation.end))
    (output,) = graph.model_outputs(model, inputs, stop_before=last if crf is not None else None)
    graph.nodes.append(onnx_proto.node("Transpose", [output], [OUTPUT], perm=[1, 0, 2]))
    inputs = [
        onnx_proto.value_info(FEATURES, onnx_proto.FLOAT, ["n", width]),
        onnx_proto.value_info(ROWS, onnx_proto.INT64, ["batch", window]),
        onnx_proto.value_info(MASK, onnx_proto.BOOL, ["batch", window]),
    ]
    outputs = [onnx_proto.value_info(OUTPUT, onnx_proto.FLOAT, ["batch", window, None])]
    body = onnx_proto.graph(graph.nodes, "skol_spark_network", inputs, outputs, graph.initializers)
    return NetworkGraph(onnx_proto.model(body, OPSET, IR_VERSION, "skol_spark"), crf)


def _producer(tensor: Any) -> Any:
    """The graph node that computes a model's symbolic ``tensor``."""
    operation, node_index, _ = tensor._keras_history
    return operation._inbound_nodes[node_index]


def _functional(model: Any) -> Any:
    """A Sequential model's functional graph; a functional model itself."""
    import keras

    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise UnsupportedNetworkError("a Sequential model that was never built")
        return functional
    if not hasattr(model, "_nodes_by_depth"):
        raise UnsupportedNetworkError(f"a subclassed model ({type(model).__name__}) has no layer graph to translate")
    return model


class _Graph:
    """ONNX nodes and initializers, with fresh names."""

    def __init__(self) -> None:
        self.nodes: list[bytes] = []  # serialized NodeProtos
        self.initializers: list[bytes] = []  # serialized TensorProtos
        self.masks: dict[str, str] = {}  # mask tensor -> its per-window count of real steps
        self._count = 0

    def fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, value: Any, dtype: Any = None) -> str:
        array = np.asarray(value, dtype=dtype)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        name = self.fresh("const")
        self.initializers.append(onnx_proto.tensor(name, array))
        return name

    def node(self, op: str, inputs: list[str], outputs: int = 1, **attributes: Any) -> Any:
        names = [self.fresh(op.lower()) for _ in range(outputs)]
        self.nodes.append(onnx_proto.node(op, inputs, names, **attributes))
        return names[0] if outputs == 1 else names

    def model_outputs(self, model: Any, inputs: list[str], stop_before: Any = None) -> list[str]:
        """Emit ``model``'s layers on the ONNX tensors ``inputs``; its outputs' names.

        With ``stop_before`` (a node of ``model``), that node is not emitted and
        its first input stands for the model's output.
        """
        model = _functional(model)
        if len(inputs) != len(model.inputs):
            raise UnsupportedNetworkError(
                f"{model.name} called with {len(inputs)} inputs, it takes {len(model.inputs)}"
            )
        names = {id(tensor): name for tensor, name in zip(model.inputs, inputs)}
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.operation is None or node.is_input:
                    continue
                if node is stop_before:
                    (emissions,) = node.arguments.args[:1]
                    return [names[id(emissions)]]
                outputs = self.layer(node.operation, node.arguments, names)
                if len(outputs) != len(node.outputs):
                    raise UnsupportedNetworkError(f"layer {node.operation.name!r} returns several tensors")
                for tensor, name in zip(node.outputs, outputs):
                    names[id(tensor)] = name
        return [names[id(tensor)] for tensor in model.outputs]

    def layer(self, layer: Any, arguments: Any, names: dict[int, str]) -> list[str]:
        """Emit one layer call; the names of its outputs."""
        import keras

        kind = type(layer).__name__

        def tensor(value: Any) -> str:
            if id(value) not in names:
                raise UnsupportedNetworkError(f"layer {layer.name!r} ({kind}) takes an input the graph cannot follow")
            return names[id(value)]

        args, kwargs = arguments.args, arguments.kwargs
        unexpected = set(kwargs) - {"mask", "training"}
        if unexpected:
            raise UnsupportedNetworkError(f"layer {layer.name!r} ({kind}) is called with {sorted(unexpected)}")
        mask = kwargs.get("mask")
        if isinstance(layer, keras.Model):
            inner = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
            return self.model_outputs(layer, [tensor(t) for t in inner])
        if len(args) != 1:
            raise UnsupportedNetworkError(f"layer {layer.name!r} ({kind}) is called with {len(args)} arguments")
        if isinstance(args[0], (list, tuple)):
            return [self.merge(layer, [tensor(t) for t in args[0]])]
        x = tensor(args[0])
        if kind in _IDENTITY_LAYERS:
            return [x]
        if isinstance(layer, keras.layers.Dense):
            return [self.dense(layer, x)]
        if isinstance(layer, keras.layers.Activation):
            return [self.activation(layer, layer.activation, x)]
        if isinstance(layer, keras.layers.TimeDistributed) and isinstance(layer.layer, keras.layers.Dense):
            return [self.dense(layer.layer, x)]
        if kind == "FeatureSlice":
            return [self.node("Slice", [x, self.const([layer.start]), self.const([layer.stop]), self.const([-1])])]
        lengths = None
        if mask is not None:
            lengths = self.masks.get(tensor(mask))
            if lengths is None:
                raise UnsupportedNetworkError(f"layer {layer.name!r} ({kind}) takes a mask that is not the window's")
        if isinstance(layer, keras.layers.Bidirectional):
            return [self.bidirectional(layer, x, lengths)]
        if isinstance(layer, keras.layers.LSTM):
            if layer.go_backwards:
                raise UnsupportedNetworkError(f"layer {layer.name!r}: a lone LSTM with go_backwards=True")
            return [self.node("Squeeze", [self.lstm([layer], x, lengths, "forward"), self.const([1])])]
        raise UnsupportedNetworkError(f"layer {layer.name!r} of type {kind} has no ONNX translation here")

    def activation(self, layer: Any, function: Any, x: str) -> str:
        name = getattr(function, "__name__", str(function))
        if name not in _ACTIVATIONS:
            raise UnsupportedNetworkError(f"layer {layer.name!r}: activation {name!r}")
        op = _ACTIVATIONS[name]
        if op is None:
            return x
        return self.node(op, [x], axis=-1) if op == "Softmax" else self.node(op, [x])

    def dense(self, layer: Any, x: str) -> str:
        import keras

        kernel = keras.ops.convert_to_numpy(layer.kernel).astype(np.float32)
        y = self.node("MatMul", [x, self.const(kernel)])
        if layer.use_bias:
            y = self.node("Add", [y, self.const(keras.ops.convert_to_numpy(layer.bias).astype(np.float32))])
        return self.activation(layer, layer.activation, y)

    def merge(self, layer: Any, inputs: list[str]) -> str:
        kind = type(layer).__name__
        if kind == "Average":
            return self.node("Mean", inputs)
        if kind == "Add":
            return self.node("Sum", inputs)
        if kind == "Concatenate" and layer.axis in (-1, 2):
            return self.node("Concat", inputs, axis=-1)
        raise UnsupportedNetworkError(f"layer {layer.name!r} of type {kind} has no ONNX translation here")

    def lstm(self, directions: list[Any], x: str, lengths: str | None, direction: str) -> str:
        """One ONNX LSTM node over ``x`` (W, B, F); its ``Y`` output (W, directions, B, H)."""
        import keras

        weights, recurrent, biases = [], [], []
        for layer in directions:
            cell = layer.cell
            if layer.stateful or not layer.return_sequences or layer.return_state:
                raise UnsupportedNetworkError(
                    f"layer {layer.name!r}: only stateless LSTMs returning sequences (and no states)"
                )
            activation = getattr(cell.activation, "__name__", "")
            recurrent_activation = getattr(cell.recurrent_activation, "__name__", "")
            if activation != "tanh" or recurrent_activation != "sigmoid":
                raise UnsupportedNetworkError(
                    f"layer {layer.name!r}: LSTM activations {activation!r}/{recurrent_activation!r} "
                    "(only tanh/sigmoid)"
                )
            units = cell.units
            # Keras gates i, f, c, o; ONNX i, o, f, c.
            order = np.concatenate([np.arange(units) + g * units for g in (0, 3, 1, 2)])
            weights.append(keras.ops.convert_to_numpy(cell.kernel).T[order])
            recurrent.append(keras.ops.convert_to_numpy(cell.recurrent_kernel).T[order])
            bias = keras.ops.convert_to_numpy(cell.bias)[order] if cell.use_bias else np.zeros(4 * units)
            biases.append(np.concatenate([bias, np.zeros(4 * units)]))
        units = directions[0].cell.units
        inputs = [x, self.const(np.stack(weights)), self.const(np.stack(recurrent)),
                  self.const(np.stack(biases)), lengths or ""]
        y = self.node("LSTM", inputs, hidden_size=units, direction=direction)
        return y

    def bidirectional(self, layer: Any, x: str, lengths: str | None) -> str:
        import keras

        forward, backward = layer.forward_layer, layer.backward_layer
        if not (isinstance(forward, keras.layers.LSTM) and isinstance(backward, keras.layers.LSTM)):
            raise UnsupportedNetworkError(
                f"layer {layer.name!r}: Bidirectional over {type(forward).__name__} (only LSTM)"
            )
        if forward.go_backwards or not backward.go_backwards or forward.cell.units != backward.cell.units:
            raise UnsupportedNetworkError(f"layer {layer.name!r}: its directions are not forward and backward LSTMs")
        y = self.lstm([forward, backward], x, lengths, "bidirectional")  # (W, 2, B, H)
        mode = layer.merge_mode
        if mode == "concat":
            steps = self.node("Transpose", [y], perm=[0, 2, 1, 3])  # (W, B, 2, H)
            return self.node("Reshape", [steps, self.const([0, 0, -1])])
        if mode not in ("sum", "ave", "mul"):
            raise UnsupportedNetworkError(f"layer {layer.name!r}: merge_mode {mode!r}")
        ahead, behind = self.node("Split", [y, self.const([1, 1])], outputs=2, axis=1)
        merged = self.node({"sum": "Add", "ave": "Add", "mul": "Mul"}[mode], [ahead, behind])
        if mode == "ave":
            merged = self.node("Mul", [merged, self.const(np.float32(0.5))])
        return self.node("Squeeze", [merged, self.const([1])])
