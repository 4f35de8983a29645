"""One definition of each metric: epochs.csv (training), metrics.json and the report agree,
also when a class is missing from a split (the case where macro averages can differ)."""

from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest
import torch

from headstart.engine.epoch_metrics import make_metrics
from headstart.metrics import compute_metrics
from headstart.report.results import _scores

CLASSES = ["a", "b", "c", "d"]
# truth lacks class "d", which the model predicts twice; class "c" is never predicted
LOGITS = torch.tensor([[3.0, 0, 0, 0], [0, 3, 0, 0], [0, 0, 0, 3], [3, 0, 0, 0], [0, 0, 1, 3], [0, 3, 0, 0], [2, 1, 0, 0]])
TRUTH = [0, 1, 1, 0, 2, 1, 1]


def logged(task: str, preds: torch.Tensor, target: torch.Tensor, k: int, threshold: float = 0.5) -> dict[str, float]:
    """What training logs as acc and f1 for these predictions (in two updates, as batches)."""
    metrics = make_metrics(task, k, threshold)
    metrics.update(preds[:3], target[:3])
    metrics.update(preds[3:], target[3:])
    return {name: float(v) for name, v in metrics.compute().items()}


def report_rows(m) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {k: float(v) for k, v in _scores(m, None) if k.startswith(("macro", "balanced", "accuracy"))}


def test_multiclass_with_a_class_missing_from_the_targets():
    m = compute_metrics(LOGITS.softmax(-1).numpy(), [(t,) for t in TRUTH], CLASSES, "multiclass")
    f1 = lambda p, r: 2 * p * r / (p + r)
    by_hand = np.mean([f1(2 / 3, 1.0), f1(1.0, 1 / 2), 0.0])  # a, b, c; d has no support
    assert m.macro_f1 == pytest.approx(by_hand)
    got = logged("multiclass", LOGITS, torch.tensor(TRUTH), len(CLASSES))
    assert got["f1"] == pytest.approx(m.macro_f1, abs=1e-6) and got["acc"] == pytest.approx(m.accuracy, abs=1e-6)
    rows = report_rows(m)
    assert rows["macro F1"] == pytest.approx(m.macro_f1, abs=1e-4)
    assert rows["macro recall"] == pytest.approx(m.balanced_accuracy, abs=1e-4)
    assert rows["macro precision"] == pytest.approx(np.mean([2 / 3, 1.0, 0.0]), abs=1e-4)  # d not averaged


def test_binary_averages_both_classes():
    p = torch.tensor([0.9, 0.2, 0.6, 0.4, 0.5])  # P(classes[1]); 0.5 >= threshold decides "pos"
    y = torch.tensor([1, 0, 0, 0, 1])
    m = compute_metrics(np.stack([1 - p.numpy(), p.numpy()], 1), [(int(t),) for t in y], ["neg", "pos"], "binary", 0.5)
    got = logged("binary", p, y, 2)
    assert got["f1"] == pytest.approx(m.macro_f1, abs=1e-6) and got["acc"] == pytest.approx(m.accuracy, abs=1e-6)
    assert report_rows(m)["macro F1"] == pytest.approx(m.macro_f1, abs=1e-4)


def test_multilabel_with_a_label_nobody_has():
    p = torch.tensor([[0.9, 0.1, 0.7], [0.2, 0.8, 0.1], [0.6, 0.6, 0.9], [0.1, 0.3, 0.2]])
    y = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])  # label 2: no support, predicted twice
    labels = [tuple(np.flatnonzero(r)) for r in y.numpy()]
    m = compute_metrics(p.numpy(), labels, ["x", "y", "z"], "multilabel", 0.5)
    got = logged("multilabel", p, y, 3)
    assert got["f1"] == pytest.approx(m.macro_f1, abs=1e-6) and got["acc"] == pytest.approx(m.accuracy, abs=1e-6)
    assert report_rows(m)["macro F1"] == pytest.approx(m.macro_f1, abs=1e-4)


@pytest.mark.slow
def test_a_run_logs_writes_and_reports_one_macro_f1(tmp_path, make_images, tiny):
    from headstart.config import TrainConfig

    data = make_images(tmp_path / "data", layout="splits", per_class=(4, 3, 0))
    shutil.rmtree(data / "val" / "blue")  # blue is trained on but missing from validation
    train = TrainConfig(frozen_epochs=0, finetune_epochs=1, batch_size=8, patience=0, lr=1e-2, num_workers=0)
    run = tmp_path / "run"
    tiny(pretrained=False, train=train, report=True).fit(data, out=run)
    (last,) = list(csv.DictReader((run / "epochs.csv").open()))
    val = json.loads((run / "metrics.json").read_text())["val"]
    assert [c["support"] for c in val["per_class"] if c["name"] == "blue"] == [0]
    assert float(last["val_f1"]) == pytest.approx(val["macro_f1"], abs=1e-6)
    html = (run / "report.html").read_text(encoding="utf-8")
    shown = re.findall(r"<th>macro F1</th><td class=\"n\">([0-9.]+)</td>", html)
    assert shown and all(float(v) == pytest.approx(val["macro_f1"], abs=1e-4) for v in shown)
