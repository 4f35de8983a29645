"""The model card: ``README.md`` in the Hugging Face Hub's format (YAML metadata, then Markdown).

It says what the model is for and how far to trust it: classes, data size and split, the
recipe and why, metrics with 95 % intervals (Wilson's, for accuracy), the preprocessing,
intended use and limits, and how to load the model in headstart, timm and ONNX Runtime.
Built from the run's own description (``headstart.json`` as a typed ``ArtifactMeta``) and
``metrics.json`` (``headstart.runfolder.read_metrics``), never from dict keys; nothing
in it names a path on the user's machine, and every name from the data is escaped (YAML
values are JSON strings, Markdown special characters are backslashed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headstart.intervals import accuracy_interval as _accuracy_interval
from headstart.metrics import Metrics
from headstart.runfolder import ArtifactMeta, read_metrics

SPLITS = ("test", "val")  # the held-out splits a card reports, most trustworthy first


@dataclass(frozen=True)
class CardFacts:
    """What a card is built from: the run's description and its per-split metrics."""

    name: str  # the model's name (the run folder's or the repository's)
    meta: ArtifactMeta  # headstart.json as shared (timm_layout.shared_meta: absolute paths reduced)
    metrics: Mapping[str, Metrics] = field(default_factory=dict)  # metrics.json: split -> Metrics

    @classmethod
    def from_run(cls, run_dir: Path, meta: ArtifactMeta, name: str | None = None) -> CardFacts:
        """The facts of ``run_dir``: ``meta`` and its metrics.json (none: a card without results;
        a damaged one: a one-line ArtifactError)."""
        return cls(name or run_dir.resolve().name, meta, read_metrics(run_dir))


def md(text: Any) -> str:
    """One line of user text, safe inside Markdown (and HTML) prose or a table cell.

    Example:
        >>> md("a|b <i>*")
        'a\\\\|b &lt;i&gt;\\\\*'
    """
    flat = " ".join(str(text).split())
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_{}\[\]()#+!|~-])", r"\\\1", flat)


def code(text: Any) -> str:
    """User text as an inline code span (no backslash escapes work inside one)."""
    return "`" + " ".join(str(text).split()).replace("`", "'") + "`"


def accuracy_interval(m: Metrics) -> tuple[int, float, float, float]:
    """(decisions, accuracy, lower, upper): multilabel decides once per (image, class)."""
    n = m.count * (len(m.classes) if m.task == "multilabel" else 1)
    if n < 1:
        return n, m.accuracy, 0.0, 1.0
    interval = _accuracy_interval(m.accuracy, n)
    return n, m.accuracy, interval.low, interval.high


def _yaml(facts: CardFacts) -> str:
    meta = facts.meta
    dataset = meta.data.data if meta.data is not None and meta.data.data else "local image folder"
    lines = [
        "---",
        "library_name: timm",
        "pipeline_tag: image-classification",
        "tags:",
        *(f"- {json.dumps(t)}" for t in ("image-classification", "timm", "headstart", meta.task)),
        f"datasets:\n- {json.dumps(dataset)}",
        "metrics:\n- accuracy\n- f1",
        "model-index:",
        f"- name: {json.dumps(facts.name)}",
        "  results:",
    ]
    for split in [s for s in SPLITS if s in facts.metrics]:
        m = facts.metrics[split]
        lines += [
            "  - task:\n      type: image-classification\n      name: Image Classification",
            f"    dataset:\n      name: {json.dumps(dataset)}\n      type: imagefolder\n      split: {split}",
            "    metrics:",
            f"    - type: accuracy\n      value: {m.accuracy:.4f}\n      name: {json.dumps(split + ' accuracy')}",
            f"    - type: f1\n      value: {m.macro_f1:.4f}\n      name: {json.dumps(split + ' macro F1')}",
        ]
    if not any(s in facts.metrics for s in SPLITS):
        lines.pop()  # model-index needs results; without metrics there is none
        lines.pop()
        lines.pop()
    return "\n".join([*lines, "---", ""])


def _classes(facts: CardFacts) -> list[str]:
    classes = facts.meta.classes
    splits = [s for s in ("val", "test") if s in facts.metrics]
    rows = ["## Classes", "", f"{len(classes)} classes, task {md(facts.meta.task)}.", ""]
    rows += ["| class | " + " | ".join(f"{s} images" for s in splits) + " |", "|---" * (1 + len(splits)) + "|"]
    support = {s: {c.name: c.support for c in facts.metrics[s].per_class} for s in splits}
    rows += [f"| {md(c)} | " + " | ".join(str(support[s].get(c, "")) for s in splits) + " |" for c in classes]
    return rows


def _data(facts: CardFacts) -> list[str]:
    data = facts.meta.data
    counts = dict(data.counts or {}) if data is not None else {}
    split = ", ".join(f"{md(k)} {v:,}" for k, v in counts.items())
    where = data.data if data is not None and data.data is not None else "a local folder"
    layout = data.layout if data is not None else "folders"
    rows = ["## Data", "", f"{sum(counts.values()):,} images from {code(where)} ({md(layout)}): {split}."]
    if data is not None and data.skipped:
        rows.append(f"{data.skipped} unreadable files were skipped.")
    rows.append("The validation split was held out from training; test images, when present, were never used for any choice.")
    return rows


def _recipe(facts: CardFacts) -> list[str]:
    model, train, plan = facts.meta.model, facts.meta.train, facts.meta.plan
    base = f"Base {code(model.arch)} ({'pretrained' if model.pretrained else 'trained from scratch'}) with a {md(model.head)} head"
    if train is None:  # a description without (readable) training options
        options = "the training options were not recorded."
    else:
        options = (
            f"{md(train.frozen_epochs)} frozen-base epochs then {md(train.finetune_epochs)} fine-tuning epochs, "
            f"optimizer {md(train.optimizer)}, batch {md(train.batch_size)}."
        )
    rows = ["## Training", "", f"{base}; {options}"]
    if plan is not None:
        rows += ["", "The recipe was planned from the data and the machine (`--recipe auto`), because:", ""]
        rows += [f"- {md(r)}" for r in plan.reasons]
    else:
        rows += ["", "The recipe was given as options (no plan)."]
    return rows


def _results(facts: CardFacts) -> list[str]:
    rows = ["## Results", ""]
    splits = [s for s in SPLITS if s in facts.metrics]
    if not splits:
        return [*rows, "No held-out metrics were recorded for this model."]
    rows += ["| split | images | accuracy (95 % interval) | balanced accuracy | macro F1 |", "|---|---|---|---|---|"]
    for s in splits:
        m = facts.metrics[s]
        n, acc, lo, hi = accuracy_interval(m)
        rows.append(f"| {s} | {m.count:,} | {acc:.4f} ({lo:.4f} - {hi:.4f}) | {m.balanced_accuracy:.4f} | {m.macro_f1:.4f} |")
    rows += [
        "",
        "Intervals: 95 % Wilson score intervals for accuracy as a proportion of independent decisions "
        "(multi-label: one per image and class). Balanced accuracy and macro F1 are point estimates.",
    ]
    return rows


def _preprocessing(facts: CardFacts) -> list[str]:
    p = facts.meta.preprocess
    return [
        "## Preprocessing",
        "",
        f"Decode to RGB (EXIF orientation applied, transparency on white); resize the shorter side to {md(p.resize_size)} px "
        f"({md(p.interpolation)}); centre-crop {md(p.input_size)} x {md(p.input_size)}; scale to [0, 1]; "
        f"normalize with mean {md(list(p.mean))} and std {md(list(p.std))}; channels first. "
        "timm's `resolve_model_data_config` + `create_transform` reproduce it from `config.json`.",
    ]


def _use(facts: CardFacts, repo: str) -> list[str]:
    task = facts.meta.task
    activation = "sigmoid per class" if task == "multilabel" else "softmax"
    convnet = facts.meta.model.arch.startswith("convnet_")
    register = "import headstart.models  # registers headstart's convnet_* with timm\n" if convnet else ""
    decide = f"p >= {facts.meta.threshold}" if task != "multiclass" else "the largest probability"
    return [
        "## Intended use and limits",
        "",
        "Classifying images like the training images into exactly these classes. The model has not seen other kinds of "
        "images and will still name one of its classes for them (it does not know what it does not know). The metrics hold "
        "for data drawn like the held-out split; check them on your own data before relying on the model, and do not use it "
        "for decisions about people.",
        "",
        "## How to use",
        "",
        f"Outputs are logits; probabilities are their {activation}, and the decision is {decide}.",
        "",
        "headstart:",
        "",
        f"```bash\nheadstart predict hf-hub:{repo} photo.jpg\n```",
        "",
        "timm:",
        "",
        "```python\nimport timm, torch\nfrom PIL import Image\n"
        + register
        + f'model = timm.create_model("hf-hub:{repo}", pretrained=True).eval()\n'
        + "cfg = timm.data.resolve_model_data_config(model)\n"
        + "transform = timm.data.create_transform(**cfg)\n"
        + 'rgba = Image.open("photo.png").convert("RGBA")  # headstart puts transparency on white\n'
        + 'image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")\n'
        + "probs = model(transform(image).unsqueeze(0))."
        + ("sigmoid()" if task == "multilabel" else "softmax(-1)")
        + "\n```",
        "",
        "ONNX (probabilities out, preprocessing as above), from the run folder this model was exported from:",
        "",
        "```bash\nheadstart export RUN --format onnx\nheadstart predict RUN/export/model.onnx photo.jpg   # onnxruntime, no torch\n```",
    ]


def model_card(facts: CardFacts, repo: str = "USER/REPO") -> str:
    """The whole README.md.

    Example:
        >>> text = model_card(CardFacts("pets", read_meta(Path("runs/pets"))))          # doctest: +SKIP
        >>> text.startswith("---\\nlibrary_name: timm")                                 # doctest: +SKIP
        True
    """
    meta = facts.meta
    intro = [
        f"# {md(facts.name)}",
        "",
        f"An image classifier ({md(meta.task)}, {len(meta.classes)} classes) on "
        f"{code(meta.model.arch)}, trained with [headstart](https://pypi.org/project/headstart/).",
    ]
    parts = [intro, _classes(facts), _data(facts), _recipe(facts), _results(facts), _preprocessing(facts), _use(facts, repo)]
    return _yaml(facts) + "\n" + "\n\n".join("\n".join(p) for p in parts) + "\n"
