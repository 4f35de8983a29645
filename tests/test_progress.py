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
