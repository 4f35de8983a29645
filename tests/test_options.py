"""Options fail early with a close match; heads and tasks give the right shapes."""

from __future__ import annotations

import pytest
import torch

from headstart.config import AugmentConfig, ModelConfig, TrainConfig
from headstart.errors import ConfigError
from headstart.evaluate import compute_metrics
from headstart.models import build_network


def test_unknown_key_suggests_the_close_name():
    with pytest.raises(ConfigError, match="Did you mean 'finetune_epochs'"):
        TrainConfig.from_dict({"finetune_epoch": 3})


def test_round_trip_keeps_nested_options():
    cfg = TrainConfig(augment=AugmentConfig(rotation=0, scale=(0.5, 1.0)), frozen_epochs=2)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: TrainConfig(lr=-1), "lr"),
        (lambda: TrainConfig(val_fraction=1.5), "val_fraction"),
        (lambda: TrainConfig(frozen_epochs=0, finetune_epochs=0), "nothing to train"),
        (lambda: TrainConfig(optimizer="adamx"), "adamw"),
        (lambda: ModelConfig(head="lienar"), "linear"),
        (lambda: ModelConfig(task="regression"), "multiclass"),
        (lambda: AugmentConfig(scale=(0.9, 0.2)), "scale"),
    ],
)
def test_invalid_values_are_refused(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


@pytest.mark.parametrize("head, hidden", [("linear", ()), ("bottleneck", ()), ("mlp", (32, 16))])
@pytest.mark.parametrize("outputs", [1, 4])
def test_heads_output_shapes(head, hidden, outputs):
    net = build_network(ModelConfig(arch="convnet_tiny", pretrained=False, head=head, hidden=hidden, dropout=0.2), outputs)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, outputs)


def test_timm_architecture_by_name_headless():
    net = build_network(ModelConfig(arch="resnet18", pretrained=False), 5)
    assert net.backbone.num_features == 512
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 5)
    assert len(net.base_groups()) > 2  # stages, for --unfreeze N


def test_metrics_per_class_and_balanced_accuracy():
    import numpy as np

    probs = np.array([[0.9, 0.1, 0], [0.8, 0.2, 0], [0.1, 0.9, 0], [0.6, 0.4, 0]])
    m = compute_metrics(probs, [(0,), (0,), (1,), (1,)], ["a", "b", "c"], "multiclass")
    assert m.accuracy == 0.75 and m.confusion == [[2, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert m.balanced_accuracy == pytest.approx(0.75)  # mean recall over classes with support
    assert m.per_class[0].precision == pytest.approx(2 / 3) and m.per_class[1].recall == 0.5
    assert m.per_class[2].support == 0


def test_compile_wraps_only_the_fine_tuning_forward(convnet_weights):
    import torch

    from headstart.config import ModelConfig, TrainConfig
    from headstart.engine.module import ClassifierModule
    from headstart.models import build_network

    net = build_network(ModelConfig(arch="convnet_tiny", pretrained=False), num_outputs=3)
    names = set(net.state_dict())
    on = ClassifierModule(net, task="multiclass", num_classes=3, config=TrainConfig(compile=True), phase=2, head_lr=1e-3, base_lr=1e-4)
    assert len(on._train_forward) == 1 and isinstance(on._train_forward[0], torch._dynamo.eval_frame.OptimizedModule)
    assert {k.removeprefix("network.") for k in on.state_dict() if k.startswith("network.")} == names  # no _orig_mod
    frozen = ClassifierModule(net, task="multiclass", num_classes=3, config=TrainConfig(compile=True), phase=1, head_lr=1e-3, base_lr=0.0)
    off = ClassifierModule(net, task="multiclass", num_classes=3, config=TrainConfig(), phase=2, head_lr=1e-3, base_lr=1e-4)
    assert frozen._train_forward == [] and off._train_forward == []


@pytest.mark.parametrize(
    "options, on_gpu, planned",
    [
        ({}, False, [(1, 30)]),  # a CPU: the frozen phase only
        ({}, True, [(1, 30), (2, 3)]),
        ({"finetune_epochs": 2}, False, [(1, 30), (2, 2)]),  # asked for: always honoured
        ({"finetune_epochs": 0}, True, [(1, 30)]),
        ({"frozen_epochs": 0}, False, [(2, 3)]),  # no frozen phase: fine-tuning is the training
        ({"feature_cache": False}, False, [(1, 5)]),
    ],
)
def test_default_phases_follow_the_device(options, on_gpu, planned):
    from headstart.config import TrainConfig
    from headstart.engine.fit import plan_phases

    phases = plan_phases(TrainConfig(**options), pretrained=True, on_gpu=on_gpu)
    assert [(p.number, p.epochs) for p in phases] == planned


def test_accelerator_names_decide_the_device(monkeypatch):
    import torch

    from headstart.engine.fit import accelerated

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert accelerated("gpu") and accelerated("cuda") and not accelerated("cpu")
    assert accelerated("auto") is bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert accelerated("auto") and not accelerated("cpu")
