"""Networks: heads, task output sizes, the small convnets, timm backbones, frozen/unfrozen groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from headstart.api import resolve_task
from headstart.artifact import num_outputs
from headstart.config import ModelConfig, TrainConfig
from headstart.data.index import DataIndex
from headstart.engine.features import head_only
from headstart.engine.module import ClassifierModule
from headstart.errors import ConfigError
from headstart.models import build_network
from headstart.models.heads import build_head
from headstart.models.network import data_config, probabilities


def linears(head: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in head.modules() if isinstance(m, nn.Linear)]


def dropouts(head: nn.Module) -> list[float]:
    return [m.p for m in head.modules() if isinstance(m, nn.Dropout)]


# -- heads ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, hidden, dropout, expected, n_dropout",
    [
        ("linear", (), 0.0, [(40, 5)], 0),
        ("linear", (99,), 0.3, [(40, 5)], 1),  # a linear head has no hidden layer
        ("bottleneck", (), 0.0, [(40, 256), (256, 5)], 0),
        ("bottleneck", (16,), 0.2, [(40, 16), (16, 5)], 1),
        ("bottleneck", (16, 8), 0.0, [(40, 16), (16, 5)], 0),  # one hidden layer only
        ("mlp", (), 0.0, [(40, 512), (512, 256), (256, 5)], 0),
        ("mlp", (24, 12), 0.1, [(40, 24), (24, 12), (12, 5)], 2),
        ("mlp", (7,), 0.5, [(40, 7), (7, 5)], 1),
    ],
)
def test_heads(kind, hidden, dropout, expected, n_dropout):
    head = build_head(kind, 40, 5, hidden, dropout)
    assert linears(head) == expected
    assert dropouts(head) == [dropout] * n_dropout
    assert head(torch.randn(3, 40)).shape == (3, 5)
    head.eval()
    x = torch.randn(2, 40)
    torch.testing.assert_close(head(x), head(x))  # dropout off in eval


@pytest.mark.parametrize("head, hidden", [("linear", ()), ("bottleneck", ()), ("mlp", (32, 16))])
@pytest.mark.parametrize("outputs", [1, 4])
def test_heads_output_shapes(head, hidden, outputs):
    net = build_network(ModelConfig(arch="convnet_tiny", pretrained=False, head=head, hidden=hidden, dropout=0.2), outputs)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, outputs)


@pytest.mark.parametrize("head, hidden", [("linear", ()), ("bottleneck", (16,)), ("mlp", (24, 12))])
@pytest.mark.parametrize("task, k, outputs", [("multiclass", 4, 4), ("binary", 2, 1), ("multilabel", 3, 3)])
def test_network_outputs_per_task_and_head(head, hidden, task, k, outputs):
    classes = [f"c{i}" for i in range(k)]
    assert num_outputs(task, classes) == outputs
    net = build_network(ModelConfig(arch="convnet_tiny", pretrained=False, head=head, hidden=hidden, dropout=0.1), outputs)
    logits = net.eval()(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, outputs)
    probs = probabilities(logits, task)
    assert probs.shape == (2, k)
    if task != "multilabel":
        torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    assert ((probs >= 0) & (probs <= 1)).all()


def test_probabilities():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    torch.testing.assert_close(probabilities(logits, "multiclass"), logits.softmax(-1))
    torch.testing.assert_close(probabilities(logits, "multilabel"), logits.sigmoid())
    binary = probabilities(torch.tensor([[0.0], [3.0]]), "binary")
    p = torch.sigmoid(torch.tensor(3.0))
    torch.testing.assert_close(binary, torch.tensor([[0.5, 0.5], [1 - p, p]]))


def test_task_follows_the_data():
    def index(k: int, multilabel: bool = False) -> DataIndex:
        return DataIndex(None, "folders", [f"c{i}" for i in range(k)], multilabel, {})  # type: ignore[arg-type]

    assert resolve_task(None, index(2)) == "binary"
    assert resolve_task(None, index(3)) == "multiclass"
    assert resolve_task(None, index(2, True)) == "multilabel"
    assert resolve_task("multiclass", index(2)) == "multiclass"
    with pytest.raises(ConfigError, match="binary"):
        resolve_task("binary", index(3))
    with pytest.raises(ConfigError, match="multilabel"):
        resolve_task("multiclass", index(3, True))


# -- backbones --------------------------------------------------------------------------------
@pytest.mark.parametrize("arch, features, stages", [("convnet_tiny", 64, 3), ("convnet_small", 256, 4)])
def test_convnets_build(arch, features, stages):
    net = build_network(ModelConfig(arch=arch, pretrained=False), 3)
    assert net.backbone.num_features == features
    assert net.backbone(torch.randn(2, 3, 32, 32)).shape == (2, features)
    assert net(torch.randn(2, 3, 48, 48)).shape == (2, 3)
    assert len(net.base_groups()) == stages
    assert sum(len(g) for g in net.base_groups()) == len(list(net.backbone.parameters()))
    cfg = data_config(net.backbone)
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["input_size"][-1] == 128


def test_timm_backbone_builds_headless():
    net = build_network(ModelConfig(arch="resnet10t", pretrained=False, head="bottleneck", hidden=(8,)), 2)
    assert net.backbone(torch.randn(2, 3, 32, 32)).shape == (2, net.backbone.num_features)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 2)
    groups = net.base_groups()
    assert len(groups) > 2
    assert sum(len(g) for g in groups) == len(list(net.backbone.parameters()))


def test_timm_architecture_by_name_headless():
    net = build_network(ModelConfig(arch="resnet18", pretrained=False), 5)
    assert net.backbone.num_features == 512
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 5)
    assert len(net.base_groups()) > 2  # stages, for --unfreeze N


@pytest.mark.parametrize(
    "arch, suggestion", [("convnet_tiyn", "convnet_tiny"), ("resnet5O", "resnet50"), ("mobilenetv3_smal_050", "mobilenetv3_small_050")]
)
def test_unknown_arch_suggests_a_close_name(arch, suggestion):
    with pytest.raises(ConfigError, match="Unknown architecture") as info:
        build_network(ModelConfig(arch=arch, pretrained=False), 2)
    assert suggestion in str(info.value)


def test_convnet_pretrained_without_weights_says_what_to_do():
    with pytest.raises(ConfigError, match="no-pretrained"):
        build_network(ModelConfig(arch="convnet_small"), 2)


# -- frozen / unfrozen ------------------------------------------------------------------------
def trainable(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", ["convnet_tiny", "convnet_small", "resnet10t"])
def test_phase_1_trains_the_head_phase_2_the_chosen_groups(arch):
    net = build_network(ModelConfig(arch=arch, pretrained=False, head="mlp", hidden=(8,)), 3)
    total = sum(p.numel() for p in net.parameters())
    head = sum(p.numel() for p in net.head.parameters())
    groups = net.base_groups()

    def count(phase: int, unfreeze: int = 0) -> int:
        ClassifierModule(
            net, task="multiclass", num_classes=3, config=TrainConfig(unfreeze=unfreeze), phase=phase, head_lr=1e-3, base_lr=1e-4
        )
        return trainable(net)

    assert count(1) == head
    assert count(2, 0) == total
    last1 = count(2, 1)
    assert head < last1 < total
    assert last1 == head + sum(p.numel() for p in groups[-1])
    assert count(2, 2) == head + sum(p.numel() for g in groups[-2:] for p in g)
    assert count(2, 2) > last1
    assert count(2, len(groups) + 5) == total  # more than there are: everything
    assert count(1, 2) == head  # unfreeze only matters in phase 2


def test_unfreeze_picks_the_last_stages_of_the_convnet():
    net = build_network(ModelConfig(arch="convnet_tiny", pretrained=False), 3)
    ClassifierModule(net, task="multiclass", num_classes=3, config=TrainConfig(unfreeze=1), phase=2, head_lr=1e-3, base_lr=1e-4)
    on = {n for n, p in net.backbone.named_parameters() if p.requires_grad}
    assert on and all(n.startswith("stages.2.") for n in on)
    assert all(p.requires_grad for n, p in net.backbone.named_parameters() if n.startswith("stages.2."))


def test_optimizer_groups_follow_the_phase():
    net = build_network(ModelConfig(arch="convnet_tiny", pretrained=False), 3)

    class FakeTrainer:
        estimated_stepping_batches = 10

    for phase, names in ((1, ["head"]), (2, ["head", "base"])):
        module = ClassifierModule(
            net, task="multiclass", num_classes=3, config=TrainConfig(schedule="constant"), phase=phase, head_lr=1e-3, base_lr=3e-4
        )
        module.trainer = FakeTrainer()  # type: ignore[assignment]
        optimizer = module.configure_optimizers()
        assert [g["name"] for g in optimizer.param_groups] == names
        assert optimizer.param_groups[0]["lr"] == 1e-3
        if phase == 2:
            assert optimizer.param_groups[1]["lr"] == 3e-4
            assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(net.parameters()))


def test_frozen_phase_keeps_batch_norm_statistics():
    net = build_network(ModelConfig(arch="convnet_tiny", pretrained=False), 3)
    module = ClassifierModule(net, task="multiclass", num_classes=3, config=TrainConfig(), phase=1, head_lr=1e-3, base_lr=0.0)
    module.train()
    module.on_train_batch_start(None, 0)
    bn = [m for m in net.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bn]
    net(torch.randn(4, 3, 32, 32) * 5 + 3)
    assert all(not m.training for m in bn)
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, bn))
    assert net.head.training


def test_head_only_shares_the_head():
    net = build_network(ModelConfig(arch="convnet_tiny", pretrained=False), 3)
    features = head_only(net)
    assert features.head is net.head
    x = torch.randn(2, 64)
    torch.testing.assert_close(features(x), net.head(x))


@pytest.mark.slow
def test_compile_wraps_only_the_fine_tuning_forward():
    net = build_network(ModelConfig(arch="convnet_tiny", pretrained=False), num_outputs=3)
    names = set(net.state_dict())
    on = ClassifierModule(net, task="multiclass", num_classes=3, config=TrainConfig(compile=True), phase=2, head_lr=1e-3, base_lr=1e-4)
    assert len(on._train_forward) == 1 and isinstance(on._train_forward[0], torch._dynamo.eval_frame.OptimizedModule)
    assert {k.removeprefix("network.") for k in on.state_dict() if k.startswith("network.")} == names  # no _orig_mod
    frozen = ClassifierModule(net, task="multiclass", num_classes=3, config=TrainConfig(compile=True), phase=1, head_lr=1e-3, base_lr=0.0)
    off = ClassifierModule(net, task="multiclass", num_classes=3, config=TrainConfig(), phase=2, head_lr=1e-3, base_lr=1e-4)
    assert frozen._train_forward == [] and off._train_forward == []
