"""Issue 20, the server: Host checked (DNS rebinding), foreign Origins refused (cross-site
POSTs), a token off loopback (generated and printed when not given), decoded pixels
budgeted per request. A real uvicorn on loopback, a fake model."""

from __future__ import annotations

import io
import struct
import zlib

import httpx
import pytest
from _serving import FakePredictor, serving
from PIL import Image
from rich.console import Console

from headstart.serve import ServeConfig, create_app, page_url, resolve_token
from headstart.serve.access import TOKEN_ENV, AccessPolicy


def png(size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def open_server():
    with serving(create_app(FakePredictor())) as url:
        yield url


@pytest.fixture(scope="module")
def token_server():
    with serving(create_app(FakePredictor(), ServeConfig(token="s3cret"))) as url:
        yield url


def test_a_rebound_host_name_is_refused(open_server):
    """Found by the review: a page on evil.example rebound to 127.0.0.1 read /info and used /predict."""
    r = httpx.get(f"{open_server}/info", headers={"Host": "evil.example:8000"})
    assert r.status_code == 403 and "allow-host" in r.json()["error"]
    assert httpx.get(f"{open_server}/info").status_code == 200
    assert httpx.get(f"{open_server}/info", headers={"Host": "localhost"}).status_code == 200


def test_a_cross_site_post_is_refused(open_server):
    """Found by the review: a multipart POST is a simple request any site can make a browser send."""
    files = [("file", ("a.png", png()))]
    r = httpx.post(f"{open_server}/predict", files=files, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]
    assert httpx.post(f"{open_server}/predict", files=files, headers={"Origin": "null"}).status_code == 403
    assert httpx.post(f"{open_server}/predict", files=files, headers={"Origin": open_server}).status_code == 200  # the page itself


def test_a_token_is_required_by_every_route_but_health(token_server):
    assert httpx.get(f"{token_server}/info").status_code == 401
    assert httpx.get(f"{token_server}/").status_code == 401
    assert httpx.get(f"{token_server}/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{token_server}/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert httpx.get(f"{token_server}/health").status_code == 200


def test_the_page_url_carries_the_token_and_sets_the_cookie_its_requests_use(token_server):
    with httpx.Client() as client:  # keeps cookies, as a browser does
        page = client.get(f"{token_server}/?token=s3cret")
        assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]
        assert client.get(f"{token_server}/info").status_code == 200
        assert client.post(f"{token_server}/predict", files=[("file", ("a.png", png()))]).status_code == 200


def test_decoded_pixels_are_budgeted_per_request():
    """Found by the review: 16 uploads of 39.7 MP each (39 KB PNGs) went through in one request."""
    with serving(create_app(FakePredictor(), ServeConfig(max_request_pixels=64_000_000))) as url:
        files = [("file", (f"{i}.png", png_header_only(6300, 6300))) for i in range(2)]  # 39.7 MP each, under the 40 MP per image
        r = httpx.post(f"{url}/predict", files=files)
        assert r.status_code == 413 and "64000000 pixels" in r.json()["error"]
        assert httpx.get(f"{url}/info").json()["limits"]["max_request_pixels"] == 64_000_000


def test_off_loopback_a_token_is_generated_unless_given_or_refused(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert resolve_token("127.0.0.1", None, False) == (None, False)
    token, generated = resolve_token("0.0.0.0", None, False)
    assert generated and token and len(token) >= 32
    assert resolve_token("0.0.0.0", "mine", False) == ("mine", False)
    assert resolve_token("0.0.0.0", None, True) == (None, False)
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert resolve_token("192.168.1.5", None, False) == ("from-env", False)
    assert page_url("0.0.0.0", 8000, "abc") == "http://127.0.0.1:8000/?token=abc"


def test_binding_off_loopback_warns(monkeypatch):
    from headstart.serve import _announce

    console = Console(record=True, width=400)
    _announce(console, "runs/pets", FakePredictor(), ServeConfig(host="0.0.0.0", token="abc"), 8000, generated=True)
    text = console.export_text()
    assert "Warning: bound to 0.0.0.0" in text and "no TLS" in text and "?token=abc" in text and "generated" in text


def test_hosts_accepted_by_a_wildcard_bind():
    policy = AccessPolicy.for_bind("0.0.0.0", allow_hosts=("pets.lan",))
    assert policy.host_allowed("192.168.1.5:8000") and policy.host_allowed("pets.lan") and policy.host_allowed("[::1]:8000")
    assert not policy.host_allowed("evil.example") and not policy.host_allowed("")
    assert AccessPolicy.for_bind("127.0.0.1", allow_hosts=("*",)).host_allowed("anything.example")
    assert not AccessPolicy.for_bind("127.0.0.1").host_allowed("10.0.0.1")


def test_token_and_no_token_together_are_one_line(monkeypatch, capsys, tmp_path):
    import sys

    from headstart import cli

    monkeypatch.setattr(sys, "argv", ["headstart", "serve", str(tmp_path), "--token", "x", "--no-token"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and "contradict" in err and len(err.strip().splitlines()) == 1
