"""The web page in headless Debian Chromium: upload a real image, read the prediction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _serving import serving

from headstart.serve import ServeConfig, create_app, load_backend

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium")


@pytest.mark.slow
def test_upload_a_real_image_and_read_the_prediction_from_the_page(exported_run, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    run, data = exported_run
    image = next(Path(data, "green").glob("*.png"))
    photo = tmp_path / "photo.jpg"  # a JPEG upload too: the page must not care about the format
    Image.open(image).convert("RGB").resize((120, 90)).save(photo, quality=92)

    with serving(create_app(load_backend(run), ServeConfig())) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('meta').textContent.includes('classes')")
            page.set_input_files("#files", [str(image), str(photo)])
            page.wait_for_selector(".card[data-state=done] >> nth=1", timeout=20_000)
            cards = page.query_selector_all(".card")
            assert len(cards) == 2
            for card in cards:
                labels = [el.inner_text() for el in card.query_selector_all(".label")]
                widths = [el.evaluate("e => parseFloat(e.style.width)") for el in card.query_selector_all(".fill")]
                assert labels[0] == "green" and len(labels) == 3
                assert widths == sorted(widths, reverse=True) and widths[0] > 50
                assert card.query_selector("img").evaluate("i => i.naturalWidth") > 0  # the thumbnail shows
            assert all(u.startswith(url) or u.startswith("blob:") for u in requests), requests  # nothing external
        finally:
            browser.close()
