"""Issue 20, inputs and decoders: only regular files are read (folder walk, CSV rows, doctor,
predict), symlinks out of DATA are named, deep trees walk, a SIGTERM ends a blocked read,
and Pillow never runs a decoder the extension does not allow (EPS runs Ghostscript)."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import colour_image
from PIL import EpsImagePlugin, Image

from headstart.data.index import NOT_REGULAR, OUTSIDE, image_sizes, scan
from headstart.doctor.inspect import inspect_file
from headstart.doctor.run import diagnose
from headstart.files import NotRegularFile, file_digest, open_regular
from headstart.predict.inputs import iter_sources
from headstart.preprocess import Preprocess, open_image
from headstart.report.datainfo import image_stats
from headstart.thumbnails import thumbnail_uri

PRE = Preprocess(input_size=24, resize_size=28, mean=(0.5,) * 3, std=(0.5,) * 3)
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "data"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            colour_image("red" if name == "cat" else "blue", i).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def hostile(data, tmp_path) -> Path:
    """A FIFO named x.png, a link to /dev/zero named zero.png, a link to a file outside DATA."""
    os.mkfifo(data / "cat" / "x.png")
    (data / "cat" / "zero.png").symlink_to("/dev/zero")
    secret = tmp_path / "secret.png"
    colour_image("black", 9).save(secret)
    (data / "dog" / "elsewhere.png").symlink_to(secret)
    (data / "dog" / "inside.png").symlink_to(data / "cat" / "0.png")  # inside DATA: read
    return data


def test_the_walk_reads_only_regular_files_and_names_links_out_of_data(hostile):
    index = scan(hostile)
    names = sorted(Path(s.path).name for s in index.all_samples)
    assert names == ["0.png", "0.png", "1.png", "1.png", "inside.png"]
    reasons = {Path(s.path).name: s.reason for s in index.skipped}
    assert reasons == {"x.png": NOT_REGULAR, "zero.png": NOT_REGULAR, "elsewhere.png": OUTSIDE}
    assert any("1 symlinks leading outside" in n and "elsewhere.png" in n for n in index.notes)


def test_a_csv_row_naming_a_fifo_is_skipped_unread(hostile, tmp_path):
    listing = tmp_path / "list.csv"
    rows = [f"{hostile}/cat/x.png,cat", f"{hostile}/cat/0.png,cat", f"{hostile}/dog/0.png,dog"]
    listing.write_text("path,label\n" + "\n".join(rows) + "\n")
    index = scan(listing)
    assert [s.reason for s in index.skipped] == [NOT_REGULAR] and len(index.all_samples) == 2


def _remove_deep(top: Path) -> None:
    """Remove a folder chain bottom-up without recursion (shutil.rmtree, and so pytest's own
    clean-up, recurse and would fail on it)."""
    chain = [top]
    while (chain[-1] / "d").is_dir():
        chain.append(chain[-1] / "d")
    for folder in reversed(chain):
        for leftover in folder.iterdir():
            if not leftover.is_dir():
                leftover.unlink()
        folder.rmdir()


def test_a_folder_tree_1100_levels_deep_is_walked(data):
    """Found by the review: os.walk recursed, and raised RecursionError."""
    folder = data / "dog" / "d"
    folder.mkdir()
    try:
        for _ in range(1099):
            folder = folder / "d"
            folder.mkdir()
        colour_image("blue", 7).save(folder / "deep.png")
        assert any(s.path.endswith("deep.png") for s in scan(data).all_samples)
    finally:
        _remove_deep(data / "dog" / "d")


def test_special_files_are_refused_before_a_byte_is_read(hostile):
    for name in ("x.png", "zero.png"):
        with pytest.raises(NotRegularFile, match="not a regular file"):
            open_regular(hostile / "cat" / name)
        with pytest.raises(NotRegularFile):
            PRE.stored(str(hostile / "cat" / name))  # what predict and the store call
        assert "not a regular file" in inspect_file(str(hostile / "cat" / name), 10**8).error
    assert str(hostile / "cat" / "x.png") in list(iter_sources([hostile / "cat"]))  # listed, so its row says why


def test_files_over_the_size_cap_are_refused_from_their_size(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 100)
    with pytest.raises(NotRegularFile, match="over the 99-byte limit"):
        open_regular(big, max_bytes=99)


def test_hashing_reads_in_chunks(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3 << 20))
    assert file_digest(path, chunk=1 << 20) == hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def test_the_doctor_finishes_on_a_fifo_and_a_link_to_dev_zero(hostile, tmp_path):
    """Found by the review: a FIFO named x.png hung the doctor forever, /dev/zero ate 23 GB."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(diagnose(hostile, near_threshold=-1)), daemon=True)
    worker.start()
    worker.join(120)
    if worker.is_alive():  # today's code: blocked reading the FIFO; release it, then fail
        fd = os.open(hostile / "cat" / "x.png", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("doctor blocked on a FIFO")
    checks = {f.check: f for f in result[0].findings}
    assert len(checks["special"].items) == 2 and len(checks["outside"].items) == 1


@pytest.mark.slow
def test_sigterm_ends_a_process_blocked_in_a_read_within_seconds(tmp_path):
    """A thread blocked reading (a FIFO here; a hung network disk in life) held the unwinding
    of SIGTERM forever: `predict` under `timeout` ran 563 s. Now it ends within the grace."""
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    script = (
        "import signal, sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from headstart import process\n"
        "signal.signal(signal.SIGTERM, process._terminated)\n"
        "with ThreadPoolExecutor(1) as pool:\n"
        f"    pool.submit(lambda: open({str(fifo)!r}, 'rb').read())\n"
        "    print('blocked', flush=True)\n"
        "    pool.submit(lambda: None).result()\n"
        "    signal.pause()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "blocked"
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert time.monotonic() - start < 20
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def eps_spy(monkeypatch) -> list[str]:
    """Records every time Pillow's EPS plugin (which runs Ghostscript) opens something."""
    opened: list[str] = []

    def spy(self):
        opened.append("EPS")
        raise SyntaxError("EPS opened: this test forbids it")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", spy)
    return opened


def test_an_eps_file_named_jpg_never_reaches_the_eps_plugin(tmp_path, eps_spy):
    """Found by the review: Pillow chose decoders by content, so Ghostscript ran on a .jpg."""
    path = tmp_path / "photo.jpg"
    path.write_bytes(EPS)
    with pytest.raises(Image.UnidentifiedImageError):
        PRE.stored(str(path))  # train (the store), predict, the report's gallery
    assert "not an image" in inspect_file(str(path), 10**8).error  # doctor
    assert image_sizes([str(path)]).short == ()  # the planner's header sample
    assert image_stats([str(path)]).unreadable == 1  # the report's data section
    assert thumbnail_uri(str(path)) == ""  # the doctor's page
    with pytest.raises(Image.UnidentifiedImageError):
        open_image(EPS)  # bytes without a name (future shards): the same pinned list
    with pytest.raises(Image.UnidentifiedImageError):
        open_image(io.BytesIO(EPS))
    assert eps_spy == []


def test_a_png_saved_as_jpg_still_decodes(tmp_path):
    path = tmp_path / "really_a.png.jpg"
    colour_image("green", 1).save(path, format="PNG")
    assert PRE.stored(str(path)).shape == (28, 28, 3)


def test_a_nul_in_an_onnx_external_data_location_is_one_line(tmp_path, monkeypatch, capsys):
    """Found by the review: a ValueError traceback ('embedded null byte')."""
    from test_hostile_artifacts import _onnx_with_external

    from headstart import cli

    path = _onnx_with_external(tmp_path, "w\0.bin")
    monkeypatch.setattr(sys, "argv", ["headstart", "predict", str(path), str(path)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and "no file name" in err and len(err.strip().splitlines()) == 1


def test_the_onnx_model_is_loaded_from_the_bytes_it_was_checked_from(tmp_path, monkeypatch):
    """Found by the review: checked from bytes, then re-opened by path (a swap in between ran unchecked)."""
    import onnxruntime
    from test_hostile_artifacts import _onnx_with_external

    from headstart.errors import ArtifactError
    from headstart.predict.runtime import RuntimePredictor

    (tmp_path / "w.bin").write_bytes(b"\0" * 16)
    path = _onnx_with_external(tmp_path, "w.bin")
    seen, real = [], onnxruntime.InferenceSession

    def spy(model, *args, **kwargs):
        seen.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    with pytest.raises(ArtifactError, match="no headstart description"):
        RuntimePredictor.load(path)  # loads (external data found beside it), but it is not a headstart export
    assert seen == [path.read_bytes()]


def test_data_that_is_a_fifo_is_one_line(tmp_path):
    from headstart.errors import DataError

    os.mkfifo(tmp_path / "data.csv")
    os.mkfifo(tmp_path / "folder")
    for name in ("data.csv", "folder"):
        with pytest.raises(DataError, match="regular file"):
            scan(tmp_path / name)
