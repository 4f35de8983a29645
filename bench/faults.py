"""Proven under faults (issue 13): kills, a full disk, a memory limit, racing processes and
hostile clients, hostile input (issue 20), tried on one machine; prints a table of what was tried and what survived.

    python bench/faults.py                      # every scenario at benchmark scale
    python bench/faults.py kill disk            # some of them
    python bench/faults.py --quick              # the reduced version the test suite runs
    python bench/faults.py kill --data DIR --kills 20
    python bench/faults.py server --minutes 10

Scenarios live in bench/faultkit/ (one module each; see its __init__ for the list). The
disk and memory scenarios mount tmpfs and create cgroups: they need root, and say so in
their rows when they cannot. Exit status 1 when anything broke.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faultkit.common import DEMO, Context, Row  # noqa: E402

SCENARIOS = ("kill", "disk", "memory", "crowd", "server", "hostile")


def table(rows: list[Row]) -> str:
    width = max((len(r.case) for r in rows), default=10)
    lines = [f"{'scenario':8}  {'case':{width}}  ok  outcome"]
    lines += [f"{r.scenario:8}  {r.case:{width}}  {'ok' if r.ok else '!!'}  {r.outcome}" for r in rows]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"Some of {', '.join(SCENARIOS)} (default: all).")
    ap.add_argument("--quick", action="store_true", help="The reduced version (tiny data, seconds per scenario).")
    ap.add_argument("--data", type=Path, default=DEMO, help="Image folder to train on (default: the bundled demo).")
    ap.add_argument("--kills", type=int, default=20, help="kill: how many timed kills of train.")
    ap.add_argument("--minutes", type=float, default=10.0, help="server: how long the hostile soak lasts.")
    ap.add_argument("--json", type=Path, help="Also write the rows here.")
    args = ap.parse_args()
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        ap.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")

    rows: list[Row] = []
    for name in args.scenarios or SCENARIOS:
        work = Path(tempfile.mkdtemp(prefix=f"faults-{name}-"))
        ctx = Context(work=work, quick=args.quick, data=args.data, options={"kills": args.kills, "minutes": args.minutes})
        began = time.perf_counter()
        try:
            got = importlib.import_module(f"faultkit.{name}").run(ctx)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"-- {name}: {sum(r.ok for r in got)} of {len(got)} fine in {time.perf_counter() - began:.0f} s", flush=True)
        rows += got
    print()
    print(table(rows))
    broken = [r for r in rows if not r.ok]
    print(
        f"\n{len(rows) - len(broken)} of {len(rows)} fine"
        + (f"; broken: {', '.join(r.scenario + '/' + r.case for r in broken)}" if broken else "")
    )
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
