"""The preprocessing contract: one definition used by training, evaluation, prediction and
every export. It needs only Pillow and numpy, so a torch-free runtime reproduces it exactly.

Pipeline for every image, everywhere:
    decode (EXIF orientation applied, any mode -> RGB, transparency on white)
    -> ``stored``: the centred square at min(shorter side, ``resize_size``) px: a larger
       image is resized (shorter side to ``resize_size``) then cropped, a smaller one is
       cropped at its own size; one channel when the image is grey
       (this is what the decoded-image store keeps: never larger than the image or than needed)
    -> ``expand``: upscale that square to ``resize_size`` when smaller, grey -> RGB
    -> centre-crop ``input_size`` (evaluation) or random-crop/augment (training only)
    -> float32 in [0, 1] -> (x - mean) / std -> CHW
``square`` is ``expand(stored(...))``, and the store's rows are expanded by the same
function when read, so training, evaluation, prediction and exports see identical pixels.

Decoders: every reader of an image (training's store, prediction, the doctor, the report's
data section, the planner, the server) opens it with ``open_image``: a path must be a
regular file (FIFOs, devices and sockets are refused before a byte is read, see
``headstart.files.open_regular``), and Pillow may only try ``IMAGE_FORMATS`` (its plugin for
the file's extension first), so content of another kind (EPS, which runs Ghostscript; PDF,
PSD, ...) is never handed to its decoder, whatever the file is called. Bytes without a name
(uploads, parquet rows) get the same pinned list; a tar member, its name's decoder first. A PNG saved as .jpg still
decodes (the doctor reports the mismatch).

Decompression bombs: Pillow's limits hold everywhere: over 89.5 MP an image is decoded
with a warning, over 179 MP (``Image.MAX_IMAGE_PIXELS`` x 2) it is refused from its header
(skipped and listed, never decoded). Per batch, images over ``HUGE_PIXELS`` (16 MP) decode
together only while their pixels fit half the available memory; the server caps 40 MP per
image and 64 MP per request (``headstart.serve.config``).
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from headstart import shards
from headstart.files import open_regular
from headstart.machine import available_memory

ImageSource = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]

# Extensions treated as images when scanning folders; anything else is ignored and counted.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})

# The only Pillow decoders headstart runs, and the one each extension names first.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
EXTENSION_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".ppm": "PPM",
    ".pgm": "PPM",
    ".pbm": "PPM",
}


def formats_for(name: str | os.PathLike | None) -> tuple[str, ...]:
    """The Pillow formats tried for a file called ``name`` (None: bytes without a name):
    its extension's first, then the rest of ``IMAGE_FORMATS``, never another plugin.

    Example:
        >>> formats_for("cat.png")[:2]
        ('PNG', 'JPEG')
    """
    first = EXTENSION_FORMATS.get(os.path.splitext(os.fspath(name))[1].lower()) if name is not None else None
    return IMAGE_FORMATS if first is None else (first, *(f for f in IMAGE_FORMATS if f != first))


def open_image(source: ImageSource) -> Image.Image:
    """Open an image with only its header read, through the pinned decoders (module docstring):
    a path must be a regular file (else ``headstart.files.NotRegularFile``, an OSError), a
    Pillow image is returned as it is. The file is closed once the pixels are loaded, or
    when the image is closed (``with open_image(p) as im``).

    Example:
        >>> with open_image("cat.jpg") as image:                 # doctest: +SKIP
        ...     image.size
    """
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, bytes):
        return Image.open(io.BytesIO(source), formats=IMAGE_FORMATS)
    if not isinstance(source, (str, os.PathLike)):
        return Image.open(source, formats=IMAGE_FORMATS)
    if shards.is_address(source):  # an image inside a parquet or tar shard (headstart.shards)
        try:
            return Image.open(io.BytesIO(shards.read_bytes(source)), formats=formats_for(shards.member_name(source)))
        except UnidentifiedImageError:  # named by its address, not by a BytesIO's memory address
            raise UnidentifiedImageError(f"cannot identify image file {os.fspath(source)!r}") from None
    handle = open_regular(source)
    try:
        image = Image.open(handle, formats=formats_for(source))
    except UnidentifiedImageError:
        handle.close()
        # Pillow names the handle it was given (its descriptor number, which differs from run
        # to run and made resumed prediction files differ); name the file, as when it opens a path
        raise UnidentifiedImageError(f"cannot identify image file {os.fspath(source)!r}") from None
    except BaseException:
        handle.close()
        raise
    image._exclusive_fp = True  # ours: Pillow closes it after load() or close(), as when it opens a path itself
    return image


_INTERPOLATION = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class Preprocess:
    """Everything needed to turn a file into the model's input tensor."""

    input_size: int  # side of the square the model sees
    resize_size: int  # shorter side after resize; the stored square's side
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if self.resize_size < self.input_size:
            raise ValueError(f"resize_size {self.resize_size} < input_size {self.input_size}")
        if self.interpolation not in _INTERPOLATION:
            raise ValueError(f"interpolation {self.interpolation!r} not in {sorted(_INTERPOLATION)}")

    @classmethod
    def from_timm_config(cls, cfg: dict[str, Any], image_size: int | None = None) -> Preprocess:
        """Derive from a timm data config (``timm.data.resolve_model_data_config``)."""
        size = int(image_size or cfg["input_size"][-1])
        crop_pct = float(cfg.get("crop_pct") or 1.0)
        interpolation = cfg.get("interpolation") or "bilinear"
        if interpolation not in _INTERPOLATION:
            interpolation = "bilinear"
        return cls(
            input_size=size,
            resize_size=max(size, math.floor(size / crop_pct)),
            mean=tuple(float(m) for m in cfg["mean"]),  # type: ignore[arg-type]
            std=tuple(float(s) for s in cfg["std"]),  # type: ignore[arg-type]
            interpolation=interpolation,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "resize_size": self.resize_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        return cls(
            input_size=int(data["input_size"]),
            resize_size=int(data["resize_size"]),
            mean=tuple(float(x) for x in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(x) for x in data["std"]),  # type: ignore[arg-type]
            interpolation=str(data["interpolation"]),
        )

    # -- the pipeline -------------------------------------------------------------------
    def stored(self, source: ImageSource) -> np.ndarray:
        """Decode to the compact square the store keeps: (s, s, C) uint8, s = min(shorter
        side, resize_size), C = 1 for a grey image (R = G = B everywhere), else 3."""
        image = open_image(source)  # the header only: the size is known before any pixel is decoded
        with _HUGE.hold(image.width * image.height):
            return compact_square(_to_rgb_pixels(image, self.resize_size, ours=image is not source), self.resize_size, self.interpolation)

    def expand(self, stored: np.ndarray) -> np.ndarray:
        """A compact square (s, s, C) -> (resize_size, resize_size, 3) uint8, upscaled when s is smaller."""
        return expand_square(stored, self.resize_size, self.interpolation)

    def square(self, source: ImageSource) -> np.ndarray:
        """Decode to the full square: (resize_size, resize_size, 3) uint8, ``expand(stored(source))``."""
        return self.expand(self.stored(source))

    def normalize(self, square: np.ndarray) -> np.ndarray:
        """Centre-crop a stored square (or a batch of them) and normalize -> float32 CHW."""
        crop = center_crop(square, self.input_size)
        x: np.ndarray = crop.astype(np.float32) * (1.0 / 255.0)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(np.moveaxis(x, -1, -3))

    def __call__(self, source: ImageSource) -> np.ndarray:
        """One image to the model input: (3, input_size, input_size) float32."""
        return self.normalize(self.square(source))


def load_rgb(source: ImageSource, min_side: int | None = None) -> Image.Image:
    """Decode any image to 8-bit RGB: EXIF orientation applied, alpha composited on white.

    ``min_side`` lets the JPEG decoder downscale while decoding (``Image.draft``), never
    below that shorter side; every code path passes the same value so results match.
    """
    image = open_image(source)
    return _to_rgb_pixels(image, min_side, ours=image is not source)


# Decoding a huge image holds several full-size copies until it is resized: an RGBA PNG
# needs about 15 bytes a pixel (the decode, the white backdrop, the composite, the RGB
# result), 2.5 GB at 168 MP. Two such OpenClipart PNGs decoding at once made a 5.2 GB peak
# (630 images, 2 cores). Images over HUGE_PIXELS decode together only while their pixels
# fit half the memory still available (the cgroup's headroom included); one alone always
# goes. Measured there: unlimited, unchanged; under a 4 GB cgroup, one at a time instead of
# the kernel's OOM kill.
HUGE_PIXELS = 16_000_000
BYTES_PER_PIXEL = 15


class _PixelBudget:
    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._decoding = 0  # pixels of the huge images being decoded now

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        if pixels <= HUGE_PIXELS:
            yield
            return
        with self._turn:
            while self._decoding and (self._decoding + pixels) * BYTES_PER_PIXEL > (available_memory() or 0) // 2:
                self._turn.wait(0.5)  # memory frees up as the others finish (or elsewhere)
            self._decoding += pixels
        try:
            yield
        finally:
            with self._turn:
                self._decoding -= pixels
                self._turn.notify_all()


_HUGE = _PixelBudget()


def _to_rgb_pixels(image: Image.Image, min_side: int | None, ours: bool) -> Image.Image:
    """``load_rgb`` of an opened image; ``ours``: opened here, so it may be changed in place."""
    if min_side and image.format == "JPEG" and image.mode in ("RGB", "L", "CMYK"):
        w, h = image.size
        short = min(w, h)
        if short > 2 * min_side:
            image.draft(image.mode, (math.ceil(w * min_side / short), math.ceil(h * min_side / short)))
    if not ours:
        image = ImageOps.exif_transpose(image)  # the caller's image: transposed in a copy, never in place
    else:
        # Ours: transposed in place, not copied (a 40 MP upload would need 120 MB more).
        ImageOps.exif_transpose(image, in_place=True)
        image.load()  # a bad file raises here
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB, compositing transparency on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif mode == "La":  # premultiplied alpha: Pillow converts it to nothing else
        image = Image.merge("LA", image.split()).convert("RGBA")
    elif mode in ("LA", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image).convert("RGB")
    return image.convert("RGB")


def resize_square(image: Image.Image, side: int, interpolation: str = "bicubic") -> np.ndarray:
    """Resize the shorter side to ``side`` (aspect kept), keep the centred square."""
    w, h = image.size
    if w <= h:
        new = (side, max(side, int(side * h / w)))
    else:
        new = (max(side, int(side * w / h)), side)
    if new != (w, h):
        image = image.resize(new, _INTERPOLATION[interpolation])
    return center_crop(np.asarray(image, dtype=np.uint8), side)


def compact_square(image: Image.Image, side: int, interpolation: str = "bicubic") -> np.ndarray:
    """The centred square at min(shorter side, ``side``) px, one channel when grey: (s, s, 1 or 3) uint8."""
    if min(image.size) >= side:
        square = resize_square(image, side, interpolation)
    else:  # never upscaled here: ``expand_square`` does it when the square is read
        square = center_crop(np.asarray(image, dtype=np.uint8), min(image.size))
    if (square[..., 0] == square[..., 1]).all() and (square[..., 1] == square[..., 2]).all():
        return np.ascontiguousarray(square[..., :1])  # a third of the bytes, the same pixels
    return np.ascontiguousarray(square)


def expand_square(square: np.ndarray, side: int, interpolation: str = "bicubic") -> np.ndarray:
    """(s, s, 1 or 3) uint8 -> (side, side, 3) uint8. Pillow resamples each channel alike,
    so resizing the grey channel then repeating it equals resizing the RGB image."""
    s, channels = square.shape[0], square.shape[-1]
    if s != side:
        mode = "L" if channels == 1 else "RGB"
        image = Image.fromarray(square[..., 0] if channels == 1 else square, mode)
        square = np.asarray(image.resize((side, side), _INTERPOLATION[interpolation]), dtype=np.uint8)
        if channels == 1:
            square = square[..., None]
    if channels == 1:
        return np.repeat(square, 3, axis=-1)
    return square


def center_crop(array: np.ndarray, side: int) -> np.ndarray:
    """Centre crop of (..., H, W, C) to (..., side, side, C), rounding like torchvision."""
    h, w = array.shape[-3], array.shape[-2]
    top = int(round((h - side) / 2.0))
    left = int(round((w - side) / 2.0))
    return array[..., top : top + side, left : left + side, :]
