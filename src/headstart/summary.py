"""``headstart summary RUN``: the layer table of a trained run (``headstart.models.layers``)
with what its last training phase trained, as the CLI prints it and the report shows it.

Example:
    >>> print_rows = run_summary(load_artifact("runs/pets"))     # doctest: +SKIP
    >>> Console().print(summary_table(print_rows))                # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from headstart.artifact import Artifact
from headstart.models.layers import LayerRow, layer_summary, trained_last


def run_summary(artifact: Artifact) -> list[LayerRow]:
    """The summary of a trained run (an Artifact), with what its last phase trained."""
    meta = artifact.meta
    if meta.plan is not None:  # a planned recipe: its phases say what ran
        phases = meta.plan.raw.get("phases")
        finetune = (
            sum(int(p.get("epochs", 0)) for p in phases if isinstance(p, dict) and p.get("kind") != "frozen")
            if isinstance(phases, list)
            else 1
        )
    else:  # finetune_epochs None was resolved where it trained (0 on a CPU, 3 on a GPU): counted as the CPU default
        finetune = 1 if meta.train is None else meta.train.finetune_epochs or 0
    unfreeze = meta.train.unfreeze if meta.train is not None else 0
    trainable = trained_last(artifact.network, bool(artifact.model.pretrained), finetune, unfreeze)
    return layer_summary(artifact.network, artifact.preprocess.input_size, trainable)


def summary_table(rows: list[LayerRow], title: str = "Layers") -> Any:
    """A rich Table of ``rows`` with a total line."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column, justify in (("layer", "left"), ("type", "left"), ("output shape", "left"), ("parameters", "right"), ("trainable", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(escape(r.name), escape(r.kind), r.shape, f"{r.params:,}", f"{r.trainable:,}")
    table.add_section()
    table.add_row("total", "", "", f"{sum(r.params for r in rows):,}", f"{sum(r.trainable for r in rows):,}")
    return table
