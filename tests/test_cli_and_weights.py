"""The CLI in-process and as a process; the bundled pretrained weights on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import timm
from _imagegen import class_folders
from PIL import Image
from typer.testing import CliRunner

from headstart.cli import app
from headstart.models.weights import bundled_state_dict
from headstart.preprocess import Preprocess

runner = CliRunner()


def test_cli_train_predict_evaluate(tmp_path):
    data = class_folders(tmp_path / "data", per_class=6)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(data), "--out", str(run), "--arch", "convnet_tiny", "--no-pretrained",
                                 "--image-size", "32", "--finetune-epochs", "1", "--frozen-epochs", "1", "--batch-size", "8",
                                 "--class-weights", "balanced"])
    assert result.exit_code == 0, result.output
    assert (run / "headstart.json").is_file()
    assert '"class_weights": "balanced"' in (run / "config.json").read_text()
    result = runner.invoke(app, ["predict", str(run), str(data / "red"), "--top-k", "2", "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 7
    result = runner.invoke(app, ["predict", str(run), str(data / "green" / "green_0.png")])
    assert result.exit_code == 0 and "green_0.png" in result.output
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert (run / "eval-data" / "metrics.json").is_file()


@pytest.mark.parametrize("photo, accepted", [("chelsea", range(281, 286)), ("coffee", [967])])
def test_bundled_efficientnet_lite0_recognises_real_photos(photo, accepted):
    """The bundled weights map onto timm's tf_efficientnet_lite0: a cat is a cat
    (ImageNet 281-285), an espresso an espresso (967)."""
    from skimage import data

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    model.load_state_dict(bundled_state_dict())
    pre = Preprocess.from_timm_config(timm.data.resolve_model_data_config(model))
    x = pre(Image.fromarray(getattr(data, photo)()))
    import torch

    with torch.inference_mode():
        probs = model(torch.from_numpy(x)[None]).softmax(-1)[0].numpy()
    top = int(np.argmax(probs))
    assert top in accepted, timm.data.ImageNetInfo().index_to_description(top)
    assert probs[list(accepted)].sum() > 0.5
