"""Renamed modules keep their old import paths for one release, with a DeprecationWarning."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import headstart

# old module -> new module, for the names users may have typed (CHANGELOG.md lists them all)
ALIASES = {"headstart.evaluate": "headstart.metrics"}


@pytest.mark.parametrize("old, new", ALIASES.items())
def test_the_old_path_still_gives_the_same_objects_and_warns(old, new):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated .* 0\.3; use {new}\.Metrics"):
        metrics_class = module.Metrics
    assert metrics_class is importlib.import_module(new).Metrics


def test_from_import_of_the_old_path_warns_and_unknown_names_still_fail():
    with pytest.warns(DeprecationWarning, match="use headstart.metrics.compute_metrics"):
        from headstart.evaluate import compute_metrics
    from headstart.metrics import compute_metrics as new

    assert compute_metrics is new
    with pytest.raises(AttributeError):
        importlib.import_module("headstart.evaluate").no_such_name  # noqa: B018


def test_headstart_itself_imports_no_deprecated_module():
    """The aliases are for users: headstart's own code (and its tests) use the new paths."""
    root = Path(headstart.__file__).parent
    offenders = []
    for path in [*root.rglob("*.py"), *Path(__file__).parent.glob("*.py")]:
        if path.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):  # from headstart.evaluate import X; from headstart import evaluate
                names = {node.module or ""} | {f"{node.module}.{a.name}" for a in node.names}
            else:
                continue
            if names & set(ALIASES):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, offenders
