"""Decoding and the preprocessing contract: orientation, every mode to RGB, crops, normalisation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from headstart.preprocess import Preprocess, center_crop, load_rgb, resize_square, to_rgb

ORIENTATION = 0x0112


def jpeg_with_orientation(path, orientation: int) -> None:
    """A 40 wide x 24 high JPEG: left half red, right half blue, with an EXIF Orientation tag."""
    pixels = np.zeros((24, 40, 3), np.uint8)
    pixels[:, :20] = (230, 20, 20)
    pixels[:, 20:] = (20, 20, 230)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, "JPEG", quality=95, exif=exif.tobytes())


def is_rgb_uint8(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(image)
    assert image.mode == "RGB"
    assert arr.dtype == np.uint8 and arr.shape == (size[1], size[0], 3)
    return arr


def test_exif_orientation_6_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    jpeg_with_orientation(path, 6)
    assert Image.open(path).size == (40, 24)  # stored landscape
    image = load_rgb(path)
    arr = is_rgb_uint8(image, (24, 40))  # displayed portrait: 24 wide, 40 high
    # Orientation 6 = rotate 90 degrees clockwise to display: the left (red) half goes on top.
    top, bottom = arr[:20].reshape(-1, 3).mean(0), arr[20:].reshape(-1, 3).mean(0)
    assert top[0] > 150 and top[2] < 100, top
    assert bottom[2] > 150 and bottom[0] < 100, bottom


def test_exif_orientation_reaches_the_stored_square(tmp_path):
    path = tmp_path / "rotated.jpg"
    jpeg_with_orientation(path, 6)
    pre = Preprocess(input_size=16, resize_size=24, mean=(0.5,) * 3, std=(0.5,) * 3)
    square = pre.square(path)
    assert square.shape == (24, 24, 3)
    # Portrait after rotation: the centre square spans rows of both halves, red above blue.
    assert square[2, 12, 0] > 150 and square[-3, 12, 2] > 150


def test_orientation_1_is_unchanged(tmp_path):
    path = tmp_path / "plain.jpg"
    jpeg_with_orientation(path, 1)
    assert load_rgb(path).size == (40, 24)


def _saved(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def test_grey_L_becomes_rgb():
    arr = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (6, 1))  # 25 wide, 6 high
    out = is_rgb_uint8(load_rgb(_saved(Image.fromarray(arr, "L"), "PNG")), (25, 6))
    assert np.array_equal(out[..., 0], arr) and np.array_equal(out[..., 1], arr) and np.array_equal(out[..., 2], arr)


def test_LA_transparent_pixels_become_white():
    la = Image.new("LA", (10, 8), (0, 255))
    la.putpixel((3, 2), (0, 0))  # transparent black
    out = is_rgb_uint8(load_rgb(_saved(la, "PNG")), (10, 8))
    assert tuple(out[2, 3]) == (255, 255, 255)
    assert tuple(out[0, 0]) == (0, 0, 0)


def test_RGBA_transparent_pixels_become_white_and_partial_alpha_blends():
    rgba = np.zeros((8, 12, 4), np.uint8)
    rgba[..., :3] = (200, 10, 10)
    rgba[..., 3] = 255
    rgba[:, :4, 3] = 0  # fully transparent left third
    rgba[:, 4:8] = (0, 0, 0, 128)  # half-transparent black
    out = is_rgb_uint8(load_rgb(_saved(Image.fromarray(rgba, "RGBA"), "PNG")), (12, 8))
    assert (out[:, :4] == 255).all()
    assert np.abs(out[:, 4:8].astype(int) - 127).max() <= 1
    assert (out[:, 8:] == (200, 10, 10)).all()


def test_P_with_transparency_becomes_white():
    p = Image.new("P", (6, 6), 1)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * (256 * 3 - 6))
    p.putpixel((0, 0), 0)
    data = _saved(p, "PNG", transparency=0)  # palette index 0 is transparent
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "P" and "transparency" in opened.info
    out = is_rgb_uint8(load_rgb(data), (6, 6))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[3, 3]) == (10, 200, 30)


def test_P_without_transparency_keeps_the_palette_colours():
    p = Image.new("P", (4, 4), 2)
    p.putpalette([0, 0, 0, 1, 1, 1, 9, 99, 199] + [0] * (256 * 3 - 9))
    out = is_rgb_uint8(load_rgb(_saved(p, "GIF")), (4, 4))
    assert (out == (9, 99, 199)).all()


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_CMYK_becomes_rgb(fmt):
    cmyk = Image.new("CMYK", (9, 7), (0, 255, 255, 0))  # pure red in CMYK
    data = _saved(cmyk, fmt)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = is_rgb_uint8(load_rgb(data), (9, 7))
    mean = out.reshape(-1, 3).mean(0)
    assert mean[0] > 200 and mean[1] < 60 and mean[2] < 60, mean


def test_16_bit_grey_is_scaled_to_8_bits():
    arr = np.zeros((4, 5), np.uint16)
    arr[0, 0] = 65535
    arr[1, 1] = 32896  # about half
    data = _saved(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = is_rgb_uint8(load_rgb(data), (5, 4))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert abs(int(out[1, 1, 0]) - 128) <= 1
    assert tuple(out[3, 4]) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr", "HSV", "La", "PA"])
def test_to_rgb_gives_rgb_uint8_for_every_mode(mode):
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (7, 5, 3), dtype=np.uint8))
    if mode in ("I;16", "I", "F"):
        image = base.convert("L").convert(mode) if mode != "I;16" else Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 200)
    elif mode == "PA":
        image = base.convert("P").convert("PA")
    elif mode == "La":  # premultiplied alpha, which to_rgb names explicitly
        image = base.convert("LA").convert("La")
    else:
        image = base.convert(mode)
    assert image.mode == mode
    out = to_rgb(image)
    is_rgb_uint8(out, (5, 7))


def test_sources_file_bytes_stream_and_pil_decode_the_same(tmp_path):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    path = tmp_path / "x.png"
    image.save(path)
    pre = Preprocess(input_size=16, resize_size=18, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    reference = pre(path)
    assert reference.shape == (3, 16, 16) and reference.dtype == np.float32
    for source in (str(path), path.read_bytes(), io.BytesIO(path.read_bytes()), Image.open(path)):
        np.testing.assert_array_equal(pre(source), reference)


def test_resize_square_keeps_the_centre_and_aspect():
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 255  # the centre third is white
    out = resize_square(Image.fromarray(wide), 10, "nearest")
    assert out.shape == (10, 10, 3)
    assert (out == 255).all()  # only the centre square is kept, no squashing
    tall = resize_square(Image.fromarray(np.zeros((40, 20, 3), np.uint8)), 8)
    assert tall.shape == (8, 8, 3)


def test_center_crop_on_batches():
    batch = np.arange(2 * 6 * 6 * 3, dtype=np.uint8).reshape(2, 6, 6, 3)
    crop = center_crop(batch, 4)
    assert crop.shape == (2, 4, 4, 3)
    assert np.array_equal(crop, batch[:, 1:5, 1:5])


def test_normalize_is_mean_std_chw():
    pre = Preprocess(input_size=2, resize_size=4, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    square = np.full((4, 4, 3), 255, np.uint8)
    x = pre.normalize(square)
    assert x.shape == (3, 2, 2) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(x[:, 0, 0], [1.0, 3.0, 1.0], rtol=1e-6)
    batch = pre.normalize(np.stack([square, square]))
    assert batch.shape == (2, 3, 2, 2)


def test_from_timm_config():
    cfg = {
        "input_size": (3, 224, 224),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    }
    pre = Preprocess.from_timm_config(cfg)
    assert (pre.input_size, pre.resize_size, pre.interpolation) == (224, 256, "bicubic")
    assert pre.mean == (0.485, 0.456, 0.406)
    small = Preprocess.from_timm_config({**cfg, "interpolation": "random"}, image_size=32)
    assert (small.input_size, small.resize_size, small.interpolation) == (32, 36, "bilinear")
    assert Preprocess.from_dict(small.to_dict()) == small


def test_invalid_preprocess():
    with pytest.raises(ValueError):
        Preprocess(input_size=32, resize_size=16, mean=(0,) * 3, std=(1,) * 3)
    with pytest.raises(ValueError):
        Preprocess(input_size=16, resize_size=16, mean=(0,) * 3, std=(1,) * 3, interpolation="magic")


def test_corrupt_and_truncated_files_raise(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(Exception):
        load_rgb(bad)
    full = _saved(Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)), "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(OSError):
        load_rgb(cut)


# -- moved from the former tests/test_decode.py -------------------------------------------------
@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_every_mode_saved_to_a_file_loads_as_rgb(tmp_path, mode):
    if mode == "I;16":
        img = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    else:
        img = Image.new("RGB", (8, 8), (10, 200, 30)).convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    img.save(path)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (8, 8)
    if mode == "I;16":
        assert np.asarray(out).min() == 255  # 16-bit white stays white, not clipped garbage


def test_transparency_in_files_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 255, 255))
    img.save(tmp_path / "t.png")
    arr = np.asarray(load_rgb(tmp_path / "t.png"))
    assert tuple(arr[0, 0]) == (0, 0, 255)
    assert tuple(arr[3, 3]) == (255, 255, 255)
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    assert tuple(np.asarray(load_rgb(tmp_path / "p.png"))[1, 1]) == (255, 255, 255)


def test_decoding_does_not_copy_the_full_size_image():
    """Found by bench/faults.py server: decoding made a full-size copy (160 MB for a 40 MP upload)
    only to apply an EXIF orientation that was not there. Counted in Pillow's 16 MB blocks."""
    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), (40, 120, 200)).save(buf, "PNG")
    before = Image.core.get_stats()["allocated_blocks"]
    one = Image.new("RGB", (4000, 3000))
    full = Image.core.get_stats()["allocated_blocks"] - before
    del one
    before = Image.core.get_stats()["allocated_blocks"]
    Preprocess(96, 109, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")(buf.getvalue())
    assert Image.core.get_stats()["allocated_blocks"] - before <= full + 2  # the decode, and the small resize passes


def _most_at_once(budget, pixels: int, threads: int = 2) -> int:
    """How many of ``threads`` decodes of ``pixels`` each held ``budget`` at the same time."""
    import threading
    import time

    lock, inside, most = threading.Lock(), [0], [0]

    def decode() -> None:
        with budget.hold(pixels):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.2)
            with lock:
                inside[0] -= 1

    running = [threading.Thread(target=decode) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(10)
    return most[0]


def test_huge_images_decode_together_only_while_memory_allows(monkeypatch):
    """Two 168 MP OpenClipart PNGs decoding at once were 5.2 GB; under a 3.5 GB cgroup the
    kernel killed the run. Huge decodes now share half the available memory."""
    from headstart import preprocess as pp

    huge = pp.HUGE_PIXELS + 1
    monkeypatch.setattr(pp, "available_memory", lambda: 10 * huge * pp.BYTES_PER_PIXEL)
    assert _most_at_once(pp._PixelBudget(), huge) == 2  # plenty: no waiting
    monkeypatch.setattr(pp, "available_memory", lambda: 3 * huge * pp.BYTES_PER_PIXEL)
    assert _most_at_once(pp._PixelBudget(), huge) == 1  # two would take more than half
    assert _most_at_once(pp._PixelBudget(), pp.HUGE_PIXELS) == 2  # ordinary images never wait


def test_an_undecodable_file_is_named_by_its_path_not_its_descriptor(tmp_path):
    # Pillow names the open handle (``<_io.BufferedReader name=12>``), a number that differs
    # between runs: a resumed predictions file then differed from an uninterrupted one.
    from PIL import UnidentifiedImageError

    from headstart.preprocess import open_image

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(UnidentifiedImageError) as caught:
        open_image(bad)
    assert str(bad) in str(caught.value) and "BufferedReader" not in str(caught.value)
