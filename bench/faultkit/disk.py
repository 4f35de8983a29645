"""A full disk: a small tmpfs under the run folder, then under the cache, then under the
files of ``export`` and ``predict --out``, each at sizes that run out at a different write.

Run folder: a reference train (on a roomy disk) gives the order and sizes of what a run
writes; then fresh runs go to a tmpfs sized at page steps from "nothing fits" to "all but
the last file fits", so each write point (config.json, split.csv, checkpoints, epochs.csv,
tensorboard, metrics, figures, the artifact, the report) is the one that runs out at
least once. Each must end with exit 2 and one ``error:`` line naming the file (or, for a
figure or the report, finish with a warning), leave no temporary file, and leave no file
that is not whole (every JSON parses, every checkpoint and safetensors file loads). Then the
tmpfs is grown (remount) and ``train --resume RUN`` (or the same command again, when the
disk filled before config.json) must end with the reference's metrics.

Cache: HEADSTART_CACHE_DIR on a tmpfs too small for the decoded images (or the features);
training must finish with a notice, with the reference's metrics, and leave no entry a
later run finds damaged.

export / predict --out: the output file on a tmpfs too small for it: one ``error:`` line,
nothing at the target (export) or whole rows only (predict); after growing, the same
command (predict: with --resume) gives the reference's file.

Needs root (mount); without it the scenario says so in one row.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .common import Context, Row, headstart, last_line, metrics, one_line_error, orphans, train_data, train_options

PAGE = 4096
ROOMY = "1g"


def can_mount(work: Path) -> str | None:
    """None when a tmpfs can be mounted here, else why not."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "needs root and mount(8) for a tmpfs"
    probe = work / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True, text=True)
    if done.returncode:
        return f"cannot mount a tmpfs ({last_line(done.stderr)})"
    subprocess.run(["umount", str(probe)], check=True)
    return None


@contextmanager
def tmpfs(folder: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes (rounded up to pages) at ``folder``, 0700 like a folder of the
    user's own (tmpfs defaults to 1777, which the cache refuses as writable by others); unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)], check=True, capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def grow(folder: Path) -> None:
    """Free space, keeping what is there: the tmpfs remounted roomy."""
    subprocess.run(["mount", "-o", f"remount,size={ROOMY}", str(folder)], check=True, capture_output=True)


def pages(nbytes: int) -> int:
    return -(-nbytes // PAGE)


def written_in_order(run: Path) -> list[tuple[str, int]]:
    """(path relative to the run folder, bytes) of every file, in the order last written."""
    files = sorted((p for p in run.rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
    return [(str(p.relative_to(run)), p.stat().st_size) for p in files]


def training_and_after(files: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The files in write order, split after the last checkpoint: what training writes, then
    what evaluation writes (metrics, figures, the artifact, label issues, the report)."""
    last = max(i for i, (name, _) in enumerate(files) if name.endswith(".ckpt"))
    return files[: last + 1], files[last + 1 :]


def sizes_to_try(files: list[tuple[str, int]], base: int = 0) -> list[int]:
    """tmpfs sizes (bytes) that hold ``base`` pages, every file before one in write order,
    and a little of that one (half, at most 32 KiB): the run runs out of space at (or before)
    that file, even when a rerun writes it smaller (a resumed run's report has no label issues)."""
    total, steps = base, []
    for _, nbytes in files:
        steps.append(max(1, total + min(pages(nbytes) // 2, 8)) * PAGE)
        total += pages(nbytes)
    return sorted(set(steps))


def not_whole(folder: Path) -> list[str]:
    """Files a later run would read but cannot: JSON that does not parse, a checkpoint or
    safetensors file that does not load, a CSV or HTML file cut short."""
    import torch
    from safetensors.torch import load_file

    bad = []
    for p in (p for p in folder.rglob("*") if p.is_file()):
        try:
            if p.suffix == ".json":
                json.loads(p.read_text(encoding="utf-8"))
            elif p.suffix == ".ckpt":
                torch.load(p, map_location="cpu", weights_only=True)
            elif p.suffix == ".safetensors":
                load_file(str(p))
            elif p.suffix == ".csv" and p.stat().st_size and not p.read_bytes().endswith(b"\n"):
                raise ValueError("no final newline")
            elif p.suffix == ".html" and b"</html>" not in p.read_bytes()[-200:]:
                raise ValueError("no </html>")
        except Exception as exc:
            bad.append(f"{p.relative_to(folder)} ({type(exc).__name__})")
    return bad


def named(stderr: str, root: Path) -> str:
    """The file a disk-full error names ('to write NAME'), or the error line itself."""
    line = next((ln for ln in stderr.splitlines() if "error:" in ln), "")
    if "to write " in line:
        folder = line.split("No space left on the disk of ", 1)[-1].split(" to write ", 1)[0]
        name = line.split(" to write ", 1)[1].split(":", 1)[0]
        where = Path(folder) / name
        return str(where.relative_to(root)) if where.is_relative_to(root) else str(where)
    if "No space left on the disk of " in line:  # the library (TensorBoard) named no file
        return "a write that named no file (TensorBoard)"
    return line[:120]


def run_folder_cases(ctx: Context, reference: Path, expected: dict[str, float]) -> list[Row]:
    data, options = train_data(ctx), train_options(ctx)
    env = ctx.env()  # the cache on the roomy disk: only the run folder fills up
    rows = []
    training, after = training_and_after(written_in_order(reference))
    sizes = sizes_to_try(training)
    if ctx.quick:  # one mid-run size: it runs out at a checkpoint, so the resume path is tried
        sizes = [sizes[len(sizes) // 2]]
    # Past the last checkpoint a small disk cannot be reached by a fresh run: rewriting
    # last.ckpt atomically needs room for two of it, more than the whole run folder holds
    # at the end. So the writes after training are tried by resuming a copy of the
    # reference's trained run folder, which redoes exactly them, on a disk sized just short.
    # skipped.csv, rewritten by every resume, goes with them (its first size is an early case's);
    # label issues do not: they come from phase 1's features, which a resume past it lacks.
    redone = [(name, n) for name, n in training if name == "skipped.csv"] + [(a, n) for a, n in after if not a.startswith("label_issues")]
    kept = sum(pages(n) for name, n in training if name != "skipped.csv")
    late = [] if ctx.quick else sizes_to_try(redone, base=kept)[1:]
    for n, size in enumerate(sizes + late):
        mount = ctx.work / f"disk-run-{n:02d}"
        with tmpfs(mount, size):
            run = mount / "run"
            if size in late:
                shutil.copytree(
                    reference, run, ignore=lambda folder, names: [m for m in names if m in {Path(a).name for a, _ in redone + after}]
                )
                first = headstart(["train", "--resume", str(run)], env)
            else:
                first = headstart(["train", str(data), "--out", str(run), *options], env)
            hit = named(first.stderr, run) if first.returncode else "nothing (finished)"
            warned = [ln for ln in first.stderr.splitlines() if "warning:" in ln]
            case = f"run folder {size // 1024:>5} KiB: {hit}"
            problems = []
            if first.returncode and not one_line_error(first):
                problems.append(f"exit {first.returncode}: {last_line(first.stderr)}")
            if first.returncode == 0 and not warned:
                problems.append("finished on a disk too small for the reference run, without a warning")
            left, broken = orphans(mount), not_whole(mount)
            problems += [f"orphans {left[:3]}"] * bool(left) + [f"not whole: {broken[:3]}"] * bool(broken)
            how = "resume" if (run / "config.json").is_file() else "rerun"
            if first.returncode and how == "resume" and f"--resume {run}" not in first.stderr:
                problems.append("the error does not say to continue with --resume")
            grow(mount)
            again = headstart(
                ["train", "--resume", str(run)] if how == "resume" else ["train", str(data), "--out", str(run), *options], env
            )
            if again.returncode:
                problems.append(f"{how} failed: {last_line(again.stderr)}")
            elif metrics(run) != expected:
                problems.append(f"{how} gave {metrics(run)}, not {expected}")
            if orphans(mount):
                problems.append(f"orphans after the {how}")
            outcome = (
                "exit 2, one line" if first.returncode else f"finished, warned: {warned[0][:80] if warned else None}"
            ) + f"; {how} ok"
            rows.append(Row("disk", case, "; ".join(problems) or outcome, not problems, {"tmpfs_bytes": size}))
            ctx.say(f"disk: {case}: {rows[-1].outcome[:200]}")
    return rows


def cache_sizes(cache: Path) -> list[int]:
    """tmpfs sizes for the cache: one page; a page short of the decoded images; a page short
    of the images and the frozen-base features (as the reference run left the cache)."""
    used = {kind: sum(pages(p.stat().st_size) for p in (cache / kind).glob("*") if p.is_file()) for kind in ("images", "features")}
    sizes = [PAGE, (used["images"] - 1) * PAGE]
    if used["features"]:
        sizes.append((used["images"] + used["features"] - 1) * PAGE)
    return sorted(set(sizes))


def cache_case(ctx: Context, n: int, size: int, expected: dict[str, float] | None) -> tuple[Row, Path]:
    """The cache alone on a small disk: training must go on without it. ``expected`` None:
    this run is the reference (quick version), so only its own outcome is checked."""
    data, options = train_data(ctx), train_options(ctx)
    mount = ctx.work / f"disk-cache-{n:02d}"
    run = ctx.work / ("reference" if expected is None else f"cache-run-{n:02d}")
    with tmpfs(mount, size):
        env = ctx.env(HEADSTART_CACHE_DIR=str(mount))
        first = headstart(["train", str(data), "--out", str(run), *options], env)
        notice = [ln.split(" in ", 1)[0] for ln in first.stderr.splitlines() if "cache" in ln and "cannot write" in ln]
        problems = []
        if first.returncode:
            problems.append(f"exit {first.returncode}: {last_line(first.stderr)}")
        elif expected is not None and metrics(run) != expected:
            problems.append(f"metrics {metrics(run)}, not {expected}")
        left, broken = orphans(mount), not_whole(mount)
        problems += [f"orphans {left[:3]}"] * bool(left) + [f"not whole: {broken[:3]}"] * bool(broken)
        if expected is not None:  # with space again, a later run must find no damaged entry
            grow(mount)
            again = headstart(["train", str(data), "--out", f"{run}-again", *options], env)
            damaged = [ln for ln in again.stderr.splitlines() if "damaged" in ln or "unreadable or stale" in ln]
            if again.returncode or damaged or metrics(Path(f"{run}-again")) != expected:
                problems.append(f"after growing: exit {again.returncode}, {damaged[:1] or last_line(again.stderr)}")
    outcome = f"notice '{' / '.join(notice)}'" if notice else "finished, cache fitted"
    outcome += "; the reference run" if expected is None else "; same metrics; later run ok"
    return Row("disk", f"cache {size // 1024:>4} KiB", "; ".join(problems) or outcome, not problems, {"tmpfs_bytes": size}), run


def export_cases(ctx: Context, reference: Path) -> list[Row]:
    env = ctx.env()
    full = headstart(["export", str(reference), "--format", "onnx", "--out", str(ctx.work / "reference.onnx")], env)
    if full.returncode:
        return [Row("disk", "export reference", f"failed: {last_line(full.stderr)}", False)]
    want = (ctx.work / "reference.onnx").stat().st_size
    rows = []
    for n, size in enumerate([PAGE, pages(want) // 2 * PAGE]):
        mount = ctx.work / f"disk-export-{n:02d}"
        with tmpfs(mount, size):
            target = mount / "model.onnx"
            args = ["export", str(reference), "--format", "onnx", "--out", str(target)]
            first = headstart(args, env)
            problems = []
            if not one_line_error(first):
                problems.append(f"exit {first.returncode}: {last_line(first.stderr)}")
            if target.exists() or orphans(mount) or any(mount.iterdir()):
                problems.append(f"left {[p.name for p in mount.iterdir()]}")
            grow(mount)
            again = headstart(args, env)
            if again.returncode or target.stat().st_size != want:
                problems.append(f"after growing: exit {again.returncode}, {last_line(again.stderr)}")
            rows.append(
                Row(
                    "disk", f"export {size // 1024:>4} KiB", "; ".join(problems) or "exit 2, one line, nothing left; rerun ok", not problems
                )
            )
    return rows


def predict_cases(ctx: Context, reference: Path) -> list[Row]:
    """predict --out into a small tmpfs. Full version: compared with the same command on a
    roomy disk; quick: one row per input, each with a prediction."""
    data = train_data(ctx)
    inputs = [str(data)] * 8  # enough rows (~60 bytes each) to overflow a page
    env = ctx.env()
    want: bytes | None = None
    if not ctx.quick:
        full = headstart(["predict", str(reference), *inputs, "--out", str(ctx.work / "reference.csv")], env)
        if full.returncode:
            return [Row("disk", "predict reference", f"failed: {last_line(full.stderr)}", False)]
        want = (ctx.work / "reference.csv").read_bytes()
    images = sum(1 for p in data.rglob("*.png"))
    rows = []
    for n, size in enumerate([PAGE] if ctx.quick else [PAGE, 3 * PAGE]):
        mount = ctx.work / f"disk-predict-{n:02d}"
        with tmpfs(mount, size):
            target = mount / "predictions.csv"
            args = ["predict", str(reference), *inputs, "--out", str(target)]
            first = headstart(args, env)
            problems = []
            if not one_line_error(first):
                problems.append(f"exit {first.returncode}: {last_line(first.stderr)}")
            grow(mount)
            again = headstart([*args, "--resume"], env)
            got = target.read_bytes() if target.is_file() else b""
            lines = list(csv.reader(io.StringIO(got.decode())))[1:]
            whole = got == want if want is not None else len(lines) == len(inputs) * images and all(r[1] for r in lines)
            if again.returncode or not whole:
                problems.append(f"--resume: exit {again.returncode}, {last_line(again.stderr)}; {len(lines)} rows")
            if orphans(mount):
                problems.append("orphans")
            outcome = "exit 2, one line; --resume completed the file" + (" (= the roomy run's)" if want is not None else "")
            rows.append(Row("disk", f"predict --out {size // 1024:>4} KiB", "; ".join(problems) or outcome, not problems))
    return rows


def run(ctx: Context) -> list[Row]:
    why = can_mount(ctx.work)
    if why is not None:
        return [Row("disk", "full disk (tmpfs)", f"not tried: {why}", False)]
    rows = []
    if ctx.quick:  # the reference run is itself the cache case: the cache on a one-page disk
        row, reference = cache_case(ctx, 0, PAGE, None)
        rows.append(row)
        if not row.ok:
            return rows
    else:
        reference = ctx.work / "reference"
        done = headstart(["train", str(train_data(ctx)), "--out", str(reference), *train_options(ctx)], ctx.env())
        if done.returncode:
            return [Row("disk", "train reference", "reference run failed: " + last_line(done.stderr), False)]
    expected = metrics(reference)
    ctx.say(f"disk: reference {expected}, {sum(n for _, n in written_in_order(reference)) // 1024} KiB in the run folder")
    rows += run_folder_cases(ctx, reference, expected)
    if not ctx.quick:
        rows += [cache_case(ctx, n, size, expected)[0] for n, size in enumerate(cache_sizes(ctx.work / "cache"))]
        rows += export_cases(ctx, reference)
    return rows + predict_cases(ctx, reference)
