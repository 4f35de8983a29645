"""The model card: ``README.md`` in the Hugging Face Hub's format (YAML metadata, then Markdown).

It says what the model is for and how far to trust it: classes, data size and split, the
recipe and why, metrics with 95 % intervals (Wilson's, for accuracy), the preprocessing,
intended use and limits, and how to load the model in headstart, timm and ONNX Runtime.
Built from the run's own description (``headstart.json``) and ``metrics.json``; nothing
in it names a path on the user's machine, and every name from the data is escaped (YAML
values are JSON strings, Markdown special characters are backslashed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headstart.intervals import accuracy_interval as _accuracy_interval

SPLITS = ("test", "val")  # the held-out splits a card reports, most trustworthy first


@dataclass(frozen=True)
class CardFacts:
    """What a card is built from: the run's description and its per-split metrics."""

    name: str  # the model's name (the run folder's or the repository's)
    meta: dict[str, Any]  # headstart.json (absolute paths already reduced)
    metrics: dict[str, dict[str, Any]]  # metrics.json: split -> Metrics.to_dict()

    @classmethod
    def from_run(cls, run_dir: Path, meta: dict[str, Any], name: str | None = None) -> CardFacts:
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            metrics = {}
        if not isinstance(metrics, dict):
            metrics = {}
        return cls(name or run_dir.resolve().name, meta, {k: v for k, v in metrics.items() if isinstance(v, dict)})


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


def accuracy_interval(m: dict[str, Any]) -> tuple[int, float, float, float]:
    """(decisions, accuracy, lower, upper): multilabel decides once per (image, class)."""
    n = int(m.get("count", 0)) * (len(m.get("classes", [])) if m.get("task") == "multilabel" else 1)
    acc = float(m.get("accuracy", 0.0))
    if n < 1:
        return n, acc, 0.0, 1.0
    interval = _accuracy_interval(acc, n)
    return n, acc, interval.low, interval.high


def _yaml(facts: CardFacts) -> str:
    meta = facts.meta
    data = meta.get("data", {}) if isinstance(meta.get("data"), dict) else {}
    dataset = str(data.get("data") or "local image folder")
    lines = [
        "---",
        "library_name: timm",
        "pipeline_tag: image-classification",
        "tags:",
        *(f"- {json.dumps(t)}" for t in ("image-classification", "timm", "headstart", meta.get("task", "multiclass"))),
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
            f"    - type: accuracy\n      value: {float(m.get('accuracy', 0)):.4f}\n      name: {json.dumps(split + ' accuracy')}",
            f"    - type: f1\n      value: {float(m.get('macro_f1', 0)):.4f}\n      name: {json.dumps(split + ' macro F1')}",
        ]
    if not any(s in facts.metrics for s in SPLITS):
        lines.pop()  # model-index needs results; without metrics there is none
        lines.pop()
        lines.pop()
    return "\n".join([*lines, "---", ""])


def _classes(facts: CardFacts) -> list[str]:
    classes = [str(c) for c in facts.meta.get("classes", [])]
    splits = [s for s in ("val", "test") if s in facts.metrics]
    rows = ["## Classes", "", f"{len(classes)} classes, task {md(facts.meta.get('task'))}.", ""]
    rows += ["| class | " + " | ".join(f"{s} images" for s in splits) + " |", "|---" * (1 + len(splits)) + "|"]
    support = {s: {c.get("name"): c.get("support") for c in facts.metrics[s].get("per_class", [])} for s in splits}
    rows += [f"| {md(c)} | " + " | ".join(str(support[s].get(c, "")) for s in splits) + " |" for c in classes]
    return rows


def _data(facts: CardFacts) -> list[str]:
    data = facts.meta.get("data", {}) if isinstance(facts.meta.get("data"), dict) else {}
    counts = data.get("counts", {}) if isinstance(data.get("counts"), dict) else {}
    split = ", ".join(f"{md(k)} {int(v):,}" for k, v in counts.items())
    total = sum(int(v) for v in counts.values())
    rows = [
        "## Data",
        "",
        f"{total:,} images from {code(data.get('data', 'a local folder'))} ({md(data.get('layout', 'folders'))}): {split}.",
    ]
    if data.get("skipped"):
        rows.append(f"{int(data['skipped'])} unreadable files were skipped.")
    rows.append("The validation split was held out from training; test images, when present, were never used for any choice.")
    return rows


def _recipe(facts: CardFacts) -> list[str]:
    model = facts.meta.get("model", {})
    train = facts.meta.get("train", {})
    plan = facts.meta.get("plan")
    rows = ["## Training", ""]
    rows.append(
        f"Base {code(model.get('arch'))} ({'pretrained' if model.get('pretrained') else 'trained from scratch'}) "
        f"with a {md(model.get('head', 'linear'))} head; {md(train.get('frozen_epochs'))} frozen-base epochs then "
        f"{md(train.get('finetune_epochs'))} fine-tuning epochs, optimizer {md(train.get('optimizer'))}, batch {md(train.get('batch_size'))}."
    )
    if isinstance(plan, dict):
        rows += ["", "The recipe was planned from the data and the machine (`--recipe auto`), because:", ""]
        rows += [f"- {md(r)}" for r in plan.get("reasons", [])]
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
        rows.append(
            f"| {s} | {int(m.get('count', 0)):,} | {acc:.4f} ({lo:.4f} - {hi:.4f}) | "
            f"{float(m.get('balanced_accuracy', 0)):.4f} | {float(m.get('macro_f1', 0)):.4f} |"
        )
    rows += [
        "",
        "Intervals: 95 % Wilson score intervals for accuracy as a proportion of independent decisions "
        "(multi-label: one per image and class). Balanced accuracy and macro F1 are point estimates.",
    ]
    return rows


def _preprocessing(facts: CardFacts) -> list[str]:
    p = facts.meta.get("preprocess", {})
    return [
        "## Preprocessing",
        "",
        f"Decode to RGB (EXIF orientation applied, transparency on white); resize the shorter side to {md(p.get('resize_size'))} px "
        f"({md(p.get('interpolation'))}); centre-crop {md(p.get('input_size'))} x {md(p.get('input_size'))}; scale to [0, 1]; "
        f"normalize with mean {md(p.get('mean'))} and std {md(p.get('std'))}; channels first. "
        "timm's `resolve_model_data_config` + `create_transform` reproduce it from `config.json`.",
    ]


def _use(facts: CardFacts, repo: str) -> list[str]:
    task = facts.meta.get("task")
    activation = "sigmoid per class" if task == "multilabel" else "softmax"
    arch = str(facts.meta.get("model", {}).get("arch", ""))
    register = "import headstart.models  # registers headstart's convnet_* with timm\n" if arch.startswith("convnet_") else ""
    threshold = facts.meta.get("model", {}).get("threshold", 0.5)
    decide = f"p >= {threshold}" if task != "multiclass" else "the largest probability"
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
        >>> text = model_card(CardFacts("pets", load_artifact("runs/pets").meta, {}))   # doctest: +SKIP
        >>> text.startswith("---\\nlibrary_name: timm")                                 # doctest: +SKIP
        True
    """
    model = facts.meta.get("model", {})
    intro = [
        f"# {md(facts.name)}",
        "",
        f"An image classifier ({md(facts.meta.get('task'))}, {len(facts.meta.get('classes', []))} classes) on "
        f"{code(model.get('arch'))}, trained with [headstart](https://pypi.org/project/headstart/).",
    ]
    parts = [intro, _classes(facts), _data(facts), _recipe(facts), _results(facts), _preprocessing(facts), _use(facts, repo)]
    return _yaml(facts) + "\n" + "\n\n".join("\n".join(p) for p in parts) + "\n"
