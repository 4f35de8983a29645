"""Hostile input (issue 20): files that are not files, decoders nobody meant to run, names
that are markup or formulas, a cache another user could write, the server off loopback.

Every case runs headstart in a child process exactly as a user would, on a tiny generated
data set (the cases do not depend on scale, so quick and full are the same, QUICK_TRAIN):

    data     a FIFO named x.png, a link to /dev/zero named zero.png, a link out of DATA,
             an EPS file named .jpg (a fake ``gs`` on PATH records any Ghostscript run), a
             tree 1,100 folders deep; class folders named ``[red]``, ``cat;dog``,
             ``=HYPERLINK(...)`` and one holding an ESC byte. doctor, train, evaluate and
             predict --out run on it.
    signals  predict given the FIFO; a process whose reader thread is blocked in a read,
             sent SIGTERM.
    cache    the cache's modes after train; an entry owned by another user (root only);
             ``cache clear`` with HEADSTART_CACHE_DIR pointing at a project folder.
    serve    ``serve --host 0.0.0.0``: warning, generated token, Host, Origin, pixel budget.
    onnx     a NUL byte in an external-data location.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from .common import QUICK_TRAIN, Context, Row, headstart, headstart_cmd, last_line, one_line_error, orphans, tiny_data

# Folder names cannot hold '/', so '[/x]' itself is a unit test (a CSV label); '[red]' is
# markup too (its text vanished into a style), and the table of train is where it showed.
CLASSES = {"red": "[red]", "green": "cat;dog", "blue": '=HYPERLINK("e")', "yellow": "esc\x1b[31mred"}
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
DEPTH = 1100


def hostile_data(work: Path) -> tuple[Path, Path]:
    """The data folder described in the module docstring, and the fake gs's marker file."""
    root = tiny_data(work / "data", classes=tuple(CLASSES), per_class=8)
    for plain, name in CLASSES.items():
        (root / plain).rename(root / name)
    first = root / CLASSES["red"]
    os.mkfifo(first / "x.png")
    (first / "zero.png").symlink_to("/dev/zero")
    outside = work / "private.png"
    outside.write_bytes((root / CLASSES["green"] / "green_0.png").read_bytes())
    (first / "elsewhere.png").symlink_to(outside)
    (first / "photo.jpg").write_bytes(EPS)
    folder = root / CLASSES["green"] / "d"
    folder.mkdir()
    for _ in range(DEPTH - 1):
        folder = folder / "d"
        folder.mkdir()
    (folder / "deep.png").write_bytes((root / CLASSES["green"] / "green_1.png").read_bytes())
    marker = work / "gs-ran"
    gs = work / "bin" / "gs"
    gs.parent.mkdir()
    gs.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    gs.chmod(0o755)
    return root, marker


def remove_deep(root: Path) -> None:
    """The deep chain removed bottom-up (shutil.rmtree recurses, and would fail on it)."""
    top = root / CLASSES["green"] / "d"
    chain = [top] if top.is_dir() else []
    while chain and (chain[-1] / "d").is_dir():
        chain.append(chain[-1] / "d")
    for folder in reversed(chain):
        for leftover in folder.iterdir():
            if not leftover.is_dir():
                leftover.unlink()
        folder.rmdir()


def doctor_rows(ctx: Context, data: Path, env: dict[str, str]) -> list[Row]:
    out = ctx.work / "doctor"
    began = time.perf_counter()
    try:
        done = headstart(["doctor", str(data), "--out", str(out), "--near", "-1"], env, timeout=600)
    except subprocess.TimeoutExpired:
        return [Row("hostile", "doctor on special files", "did not finish within 600 s (blocked on the FIFO?)", False)]
    seconds = time.perf_counter() - began
    if done.returncode:
        return [Row("hostile", "doctor on special files", f"exit {done.returncode}: {last_line(done.stderr)}", False)]
    report = json.loads((out / "doctor.json").read_text())
    found = {f["check"]: [Path(i["path"]).name for i in f["items"]] for f in report["findings"] if f["check"] in ("special", "outside")}
    special, outside = found.get("special", []), found.get("outside", [])
    deep = report["files"] == 4 * 8 + 1 + 1  # the generated images, the deep one, photo.jpg (an EPS, reported unreadable)
    return [
        Row(
            "hostile",
            "FIFO x.png in DATA (doctor)",
            f"finished in {seconds:.0f} s; listed, never read" if "x.png" in special else "not listed",
            "x.png" in special,
        ),
        Row(
            "hostile",
            "link to /dev/zero (doctor)",
            "listed as not a regular file, never read" if "zero.png" in special else "not listed",
            "zero.png" in special,
        ),
        Row(
            "hostile",
            "symlink out of DATA",
            "named in doctor.json (and skipped.csv), not read" if "elsewhere.png" in outside else "not named",
            "elsewhere.png" in outside,
        ),
        Row(
            "hostile", f"tree {DEPTH} folders deep", f"walked: {report['files']} files" if deep else f"{report['files']} files found", deep
        ),
    ]


def train_rows(ctx: Context, data: Path, env: dict[str, str]) -> tuple[Path | None, list[Row]]:
    run = ctx.work / "run"
    done = headstart(["train", str(data), "--out", str(run), *QUICK_TRAIN], env, timeout=1800)
    if done.returncode:
        return None, [Row("hostile", "train on hostile names", f"exit {done.returncode}: {last_line(done.stderr)}", False)]
    text = done.stdout + done.stderr
    raw_escape = "\x1b[31m" in text
    rows = [
        Row(
            "hostile",
            "class '[red]' (Rich markup)",
            "train finished, the name printed as it is",
            "[red]" in text and "MarkupError" not in text,
        ),
        Row("hostile", "ESC in a class name", "shown as \\x1b" if not raw_escape else "raw escape reached the terminal", not raw_escape),
    ]
    evaluated = headstart(["evaluate", str(run), "--no-report"], env, timeout=900)
    rows.append(
        Row(
            "hostile",
            "class 'cat;dog' (split.csv)",
            "evaluate reads the split" if not evaluated.returncode else last_line(evaluated.stderr),
            not evaluated.returncode,
        )
    )
    return run, rows


def csv_row(ctx: Context, run: Path, data: Path, env: dict[str, str]) -> Row:
    out = ctx.work / "predictions.csv"
    done = headstart(["predict", str(run), str(data / CLASSES["blue"]), "--out", str(out), "--top-k", "4"], env, timeout=900)
    if done.returncode:
        return Row("hostile", "'=' names in the predictions CSV", f"exit {done.returncode}: {last_line(done.stderr)}", False)
    cells = [c for r in csv.reader(io.StringIO(out.read_text())) for c in r]
    raw = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    return Row(
        "hostile",
        "'=' names in the predictions CSV",
        f"{len(raw)} raw formula cells of {len(cells)}" if raw else "every such cell after a quote",
        not raw,
    )


def fifo_predict_row(run: Path, data: Path, env: dict[str, str]) -> Row:
    case = "predict given a FIFO"
    began = time.perf_counter()
    proc = subprocess.Popen(
        headstart_cmd("predict", str(run), str(data / CLASSES["red"] / "x.png")),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
            return Row("hostile", case, "blocked, but a SIGTERM ended it", False)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return Row("hostile", case, "blocked, and ignored SIGTERM", False)
    ok = proc.returncode == 0 and "not a regular file" in out
    return Row(
        "hostile",
        case,
        f"its row says 'not a regular file' ({time.perf_counter() - began:.0f} s)" if ok else f"exit {proc.returncode}: {out[:120]}",
        ok,
    )


def sigterm_row(ctx: Context, env: dict[str, str]) -> Row:
    fifo = ctx.work / "blocked.png"
    os.mkfifo(fifo)
    script = (
        "import signal\nfrom concurrent.futures import ThreadPoolExecutor\nfrom headstart import process\n"
        "signal.signal(signal.SIGTERM, process._terminated)\n"
        f"with ThreadPoolExecutor(1) as pool:\n    pool.submit(lambda: open({str(fifo)!r}, 'rb').read())\n"
        "    print('blocked', flush=True)\n    signal.pause()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(0.5)
    began = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return Row("hostile", "SIGTERM during a blocked read", "still running 60 s after SIGTERM", False)
    seconds = time.perf_counter() - began
    return Row(
        "hostile",
        "SIGTERM during a blocked read",
        f"exit {code} after {seconds:.1f} s",
        code == 128 + signal.SIGTERM and seconds < 20,
        {"seconds": round(seconds, 1)},
    )


def cache_rows(ctx: Context, data: Path, env: dict[str, str]) -> list[Row]:
    cache = Path(env["HEADSTART_CACHE_DIR"])
    entries = [p for part in ("images", "features") for p in (cache / part).glob("*") if p.is_file()]
    modes = {oct(stat.S_IMODE(os.stat(p).st_mode)) for p in [cache, cache / "images", *entries]}
    private = modes <= {"0o700", "0o600"} and bool(entries)
    rows = [Row("hostile", "cache modes", f"folders 0700, {len(entries)} entries 0600" if private else f"modes {sorted(modes)}", private)]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and entries:
        for entry in entries:
            os.chown(entry, 4321, 4321)
        again = headstart(["train", str(data), "--out", str(ctx.work / "run2"), *QUICK_TRAIN], env, timeout=1800)
        refused = again.returncode == 0 and "belongs to user id 4321" in again.stderr
        rows.append(
            Row("hostile", "cache entry of another user", "refused with one line, rebuilt" if refused else last_line(again.stderr), refused)
        )
    else:
        rows.append(Row("hostile", "cache entry of another user", "not tried (needs root to chown)", True))
    project = ctx.work / "project"
    (project / "images").mkdir(parents=True)
    (project / "images" / "holiday.jpg").write_bytes(b"a photo")
    cleared = headstart(["cache", "clear"], {**env, "HEADSTART_CACHE_DIR": str(project)})
    kept = (project / "images" / "holiday.jpg").exists()
    ok = one_line_error(cleared) and kept
    rows.append(
        Row(
            "hostile",
            "cache clear of a project folder",
            "refused, nothing deleted" if ok else f"exit {cleared.returncode}, photo kept: {kept}",
            ok,
        )
    )
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def status(url: str, headers: dict[str, str] | None = None, body: bytes | None = None, ctype: str | None = None) -> int:
    req = urllib.request.Request(url, data=body, headers={**(headers or {}), **({"Content-Type": ctype} if ctype else {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def two_bombs() -> tuple[bytes, str]:
    out = io.BytesIO()
    for i in range(2):  # 39.7 MP each: under the 40 MP per image, over 64 MP together
        out.write(f'--b\r\nContent-Disposition: form-data; name="file"; filename="{i}.png"\r\nContent-Type: image/png\r\n\r\n'.encode())
        out.write(png_header(6300, 6300) + b"\r\n")
    out.write(b"--b--\r\n")
    return out.getvalue(), "multipart/form-data; boundary=b"


def serve_rows(ctx: Context, run: Path, env: dict[str, str]) -> list[Row]:
    port = free_port()
    log = ctx.work / "serve.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(
            headstart_cmd("serve", str(run), "--host", "0.0.0.0", "--port", str(port), "--backend", "torch"),
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if status(f"{base}/health") == 200:
                    break
            except OSError:
                time.sleep(0.5)
        text = log.read_text(errors="replace")
        token = text.split("?token=", 1)[1].split()[0] if "?token=" in text else ""
        bearer = {"Authorization": f"Bearer {token}"}
        body, ctype = two_bombs()
        got = {
            "warning and a generated token in the page URL": ("Warning: bound to 0.0.0.0" in text and bool(token), "printed"),
            "no token: 401": (status(f"{base}/info") == 401, "refused"),
            "the token: 200": (status(f"{base}/info", bearer) == 200, "answered"),
            "a rebound Host name: 403": (status(f"{base}/info", {**bearer, "Host": "evil.example"}) == 403, "refused"),
            "a cross-site Origin: 403": (status(f"{base}/info", {**bearer, "Origin": "https://evil.example"}) == 403, "refused"),
            "2 x 39.7 MP in one request: 413": (status(f"{base}/predict", bearer, body, ctype) == 413, "refused from the headers"),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return [Row("hostile", f"serve 0.0.0.0: {case}", what if ok else "not so", ok) for case, (ok, what) in got.items()]


def onnx_row(ctx: Context, env: dict[str, str]) -> Row:
    case = "NUL in an ONNX external-data location"
    try:
        from onnx import TensorProto, helper
    except ModuleNotFoundError:
        return Row("hostile", case, "not tried (onnx not installed)", True)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], [0.0] * 4)
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "w\0.bin"), ("offset", "0"), ("length", "16")):
        entry = weight.external_data.add()
        entry.key, entry.value = k, v
    x, y = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]), helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], initializer=[weight])
    path = ctx.work / "nul" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(helper.make_model(graph).SerializeToString())
    done = headstart(["predict", str(path), str(path)], env)
    return Row(
        "hostile",
        case,
        "one line, exit 2" if one_line_error(done) else f"exit {done.returncode}: {last_line(done.stderr)}",
        one_line_error(done),
    )


def run(ctx: Context) -> list[Row]:
    data, marker = hostile_data(ctx.work)
    env = ctx.env(PATH=f"{ctx.work / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", COLUMNS="300")
    try:
        rows = doctor_rows(ctx, data, env)
        ctx.say("hostile: doctor done")
        run_dir, trained = train_rows(ctx, data, env)
        rows += trained
        if run_dir is not None:
            rows += [csv_row(ctx, run_dir, data, env), fifo_predict_row(run_dir, data, env)]
            rows += cache_rows(ctx, data, env)
            rows += serve_rows(ctx, run_dir, env)
        rows.append(
            Row(
                "hostile",
                "EPS named .jpg (fake gs on PATH)",
                "Ghostscript ran" if marker.exists() else "Ghostscript never ran (doctor, train, predict)",
                not marker.exists(),
            )
        )
        rows += [sigterm_row(ctx, env), onnx_row(ctx, env)]
        left = orphans(ctx.work / "run", Path(env["HEADSTART_CACHE_DIR"]))  # not data/: rglob recurses, the deep tree would stop it
        rows.append(Row("hostile", "temporary files left", ", ".join(left[:3]) or "none", not left))
    finally:
        remove_deep(data)
    return rows
