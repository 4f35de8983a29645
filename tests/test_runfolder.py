"""The run folder's typed, versioned descriptions (headstart.runfolder).

A run folder written by headstart 0.1.0 (tests/fixtures/run-0.1.0, see its README) keeps
loading, predicting, evaluating, exporting and resuming; a newer format version is one line
naming the release that wrote it; unknown fields are kept verbatim and round-tripped.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

import headstart
from headstart import Classifier
from headstart.engine.fit import best_phase
from headstart.errors import ArtifactError
from headstart.runfolder import (
    DESCRIPTION,
    OPTIONS,
    ArtifactMeta,
    RunOptions,
    read_meta,
    read_options,
    trained_on,
    write_meta,
    write_options,
)

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1.0"
WRITTEN_AT = "/tmp/headstart-run-0.1.0/data"  # where 0.1.0's data was when the fixture was trained


@pytest.fixture
def old_run(tmp_path, make_images) -> tuple[Path, Path]:
    """A copy of the 0.1.0 run folder and its data, regenerated (same seeds), the data's
    absolute paths in config.json and split.csv moved to where the data now is."""
    data = make_images(tmp_path / "data", per_class=12)
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    for name in (OPTIONS, "split.csv"):
        path = run / name
        path.write_text(path.read_text(encoding="utf-8").replace(WRITTEN_AT, str(data)), encoding="utf-8")
    return run, data


def _edit(path: Path, **fields) -> None:
    value = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**value, **fields}), encoding="utf-8")


# -- the 0.1.0 fixture -------------------------------------------------------------------------
def test_the_fixture_is_what_0_1_0_wrote():
    saved = json.loads((FIXTURE / OPTIONS).read_text())
    assert "format_version" not in saved  # 0.1.0 wrote no version into config.json
    options = read_options(FIXTURE)
    assert options.format_version == 1 and options.written_by is None
    assert options.model.arch == "convnet_tiny" and options.image_size == 32 and options.classes == ("blue", "green", "red")
    assert options.source.data == WRITTEN_AT and options.source.layout == "folders"
    meta = read_meta(FIXTURE)
    assert meta.written_by == "0.1.0" and meta.format_version == 1
    assert meta.train is not None and meta.train.finetune_epochs == 1
    assert meta.result is not None and meta.result.best_phase == 2 and meta.result.monitor == "val_loss"
    assert set(meta.metrics) == {"val"} and 0 <= meta.metrics["val"].accuracy <= 1
    assert meta.data is not None and meta.data.counts == {"train": 30, "val": 6}


def test_a_0_1_0_run_loads_predicts_and_evaluates(old_run, tmp_path):
    run, data = old_run
    clf = headstart.load(run)
    assert clf.classes == ["blue", "green", "red"] and clf.model.arch == "convnet_tiny" and clf.image_size == 32
    assert clf.train_config.finetune_epochs == 1  # the training options it was trained with
    top = clf.predict(str(data / "red" / "red_0.png"))[0].top[0][0]
    assert top in clf.classes
    metrics = clf.evaluate(data, out=tmp_path / "eval")
    assert metrics["data"].count == 36
    assert trained_on(run) == data


@pytest.mark.slow
def test_a_0_1_0_run_exports(old_run, tmp_path):
    run, _ = old_run
    result = headstart.load(run).export("onnx", out=tmp_path / "model.onnx")
    assert result.path.is_file()


@pytest.mark.slow
def test_a_0_1_0_run_resumes(old_run):
    """Its checkpoints were left out of the fixture: --resume reads config.json and
    split.csv and trains the saved options again, then writes today's files."""
    run, _ = old_run
    clf = Classifier.resume(run, report=False, placement={"accelerator": "cpu"})
    assert clf.model.arch == "convnet_tiny" and clf.image_size == 32 and clf.classes == ["blue", "green", "red"]
    assert clf.metrics["val"].count == 6
    meta = json.loads((run / DESCRIPTION).read_text())
    assert meta["written_by"] == headstart.__version__ and meta["format_version"] == 1
    assert read_options(run).written_by is None  # config.json is the run's own, untouched


# -- versions ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [OPTIONS, DESCRIPTION])
def test_a_newer_format_names_the_release_that_wrote_it(tmp_path, name):
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    _edit(run / name, format_version=2, written_by="9.9.0")
    read = read_options if name == OPTIONS else read_meta
    with pytest.raises(ArtifactError, match=r"format_version 2, written by headstart 9\.9\.0; .*upgrade headstart") as err:
        read(run)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("version", [0, "1", True, None])
def test_a_nonsense_format_version_is_refused(tmp_path, version):
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    _edit(run / DESCRIPTION, format_version=version)
    with pytest.raises(ArtifactError, match="format_version"):
        read_meta(run)


def test_today_writes_a_version_and_the_release(tmp_path):
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    write_options(run, read_options(run))
    write_meta(run, read_meta(run))
    for name in (OPTIONS, DESCRIPTION):
        saved = json.loads((run / name).read_text())
        assert saved["format_version"] == 1 and saved["written_by"] == headstart.__version__


# -- unknown fields: kept verbatim and round-tripped -------------------------------------------
def test_unknown_fields_are_kept_and_written_back(tmp_path):
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    card = {"license": "mit", "tags": ["a", "b"]}
    meta = json.loads((run / DESCRIPTION).read_text())
    meta["model_card"] = card  # top level
    meta["data"]["fingerprint"] = "abc"  # inside an informational section
    meta["train"]["new_option"] = 3  # an option this release does not know
    meta["result"]["evidence"] = [1, 2]
    (run / DESCRIPTION).write_text(json.dumps(meta))
    _edit(run / OPTIONS, int8={"calibrated": True})
    loaded = read_meta(run)
    assert loaded.extra == {"model_card": card} and loaded.data is not None and loaded.data.extra == {"fingerprint": "abc"}
    assert headstart.load(run).classes == ["blue", "green", "red"]  # still loads
    write_meta(run, loaded)
    write_options(run, read_options(run))
    again = json.loads((run / DESCRIPTION).read_text())
    assert again["model_card"] == card and again["data"]["fingerprint"] == "abc"
    assert again["train"]["new_option"] == 3 and again["result"]["evidence"] == [1, 2]
    assert json.loads((run / OPTIONS).read_text())["int8"] == {"calibrated": True}


def test_a_training_option_value_this_release_refuses_does_not_stop_loading(tmp_path):
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    meta = json.loads((run / DESCRIPTION).read_text())
    meta["train"]["schedule"] = "warp-drive"  # a schedule a later release may add
    (run / DESCRIPTION).write_text(json.dumps(meta))
    loaded = read_meta(run)
    assert loaded.train is None and loaded.train_extra["schedule"] == "warp-drive"
    assert headstart.load(run).classes == ["blue", "green", "red"]
    write_meta(run, loaded)
    assert json.loads((run / DESCRIPTION).read_text())["train"] == meta["train"]


def test_an_unknown_model_field_is_refused(tmp_path):
    """The model section rebuilds the network: a field there this release does not know
    would build a different model, so it is an error (a writer adding one raises the version)."""
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    meta = json.loads((run / DESCRIPTION).read_text())
    meta["model"]["stem"] = "wide"
    (run / DESCRIPTION).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="unknown model field 'stem'"):
        read_meta(run)


@pytest.mark.parametrize(
    "section, value, message",
    [("data", [], "'data' must be an object"), ("metrics", {"val": {"accuracy": "1"}}, "metrics"), ("seconds", "3", "seconds")],
)
def test_informational_sections_are_type_checked(tmp_path, section, value, message):
    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    _edit(run / DESCRIPTION, **{section: value})
    with pytest.raises(ArtifactError, match=message):
        read_meta(run)


def test_the_dataclasses_round_trip_through_json():
    options = read_options(FIXTURE)
    assert RunOptions.parse(json.loads(json.dumps(options.to_dict())), "x") == options.__class__(
        **{**options.__dict__, "written_by": headstart.__version__}
    )
    meta = read_meta(FIXTURE)
    again = ArtifactMeta.parse(json.loads(json.dumps(meta.to_dict())), "x")
    assert again.model == meta.model and again.metrics == meta.metrics and again.train == meta.train and again.data == meta.data


# -- 18.5: a phase with no score never wins ---------------------------------------------------
def test_a_phase_that_never_scored_never_wins():
    """Today's pick mapped NaN to -inf, which wins under a min metric such as val_loss."""
    nan = math.nan
    assert best_phase({1: nan, 2: 0.9}, "min") == 2
    assert best_phase({1: 0.9, 2: nan}, "min") == 1
    assert best_phase({1: None, 2: 0.4}, "max") == 2
    assert best_phase({1: 0.3, 2: 0.2}, "min") == 2 and best_phase({1: 0.3, 2: 0.2}, "max") == 1
    assert best_phase({1: nan, 2: nan}, "min") == 2  # none scored: the last phase trained


def test_two_phase_fit_keeps_the_phase_that_scored(tmp_path):
    """Both phases finished (as a resumed run finds them): phase 1 never scored (NaN), phase 2
    did. Under val_loss (a min metric) the artifact must hold phase 2's weights."""
    import torch
    from rich.console import Console
    from safetensors.torch import save_file

    from headstart.config import ModelConfig, TrainConfig
    from headstart.engine.fit import FitContext, FitTask, two_phase_fit
    from headstart.models import build_network

    network = build_network(ModelConfig(arch="convnet_tiny", pretrained=False), 3)
    states = {}
    for phase, score in ((1, math.nan), (2, 0.9)):
        folder = tmp_path / "run" / "checkpoints" / f"phase{phase}"
        folder.mkdir(parents=True)
        state = {k: torch.full_like(v, float(phase)) if v.is_floating_point() else v for k, v in network.state_dict().items()}
        save_file(state, str(folder / "best.safetensors"))
        record = {"phase": phase, "finished": True, "best_score": score, "weights": "best.safetensors"}
        torch.save({"callbacks": {"PhaseRecord": record}}, folder / "last.ckpt")
        states[phase] = state
    config = TrainConfig(frozen_epochs=1, finetune_epochs=1, monitor="val_loss", accelerator="cpu")
    context = FitContext(tmp_path / "run", resume=True, console=Console(quiet=True))
    result = two_phase_fit(network, FitTask("multiclass", 3, 0.5, True), config, lambda phase: pytest.fail("trained"), context)
    assert result.best_phase == 2 and result.best_score == pytest.approx(0.9)
    assert all(torch.equal(v, states[2][k]) for k, v in network.state_dict().items())


@pytest.mark.slow
def test_reading_a_run_folder_needs_no_torch():
    """The predict-only install reads these descriptions too."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from headstart.runfolder import read_meta, read_options; "
        f"read_meta(Path({str(FIXTURE)!r})); read_options(Path({str(FIXTURE)!r})); "
        "assert 'torch' not in sys.modules and 'lightning' not in sys.modules, 'imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command", [["train", "--resume"], ["predict"], ["evaluate"]])
def test_the_cli_says_a_newer_run_in_one_line(tmp_path, monkeypatch, capsys, command):
    import sys

    from headstart import cli

    run = Path(shutil.copytree(FIXTURE, tmp_path / "run"))
    name = OPTIONS if command[0] == "train" else DESCRIPTION
    _edit(run / name, format_version=7, written_by="3.0.0")
    extra = [str(tmp_path / "x.png")] if command == ["predict"] else []
    monkeypatch.setattr(sys, "argv", ["headstart", *command, str(run), *extra])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "written by headstart 3.0.0" in " ".join(err.split()) and "Traceback" not in err
