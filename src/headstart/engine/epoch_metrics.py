"""The training loop's accuracy and macro F1, defined as ``headstart.metrics`` defines them.

Each metric keeps per-class counts (true positives, decisions, targets) as torchmetrics
states, summed across processes under DDP; ``compute`` hands the totals to
``headstart.metrics``'s formulas. So ``val_f1`` in epochs.csv and ``macro_f1`` in
metrics.json are one number for the same predictions: the mean F1 over the classes present
in the targets (torchmetrics' own macro F1 also averages classes that are only predicted,
and its binary F1 is the positive class's alone).
"""

from __future__ import annotations

import numpy as np
import torch
import torchmetrics

from headstart.metrics import class_scores, macro_average


class ClassCounts(torchmetrics.Metric):
    """Accuracy (``output="acc"``) or macro F1 (``output="f1"``) over an epoch.

    ``update(preds, target)`` takes what the LightningModule has: multiclass logits (N, K)
    and class indices (N,); binary P(classes[1]) (N,) and 0/1 (N,); multilabel
    probabilities (N, K) and 0/1 (N, K).

    Example:
        >>> f1 = ClassCounts("multiclass", 3, 0.5, "f1")
        >>> f1.update(torch.tensor([[2.0, 0, 0], [0, 0, 2.0]]), torch.tensor([0, 1]))
        >>> round(float(f1.compute()), 3)   # class 2 is predicted but absent: not averaged
        0.5
    """

    full_state_update = False
    tp: torch.Tensor  # (K,) per-class counts, summed over batches and processes
    predicted: torch.Tensor
    actual: torch.Tensor
    rows: torch.Tensor  # images seen

    def __init__(self, task: str, num_classes: int, threshold: float, output: str) -> None:
        super().__init__()
        if output not in ("acc", "f1"):
            raise ValueError(f"output={output!r}: choose 'acc' or 'f1'.")
        self.task, self.threshold, self.output = task, threshold, output
        k = 2 if task == "binary" else num_classes  # binary: both classes, as evaluate counts them
        for name in ("tp", "predicted", "actual"):
            self.add_state(name, default=torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("rows", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        k = self.tp.numel()
        if self.task == "multilabel":  # (N, K) booleans, the decision of evaluate.predict_labels
            decided, truth = preds >= self.threshold, target.bool()
            self.tp += (decided & truth).sum(0)
            self.predicted += decided.sum(0)
            self.actual += truth.sum(0)
        else:
            decided = preds.argmax(-1) if self.task == "multiclass" else (preds >= self.threshold).long()
            truth = target.long()
            self.tp += torch.bincount(truth[decided == truth], minlength=k)
            self.predicted += torch.bincount(decided, minlength=k)
            self.actual += torch.bincount(truth, minlength=k)
        self.rows += len(target)

    def compute(self) -> torch.Tensor:
        tp, predicted, actual = (t.cpu().numpy().astype(np.float64) for t in (self.tp, self.predicted, self.actual))
        fp, fn = predicted - tp, actual - tp
        if self.output == "f1":
            value = macro_average(class_scores(tp, fp, fn)[2], actual)
        elif self.task == "multilabel":  # per (image, class) pair: wrong ones are fp + fn
            pairs = float(self.rows) * len(tp)
            value = 1.0 - (fp.sum() + fn.sum()) / pairs if pairs else 0.0
        else:
            value = tp.sum() / max(1, int(self.rows))
        return torch.tensor(value, dtype=torch.float32)


def make_metrics(task: str, num_classes: int, threshold: float) -> torchmetrics.MetricCollection:
    """Accuracy and macro F1 as logged during training (``train_acc``, ``val_f1``, ...)."""
    return torchmetrics.MetricCollection(
        {"acc": ClassCounts(task, num_classes, threshold, "acc"), "f1": ClassCounts(task, num_classes, threshold, "f1")}
    )
