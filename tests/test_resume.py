"""Interrupted runs continue where they stopped: every epoch of both phases exactly once."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import lightning as L
import pytest

import headstart
from headstart import Classifier
from headstart.config import TrainConfig
from headstart.data.split import read_split
from headstart.engine.fit import finished_phases
from headstart.errors import ConfigError

TRAIN = TrainConfig(frozen_epochs=2, finetune_epochs=3, batch_size=8, patience=0)
ALL_EPOCHS = [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3)]


class Crash(L.Callback):
    """Raises in one epoch (0-based) of one phase, like a run killed there.

    at="epoch_end": in on_train_epoch_end, which Lightning runs before ModelCheckpoint's
    (checkpoint callbacks go last), so that epoch's checkpoint is never written and the
    epoch is trained again on resume. at="batch": after the first batch of the epoch.
    """

    def __init__(self, phase: int, epoch: int, at: str = "epoch_end") -> None:
        self.phase, self.epoch, self.at = phase, epoch, at

    def _crash(self, trainer, module) -> None:
        if module.phase == self.phase and trainer.current_epoch == self.epoch:
            raise RuntimeError(f"simulated crash in phase {self.phase} epoch {self.epoch + 1}")

    def on_train_epoch_end(self, trainer, module):
        if self.at == "epoch_end":
            self._crash(trainer, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.at == "batch":
            self._crash(trainer, module)


class Count(L.Callback):
    """Records the (phase, 1-based epoch) of every epoch that actually trains."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def on_train_epoch_start(self, trainer, module):
        self.seen.append((module.phase, trainer.current_epoch + 1))


def epoch_rows(run) -> list[dict[str, str]]:
    if not (run / "epochs.csv").exists():
        return []
    with (run / "epochs.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.parametrize(
    "phase, epoch, at", [(2, 1, "epoch_end"), (2, 0, "epoch_end"), (1, 1, "epoch_end"), (2, 2, "batch"), (1, 0, "batch")]
)
def test_resume_completes_an_interrupted_run(tmp_path, make_images, tiny, phase, epoch, at):
    data = make_images(tmp_path / "data", per_class=6)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        tiny(train=TRAIN).fit(data, out=run, callbacks=[Crash(phase, epoch, at)])
    assert not (run / "headstart.json").exists()  # no artifact from a half-finished run
    assert (run / "config.json").is_file() and (run / "split.csv").is_file()
    done = epoch_rows(run)
    crashed_at = ALL_EPOCHS.index((phase, epoch + 1))
    # An epoch-end crash comes after the epoch's row was logged, a batch crash before.
    logged = crashed_at + 1 if at == "epoch_end" else crashed_at
    assert [(int(r["phase"]), int(r["epoch"])) for r in done] == ALL_EPOCHS[:logged]
    split_before = (run / "split.csv").read_text()
    # A SIGKILL mid-write leaves temporary files (named by the dead writer's pid): resume sweeps them.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    litter = [run / f".metrics.json.{dead.pid}.tmp", run / "checkpoints" / f"phase{phase}" / f".last.ckpt.{dead.pid}.tmp"]
    for orphan in litter:
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"half")

    counter = Count()
    clf = Classifier.resume(run, callbacks=[counter])
    assert not any(orphan.exists() for orphan in litter)
    # The interrupted epoch (never checkpointed) and the ones after it train; no earlier one.
    assert counter.seen == ALL_EPOCHS[crashed_at:]
    rows = epoch_rows(run)
    assert [(int(r["phase"]), int(r["epoch"])) for r in rows] == ALL_EPOCHS  # each exactly once, in order
    assert rows[:crashed_at] == done[:crashed_at]  # the checkpointed epochs were not redone
    assert (run / "headstart.json").is_file() and (run / "model.safetensors").is_file()
    assert (run / "split.csv").read_text() == split_before
    # Which phases finished is read from each phase's own last.ckpt (was checkpoints/progress.json).
    assert set(finished_phases(run)) == {1, 2}

    assert clf.run_dir == run and clf.classes == ["blue", "green", "red"]
    val = read_split(run / "split.csv", clf.classes)["val"]
    assert clf.metrics["val"].count == len(val)
    loaded = headstart.load(run)
    f = str(data / "red" / "red_0.png")
    assert loaded.predict(f)[0].probs == pytest.approx(clf.predict(f)[0].probs, rel=1e-5, abs=1e-6)
    assert json.loads((run / "metrics.json").read_text())["val"]["count"] == len(val)


@pytest.mark.slow
def test_resume_keeps_the_saved_options(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", per_class=6)
    run = tmp_path / "run"
    train = TrainConfig(frozen_epochs=1, finetune_epochs=2, batch_size=4, patience=0, seed=11, lr=5e-3, class_weights="balanced")
    with pytest.raises(RuntimeError):
        tiny(train=train, head="bottleneck", hidden=(8,)).fit(data, out=run, callbacks=[Crash(2, 0)])
    clf = Classifier.resume(run)
    assert clf.train_config == train
    assert clf.model.head == "bottleneck" and clf.model.hidden == (8,)
    assert clf.image_size == 32
    assert [(int(r["phase"]), int(r["epoch"])) for r in epoch_rows(run)] == [(1, 1), (2, 1), (2, 2)]


def test_resume_without_a_run_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="nothing to resume"):
        Classifier.resume(tmp_path / "nothing")


@pytest.mark.slow
def test_a_finished_run_cannot_be_trained_again_but_can_be_resumed(tmp_path, make_images, tiny):
    data = make_images(tmp_path / "data", per_class=4)
    run = tmp_path / "run"
    first = tiny(train=TrainConfig(frozen_epochs=1, finetune_epochs=1, batch_size=8, patience=0)).fit(data, out=run)
    with pytest.raises(ConfigError, match="already holds a run"):
        tiny().fit(data, out=run)
    counter = Count()
    again = Classifier.resume(run, callbacks=[counter])
    assert counter.seen == []  # both phases were finished: nothing trains again
    f = str(data / "blue" / "blue_0.png")
    assert again.predict(f)[0].probs == pytest.approx(first.predict(f)[0].probs, rel=1e-5, abs=1e-6)
    assert len(epoch_rows(run)) == 2
