"""What writing one class image costs on the host, and whether it can hide behind the GPU's sampling.

`dbooth prior` writes each class image as a PNG with its record (``dbooth.util.pngmeta.write_png``: encode, temporary
file, fsync, rename). On a GPU that runs beside the next batch's sampling (``dbooth.util.background``); this measures
the host side on real photos (../shared/dreambench, resized to SIDE px): milliseconds per image at PIL's zlib
levels, the file size, and how much a pure-Python loop in the main thread slows while a worker thread encodes
(the GIL: launching GPU kernels is such a loop).

    OMP_NUM_THREADS=1 python benchmarks/png_write.py --side 512 --json png-write-512.json
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from dbooth.util.fsutil import atomic_write_bytes
from dbooth.util.pngmeta import write_png

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "dreambench" / "images"
RECORD = {"prompt": "a photo of dog", "model": "runwayml/stable-diffusion-v1-5", "resolution": 512, "steps": 25,
          "guidance_scale": 7.5, "seed": 1234, "index": 7, "scheduler": "dpm++", "size": [512, 512]}


def photos(side: int, count: int) -> list[Image.Image]:
    paths = sorted(PHOTOS.glob("*/*.jpg"))[:count]
    if not paths:
        raise SystemExit(f"no photos under {PHOTOS}")
    out = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            s = min(im.size)
            left, top = (im.width - s) // 2, (im.height - s) // 2
            out.append(im.crop((left, top, left + s, top + s)).resize((side, side), Image.LANCZOS))
    return out


def encode_ms(images, level: int | None) -> tuple[float, float]:
    """Median ms to encode one image in memory, and the mean size in KB."""
    times, sizes = [], []
    for im in images:
        buf = io.BytesIO()
        began = time.perf_counter()
        im.save(buf, format="PNG", **({} if level is None else {"compress_level": level}))
        times.append(1000 * (time.perf_counter() - began))
        sizes.append(buf.tell() / 1024)
    return statistics.median(times), statistics.mean(sizes)


def write_ms(images, folder: Path) -> float:
    """Median ms for dbooth's whole write: encode with the record, temp file, fsync, rename."""
    times = []
    for k, im in enumerate(images):
        began = time.perf_counter()
        write_png(folder / f"prior-{k:05d}.png", im, RECORD)
        times.append(1000 * (time.perf_counter() - began))
    return statistics.median(times)


def python_loop(seconds: float) -> int:
    """Iterations of a pure-Python loop in ``seconds`` (the GIL-bound work a training or sampling loop does)."""
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += 1
    return n


def gil_share(images, folder: Path, seconds: float = 2.0) -> float:
    """The main thread's loop rate while a worker writes PNGs nonstop, as a share of its rate alone."""
    alone = python_loop(seconds)
    stop = threading.Event()

    def writer():
        k = 0
        while not stop.is_set():
            write_png(folder / f"gil-{k % 4}.png", images[k % len(images)], RECORD)
            k += 1

    t = threading.Thread(target=writer)
    t.start()
    beside = python_loop(seconds)
    stop.set()
    t.join()
    return beside / alone


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    images = photos(args.side, args.count)
    report = {"side": args.side, "images": len(images), "encode": {}}
    for level in (None, 1, 3, 6, 9):
        ms, kb = encode_ms(images, level)
        report["encode"]["default" if level is None else f"level {level}"] = {"ms": round(ms, 2), "kb": round(kb, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        report["write_png_ms"] = round(write_ms(images, Path(tmp)), 2)
        report["python_loop_share_beside_writer"] = round(gil_share(images, Path(tmp)), 3)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        atomic_write_bytes(args.json, (text + "\n").encode())


if __name__ == "__main__":
    main()
