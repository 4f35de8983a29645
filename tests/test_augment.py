"""Training augmentation: per-image geometry in one resample, per-batch colour, eval's normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.config import AugmentConfig
from headstart.data.datasets import SquaresDataset, TrainAugment, border_colour
from headstart.preprocess import Preprocess

PRE = Preprocess(input_size=24, resize_size=32, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))


@pytest.fixture
def squares() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)


def batch_of(ds: SquaresDataset, rows: range) -> torch.Tensor:
    items = [ds[i] for i in rows]
    return ds.collate(items)[0] if ds.collate else torch.stack([x for x, _ in items])


def test_without_augmentation_training_sees_exactly_the_evaluation_input(squares):
    targets = torch.zeros(6, dtype=torch.long)
    train = SquaresDataset(squares, np.arange(6), targets, PRE, AugmentConfig.none())
    evaluation = SquaresDataset(squares, np.arange(6), targets, PRE, None)
    x, ref = batch_of(train, range(6)), batch_of(evaluation, range(6))
    assert x.shape == ref.shape == (6, 3, 24, 24) and x.dtype == torch.float32
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-6)
    assert x.is_contiguous(memory_format=torch.channels_last)  # what the model wants on CPU


def test_a_flip_alone_mirrors_the_centre_crop_exactly(squares):
    aug = TrainAugment(PRE, AugmentConfig(hflip=True, rotation=0.0, scale=(1.0, 1.0), color=0.0))
    centre = squares[0][4:28, 4:28]
    seen = {aug.geometry(squares[0]).tobytes() for _ in range(40)}
    assert seen == {centre.tobytes(), centre[:, ::-1].tobytes()}  # both, and nothing else


def test_vertical_flips_only_when_asked(squares):
    centre = squares[1][4:28, 4:28]
    on = TrainAugment(PRE, AugmentConfig(hflip=False, vflip=True, rotation=0.0, scale=(1.0, 1.0), color=0.0))
    off = TrainAugment(PRE, AugmentConfig(hflip=False, vflip=False, rotation=0.0, scale=(1.0, 1.0), color=0.0))
    assert {on.geometry(squares[1]).tobytes() for _ in range(40)} == {centre.tobytes(), centre[::-1].tobytes()}
    assert {off.geometry(squares[1]).tobytes() for _ in range(10)} == {centre.tobytes()}


def test_rotation_and_crop_fill_with_the_border_colour_and_follow_the_seed():
    grey = np.full((32, 32, 3), 100, np.uint8)
    aug = TrainAugment(PRE, AugmentConfig(hflip=False, rotation=45.0, scale=(1.0, 1.0), color=0.0))
    torch.manual_seed(3)
    views = [aug.geometry(grey) for _ in range(8)]
    assert all(v.shape == (24, 24, 3) and v.dtype == np.uint8 for v in views)
    assert all((v == 100).all() for v in views)  # corners rotated in from outside: the border's grey, not white
    assert all((v[12, 12] == 100).all() for v in views)  # the centre stays the image
    torch.manual_seed(3)
    assert all(np.array_equal(a, aug.geometry(grey)) for a in views)


@pytest.mark.parametrize("background, garment", [((0, 0, 0), (230, 230, 230)), ((255, 255, 255), (20, 40, 200))])
def test_fill_takes_the_image_own_background_colour(background, garment):
    """Fashion-MNIST is a light garment on black: rotated-in corners must be black, not white."""
    image = np.empty((32, 32, 3), np.uint8)
    image[:] = background
    image[10:22, 10:22] = garment
    aug = TrainAugment(PRE, AugmentConfig(hflip=False, rotation=45.0, scale=(0.5, 1.0), color=0.0))
    torch.manual_seed(0)
    views = [aug.geometry(image) for _ in range(12)]
    corners = np.stack([v[[0, 0, -1, -1], [0, -1, 0, -1]] for v in views]).reshape(-1, 3)
    assert (np.abs(corners.astype(int) - background).max(axis=1) <= 2).all()


def test_border_colour_is_the_median_of_the_outer_ring():
    image = np.zeros((8, 8, 3), np.uint8)
    image[0, :3] = 255  # a few bright pixels on the edge do not change a black border
    assert border_colour(image) == (0, 0, 0)
    assert border_colour(np.full((8, 8, 3), (10, 20, 30), np.uint8)) == (10, 20, 30)


def test_random_crops_zoom_in(squares):
    ramp = np.tile(np.arange(32, dtype=np.uint8)[None, :, None] * 8, (32, 1, 3))  # brightness = 8 * x
    aug = TrainAugment(PRE, AugmentConfig(hflip=False, rotation=0.0, scale=(0.3, 0.3), color=0.0))
    torch.manual_seed(0)
    views = [aug.geometry(ramp)[12, :, 0].astype(int) for _ in range(20)]
    spans = [int(np.ptp(v)) for v in views]
    # 30% of the 32 x 32 area at aspect ratios 3/4..4/3 is 15.2..20.2 source columns wide, resampled onto
    # the 24 output columns; the centre crop without zoom would span 23 columns (8 * 23 = 184).
    assert all(8 * 13 <= s <= 8 * 21 for s in spans), spans
    assert len({int(v.mean()) for v in views}) > 5  # the crop moves: random positions, not always the centre


def test_colour_jitter_changes_batches_within_the_valid_range(squares):
    crops = torch.from_numpy(squares[:, :24, :24].copy())
    plain = TrainAugment(PRE, AugmentConfig(color=0.0)).batch(crops)
    jittered = TrainAugment(PRE, AugmentConfig(color=0.4)).batch(crops)
    assert not torch.allclose(plain, jittered)
    lo = (0 - PRE.mean[0]) / PRE.std[0]
    hi = (1 - PRE.mean[0]) / PRE.std[0]
    assert jittered[:, 0].min() >= lo - 1e-5 and jittered[:, 0].max() <= hi + 1e-5
    per_image = (jittered - plain).abs().mean((1, 2, 3))
    assert per_image.std() > 0  # each image draws its own factors


def test_translation_shifts_by_whole_pixels_and_fills_with_the_border():
    """flip_shift (the small-image recipe): a bright square on black moves by at most
    1/14 of the side, the uncovered strip takes the black border, nothing blurs."""
    import numpy as np
    import torch

    from headstart.config import AugmentConfig
    from headstart.data.datasets import TrainAugment
    from headstart.preprocess import Preprocess

    square = np.zeros((28, 28, 3), np.uint8)
    square[10:18, 10:18] = 200
    aug = TrainAugment(Preprocess(28, 28, (0.5,) * 3, (0.5,) * 3, "bilinear"), AugmentConfig.flip_shift())
    torch.manual_seed(0)
    shifts = set()
    for _ in range(40):
        out = aug.geometry(square)
        assert out.shape == (28, 28, 3)
        assert set(np.unique(out)) <= {0, 200}  # whole-pixel shifts: no interpolated greys
        ys, xs = np.nonzero(out[..., 0])
        assert len(ys) == 64  # the square stays whole (a shift of at most 2 px keeps it inside)
        shifts.add((int(ys.min()) - 10, int(xs.min()) - 10))
    assert max(max(abs(dy), abs(dx)) for dy, dx in shifts) <= 2 and len(shifts) > 3


def _grey_store(tmp_path, n=12, side=28):
    """A compact store of n grey side-px images, as decode_all keeps Fashion-MNIST."""
    import numpy as np
    from PIL import Image

    from headstart.data.store import decode_all
    from headstart.preprocess import Preprocess

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (side, side), dtype=np.uint8), "L").save(p)
        paths.append(str(p))
    pre = Preprocess(side, side, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), "bilinear")
    return decode_all(paths, pre, cache=True, show=False).array, pre, paths


def test_whole_batches_from_a_uniform_store_equal_the_item_by_item_path(tmp_path):
    """Evaluation batches gathered from the store's uniform view are exactly what
    Preprocess gives each file (the prediction and export contract)."""
    import numpy as np
    import torch

    from headstart.data.datasets import SquaresDataset

    squares, pre, paths = _grey_store(tmp_path)
    assert squares.uniform() is not None and squares.uniform().shape == (12, 28, 28, 1)
    ds = SquaresDataset(squares, np.arange(12)[::-1].copy(), torch.arange(12), pre, None)
    x, y = ds.collate(ds.__getitems__([0, 3, 5]))
    expected = torch.stack([torch.from_numpy(pre(paths[11 - i])) for i in (0, 3, 5)])
    assert torch.equal(x, expected) and y.tolist() == [0, 3, 5]
    loader = torch.utils.data.DataLoader(ds, batch_size=5, collate_fn=ds.collate)
    assert torch.equal(torch.cat([b for b, _ in loader]), torch.stack([torch.from_numpy(pre(p)) for p in paths[::-1]]))


def test_batch_flips_and_shifts_match_the_per_image_geometry(tmp_path):
    """geometry_batch (the small-image recipe's augmentation for a whole batch): every output
    is the input flipped or not and shifted by whole pixels within 1/14 of the side, the
    uncovered strip filled with that image's border colour."""
    import numpy as np
    import torch

    from headstart.config import AugmentConfig
    from headstart.data.datasets import TrainAugment, border_colour
    from headstart.preprocess import Preprocess

    rng = np.random.default_rng(1)
    batch = np.zeros((16, 28, 28, 3), np.uint8)
    batch[:, :, :] = rng.integers(0, 40, (16, 1, 1, 3))  # a plain background per image
    batch[:, 9:19, 6:20] = rng.integers(100, 255, (16, 10, 14, 3))  # an off-centre object
    aug = TrainAugment(Preprocess(28, 28, (0.5,) * 3, (0.5,) * 3, "bilinear"), AugmentConfig.flip_shift())
    assert aug.batch_geometry
    torch.manual_seed(0)
    out = aug.geometry_batch(torch.from_numpy(batch)).numpy()
    assert out.shape == batch.shape and out.dtype == np.uint8
    flipped = 0
    for src, got in zip(batch, out):
        fill = border_colour(src)
        matches = []
        for flip in (False, True):
            img = src[:, ::-1] if flip else src
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    canvas = np.empty_like(img)
                    canvas[:] = fill
                    ys, xs = slice(max(0, dy), 28 + min(0, dy)), slice(max(0, dx), 28 + min(0, dx))
                    canvas[ys, xs] = img[max(0, -dy) : 28 - max(0, dy), max(0, -dx) : 28 - max(0, dx)]
                    if np.array_equal(canvas, got):
                        matches.append(flip)
        assert matches, "not a flip plus a whole-pixel shift of the input"
        flipped += matches[0]
    assert 0 < flipped < 16  # each image flips on its own coin
