"""Training options do what they say, seen on the optimizer, loss and loader that train.

Each test here was checked to fail on a deliberately broken implementation (the break is
named in its docstring). Most drive ``two_phase_fit`` directly on generated tensors (phase 1
on "cached features", phase 2 on images): the real Trainer, callbacks and optimizer, without
decoding images. Class weights and oversampling are built by the pipeline from the training
labels, so those tests go through ``Classifier.fit`` on generated image folders.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from headstart import Classifier
from headstart.config import AugmentConfig, ModelConfig, TrainConfig
from headstart.data.split import read_split
from headstart.engine.balance import loss_weights
from headstart.engine.fit import FitContext, FitTask, two_phase_fit
from headstart.models import build_network

QUIET = Console(quiet=True)


def tensor_loaders(n: int = 24, features: int = 64, size: int = 32, k: int = 3, batch: int = 8, seed: int = 0):
    """loaders(phase) for two_phase_fit: phase 1 on random "features", phase 2 on random images."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    f = torch.randn(n, features, generator=g)
    x = torch.randn(n, 3, size, size, generator=g)

    def loaders(phase: int):
        on_features = phase == 1
        data = TensorDataset(f if on_features else x, y)
        return DataLoader(data, batch_size=batch, shuffle=True, generator=g), DataLoader(data, batch_size=batch), on_features

    return loaders


def fit(
    tmp_path: Path, config: TrainConfig, *, pretrained: bool = True, callbacks=(), network=None, loaders=None, weights: str | None = None
):
    network = network or build_network(ModelConfig(arch="convnet_tiny", pretrained=pretrained, weights=weights), 3)
    task = FitTask("multiclass", 3, 0.5, pretrained)
    result = two_phase_fit(
        network, task, config, loaders or tensor_loaders(), FitContext(tmp_path / "run", callbacks=tuple(callbacks), console=QUIET)
    )
    return network, result


def options(**kw) -> TrainConfig:
    base = {"batch_size": 8, "patience": 0, "num_workers": 0, "accelerator": "cpu", "logger": "csv", "finetune_epochs": 0}
    return TrainConfig(**{**base, **kw})


class Epochs(L.Callback):
    """Records, per trained epoch, (phase, learning rate of each group at the epoch's start)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, dict[str, float]]] = []

    def on_train_epoch_start(self, trainer, module):
        self.seen.append((module.phase, {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups}))


# -- early stopping and the plateau schedule ---------------------------------------------------
# A learning rate of 1e-6 leaves the validation accuracy where it starts: the monitored
# metric stalls from the second epoch on, as a converged run's would. (Not smaller: the
# plateau scheduler ignores a cut of less than 1e-8.)


@pytest.mark.slow
def test_early_stopping_stops_a_phase_before_its_last_epoch(tmp_path, convnet_weights):
    """Broken by: not adding EarlyStopping for `patience` (the phase then runs all 8 epochs)."""
    epochs = Epochs()
    fit(tmp_path, options(frozen_epochs=8, lr=1e-6, monitor="val_acc", patience=2), callbacks=[epochs], weights=convnet_weights)
    assert len(epochs.seen) == 3  # the best epoch, then `patience` epochs without improvement


@pytest.mark.slow
def test_plateau_lowers_the_learning_rate_after_the_metric_stalls(tmp_path, convnet_weights):
    """Broken by: a plateau scheduler that is never stepped on the monitored metric."""
    epochs = Epochs()
    fit(tmp_path, options(frozen_epochs=6, lr=1e-6, monitor="val_acc", schedule="plateau"), callbacks=[epochs], weights=convnet_weights)
    lrs = [lr["head"] for _, lr in epochs.seen]
    # epoch 1 sets the best; epochs 2 and 3 stall (more than patience=1): x0.3 from epoch 4, again from 6
    assert lrs == pytest.approx([1e-6, 1e-6, 1e-6, 3e-7, 3e-7, 9e-8], rel=1e-6)


# -- phase-2 learning rates and --unfreeze -------------------------------------------------------


@pytest.mark.parametrize(
    "kw, head, base",
    [
        ({"lr": 1e-2}, 1e-3, 3e-4),  # finetune_lr defaults to lr / 10; base = finetune_lr * base_lr_ratio (0.3)
        ({"lr": 1e-2, "finetune_lr": 2e-3, "base_lr_ratio": 0.5}, 2e-3, 1e-3),
    ],
)
@pytest.mark.slow
def test_fine_tuning_optimizer_holds_the_documented_rates(tmp_path, convnet_weights, kw, head, base):
    """Broken by: phase 2 using lr for the base group (or lr, not lr / 10, for the head)."""
    epochs = Epochs()
    fit(tmp_path, options(frozen_epochs=1, finetune_epochs=1, **kw), callbacks=[epochs], weights=convnet_weights)
    assert epochs.seen[0] == (1, {"head": pytest.approx(kw["lr"])})  # phase 1: the head alone, at lr
    phase, rates = epochs.seen[1]
    assert phase == 2 and rates == {"head": pytest.approx(head), "base": pytest.approx(base)}


class Changed(L.Callback):
    """In phase 2: which backbone parameters the optimizer holds and which ones training moved."""

    def on_train_start(self, trainer, module):
        if module.phase == 2:
            self.before = {n: p.detach().clone() for n, p in module.network.backbone.named_parameters()}
            groups = {g["name"]: g["params"] for g in trainer.optimizers[0].param_groups}
            self.optimized = {id(p) for p in groups.get("base", [])}

    def on_train_end(self, trainer, module):
        if module.phase == 2:
            named = dict(module.network.backbone.named_parameters())
            self.moved = {n for n, p in named.items() if not torch.equal(p.detach(), self.before[n])}
            self.names = {id(p): n for n, p in named.items()}


@pytest.mark.slow
@pytest.mark.parametrize("unfreeze", [1, 2])
def test_unfreeze_trains_exactly_the_last_stages(tmp_path, convnet_weights, unfreeze):
    """Broken by: unfreezing the first N stages (or all of them) instead of the last N."""
    network = build_network(ModelConfig(arch="convnet_tiny", weights=convnet_weights), 3)
    stages = network.base_groups()
    assert len(stages) > unfreeze  # some stage must stay frozen for the test to mean anything
    changed = Changed()
    fit(tmp_path, options(frozen_epochs=1, finetune_epochs=1, lr=1e-2, unfreeze=unfreeze), callbacks=[changed], network=network)
    last = {changed.names[id(p)] for group in stages[-unfreeze:] for p in group}
    assert changed.optimized == {id(p) for group in stages[-unfreeze:] for p in group}
    assert changed.moved == last


# -- from scratch: batch norm learns its statistics ------------------------------------------------


def _running_means(network: nn.Module) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in network.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.slow
@pytest.mark.parametrize("pretrained", [False, True])
def test_batch_norm_statistics_update_from_scratch_and_stay_when_fine_tuning(tmp_path, convnet_weights, pretrained):
    """Broken by: freezing every batch-norm layer's statistics in phase 2 whatever the base."""
    network = build_network(ModelConfig(arch="convnet_tiny", pretrained=pretrained, weights=convnet_weights if pretrained else None), 3)
    before = _running_means(network)
    fit(tmp_path, options(frozen_epochs=0, finetune_epochs=1), pretrained=pretrained, network=network)
    after = _running_means(network)
    if pretrained:  # fine-tuning keeps the pretrained statistics (a choice, for small batches)
        assert all(torch.equal(a, b) for a, b in zip(before, after))
    else:  # from scratch every layer learns them
        assert not any(torch.equal(a, b) for a, b in zip(before, after))


def normalisation_task(n: int, seed: int, size: int = 16) -> TensorDataset:
    """Three classes told apart by faint colour casts (+-0.1) under noise of 0.3: a deep
    convnet with unnormalised activations (its batch norm frozen at mean 0 / variance 1)
    shrinks that signal layer after layer and stays at chance; with batch norm it learns."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    cast = torch.tensor([[0.1, 0.0, -0.1], [0.0, 0.0, 0.0], [-0.1, 0.0, 0.1]])[y]
    return TensorDataset(torch.randn(n, 3, size, size, generator=g) * 0.3 + cast[:, :, None, None], y)


@pytest.mark.slow
def test_small_convnet_from_scratch_learns_a_task_that_needs_normalisation(tmp_path):
    """Broken by: batch norm in eval mode from scratch (measured: 0.30, chance, after 4 epochs)."""
    train, val = normalisation_task(192, seed=0), normalisation_task(96, seed=1)
    g = torch.Generator().manual_seed(0)
    loaders = lambda phase: (DataLoader(train, batch_size=16, shuffle=True, generator=g), DataLoader(val, batch_size=32), False)  # noqa: E731
    network = build_network(ModelConfig(arch="convnet_small", pretrained=False), 3)
    torch.manual_seed(0)
    network, _ = fit(
        tmp_path, options(frozen_epochs=0, finetune_epochs=4, lr=3e-3, batch_size=16), pretrained=False, network=network, loaders=loaders
    )
    network.eval()
    with torch.no_grad():
        x, y = val.tensors
        accuracy = (network(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.85  # measured 0.98 in a plain loop


# -- class weights and oversampling, built from the training labels ----------------------------------


def imbalanced(root: Path, make_images) -> Path:
    make_images(root, classes=("red",), per_class=24, nested=False)
    make_images(root, classes=("green", "blue"), per_class=5, nested=False)
    return root


def tiny(convnet_weights: str, **train) -> Classifier:
    cfg = {
        "frozen_epochs": 1,
        "finetune_epochs": 0,
        "batch_size": 8,
        "patience": 0,
        "num_workers": 0,
        "augment": AugmentConfig.none(),
        "accelerator": "cpu",
        **train,
    }
    return Classifier(
        model=ModelConfig(arch="convnet_tiny", weights=convnet_weights), train=TrainConfig(**cfg), image_size=32, report=False
    )


class Capture(L.Callback):
    """The module that trains, and every label the training loader hands it."""

    def __init__(self) -> None:
        self.labels: list[int] = []

    def on_train_start(self, trainer, module):
        self.module = module

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.labels += batch[1].tolist()


@pytest.mark.slow
def test_balanced_class_weights_reach_the_loss(tmp_path, make_images, convnet_weights):
    """Broken by: the pipeline not handing the weights to the module (plain cross-entropy)."""
    data = imbalanced(tmp_path / "data", make_images)
    capture = Capture()
    clf = tiny(convnet_weights, class_weights="balanced").fit(data, out=tmp_path / "run", callbacks=[capture])
    train = read_split(tmp_path / "run" / "split.csv", clf.classes)["train"]
    expected = loss_weights(train, 3, "multiclass")
    assert expected.max() > 2 * expected.min()  # the rare classes weigh more
    logits, y = torch.randn(12, 3), torch.arange(12) % 3
    loss = capture.module.loss_fn(logits, y)
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, y, weight=expected).item(), rel=1e-5)
    assert loss != pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-3)


@pytest.mark.slow
def test_oversampling_draws_the_rare_classes_more_often(tmp_path, make_images, convnet_weights):
    """Broken by: the loader shuffling plainly (each image once per epoch) despite `oversample`."""
    data = imbalanced(tmp_path / "data", make_images)
    capture = Capture()
    epochs = 4
    clf = tiny(convnet_weights, oversample=True, frozen_epochs=epochs).fit(data, out=tmp_path / "run", callbacks=[capture])
    train = read_split(tmp_path / "run" / "split.csv", clf.classes)["train"]
    rare = [clf.classes.index(c) for c in ("green", "blue")]
    natural = sum(s.labels[0] in rare for s in train) * epochs  # a plain shuffle draws each image once an epoch
    drawn = sum(label in rare for label in capture.labels)
    assert drawn >= 1.5 * natural  # balanced: each class about a third of the draws


# -- recipe mechanisms: one-cycle schedule, label smoothing ----------------------------------------


def _module(config: TrainConfig, phase: int = 2, head_lr: float = 1e-3, base_lr: float = 3e-4):
    from headstart.engine.module import ClassifierModule

    network = build_network(ModelConfig(arch="convnet_tiny", pretrained=False), 3)
    module = ClassifierModule(network, task="multiclass", num_classes=3, config=config, phase=phase, head_lr=head_lr, base_lr=base_lr)

    class Trainer:  # what configure_optimizers reads
        estimated_stepping_batches = 20

    module.trainer = Trainer()  # type: ignore[assignment]
    return module


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_onecycle_warms_each_group_up_to_its_own_rate_then_decays(anneal):
    configured = _module(TrainConfig(schedule="onecycle", warmup_fraction=0.25, anneal=anneal)).configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert configured["lr_scheduler"]["interval"] == "step"
    lrs = {"head": [], "base": []}
    for _ in range(20):
        for g in optimizer.param_groups:
            lrs[g["name"]].append(g["lr"])
        optimizer.step()
        scheduler.step()
    for name, peak in (("head", 1e-3), ("base", 3e-4)):  # discriminative: each group peaks at its own rate
        seen = lrs[name]
        top = seen.index(max(seen))
        assert max(seen) == pytest.approx(peak, rel=1e-3)
        assert top in (4, 5)  # a quarter of the 20 steps warming up
        assert seen[0] < peak / 10 and seen[-1] < peak / 10
        assert all(a <= b for a, b in zip(seen[:top], seen[1 : top + 1]))  # rising, then falling
        assert all(a >= b for a, b in zip(seen[top:], seen[top + 1 :]))


def test_label_smoothing_reaches_the_loss():
    logits, y = torch.randn(6, 3), torch.arange(6) % 3
    smooth = _module(TrainConfig(label_smoothing=0.1)).loss_fn(logits, y)
    assert smooth == pytest.approx(nn.functional.cross_entropy(logits, y, label_smoothing=0.1).item(), rel=1e-6)
    assert _module(TrainConfig()).loss_fn(logits, y) == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert smooth != pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-3)


@pytest.mark.parametrize(
    "bad", [{"label_smoothing": 1.0}, {"label_smoothing": -0.1}, {"warmup_fraction": 0.0}, {"anneal": "cosine"}, {"schedule": "one-cycle"}]
)
def test_recipe_options_are_checked(bad):
    from headstart.errors import ConfigError

    with pytest.raises(ConfigError):
        TrainConfig(**bad)


@pytest.mark.slow
def test_a_onecycle_run_records_its_finished_phases(tmp_path, convnet_weights):
    """The one-cycle scheduler's state goes into the phase checkpoints like any other."""
    from headstart.engine.fit import finished_phases

    epochs = Epochs()
    _, result = fit(tmp_path, options(frozen_epochs=2, finetune_epochs=1, schedule="onecycle"), callbacks=[epochs], weights=convnet_weights)
    assert [phase for phase, _ in epochs.seen] == [1, 1, 2]
    records = finished_phases(tmp_path / "run")
    assert set(records) == {1, 2} and records[result.best_phase].best_score == pytest.approx(result.best_score)
    assert all((tmp_path / "run" / "checkpoints" / f"phase{n}" / r.weights).is_file() for n, r in records.items())
