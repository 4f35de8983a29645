"""Refuse ONNX files whose tensors read external data outside the model's folder.

onnxruntime follows ``external_data`` locations relative to the model file, and a crafted
``../../etc/passwd`` (or an absolute path) would make it read any file. This walks the
protobuf wire format itself (no onnx package needed) through every place a TensorProto can
sit: graph initializers, sparse initializers, node attributes, nested graphs, functions.
"""

from __future__ import annotations

from pathlib import Path

from headstart.errors import ArtifactError

# Field numbers from onnx.proto3.
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INIT, _GRAPH_SPARSE_INIT = 1, 5, 15
_NODE_ATTR = 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_FUNC_NODE = 7
_TENSOR_EXTERNAL, _TENSOR_LOCATION = 13, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ArtifactError("malformed ONNX protobuf (varint).")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview):
    """(field number, wire type, value) for one message; value is bytes for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | memoryview | None
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ArtifactError("malformed ONNX protobuf (length past the end).")
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ArtifactError(f"malformed ONNX protobuf (wire type {wire}).")
        if pos > len(buf):
            raise ArtifactError("malformed ONNX protobuf (truncated).")
        yield number, wire, value


def _sub(buf: memoryview, *numbers: int):
    for number, wire, value in _fields(buf):
        if number in numbers and wire == 2:
            yield number, value


def _tensor_locations(buf: memoryview) -> list[str]:
    locations = []
    for _, entry in _sub(buf, _TENSOR_EXTERNAL):
        kv = {n: bytes(v).decode("utf-8", "replace") for n, v in _sub(entry, _ENTRY_KEY, _ENTRY_VALUE)}
        if kv.get(_ENTRY_KEY) == "location":
            locations.append(kv.get(_ENTRY_VALUE, ""))
    return locations


def _sparse(buf: memoryview) -> list[str]:
    return [loc for _, t in _sub(buf, _SPARSE_VALUES, _SPARSE_INDICES) for loc in _tensor_locations(t)]


def _nodes(nodes, depth: int) -> list[str]:
    out: list[str] = []
    for node in nodes:
        for _, attr in _sub(node, _NODE_ATTR):
            for number, value in _sub(attr, _ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES):
                if number in (_ATTR_T, _ATTR_TENSORS):
                    out += _tensor_locations(value)
                elif number in (_ATTR_SPARSE, _ATTR_SPARSES):
                    out += _sparse(value)
                else:
                    out += _graph(value, depth + 1)
    return out


def _graph(buf: memoryview, depth: int = 0) -> list[str]:
    if depth > 64:
        raise ArtifactError("ONNX graph nesting deeper than 64 levels.")
    out: list[str] = []
    nodes = []
    for number, value in _sub(buf, _GRAPH_NODE, _GRAPH_INIT, _GRAPH_SPARSE_INIT):
        if number == _GRAPH_INIT:
            out += _tensor_locations(value)
        elif number == _GRAPH_SPARSE_INIT:
            out += _sparse(value)
        else:
            nodes.append(value)
    return out + _nodes(nodes, depth)


def external_locations(model: bytes) -> list[str]:
    """Every external-data location named anywhere in a serialized ModelProto."""
    buf = memoryview(model)
    out: list[str] = []
    for number, value in _sub(buf, _MODEL_GRAPH, _MODEL_FUNCTIONS):
        if number == _MODEL_GRAPH:
            out += _graph(value)
        else:
            out += _nodes([v for _, v in _sub(value, _FUNC_NODE)], 1)
    return out


def check_external_data(model: bytes, path: Path) -> None:
    """ArtifactError when a tensor reads data from outside ``path``'s folder (or a missing file)."""
    folder = path.resolve().parent
    for location in external_locations(model):
        if "\0" in location or not location:
            raise ArtifactError(f"{path} names external data {location!r}, which is no file name: refused.")
        target = (folder / location).resolve()
        if Path(location).is_absolute() or folder not in target.parents:
            raise ArtifactError(f"{path} reads external data from {location!r}, outside its folder {folder}: refused.")
        if not target.is_file():
            raise ArtifactError(f"{path} needs external data {location!r}, which is missing next to it.")
