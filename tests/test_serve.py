"""The server: predictions, page, limits, and every kind of bad upload (a real uvicorn on loopback)."""

from __future__ import annotations

import asyncio
import io
import struct
import time
import zlib

import httpx
import numpy as np
import pytest
from _serving import FakePredictor, serving
from PIL import Image

from headstart.serve import ServeConfig, create_app, load_backend

LIMITS = ServeConfig(max_body_bytes=300_000, max_pixels=1_000_000, max_files=4, request_timeout_s=2.0)


def png(colour=(220, 30, 30), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def jpeg(colour=(30, 40, 220), size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a tiny (incomplete) pixel stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def server(exported_run):
    run, _ = exported_run
    with serving(create_app(load_backend(run), LIMITS)) as url:
        yield url


def test_predict_one_and_several_images_in_order(server):
    r = httpx.post(
        f"{server}/predict", files=[("file", ("r.png", png((220, 30, 30)))), ("file", ("b.jpg", jpeg((30, 40, 220))))], params={"top_k": 2}
    )
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["file"] for p in preds] == ["r.png", "b.jpg"]
    assert [p["labels"] for p in preds] == [["red"], ["blue"]]
    assert len(preds[0]["top"]) == 2 and preds[0]["top"][0]["class"] == "red"
    top2 = [t["probability"] for t in preds[0]["top"]]
    assert top2 == sorted(top2, reverse=True)
    every = httpx.post(f"{server}/predict", files={"file": ("r.png", png((220, 30, 30)))}, params={"top_k": 3})
    top3 = every.json()["predictions"][0]["top"]
    assert sorted(t["class"] for t in top3) == ["blue", "green", "red"]
    assert sum(t["probability"] for t in top3) == pytest.approx(1.0, abs=1e-5)  # softmax over every class
    assert top2 == pytest.approx([t["probability"] for t in top3[:2]], abs=1e-6)  # the same image, the same numbers


def test_health_info_openapi_and_page(server):
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    info = httpx.get(f"{server}/info").json()
    assert info["backend"] == "onnxruntime" and info["classes"] == ["blue", "green", "red"]
    assert info["preprocess"]["input_size"] == 32 and info["limits"]["max_pixels"] == 1_000_000
    assert info["limits"]["head_timeout_s"] == 10 and info["limits"]["max_connections"] == 2048
    schema = httpx.get(f"{server}/openapi.json").json()
    assert "multipart/form-data" in schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"/health", "/info", "/predict"} <= set(schema["paths"])
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and "<input" in page.text and 'type="file"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # self-contained: no CDN
    assert httpx.get(f"{server}/docs").status_code == 404  # Swagger UI would load from a CDN


def _chunks(total: int, size: int = 65536):
    """A valid multipart upload of ``total`` bytes, sent chunked (no Content-Length)."""
    yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
    yield png()
    sent = 0
    while sent < total:
        yield b"\0" * min(size, total - sent)
        sent += size
    yield b"\r\n--xyz--\r\n"


BAD_UPLOADS = {
    "oversize": (lambda url: httpx.post(f"{url}/predict", files={"file": ("big.png", png() + b"\0" * 400_000)}), 413),
    "chunked oversize": (
        lambda url: httpx.post(f"{url}/predict", content=_chunks(2_000_000), headers={"content-type": "multipart/form-data; boundary=xyz"}),
        413,
    ),
    "non-image with an image extension": (
        lambda url: httpx.post(f"{url}/predict", files={"file": ("cat.png", b"#!/bin/sh\necho hello\n", "image/png")}),
        415,
    ),
    "unsupported format (TIFF)": (lambda url: httpx.post(f"{url}/predict", files={"file": ("x.jpg", _tiff(), "image/jpeg")}), 415),
    "decompression bomb": (lambda url: httpx.post(f"{url}/predict", files={"file": ("bomb.png", png((0, 0, 0), (2000, 2000)))}), 413),
    "header claims billions of pixels": (
        lambda url: httpx.post(f"{url}/predict", files={"file": ("huge.png", png_header_only(100_000, 100_000))}),
        413,
    ),
    "truncated png": (lambda url: httpx.post(f"{url}/predict", files={"file": ("t.png", png(size=(300, 300))[:-200])}), 422),
    "truncated jpeg": (lambda url: httpx.post(f"{url}/predict", files={"file": ("t.jpg", _noise_jpeg()[:600])}), 422),
    "wrong field": (lambda url: httpx.post(f"{url}/predict", files={"image": ("r.png", png())}), 422),
    "no body": (lambda url: httpx.post(f"{url}/predict"), 422),
    "too many files": (lambda url: httpx.post(f"{url}/predict", files=[("file", (f"{i}.png", png())) for i in range(5)]), 413),
    "bad top_k": (lambda url: httpx.post(f"{url}/predict", params={"top_k": 0}, files={"file": ("r.png", png())}), 422),
}


def _tiff() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "TIFF")
    return buf.getvalue()


def _noise_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_get_a_4xx_json_error_and_the_server_keeps_serving(server, case):
    send, status = BAD_UPLOADS[case]
    r = send(server)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    ok = httpx.post(f"{server}/predict", files={"file": ("r.png", png())})
    assert ok.status_code == 200 and ok.json()["predictions"][0]["labels"] == ["red"]


def test_a_bomb_within_the_byte_cap_is_refused_before_decoding(monkeypatch):
    from PIL import ImageFile

    bomb = png((0, 0, 0), (2000, 2000))
    assert len(bomb) < LIMITS.max_body_bytes / 10  # small on the wire, 4 M pixels inside
    decoded: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def recording_load(self):
        decoded.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)  # Pillow decodes pixels here, lazily
    fake = FakePredictor()
    with serving(create_app(fake, LIMITS)) as url:
        r = httpx.post(f"{url}/predict", files={"file": ("bomb.png", bomb)})
        assert r.status_code == 413, r.text
        assert "pixels" in r.json()["error"]
        assert decoded == [] and fake.batch_sizes == []  # refused from the header alone
        ok = httpx.post(f"{url}/predict", files={"file": ("r.png", png())})
        assert ok.status_code == 200 and set(decoded) == {(40, 30)}  # a normal upload is decoded: the probe works


def test_a_slow_upload_times_out():
    import socket

    with serving(create_app(FakePredictor(), ServeConfig(request_timeout_s=0.5))) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
                b"Content-Length: 1000\r\n\r\n--xyz\r\n"
            )  # then nothing: a stalled client
            start = time.perf_counter()
            reply = sock.recv(4096)
            waited = time.perf_counter() - start
            while chunk := sock.recv(4096):  # the body may come in a later segment; the server closes
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 408") and b"within" in reply
    assert waited < 3


def _concurrent(url: str, n: int) -> list[httpx.Response]:
    async def go():
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as client:
            return await asyncio.gather(*[client.post(f"{url}/predict", files={"file": (f"{i}.png", png())}) for i in range(n)])

    return asyncio.run(go())


def test_concurrent_requests_share_model_calls():
    fake = FakePredictor(delay=0.05)
    with serving(create_app(fake, ServeConfig(max_wait_ms=20, max_batch=32))) as url:
        responses = _concurrent(url, 24)
        health = httpx.get(f"{url}/health").json()
    assert all(r.status_code == 200 for r in responses)
    assert sum(fake.batch_sizes) == 24 and len(fake.batch_sizes) < 24 and max(fake.batch_sizes) > 1
    assert health["images"] == 24 and health["batches"] == len(fake.batch_sizes)


@pytest.mark.slow
def test_a_full_queue_answers_503_and_health_stays_fast():
    fake = FakePredictor(delay=0.3)
    with serving(create_app(fake, ServeConfig(max_batch=1, max_wait_ms=0, queue_size=2))) as url:

        async def go():
            async with httpx.AsyncClient(timeout=30) as client:
                posts = [asyncio.create_task(client.post(f"{url}/predict", files={"file": (f"{i}.png", png())})) for i in range(10)]
                await asyncio.sleep(0.15)
                t = time.perf_counter()
                health = await client.get(f"{url}/health")
                health_s = time.perf_counter() - t
                return await asyncio.gather(*posts), health, health_s

        responses, health, health_s = asyncio.run(go())
        after = httpx.post(f"{url}/predict", files={"file": ("late.png", png())})
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {200, 503} and codes.count(200) >= 2, codes
    assert all("busy" in r.json()["error"] for r in responses if r.status_code == 503)
    assert health.status_code == 200 and health_s < 0.1
    assert after.status_code == 200


def test_serve_cli_binds_loopback_by_default(monkeypatch, exported_run):
    import uvicorn
    from typer.testing import CliRunner

    from headstart.cli import app

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    result = CliRunner().invoke(app, ["serve", str(exported_run[0]), "--port", "9999"])
    assert result.exit_code == 0, result.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 9999


def test_the_torch_backend_serves_the_same_predictions(exported_run, server):
    run, _ = exported_run
    files = [("file", ("r.png", png((220, 30, 30)))), ("file", ("g.jpg", jpeg((30, 200, 40))))]
    with serving(create_app(load_backend(run, "torch"), LIMITS)) as url:
        assert httpx.get(f"{url}/info").json()["backend"] == "torch"
        eager = httpx.post(f"{url}/predict", files=files).json()["predictions"]
    onnx = httpx.post(f"{server}/predict", files=files).json()["predictions"]
    assert [p["labels"] for p in eager] == [p["labels"] for p in onnx] == [["red"], ["green"]]
    for a, b in zip(eager, onnx):
        np.testing.assert_allclose([t["probability"] for t in a["top"]], [t["probability"] for t in b["top"]], atol=1e-4)


@pytest.mark.slow
def test_a_full_queue_refuses_uploads_before_reading_their_bodies():
    import socket

    fake = FakePredictor(delay=0.5)
    with serving(create_app(fake, ServeConfig(max_batch=1, max_wait_ms=0, queue_size=2, request_timeout_s=5))) as url:
        host, port = url.removeprefix("http://").split(":")

        async def fill_and_probe():  # type: ignore[no-untyped-def]
            async with httpx.AsyncClient(timeout=30) as client:
                posts = [asyncio.create_task(client.post(f"{url}/predict", files={"file": (f"{i}.png", png())})) for i in range(4)]
                deadline = time.monotonic() + 20  # the queue is full once the server says so (not after a fixed sleep)
                while (await client.get(f"{url}/health")).json()["waiting"] < 2:
                    assert time.monotonic() < deadline, "the four uploads never filled the queue"
                    await asyncio.sleep(0.02)

                def probe() -> tuple[bytes, float]:
                    with socket.create_connection((host, int(port)), timeout=5) as sock:
                        sock.sendall(
                            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
                            b"Content-Length: 100000\r\n\r\n"
                        )  # a body that never comes
                        t = time.perf_counter()
                        reply = sock.recv(4096)
                        return reply, time.perf_counter() - t

                reply, waited = await asyncio.to_thread(probe)
                await asyncio.gather(*posts)
                return reply, waited

        reply, waited = asyncio.run(fill_and_probe())
    assert reply.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in reply.lower(), reply[:200]
    assert waited < 1.0  # answered at once, not after the 5 s request timeout


def _read_until_closed(sock, within: float) -> tuple[bytes, float]:
    """What the server sends before closing ``sock``, and when it closed (raises socket.timeout if it never does)."""
    sock.settimeout(within)
    start, reply = time.perf_counter(), b""
    while chunk := sock.recv(4096):
        reply += chunk
    return reply, time.perf_counter() - start


@pytest.mark.slow
def test_a_request_head_must_arrive_in_time():
    """Found by bench/faults.py server: uvicorn held a connection that sent nothing, or a
    header a byte at a time, for as long as the client liked (slowloris)."""
    import socket

    with serving(create_app(FakePredictor()), ServeConfig(head_timeout_s=1.0)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as idle:
            assert _read_until_closed(idle, 3)[0] == b""  # nothing sent: closed without a word
        with socket.create_connection((host, int(port))) as slow:
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for _ in range(2):  # a header a byte at a time: each byte in time, the head never complete
                time.sleep(0.1)
                slow.sendall(b"X")
            reply, _ = _read_until_closed(slow, 3)
        assert reply.startswith(b"HTTP/1.1 408") and b"head" in reply
        with socket.create_connection((host, int(port))) as kept:  # a kept-alive connection's next head too
            kept.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = kept.recv(4096)
            kept.sendall(b"GET /health HTTP/1.1\r\n")
            rest, _ = _read_until_closed(kept, 3)
        assert first.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in first + rest  # the first body may come with the 408
        with socket.create_connection((host, int(port))) as fine:  # a head in time, body after it: not the head's deadline
            fine.sendall(
                b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 9\r\n\r\n"
            )
            time.sleep(1.3)  # past the head's deadline: the body is the request timeout's business
            fine.sendall(b"--xyz--\r\n")
            reply, _ = _read_until_closed(fine, 3)
        assert reply.startswith(b"HTTP/1.1 422"), reply[:100]


@pytest.mark.slow
def test_idle_connections_do_not_take_requests_places():
    """Found by bench/faults.py server: uvicorn's limit_concurrency counted idle connections,
    so 1,024 of them (and fewer with other traffic) made every request a 503."""
    import socket

    from headstart.serve.transport import raise_open_file_limit

    raise_open_file_limit(4096)
    with serving(create_app(FakePredictor())) as url:
        host, port = url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(1030)]
        try:
            r = httpx.post(f"{url}/predict", files={"file": ("r.png", png())})
            assert r.status_code == 200, r.text
        finally:
            for s in idle:
                s.close()


def test_connections_beyond_the_cap_are_refused_at_once():
    import socket

    with serving(create_app(FakePredictor()), ServeConfig(max_connections=8)) as url:
        host, port = url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(8)]
        try:
            deadline = time.monotonic() + 5
            while True:  # until the server has accepted all eight (an earlier try is one of them)
                with socket.create_connection((host, int(port))) as extra:
                    extra.settimeout(1)
                    try:
                        reply = extra.recv(4096)
                    except TimeoutError:
                        reply = b""
                if reply or time.monotonic() > deadline:
                    break
            assert reply.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in reply, reply[:100]
        finally:
            for s in idle:
                s.close()
        deadline = time.monotonic() + 5
        while (status := _status(f"{url}/health")) != 200 and time.monotonic() < deadline:
            time.sleep(0.05)  # the server notices the closes
        assert status == 200  # closed ones free their places


def _status(url: str) -> int:
    try:
        return httpx.get(url).status_code
    except httpx.HTTPError:
        return 0


@pytest.mark.slow
def test_large_uploads_decode_one_per_core_and_small_ones_never_wait_behind_them(monkeypatch):
    """A 40 MP upload takes about 170 MB while it decodes; Starlette's thread pool would run 40 at once."""
    import threading

    from headstart.serve import app as app_module

    running, most, lock = [0], [0], threading.Lock()
    decode = app_module.decode_image

    def counting_decode(*args):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        return decode(*args)

    monkeypatch.setattr(app_module, "decode_image", counting_decode)
    monkeypatch.setattr(app_module, "cpu_count", lambda: 2)
    seen = {}
    for large in (0, app_module.LARGE_PIXELS):  # every upload counted as large, then none (40x30 px)
        monkeypatch.setattr(app_module, "LARGE_PIXELS", large)
        most[0] = 0
        with serving(create_app(FakePredictor(), ServeConfig(max_wait_ms=0))) as url:
            responses = _concurrent(url, 8)
        assert all(r.status_code == 200 for r in responses)
        seen[large] = most[0]
    assert seen[0] == 2, seen  # one per core
    assert seen[app_module.LARGE_PIXELS] > 2, seen  # small ones not queued


def test_a_huge_request_head_is_refused_however_it_arrives():
    """Found by bench/faults.py server: a 100 KB header line got 200 when it arrived in one read
    (h11 caps a head only while it is incomplete) and 400 when split."""
    import socket

    with serving(create_app(FakePredictor())) as url:
        host, port = url.removeprefix("http://").split(":")
        for head in (b"X-Big: " + b"a" * 100_000 + b"\r\n", b"".join(b"X-H%d: v\r\n" % i for i in range(4000))):
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head + b"\r\n")  # one write: one read on loopback
                reply, _ = _read_until_closed(sock, 5)
            assert reply.split(b" ")[1] in (b"431", b"400"), reply[:100]  # 400: h11 saw it in pieces
        fair = {f"x-h{i}": "v" for i in range(300)}
        assert httpx.get(f"{url}/health", headers=fair).status_code == 200  # 300 small headers are fine


def test_the_server_runs_one_full_batch_before_serving(monkeypatch):
    """Found by bench/faults.py server: onnxruntime's arena grows to the largest batch run, so
    the server's memory rose 14 % under load, the first time batches filled up."""
    import uvicorn

    from headstart import serve

    fake = FakePredictor()
    monkeypatch.setattr(serve, "load_backend", lambda *args: fake)
    monkeypatch.setattr(serve, "release_freed_memory", lambda: True)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: fake.batch_sizes.append(-1))  # marks when serving starts
    serve.run_server("a run", config=ServeConfig(max_batch=5))
    assert fake.batch_sizes == [5, -1]
