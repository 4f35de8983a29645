"""Shared fixtures: a private image cache for every test, and tiny generated image data.

Images are small noisy squares whose colour is their class, so even a tiny network
trained for a few epochs on CPU separates them.
"""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 20),
    "black": (15, 15, 15),
    "white": (240, 240, 240),
}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache: every test gets its own HEADSTART_CACHE_DIR."""
    monkeypatch.setenv("HEADSTART_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def colour_image(colour: str | tuple[int, int, int], seed: int, size: int = 32, noise: float = 14.0) -> Image.Image:
    """A size x size RGB square of one colour plus Gaussian noise (deterministic per seed)."""
    rgb = COLOURS[colour] if isinstance(colour, str) else colour
    rng = np.random.default_rng(seed)
    pixels = np.asarray(rgb, dtype=np.float64) + rng.normal(0.0, noise, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _seed(*parts: object) -> int:
    # Not hash(): str hashing is randomised per process, and the data must be the same every run.
    return zlib.crc32(repr(parts).encode())


def _nested(folder: Path, i: int) -> Path:
    """Image i of a class goes 0, 1 or 2 folders deep."""
    return folder.joinpath(*["sub", "deeper"][: i % 3])


def make_images(
    root: str | Path,
    layout: str = "folders",
    classes: tuple[str, ...] | dict[str, str] = ("red", "green", "blue"),
    per_class: int | tuple[int, ...] = 8,
    size: int = 32,
    nested: bool = True,
) -> Path:
    """Write tiny coloured images in one of headstart's layouts; returns what to pass as DATA.

    folders:    root/<class>/[sub/[deeper/]]<class>_<i>.png              -> root
    splits:     root/{train,val,test}/<class>/<i>.png, per_class=(n_train, n_val, n_test);
                val/ and test/ class folders are created in reverse order -> root
    csv:        root/images/<class>/<i>.png + root/labels.csv (path,label, relative) -> CSV
    multilabel: classes = {colour: "tag1;tag2"}; root/images/<colour>/<i>.png +
                root/labels.csv (path,labels) -> CSV
    """
    root = Path(root)
    if layout == "folders":
        n = per_class if isinstance(per_class, int) else per_class[0]
        for c in classes:
            for i in range(n):
                folder = _nested(root / c, i) if nested else root / c
                folder.mkdir(parents=True, exist_ok=True)
                colour_image(c, _seed("f", c, i), size).save(folder / f"{c}_{i}.png")
        return root
    if layout == "splits":
        counts = (per_class, max(2, per_class // 3), max(2, per_class // 3)) if isinstance(per_class, int) else per_class
        for split, n in zip(("train", "val", "test"), counts):
            order = list(classes) if split == "train" else list(reversed(classes))
            for c in order:
                folder = root / split / c
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    colour_image(c, _seed(split, c, i), size).save(folder / f"{c}_{i}.png")
        return root
    if layout in ("csv", "multilabel"):
        n = per_class if isinstance(per_class, int) else per_class[0]
        tags = classes if isinstance(classes, dict) else {c: c for c in classes}
        rows = []
        for c, tag in tags.items():
            folder = root / "images" / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                colour_image(c, _seed("c", c, i), size).save(folder / f"{c}_{i}.png")
                rows.append((f"images/{c}/{c}_{i}.png", tag))
        path = root / "labels.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "labels" if layout == "multilabel" else "label"])
            writer.writerows(rows)
        return path
    raise ValueError(f"unknown layout {layout!r}")


@pytest.fixture(name="make_images")
def make_images_fixture():
    return make_images


@pytest.fixture(scope="session")
def convnet_weights(tmp_path_factory) -> str:
    """A 'pretrained' convnet_tiny backbone file (random, seeded), as a user passes with weights=.

    With pretrained=True and these weights, training runs both phases (frozen, then fine-tune)."""
    import torch
    from safetensors.torch import save_file

    from headstart.models.convnet import create_convnet

    torch.manual_seed(1234)
    path = tmp_path_factory.mktemp("weights") / "convnet_tiny.safetensors"
    save_file(create_convnet("convnet_tiny").state_dict(), str(path))
    return str(path)


@pytest.fixture(name="tiny")
def tiny_fixture(convnet_weights):
    """tiny(pretrained=True, train=TrainConfig(...), report=False, **model_options) -> a fast Classifier on 32 px.

    The HTML report is off unless asked for: it adds about a second per run, and
    tests/test_report.py covers it."""
    from headstart import Classifier
    from headstart.config import ModelConfig, TrainConfig

    def build(pretrained: bool = True, train: TrainConfig | None = None, report: bool = False, **model) -> Classifier:
        cfg = ModelConfig(arch="convnet_tiny", pretrained=pretrained, weights=convnet_weights if pretrained else None, **model)
        train = train or TrainConfig(frozen_epochs=2, finetune_epochs=1, batch_size=8, patience=0, lr=1e-2, num_workers=0)
        return Classifier(model=cfg, train_config=train, image_size=32, report=report)

    return build


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """The one shared trained run: multiclass from scratch (learns the colours), with an ONNX export.

    Trained once per session and shared read-only (copy it before changing anything).
    Returns (fitted Classifier, data folder, run folder)."""
    from headstart import Classifier
    from headstart.config import ModelConfig, TrainConfig

    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEADSTART_CACHE_DIR", str(root / "cache"))
        data = make_images(root / "data", classes=("red", "green", "blue"), per_class=10, nested=False)
        clf = Classifier(
            model=ModelConfig(arch="convnet_tiny", pretrained=False),
            train=TrainConfig(frozen_epochs=0, finetune_epochs=5, batch_size=8, patience=0, lr=1e-2, num_workers=0),
            image_size=32,
        ).fit(data, out=root / "run")
        clf.export("onnx")
    return clf, data, root / "run"


@pytest.fixture(scope="session")
def exported_run(trained):
    """The shared trained run as (run folder, data folder), for tests that need only the files."""
    _, data, run = trained
    return run, data
