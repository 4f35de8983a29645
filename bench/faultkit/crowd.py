"""Many at once: processes sharing a cache, a run folder or an output file, started
together, must each finish with the result they would have had alone, or fail in one line.

trains   ``train`` processes on one HEADSTART_CACHE_DIR and overlapping data, without --out
         (each must get a run folder of its own): two identical runs (one cache entry
         written at once), another seed (the same decoded images, other features), other
         data of hard links to three in four of the same images (an entry of its own);
         started together on a cold cache, then on the warm one. Each run must give the
         weights (sha256 of model.safetensors) and metrics of the same run done alone on a
         private cache; the shared cache must then hold entries byte-identical to the
         private ones, whole (data and metadata), read as they are by a later run, with no
         temporary file; no run may print a cache notice (nothing was damaged, so a
         "damaged / rebuilding" line would be a race misread). Then two trains given one
         --out: one runs, the other is refused in one line. Quick: seeds 0 and 1 only.
predict  ``predict --out`` into different files at once (the whole input; not quick, also
         its two --shard halves): each file holds exactly the rows of a solo run. Meanwhile
         a writer of one more file is paused (SIGSTOP) mid-write while a second writer of
         that file runs: it must be refused in one line, never interleave rows.
clear    ``train`` on a cold cache with two ``cache clear`` landing: once it decodes, once
         features are written, once it trains (the train paused meanwhile, so the clears,
         started ahead and held, land inside that moment), at spread times, and over and
         over from its first cache file to its end. The train must end with the solo
         weights or fail in one line and rerun to them; every clear must exit 0; the cache
         left must hold no half entry and serve a later run without a notice. Quick: once
         it decodes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .common import Context, Row, headstart, headstart_cmd, last_line, metrics, one_line_error, orphans, train_data, train_options

# The lines headstart prints when it distrusts or cannot use a cache entry.
NOTICES = ("unreadable or stale", "is damaged", "cannot write the")


@dataclass
class Job:
    """One headstart process with its output in files (pipes could stall a busy child)."""

    name: str
    proc: subprocess.Popen
    log: Path

    def wait(self, timeout: float = 900) -> subprocess.CompletedProcess:
        self.proc.wait(timeout)
        text = self.log.read_text(errors="replace")
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, "", text)


def launch(name: str, args: list[str], env: dict[str, str], logs: Path, cwd: Path | None = None) -> Job:
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(headstart_cmd(*args), env=env, stdout=subprocess.DEVNULL, stderr=handle, cwd=cwd)
    return Job(name, proc, log)


def notices(stderr: str) -> list[str]:
    return [line.strip()[:160] for line in stderr.splitlines() if any(n in line for n in NOTICES)]


def weights(run: Path) -> str:
    return hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()[:16]


# ---------------------------------------------------------------- four trains, one cache


@dataclass(frozen=True)
class Plan:
    name: str
    data: Path
    seed: int = 0

    @property
    def key(self) -> tuple[str, int]:
        """What decides a run's result here: its data and seed (the options are the same)."""
        return (str(self.data.resolve()), self.seed)


def run_key(run: Path) -> tuple[str, int]:
    saved = json.loads((run / "config.json").read_text())
    return (saved["meta"]["data"], saved["train"]["seed"])


def overlapping(data: Path, root: Path) -> Path:
    """A folder of hard links (copies where links fail) to three in four of ``data``'s images."""
    if root.exists():
        return root
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        (root / folder.name).mkdir(parents=True)
        for i, image in enumerate(sorted(p for p in folder.iterdir() if p.is_file())):
            if i % 4 != 3:
                try:
                    os.link(image, root / folder.name / image.name)
                except OSError:
                    shutil.copy2(image, root / folder.name / image.name)
    return root


def plans(ctx: Context) -> list[Plan]:
    """Two identical runs (one cache entry written at once), another seed (the same decoded
    images, other features), other data overlapping the first (an entry of its own)."""
    data = train_data(ctx)
    if ctx.quick:
        return [Plan("seed-0", data), Plan("seed-1", data, 1)]
    return [Plan("same-a", data), Plan("same-b", data), Plan("seed-1", data, 1), Plan("overlap", overlapping(data, ctx.work / "overlap"))]


@dataclass
class Result:
    weights: str
    metrics: dict[str, float]


def result(run: Path) -> Result:
    return Result(weights(run), metrics(run))


def train_all(ctx: Context, todo: list[tuple[Plan, Path, Path | None]], cwd: Path) -> tuple[list[subprocess.CompletedProcess], float]:
    """Start every (plan, its cache, its --out or None for the default) at once, in ``cwd``;
    wait for all: (their processes in order, seconds)."""
    began = time.perf_counter()
    cwd.mkdir(parents=True, exist_ok=True)
    jobs = []
    for i, (plan, cache, out) in enumerate(todo):
        args = ["train", str(plan.data), *(["--out", str(out)] if out else []), *train_options(ctx), "--seed", str(plan.seed)]
        jobs.append(launch(f"{plan.name}-{i}", args, ctx.env(HEADSTART_CACHE_DIR=str(cache)), cwd / "logs", cwd=cwd))
    done = [job.wait() for job in jobs]
    return done, time.perf_counter() - began


def judge(todo: list[Plan], done: list[subprocess.CompletedProcess], cwd: Path, expected: dict[tuple, Result]) -> list[str]:
    """What went wrong with trains started together without --out in ``cwd`` (empty: nothing):
    each must have a run folder of its own holding the result it has alone."""
    wrong = []
    for plan, proc in zip(todo, done):
        if proc.returncode:
            wrong.append(f"{plan.name} exit {proc.returncode}: {last_line(proc.stderr)}")
        wrong += [f"{plan.name}: {n}" for n in notices(proc.stderr)]
    folders = sorted((cwd / "runs").iterdir()) if (cwd / "runs").exists() else []
    if len(folders) != len(todo):
        wrong.append(f"{len(todo)} trains without --out left {len(folders)} run folders")
    keys = []
    for run in folders:
        try:
            keys.append(run_key(run))
            got = result(run)
        except (OSError, ValueError, KeyError) as exc:
            wrong.append(f"{run.name}: incomplete ({type(exc).__name__})")
            continue
        if got != expected.get(keys[-1]):
            wrong.append(f"{run.name} gave {got} where alone {expected.get(keys[-1])}")
    if sorted(keys) != sorted(plan.key for plan in todo):
        wrong.append("the run folders do not hold one run per train")
    return wrong


def entries(cache: Path) -> dict[str, tuple[int, int]]:
    """Cache file -> (inode, mtime_ns): a rebuilt entry is a new file."""
    return {str(p.relative_to(cache)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(cache.rglob("*")) if p.is_file()}


def same_bytes(cache: Path, private: list[Path]) -> list[str]:
    """Shared-cache entries whose bytes differ from the private caches' entries of the same key."""
    return [
        rel
        for rel in entries(cache)
        for other in private
        if (other / rel).exists() and (other / rel).read_bytes() != (cache / rel).read_bytes()
    ]


def trains(ctx: Context) -> tuple[list[Row], dict[tuple, Result]]:
    """The crowd of trains; also returns the solo results."""
    todo = plans(ctx)
    cache = ctx.work / "shared-cache"
    distinct = list({plan.key: plan for plan in reversed(todo)}.values())[::-1]
    private = [(plan, ctx.work / "alone" / f"cache-{plan.name}", ctx.work / "alone" / plan.name) for plan in distinct]
    crowd: list[tuple[Plan, Path, Path | None]] = [(plan, cache, None) for plan in todo]
    if ctx.quick:  # the references at once with the cold crowd: private caches share nothing, and process start dominates
        done, seconds = train_all(ctx, list(private) + crowd, ctx.work / "crowd-cold")
        alone, done = done[: len(private)], done[len(private) :]
    else:
        alone = []
        for one in private:
            got, _ = train_all(ctx, [one], ctx.work / "alone")
            alone += got
    failed = [f"{plan.name} failed alone: {last_line(proc.stderr)}" for (plan, _, _), proc in zip(private, alone) if proc.returncode]
    if failed:
        return [Row("crowd", "references", "; ".join(failed), False)], {}
    expected = {plan.key: result(out) for plan, _, out in private}
    ctx.say(f"crowd: alone {expected}")
    rows = []
    for temperature in ("cold",) if ctx.quick else ("cold", "warm"):
        cwd = ctx.work / f"crowd-{temperature}"
        if not ctx.quick:
            done, seconds = train_all(ctx, crowd, cwd)
        wrong = judge(todo, done, cwd, expected) + [f"orphan {p}" for p in orphans(cache, cwd)]
        outcome = "; ".join(wrong) or f"{len(todo)} run folders, each equal to alone (weights and metrics)"
        case = f"{len(todo)} trains, no --out, {temperature} shared cache"
        rows.append(Row("crowd", case, outcome, not wrong, {"seconds": round(seconds, 1)}))
        ctx.say(f"crowd: {case}: {outcome} in {seconds:.0f} s")
    # The shared cache: every entry byte-equal to the private caches' one of the same key, and
    # (not quick) read as it is by a later run, neither rebuilt nor added to.
    wrong = [f"entry {rel} differs from a private cache's" for rel in same_bytes(cache, [c for _, c, _ in private])]
    wrong += [f"half an entry: {h}" for h in halves(cache)]
    before = entries(cache)
    if not ctx.quick:
        done, _ = train_all(ctx, crowd[:1], ctx.work / "later")
        wrong += judge(todo[:1], done, ctx.work / "later", expected)
        wrong += [f"rebuilt or added {rel}" for rel, stamp in entries(cache).items() if before.get(rel) != stamp]
    outcome = "; ".join(wrong) or f"{len(before)} files, each byte-equal to a private cache's" + ("" if ctx.quick else ", read as they are")
    rows.append(Row("crowd", "the shared cache afterwards", outcome, not wrong))
    if not ctx.quick:
        rows.append(one_out(ctx, distinct[:1] + [p for p in distinct if p.seed == 1][:1], cache, expected))
    return rows, expected


def one_out(ctx: Context, two: list[Plan], cache: Path, expected: dict[tuple, Result]) -> Row:
    """Two trains (other seeds) given the same --out at once: one may write it, the other must
    be refused in one line; the folder then holds the winner's result."""
    out = ctx.work / "one-out" / "run"
    done, _ = train_all(ctx, [(plan, cache, out) for plan in two], out.parent)
    ran = [proc for proc in done if proc.returncode == 0]
    refused = [proc for proc in done if one_line_error(proc)]
    case = "2 trains (seeds 0, 1), one --out"
    if len(ran) != 1 or len(refused) != 1:
        return Row("crowd", case, f"exits {[p.returncode for p in done]}: {'; '.join(last_line(p.stderr) for p in done)}", False)
    ok = result(out) == expected[run_key(out)]
    return Row("crowd", case, f"one refused ({last_line(refused[0].stderr)[:80]}...); the other {'equal to alone' if ok else 'wrong'}", ok)


# ---------------------------------------------------------------- predict --out, at once


def read_rows(path: Path) -> list[tuple[str, ...]]:
    """(path, prediction, class_1, prob_1 to 4 places) per row; probabilities may differ in the
    last digits between batchings."""
    with path.open(newline="") as handle:
        return [(r["path"], r["prediction"], r["class_1"], f"{float(r['prob_1']):.4f}") for r in csv.DictReader(handle)]


def predicts(ctx: Context, run: Path) -> list[Row]:
    """A solo predict --out, then at once: writers of other files (the whole input; when not
    quick also its two --shard halves) and a writer of same.csv, paused (SIGSTOP) once it has
    written rows while a second writer of same.csv (other inputs, so a mixture would show)
    runs start to end, then let go."""
    data = train_data(ctx)
    folder, env = ctx.work / "predict", ctx.env()
    folder.mkdir(exist_ok=True)
    inputs = [str(data)] * (40 if ctx.quick else 8)  # the input given over and over: long enough to pause its writer mid-way
    solo = headstart(["predict", str(run), *inputs, "--out", str(folder / "solo.csv")], env)
    if solo.returncode:
        return [Row("crowd", "predict alone", "failed: " + last_line(solo.stderr), False)]
    want = read_rows(folder / "solo.csv")
    outs: dict[str, tuple[str, ...]] = {"same": ()} | (
        {"other": ()} if ctx.quick else {"other": (), "half-0": ("--shard", "0/2"), "half-1": ("--shard", "1/2")}
    )
    jobs = {
        n: launch(n, ["predict", str(run), *inputs, "--out", str(folder / f"{n}.csv"), *x], env, folder / "logs") for n, x in outs.items()
    }
    target, first = folder / "same.csv", jobs["same"].proc
    deadline = time.monotonic() + 300
    while first.poll() is None and time.monotonic() < deadline:
        if target.exists() and target.stat().st_size > 4096:
            first.send_signal(signal.SIGSTOP)
            break
        time.sleep(0.005)
    paused = first.poll() is None
    second = headstart(["predict", str(run), *sorted(str(p) for p in data.iterdir())[:1], "--out", str(target)], env)
    if paused:
        first.send_signal(signal.SIGCONT)
    done = {n: job.wait() for n, job in jobs.items()}

    wrong = [f"{n} exit {p.returncode}: {last_line(p.stderr)}" for n, p in done.items() if p.returncode]
    got = {n: read_rows(folder / f"{n}.csv") for n in outs if not done[n].returncode}
    wrong += [f"{n}.csv differs from alone ({len(got[n])} rows, {len(want)} alone)" for n in ("other",) if n in got and got[n] != want]
    if "half-0" in got and "half-1" in got and sorted(got["half-0"] + got["half-1"]) != sorted(want):
        wrong.append("the two --shard halves are not the solo rows")
    case = f"{len(outs)} predict --out, different files"
    rows = [Row("crowd", case, "; ".join(wrong) or f"each file equal to alone ({len(want)} rows)", not wrong)]

    case = "2 predict --out, same file"
    if not paused:
        rows.append(Row("crowd", case, "the first writer finished before it could be paused", False))
    elif second.returncode == 0:
        rows.append(
            Row("crowd", case, f"both wrote; the file holds {len(got.get('same', []))} rows ({len(want)} from the first alone)", False)
        )
    else:
        ok = one_line_error(second) and got.get("same") == want
        outcome = f"second refused ({last_line(second.stderr)[:90]}...); first {'complete' if ok else 'damaged'}"
        rows.append(Row("crowd", case, outcome, ok))
    return rows


# ---------------------------------------------------------------- train vs cache clear


def halves(cache: Path) -> list[str]:
    """Cache entries present by their data or their metadata but not both."""
    names = {p.relative_to(cache) for p in cache.glob("*/*") if p.is_file() and ".tmp" not in p.name}  # entries: images/, features/
    return sorted(str(n) for n in names if n.with_suffix(".json" if n.suffix == ".npy" else ".npy") not in names)


# A `headstart cache clear` started ahead and held at its first line until told to go, so it
# lands within milliseconds of an event rather than a process start (seconds) after it.
HELD_CLEAR = "import sys; from headstart import cli; sys.stdin.readline(); sys.argv[1:] = ['cache', 'clear']; cli.main()"


def clearer(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HELD_CLEAR], env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def events(cache: Path, run: Path) -> dict[str, Callable[[], bool]]:
    """What a train is doing, seen from outside: moments for a clear to land in."""
    return {
        "decoding": lambda: any((cache / "images").glob("*.tmp*")),
        "features": lambda: (
            (cache / "features").exists() and any((cache / "features").iterdir())
        ),  # one split's written, the next's under way
        "training": lambda: (run / "epochs.csv").exists(),
    }


def clear_during(
    ctx: Context, folder: Path, cache: Path, at: float | str | None
) -> tuple[subprocess.CompletedProcess, list[subprocess.CompletedProcess], bool, bool]:
    """A train on an empty ``cache`` with ``cache clear`` run twice back to back: ``at`` seconds
    in, or the moment event ``at`` is seen, or (None) over and over from the moment the cache
    gets its first file to the train's end. Returns (train, clears, whether the train had
    already ended when the clears did, whether event ``at`` never came)."""
    shutil.rmtree(cache, ignore_errors=True)
    data, env = train_data(ctx), ctx.env(HEADSTART_CACHE_DIR=str(cache))
    held = [clearer(env), clearer(env)]
    job = launch(folder.name, ["train", str(data), "--out", str(folder), *train_options(ctx)], env, folder.parent / "logs")
    if isinstance(at, float):
        time.sleep(at)
    else:
        seen = events(cache, folder)[at] if at else lambda: any(p.is_file() for p in cache.rglob("*"))
        while job.proc.poll() is None and not seen():
            time.sleep(0.002)
    # At an event the train is paused while the clears run: they land inside the moment seen
    # (a 240-image decode lasts a fraction of a second; a clear's wake-up can outlast it).
    paused = isinstance(at, str) and job.proc.poll() is None
    if paused:
        job.proc.send_signal(signal.SIGSTOP)
    cleared = []
    for proc in held:
        _, stderr = proc.communicate("go\n")
        cleared.append(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr))
    if paused:
        job.proc.send_signal(signal.SIGCONT)
    while at is None and job.proc.poll() is None:
        cleared.append(headstart(["cache", "clear"], env))
    late = job.proc.poll() is not None
    return job.wait(), cleared, late, isinstance(at, str) and not paused


def clears(ctx: Context, want: Result) -> list[Row]:
    """The clears at each moment; the timed ones spread over the wall time of a train under
    clears (the one cleared over and over), so they fall inside it whatever the load."""
    cache = ctx.work / "clear-cache"
    count = int(ctx.options.get("clears", 4))
    moments: list[float | str | None] = ["decoding"] if ctx.quick else [None, "decoding", "features", "training"]
    rows, took = [], 0.0
    for k, at in enumerate(moments):
        if at == "training":  # the last event: the timed moments follow
            moments += [took * (i + 0.5) / count for i in range(count)]
        folder = ctx.work / "clears" / f"train-{k:02d}"
        began = time.perf_counter()
        proc, cleared, late, missed = clear_during(ctx, folder, cache, at)
        took = time.perf_counter() - began if at is None else took
        wrong = [f"cache clear exit {c.returncode}: {last_line(c.stderr)}" for c in cleared if c.returncode or "Traceback" in c.stderr]
        how = "finished" + (" (before the clears ended)" if late else "") + (" (the moment never came)" if missed else "")
        if proc.returncode:
            if not one_line_error(proc):
                wrong.append(f"train exit {proc.returncode}: {last_line(proc.stderr)}")
            how = f"failed ({last_line(proc.stderr)}), rerun"
            shutil.rmtree(folder, ignore_errors=True)
            proc = headstart(
                ["train", str(train_data(ctx)), "--out", str(folder), *train_options(ctx)], ctx.env(HEADSTART_CACHE_DIR=str(cache))
            )
        if proc.returncode == 0 and Result(weights(folder), metrics(folder)) != want:
            wrong.append(f"weights or metrics differ from alone: {metrics(folder)}")
        wrong += [f"notice: {n}" for n in notices(proc.stderr)]
        wrong += [f"orphan {p}" for p in orphans(cache, folder)] + [f"half an entry: {h}" for h in halves(cache)]
        when = "from its first cache file on" if at is None else f"at {at:4.1f} s" if isinstance(at, float) else "once " + at
        case = f"train + {len(cleared)} cache clears {when}"
        rows.append(Row("crowd", case, "; ".join(wrong) or how + ", equal to alone", not wrong, {"clears": len(cleared)}))
        ctx.say(f"crowd: {case}: {rows[-1].outcome}")
    if ctx.quick:
        return rows
    later = ctx.work / "clears" / "later"
    proc = headstart(["train", str(train_data(ctx)), "--out", str(later), *train_options(ctx)], ctx.env(HEADSTART_CACHE_DIR=str(cache)))
    wrong = [] if proc.returncode == 0 else [f"exit {proc.returncode}: {last_line(proc.stderr)}"]
    if not wrong and Result(weights(later), metrics(later)) != want:
        wrong.append("weights or metrics differ from alone")
    wrong += [f"notice: {n}" for n in notices(proc.stderr)]
    rows.append(Row("crowd", "later run on the cache the clears left", "; ".join(wrong) or "equal to alone, no notice", not wrong))
    return rows


def run(ctx: Context) -> list[Row]:
    rows, expected = trains(ctx)
    if not expected:
        return rows
    first = plans(ctx)[0]
    rows += predicts(ctx, ctx.work / "alone" / first.name)
    return rows + clears(ctx, expected[first.key])
