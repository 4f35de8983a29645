"""int8 export: calibrated on the run's own images, kept only when it agrees with fp32, run without torch."""

from __future__ import annotations

import csv
import json
import shutil
import warnings

import numpy as np
import pytest

import headstart
from headstart.errors import ExportError
from headstart.export.agreement import AgreementReport, wilson_lower
from headstart.export.quantize import per_class_sample


@pytest.fixture(scope="module")
def int8_run(exported_run, tmp_path_factory):
    """A copy of the shared run with model.onnx and model.int8.onnx (agreement needed: 0.8)."""
    run, data = exported_run
    copy = shutil.copytree(run, tmp_path_factory.mktemp("int8") / "run")
    result = headstart.load(copy, backend="torch").export("onnx", int8=True, min_agreement=0.8)
    return copy, data, result


def _description(path) -> dict:
    import onnx

    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["headstart"])


@pytest.mark.slow
def test_int8_export_writes_a_quantized_model_beside_fp32_with_the_same_description(int8_run):
    run, _, result = int8_run
    assert result.int8 is not None and result.int8.path == run / "export" / "model.int8.onnx"
    assert (run / "export" / "model.onnx").is_file() and not list(run.glob("export/.*"))
    fp32, int8 = _description(run / "export" / "model.onnx"), _description(result.int8.path)
    for key in ("classes", "task", "threshold", "preprocess", "arch", "input", "output"):
        assert int8[key] == fp32[key], key
    assert int8["precision"] == "int8" and "precision" not in fp32
    assert int8["quantization"]["per_channel"] is True and int8["quantization"]["calibration_images"] == 24
    assert int8["agreement"]["images"] == result.int8.agreement.images
    import onnx

    ops = {n.op_type for n in onnx.load(str(result.int8.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # really quantized (QDQ)


@pytest.mark.slow
def test_agreement_is_measured_on_every_held_out_image_then_training_images(int8_run):
    _, _, result = int8_run
    report = result.int8.agreement
    # 30 images: 6 validation ones first, then the 24 training ones (a small run: all calibrate too)
    assert report.images == 30 and report.held_out == 6 and report.val_images == 6
    assert report.lower_bound == pytest.approx(wilson_lower(report.agree, report.images))
    assert report.fp32_accuracy is not None and report.int8_accuracy is not None
    assert report.agree >= 27 and report.ok  # the colours are easy: int8 decides as fp32 does
    assert result.speed is not None and result.int8.speed is not None and result.int8.speed.throughput > 0


@pytest.mark.slow
def test_int8_below_the_agreement_threshold_is_refused_and_fp32_kept(exported_run, tmp_path):
    run = shutil.copytree(exported_run[0], tmp_path / "run")
    with pytest.raises(ExportError) as caught:
        headstart.load(run, backend="torch").export("onnx", int8=True, min_agreement=0.999)
    message = str(caught.value)
    assert "\n" not in message and "refused" in message and "lower bound" in message and "--min-agreement" in message
    assert not (run / "export" / "model.int8.onnx").exists() and (run / "export" / "model.onnx").is_file()
    assert not list(run.glob("export/.*"))


@pytest.mark.slow
def test_int8_without_the_training_images_says_so_in_one_line(exported_run, tmp_path):
    run = shutil.copytree(exported_run[0], tmp_path / "run")
    rows = list(csv.DictReader((run / "split.csv").open()))
    with (run / "split.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["split", "path", "labels"])
        writer.writeheader()
        writer.writerows({**r, "path": r["path"] + ".gone"} if r["split"] == "train" else r for r in rows)
    with pytest.raises(ExportError, match="none of the 24 listed") as caught:
        headstart.load(run, backend="torch").export("onnx", int8=True)
    assert "\n" not in str(caught.value) and not (run / "export" / "model.int8.onnx").exists()


def test_wilson_lower_bound():
    assert wilson_lower(0, 0) == 0.0
    assert wilson_lower(30, 30) == pytest.approx(0.8865, abs=1e-4)  # 30 of 30 proves only ~89 %
    assert wilson_lower(1990, 2000) == pytest.approx(0.9908, abs=1e-4)
    assert wilson_lower(190, 190) > 0.98 > wilson_lower(180, 180)


def test_refusal_follows_the_lower_bound_not_the_rate():
    report = AgreementReport(100, 100, 100, wilson_lower(100, 100), 0.98, 100, 0.9, 0.9, 50)
    assert report.rate == 1.0 and not report.ok  # 100 of 100 still allows a 3.7 % disagreement
    assert "100/100" in report.summary() and "lower bound" in report.summary()


def test_calibration_samples_every_class_round_robin():
    rows = [(f"a{i}", (0,)) for i in range(50)] + [(f"b{i}", (1,)) for i in range(3)] + [(f"c{i}", (2,)) for i in range(50)]
    chosen = per_class_sample(rows, 20)
    counts = {k: sum(1 for p, _ in chosen if p[0] == k) for k in "abc"}
    assert counts == {"a": 9, "b": 3, "c": 8} or counts == {"a": 8, "b": 3, "c": 9}
    assert len(set(chosen)) == 20


def test_static_shape_folding_keeps_the_function_and_removes_runtime_padding(tmp_path):
    import onnx
    import onnxruntime as ort
    import torch
    from timm.layers import create_conv2d

    from headstart.export.static_shapes import fold_static_shapes

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        create_conv2d(3, 8, 3, stride=2, padding="same"), torch.nn.ReLU(), create_conv2d(8, 4, 3, stride=2, padding="same")
    )
    net.eval()
    source, target = tmp_path / "same.onnx", tmp_path / "folded.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(2, 3, 17, 17),), str(source), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "b"}})
    assert "Pad" in {n.op_type for n in onnx.load(str(source)).graph.node}  # TF "same": padding computed at run time
    assert fold_static_shapes(source, target) > 0
    assert not {"Pad", "Gather", "Ceil"} & {n.op_type for n in onnx.load(str(target)).graph.node}
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 17, 17)).astype(np.float32)
        with torch.no_grad():
            want = net(torch.from_numpy(x)).numpy()
        got = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_the_torch_free_path_predicts_from_the_int8_model(int8_run, tmp_path):
    import os
    import subprocess

    from test_runtime import RUNTIME_REQUIREMENTS, TRAINING_STACK, _cli, _closure, _runtime_venv

    run, data, _ = int8_run
    files = sorted(str(p) for p in data.rglob("*.png"))[::6]
    blocked = _cli(["predict", str(run), *files, "--backend", "onnx-int8"], blocked=TRAINING_STACK)
    assert blocked.returncode == 0, blocked.stderr
    assert "model.int8.onnx (onnxruntime, int8)" in blocked.stderr
    want = [p.labels[0] for p in headstart.load(run, backend="onnx-int8").predict(files)]
    assert [line.split("\t")[1].split()[0] for line in blocked.stdout.splitlines()] == want

    assert not _closure(RUNTIME_REQUIREMENTS) & set(TRAINING_STACK)
    python = _runtime_venv(tmp_path / "venv")  # only the [runtime] closure: no torch at all
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    args = [str(python), "-m", "headstart.cli", "predict", str(run / "export" / "model.int8.onnx"), *files]
    fresh = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.splitlines() == blocked.stdout.splitlines()


@pytest.mark.slow
def test_the_server_serves_the_int8_model(int8_run):
    import io

    import httpx
    from _serving import serving
    from PIL import Image

    from headstart.serve import ServeConfig, create_app, load_backend

    run, _, _ = int8_run
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (220, 30, 30)).save(buf, "PNG")
    with serving(create_app(load_backend(run, "onnx-int8"), ServeConfig())) as url:
        info = httpx.get(f"{url}/info").json()
        assert info["precision"] == "int8" and info["model"] == "model.int8.onnx"
        r = httpx.post(f"{url}/predict", files={"file": ("r.png", buf.getvalue())})
        assert r.status_code == 200 and r.json()["predictions"][0]["labels"] == ["red"]
