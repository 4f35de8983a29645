"""A full disk, injected in-process (no root, no tmpfs): one clear error naming the file,
the previous file kept whole, and a run that continues with --resume.

bench/faultkit/disk.py tries the same on real small file systems (tmpfs, as root); these
are the pieces it found broken: failed writes raised torch's, safetensors' and numpy's own
errors, Lightning's checkpoint writer left truncated checkpoints, the CLI printed a
traceback, and an interrupted predictions file had no way on.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from types import SimpleNamespace

import pytest
import torch

from headstart import Classifier, cli
from headstart.config import TrainConfig
from headstart.engine import checkpoint_io
from headstart.engine.callbacks import PhaseRecord
from headstart.errors import ArtifactError, DiskFullError
from headstart.files import atomic_target, atomic_write


def full_disk(monkeypatch) -> None:
    """The disk reports no free byte, as a full one does."""
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=0))


def test_a_failed_write_on_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    atomic_write(target, "{}")
    full_disk(monkeypatch)
    # torch.save's error on a full disk is a RuntimeError ("unexpected pos"), not an OSError
    with pytest.raises(DiskFullError, match=r"No space left on the disk of .* to write metrics.json.*free some space"):
        with atomic_target(target) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert target.read_text() == "{}" and os.listdir(tmp_path) == ["metrics.json"]


def test_a_library_that_removes_its_partial_file_is_still_understood(tmp_path):
    from safetensors import SafetensorError

    with pytest.raises(DiskFullError, match="to write model.safetensors"):  # the disk has room again: only the message says why
        with atomic_target(tmp_path / "model.safetensors"):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def test_other_write_failures_keep_their_own_error(tmp_path):
    with pytest.raises(RuntimeError, match="not about space"):  # the disk has room: not a full disk
        with atomic_target(tmp_path / "a.json"):
            raise RuntimeError("not about space")
    with pytest.raises(PermissionError):
        with atomic_target(tmp_path / "b.json"):
            raise PermissionError(errno.EACCES, "denied")
    assert os.listdir(tmp_path) == []


def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_one(tmp_path, monkeypatch):
    io = checkpoint_io.AtomicCheckpointIO(then="continue with: headstart train --resume RUN")
    last = tmp_path / "phase1" / "last.ckpt"
    io.save_checkpoint({"epoch": 1}, last)

    def half_save(obj, path):
        open(path, "wb").write(b"PK\x03\x04 truncated")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_io.torch, "save", half_save)
    with pytest.raises(DiskFullError, match=r"to write last.ckpt.*--resume RUN"):
        io.save_checkpoint({"epoch": 2}, last)
    assert torch.load(last, weights_only=True) == {"epoch": 1}
    assert os.listdir(last.parent) == ["last.ckpt"]


def test_a_truncated_checkpoint_is_never_resumed_from(tmp_path):
    last = tmp_path / "run" / "checkpoints" / "phase2" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"callbacks": {"PhaseRecord": {"phase": 2, "finished": True}}}, last)
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(ArtifactError, match=r"last.ckpt is damaged .* delete it .*--resume .*run'"):
        PhaseRecord.read(last)


@pytest.mark.parametrize(
    "code, said",
    [
        (errno.ENOSPC, "error: No space left on the disk of /runs/pets to write metrics.json: free some space"),
        (errno.EDQUOT, "error: No space left on the disk of /runs/pets to write metrics.json: free some space"),
        (errno.EACCES, f"error: cannot write /runs/pets/metrics.json: {os.strerror(errno.EACCES)}; choose a writable place"),
        (errno.EROFS, f"error: cannot write /runs/pets/metrics.json: {os.strerror(errno.EROFS)}; choose a writable place"),
    ],
)
def test_the_cli_prints_a_full_or_unwritable_disk_as_one_line(monkeypatch, capsys, code, said):
    def app(**_):
        raise OSError(code, os.strerror(code), "/runs/pets/metrics.json")

    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(sys, "argv", ["headstart", "train"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert said in err


def test_the_cli_leaves_other_os_errors_alone(monkeypatch):
    def app(**_):
        raise OSError(errno.EIO, "Input/output error", "/runs")

    monkeypatch.setattr(cli, "app", app)
    monkeypatch.setattr(sys, "argv", ["headstart", "train"])
    with pytest.raises(OSError, match="Input/output"):
        cli.main()


class Prediction(SimpleNamespace):
    pass


class Echo:
    """A predictor stub: every source gets class 'a'."""

    def iter_predict(self, sources, top_k):
        for s in sources:
            yield Prediction(source=s, labels=["a"], top=[("a", 1.0)], error=None)


def test_predictions_cut_short_by_a_full_disk_continue_with_resume(tmp_path, monkeypatch):
    from headstart.predict import csvfile

    images = tmp_path / "images"
    images.mkdir()
    for i in range(10):
        (images / f"{i:02d}.png").write_bytes(b"")
    out = tmp_path / "predictions.csv"
    syncs = {"n": 0}

    def fsync(fd):
        syncs["n"] += 1
        if syncs["n"] == 3:  # the third chunk finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(csvfile.os, "fsync", fsync)
    with pytest.raises(DiskFullError, match=r"to write predictions.csv.*add --resume"):
        csvfile.predict_to_file(Echo(), [str(images)], out, top_k=1, chunk=3)
    monkeypatch.setattr(csvfile.os, "fsync", lambda fd: None)
    new, old = csvfile.predict_to_file(Echo(), [str(images)], out, top_k=1, chunk=3, resume=True)
    assert (new, old) == (1, 9)
    rows = out.read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(images / f"{i:02d}.png") for i in range(10)]


@pytest.mark.slow
def test_training_on_a_full_disk_stops_with_one_error_and_resumes(tmp_path, make_images, tiny, monkeypatch):
    """The third checkpoint save of a run fails as torch.save does on a full disk."""
    data = make_images(tmp_path / "data", per_class=6)
    run = tmp_path / "run"
    real_save, real_usage, saves = torch.save, shutil.disk_usage, {"n": 0}

    def save(obj, path):
        saves["n"] += 1
        if saves["n"] == 3:
            open(path, "wb").write(b"PK\x03\x04 cut short")
            full_disk(monkeypatch)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
        real_save(obj, path)

    monkeypatch.setattr(checkpoint_io.torch, "save", save)
    train = TrainConfig(frozen_epochs=2, finetune_epochs=1, batch_size=8, patience=0, lr=1e-2, num_workers=0)
    with pytest.raises(DiskFullError, match=rf"to write \w+\.ckpt.*continue with: headstart train --resume {run}"):
        tiny(train=train).fit(data, out=run)
    assert not list(run.rglob("*.tmp")) and not (run / "headstart.json").exists()
    monkeypatch.setattr(shutil, "disk_usage", real_usage)  # space again; later saves succeed
    clf = Classifier.resume(run)
    assert (run / "headstart.json").is_file() and clf.metrics["val"].count > 0


def test_a_full_disk_in_the_run_says_to_resume_and_where(tmp_path, monkeypatch):
    """Writes after config.json (metrics, artifact, TensorBoard's unnamed ones) say --resume."""
    from headstart.pipeline.train import Training

    def fails(self, stage):
        (stage.run_dir / "config.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")  # TensorBoard's writer names no file

    monkeypatch.setattr(Training, "_train", fails)
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(DiskFullError, match=rf"No space left on the disk of {run}: .*continue with: headstart train --resume {run}\."):
        Training.__new__(Training)._run(SimpleNamespace(run_dir=run))  # type: ignore[arg-type]


def test_a_writer_thread_dying_on_a_full_disk_prints_no_traceback(monkeypatch):
    import threading

    from headstart.engine.loggers import _quiet_full_disk_in_threads

    printed: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: printed.append(args.exc_value))  # stands for Python's printer
    _quiet_full_disk_in_threads()

    def die(exc: BaseException) -> None:
        def run():
            raise exc

        t = threading.Thread(target=run)
        t.start()
        t.join()

    die(OSError(errno.ENOSPC, "No space left on device"))
    bug = ValueError("a real bug")
    die(bug)
    assert printed == [bug]
