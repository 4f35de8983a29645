"""The image store is sized by the data: each image at min(its own size, what the
preprocessing needs), grey in one channel, expanded when read to exactly the pixels
``Preprocess.square`` gives at prediction time and in exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.data.store import cache_root, decode_all
from headstart.engine.features import extract_features
from headstart.models.convnet import create_convnet
from headstart.preprocess import Preprocess, expand_square

BIG = Preprocess(input_size=224, resize_size=256, mean=(0.5,) * 3, std=(0.5,) * 3)  # a base's default
SMALL = Preprocess(input_size=24, resize_size=28, mean=(0.5,) * 3, std=(0.5,) * 3)


def garments(folder: Path, n: int, size: int = 28) -> list[str]:
    """Fashion-MNIST-like: a light shape on black, greyscale PNGs."""
    rng = np.random.default_rng(n)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        pixels = np.zeros((size, size), np.uint8)
        pixels[4 : size - 4, 6 : size - 6] = rng.integers(100, 256, (size - 8, size - 12), dtype=np.uint8)
        paths.append(str(folder / f"{i}.png"))
        Image.fromarray(pixels, "L").save(paths[-1])
    return paths


def test_28px_greyscale_images_are_stored_at_28px_in_one_channel(tmp_path):
    paths = garments(tmp_path / "fm", 12)
    out = decode_all(paths, BIG, show=False)
    assert out.array.shape == (12, 256, 256, 3)
    assert out.array.nbytes == 12 * 28 * 28  # not 12 * 256 * 256 * 3
    (npy,) = (cache_root() / "images").glob("*.npy")
    assert npy.stat().st_size < 12 * 28 * 28 + 200  # the file on disk too: rows plus a .npy header
    for i in (0, 7):  # what training reads == what prediction and exports compute from the file
        np.testing.assert_array_equal(out.array[i], BIG.square(paths[i]))
    np.testing.assert_array_equal(out.array[[3, 1]], np.stack([BIG.square(paths[3]), BIG.square(paths[1])]))
    again = decode_all(paths, BIG, show=False)
    assert again.cached and again.array.nbytes == 12 * 28 * 28
    np.testing.assert_array_equal(np.asarray(again.array), np.asarray(out.array))


def test_larger_images_are_stored_at_the_needed_size_and_colour_keeps_three_channels(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(64, 48), (40, 90), (28, 28)]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    out = decode_all(paths, SMALL, show=False)
    assert out.array.nbytes == 3 * 28 * 28 * 3
    for i in range(3):
        assert out.array.stored(i).shape == (28, 28, 3)
        np.testing.assert_array_equal(out.array[i], SMALL.square(paths[i]))


def test_a_small_non_square_image_keeps_its_centre_square_at_native_size(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (30, 20, 3), dtype=np.uint8)  # 20 wide, 30 high
    path = tmp_path / "tall.png"
    Image.fromarray(pixels).save(path)
    stored = SMALL.stored(path)
    np.testing.assert_array_equal(stored, pixels[5:25])  # the centred 20 x 20 square, untouched
    out = decode_all([str(path)], SMALL, cache=False, show=False)
    assert out.array.nbytes == 20 * 20 * 3
    expected = np.asarray(Image.fromarray(pixels[5:25]).resize((28, 28), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(out.array[0], expected)
    np.testing.assert_array_equal(SMALL.square(path), expected)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "lanczos"])
def test_resizing_the_grey_channel_equals_resizing_the_rgb_image(interpolation):
    grey = np.random.default_rng(2).integers(0, 256, (28, 28), dtype=np.uint8)
    rgb = Image.fromarray(np.repeat(grey[..., None], 3, axis=-1))
    expected = np.asarray(rgb.resize((64, 64), getattr(Image.Resampling, interpolation.upper())))
    np.testing.assert_array_equal(expand_square(grey[..., None], 64, interpolation), expected)


def test_features_from_the_compact_store_equal_features_from_full_squares(tmp_path):
    paths = garments(tmp_path / "fm", 9)
    pre = Preprocess(input_size=32, resize_size=36, mean=(0.5,) * 3, std=(0.5,) * 3)
    store = decode_all(paths, pre, show=False).array
    torch.manual_seed(0)
    base = create_convnet("convnet_tiny")
    rows = np.array([4, 0, 8, 2])
    compact = extract_features(base, store, rows, pre, batch_size=3)
    full = extract_features(base, np.asarray(store), rows, pre, batch_size=3)
    torch.testing.assert_close(compact, full, rtol=0, atol=0)


@pytest.mark.slow
def test_images_smaller_than_the_input_train_evaluate_predict_and_export_alike(tmp_path, make_images, tiny):
    """End to end with 20 px images under a 32 px input: stored at 20 px, upscaled on read,
    and the evaluation on the store equals prediction from the files and the export's parity."""
    import headstart
    from headstart.predict import Predictor

    data = make_images(tmp_path / "data", per_class=6, size=20, nested=False)
    clf = tiny().fit(data, out=tmp_path / "run")
    pre = clf.artifact.preprocess
    assert pre.input_size == 32 and pre.resize_size >= 32
    paths = sorted(str(p) for p in Path(data).rglob("*.png"))
    store = decode_all(paths, pre, show=False)
    assert store.cached and max(store.array.stored(i).shape[0] for i in range(len(paths))) == 20
    predictor = Predictor(clf.artifact, device="cpu", batch_size=5)
    from_store = predictor.probabilities_of_squares(store.array, np.arange(len(paths)))
    from_files = np.array([list(p.probs.values()) for p in predictor.predict(paths, top_k=1)])
    np.testing.assert_allclose(from_store, from_files, rtol=0, atol=1e-6)  # float32 batch-size noise only
    report = headstart.load(clf.run_dir).export("onnx").parity
    assert report.ok and report.top1_mismatches == 0


def test_image_sizes_summarise_headers_and_suggest_the_input_side(tmp_path):
    from headstart.data.index import ImageSizes, image_sizes

    paths = garments(tmp_path / "fm", 6) + [str(tmp_path / "bad.png")]
    Path(paths[-1]).write_bytes(b"not an image")
    sizes = image_sizes(paths, limit=4)  # every 2nd file: 4 headers, the last one unreadable
    assert sizes.examined == 4 and sizes.total == 7 and sizes.short == (28, 28, 28)
    assert sizes.median == 28 and sizes.input_size(224) == 28 and sizes.input_size(224, multiple=16) == 32
    assert ImageSizes(3, 3, (600, 480, 800)).input_size(224) == 224
    assert ImageSizes(0, 0, ()).input_size(224) == 224 and ImageSizes(0, 0, ()).median is None
