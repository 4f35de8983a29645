"""The one backend resolver of predict, serve and headstart.load: which file answers, said out loud."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

import headstart
from headstart.cli import app
from headstart.errors import ArtifactError, ConfigError
from headstart.predict import resolve as resolve_module
from headstart.predict.resolve import available, resolve


@pytest.fixture()
def fake_run(tmp_path, monkeypatch):
    """A run folder with placeholder model files (the resolver looks only at names)."""
    monkeypatch.setattr(resolve_module, "_cuda", lambda: False)
    run = tmp_path / "run"
    (run / "export").mkdir(parents=True)
    for name in ("model.safetensors", "export/model.onnx", "export/model.int8.onnx"):
        (run / name).write_bytes(b"x")
    return run


def test_auto_prefers_the_fp32_export_on_cpu_and_names_the_others(fake_run):
    choice = resolve(fake_run)
    assert choice.backend == "onnx" and choice.path == fake_run / "export" / "model.onnx"
    summary = choice.summary()
    assert "model.onnx (onnxruntime, fp32)" in summary and "--backend torch" in summary and "--backend onnx-int8" in summary


def test_auto_prefers_torch_on_a_cuda_device(fake_run, monkeypatch):
    monkeypatch.setattr(resolve_module, "_cuda", lambda: True)
    assert resolve(fake_run).backend == "torch"


def test_auto_never_picks_int8_while_another_model_is_there(fake_run):
    (fake_run / "export" / "model.onnx").unlink()
    assert resolve(fake_run).backend == "torch"
    (fake_run / "model.safetensors").unlink()
    assert resolve(fake_run).backend == "onnx-int8"  # the only model left


@pytest.mark.parametrize("backend, name", [("torch", "model.safetensors"), ("onnx", "model.onnx"), ("onnx-int8", "model.int8.onnx")])
def test_an_explicit_backend_picks_its_file(fake_run, backend, name):
    choice = resolve(fake_run, backend)
    assert choice.backend == backend and choice.path.name == name and len(choice.others) == 2


def test_a_missing_backend_says_how_to_make_it(fake_run):
    (fake_run / "export" / "model.int8.onnx").unlink()
    with pytest.raises(ArtifactError, match="headstart export .* --int8") as caught:
        resolve(fake_run, "onnx-int8")
    assert "models there: torch (model.safetensors), onnx (model.onnx)" in str(caught.value)


def test_an_onnx_file_is_that_file(fake_run):
    int8 = fake_run / "export" / "model.int8.onnx"
    assert resolve(int8).backend == "onnx-int8" and resolve(int8).others == ()
    with pytest.raises(ConfigError, match="give the run folder"):
        resolve(int8, "torch")


def test_unknown_backend_and_missing_target_fail_early(tmp_path):
    with pytest.raises(ConfigError, match="onnx-int8"):
        resolve(tmp_path, "tensorrt")
    with pytest.raises(ArtifactError, match="not a finished headstart run"):
        resolve(tmp_path / "nowhere")
    assert available(tmp_path) == {}


def test_the_resolver_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, headstart.predict.resolve; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.slow
def test_load_predict_and_serve_share_the_choice(exported_run, tmp_path, capsys):
    run = shutil.copytree(exported_run[0], tmp_path / "run")
    clf = headstart.load(run)  # CPU: the ONNX export answers, and the run holds two models: said
    assert clf.predictor().backend == "onnxruntime" and "model.onnx (onnxruntime, fp32)" in capsys.readouterr().err
    assert headstart.load(run, backend="torch").predictor().backend == "torch"
    bare = headstart.load(run / "export" / "model.onnx")  # an .onnx alone predicts
    files = sorted(str(p) for p in exported_run[1].rglob("*.png"))[:3]
    assert [p.labels for p in bare.predict(files)] == [p.labels for p in clf.predict(files)]
    assert bare.classes == ["blue", "green", "red"]
    from headstart.serve import load_backend

    assert load_backend(run).backend == "onnxruntime" and load_backend(run, "torch").backend == "torch"


@pytest.mark.slow
def test_cli_predict_names_the_model_and_takes_threads_and_batch_size(exported_run):
    run, data = exported_run
    files = sorted(str(p) for p in data.rglob("*.png"))[:3]
    runner = CliRunner()
    fast = runner.invoke(app, ["predict", str(run), *files, "--threads", "1", "--batch-size", "2"])
    eager = runner.invoke(app, ["predict", str(run), *files, "--backend", "torch"])
    assert fast.exit_code == 0 and eager.exit_code == 0, fast.output
    assert "model.onnx (onnxruntime, fp32)" in fast.stderr and "model.safetensors (eager PyTorch)" in eager.stderr
    assert fast.stdout.splitlines() == eager.stdout.splitlines()
    missing = runner.invoke(app, ["predict", str(run), *files, "--backend", "onnx-int8"])
    assert missing.exit_code != 0 and "--int8" in str(missing.exception)  # main() makes it one line, exit 2
