"""Fold shape arithmetic on static dimensions into constants, so the quantizer sees plain convolutions.

TF-ported timm models (``tf_efficientnet_lite0``, the default) pad "same" at run time: the
traced graph computes each padding from ``Shape(x)`` (Shape -> Gather/Slice -> Ceil -> ... ->
Pad). With a dynamic batch axis nothing folds it, and onnxruntime's quantizer then fails
("Graph is not a DAG"). Height and width are static, though: every Shape, Gather or Slice
that reads only static dimensions is replaced by a constant, onnxruntime's basic
optimizations fold what follows (the Pads merge into the Convs), and that repeats until
nothing changes. The batch axis stays dynamic; the result computes exactly the same function.

Example:
    >>> fold_static_shapes(Path("model.onnx"), Path("folded.onnx"))   # doctest: +SKIP
    12
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MAX_ROUNDS = 32


def _dims(model: Any) -> dict[str, list[int | None]]:
    import onnx

    graph = onnx.shape_inference.infer_shapes(model).graph
    out: dict[str, list[int | None]] = {}
    for info in [*graph.value_info, *graph.input]:
        shape = info.type.tensor_type.shape
        out[info.name] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in shape.dim]
    return out


def _constants(model: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    out = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            out[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return out


def _known(node: Any, shapes: dict[str, list[int | None]], consts: dict[str, np.ndarray]) -> list[int] | int | None:
    """The value of a Shape/Gather/Slice node when it reads static dimensions only."""
    if node.op_type == "Shape" or node.input[0] not in shapes or not all(x in consts for x in node.input[1:]):
        return None
    dims = shapes[node.input[0]]
    if node.op_type == "Gather" and consts[node.input[1]].ndim == 0:
        i = int(consts[node.input[1]])
        return dims[i] if -len(dims) <= i < len(dims) else None
    if node.op_type == "Slice" and len(node.input) >= 3:
        start, end = (int(consts[x].ravel()[0]) for x in node.input[1:3])
        axes = [int(a) for a in consts[node.input[3]].ravel()] if len(node.input) > 3 else [0]
        step = int(consts[node.input[4]].ravel()[0]) if len(node.input) > 4 else 1
        piece = dims[start : min(end, len(dims)) : step] if axes in ([0], [-1]) and step else []
        return piece if piece and all(d is not None for d in piece) else None  # type: ignore[return-value]
    return None


def _fold_once(model: Any) -> int:
    """Replace every foldable node by a Constant; returns how many were."""
    from onnx import helper, numpy_helper

    dims = _dims(model)
    consts = _constants(model)
    shapes: dict[str, list[int | None]] = {}  # Shape outputs -> the dims they hold (None: dynamic)
    nodes, folded = [], 0
    for node in model.graph.node:
        value: list[int] | int | None = None
        if node.op_type == "Shape" and node.input[0] in dims:
            at = {a.name: a.i for a in node.attribute}
            full = dims[node.input[0]]
            shapes[node.output[0]] = full[at.get("start", 0) : at.get("end", len(full))]
            piece = shapes[node.output[0]]
            value = piece if piece and all(d is not None for d in piece) else None  # type: ignore[assignment]
        elif node.op_type in ("Gather", "Slice"):
            value = _known(node, shapes, consts)
        if value is None:
            nodes.append(node)
            continue
        tensor = numpy_helper.from_array(np.asarray(value, np.int64))
        nodes.append(helper.make_node("Constant", [], [node.output[0]], value=tensor))
        folded += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return folded


def _basic_optimizations(source: Path, target: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # constant folding, Pad into Conv
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def fold_static_shapes(source: Path, target: Path) -> int:
    """Write ``target``: ``source`` with static shape arithmetic folded; returns nodes folded."""
    import onnx

    work = target.with_name(target.stem + ".step.onnx")
    current, total = source, 0
    for _ in range(MAX_ROUNDS):
        model = onnx.load(str(current))
        folded = _fold_once(model)
        onnx.save(model, str(work))
        _basic_optimizations(work, target)
        current, total = target, total + folded
        if not folded:
            break
    work.unlink(missing_ok=True)
    return total
