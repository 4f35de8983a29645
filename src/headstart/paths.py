"""Where headstart may write: never inside the user's data.

The README promises a data folder is only ever read. Every command that writes (train,
evaluate, lr-find, predict --out, doctor) checks its output path here before any work.
"""

from __future__ import annotations

import os
from pathlib import Path

from headstart.errors import ConfigError


def inside_data(path: str | os.PathLike, data: str | os.PathLike) -> bool:
    """True when ``path`` is the data folder or below it (a CSV: only the file itself)."""
    root, target = Path(data).resolve(), Path(path).resolve()
    return target == root or (root.is_dir() and root in target.parents)


def refuse_inside_data(
    out: str | os.PathLike, data: str | os.PathLike, *, option: str = "--out", default: str | os.PathLike | None = None
) -> None:
    """Raise ConfigError when ``out`` lies inside ``data``, naming a place outside it.

    Example:
        >>> refuse_inside_data("runs/pets", "pets/")     # fine: beside the data
    """
    if not inside_data(out, data):
        return
    suggestion = Path(default) if default is not None and not inside_data(default, data) else outside(data, Path(out).name)
    raise ConfigError(
        f"{option} {out} is inside the data folder {Path(data)}; headstart never writes there. "
        f"Choose a folder outside it, e.g. {option} {suggestion}"
    )


def outside(data: str | os.PathLike, name: str) -> Path:
    """``runs/<name>`` beside the data folder: a default that is never inside it."""
    root = Path(data).resolve()
    return root.parent / "runs" / (name or root.name)


def default_outside(default: str | os.PathLike, data: str | os.PathLike, *, option: str = "--out") -> Path:
    """``default`` (relative to the working folder), refused when the working folder is
    inside the data: ``cd DATA; headstart train .`` must not write into DATA."""
    if inside_data(default, data):
        raise ConfigError(
            f"the default output {default} would be inside the data folder {Path(data)} (you are running from inside it); "
            f"give {option} {outside(data, Path(default).name)} or run from outside the data."
        )
    return Path(default)
