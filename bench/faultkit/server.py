"""Hostile clients: ``headstart serve`` on loopback, attacked while normal traffic flows.

A real run is trained (quick: tiny generated data and the tiny convnet; full: the bundled
demo with BENCH_TRAIN, EfficientNet-Lite0 at 96 px), exported to ONNX and served by
``headstart serve RUN`` in a child process, exactly as a user starts it. Then, for
``--minutes`` (quick: a few seconds), all at once and each bounded in count:

    idle         connections opened and held without a byte (1,000; quick: 50), reopened when closed
    slow head    request heads trickled a byte a second (20; quick: 4)
    slow body    valid heads, then a multipart body a byte a second (20; quick: 4)
    many parts   multipart bodies of 5,000 tiny parts (fields, then files), one at a time
    huge head    a 100 KB header line, then 4,000 small headers, then 300 (within limits)
    random       64 KB of random bytes as a request, and as a multipart body
    40 MP        a flat PNG and a JPEG of 6400x6250 (exactly the pixel limit: decoded), and one
                 column more (refused from its header), two at a time

mixed with normal traffic (two clients posting a real small PNG, a new connection each)
and a /health poller, in this process; the attackers run in a spawned process of their own,
so that their event loop does not delay the measurements. Figures: normal requests'
p50/p99, /health max, 5xx other than 503 (goal 0), 503s, the server's RSS after warm-up
(two clients at once, as the normal traffic runs), after a minute, at the end (goal:
growth <= 10 %) and its peak, open file descriptors after warm-up, at the end and at peak.

"Every normal request answered" means each got an HTTP status within 60 s (a 503 is an
answer; a dropped connection or a wait past 60 s is not). Normal traffic starved (more than
5 % of it refused with 503) is a finding too, and so is any request-shaped attack getting
something other than its expected answer (EXPECT), or, in a soak of a minute or more, the
server never ending an idle or slow connection (MUST).
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import random
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from PIL import Image

from .common import Context, Row, headstart, headstart_cmd, last_line, train_data, train_options

HOST = "127.0.0.1"
ANSWER_WITHIN_S = 60.0  # a normal request not answered by then counts as unanswered


# -- payloads ---------------------------------------------------------------------------


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "hsfaults") -> tuple[bytes, str]:
    """A multipart/form-data body from (field, filename or None, bytes); and its content type."""
    out = io.BytesIO()
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.write(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode())
        out.write(b"Content-Type: application/octet-stream\r\n\r\n" if filename else b"\r\n")
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def request(method: str, path: str, body: bytes = b"", content_type: str | None = None, extra: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + extra + b"\r\n" + body


def predict_request(images: list[tuple[str, bytes]]) -> bytes:
    body, ctype = multipart([("file", name, data) for name, data in images])
    return request("POST", "/predict", body, ctype)


def encoded(size: tuple[int, int], fmt: str, colour: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt, **({"quality": 80} if fmt == "JPEG" else {}))
    return buf.getvalue()


def normal_image(data: Path) -> bytes:
    """A real image from the training data, re-encoded as a small PNG (what a user posts)."""
    first = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[0]
    with Image.open(first) as image:
        image = image.convert("RGB")
        image.thumbnail((256, 256))
        buf = io.BytesIO()
        image.save(buf, "PNG")
    return buf.getvalue()


# -- a tiny raw HTTP client: every byte under our control, one connection per request -----


async def exchange(port: int, raw: bytes, timeout: float) -> str:
    """Send ``raw``, read to EOF: the status code as text, or what happened instead.

    The reply is read while sending: a server may answer early (413, 400) and close, and
    the reset that follows must not swallow the answer already received."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return f"connect failed ({type(exc).__name__})"
    reply = bytearray()

    async def read_all() -> None:
        while chunk := await reader.read(65536):
            reply.extend(chunk)

    reading = asyncio.ensure_future(read_all())
    try:
        writer.write(raw)
        await asyncio.wait_for(writer.drain(), timeout)
    except (OSError, asyncio.TimeoutError):
        pass  # the reply (or its absence) tells
    try:
        await asyncio.wait_for(reading, timeout)  # Connection: close: to EOF
    except asyncio.TimeoutError:
        return status_of(bytes(reply)) if reply else "no answer"
    except OSError:
        pass
    finally:
        writer.close()
    return status_of(bytes(reply))


def status_of(reply: bytes) -> str:
    if not reply:
        return "closed"
    parts = reply.split(b" ", 2)
    return parts[1].decode(errors="replace") if reply.startswith(b"HTTP/") and len(parts) > 1 else "garbage"


@dataclass
class Tally:
    """What one kind of client got back, and how long it took (ms)."""

    got: Counter = field(default_factory=Counter)
    ms: list[float] = field(default_factory=list)

    def add(self, outcome: str, began: float | None = None) -> None:
        self.got[outcome] += 1
        if began is not None:
            self.ms.append((time.perf_counter() - began) * 1000)

    def summary(self) -> str:
        return ", ".join(f"{k} x{v}" for k, v in self.got.most_common()) or "nothing"


def status_part(outcome: str) -> str:
    """'40 MP PNG: 200' -> '200'; '408 after 10 s' -> '408'."""
    return outcome.rsplit(": ", 1)[-1].split(" ", 1)[0]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# -- the clients ------------------------------------------------------------------------


async def looping(stop: asyncio.Event, pause: float, once: Callable[[], Awaitable[None]]) -> None:
    while not stop.is_set():
        await once()
        try:
            await asyncio.wait_for(stop.wait(), pause)
        except asyncio.TimeoutError:
            pass


async def normal_client(port: int, raw: bytes, tally: Tally, stop: asyncio.Event) -> None:
    async def once() -> None:
        began = time.perf_counter()
        tally.add(await exchange(port, raw, ANSWER_WITHIN_S), began)

    await looping(stop, 0.05, once)


async def health_poller(port: int, tally: Tally, stop: asyncio.Event) -> None:
    raw = request("GET", "/health")

    async def once() -> None:
        began = time.perf_counter()
        tally.add(await exchange(port, raw, ANSWER_WITHIN_S), began)

    await looping(stop, 0.25, once)


async def held(port: int, tally: Tally, stop: asyncio.Event, first: bytes, trickle: bytes) -> None:
    """One connection: send ``first``, then ``trickle`` a byte a second until the server
    answers or closes, or we stop; reopened when the server ends it."""
    while not stop.is_set():
        began = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError as exc:
            tally.add(f"connect failed ({type(exc).__name__})")
            await asyncio.sleep(1)
            continue
        outcome = "held to the end"
        try:
            writer.write(first)
            read = asyncio.ensure_future(reader.read(4096))
            for i in range(10**9):
                if stop.is_set():
                    break
                done, _ = await asyncio.wait({read}, timeout=1.0)
                if done:
                    outcome = status_of(read.result()) if not read.exception() else "reset"
                    break
                if trickle:
                    writer.write(trickle[i % len(trickle) : i % len(trickle) + 1])
            read.cancel()
        except OSError:
            outcome = "reset"
        finally:
            writer.close()
        if outcome == "held to the end":
            tally.add(outcome)
        else:
            tally.add(f"{outcome} after {time.perf_counter() - began:.0f} s")


async def idle_connections(port: int, n: int, tally: Tally, stop: asyncio.Event) -> None:
    tasks = []
    for _ in range(n):  # opened a few at a time, as a real flood ramps up
        tasks.append(asyncio.ensure_future(held(port, tally, stop, b"", b"")))
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)


def round_outcome(outcome: str) -> str:
    """'closed after 13 s' -> 'closed after ~10 s': fewer, readable buckets in the row."""
    if " after " not in outcome:
        return outcome
    what, seconds = outcome.rsplit(" after ", 1)
    s = float(seconds.split()[0])
    return f"{what} after {'<1' if s < 1 else f'~{int(s // 5 * 5) or 1}'} s"


@dataclass
class Attack:
    name: str
    tally: Tally
    run: Callable[[asyncio.Event], Awaitable[None]]


# In a soak of a minute or more, the server must have ended some of these (closed, or 408).
MUST = {"idle": "closed", "slow head": "408", "slow body": "408"}
# What each request-shaped attack must get back (besides 503, busy): anything else is a finding.
EXPECT = {
    "5,000 fields": {"400"},
    "5,000 files": {"400", "413"},
    "100 KB line": {"431", "400"},  # 400: h11 saw the head in pieces
    "4,000 headers": {"431", "400"},
    "300 headers": {"200"},
    "as a request": {"400"},
    "as a body": {"400"},
    "PNG": {"200"},
    "JPEG": {"200"},
    "PNG +1 column": {"413"},
}


def attacks(port: int, quick: bool) -> list[Attack]:
    many_fields, ctype = multipart([(f"f{i}", None, b"x") for i in range(5000)])
    many_files, _ = multipart([("file", f"{i}.png", b"x") for i in range(5000)])
    noise = random.Random(13).randbytes(65536)
    big = (6400, 6250)  # 40,000,000 pixels: exactly the default limit, so it is decoded
    variants = {
        "many parts": [
            ("5,000 fields", request("POST", "/predict", many_fields, ctype)),
            ("5,000 files", request("POST", "/predict", many_files, ctype)),
        ],
        "huge head": [
            ("100 KB line", request("GET", "/health", extra=b"X-Big: " + b"a" * 100_000 + b"\r\n")),
            ("4,000 headers", request("GET", "/health", extra=b"".join(b"X-H%d: v\r\n" % i for i in range(4000)))),
            ("300 headers", request("GET", "/health", extra=b"".join(b"X-H%d: v\r\n" % i for i in range(300)))),
        ],
        "random": [("as a request", noise), ("as a body", request("POST", "/predict", noise, ctype))],
        "40 MP": [
            ("PNG", predict_request([("flat40mp.png", encoded(big, "PNG"))])),
            ("JPEG", predict_request([("flat40mp.jpg", encoded(big, "JPEG"))])),
            ("PNG +1 column", predict_request([("over.png", encoded((big[0] + 1, big[1]), "PNG"))])),
        ],
    }
    slow_head = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    slow_body = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + ctype.encode() + b"\r\nContent-Length: 100000\r\n\r\n"
    idle_n, slow_n = (50, 4) if quick else (1000, 20)
    t = {k: Tally() for k in ("idle", "slow head", "slow body", *variants)}

    def cycle(name: str, timeout: float, offset: int = 0) -> Callable[[], Awaitable[None]]:
        state = {"i": offset}

        async def once() -> None:
            label, raw = variants[name][state["i"] % len(variants[name])]
            state["i"] += 1
            began = time.perf_counter()
            t[name].add(f"{label}: {await exchange(port, raw, timeout)}", began)

        return once

    def slow(name: str, first: bytes, trickle: bytes, n: int) -> Callable[[asyncio.Event], Awaitable[None]]:
        async def go(stop: asyncio.Event) -> None:
            await asyncio.gather(*[held(port, t[name], stop, first, trickle) for _ in range(n)])

        return go

    async def two_at_a_time(stop: asyncio.Event) -> None:  # two 40 MP uploads in flight, staggered
        await asyncio.gather(looping(stop, 0.5, cycle("40 MP", 120)), looping(stop, 0.5, cycle("40 MP", 120, 1)))

    return [
        Attack("idle", t["idle"], lambda stop: idle_connections(port, idle_n, t["idle"], stop)),
        Attack("slow head", t["slow head"], slow("slow head", slow_head, b"X-Slow: abcdefghijklmnopqrstuvwxyz\r\n", slow_n)),
        Attack("slow body", t["slow body"], slow("slow body", slow_body, b"--hsfaults\r\nContent-Disposition: form-data", slow_n)),
        Attack("many parts", t["many parts"], lambda stop: looping(stop, 0.5, cycle("many parts", 60))),
        Attack("huge head", t["huge head"], lambda stop: looping(stop, 0.3, cycle("huge head", 30))),
        Attack("random", t["random"], lambda stop: looping(stop, 0.3, cycle("random", 30))),
        Attack("40 MP", t["40 MP"], two_at_a_time),
    ]


def attacker(port: int, quick: bool, conn: Connection) -> None:
    """The hostile clients, in a process of their own: their event loop (1,000 sockets and
    more) must not delay the normal client's and the /health poller's measurements."""
    hostile = attacks(port, quick)  # seconds of payload making, while the server loads
    conn.send("ready")
    seconds = conn.recv()
    if seconds is None:
        return

    async def go() -> None:
        stop = asyncio.Event()

        async def timer() -> None:
            await asyncio.sleep(seconds)
            stop.set()

        await asyncio.gather(timer(), *[a.run(stop) for a in hostile])

    asyncio.run(go())
    conn.send({a.name: a.tally for a in hostile})


# -- the server process -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def wait_healthy(port: int, proc: subprocess.Popen, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.poll() is None:
        if await exchange(port, request("GET", "/health"), 5) == "200":
            return True
        await asyncio.sleep(0.2)
    return False


async def receive(conn: Connection, sender: BaseProcess, within: float) -> object | None:
    """The next message from ``sender``, or None when it dies or says nothing within ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(conn.poll, 0.5):
            return conn.recv()
        if not sender.is_alive():
            return None
    return None


async def ready(ctx: Context, proc: subprocess.Popen, port: int, raw: bytes, attackers: Connection, attacking: BaseProcess) -> list[Row]:
    """Rows saying why the soak cannot start (server, warm-up or attackers not ready), or []."""
    if not await wait_healthy(port, proc, 180):
        return [Row("server", "start", "the server did not answer /health", False)]

    async def warm_client() -> list[str]:  # as the normal traffic runs: two clients at once
        return [await exchange(port, raw, 60) for _ in range(5 if ctx.quick else 50)]

    warm = [status for client in await asyncio.gather(warm_client(), warm_client()) for status in client]
    if warm.count("200") != len(warm):
        return [Row("server", "warm-up", f"normal requests failed before any attack: {Counter(warm)}", False)]
    if await receive(attackers, attacking, 180) != "ready":
        return [Row("server", "attackers", f"the attacking process did not get ready (exit {attacking.exitcode})", False)]
    return []


def attack_rows(hostile: dict[str, Tally], seconds: float) -> list[Row]:
    """One row per attack: what it got, and whether that is what it should get."""
    rows = []
    for name, tally in hostile.items():
        got: Counter = Counter()
        for k, v in tally.got.items():
            got[round_outcome(k)] += v
        bad = sum(v for k, v in tally.got.items() if status_part(k).startswith("5") and status_part(k) != "503")
        unexpected = sorted(k for k in tally.got if ": " in k and status_part(k) not in EXPECT[k.rsplit(": ", 1)[0]] | {"503"})
        p99 = f"; p99 {percentile(tally.ms, 99):.0f} ms" if tally.ms else ""
        outcome = ", ".join(f"{k} x{v}" for k, v in got.most_common()) + p99
        must = MUST.get(name)
        ended = must is None or seconds < 60 or any(k.startswith(must) for k in tally.got)
        if not ended:
            outcome += f"; never {must} by the server in {seconds:.0f} s"
        if unexpected:
            outcome += f"; unexpected: {', '.join(unexpected)}"
        rows.append(Row("server", name, outcome, bad == 0 and ended and not unexpected, {k: float(v) for k, v in got.items()}))
    return rows


def problems_of(figures: dict[str, float], reported: bool, exit_code: int | None, after: str) -> list[str]:
    """What went wrong over the whole soak, from its figures."""
    checks = [
        (not reported, "the attacking process did not report"),
        (exit_code is not None, f"server died (exit {exit_code})"),
        (after != "200", f"a normal request after the attack got {after}"),
        (figures["5xx_not_503"] > 0, f"{figures['5xx_not_503']:.0f} 5xx other than 503"),
        (figures["normal_unanswered"] > 0, f"{figures['normal_unanswered']:.0f} normal requests unanswered"),
        (figures["normal_503_share"] > 0.05, f"normal traffic starved: {figures['normal_503_share']:.0%} answered 503"),
        (not figures["rss_growth_pct"] <= 10, f"RSS grew {figures['rss_growth_pct']:.1f} %"),
        (
            figures["fds_end"] > figures["fds_start"] + 2,
            f"{figures['fds_end']:.0f} fds at the end, {figures['fds_start']:.0f} at the start",
        ),
    ]
    return [message for failed, message in checks if failed]


def soak_figures(
    seconds: float, normal: Tally, health: Tally, hostile: dict[str, Tally], rss: tuple[float, float], fd: tuple[int, int], peak: dict
) -> dict[str, float]:
    """The soak's figures (see the module docstring)."""
    everything = [normal, health, *hostile.values()]
    fives = sum(v for t in everything for k, v in t.got.items() if status_part(k).startswith("5") and status_part(k) != "503")
    busy = sum(v for t in everything for k, v in t.got.items() if status_part(k) == "503")
    unanswered = sum(v for k, v in normal.got.items() if not k.isdigit())
    (rss0, rss1), (fd0, fd1) = rss, fd
    return {
        "seconds": seconds,
        "normal_requests": float(sum(normal.got.values())),
        "normal_200": float(normal.got["200"]),
        "normal_p50_ms": round(percentile(normal.ms, 50), 1),
        "normal_p99_ms": round(percentile(normal.ms, 99), 1),
        "normal_unanswered": float(unanswered),
        "normal_503_share": round(normal.got["503"] / max(1, sum(normal.got.values())), 4),
        "health_max_ms": round(max(health.ms or [float("nan")]), 1),
        "health_p99_ms": round(percentile(health.ms, 99), 1),
        "health_over_500ms": float(sum(ms > 500 for ms in health.ms)),
        "health_polls": float(sum(health.got.values())),
        "5xx_not_503": float(fives),
        "503": float(busy),
        "rss_start_mb": round(rss0, 1),
        "rss_end_mb": round(rss1, 1),
        "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2),
        "rss_peak_mb": round(peak["rss"], 1),
        # rss_1min_mb: the floor over the second minute (between 40 MP decodes)
        **(
            {"rss_1min_mb": round(peak["rss_1min"], 1), "rss_growth_after_1min_pct": round(100 * (rss1 / peak["rss_1min"] - 1), 2)}
            if "rss_1min" in peak
            else {}
        ),
        "fds_start": float(fd0),
        "fds_end": float(fd1),
        "fds_peak": float(peak["fds"]),
    }


async def soak(ctx: Context, proc: subprocess.Popen, port: int, image: bytes, attackers: Connection, attacking: BaseProcess) -> list[Row]:
    raw = predict_request([("normal.png", image)])
    not_ready = await ready(ctx, proc, port, raw, attackers, attacking)
    if not_ready:
        return not_ready
    pid = proc.pid
    rss0, fd0 = rss_mb(pid), fds(pid)
    seconds = 6.0 if ctx.quick else 60 * float(ctx.options.get("minutes", 10))
    ctx.say(f"server: warm at {rss0:.0f} MB RSS, {fd0} fds; attacking for {seconds:.0f} s")
    attackers.send(seconds)

    stop = asyncio.Event()
    normal, health = Tally(), Tally()
    peak = {"rss": rss0, "fds": fd0}

    async def monitor() -> None:
        began = time.monotonic()
        while not stop.is_set():
            if proc.poll() is None:
                rss = rss_mb(pid)
                peak["rss"], peak["fds"] = max(peak["rss"], rss), max(peak["fds"], fds(pid))
                if 60 <= time.monotonic() - began < 120:  # the second minute's floor (between 40 MP decodes):
                    peak["rss_1min"] = min(peak.get("rss_1min", rss), rss)  # a step early, or growth all along?
            await asyncio.sleep(0.5)

    async def timer() -> None:
        began = time.monotonic()
        every = float(ctx.options.get("report_s", 60))
        report = began + every
        while time.monotonic() - began < seconds and proc.poll() is None:
            await asyncio.sleep(min(1.0, seconds))
            if not ctx.quick and time.monotonic() >= report:
                report += every
                ctx.say(
                    f"server: {time.monotonic() - began:.0f} s, normal {normal.summary()}, health max {max(health.ms or [0]):.0f} ms, "
                    f"RSS {rss_mb(pid):.0f} MB, {fds(pid)} fds"
                )
        stop.set()

    tasks = [asyncio.ensure_future(c) for c in [monitor(), timer(), health_poller(port, health, stop)]]
    tasks += [asyncio.ensure_future(normal_client(port, raw, normal, stop)) for _ in range(2)]
    await asyncio.gather(*tasks)
    # The attackers finish what they have in flight (a 40 MP upload may take a while), then report.
    hostile: dict[str, Tally] = await receive(attackers, attacking, 300) or {}  # type: ignore[assignment]

    alive = proc.poll() is None
    # Every attacker has closed its sockets: the server's descriptors should fall back.
    settle = time.monotonic() + 15
    while alive and fds(pid) > fd0 + 2 and time.monotonic() < settle:
        await asyncio.sleep(0.2)
    after = await exchange(port, raw, 60) if alive else "dead"
    rss1, fd1 = (rss_mb(pid), fds(pid)) if alive else (float("nan"), -1)
    figures = soak_figures(seconds, normal, health, hostile, (rss0, rss1), (fd0, fd1), peak)
    problems = problems_of(figures, bool(hostile), None if alive else proc.returncode, after)
    summary = (
        f"normal {figures['normal_requests']:.0f} (200: {normal.got['200']}), p50 {figures['normal_p50_ms']:.0f} ms, "
        f"p99 {figures['normal_p99_ms']:.0f} ms; /health max {figures['health_max_ms']:.0f} ms (p99 {figures['health_p99_ms']:.0f}); "
        f"5xx-not-503 {figures['5xx_not_503']:.0f}, 503 {figures['503']:.0f}; RSS {rss0:.0f} -> {rss1:.0f} MB "
        f"({figures['rss_growth_pct']:+.1f} %, peak {peak['rss']:.0f}"
        + (f", {peak['rss_1min']:.0f} at its floor in the 2nd minute" if "rss_1min" in peak else "")
        + f"); fds {fd0} -> {fd1} (peak {peak['fds']:.0f})"
    )
    rows = attack_rows(hostile, seconds)
    rows.append(Row("server", "summary", summary + ("; " + "; ".join(problems) if problems else ""), not problems, figures))
    return rows


def run(ctx: Context) -> list[Row]:
    data, env = train_data(ctx), ctx.env()
    run_dir = ctx.work / "run"
    for args in (["train", str(data), "--out", str(run_dir), *train_options(ctx)], ["export", str(run_dir)]):
        done = headstart(args, env)
        if done.returncode:
            return [Row("server", args[0], f"{args[0]} failed: {last_line(done.stderr)}", False)]
    port = free_port()
    log = (ctx.work / "serve.log").open("w")
    proc = subprocess.Popen(headstart_cmd("serve", str(run_dir), "--port", str(port)), env=env, stdout=log, stderr=subprocess.STDOUT)
    spawn = multiprocessing.get_context("spawn")  # not fork: the caller (pytest) may have threads
    ours, theirs = spawn.Pipe()
    attacking = spawn.Process(target=attacker, args=(port, ctx.quick, theirs), daemon=True)
    attacking.start()
    try:
        rows = asyncio.run(soak(ctx, proc, port, normal_image(data), ours, attacking))
    finally:
        if attacking.is_alive():
            ours.send(None)  # still waiting to start: let it go; else end it
            attacking.join(5)
            if attacking.is_alive():
                attacking.terminate()
                attacking.join()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    text = (ctx.work / "serve.log").read_text(errors="replace")
    tracebacks = text.count("Traceback")
    if tracebacks:
        rows.append(Row("server", "server log", f"{tracebacks} tracebacks; last: {last_line(text)}", False))
    ctx.say(f"server log: {len(text.splitlines())} lines, {tracebacks} tracebacks")
    return rows
