"""The CLI against its sources: options from the config dataclasses, every --help renders,
nothing written inside DATA, --resume never drops a flag silently. No training here."""

from __future__ import annotations

import dataclasses
import sys

import click
import pytest
import typer

from headstart import api, cli
from headstart.cli_options import NOT_ON_CLI, build_config, field_default, option_name, spec_of
from headstart.config import AugmentConfig, ModelConfig, TrainConfig
from headstart.pipeline import train as train_pipeline

COMMAND = typer.main.get_command(cli.app)


def _walk(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += _walk(sub, (*path, name))
    return found


@pytest.mark.parametrize("path", _walk(COMMAND), ids=lambda p: " ".join(p) or "headstart")
def test_every_help_renders(path, monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, [*path, "--help"])
    assert code == 0, err
    assert "Traceback" not in err


def _params(name: str) -> dict[str, click.Parameter]:
    return {p.name: p for p in COMMAND.commands[name].params}  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", [ModelConfig, TrainConfig, AugmentConfig])
def test_every_config_field_is_a_train_option_with_the_fields_default(cls):
    params = _params("train")
    for f in dataclasses.fields(cls):
        if (cls, f.name) in NOT_ON_CLI:
            assert (cls, f.name) not in cli.train.config_fields
            continue
        assert f.name in params, f"{cls.__name__}.{f.name} has no option on 'headstart train'"
        param = params[f.name]
        assert option_name(cls, f.name) in param.opts
        assert spec_of(cls, f.name).help, f"{cls.__name__}.{f.name}: give it help text (SPECS or field metadata)"
        default = param.default.value if hasattr(param.default, "value") else param.default
        built = _plain(build_config(cls, {f.name: default}).to_dict()[f.name])
        assert built == _plain(cls().to_dict()[f.name]) == _plain(field_default(cls, f.name))


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def test_no_options_build_the_default_configs(tmp_path, make_images, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(api.Classifier, "fit", lambda self, data, out=None, exclude=None: seen.update(model=self.model, train=self.train))
    data = make_images(tmp_path / "data", classes=("red", "blue"), per_class=2)
    monkeypatch.chdir(tmp_path)
    assert run_main(monkeypatch, capsys, ["train", data])[0] == 0
    assert seen == {"model": ModelConfig(), "train": TrainConfig()}
    run_main(
        monkeypatch,
        capsys,
        [
            "train",
            data,
            "--hidden",
            "512,256",
            "--head",
            "mlp",
            "--lr",
            "auto",
            "--workers",
            "3",
            "--no-augment",
            "--class-weights",
            "balanced",
            "--oversample",
        ],
    )
    assert seen["model"].hidden == (512, 256) and seen["train"].lr == "auto" and seen["train"].num_workers == 3
    assert seen["train"].augment == AugmentConfig.none() and seen["train"].oversample


def test_lr_find_options_share_the_config_defaults():
    params = _params("lr-find")
    for name in ("arch", "batch_size", "val_fraction", "seed", "optimizer"):
        cls = ModelConfig if name == "arch" else TrainConfig
        assert params[name].default == field_default(cls, name)
    assert "kept out of the sweep" in (params["val_fraction"].help or "")


def run_main(monkeypatch, capsys, args) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["headstart", *map(str, args)])
    try:
        cli.main()
        code = 0  # --help: click returns instead of exiting
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def one_error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--lr", "1e-4"], "--lr"),
        (["DATA2"], "DATA"),
        (["--batch-size", "32"], "--batch-size"),  # typed, even when equal to the default
        (["--no-augment"], "--augment"),
    ],
)
def test_resume_refuses_data_and_training_options(tmp_path, monkeypatch, capsys, extra, named):
    monkeypatch.setattr(api.Classifier, "resume", lambda *a, **k: pytest.fail("resumed"))
    code, err = run_main(monkeypatch, capsys, ["train", "--resume", tmp_path / "run", *extra])
    line = one_error_line(err)
    assert code == 2 and named in line and "--devices" in line and "--report" in line


def test_resume_applies_and_prints_the_allowed_options(tmp_path, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(api.Classifier, "resume", classmethod(lambda cls, run, **k: seen.update(k)))
    code, err = run_main(
        monkeypatch, capsys, ["train", "--resume", tmp_path / "run", "--devices", "2", "--dist-timeout", "60", "--no-report"]
    )
    assert code == 0 and seen["placement"] == {"devices": "2", "dist_timeout": 60.0} and seen["report"] is False
    assert "--devices 2" in err and "--dist-timeout 60.0" in err and "--no-report" in err
    seen.clear()
    run_main(monkeypatch, capsys, ["train", "--resume", tmp_path / "run"])
    assert seen["placement"] == {} and seen["report"] is True


def test_no_augment_with_augmentation_options_is_refused(tmp_path, monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, ["train", tmp_path, "--no-augment", "--rotation", "20"])
    assert code == 2 and "--no-augment" in one_error_line(err)


@pytest.mark.parametrize("command", [["train", "DATA"], ["lr-find", "DATA"], ["evaluate", "RUN", "--data", "DATA"], ["doctor", "DATA"]])
def test_out_inside_data_is_refused_before_any_work(tmp_path, make_images, monkeypatch, capsys, command):
    data = make_images(tmp_path / "data", classes=("red", "blue"), per_class=2)
    monkeypatch.setattr(api.Classifier, "load", lambda *a, **k: pytest.fail("loaded a run"))
    monkeypatch.setattr(train_pipeline, "scan", lambda *a, **k: pytest.fail("read the data"))
    args = [{"DATA": data, "RUN": tmp_path / "run"}.get(a, a) for a in command]
    code, err = run_main(monkeypatch, capsys, [*args, "--out", data / "red" / "out"])
    line = one_error_line(err)
    assert code == 2 and "inside the data folder" in line and "e.g. --out" in line
    assert not (data / "red" / "out").exists()


@pytest.mark.parametrize("command", [["train", "."], ["lr-find", "."]])
def test_the_default_output_never_lands_inside_data(tmp_path, make_images, monkeypatch, capsys, command):
    data = make_images(tmp_path / "data", classes=("red", "blue"), per_class=2)
    monkeypatch.chdir(data)
    monkeypatch.setattr(train_pipeline, "scan", lambda *a, **k: pytest.fail("read the data"))
    code, err = run_main(monkeypatch, capsys, command)
    line = one_error_line(err)
    assert code == 2 and "inside the data folder" in line and str(tmp_path / "runs") in line
    assert not (data / "runs").exists()


def test_demo_never_writes_into_its_bundled_data(monkeypatch, capsys):
    from importlib import resources

    inside = resources.files("headstart") / "demo_data" / "openclipart" / "run"
    monkeypatch.setattr(api.Classifier, "fit", lambda *a, **k: pytest.fail("trained"))
    code, err = run_main(monkeypatch, capsys, ["demo", "--out", str(inside)])
    assert code == 2 and "inside the data folder" in one_error_line(err)


@pytest.mark.parametrize(
    "args, named",
    [
        (["train", "x", "--lr", "fast"], "--lr"),
        (["train", "x", "--hidden", "5,x"], "--hidden"),
        (["train", "x", "--batch-size", "many"], "--batch-size"),
        (["serve", "x", "--port", "-1"], "--port"),
        (["evaluate"], "run"),
        (["no-such-command"], "no-such-command"),
    ],
)
def test_usage_errors_are_one_line_naming_the_help(monkeypatch, capsys, args, named):
    code, err = run_main(monkeypatch, capsys, args)
    line = one_error_line(err)
    assert code == 2 and named in line and "--help" in line
