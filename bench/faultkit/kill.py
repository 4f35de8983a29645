"""Kill anywhere: SIGKILL a command at spread-out moments, then resume it (or run it again)
and check it ends as an uninterrupted run does.

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

import shutil
import signal
import time

from faultkit.common import Context, Row, headstart, metrics, orphans, start, train_data, train_options


def train_kills(ctx: Context) -> list[Row]:
    data, options = train_data(ctx), train_options(ctx)
    cache = ctx.work / "cache"
    env = ctx.env()
    reference = ctx.work / "reference"
    began = time.perf_counter()
    done = headstart(["train", str(data), "--out", str(reference), *options], env)
    total = time.perf_counter() - began
    if done.returncode:
        return [Row("kill", "train reference", "reference run failed: " + done.stderr[-300:], False)]
    expected = metrics(reference)
    ctx.say(f"kill: reference train {expected} in {total:.1f} s")
    kills = 4 if ctx.quick else int(ctx.options.get("kills", 20))
    rows = []
    for k in range(kills):
        at = total * (k + 0.5) / kills
        folder = ctx.work / f"train-kill-{k:02d}"
        if k % 2:
            shutil.rmtree(cache, ignore_errors=True)
        proc = start(["train", str(data), "--out", str(folder), *options], env)
        time.sleep(at)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if not killed and (folder / "headstart.json").exists():
            how, again = "finished before the kill", None
        elif (folder / "config.json").exists():
            how, again = "resume", headstart(["train", "--resume", str(folder)], env)
        else:
            how, again = "rerun", headstart(["train", str(data), "--out", str(folder), *options], env)
        case = f"train killed at {at:4.1f} s"
        if again is not None and again.returncode:
            rows.append(Row("kill", case, f"{how} failed: {again.stderr.strip().splitlines()[-1][:160]}", False))
            continue
        got = metrics(folder)
        left = orphans(folder, cache)
        ok = got == expected and not left and (folder / "model.safetensors").is_file()
        rows.append(Row("kill", case, f"{how}; {got}" + (f"; orphans {left[:3]}" if left else ""), ok))
    return rows


def run(ctx: Context) -> list[Row]:
    return train_kills(ctx)
