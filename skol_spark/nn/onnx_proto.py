"""The few ONNX protobuf messages the network's graph needs, written without the ``onnx`` package.

ONNX Runtime reads a serialized ``ModelProto``; building one takes only the
protobuf wire format (varints and length-delimited fields) and the field
numbers of ``onnx.proto``. Writing them here keeps the ``onnx`` package, whose
releases since 1.18 need an ``ml_dtypes`` newer than TensorFlow 2.16 allows,
off the executors. ``tests/test_fast_inference.py`` parses the output with the
``onnx`` package, where installed, and compares it message by message.

Each function returns the serialized message as ``bytes``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["FLOAT", "INT32", "INT64", "BOOL", "node", "tensor", "value_info", "graph", "model"]

# TensorProto.DataType
FLOAT, INT32, INT64, BOOL = 1, 6, 7, 9
_DATA_TYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.int32): INT32, np.dtype(np.int64): INT64,
               np.dtype(np.bool_): BOOL}
# AttributeProto.AttributeType
_ATTRIBUTE_FLOAT, _ATTRIBUTE_INT, _ATTRIBUTE_STRING, _ATTRIBUTE_INTS = 1, 2, 3, 7


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s as their two's complement, 10 bytes
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(int(value))


def _bytes_field(number: int, value: bytes | str) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _float_field(number: int, value: float) -> bytes:
    return _varint(number << 3 | 5) + struct.pack("<f", value)


def _attribute(name: str, value: object) -> bytes:
    """AttributeProto: name 1, f 2, i 3, s 4, ints 8, type 20."""
    out = _bytes_field(1, name)
    if isinstance(value, str):
        return out + _bytes_field(4, value) + _int_field(20, _ATTRIBUTE_STRING)
    if isinstance(value, (list, tuple)):
        return out + b"".join(_int_field(8, v) for v in value) + _int_field(20, _ATTRIBUTE_INTS)
    if isinstance(value, float):
        return out + _float_field(2, value) + _int_field(20, _ATTRIBUTE_FLOAT)
    return out + _int_field(3, int(value)) + _int_field(20, _ATTRIBUTE_INT)


def node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], **attributes: object) -> bytes:
    """NodeProto: input 1, output 2, op_type 4, attribute 5 (an empty input name skips an optional input)."""
    return (
        b"".join(_bytes_field(1, name) for name in inputs)
        + b"".join(_bytes_field(2, name) for name in outputs)
        + _bytes_field(4, op_type)
        + b"".join(_bytes_field(5, _attribute(key, value)) for key, value in sorted(attributes.items()))
    )


def tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims 1, data_type 2, name 8, raw_data 9 (little-endian)."""
    array = np.ascontiguousarray(array)
    if array.dtype not in _DATA_TYPES:
        raise TypeError(f"Expected a float32, int32, int64 or bool array. Received: {array.dtype}")
    return (
        b"".join(_int_field(1, d) for d in array.shape)
        + _int_field(2, _DATA_TYPES[array.dtype])
        + _bytes_field(8, name)
        + _bytes_field(9, array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    )


def value_info(name: str, elem_type: int, shape: Iterable[int | str | None]) -> bytes:
    """ValueInfoProto (name 1, type 2) of a tensor: TypeProto.tensor_type 1 {elem_type 1, shape 2
    {dim 1 {dim_value 1 | dim_param 2}}}; None leaves a dimension unnamed."""
    dims = b""
    for d in shape:
        dim = b"" if d is None else _bytes_field(2, d) if isinstance(d, str) else _int_field(1, d)
        dims += _bytes_field(1, dim)
    tensor_type = _int_field(1, elem_type) + _bytes_field(2, dims)
    return _bytes_field(1, name) + _bytes_field(2, _bytes_field(1, tensor_type))


def graph(nodes: Iterable[bytes], name: str, inputs: Iterable[bytes], outputs: Iterable[bytes],
          initializers: Iterable[bytes]) -> bytes:
    """GraphProto: node 1, name 2, initializer 5, input 11, output 12."""
    return (
        b"".join(_bytes_field(1, n) for n in nodes)
        + _bytes_field(2, name)
        + b"".join(_bytes_field(5, t) for t in initializers)
        + b"".join(_bytes_field(11, v) for v in inputs)
        + b"".join(_bytes_field(12, v) for v in outputs)
    )


def model(graph_bytes: bytes, opset: int, ir_version: int, producer: str) -> bytes:
    """ModelProto: ir_version 1, producer_name 2, graph 7, opset_import 8 {domain 1, version 2}."""
    opset_import = _bytes_field(1, "") + _int_field(2, opset)
    return (
        _int_field(1, ir_version)
        + _bytes_field(2, producer)
        + _bytes_field(7, graph_bytes)
        + _bytes_field(8, opset_import)
    )
