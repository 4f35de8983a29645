"""Serving goals of issue 5, on loopback, bounded in requests and time per level.

    python bench/serve_load.py [--run RUN] [--seconds 8] [--max-requests 1000]

RUN: a trained run folder; default: trains the bundled demo data for a quick run
(frozen base only, EfficientNet-Lite0) into a temporary folder. The run is exported to
ONNX (parity-checked) if it has no export yet; the server is `headstart serve RUN` in a
subprocess (its own process, as deployed), the client an asyncio httpx load generator.

  load levels    concurrency 1, 8, 32 and twice saturation, where saturation is the
                 in-flight capacity max_batch + queue_size: req/s, p50/p95/p99 latency,
                 error rate (only 503 from the queue is allowed)
  /health        polled every 50 ms during each level: must stay < 100 ms
  batching       req/s at c=32 must be >= 3x req/s at c=1
  model          batch-1 latency on 2 threads: ONNX (onnxruntime) vs eager PyTorch, goal <= 0.8x
Writes bench/results/serve_load-<machine>-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np
from locations import result_path

ROOT = Path(__file__).resolve().parents[1]
MAX_BATCH, QUEUE = 8, 64  # the server's limits in this benchmark; saturation = 72 in flight


def quick_run(out: Path) -> Path:
    import headstart
    from headstart.config import TrainConfig

    data = Path(str(resources.files("headstart") / "demo_data" / "openclipart"))
    headstart.Classifier(train_config=TrainConfig(finetune_epochs=0)).fit(data, out=out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def level(url: str, body: bytes, concurrency: int, seconds: float, max_requests: int) -> dict:
    import httpx

    latencies: list[float] = []
    codes: Counter = Counter()
    stop = time.perf_counter() + seconds
    issued = 0
    # Throughput counts successes completed in the second half of the window: the ramp-up
    # (first batches still forming) and the drain after `stop` are not steady state.
    steady = stop - seconds / 2
    in_window = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal issued, in_window
        while time.perf_counter() < stop and issued < max_requests:
            issued += 1
            t = time.perf_counter()
            try:
                r = await client.post(f"{url}/predict", files={"file": ("img.png", body, "image/png")})
                codes[r.status_code] += 1
                done = time.perf_counter()
                if r.status_code == 200:
                    latencies.append(done - t)
                    if steady <= done <= stop:
                        in_window += 1
            except httpx.HTTPError as exc:
                codes[type(exc).__name__] += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    # /health is polled from another process: in this one, the probe would wait behind the
    # load generator's own event loop and measure the client, not the server.
    probe = subprocess.Popen([sys.executable, __file__, "--probe", url, "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*[worker(client) for _ in range(concurrency)])
        wall = time.perf_counter() - start
    probe.terminate()
    health = [float(line) for line in (probe.communicate()[0] or "").split()]
    total = sum(codes.values())
    errors = {str(k): v for k, v in codes.items() if k != 200}
    return {
        "concurrency": concurrency,
        "requests": total,
        "ok": codes[200],
        "seconds": round(wall, 2),
        "req_per_s": round(in_window / (seconds / 2), 1),
        "p50_ms": round(pct(latencies, 50) * 1000, 1),
        "p95_ms": round(pct(latencies, 95) * 1000, 1),
        "p99_ms": round(pct(latencies, 99) * 1000, 1),
        "error_rate": round((total - codes[200]) / max(total, 1), 3),
        "errors": errors,
        "only_503": set(errors) <= {"503"},
        "health_max_ms": round(max(health) * 1000, 1) if health else None,
        "health_p95_ms": round(pct(health, 95) * 1000, 1),
    }


def probe(url: str, seconds: float) -> None:
    """Poll /health every 50 ms; print each latency in seconds (run as a separate process)."""
    import httpx

    stop = time.perf_counter() + seconds
    with httpx.Client(timeout=30) as client:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            client.get(f"{url}/health")
            print(time.perf_counter() - t, flush=True)
            time.sleep(0.05)


def model_latency(run: Path, repeats: int = 50) -> dict:
    """Batch-1 latency on 2 threads, onnxruntime vs eager PyTorch, same input."""
    import torch

    import headstart
    from headstart.predict.runtime import RuntimePredictor

    torch.set_num_threads(2)
    eager = headstart.load(run).predictor()
    onnx = RuntimePredictor.load(run, threads=2)
    s = onnx.preprocess.input_size
    x1 = np.random.default_rng(0).normal(size=(1, 3, s, s)).astype(np.float32)
    x32 = np.repeat(x1, 32, 0)

    def median_ms(fn, x, n) -> float:
        for _ in range(3):
            fn(x)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
        return float(np.median(times) * 1000)

    out = {"threads": 2}
    for name, fn in (("onnx", onnx.probabilities), ("torch", eager.probabilities)):
        out[f"{name}_batch1_ms"] = round(median_ms(fn, x1, repeats), 2)
        out[f"{name}_batch32_ms"] = round(median_ms(fn, x32, max(3, repeats // 10)), 1)
    out["onnx_vs_torch_batch1"] = round(out["onnx_batch1_ms"] / out["torch_batch1_ms"], 2)
    out["onnx_vs_torch_batch32"] = round(out["onnx_batch32_ms"] / out["torch_batch32_ms"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path)
    parser.add_argument("--seconds", type=float, default=8.0, help="Per load level (bounded).")
    parser.add_argument("--max-requests", type=int, default=1000, help="Per load level (bounded).")
    parser.add_argument("--image", type=Path, help="Image to send. Default: a demo PNG.")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: the /health poller
    args = parser.parse_args()
    if args.probe:
        probe(args.probe, args.seconds)
        return

    tmp = tempfile.TemporaryDirectory(prefix="headstart-bench-")
    run = args.run or quick_run(Path(tmp.name) / "run")
    import headstart
    from headstart.predict.runtime import find_onnx

    if find_onnx(run) is None:
        print("exporting:", headstart.load(run).export("onnx").parity.summary())
    image = args.image or next(Path(str(resources.files("headstart") / "demo_data" / "openclipart")).rglob("*.png"))
    body = image.read_bytes()

    model = model_latency(run)
    print("model", json.dumps(model))

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "headstart.cli",
            "serve",
            str(run),
            "--port",
            str(port),
            "--max-batch",
            str(MAX_BATCH),
            "--queue-size",
            str(QUEUE),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.time() + 60
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit(f"server did not start: {server.stderr.read().decode() if server.stderr else ''}") from None
                time.sleep(0.2)
        backend = httpx.get(f"{url}/info").json()["backend"]
        asyncio.run(level(url, body, 4, 1.0, 40))  # warm-up, not reported
        levels = []
        for c in (1, 8, 32, 2 * (MAX_BATCH + QUEUE)):
            result = asyncio.run(level(url, body, c, args.seconds, args.max_requests if c > 1 else args.max_requests // 2))
            levels.append(result)
            print("level", json.dumps(result))
    finally:
        server.terminate()
        server.wait(10)
        tmp.cleanup()

    by_c = {r["concurrency"]: r for r in levels}
    goals = {
        "throughput_c32_over_c1": round(by_c[32]["req_per_s"] / by_c[1]["req_per_s"], 2),
        "throughput_goal_3x": by_c[32]["req_per_s"] >= 3 * by_c[1]["req_per_s"],
        "only_503_errors": all(r["only_503"] for r in levels),
        "health_under_100ms": all((r["health_max_ms"] or 0) < 100 for r in levels),
        "onnx_batch1_goal_0.8x": model["onnx_vs_torch_batch1"] <= 0.8,
    }
    result = {
        "machine": {
            "host": socket.gethostname(),
            "cpu": platform.processor() or platform.machine(),
            "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
        },
        "server": {"backend": backend, "max_batch": MAX_BATCH, "queue_size": QUEUE, "image": image.name},
        "model": model,
        "levels": levels,
        "goals": goals,
    }
    print("goals", json.dumps(goals))
    out = result_path("serve_load")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print("written", out)


if __name__ == "__main__":
    main()
