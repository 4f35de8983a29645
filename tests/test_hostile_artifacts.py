"""Tampered, truncated or hostile artifacts are refused with ArtifactError; nothing in them runs."""

from __future__ import annotations

import json
import pickle
import shutil
import struct
from pathlib import Path

import pytest

import headstart
from headstart.errors import ArtifactError
from headstart.predict.runtime import RuntimePredictor


class _Payload:
    """Unpickling this creates the marker file: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture()
def run(exported_run, tmp_path):
    return shutil.copytree(exported_run[0], tmp_path / "run")


def _meta(run: Path) -> dict:
    return json.loads((run / "headstart.json").read_text())


def _write_meta(run: Path, meta: dict) -> None:
    (run / "headstart.json").write_text(json.dumps(meta))


# -- the run folder: model.safetensors + headstart.json ---------------------------------------
def test_a_pickle_payload_in_place_of_the_weights_never_runs(run, tmp_path):
    marker = tmp_path / "pwned"
    (run / "model.safetensors").write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    with pytest.raises(ArtifactError, match="model.safetensors"):
        headstart.load(run)
    assert not marker.exists()


def test_a_torch_zip_checkpoint_in_place_of_the_weights_never_runs(run, tmp_path):
    import torch

    marker = tmp_path / "pwned"
    torch.save({"x": _Payload(marker)}, run / "model.safetensors")
    with pytest.raises(ArtifactError):
        headstart.load(run)
    assert not marker.exists()


@pytest.mark.parametrize(
    "header",
    [
        b"\xff" * 8,  # header length far past the end of the file
        struct.pack("<Q", 12) + b"not json at ",
        struct.pack("<Q", 2) + b"[]",
        None,  # a valid header whose tensor offsets point past the end
    ],
)
def test_malformed_safetensors_headers(run, header):
    path = run / "model.safetensors"
    if header is None:
        h = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}).encode()
        header = struct.pack("<Q", len(h)) + h + b"\0" * 16
    path.write_bytes(header)
    with pytest.raises(ArtifactError, match="Cannot read"):
        headstart.load(run)


def test_truncated_weights(run):
    path = run / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="Cannot read"):
        headstart.load(run)


@pytest.mark.parametrize(
    "where, value, message",
    [
        ("model.arch", 123, "model.arch"),
        ("model.arch", {"__class__": "os.system"}, "model.arch"),
        ("model.hidden", "256", "model.hidden"),
        ("model.hidden", [-1], "model.hidden"),
        ("model.pretrained", "yes", "model.pretrained"),
        ("model.threshold", "0.5", "model.threshold"),
        ("model.extra", 1, "unknown model field"),
        ("model.arch", "no_such_architecture_xyz", "Unknown architecture"),
        ("model", [], "'model' must be an object"),
        ("preprocess.mean", "0.5", "preprocess.mean"),
        ("preprocess.input_size", 1e9, "preprocess.input_size"),
        ("preprocess.input_size", True, "preprocess.input_size"),
        ("preprocess.std", [0, 1, 1], "std"),
        ("preprocess.interpolation", "evil", "interpolation"),
        ("preprocess.code", "import os", "keys"),
        ("classes", "red,green", "classes"),
        ("classes", [1, 2, 3], "classes"),
        ("classes", ["red", "red", "blue"], "duplicate"),
        ("task", ["multiclass"], "task"),
    ],
)
def test_description_with_unexpected_types(run, where, value, message):
    meta = _meta(run)
    target = meta
    *parents, key = where.split(".")
    for p in parents:
        target = target[p]
    target[key] = value
    _write_meta(run, meta)
    with pytest.raises(ArtifactError, match=message):
        headstart.load(run)


def test_deeply_nested_json_is_refused(run):
    (run / "headstart.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ArtifactError):
        headstart.load(run)


# -- exported ONNX models ----------------------------------------------------------------------
def _onnx_with_external(folder: Path, location: str) -> Path:
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], [0.0] * 4)
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        entry = weight.external_data.add()
        entry.key, entry.value = k, v
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_onnx_external_data_outside_its_folder_is_refused_before_loading(tmp_path, monkeypatch, location):
    import onnxruntime

    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    path = _onnx_with_external(folder, location)

    def never(*args, **kwargs):
        raise AssertionError("onnxruntime must not open a refused model")

    monkeypatch.setattr(onnxruntime, "InferenceSession", never)
    with pytest.raises(ArtifactError, match="outside its folder"):
        RuntimePredictor.load(path)


def test_onnx_symlinked_external_data_pointing_outside_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 16)
    (folder / "w.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(ArtifactError, match="outside its folder"):
        RuntimePredictor.load(_onnx_with_external(folder, "w.bin"))


def test_onnx_external_data_inside_its_folder_passes_the_check(tmp_path):
    from headstart.predict.onnx_check import check_external_data

    (tmp_path / "w.bin").write_bytes(b"\0" * 16)
    path = _onnx_with_external(tmp_path, "w.bin")
    check_external_data(path.read_bytes(), path)  # no error
    with pytest.raises(ArtifactError, match="no headstart description"):
        RuntimePredictor.load(path)  # loads, but it is not a headstart export


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_broken_onnx_files(exported_run, tmp_path, damage):
    data = (exported_run[0] / "export" / "model.onnx").read_bytes()
    path = tmp_path / "model.onnx"
    path.write_bytes({"garbage": b"\x08\x07" + b"\xff" * 64, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    with pytest.raises(ArtifactError):
        RuntimePredictor.load(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(classes="red"), "classes"),
        (lambda m: m.update(threshold="0.5"), "threshold"),
        (lambda m: m["preprocess"].update(mean={"r": 1}), "preprocess.mean"),
        (lambda m: m.update(format="other"), "not a headstart export"),
        (lambda m: m["input"].update(name="other"), "input"),
        (None, "not valid JSON"),
    ],
)
def test_onnx_description_with_unexpected_types(exported_run, tmp_path, change, message):
    import onnx

    model = onnx.load(str(exported_run[0] / "export" / "model.onnx"))
    prop = next(p for p in model.metadata_props if p.key == "headstart")
    if change is None:
        prop.value = "{not json"
    else:
        meta = json.loads(prop.value)
        change(meta)
        prop.value = json.dumps(meta)
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ArtifactError, match=message):
        RuntimePredictor.load(path)
