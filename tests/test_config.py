"""Options: validation with helpful messages, and exact JSON round trips."""

from __future__ import annotations

import json

import pytest

from headstart.config import AugmentConfig, ModelConfig, TrainConfig
from headstart.errors import ConfigError


@pytest.mark.parametrize(
    "cls, data, hint",
    [
        (TrainConfig, {"lrr": 0.1}, "lr"),
        (TrainConfig, {"finetune_epoch": 2}, "finetune_epochs"),
        (TrainConfig, {"batchsize": 8}, "batch_size"),
        (ModelConfig, {"heed": "mlp"}, "head"),
        (ModelConfig, {"archh": "resnet18"}, "arch"),
        (AugmentConfig, {"rotate": 5.0}, "rotation"),
    ],
)
def test_unknown_key_suggests_the_close_name(cls, data, hint):
    with pytest.raises(ConfigError) as info:
        cls.from_dict(data)
    message = str(info.value)
    assert f"'{next(iter(data))}'" in message and cls.__name__ in message
    assert f"Did you mean '{hint}'?" in message


def test_unknown_key_without_a_close_name():
    with pytest.raises(ConfigError, match="Unknown option 'zzzzzz'") as info:
        TrainConfig.from_dict({"zzzzzz": 1})
    assert "Did you mean" not in str(info.value)


def test_unknown_nested_augment_key():
    with pytest.raises(ConfigError, match="hflipp"):
        TrainConfig.from_dict({"augment": {"hflipp": True}})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": -0.1}, "lr=-0.1 must be > 0"),
        ({"lr": 0}, "lr=0 must be > 0"),
        ({"lr": float("nan")}, "lr=nan"),  # 'headstart train --lr nan' parses as a float
        ({"finetune_lr": -1e-3}, "finetune_lr"),
        ({"val_fraction": 1.5}, "val_fraction=1.5"),
        ({"val_fraction": 0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"finetune_epochs": -1}, "finetune_epochs"),
        ({"frozen_epochs": -2}, "frozen_epochs"),
        ({"frozen_epochs": 0, "finetune_epochs": 0}, "nothing to train"),
        ({"patience": -1}, "patience"),
        ({"unfreeze": -1}, "unfreeze"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"base_lr_ratio": 0}, "base_lr_ratio"),
        ({"optimizer": "adamm"}, "Did you mean 'adam'"),
        ({"schedule": "cosin"}, "Did you mean 'cosine'"),
        ({"monitor": "val_accuracy"}, "monitor"),
        ({"class_weights": "balance"}, "Did you mean 'balanced'"),
    ],
)
def test_invalid_train_values(kwargs, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"head": "lineer"}, "Did you mean 'linear'"),
        ({"head": "transformer"}, "head='transformer' is not one of linear, bottleneck, mlp"),
        ({"task": "multi-class"}, "Did you mean 'multiclass'"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.0}, "threshold"),
        ({"hidden": (16, 0)}, "hidden"),
    ],
)
def test_invalid_model_values(kwargs, message):
    with pytest.raises(ConfigError) as info:
        ModelConfig(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "kwargs", [{"scale": (0.0, 1.0)}, {"scale": (0.9, 0.5)}, {"scale": (0.5, 1.5)}, {"rotation": -1.0}, {"color": -0.5}]
)
def test_invalid_augment_values(kwargs):
    with pytest.raises(ConfigError):
        AugmentConfig(**kwargs)


def test_invalid_values_in_from_dict_are_config_errors_too():
    with pytest.raises(ConfigError, match="val_fraction"):
        TrainConfig.from_dict({"val_fraction": 1.5})
    with pytest.raises(ConfigError, match="linear"):
        ModelConfig.from_dict({"head": "lineer"})


def test_round_trip_through_json():
    model = ModelConfig(
        arch="resnet10t",
        pretrained=False,
        head="mlp",
        hidden=(32, 16),
        dropout=0.2,
        task="multilabel",
        threshold=0.3,
        weights="/w.safetensors",
    )
    train = TrainConfig(
        frozen_epochs=4,
        finetune_epochs=2,
        lr=1e-3,
        finetune_lr=2e-4,
        unfreeze=2,
        optimizer="sgd",
        schedule="plateau",
        class_weights="balanced",
        oversample=True,
        augment=AugmentConfig(vflip=True, rotation=0.0, scale=(0.8, 1.0)),
        num_workers=0,
        precision="bf16-mixed",
        monitor="val_f1",
    )
    for cfg in (model, train, AugmentConfig.none(), ModelConfig(), TrainConfig()):
        again = type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert again == cfg
    assert TrainConfig.from_dict(json.loads(json.dumps(train.to_dict()))).augment.scale == (0.8, 1.0)


def test_derived_values():
    assert TrainConfig(lr=1e-2).phase2_lr == pytest.approx(1e-3)
    assert TrainConfig(lr=1e-2, finetune_lr=5e-4).phase2_lr == 5e-4
    assert TrainConfig().phase1_epochs == 30
    assert TrainConfig(feature_cache=False).phase1_epochs == 5
    assert TrainConfig(frozen_epochs=0, finetune_epochs=1).phase1_epochs == 0


def test_configs_are_frozen():
    with pytest.raises(Exception):
        TrainConfig().lr = 1.0  # type: ignore[misc]


# -- moved from the former tests/test_options.py ------------------------------------------------
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
