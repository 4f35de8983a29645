"""The reduced fault suite (bench/faults.py --quick): every scenario on tiny data, in seconds.

Each scenario returns one row per thing it tried; a test fails with the table of rows
when any of them broke. The full version (minutes, real data) is the benchmark.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faultkit.common import Context, Row


def run_quick(name: str, tmp_path: Path) -> list[Row]:
    import importlib

    rows = importlib.import_module(f"bench.faultkit.{name}").run(Context(work=tmp_path, quick=True, say=lambda _: None))
    assert rows, f"{name} tried nothing"
    broken = [f"{r.case}: {r.outcome}" for r in rows if not r.ok]
    assert not broken, "\n".join(broken)
    return rows


@pytest.mark.slow
def test_kill_anywhere_resumes_to_the_same_result(tmp_path):
    rows = run_quick("kill", tmp_path)
    assert any("resume" in r.outcome for r in rows), "no kill landed after config.json: the resume path went untested"


@pytest.mark.slow
def test_a_memory_limit_ends_in_one_line_not_a_kernel_kill(tmp_path):
    from bench.faultkit.memory import cgroups_usable

    why = cgroups_usable()
    if why is not None:  # CI runs as root, where it is tried; tests/test_memory_guard.py runs everywhere
        pytest.skip(f"the memory scenario {why}")
    rows = run_quick("memory", tmp_path)
    assert any("out of memory" in r.outcome for r in rows), "no limit was low enough to be reached"


@pytest.mark.slow
def test_many_processes_at_once_end_as_each_would_alone(tmp_path):
    rows = run_quick("crowd", tmp_path)
    assert any("refused" in r.outcome for r in rows), "the second writer of one predictions file was never refused"


@pytest.mark.slow
def test_server_survives_hostile_clients(tmp_path):
    rows = run_quick("server", tmp_path)
    summary = next(r for r in rows if r.case == "summary").figures
    assert summary["normal_200"] > 0 and summary["normal_unanswered"] == 0
    assert summary["5xx_not_503"] == 0 and summary["rss_growth_pct"] <= 10  # found 174 % before memory went back to the OS
    decoded = next(r for r in rows if r.case == "40 MP").figures
    assert decoded.get("PNG: 200", 0) > 0 and decoded.get("PNG +1 column: 413", 0) > 0  # the limit's both sides were hit


@pytest.mark.slow
def test_full_disk_is_one_line_then_resumes_to_the_same_result(tmp_path):
    from bench.faultkit.disk import can_mount

    why = can_mount(tmp_path)
    if why is not None:  # CI runs as root, where it is tried
        pytest.skip(f"the full-disk scenario {why}")
    rows = run_quick("disk", tmp_path)
    assert any("resume ok" in r.outcome for r in rows), "no run-folder case reached --resume"
    assert any("cannot write the image cache" in r.outcome for r in rows), "the cache never ran out of space"


@pytest.mark.slow
def test_hostile_input_is_refused_or_survived(tmp_path):
    rows = run_quick("hostile", tmp_path)
    cases = {r.case for r in rows}
    assert {"FIFO x.png in DATA (doctor)", "EPS named .jpg (fake gs on PATH)", "cache clear of a project folder"} <= cases
    assert any(c.startswith("serve 0.0.0.0") for c in cases)
