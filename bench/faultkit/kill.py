"""Kill anywhere: SIGKILL train, export and predict --out at spread-out moments, then resume
them (or run them again) and check each ends as an uninterrupted run does.

train: for each of N moments spread over a reference run's wall time (indexing, decoding,
features, each phase, checkpoint and artifact writes, the report), a fresh run folder is
started, killed at that moment, then resumed with ``train --resume RUN`` (or the same
command again when the kill came before config.json existed). Compared with the
reference: the same metrics (weights are not compared: a mid-epoch resume replays the
data order from the last checkpoint, which is not bit-identical), a loadable artifact, no
orphan temporary file in the run folder or the cache. Odd kills start with a cold cache,
so decoding and feature extraction are hit.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .common import Context, Row, headstart, last_line, metrics, orphans, start, timed, train_data, train_options


def train_kills(ctx: Context) -> list[Row]:
    data, options = train_data(ctx), train_options(ctx)
    cache = ctx.work / "cache"
    env = ctx.env()
    reference = ctx.work / "reference"
    done, total = timed(headstart, ["train", str(data), "--out", str(reference), *options], env)
    if done.returncode:
        return [Row("kill", "train reference", "reference run failed: " + done.stderr[-300:], False)]
    expected = metrics(reference)
    ctx.say(f"kill: reference train {expected} in {total:.1f} s")
    # Benchmark: moments spread over the reference's wall time. Quick: one early moment and
    # two events (config.json written; the first checkpoint), so the resume path is always hit.
    kills = int(ctx.options.get("kills", 20))
    moments: list[float | str] = (
        [0.3 * total, "config.json", "checkpoints/*/last.ckpt"] if ctx.quick else [total * (k + 0.5) / kills for k in range(kills)]
    )
    rows = []
    for k, moment in enumerate(moments):
        folder = ctx.work / f"train-kill-{k:02d}"
        if k % 2:
            shutil.rmtree(cache, ignore_errors=True)
        proc = start(["train", str(data), "--out", str(folder), *options], env)
        began = time.perf_counter()
        if isinstance(moment, str):
            while proc.poll() is None and not list(folder.glob(moment)) and time.perf_counter() - began < 600:
                time.sleep(0.01)
        else:
            time.sleep(moment)
        at = time.perf_counter() - began
        killed = proc.poll() is None
        how_killed = signal.SIGTERM if k % 4 == 2 else signal.SIGKILL  # a polite kill must clean up after itself
        if killed:
            proc.send_signal(how_killed)
        proc.communicate()
        litter = orphans(folder, cache) if killed and how_killed == signal.SIGTERM else []
        if not killed and (folder / "headstart.json").exists():
            how, again = "finished before the kill", None
        elif (folder / "config.json").exists():
            how, again = "resume", headstart(["train", "--resume", str(folder)], env)
        else:
            how, again = "rerun", headstart(["train", str(data), "--out", str(folder), *options], env)
        when = f"{at:4.1f} s" + (f" ({moment} written)" if isinstance(moment, str) else "")
        case = f"train {'terminated' if how_killed == signal.SIGTERM else 'killed'} at {when}"
        if again is not None and again.returncode:
            rows.append(Row("kill", case, f"{how} failed: {again.stderr.strip().splitlines()[-1][:160]}", False))
            continue
        got = metrics(folder)
        left = orphans(folder, cache) + litter
        ok = got == expected and not left and (folder / "model.safetensors").is_file()
        rows.append(Row("kill", case, f"{how}; {got}" + (f"; orphans {left[:3]}" if left else ""), ok))
    return rows


def kill_at(args: list[str], env: dict[str, str], at: float) -> bool:
    """Start ``headstart ARGS``, SIGKILL it ``at`` seconds in; True when it was still running."""
    proc = start(args, env, stdout=subprocess.DEVNULL)
    try:
        proc.wait(at)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return True


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "missing"


def export_kills(ctx: Context, run_dir: Path, kills: int) -> list[Row]:
    """SIGKILL ``export`` anywhere: the target is absent or whole, and the same command again
    writes the same bytes as an uninterrupted export (ONNX export is deterministic)."""
    env = ctx.env()
    reference = ctx.work / "reference.onnx"
    done, total = timed(headstart, ["export", str(run_dir), "--out", str(reference)], env)
    if done.returncode:
        return [Row("kill", "export reference", "reference export failed: " + last_line(done.stderr), False)]
    expected = digest(reference)
    rows = []
    for k in range(kills):
        at = total * (k + 0.5) / kills
        target = ctx.work / f"export-kill-{k:02d}" / "model.onnx"
        target.parent.mkdir()
        killed = kill_at(["export", str(run_dir), "--out", str(target)], env, at)
        after_kill = digest(target)
        torn = after_kill not in ("missing", expected)  # a file at the target must be the whole export
        again = headstart(["export", str(run_dir), "--out", str(target)], env)
        left = orphans(target.parent)
        ok = not torn and again.returncode == 0 and digest(target) == expected and not left
        how = "killed" if killed else "finished before the kill"
        rows.append(
            Row(
                "kill",
                f"export killed at {at:4.1f} s",
                f"{how}; target after the kill: {'torn' if torn else after_kill}; again: exit {again.returncode}, "
                f"{'same bytes' if digest(target) == expected else 'DIFFERENT bytes'}" + (f"; orphans {left[:2]}" if left else ""),
                ok,
            )
        )
    return rows


def rows_of(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def predict_kills(ctx: Context, run_dir: Path, inputs: list[str], kills: int) -> list[Row]:
    """SIGKILL ``predict --out`` anywhere, then ``--resume``: the file ends with exactly the
    rows of an uninterrupted run, none repeated or missing, byte for byte."""
    env = ctx.env()
    reference = ctx.work / "reference.csv"
    done, total = timed(headstart, ["predict", str(run_dir), *inputs, "--out", str(reference)], env)
    if done.returncode:
        return [Row("kill", "predict reference", "reference predict failed: " + last_line(done.stderr), False)]
    expected = rows_of(reference)
    rows = []
    for k in range(kills):
        at = total * (k + 0.5) / kills
        out = ctx.work / f"predict-kill-{k:02d}.csv"
        killed = kill_at(["predict", str(run_dir), *inputs, "--out", str(out)], env, at)
        held = len(rows_of(out)) - 1 if out.exists() else -1
        again = headstart(["predict", str(run_dir), *inputs, "--out", str(out), "--resume"], env)
        got = rows_of(out) if out.exists() else []
        sources = [r[0] for r in got[1:]]
        repeated = len(sources) - len(set(sources)) - (len(expected) - 1 - len({r[0] for r in expected[1:]}))
        ok = again.returncode == 0 and got == expected and not orphans(out)
        how = f"killed with {held} rows written" if killed else "finished before the kill"
        outcome = f"{how}; --resume: exit {again.returncode}, {len(got) - 1} of {len(expected) - 1} rows"
        if again.returncode:
            outcome += f" ({last_line(again.stderr)})"
        elif got != expected:
            outcome += f", {repeated} repeated, {'equal' if got == expected else 'DIFFERENT'}"
        rows.append(Row("kill", f"predict --out killed at {at:4.1f} s", outcome, ok))
    return rows


def run(ctx: Context) -> list[Row]:
    rows = train_kills(ctx)
    run_dir = ctx.work / "reference"
    if not (run_dir / "headstart.json").is_file():
        return rows
    kills = 2 if ctx.quick else max(4, int(ctx.options.get("kills", 20)) // 4)
    rows += export_kills(ctx, run_dir, kills)
    # Enough inputs that predict runs for a while: the training folder, several times over.
    inputs = [str(train_data(ctx))] * (2 if ctx.quick else 6)
    rows += predict_kills(ctx, run_dir, inputs, kills)
    return rows
