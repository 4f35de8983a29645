"""Export: both formats carry their description and pass parity; failures keep nothing."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

import headstart
from headstart.config import TrainConfig
from headstart.errors import ConfigError, ExportError
from headstart.export import parity


@pytest.fixture()
def run_copy(exported_run, tmp_path):
    run, data = exported_run
    return shutil.copytree(run, tmp_path / "run"), data


@pytest.mark.slow
@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_passes_parity_at_every_batch_size(run_copy, fmt, suffix):
    run, _ = run_copy
    result = headstart.load(run).export(fmt)
    assert result.path == run / "export" / f"model{suffix}" and result.path.is_file()
    report = result.parity
    assert report.ok and report.batch_sizes == (1, 7, 32) and report.images == 32
    assert report.held_out == 6  # the run's validation images, then generated ones
    assert report.top1_mismatches == 0 and report.max_abs_diff < 1e-4
    assert not list(run.glob("export/.*"))  # no temp files left


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_file_carries_classes_task_threshold_and_preprocessing(run_copy, fmt):
    run, _ = run_copy
    path = headstart.load(run).export(fmt).path
    if fmt == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        meta = json.loads(props["headstart"])
        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch"  # dynamic batch axis
    else:
        import torch

        extra = {"headstart.json": ""}
        with warnings.catch_warnings():  # deprecated in torch 2.14; still the way to read extra files
            warnings.simplefilter("ignore")
            torch.jit.load(str(path), _extra_files=extra)
        meta = json.loads(extra["headstart.json"])
    run_meta = json.loads((run / "headstart.json").read_text())
    assert meta["classes"] == ["blue", "green", "red"] == run_meta["classes"]
    assert meta["task"] == "multiclass" and meta["threshold"] == 0.5
    assert meta["preprocess"] == run_meta["preprocess"]
    assert set(meta["preprocess"]) == {"input_size", "resize_size", "mean", "std", "interpolation"}
    assert meta["output"]["kind"] == "probabilities"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_failed_parity_fails_loudly_and_removes_the_output(run_copy, fmt, monkeypatch):
    run, _ = run_copy
    clf = headstart.load(run)
    stale = run / "export" / ("model.onnx" if fmt == "onnx" else "model.pt")
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"an older export")
    real_check = parity.check

    def perturbed(reference, exported, inputs, held_out):
        return real_check(reference, lambda x: exported(x)[:, ::-1].copy(), inputs, held_out)

    monkeypatch.setattr(parity, "check", perturbed)
    with pytest.raises(ExportError, match="parity"):
        clf.export(fmt)
    assert not stale.exists()  # neither the failed export nor the stale one
    assert not list(run.glob("export/.*"))


def test_parity_check_catches_small_numeric_drift():
    x = np.random.default_rng(0).normal(size=(32, 3, 8, 8)).astype(np.float32)

    def ref(b):
        e = np.exp(b.mean((2, 3)))
        return e / e.sum(1, keepdims=True)

    assert parity.check(ref, ref, x, 0).ok
    drift = parity.check(ref, lambda b: ref(b) + 5e-4, x, 0)
    assert not drift.ok and "rtol" in drift.failures[0]
    batch_bug = parity.check(ref, lambda b: ref(b) if len(b) == 1 else ref(b[:1]).repeat(len(b), 0), x, 0)
    assert not batch_bug.ok and all(f.startswith("batch ") for f in batch_bug.failures)


def test_generated_images_fill_in_when_no_held_out_images_are_left(run_copy, tmp_path):
    run, data = run_copy
    shutil.rmtree(data)  # the run's images are gone
    try:
        result = headstart.load(run).export("onnx")
        assert result.parity.held_out == 0 and result.parity.images == 32
    finally:
        from conftest import make_images

        make_images(data, classes=("red", "green", "blue"), per_class=10, nested=False)


def test_unknown_format_is_a_config_error(run_copy):
    with pytest.raises(ConfigError, match="onnx"):
        headstart.load(run_copy[0]).export("tflite")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["binary", "multilabel"])
def test_sigmoid_tasks_export_with_parity(tmp_path, tiny, make_images, kind):
    if kind == "binary":
        data = make_images(tmp_path / "data", classes=("red", "blue"), per_class=6)
    else:
        data = make_images(tmp_path / "data", "multilabel", {"red": "warm", "yellow": "warm;bright", "blue": "cold"}, per_class=6)
    clf = tiny(train=TrainConfig(frozen_epochs=1, finetune_epochs=0, batch_size=8, patience=0, num_workers=0)).fit(
        data, out=tmp_path / "run"
    )
    result = clf.export("onnx")
    assert result.parity.ok

    from headstart.predict.runtime import RuntimePredictor

    rt = RuntimePredictor.load(result.path)
    assert rt.task == kind and rt.classes == clf.classes
    files = sorted(str(p) for p in (tmp_path / "data").rglob("*.png"))[:5]
    for a, b in zip(rt.predict(files), clf.predict(files)):
        assert a.labels == b.labels
        np.testing.assert_allclose(list(a.probs.values()), list(b.probs.values()), rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_cli_export_prints_the_path_and_parity(run_copy, capsys):
    from headstart.cli import app

    run, _ = run_copy
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["export", str(run), "--format", "torchscript", "--out", str(run / "m.pt")])
    assert result.exit_code == 0, result.output
    assert str(run / "m.pt") in result.output and "parity on 32 images" in result.output


@pytest.mark.slow
def test_an_export_killed_before_leaves_no_temporary_file_after_the_next(run_copy):
    """Found by bench/faults.py kill: a SIGKILLed export's temporary file (named by its pid)
    outlived the next export; the next one now sweeps those of dead processes."""
    import os
    import subprocess
    import sys

    run, _ = run_copy
    target = run / "export" / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = target.with_name(f".model.{dead.pid}.tmp.onnx")
    orphan.write_bytes(b"half an export")
    alive = target.with_name(f".model.{os.getppid()}.tmp.onnx")  # a writer still running: left alone
    alive.write_bytes(b"in progress")
    headstart.load(run).export("onnx")
    assert not orphan.exists() and alive.exists() and target.is_file()
