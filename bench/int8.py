"""int8 vs fp32 on a CPU (issue 21): model speed, folder predict against its ceiling, agreement.

    python bench/int8.py RUN [RUN ...] --images DIR_OR_CSV [--images ...] [--count 2000] [--rounds 5]

Each RUN is a trained run folder (one --images per RUN: the real images its folder predict
runs over). The runs this was measured with (train/ is the product, nothing special):

    headstart train CLIP_SUBSET.csv --image-size 224 --frozen-epochs 8 --finetune-epochs 0 --recipe fixed
    python scripts/fashion_mnist_folder.py FM --train-per-class 600 --test-per-class 200
    headstart train FM --arch convnet_res --no-pretrained --image-size 28 --finetune-epochs 6 --lr 3e-3 --recipe fixed

For every run, through the product: ``Classifier.export("onnx", int8=True)`` (its agreement
and both accuracies on the validation split), plus a QOperator-format int8 model (the other
layout onnxruntime offers) for comparison. Then, interleaved round by round so that the
load of a shared machine hits every variant alike:
  model      eager fp32 (torch), ONNX fp32, ONNX int8 (QDQ), ONNX int8 (QOperator): batch-1
             latency and batch-32 throughput on synthetic tensors (the model's ceiling)
  decode     the decoding cost alone: the same predictor's decoder on the same files with the
             same threads, no model
  predict    ``predict_to_file`` (what ``headstart predict --out`` runs) over ``--count`` real
             images, end to end, per backend; its ceiling = 1 / (model s/img + decode s/img)
Goals: int8 >= 2x ONNX fp32 batched; agreement >= 99 % (lower bound >= 98 %); <= 1 point
accuracy lost; folder predict >= 0.9x its ceiling. Writes bench/results/int8-<host>.json (this run: int8-shared-vm-2026-12-04.json).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import socket
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console

import headstart
from headstart.export.quantize import calibration_images, quantize_int8
from headstart.machine import cpu_count
from headstart.predict.csvfile import predict_to_file
from headstart.predict.inputs import iter_sources
from headstart.predict.resolve import load_predictor, resolve

BATCH = 32


def uptime() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Clock:
    """Wall and CPU seconds (every thread of this process) of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def model_speed(run, side: int, rounds: int) -> dict:
    """{variant: latency_ms, throughput (wall), cpu_ms_per_image (batched)}: medians over interleaved rounds."""
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, 3, side, side)).astype(np.float32)
    many = rng.standard_normal((BATCH, 3, side, side)).astype(np.float32)
    times: dict[str, tuple[list[float], list[float], list[float]]] = {name: ([], [], []) for name in run}
    for fn in run.values():
        fn(one), fn(many)  # warm-up per shape
    for _ in range(rounds):
        for name, fn in run.items():
            with Clock() as c:
                for _ in range(10):
                    fn(one)
            times[name][0].append(c.wall / 10 * 1e3)
            with Clock() as c:
                for _ in range(3):
                    fn(many)
            times[name][1].append(3 * BATCH / c.wall)
            times[name][2].append(c.cpu / (3 * BATCH) * 1e3)
    return {
        n: {"latency_ms": statistics.median(a), "throughput": statistics.median(b), "cpu_ms_per_image": statistics.median(c)}
        for n, (a, b, c) in times.items()
    }


def decode_cost(predictor, files: list[str]) -> dict:
    """The decoder alone, on the same threads the predictor decodes with: ms per image, wall and CPU."""
    with Clock() as c, ThreadPoolExecutor(max_workers=cpu_count()) as pool:
        list(pool.map(predictor._decode, files))
    return {"wall_ms_per_image": c.wall / len(files) * 1e3, "cpu_ms_per_image": c.cpu / len(files) * 1e3}


def folder_predict(predictors: dict, files: list[str], work: Path) -> dict:
    out = {}
    for name, predictor in predictors.items():
        with Clock() as c:
            predict_to_file(predictor, files, work / f"{name}.csv", top_k=3)
        out[name] = {"images_s": len(files) / c.wall, "cpu_ms_per_image": c.cpu / len(files) * 1e3}
    return out


def bench_run(run: Path, images: str, count: int, rounds: int, work: Path) -> dict:
    console = Console(file=io.StringIO())
    clf = headstart.Classifier.load(run, backend="torch")
    clf.console = console
    result = clf.export("onnx", int8=True, min_agreement=0.5)
    qop = work / f"{run.name}.qoperator.onnx"
    pre = clf.artifact.preprocess
    quantize_int8(result.path, qop, calibration_images(run, clf.classes, pre).arrays, quant_format="qoperator")
    predictors = {
        "torch": load_predictor(resolve(run, "torch")),
        "onnx": load_predictor(resolve(run, "onnx")),
        "onnx-int8": load_predictor(resolve(run, "onnx-int8")),
        "onnx-int8-qoperator": load_predictor(resolve(qop)),
    }
    side = pre.input_size
    speed = model_speed({k: p.probabilities for k, p in predictors.items()}, side, rounds)
    files = list(iter_sources([images]))[:count]
    decode = decode_cost(predictors["onnx"], files)
    e2e = folder_predict({k: predictors[k] for k in ("torch", "onnx", "onnx-int8")}, files, work)
    decode_again = decode_cost(predictors["onnx"], files)  # after: the load may have changed
    decode_ms = statistics.mean([decode["wall_ms_per_image"], decode_again["wall_ms_per_image"]])
    decode_cpu = statistics.mean([decode["cpu_ms_per_image"], decode_again["cpu_ms_per_image"]])
    predict = {}
    for name, got in e2e.items():
        ceiling = 1 / (1 / speed[name]["throughput"] + decode_ms / 1e3)  # model + decoding, same cores, no overlap gain
        ceiling_cpu = speed[name]["cpu_ms_per_image"] + decode_cpu
        predict[name] = {
            **got,
            "ceiling_images_s": ceiling,
            "ratio_wall": got["images_s"] / ceiling,
            "ceiling_cpu_ms_per_image": ceiling_cpu,
            "ratio_cpu": ceiling_cpu / got["cpu_ms_per_image"],
        }
    a = result.int8.agreement
    return {
        "run": str(run),
        "arch": clf.artifact.model.arch,
        "input_size": side,
        "images": len(files),
        "model": speed,
        "int8_vs_onnx_fp32_batched": speed["onnx-int8"]["throughput"] / speed["onnx"]["throughput"],
        "int8_vs_onnx_fp32_latency": speed["onnx"]["latency_ms"] / speed["onnx-int8"]["latency_ms"],
        "int8_vs_onnx_fp32_cpu": speed["onnx"]["cpu_ms_per_image"] / speed["onnx-int8"]["cpu_ms_per_image"],
        "qoperator_vs_qdq_batched": speed["onnx-int8-qoperator"]["throughput"] / speed["onnx-int8"]["throughput"],
        "decode": [decode, decode_again],
        "predict": predict,
        "agreement": {
            "images": a.images,
            "agree": a.agree,
            "rate": a.rate,
            "lower_bound": a.lower_bound,
            "val_images": a.val_images,
            "fp32_val_accuracy": a.fp32_accuracy,
            "int8_val_accuracy": a.int8_accuracy,
        },
        "export_printed": {
            "fp32": result.speed.summary() if result.speed else None,
            "int8": result.int8.speed.summary() if result.int8.speed else None,
        },
        "load_after": uptime(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--images", action="append", required=True, help="one per run: a folder or CSV of real images")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / f"int8-{socket.gethostname()}.json")
    args = ap.parse_args()
    if len(args.images) != len(args.runs):
        ap.error("give one --images per run")
    results = {"cores": cpu_count(), "load_before": uptime(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for run, images in zip(args.runs, args.images):
            copy = Path(tmp) / run.name
            shutil.copytree(run, copy)  # the export writes into the run: work on a copy
            r = bench_run(copy, images, args.count, args.rounds, Path(tmp))
            r["run"] = str(run)
            results["runs"].append(r)
            print(json.dumps(r, indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    for r in results["runs"]:
        m, a = r["model"], r["agreement"]
        print(
            f"{r['arch']} {r['input_size']}px: int8 {r['int8_vs_onnx_fp32_batched']:.2f}x ONNX fp32 batched "
            f"({m['onnx-int8']['throughput']:.0f} vs {m['onnx']['throughput']:.0f} img/s; eager {m['torch']['throughput']:.0f}), "
            f"batch-1 {m['onnx-int8']['latency_ms']:.2f} vs {m['onnx']['latency_ms']:.2f} ms; CPU ms/img "
            f"{m['onnx-int8']['cpu_ms_per_image']:.2f} vs {m['onnx']['cpu_ms_per_image']:.2f} (eager {m['torch']['cpu_ms_per_image']:.2f}); agreement {a['rate']:.2%} "
            f"(lb {a['lower_bound']:.2%}, {a['images']} images); val acc fp32 {a['fp32_val_accuracy']:.2%} int8 {a['int8_val_accuracy']:.2%}"
        )
        for name, p in r["predict"].items():
            print(
                f"  predict {name}: {p['images_s']:.0f} img/s = {p['ratio_wall']:.2f}x its wall ceiling {p['ceiling_images_s']:.0f}; "
                f"{p['cpu_ms_per_image']:.2f} CPU ms/img = {p['ratio_cpu']:.2f}x its CPU ceiling {p['ceiling_cpu_ms_per_image']:.2f}"
            )
    print(f"cores {results['cores']}, load before {results['load_before']}")


if __name__ == "__main__":
    main()
