"""A memory limit well below a run's peak: a one-line error naming the option that lowers
memory, never a kernel OOM kill; and the named option, applied, fits under the same limit.

Each case runs ``headstart train`` in a fresh memory cgroup (v1 or v2; needs root) whose
limit is a share of the peak RSS an unlimited run reached. Fine: the run finishes with the
reference's metrics, or exits 2 with an ``error: out of memory ...`` line that names
--batch-size; not fine: exit 137 / an oom_kill in the cgroup, a traceback, or an orphan
temporary file. Then the same limit with ``--batch-size 16`` (what the error suggests)
must finish. ``ulimit -v`` (RLIMIT_AS) is tried too: below the address space torch needs
to start, a one-line refusal before any work.
"""

from __future__ import annotations

import os
import resource
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .common import Context, Row, headstart_cmd, metrics, orphans, train_data, train_options

ROOT = Path("/sys/fs/cgroup")


@contextmanager
def cgroup(limit: int | None) -> Iterator[tuple[Path, int]]:
    """A fresh memory cgroup (limit in bytes, None: unlimited); yields (folder, version)."""
    if (ROOT / "cgroup.controllers").exists():
        version, folder = 2, ROOT / f"headstart-faults-{uuid.uuid4().hex[:8]}"
        (ROOT / "cgroup.subtree_control").write_text("+memory")
    else:
        version, folder = 1, ROOT / "memory" / f"headstart-faults-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        if limit is not None:
            (folder / ("memory.max" if version == 2 else "memory.limit_in_bytes")).write_text(str(limit))
            if version == 1 and (folder / "memory.memsw.limit_in_bytes").exists():
                (folder / "memory.memsw.limit_in_bytes").write_text(str(limit))  # no escape into swap
        yield folder, version
    finally:
        folder.rmdir()


def oom_kills(folder: Path, version: int) -> int:
    text = (folder / ("memory.events" if version == 2 else "memory.oom_control")).read_text().split()
    pairs = dict(zip(text[::2], text[1::2]))
    return int(pairs.get("oom_kill", 0))


def cgroups_usable() -> str | None:
    """Why memory cgroups cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root to create a memory cgroup"
    if not (ROOT / "cgroup.controllers").exists() and not (ROOT / "memory").is_dir():
        return "no memory cgroup controller mounted"
    return None


def train_in(ctx: Context, out: Path, limit: int | None, extra: Sequence[str] = ()) -> tuple[subprocess.CompletedProcess, int, int]:
    """``headstart train`` inside a cgroup with ``limit``: (result, oom kills, peak RSS in bytes)."""
    args = headstart_cmd("train", str(train_data(ctx)), "--out", str(out), *train_options(ctx), *extra)
    log = out.with_name(out.name + ".stderr")
    with cgroup(limit) as (folder, version), open(log, "w+") as stderr:
        procs = folder / "cgroup.procs"
        proc = subprocess.Popen(
            args, env=ctx.env(), stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=lambda: procs.write_text(str(os.getpid()))
        )
        _, status, usage = os.wait4(proc.pid, 0)  # rusage of this child alone: its peak RSS
        proc.returncode = os.waitstatus_to_exitcode(status)
        kills = oom_kills(folder, version)
        stderr.seek(0)
        err_text = stderr.read()
    return subprocess.CompletedProcess(args, proc.returncode, "", err_text), kills, usage.ru_maxrss * 1024


def judge(ctx: Context, case: str, proc: subprocess.CompletedProcess, kills: int, run: Path, expected: dict) -> Row:
    tail = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    last = tail[-1] if tail else ""
    left = orphans(run, ctx.work / "cache")
    if kills or proc.returncode in (137, -9):
        return Row("memory", case, f"KILLED by the kernel (exit {proc.returncode}, oom_kill {kills})", False)
    if proc.returncode == 0:
        got = metrics(run)
        return Row("memory", case, f"finished; {got}" + (f"; orphans {left[:2]}" if left else ""), got == expected and not left)
    one_line = proc.returncode == 2 and last.startswith("error: out of memory") and "Traceback" not in proc.stderr
    names = "--batch-size" in last
    ok = one_line and names and not left
    return Row("memory", case, f"exit {proc.returncode}: {last[:150]}" + (f"; orphans {left[:2]}" if left else ""), ok)


def run(ctx: Context) -> list[Row]:
    why = cgroups_usable()
    if why:
        return [Row("memory", "cgroup limits", f"not tried: {why}", False)]
    reference = ctx.work / "reference"
    proc, _, peak = train_in(ctx, reference, None)
    if proc.returncode:
        return [Row("memory", "reference", "reference run failed: " + proc.stderr[-300:], False)]
    expected = metrics(reference)
    ctx.say(f"memory: reference {expected}, peak RSS {peak / 2**20:.0f} MB")
    rows = [Row("memory", "no limit (reference)", f"peak RSS {peak / 2**20:.0f} MB; {expected}", True, {"peak_mb": peak / 2**20})]
    shares = (0.4,) if ctx.quick else (0.55, 0.7, 0.85)
    for share in shares:
        limit = int(peak * share)
        folder = ctx.work / f"limit-{int(share * 100)}"
        proc, kills, _ = train_in(ctx, folder, limit)
        rows.append(judge(ctx, f"cgroup {limit / 2**20:.0f} MB ({share:.0%} of peak)", proc, kills, folder, expected))
        if not ctx.quick and proc.returncode == 2:
            again = ctx.work / f"limit-{int(share * 100)}-bs16"
            proc, kills, _ = train_in(ctx, again, limit, ["--batch-size", "16"])
            row = judge(ctx, f"cgroup {limit / 2**20:.0f} MB, --batch-size 16", proc, kills, again, expected)
            if proc.returncode == 0:  # another batch size: its own metrics, so only 'it finished' is checked
                row = Row("memory", row.case, f"finished with the option the error named; {metrics(again)}", True)
            rows.append(row)
    rows.append(address_space(ctx))
    return rows


def address_space(ctx: Context) -> Row:
    """ulimit -v below torch's start-up needs: refused in one line before any work."""
    limit = 2 * 2**30
    out = ctx.work / "ulimit"
    args = headstart_cmd("train", str(train_data(ctx)), "--out", str(out), *train_options(ctx))
    proc = subprocess.run(
        args,
        env=ctx.env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    ok = proc.returncode == 2 and "ulimit -v" in last and "Traceback" not in proc.stderr and not out.exists()
    return Row("memory", "ulimit -v 2 GiB", f"exit {proc.returncode}: {last[:150]}", ok)
