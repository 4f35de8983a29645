"""Peak memory and time of indexing + decoding images from parquet / WebDataset shards vs
the same images as a folder, at 1x and 10x the images (issue 23.3: streaming).

    PYTHONPATH=src python bench/shard_memory.py [--images 1000] [--side 96] [--row-group 100]

Writes (once) WORK/shards-N/{folder,parquet,wds} with N and 10N generated noise PNGs (``--side`` px, ~28 KB at 96: the shards are ~10x the
decoded store's 32 px squares, so holding a shard whole would show) in 10
classes (parquet: the Hub's layout, 4 shards, ``--row-group`` rows per row group, as the
Hub's converter writes about 100; WebDataset: 4 tars). Each measurement is a fresh
subprocess running the product's path (``data.index.scan`` then ``data.store.decode_all``
into a private cache), so its peak RSS (VmHWM) is its own. Prints, per source, the peak
RSS at 1x and 10x (and the imports' own peak), and wall time as a ratio to the folder's at
the same size.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from locations import WORK, result_path

MEASURE = r"""
import json, sys, time
def hwm():  # VmHWM: this program's own peak (ru_maxrss keeps the forking parent's across exec)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
from headstart.data.index import scan
from headstart.data.store import decode_all
from headstart.preprocess import Preprocess
import pyarrow.parquet  # imported by every source's run alike: its pages are not the data's
base = hwm()
t0 = time.perf_counter()
index = scan(sys.argv[1])
paths = [s.path for s in index.all_samples]
images = decode_all(paths, Preprocess(32, 32, (0.5,) * 3, (0.5,) * 3), show=False)
t1 = time.perf_counter()
peak = hwm()
print(json.dumps({"n": len(paths), "failed": len(images.failed), "seconds": t1 - t0, "peak_mb": peak / 1024, "import_mb": base / 1024}))
"""


def _png(i: int, side: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(i)
    pixels = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def build(root: Path, n: int, row_group: int, side: int) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = {"folder": root / "folder", "parquet": root / "parquet", "webdataset": root / "wds"}
    if (root / "done").exists():
        return out
    for p in out.values():
        p.mkdir(parents=True, exist_ok=True)
    items = [(f"c{i % 10}", f"img{i:07d}", _png(i, side)) for i in range(n)]
    for c, key, data in items:
        (out["folder"] / c).mkdir(exist_ok=True)
        (out["folder"] / c / f"{key}.png").write_bytes(data)
    per = -(-n // 4)
    for k in range(4):
        part = items[k * per : (k + 1) * per]
        table = pa.table({"image": [{"bytes": d, "path": None} for _, _, d in part], "label": [c for c, _, _ in part]})
        pq.write_table(table, out["parquet"] / f"train-{k:05d}-of-00004.parquet", row_group_size=row_group)
        with tarfile.open(out["webdataset"] / f"shard-{k:06d}.tar", "w") as archive:
            for c, key, data in part:
                for name, payload in ((f"{key}.png", data), (f"{key}.cls", c.encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    archive.addfile(info, io.BytesIO(payload))
    (root / "done").write_text("")
    return out


def measure(data: Path) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {"HEADSTART_CACHE_DIR": cache, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "PATH": "/usr/bin:/bin"}
        done = subprocess.run([sys.executable, "-c", MEASURE, str(data)], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--side", type=int, default=96)
    parser.add_argument("--row-group", type=int, default=100)
    args = parser.parse_args()
    rows = {}
    for scale in (1, 10):
        n = args.images * scale
        sources = build(WORK / f"shards-{n}-{args.side}px-rg{args.row_group}", n, args.row_group, args.side)
        rows[n] = {name: measure(path) for name, path in sources.items()}
    small, large = sorted(rows)
    print(f"imports alone: {rows[small]['folder']['import_mb']:.0f} MB peak RSS; images: {small} and {large}")
    print(f"{'source':<11} {'peak MB 1x':>10} {'peak MB 10x':>11} {'time/folder 1x':>15} {'time/folder 10x':>16}")
    for name in ("folder", "parquet", "webdataset"):
        a, b = rows[small][name], rows[large][name]
        ra = a["seconds"] / rows[small]["folder"]["seconds"]
        rb = b["seconds"] / rows[large]["folder"]["seconds"]
        print(f"{name:<11} {a['peak_mb']:>10.1f} {b['peak_mb']:>11.1f} {ra:>15.2f} {rb:>16.2f}")
    result_path("shard_memory").write_text(json.dumps({"row_group": args.row_group, "side": args.side, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
