"""Small inline thumbnails for the HTML pages (doctor.html, report.html's label issues)."""

from __future__ import annotations

import base64
import io

from headstart.preprocess import open_image


def thumbnail_uri(path: str, side: int = 72) -> str:
    """A small inline PNG (data URI) of an image, or "" when it cannot be read.

    Example:
        >>> thumbnail_uri("/nonexistent.png")
        ''
    """
    try:
        with open_image(path) as image:  # regular files only, pinned decoders
            image.thumbnail((side, side))
            buffer = io.BytesIO()
            image.convert("RGBA").save(buffer, "PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    except Exception:  # noqa: BLE001 - a thumbnail is decoration; the listing still shows the path
        return ""
