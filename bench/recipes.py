"""Training recipes as plain PyTorch loops on in-memory uint8 images, for bench/recipe.py.

Standalone on purpose: they measure what a recipe is worth on this machine without going
through ``headstart train`` (whose from-scratch path was broken when they were written).
Each returns a dict with ``acc`` (test accuracy), ``seconds`` (wall, excluding decoding)
and per-epoch ``history``. Images are (N, H, W) or (N, H, W, 3) uint8 arrays; labels int64.

Recipes:
  * ``tutorial``: the seed tutorials' two-convolution net (conv32-conv64-pool-fc128), Adam.
  * ``scratch``: a headstart convnet from reusable blocks, SGD-Nesterov, one-cycle, label
    smoothing, flip + translate augmentation, batch norm training.
  * ``probe``: frozen pretrained base -> features once -> linear head (headstart's old default).
  * ``finetune``: pretrained base, one frozen-base epoch (head only), then all layers with
    discriminative learning rates (base x ``base_lr_ratio``) on a one-cycle schedule.
"""

from __future__ import annotations

import math
import time
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from headstart.models.convnet import Variant, build_convnet


def as_batch(x: np.ndarray, idx: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """uint8 (N, H, W[, 3]) rows ``idx`` -> normalised float (B, 3, size, size), channels last."""
    t = torch.from_numpy(x[idx])
    t = t.unsqueeze(1).expand(-1, 3, -1, -1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    t = t.float().div_(255)
    if t.shape[-1] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return ((t - m) / s).contiguous(memory_format=torch.channels_last)


def augment(t: torch.Tensor, shift: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and translation by up to ``shift`` px (filled with the border)."""
    b, _, h, w = t.shape
    if flip:
        mask = torch.rand(b, generator=gen) < 0.5
        t = torch.where(mask.view(b, 1, 1, 1), t.flip(3), t)
    if shift:
        padded = F.pad(t, (shift,) * 4, mode="replicate")
        dx = torch.randint(0, 2 * shift + 1, (b,), generator=gen).tolist()
        dy = torch.randint(0, 2 * shift + 1, (b,), generator=gen).tolist()
        t = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    return t.contiguous(memory_format=torch.channels_last)


def one_cycle(step: int, total: int, warm: float = 0.2) -> float:
    """LR multiplier: linear warm-up over ``warm`` of the steps, then cosine to zero."""
    w = max(1, int(total * warm))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1 + math.cos(math.pi * (step - w) / max(1, total - w)))


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, size: int, mean, std, batch: int = 500, flip_tta: bool = False) -> float:
    """Test accuracy; ``flip_tta`` averages the logits of each image and its mirror (airbench)."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        idx = np.arange(i, min(i + batch, len(x)))
        xb = as_batch(x, idx, size, mean, std)
        logits = model(xb)
        if flip_tta:
            logits = logits + model(xb.flip(3))
        correct += (logits.argmax(1).numpy() == y[idx]).sum()
    return float(correct / len(x))


def fit(
    model,
    groups,
    xtr,
    ytr,
    xte,
    yte,
    *,
    epochs,
    size,
    mean,
    std,
    batch,
    opt="sgd",
    wd=5e-4,
    smoothing=0.1,
    shift=2,
    flip=True,
    warm=0.2,
    ema=0.0,
    seed=0,
    eval_every=True,
    log="",
) -> dict:
    """Train ``model`` (param groups with their peak lr) on a one-cycle schedule; test each epoch."""
    gen = torch.Generator().manual_seed(seed)
    if opt == "sgd":
        optimizer = torch.optim.SGD(groups, momentum=0.9, nesterov=True, weight_decay=wd)
    else:
        optimizer = torch.optim.AdamW(groups, weight_decay=wd)
    peaks = [g["lr"] for g in optimizer.param_groups]
    steps_per_epoch = len(xtr) // batch
    total = epochs * steps_per_epoch
    averaged = (
        torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema), use_buffers=True)
        if ema
        else None
    )
    history, step, start, cpu0 = [], 0, time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=gen).numpy()
        seen = loss_sum = 0.0
        for k in range(steps_per_epoch):
            idx = order[k * batch : (k + 1) * batch]
            xb = augment(as_batch(xtr, idx, size, mean, std), shift, flip, gen)
            for g, peak in zip(optimizer.param_groups, peaks):
                g["lr"] = peak * one_cycle(step, total, warm)
            loss = F.cross_entropy(model(xb), torch.from_numpy(ytr[idx]), label_smoothing=smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if averaged is not None:
                averaged.update_parameters(model)
            step += 1
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
        row = {
            "epoch": epoch + 1,
            "train_loss": round(loss_sum / seen, 4),
            "seconds": round(time.perf_counter() - start, 1),
            "cpu_seconds": round(time.process_time() - cpu0, 1),
        }
        if eval_every or epoch == epochs - 1:
            row["acc"] = evaluate(model, xte, yte, size, mean, std)
            if averaged is not None:
                row["ema_acc"] = evaluate(averaged.module, xte, yte, size, mean, std)
            if flip and epoch == epochs - 1:
                row["tta_acc"] = evaluate(model, xte, yte, size, mean, std, flip_tta=True)
        history.append(row)
        print(f"  {log} {row}", flush=True)
    final = history[-1]
    best = max(final["acc"], final.get("ema_acc", 0.0))
    return {
        "acc": best,
        "last_acc": final["acc"],
        "tta_acc": final.get("tta_acc"),
        "seconds": time.perf_counter() - start,
        "history": history,
    }


class Tutorial(nn.Sequential):
    """The seed tutorials' net (PyTorch's MNIST example): 2 convs, pool, fc128, on 1 channel."""

    def __init__(self, classes: int) -> None:
        super().__init__(
            nn.Conv2d(3, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.LazyLinear(128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, classes),
        )


def tutorial(xtr, ytr, xte, yte, classes: int, epochs: int = 3, seed: int = 0) -> dict:
    """Adam 1e-3, batch 64, no augmentation, constant LR: the tutorial as written."""
    torch.manual_seed(seed)
    model = Tutorial(classes)
    size = xtr.shape[1]
    model(torch.zeros(1, 3, size, size))  # materialise the lazy layer
    model = model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history, start = [], time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=gen).numpy()
        for k in range(0, len(xtr), 64):
            idx = order[k : k + 64]
            loss = F.cross_entropy(model(as_batch(xtr, idx, size, (0.5,) * 3, (0.5,) * 3)), torch.from_numpy(ytr[idx]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        history.append(
            {
                "epoch": epoch + 1,
                "acc": evaluate(model, xte, yte, size, (0.5,) * 3, (0.5,) * 3),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(f"  tutorial {history[-1]}", flush=True)
    return {"acc": history[-1]["acc"], "seconds": time.perf_counter() - start, "history": history}


def scratch(
    xtr,
    ytr,
    xte,
    yte,
    classes: int,
    variant: Variant,
    epochs: int,
    lr: float = 0.2,
    batch: int = 256,
    size: int | None = None,
    seed: int = 0,
    **kw,
) -> dict:
    """A headstart convnet from scratch + linear head; SGD-Nesterov one-cycle by default."""
    torch.manual_seed(seed)
    base = build_convnet(variant)
    model = nn.Sequential(base, nn.Linear(base.num_features, classes)).to(memory_format=torch.channels_last)
    groups = [{"params": list(model.parameters()), "lr": lr}]
    return fit(
        model,
        groups,
        xtr,
        ytr,
        xte,
        yte,
        epochs=epochs,
        size=size or xtr.shape[1],
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        batch=batch,
        seed=seed,
        log=f"scratch{variant.widths}",
        **kw,
    )


def pretrained(arch: str = "tf_efficientnet_lite0"):
    import timm

    from headstart.models.weights import pretrained_backbone

    base = pretrained_backbone(arch, None)
    cfg = timm.data.resolve_model_data_config(base)
    return base, cfg["mean"], cfg["std"]


@torch.no_grad()
def features(base: nn.Module, x: np.ndarray, size: int, mean, std, batch: int = 64) -> torch.Tensor:
    base.eval()
    out = [base(as_batch(x, np.arange(i, min(i + batch, len(x))), size, mean, std)) for i in range(0, len(x), batch)]
    return torch.cat(out)


def probe(xtr, ytr, xte, yte, classes: int, size: int = 224, epochs: int = 30, lr: float = 3e-3, seed: int = 0) -> dict:
    """headstart's old default: frozen pretrained base, features computed once (evaluation view),
    a linear head trained 30 epochs with AdamW 3e-3 (weight decay 0.01), cosine, batch 32."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    base, mean, std = pretrained()
    base = base.to(memory_format=torch.channels_last)
    ftr, fte = features(base, xtr, size, mean, std), features(base, xte, size, mean, std)
    t_feat = time.perf_counter() - start
    head = nn.Linear(ftr.shape[1], classes)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    ytr_t = torch.from_numpy(ytr)
    gen = torch.Generator().manual_seed(seed)
    steps, step = epochs * math.ceil(len(ftr) / 32), 0
    for _ in range(epochs):
        order = torch.randperm(len(ftr), generator=gen)
        for k in range(0, len(ftr), 32):
            idx = order[k : k + 32]
            for g in optimizer.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            loss = F.cross_entropy(head(ftr[idx]), ytr_t[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    with torch.no_grad():
        acc = float((head(fte).argmax(1).numpy() == yte).mean())
    return {"acc": acc, "seconds": time.perf_counter() - start, "features_seconds": round(t_feat, 1), "size": size}


def finetune(
    xtr,
    ytr,
    xte,
    yte,
    classes: int,
    size: int,
    epochs: int,
    lr: float = 2e-3,
    base_lr_ratio: float = 0.3,
    frozen_epochs: int = 1,
    batch: int = 32,
    seed: int = 0,
    opt: str = "adamw",
    wd: float = 0.01,
    freeze_bn: bool = False,
    **kw,
) -> dict:
    """fastai's fine_tune shape: ``frozen_epochs`` of head-only training on the frozen base
    (batch-norm statistics kept), then ``epochs`` of all layers with discriminative LRs, one-cycle."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    base, mean, std = pretrained()
    model = nn.Sequential(base, nn.Linear(base.num_features, classes)).to(memory_format=torch.channels_last)
    head_params = list(model[1].parameters())
    out = {"frozen": None}
    if frozen_epochs:
        for p in base.parameters():
            p.requires_grad = False
        # Head only, base in eval mode: equivalent to training on cached features, one pass each epoch.
        ftr = features(base, xtr, size, mean, std)
        optimizer = torch.optim.AdamW(head_params, lr=lr * 5, weight_decay=wd)
        ytr_t = torch.from_numpy(ytr)
        gen = torch.Generator().manual_seed(seed)
        steps = frozen_epochs * math.ceil(len(ftr) / batch)
        step = 0
        for _ in range(frozen_epochs):
            order = torch.randperm(len(ftr), generator=gen)
            for k in range(0, len(ftr), batch):
                idx = order[k : k + batch]
                for g in optimizer.param_groups:
                    g["lr"] = lr * 5 * one_cycle(step, steps, 0.1)
                loss = F.cross_entropy(model[1](ftr[idx]), ytr_t[idx], label_smoothing=kw.get("smoothing", 0.1))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
        out["frozen"] = {"acc": evaluate(model, xte, yte, size, mean, std), "seconds": round(time.perf_counter() - start, 1)}
        print(f"  finetune {size}px frozen {out['frozen']}", flush=True)
        for p in base.parameters():
            p.requires_grad = True
    if freeze_bn:  # headstart's phase 2: batch-norm layers stay in eval mode (pretrained statistics)
        for m in base.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train = types.MethodType(lambda self, mode=True: nn.Module.train(self, False), m)
    groups = [{"params": list(base.parameters()), "lr": lr * base_lr_ratio}, {"params": head_params, "lr": lr}]
    if epochs:
        res = fit(
            model,
            groups,
            xtr,
            ytr,
            xte,
            yte,
            epochs=epochs,
            size=size,
            mean=mean,
            std=std,
            batch=batch,
            seed=seed,
            opt=opt,
            wd=wd,
            log=f"finetune {size}px",
            **kw,
        )
    else:
        res = {"acc": out["frozen"]["acc"], "history": []}
    res["seconds"] = time.perf_counter() - start
    res["frozen"] = out["frozen"]
    return res


def run_plan(plan, xtr, ytr, xte, yte, classes: int) -> dict:
    """Train what a headstart.engine.plan.Plan says, with the loops above (standalone stand-in
    for ``headstart train --time`` until the planner is wired into the engine)."""
    from headstart.models.convnet import VARIANTS

    last = plan.phases[-1]
    if last.kind == "scratch":
        return scratch(
            xtr,
            ytr,
            xte,
            yte,
            classes,
            VARIANTS[plan.arch],
            epochs=last.epochs,
            lr=last.lr,
            batch=plan.batch_size,
            size=plan.input_size,
            smoothing=plan.label_smoothing,
            shift=max(1, plan.input_size // 14),
            eval_every=False,
        )
    if last.kind == "frozen":
        return probe(xtr, ytr, xte, yte, classes, size=plan.input_size, epochs=last.epochs, lr=last.lr)
    frozen = next((p.epochs for p in plan.phases if p.kind == "frozen"), 0)
    return finetune(
        xtr,
        ytr,
        xte,
        yte,
        classes,
        size=plan.input_size,
        epochs=last.epochs,
        lr=last.lr,
        base_lr_ratio=last.base_lr_ratio,
        frozen_epochs=frozen,
        batch=plan.batch_size,
        smoothing=plan.label_smoothing,
        eval_every=False,
    )
