"""One file, never written: content hash (read in chunks), true format, header size, mode,
whether it decodes to the end (a second read, from the page cache), and a 256-bit perceptual
hash (dHash) of a small thumbnail. Only regular files are read, with the pinned decoders."""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from headstart import shards
from headstart.files import open_regular, sniff
from headstart.preprocess import open_image

EXTENSION_FORMAT = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".png": "png",
    ".bmp": "bmp",
    ".gif": "gif",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".webp": "webp",
    ".ppm": "pnm",
    ".pgm": "pnm",
    ".pbm": "pnm",
}
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


@dataclass(frozen=True)
class FileFacts:
    """What the doctor learned about one file. ``error`` set: it cannot be used as an image."""

    path: str
    bytes: int
    sha: str  # blake2b-128 of the content ("" when unreadable)
    sniffed: str  # format from the magic bytes
    width: int = 0
    height: int = 0
    pixels: int = 0  # from the header; known even when too large to decode
    mode: str = ""
    dhash: str = ""  # 256-bit perceptual hash, hex; "" when not decoded
    error: str = ""  # unreadable / truncated / not an image
    bomb: bool = False  # header size above max_pixels: never decoded


HASH_SIDE = 16  # dHash of a 17x16 thumbnail: 256 bits


def dhash(image: Image.Image) -> str:
    """256-bit difference hash (hex): a 17x16 grey thumbnail, one bit per horizontal
    step up in brightness. 64 bits (9x8) proved too coarse for clip art: on the 240-image demo set,
    road signs, a ladybird and nunchaku lay within 4 of 64 bits of each other.

    Transparent pixels count as white (clip art stores arbitrary colours under alpha 0).
    """
    if image.mode == "P" and max(image.size) > 256:
        # Palette images cannot be box-filtered: a nearest-neighbour cut to <= 256 px
        # first, so the RGBA conversion below touches 256^2 pixels, not all of them.
        scale = 256 / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.NEAREST)
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA")
    # Pillow's thumbnail shrinks JPEGs in the decoder (draft) and others by block reduce.
    image.thumbnail((64, 64), Image.Resampling.BOX, reducing_gap=2.0)
    if image.mode in ("RGBA", "LA"):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    side = HASH_SIDE
    grey = np.asarray(image.convert("L").resize((side + 1, side), Image.Resampling.BOX), dtype=np.int16)  # (16, 17)
    # A step must exceed 2 grey levels: flat areas (most of clip art) then hash to 0
    # instead of to JPEG noise (a q85 re-encode flipped 35 bits without, 0 with).
    bits = (grey[:, 1:] - grey[:, :-1] > 2).ravel()  # (256,)
    return np.packbits(bits).tobytes().hex()


def _read(path: str) -> dict[str, Any] | FileFacts:
    """Hash ``path`` in chunks and sniff its head: the facts so far, or the FileFacts of a
    file that cannot be read (not a regular file, over the size cap...)."""
    try:
        handle = io.BytesIO(shards.read_bytes(path)) if shards.is_address(path) else open_regular(path)
    except OSError as exc:
        return FileFacts(path, 0, "", "unknown", error=f"cannot read: {exc.strerror or exc}")
    with handle:
        digest, head, size = hashlib.blake2b(digest_size=16), b"", 0
        while block := handle.read(1 << 20):  # chunks: memory stays at 1 MiB whatever the file
            digest.update(block)
            head, size = head or block[:32], size + len(block)
    return dict(path=path, bytes=size, sha=digest.hexdigest(), sniffed=sniff(head))


def inspect_file(path: str, max_pixels: int) -> FileFacts:
    """Read ``path`` (read-only; a regular file only) and describe it; never raises for a bad file."""
    facts = _read(path)
    if isinstance(facts, FileFacts):
        return facts
    if not facts["bytes"]:
        return FileFacts(**facts, error="empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: judged by max_pixels below
            image = open_image(path)  # pinned decoders: never EPS (Ghostscript) or another plugin
        with image:
            w, h = image.size
            facts.update(width=w, height=h, pixels=w * h, mode=image.mode)
            if w * h > max_pixels:  # header only: decoding it could take gigabytes
                return FileFacts(**facts, bomb=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image.load()  # decodes to the end: a truncated file fails here
                return FileFacts(**facts, dhash=dhash(image))
    except Image.DecompressionBombError as exc:
        match = _BOMB_PIXELS.search(str(exc))
        return FileFacts(**facts, pixels=int(match.group(1)) if match else max_pixels + 1, bomb=True)
    except Image.UnidentifiedImageError:
        return FileFacts(**facts, error=f"not an image (content looks like {facts['sniffed']})")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        message = str(exc) or type(exc).__name__
        return FileFacts(**facts, error=("truncated: " if "truncated" in message else "cannot decode: ") + message)


def extension_format(path: str) -> str | None:
    return EXTENSION_FORMAT.get(os.path.splitext(path)[1].lower())
