"""Image encoding cost per image on one core: the server's PNG encoders and JPEG, at 64, 256 and 1024 px.

Prints a table with each encoder's ms per image and its ratio against Pillow PNG (zlib level 1, the encoder
styleserve used before fpng) measured in the same run, plus the output size; checks that every lossless output
decodes to the same pixels. Images: a smooth-colour-plus-grain pattern that compresses like generator output.

    .venv/bin/python bench/encode_bench.py [--json bench/results/encode.json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from machine import cpu_busy, loadavg, machine_info, write_json
from PIL import Image
from styleserve.server.imaging import encode_png


def pattern(res: int, seed: int) -> np.ndarray:
    """A smooth colour field plus grain: compresses like generator output (not like white noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:res, 0:res] / res
    chans = [
        128 + 90 * np.sin(6 * x + 2 * c + seed) * np.cos(5 * y - c) + 30 * np.sin(40 * x * y + c) for c in range(3)
    ]
    img = np.stack(chans, -1) + rng.normal(0, 5, (res, res, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def pil_png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def pil_jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


ENCODERS: dict[str, Callable[[np.ndarray], bytes]] = {
    "pillow png (zlib 1, before)": pil_png,
    "fpng png (default)": lambda im: encode_png(im, "fpng"),
    "pillow jpeg q90": pil_jpeg,
}


def time_one(fn: Callable[[np.ndarray], bytes], images: list[np.ndarray], seconds: float) -> tuple[float, int]:
    fn(images[0])
    n, t0, size = 0, time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds or n < 3:
        size = len(fn(images[n % len(images)]))
        n += 1
    return (time.perf_counter() - t0) / n * 1e3, size


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--resolutions", default="64,256,1024")
    p.add_argument("--seconds", type=float, default=2.0, help="timing window per cell")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    busy = cpu_busy()
    print(f"machine: {json.dumps(machine_info())}\nload average: {loadavg()}; cores busy before: {busy}")
    rows = []
    for res in [int(r) for r in args.resolutions.split(",")]:
        images = [pattern(res, s) for s in range(4)]
        for img in images:  # Lossless encoders agree on pixels.
            for name, fn in ENCODERS.items():
                if "png" in name:
                    back = np.asarray(Image.open(io.BytesIO(fn(img))))
                    assert np.array_equal(back, img), name
        base = None
        for name, fn in ENCODERS.items():
            ms, size = time_one(fn, images, args.seconds)
            base = base or ms
            rows.append({"res": res, "encoder": name, "ms": ms, "speedup": base / ms, "bytes": size})
    print("\n| px | encoder | ms / image (1 core) | × vs Pillow PNG | bytes |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['res']} | {r['encoder']} | {r['ms']:.2f} | {r['speedup']:.1f} | {r['bytes']} |")
    write_json(args.json, {"machine": machine_info(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
