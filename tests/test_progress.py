"""One progress display: a bar on a terminal that leaves nothing behind, plain lines in a log."""

from __future__ import annotations

import io

import numpy as np
from rich.console import Console

from headstart.progress import iterate, track


def _log() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def test_a_log_gets_plain_lines_while_long_work_runs():
    console, buffer = _log()
    with track(5, "Decoding 5 images", console=console, every=0) as advance:
        for _ in range(5):
            advance()
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("Decoding 5 images: 1/5 (20%) in 0s, about")
    assert lines[-1].startswith("Decoding 5 images: 5/5 done in")
    assert all("\x1b" not in line for line in lines)  # no terminal codes in a log


def test_short_work_leaves_a_log_as_it_was():
    console, buffer = _log()
    with track(1000, "Decoding", console=console) as advance:
        advance(1000)
    assert list(iterate(range(3), 3, "Predicting", console=console)) == [0, 1, 2]
    assert buffer.getvalue() == ""


def test_nothing_when_asked_for_nothing():
    console, buffer = _log()
    with track(3, "x", console=console, show=False, every=0) as advance:
        advance(3)
    with track(3, "x", console=Console(file=buffer, quiet=True), every=0) as advance:
        advance(3)
    assert buffer.getvalue() == ""


def test_a_terminal_bar_is_gone_when_the_work_ends():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with track(3, "Decoding 3 images", console=console) as advance:
        advance(3)
        console.print("a line printed meanwhile")
    screen = buffer.getvalue()
    assert "a line printed meanwhile" in screen and "\x1b[2K" in screen  # the bar's line was erased


def test_decoding_reports_to_a_log(tmp_path, make_images, monkeypatch, capsys):
    from headstart.data import store
    from headstart.preprocess import Preprocess

    data = make_images(tmp_path / "data", classes=("red", "blue"), per_class=3)
    paths = sorted(str(p) for p in data.rglob("*.png"))
    pre = Preprocess(input_size=32, resize_size=36, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bilinear")
    monkeypatch.setattr(store, "track", lambda total, what, **k: track(total, what, **k, every=0))  # a line per image
    images = store.decode_all(paths, pre, cache=False)
    assert np.asarray(images.array).shape[0] == 6
    assert "Decoding 6 images: 6/6 done" in capsys.readouterr().err


def _fit_tiny(console: Console, epochs: int = 2) -> None:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from headstart.engine.progress import EpochProgress

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            return self.layer(batch[0]).pow(2).mean()

        def validation_step(self, batch, _):
            self.log("val_loss", self.layer(batch[0]).pow(2).mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[EpochProgress(1, console, every=0)],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    trainer.fit(Tiny(), data, data)


def test_epochs_in_a_log_are_plain_lines_and_lightnings_bar_is_gone(capsys):
    console, buffer = _log()
    _fit_tiny(console)
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("phase 1 epoch 1/2 batches: 1/4")  # validation batches join the total when it starts
    assert any(l.startswith("phase 1 epoch 1/2 batches: 8/8 (100%)") for l in lines)
    assert any(l.startswith("phase 1 epoch 2/2 batches: 8/8 (100%)") for l in lines)
    assert not any("done" in l for l in lines)  # the epoch's own line (EpochLog) closes it
    assert "Epoch 0" not in capsys.readouterr().err + buffer.getvalue()  # no Lightning bar


def test_epoch_bar_on_a_terminal_is_erased_when_training_ends(capsys):
    buffer = io.StringIO()
    _fit_tiny(Console(file=buffer, force_terminal=True, width=100))
    screen = buffer.getvalue()
    assert "phase 1 epoch 2/2" in screen and screen.rstrip().endswith("\x1b[2K")  # the last thing drawn erases the bar
    assert "Epoch 1" not in capsys.readouterr().err
