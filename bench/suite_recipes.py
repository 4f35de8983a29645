"""The recipe benchmark suite: what `headstart train` reaches on held-out test sets, as a user runs it.

Only the command line is measured, each command in its own process with a fresh, empty
HEADSTART_CACHE_DIR (a cold first run), on the data sets bench/suite_data.py writes
(ROOT/<name>/{train,test}/<class>/). For each data set, three variants of
``headstart train ROOT/<name>/train --out RUN``:

  * ``probe224``: the bundled base's linear probe at 224 px, as CLI options:
    ``--recipe fixed --image-size 224 --frozen-epochs 30 --finetune-epochs 0`` (frozen
    tf_efficientnet_lite0, 30 head epochs on cached features, the same on any device);
  * ``default``: ``headstart train DATA`` with no option at all;
  * ``budget``: ``--time T`` with T = --budget-factor (5) x the probe's measured train wall time.

then ``headstart evaluate RUN --data ROOT/<name>/test`` (the accuracy) and ``headstart
predict RUN ROOT/<name>/test --out predictions.csv`` (per-image answers, for the paired
comparison; its accuracy must equal evaluate's). Reported per variant: test accuracy with
its 95 % Wilson interval; train wall and CPU seconds; peak RSS of the process tree
(/proc sampled every 0.2 s, all descendants summed: data-loader workers included) and the
largest single process's (wait4's ru_maxrss); the plan the run printed. Between variants:
the paired accuracy difference on the same test images with Newcombe's hybrid score
interval (method 10, built on McNemar's discordant pairs; headstart.intervals).

Goals checked (issue 18's benchmark): the default is not worse than the probe beyond the
paired interval (its upper bound >= 0) at no more than 2x the probe's train time; the
budget reaches at least probe + 2 points.

    python bench/suite_data.py --root DATA fashion-600-200 clipart clipart64 digits
    python bench/suite_recipes.py --root DATA fashion-600-200 clipart clipart64 digits \\
        --work /tmp/suite-work [--variants probe224,default,budget] [--budget-factor 5] \\
        [--markdown bench/results/suite.md] [--tag baseline]

Writes bench/results/suite-<machine>-<date>[-<tag>].json and, with --markdown, the table.
Timings on a shared machine are only comparable within one run: the load average at each
command's start and end is recorded beside its seconds.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.suite_data import MANIFEST, data_root, prepare  # noqa: E402
from headstart.intervals import Difference, PairedCounts, paired_difference, wilson

HERE = Path(__file__).resolve().parent
PROBE_OPTIONS = ["--recipe", "fixed", "--image-size", "224", "--frozen-epochs", "30", "--finetune-epochs", "0"]
VARIANTS = ("probe224", "default", "budget")
PAIRS = (("default", "probe224"), ("budget", "probe224"), ("budget", "default"))
SAMPLE_SECONDS = 0.2


@dataclass(frozen=True)
class Measured:
    """One command: exit status, seconds, memory, the machine's load around it."""

    rc: int
    wall_s: float
    cpu_s: float  # user + system of the process and every descendant it waited for
    peak_tree_rss_mb: float  # largest sum of RSS over the process tree, sampled
    max_process_rss_mb: float  # largest single process (ru_maxrss)
    load_start: float
    load_end: float


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants now, in MB (Linux /proc)."""
    tree, todo, total = _children(), [root], 0
    while todo:
        pid = todo.pop()
        todo += tree.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def measure(command: list[str], env: dict[str, str], log: Path) -> Measured:
    """Run ``command`` to its end, stdout and stderr into ``log``; what it cost."""
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        peak, done = [0.0], threading.Event()

        def sample() -> None:
            while not done.wait(SAMPLE_SECONDS):
                peak[0] = max(peak[0], tree_rss_mb(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    return Measured(
        process.returncode,
        round(time.perf_counter() - started, 1),
        round(usage.ru_utime + usage.ru_stime, 1),
        round(peak[0], 0),
        round(usage.ru_maxrss / 1024, 0),
        round(load_start, 2),
        round(os.getloadavg()[0], 2),
    )


def headstart_command() -> list[str]:
    """The CLI of the Python running this script (its virtual environment's console script)."""
    script = Path(sys.executable).with_name("headstart")
    return [str(script)] if script.exists() else [sys.executable, "-m", "headstart.cli"]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def plan_of(run: Path, log: Path) -> dict:
    """What the run trained, from RUN/headstart.json (read defensively: its schema is
    moving) and the "Plan:" line the command printed."""
    meta = _read_json(run / "headstart.json")
    plan = meta.get("plan") or {}
    train = meta.get("train") or {}
    phases = plan.get("phases") or []
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    return {
        "arch": (meta.get("model") or {}).get("arch"),
        "input_size": (meta.get("preprocess") or {}).get("input_size"),
        "phases": [f"{p.get('kind')} {p.get('epochs')}" for p in phases]
        or [f"frozen {train.get('frozen_epochs')}", f"finetune {train.get('finetune_epochs')}"],
        "planned": bool(plan),
        "printed": next((line for line in lines if line.startswith("Plan:")), None),
        "reasons": plan.get("reasons", []),
    }


def test_answers(predictions: Path, test: Path) -> list[bool]:
    """Per test image (sorted by path): was predict's top class its folder's name?"""
    with predictions.open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: r["path"])
    expected = sum(1 for _ in test.rglob("*.png"))
    if len(rows) != expected or any(r.get("error") for r in rows):
        raise SystemExit(f"{predictions}: {len(rows)} predictions for {expected} test images, or errors; see the log beside it.")
    return [Path(r["path"]).parent.name == r["prediction"] for r in rows]


def run_variant(name: str, options: list[str], data: Path, work: Path, env: dict[str, str]) -> dict:
    """Train, evaluate and predict one variant with a cold cache; its figures."""
    run, cache = work / name, work / f"{name}-cache"
    for folder in (run, cache):
        shutil.rmtree(folder, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    env = {**env, "HEADSTART_CACHE_DIR": str(cache)}
    cli = headstart_command()
    steps = {
        "train": cli + ["train", str(data / "train"), "--out", str(run)] + options,
        "evaluate": cli + ["evaluate", str(run), "--data", str(data / "test"), "--out", str(run / "eval-test"), "--no-report"],
        "predict": cli + ["predict", str(run), str(data / "test"), "--out", str(run / "test_predictions.csv"), "--top-k", "1"],
    }
    measured = {}
    for step, command in steps.items():
        log = work / f"{name}-{step}.log"
        measured[step] = measure(command, env, log)
        if measured[step].rc != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
            raise SystemExit(f"{' '.join(command)} failed (exit {measured[step].rc}); the end of {log}:\n{tail}")
    shutil.rmtree(cache, ignore_errors=True)  # a cold cache each time; and the disk back
    answers = test_answers(run / "test_predictions.csv", data / "test")
    evaluated = next(iter(_read_json(run / "eval-test" / "metrics.json").values()), {})
    interval = wilson(sum(answers), len(answers))
    accuracy = {"estimate": round(interval.estimate, 4), "low": round(interval.low, 4), "high": round(interval.high, 4)}
    if abs(evaluated.get("accuracy", -1) - sum(answers) / len(answers)) > 1e-6:
        raise SystemExit(f"{name}: evaluate's accuracy {evaluated.get('accuracy')} differs from predict's {interval.estimate}.")
    return {
        "variant": name,
        "options": options,
        "plan": plan_of(run, work / f"{name}-train.log"),
        "test_images": len(answers),
        "accuracy": accuracy,
        "balanced_accuracy": evaluated.get("balanced_accuracy"),
        "macro_f1": evaluated.get("macro_f1"),
        "train": asdict(measured["train"]),
        "evaluate": asdict(measured["evaluate"]),
        "predict": asdict(measured["predict"]),
        "answers": "".join("1" if a else "0" for a in answers),  # per test image, sorted by path: pairs across result files
    }


def accuracy_text(a: dict) -> str:
    return f"{a['estimate']:.4f} [{a['low']:.4f}, {a['high']:.4f}]"


def compare(rows: dict[str, dict]) -> list[dict]:
    """The paired differences between the variants run, on the same test images."""
    out = []
    for a, b in PAIRS:
        if a in rows and b in rows:
            counts = PairedCounts.of([c == "1" for c in rows[a]["answers"]], [c == "1" for c in rows[b]["answers"]])
            out.append({"a": a, "b": b, **asdict(counts), "difference": asdict(paired_difference(counts))})
    return out


def goals(rows: dict[str, dict], pairs: list[dict]) -> dict:
    """Issue 18's benchmark goals for one data set (None where a variant was not run)."""
    diff = {(p["a"], p["b"]): Difference(**p["difference"]) for p in pairs}
    wall = {k: v["train"]["wall_s"] for k, v in rows.items()}
    out: dict = {"default_not_worse_than_probe": None, "default_within_2x_probe_time": None, "budget_probe_plus_2_points": None}
    if ("default", "probe224") in diff:
        out["default_not_worse_than_probe"] = diff["default", "probe224"].high >= 0
        out["default_within_2x_probe_time"] = wall["default"] <= 2 * wall["probe224"]
    if ("budget", "probe224") in diff:
        out["budget_probe_plus_2_points"] = diff["budget", "probe224"].estimate >= 0.02
    return out


def reused(path: Path | None, name: str) -> dict[str, dict]:
    """The variants of data set ``name`` in an earlier result file (--reuse), marked as such."""
    if path is None:
        return {}
    earlier = json.loads(path.read_text())
    found = next((d for d in earlier["datasets"] if d["dataset"] == name), {"variants": {}})
    return {k: {**v, "reused_from": f"{path.name} ({earlier['commit']}, {earlier['date']})"} for k, v in found["variants"].items()}


def run_dataset(name: str, root: Path, work: Path, variants: list[str], factor: float, env: dict[str, str], reuse: Path | None) -> dict:
    data = prepare(name, root)
    facts = json.loads((data / MANIFEST).read_text())
    rows: dict[str, dict] = {k: v for k, v in reused(reuse, name).items() if k not in variants}
    for variant in variants:
        if variant == "budget":
            if "probe224" not in rows:
                raise SystemExit(
                    "--variants: 'budget' is a multiple of the probe's time; run probe224 too, or --reuse a result file with it."
                )
            options = ["--time", f"{round(factor * rows['probe224']['train']['wall_s'])}s"]
        else:
            options = PROBE_OPTIONS if variant == "probe224" else []
        rows[variant] = run_variant(variant, options, data, work / name, env)
        r = rows[variant]
        print(f"  {name} {variant}: accuracy {accuracy_text(r['accuracy'])}, train {r['train']['wall_s']} s", flush=True)
    pairs = compare(rows)
    result = {"dataset": name, "train_images": facts["train_images"], "test_images": facts["test_images"], "manifest": facts}
    result.update({"variants": rows, "paired": pairs, "goals": goals(rows, pairs)})
    return result


def markdown(results: dict) -> str:
    """The suite's table (the README's recipe table is this output)."""
    m = results["machine"]
    head = [
        f"Recipe suite, {results['date']} on {m['host']} ({m['cpus']} CPUs, {m['device']}; load average "
        f"{m['load_start']} at start, {m['load_end']} at end), headstart {results['commit']}. `bench/suite_recipes.py`: "
        "each variant a cold `headstart train DATA/train` (fresh cache), scored by `headstart evaluate` on the held-out test split. "
        "probe224 = `--recipe fixed --image-size 224 --frozen-epochs 30 --finetune-epochs 0`; default = no options; "
        f"budget = `--time` {results['budget_factor']}x the probe's train wall time. Accuracy: 95 % Wilson interval; "
        "vs probe: paired difference on the same images, 95 % Newcombe interval (McNemar's discordant pairs). "
        "Peak RSS: the process tree's, sampled.",
        "",
        "| data set (train / test) | variant | plan | test accuracy [95 % CI] | vs probe224 [95 % CI] | train wall s | train CPU s | peak RSS GB |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: |",
    ]
    lines = head
    for d in results["datasets"]:
        diff = {p["a"]: Difference(**p["difference"]) for p in d["paired"] if p["b"] == "probe224"}
        for name, r in d["variants"].items():
            plan = r["plan"]
            side = f"{plan['arch']} {plan['input_size']} px, " + " + ".join(plan["phases"])
            option = " ".join(r["options"]) or "(none)"
            variant = f"{name} `{option}`" + (f" (from {r['reused_from']})" if "reused_from" in r else "")
            versus = f"{diff[name].estimate:+.4f} [{diff[name].low:+.4f}, {diff[name].high:+.4f}]" if name in diff else ""
            t = r["train"]
            lines.append(
                f"| {d['dataset']} ({d['train_images']:,} / {d['test_images']:,}) | {variant} | {side} | "
                f"{accuracy_text(r['accuracy'])} | {versus} | {t['wall_s']:.0f} | {t['cpu_s']:.0f} | {t['peak_tree_rss_mb'] / 1024:.2f} |"
            )
    return "\n".join(lines) + "\n"


def machine() -> dict:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return {"host": socket.gethostname(), "cpus": os.cpu_count(), "device": device, "load_start": round(os.getloadavg()[0], 2)}


def commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(HERE), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="data sets (bench/suite_data.py names), e.g. fashion-600-200 clipart clipart64 digits")
    parser.add_argument("--root", help="Data sets folder (default: $HEADSTART_BENCH_DATA); missing ones are written there first.")
    parser.add_argument("--work", required=True, type=Path, help="Run folders and logs (kept; caches are removed after each run).")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"Comma-separated from {', '.join(VARIANTS)}.")
    parser.add_argument("--budget-factor", type=float, default=5.0, help="budget: --time this many times the probe's train wall time.")
    parser.add_argument("--markdown", type=Path, help="Also write the table to this Markdown file.")
    parser.add_argument(
        "--reuse", type=Path, help="An earlier result file: its rows of the variants not run now join the table and the pairs (marked)."
    )
    parser.add_argument("--tag", default="", help="Appended to the result file's name, e.g. baseline.")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}.")
    root, env = data_root(args.root), dict(os.environ)
    started = datetime.datetime.now(datetime.timezone.utc)
    results: dict = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "machine": machine(),
        "budget_factor": args.budget_factor,
    }
    suffix = f"-{args.tag}" if args.tag else ""
    out = HERE / "results" / f"suite-{socket.gethostname()[:12]}-{started:%Y-%m-%d}{suffix}.json"
    results["datasets"] = []
    for name in args.names:  # the file is rewritten after each data set: a long run stopped early keeps what it measured
        results["datasets"].append(run_dataset(name, root, args.work, variants, args.budget_factor, env, args.reuse))
        results["machine"]["load_end"] = round(os.getloadavg()[0], 2)
        out.write_text(json.dumps(results, indent=1))
    table = markdown(results)
    if args.markdown:
        args.markdown.write_text(table)
    print(table)
    print(f"wrote {out}" + (f" and {args.markdown}" if args.markdown else ""))


if __name__ == "__main__":
    main()
