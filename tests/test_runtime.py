"""The torch-free path: an exported ONNX model predicts like the run, without torch installed."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import headstart
from headstart.predict.runtime import RuntimePredictor

SRC = Path(__file__).resolve().parents[1] / "src"
# What `pip install headstart[runtime]` brings: the base dependencies plus the extra.
RUNTIME_REQUIREMENTS = ("numpy", "pillow", "typer", "rich", "onnxruntime")
TRAINING_STACK = ("torch", "torchvision", "timm", "lightning", "pytorch-lightning", "torchmetrics", "safetensors")

# Blocks the training stack in a subprocess, as if it were not installed.
BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Block())
from headstart.cli import main
sys.argv = ["headstart"] + sys.argv[1:]
main()
"""


def _files(run: Path, data: Path) -> list[str]:
    return sorted(str(p) for p in data.rglob("*.png"))[::4]


def test_runtime_predicts_like_the_eager_model(exported_run):
    run, data = exported_run
    files = _files(run, data)
    runtime = RuntimePredictor.load(run)  # finds RUN/export/model.onnx
    assert runtime.classes == ["blue", "green", "red"] and runtime.task == "multiclass"
    for a, b in zip(runtime.predict(files, top_k=3), headstart.load(run).predict(files, top_k=3)):
        assert a.source == b.source and a.labels == b.labels and [c for c, _ in a.top] == [c for c, _ in b.top]
        np.testing.assert_allclose(list(a.probs.values()), list(b.probs.values()), rtol=1e-3, atol=1e-5)


def _cli(args: list[str], blocked: tuple[str, ...] = (), python: str = sys.executable, env: dict | None = None):
    code = BLOCKER.format(blocked=set(n.replace("-", "_") for n in blocked))
    env = env or {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([python, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow
def test_predict_without_the_training_stack_uses_the_onnx_export(exported_run):
    run, data = exported_run
    files = _files(run, data)[:3]
    with_torch = _cli(["predict", str(run), *files])
    without = _cli(["predict", str(run), *files], blocked=TRAINING_STACK)
    assert with_torch.returncode == 0 and without.returncode == 0, without.stderr
    assert "onnxruntime" in without.stderr
    assert without.stdout.splitlines() == with_torch.stdout.splitlines()  # same classes, probabilities to 3 digits


@pytest.mark.slow
@pytest.mark.parametrize("command", [["train", "DATA"], ["evaluate", "RUN"], ["export", "RUN"], ["demo"]])
def test_commands_that_need_torch_say_which_extra_to_install(exported_run, command):
    run, data = exported_run
    args = [str(data) if a == "DATA" else str(run) if a == "RUN" else a for a in command]
    result = _cli(args, blocked=TRAINING_STACK)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'headstart[train]'" in lines[0], result.stderr


@pytest.mark.slow
def test_predict_on_a_run_without_export_or_torch_names_both_fixes(exported_run, tmp_path):
    import shutil

    run = shutil.copytree(exported_run[0], tmp_path / "run", ignore=shutil.ignore_patterns("export"))
    result = _cli(["predict", str(run), str(tmp_path)], blocked=TRAINING_STACK)
    assert result.returncode == 2 and "headstart export" in result.stderr and "headstart[train]" in result.stderr


def _closure(names: tuple[str, ...]) -> set[str]:
    """Installed distributions that pip would install for ``names`` (markers evaluated)."""
    env = default_environment()
    seen: set[str] = set()
    stack = list(names)
    while stack:
        name = canonicalize_name(stack.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in md.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
                stack.append(req.name)
    return seen


def _runtime_venv(root: Path) -> Path:
    """A fresh venv holding only headstart's source and the [runtime] dependency closure.

    The packages are linked from the test environment's site-packages (no network); the
    training stack is not in the closure, so it is simply not there."""
    venv.EnvBuilder(with_pip=False).create(root)
    shim = root / "runtime-packages"
    shim.mkdir()
    for dist_name in _closure(RUNTIME_REQUIREMENTS):
        dist = md.distribution(dist_name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src = Path(dist.locate_file(top))
            if src.exists() and not (shim / top).exists() and top != "__pycache__":
                (shim / top).symlink_to(src)
    purelib = Path(sysconfig.get_paths(vars={"base": str(root), "platbase": str(root)})["purelib"])
    (purelib / "headstart-runtime.pth").write_text(f"{shim}\n{SRC}\n")
    return root / "bin" / "python"


@pytest.mark.slow
def test_runtime_only_install_in_a_clean_virtual_environment(exported_run, tmp_path):
    closure = _closure(RUNTIME_REQUIREMENTS)
    assert not closure & {canonicalize_name(n) for n in TRAINING_STACK}, closure
    python = _runtime_venv(tmp_path / "venv")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}  # no PYTHONPATH: only the venv
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u, json; print(json.dumps("
            "[u.find_spec(m) is not None for m in ('torch', 'lightning', 'timm', 'onnxruntime', 'headstart')]))",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert json.loads(probe.stdout) == [False, False, False, True, True], probe.stderr

    run, data = exported_run
    files = _files(run, data)[:4]
    onnx_path = run / "export" / "model.onnx"
    got = subprocess.run(
        [str(python), "-m", "headstart.cli", "predict", str(onnx_path), *files, "--top-k", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert got.returncode == 0, got.stderr
    want = [f"{p.source}\t" + "  ".join(f"{c} {v:.3f}" for c, v in p.top) for p in headstart.load(run).predict(files, top_k=3)]
    assert got.stdout.splitlines() == want
    train = subprocess.run([str(python), "-m", "headstart.cli", "train", str(data)], capture_output=True, text=True, env=env, timeout=60)
    assert train.returncode == 2 and "headstart[train]" in train.stderr
