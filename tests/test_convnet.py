"""headstart's convnets from reusable blocks: shapes, named variants, trainable batch norm."""

from __future__ import annotations

import pytest
import torch

from headstart.models.convnet import (
    VARIANTS,
    ConvNet,
    ResidualBlock,
    ResStage,
    Stage,
    Variant,
    build_convnet,
    create_convnet,
)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_pools_28px_greyscale_sized_input_to_its_features(name):
    net = create_convnet(name)
    out = net(torch.zeros(2, 3, 28, 28))
    assert out.shape == (2, net.num_features)
    assert len(net.stages) == len(VARIANTS[name].widths)  # one parameter group per stage


def test_residual_block_adds_its_input():
    block = ResidualBlock(8)
    for p in block.body.parameters():
        torch.nn.init.zeros_(p)  # body outputs relu(0) = 0: the block is the identity
    x = torch.randn(1, 8, 5, 5)
    assert torch.equal(block(x), x)


def test_custom_stages_compose():
    net = ConvNet([Stage(3, 8, 2), ResStage(8, 16, 2)], num_features=16)
    assert net.forward_features(torch.zeros(1, 3, 32, 32)).shape == (1, 16, 8, 8)
    assert build_convnet(Variant((8, 16), 1, residual=True)).num_features == 16


def test_plain_variants_keep_their_parameter_names():
    # Saved convnet_tiny/small weights (users' --weights files) must still load.
    keys = list(create_convnet("convnet_tiny").state_dict())
    assert keys[:3] == ["stages.0.0.0.weight", "stages.0.0.1.weight", "stages.0.0.1.bias"]


def test_batch_norm_statistics_move_in_training_mode():
    net = create_convnet("convnet_res").train()
    before = net.stages[0][0][1].running_mean.clone()
    net(torch.rand(4, 3, 28, 28) + 1)
    assert not torch.equal(before, net.stages[0][0][1].running_mean)
