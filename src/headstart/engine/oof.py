"""Out-of-fold predicted probabilities from frozen-base features: the linear probe that both
the recipe's pilot (engine/pilot.py) and the label-issue search (label_issues/) use.

Every image gets a probability from a head that never saw it: the images are cut into
``folds`` folds (stratified by label), and fold f is predicted by a linear head trained on
the others. A head on cached (N, F) features trains in a fraction of a second per fold
(full-batch L-BFGS), so the whole data set costs seconds beyond the features themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

# L2 penalty on the head's weights over standardised features, per image (mean loss +
# WEIGHT_DECAY/2 * |W|^2). Measured on Fashion-MNIST with 5 % flipped labels (20k images,
# 64 px; bench/label_issues.py): 1e-3 / 1e-2 / 3e-2 gave precision 0.65 / 0.70 / 0.74 at
# recall 0.89 / 0.88 / 0.87 (self-confidence < 5 %): a stronger penalty keeps the heads
# from trusting the flipped labels of their training folds.
WEIGHT_DECAY = 3e-2
MAX_ITER = 30  # L-BFGS iterations per head: 100 gave the same out-of-fold accuracy (0.844 vs 0.847), 2.5x slower
# The heads see the top COMPONENTS principal components of the standardised features: an
# L-BFGS step reads the whole (N, D) matrix three times, so it is bound by memory traffic;
# 256 of EfficientNet-Lite0's 1280 dimensions made the five heads ~5x faster on 20k
# synthetic images at equal out-of-fold accuracy (bench/label_issues.py has the real figures).
COMPONENTS = 256


def principal_components(x: torch.Tensor, d: int, seed: int = 0) -> torch.Tensor:
    """(N, d) projection of centred ``x`` (N, F) on its top-d principal directions, found by
    subspace iteration on the (F, F) scatter matrix (a few F*F*d products instead of a
    full eigendecomposition, which took 17 s for F = 1280 on a busy 2-core machine)."""
    if d >= x.shape[1]:
        return x
    scatter = x.T @ x  # (F, F)
    generator = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(scatter @ torch.randn(x.shape[1], d + 8, generator=generator)).Q
    for _ in range(3):
        q = torch.linalg.qr(scatter @ q).Q
    _, vectors = torch.linalg.eigh(q.T @ scatter @ q)  # eigenvalues ascending: the top d come last
    top = q @ vectors[:, -d:]  # (F, d)
    return x @ top


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread, restored after. The heads' products are skinny ((N, 256) @ (256, K)):
    measured on 2 busy cores (load ~8), out_of_fold on 20k Fashion-MNIST features took 30 s
    on 2 threads and 6.3 s on one; 630 images 22 s and 0.3 s (thread hand-offs, not work)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fold_of(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(N,) fold number of each image: shuffled within each label, then dealt round-robin,
    so every fold holds each label's images in proportion (a label with fewer images than
    folds is missing from some training sets: its images then look mislabelled, which the
    caller warns about)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    start = 0
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        fold[members] = (start + np.arange(len(members))) % folds
        start += len(members)  # the next label continues the deal: folds stay the same size
    return fold


def folds_of_targets(targets: np.ndarray, multilabel: bool, folds: int, seed: int) -> np.ndarray:
    """(N,) fold of each image as ``out_of_fold`` deals them: stratified by class, or for
    multi-label targets (N, K) by each image's rarest label, so rare labels spread out."""
    targets = np.asarray(targets)
    if multilabel:
        counts = targets.sum(0)
        strata = np.where(targets.any(1), np.argmin(np.where(targets > 0, counts, np.inf), axis=1), -1)
    else:
        strata = targets
    return fold_of(strata, folds, seed)


def _fit_predict(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, k: int, multilabel: bool, weight_decay: float
) -> torch.Tensor:
    """A linear head (F -> k) fitted by full-batch L-BFGS; probabilities of ``x_test`` (M, k)."""
    logits = _fit_logits(x_train, y_train, x_test, k, multilabel, weight_decay)
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)


def _fit_logits(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, k: int, multilabel: bool, weight_decay: float
) -> torch.Tensor:
    """A linear head (F -> k) fitted by full-batch L-BFGS; logits of ``x_test`` (M, k)."""
    weight = torch.zeros(x_train.shape[1], k, requires_grad=True)
    bias = torch.zeros(k, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=MAX_ITER, history_size=10, line_search_fn="strong_wolfe")
    loss_fn = torch.nn.functional.binary_cross_entropy_with_logits if multilabel else torch.nn.functional.cross_entropy

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(x_train @ weight + bias, y_train) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return x_test @ weight + bias


def out_of_fold(
    features: np.ndarray | torch.Tensor,
    targets: np.ndarray,
    num_classes: int,
    *,
    multilabel: bool = False,
    folds: int = 5,
    seed: int = 0,
    weight_decay: float = WEIGHT_DECAY,
) -> np.ndarray:
    """(N, K) out-of-fold probabilities: softmax rows (multi-class) or per-label sigmoids.

    Args:
        features: (N, F) frozen-base features.
        targets: (N,) class indices, or (N, K) 0/1 label indicators when ``multilabel``.
        num_classes: K.
        folds: how many heads; each predicts the 1/folds of the images it did not see.

    Example:
        >>> p = out_of_fold(np.random.rand(100, 8), np.arange(100) % 2, 2)
        >>> p.shape
        (100, 2)
    """
    logits = torch.as_tensor(
        out_of_fold_logits(features, targets, num_classes, multilabel=multilabel, folds=folds, seed=seed, weight_decay=weight_decay)
    )
    return (torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)).numpy()


def out_of_fold_logits(
    features: np.ndarray | torch.Tensor,
    targets: np.ndarray,
    num_classes: int,
    *,
    multilabel: bool = False,
    folds: int = 5,
    seed: int = 0,
    weight_decay: float = WEIGHT_DECAY,
) -> np.ndarray:
    """(N, K) out-of-fold logits (``out_of_fold``'s arguments): what calibration starts from.

    Example:
        >>> out_of_fold_logits(np.random.rand(100, 8), np.arange(100) % 2, 2).shape
        (100, 2)
    """
    if folds < 2:
        raise ValueError(f"folds={folds}: out-of-fold predictions need at least 2 folds.")
    with one_thread():
        return _out_of_fold(features, targets, num_classes, multilabel, folds, seed, weight_decay)


def _out_of_fold(
    features: np.ndarray | torch.Tensor, targets: np.ndarray, num_classes: int, multilabel: bool, folds: int, seed: int, weight_decay: float
) -> np.ndarray:
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)  # standardised: one weight decay suits any base
    x = principal_components(x, min(COMPONENTS, max(1, len(x) - 1)), seed)  # unsupervised: no label leaks across folds
    targets = np.asarray(targets)
    fold = folds_of_targets(targets, multilabel, folds, seed)
    logits = np.zeros((len(x), num_classes), dtype=np.float32)
    y_all = torch.as_tensor(targets, dtype=torch.float32 if multilabel else torch.int64)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for f in range(folds):
            test = fold == f
            if not test.any():
                continue
            train = torch.as_tensor(~test)
            logits[test] = _fit_logits(x[train], y_all[train], x[torch.as_tensor(test)], num_classes, multilabel, weight_decay).numpy()
    return logits
