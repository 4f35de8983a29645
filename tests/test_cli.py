"""The command line: train, predict, evaluate, cache in-process; errors as one line."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import lightning as L
import pytest
from typer.testing import CliRunner

from headstart import cli
from headstart.cli import app
from headstart.config import TrainConfig

runner = CliRunner()
FAST = [
    "--arch",
    "convnet_tiny",
    "--no-pretrained",
    "--image-size",
    "32",
    "--frozen-epochs",
    "1",
    "--finetune-epochs",
    "1",
    "--batch-size",
    "8",
    "--patience",
    "0",
]


def invoke(args: list[str]):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.mark.slow
def test_train_predict_evaluate(tmp_path, make_images):
    data = make_images(tmp_path / "data", per_class=6)
    run = tmp_path / "run"
    invoke(
        [
            "train",
            data,
            "--out",
            run,
            *FAST,
            "--head",
            "mlp",
            "--hidden",
            "16,8",
            "--dropout",
            "0.1",
            "--class-weights",
            "balanced",
            "--oversample",
            "--no-augment",
            "--seed",
            "3",
        ]
    )
    for name in ("model.safetensors", "headstart.json", "metrics.json", "epochs.csv", "split.csv", "config.json"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == {
        **config["model"],
        "arch": "convnet_tiny",
        "pretrained": False,
        "head": "mlp",
        "hidden": [16, 8],
        "dropout": 0.1,
    }
    assert config["train"]["class_weights"] == "balanced" and config["train"]["oversample"] is True
    assert config["train"]["seed"] == 3 and config["train"]["augment"]["hflip"] is False
    assert config["image_size"] == 32
    assert len(list(csv.DictReader((run / "epochs.csv").open()))) == 2

    preds = tmp_path / "preds.csv"
    invoke(["predict", run, data / "red", data / "blue" / "blue_0.png", "--top-k", "2", "--out", preds])
    table = list(csv.DictReader(preds.open()))
    assert list(table[0]) == ["path", "prediction", "class_1", "prob_1", "class_2", "prob_2", "error"]
    assert len(table) == 7
    assert table[-1]["path"].endswith("blue_0.png")
    assert all(r["prediction"] in ("blue", "green", "red") and not r["error"] for r in table)

    shown = invoke(["predict", run, data / "green" / "green_0.png", "-k", "3"])
    line = [l for l in shown.stdout.splitlines() if "green_0.png" in l]
    assert len(line) == 1 and all(c in line[0] for c in ("blue", "green", "red"))

    invoke(["evaluate", run, "--data", data])
    metrics = json.loads((run / "eval-data" / "metrics.json").read_text())
    assert metrics["data"]["count"] == 18
    invoke(["evaluate", run, "--out", tmp_path / "own"])
    own = json.loads((tmp_path / "own" / "metrics.json").read_text())
    assert own["val"]["count"] == json.loads((run / "metrics.json").read_text())["val"]["count"]


def test_predict_prints_unreadable_files(tmp_path, exported_run):
    run, data = exported_run  # the shared trained run: predicting needs no training of its own
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    result = invoke(["predict", run, bad, data / "red" / "red_0.png"])
    lines = dict(l.split("\t", 1) for l in result.stdout.splitlines())
    assert lines[str(bad)].startswith("unreadable:")
    shown = lines[str(data / "red" / "red_0.png")]
    assert "unreadable" not in shown and "red" in shown and "blue" in shown


class CrashInFineTuning(L.Callback):
    """Kills a run at the end of its first fine-tuning epoch, before that epoch's checkpoint."""

    def on_train_epoch_end(self, trainer, module):
        if module.phase == 2:
            raise RuntimeError("simulated crash")


@pytest.mark.slow
def test_resume_from_the_cli(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", per_class=4)
    run = tmp_path / "run"
    train = TrainConfig(frozen_epochs=1, finetune_epochs=1, batch_size=8, patience=0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        tiny(train=train).fit(data, out=run, callbacks=[CrashInFineTuning()])
    assert not (run / "headstart.json").exists()
    invoke(["train", "--resume", run])  # finishes the interrupted fine-tuning epoch
    assert (run / "headstart.json").is_file() and (run / "model.safetensors").is_file()
    epochs = [(r["phase"], r["epoch"]) for r in csv.DictReader((run / "epochs.csv").open())]
    assert epochs == [("1", "1"), ("2", "1")]
    invoke(["train", "--resume", run])  # a finished run: nothing to redo, and no error
    assert [(r["phase"], r["epoch"]) for r in csv.DictReader((run / "epochs.csv").open())] == epochs
    assert (run / "headstart.json").is_file()


def test_cache_info_and_clear(tmp_path, make_images):
    from headstart.data.store import decode_all
    from headstart.preprocess import Preprocess

    data = make_images(tmp_path / "data", per_class=3)
    pre = Preprocess(input_size=32, resize_size=36, mean=(0.5,) * 3, std=(0.5,) * 3)
    decode_all(sorted(str(p) for p in data.rglob("*.png")), pre, show=False)  # one store entry, as training makes
    cache = os.environ["HEADSTART_CACHE_DIR"]  # the autouse fixture's private folder
    info = invoke(["cache", "info"])
    assert cache in info.stdout.replace("\n", "") and "1 decoded images entries" in info.stdout
    invoke(["cache", "clear"])
    assert not os.path.exists(os.path.join(cache, "images")) and not os.path.exists(os.path.join(cache, "features"))
    assert "0 decoded images entries" in invoke(["cache", "info"]).stdout


def run_main(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    """cli.main() in-process, as the console script runs it."""
    monkeypatch.setattr(sys, "argv", ["headstart", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "/nonexistent/folder"], "does not exist"),
        (["train", "DATA", "--lr", "-1"], "lr=-1.0 must be > 0"),
        (["train", "DATA", "--arch", "resnet5O", "--no-pretrained"], "resnet50"),
        (["train", "DATA", "--val-fraction", "1.5"], "val_fraction"),
        (["train", "DATA", "--class-weights", "balance"], "balanced"),
        (["predict", "/nonexistent/run", "x.png"], "not a finished headstart run"),
        (["evaluate", "/nonexistent/run"], "not a finished headstart run"),
        (["train", "--resume", "/nonexistent/run"], "nothing to resume"),
    ],
)
def test_user_errors_are_one_line(tmp_path, make_images, monkeypatch, capsys, args, message):
    data = make_images(tmp_path / "data", classes=("red", "blue"), per_class=2)
    code, err = run_main(monkeypatch, capsys, [data if a == "DATA" else a for a in args])
    assert code != 0
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and message in lines[0], err
    assert "Traceback" not in err


def test_usage_errors_exit_non_zero_without_traceback(monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, ["train", "x", "--no-such-option"])
    assert code == 2 and "no-such-option" in err and "Traceback" not in err
    code, err = run_main(monkeypatch, capsys, ["train", "x", "--head", "lineer"])
    assert code == 2 and "lineer" in err and "Traceback" not in err


def test_missing_data_argument(monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, ["train"])
    assert code != 0 and "DATA" in err and "Traceback" not in err


@pytest.mark.slow
def test_error_from_a_real_process(tmp_path):
    env = {**os.environ, "HEADSTART_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "300"}
    proc = subprocess.run(
        [sys.executable, "-m", "headstart.cli", "train", "/nonexistent"], capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path
    )
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and "/nonexistent" in lines[0] and "does not exist" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_sigterm_unwinds_and_leaves_no_temporary_file(tmp_path):
    """kill / docker stop / a scheduler send SIGTERM: the write in progress is abandoned
    cleanly (its temporary file removed), not cut off mid-file, and the exit is 143."""
    target = tmp_path / "artifact.bin"
    script = f"""
import sys, time
from headstart import cli
from headstart.files import atomic_target

def slow_write(**_):
    with atomic_target({str(target)!r}) as tmp:
        tmp.write_bytes(b"half")
        time.sleep(60)

cli.app = slow_write
sys.argv = ["headstart", "cache", "info"]
cli.main()
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".*.tmp")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    proc.terminate()
    assert proc.wait(30) == 128 + signal.SIGTERM
    assert not list(tmp_path.iterdir()), "a temporary or half-written file was left behind"


def test_cache_clear_while_other_runs_write_and_clear(tmp_path, monkeypatch):
    """Other runs renaming entries in, or clearing too, while clear lists and removes: a file
    that vanished between listing and unlink is no crash, and an entry renamed in during the
    removal is removed on another pass rather than left behind a 'Removed' line."""
    from headstart import cache

    folder = tmp_path / "images"
    folder.mkdir()
    first, second = "a" * 32 + ".npy", "b" * 32 + ".npy"
    (folder / first).write_bytes(b"x" * 1000)
    unlink, rmdir, renamed_in = os.unlink, os.rmdir, []

    def another_clear_first(path, *args, **kwargs):
        unlink(path, *args, **kwargs)
        if not renamed_in:  # the same file again, as another `cache clear` would
            unlink(path) if os.path.exists(path) else None
            raise FileNotFoundError(2, "No such file or directory")

    def writer_meanwhile(path, *args, **kwargs):
        if not renamed_in:  # a run finishing its entry while the folder was being removed
            (folder / second).write_bytes(b"y")
            renamed_in.append(path)
        rmdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", another_clear_first)
    monkeypatch.setattr(os, "rmdir", writer_meanwhile)
    assert cache.clear_cache(tmp_path).removed_bytes["images"] == 1000 + 1
    assert renamed_in and not folder.exists()
