"""Regenerate the demo figures in docs/ from the *served* demo model, through the real client.

    .venv/bin/python scripts/demo_images.py [--out docs]

Exports the shipped demo weights (``styleserve export --demo``, the path a user's checkpoint takes) into a
temporary model repository, starts ``styleserve serve`` on a free port, and draws with
:class:`styleserve.clients.Client`:

* ``demo_samples.png``: seeds 0-15 (psi 1, constant noise);
* ``demo_stylemix.png``: the style-mixing grid: row seeds x column seeds, three bands in which the column
  gives ws 0-3 (coarse: 4-8 px), ws 4-7 (middle: 16-32 px) or ws 8-9 (fine: 64 px) and the row the rest;
* ``demo_noise.png``: one seed under constant noise, no noise and four random noise seeds, and the
  difference between two noise seeds (x4);
* ``demo_interp.png``: interpolating only the coarse ws (0-3) from one seed's w to another's, then only
  the fine ws (8-9);
* ``demo_edits.png``: semantic edits (the SeFa directions stored at export): one seed, the first directions
  of the coarse, middle and fine ranges, each applied to its range's ws at strengths -3 .. 3.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from styleserve.clients import Client, Edit, Noise, Plan, Source, Style

MODEL = "demo"
SCALE = 2  # Nearest-neighbour upscaling of the 64 px images in the figures.
PAD = 4
BANDS = (("coarse: ws 0-3 (4-8 px)", 0, 4), ("middle: ws 4-7 (16-32 px)", 4, 8), ("fine: ws 8-9 (64 px)", 8, 10))
ROWS = (1, 7, 23)
COLS = (3, 5, 11, 19, 42)
EDIT_SEED = 7
EDIT_ALPHAS = (-3.0, -1.5, 0.0, 1.5, 3.0)
EDITS = (("coarse", 0), ("coarse", 1), ("coarse", 2), ("middle", 0), ("middle", 1), ("fine", 0), ("fine", 1))


def _img(a: np.ndarray) -> Image.Image:
    im = Image.fromarray(a)
    return im.resize((im.width * SCALE, im.height * SCALE), Image.NEAREST)


def _canvas(w: int, h: int) -> Image.Image:
    return Image.new("RGB", (w, h), (255, 255, 255))


def _strip(
    images: Sequence[np.ndarray], labels: Sequence[str] | None = None, per_row: int | None = None
) -> Image.Image:
    per_row = per_row or len(images)
    s = 64 * SCALE
    top = 14 if labels else 0
    rows = (len(images) + per_row - 1) // per_row
    out = _canvas(per_row * (s + PAD) + PAD, rows * (s + PAD + top) + PAD)
    draw = ImageDraw.Draw(out)
    for i, a in enumerate(images):
        x, y = PAD + (i % per_row) * (s + PAD), PAD + (i // per_row) * (s + PAD + top)
        if labels:
            draw.text((x, y), labels[i], fill=(0, 0, 0))
        out.paste(_img(a), (x, y + top))
    return out


def start_server(repo: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = Path(sys.executable).with_name("styleserve")
    proc = subprocess.Popen(
        [str(exe), "serve", str(repo), "--port", "0"], stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    for _ in range(1200):
        m = re.search(r"listening on [^ ]*:(\d+)", log.read_text(errors="replace"))
        if m:
            return proc, f"127.0.0.1:{m.group(1)}"
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()}")
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit("server did not start")


def draw(c: Client, out: Path) -> None:
    arr = lambda imgs: [im.to_array() for im in imgs]  # noqa: E731

    # Samples.
    _strip(arr(c.generate(MODEL, range(16))), per_row=8).save(out / "demo_samples.png")

    # Style-mixing grid: one band per ws range, rows give the rest.
    s = 64 * SCALE
    label_w = 150
    rows = arr(c.generate(MODEL, ROWS))
    cols = arr(c.generate(MODEL, COLS))
    band_h = len(ROWS) * (s + PAD) + 16
    fig = _canvas(label_w + (len(COLS) + 1) * (s + PAD) + PAD, 16 + s + PAD + len(BANDS) * band_h)
    d = ImageDraw.Draw(fig)
    d.text((PAD, 4), "row seed ->", fill=(0, 0, 0))
    d.text((label_w + s + 2 * PAD, 4), "column seeds " + ", ".join(map(str, COLS)), fill=(0, 0, 0))
    for j, a in enumerate(cols):
        fig.paste(_img(a), (label_w + (j + 1) * (s + PAD) + PAD, 16))
    for b, (name, start, stop) in enumerate(BANDS):
        y0 = 16 + s + PAD + b * band_h
        d.text((PAD, y0 + 2), f"from the column: {name}; the rest from the row", fill=(0, 0, 0))
        plans = [
            Plan([Style(Source.from_seed(r)), Style(Source.from_seed(col), start=start, stop=stop)])
            for r in ROWS
            for col in COLS
        ]
        cells = arr(c.synthesize(MODEL, plans))
        for i, r in enumerate(ROWS):
            y = y0 + 16 + i * (s + PAD)
            d.text((PAD, y + s // 2), f"row seed {r}", fill=(0, 0, 0))
            fig.paste(_img(rows[i]), (label_w, y))
            for j in range(len(COLS)):
                fig.paste(_img(cells[i * len(COLS) + j]), (label_w + (j + 1) * (s + PAD) + PAD, y))
    fig.save(out / "demo_stylemix.png")

    # Noise.
    seed = 7
    noises = [("const", Noise("const")), ("none", Noise("none"))] + [
        (f"random {k}", Noise("random", seed=k)) for k in range(4)
    ]
    imgs = [c.generate(MODEL, [seed], noise=n)[0].to_array() for _, n in noises]
    diff = np.abs(imgs[2].astype(np.int16) - imgs[3].astype(np.int16)) * 4
    labels = [name for name, _ in noises] + ["|r0 - r1| x4"]
    _strip([*imgs, np.clip(diff, 0, 255).astype(np.uint8)], labels).save(out / "demo_noise.png")

    # Interpolation of the coarse ws only, then the fine ws only.
    a, b = (m.w for m in c.map(MODEL, seeds=[3, 42]))
    assert a is not None and b is not None
    ts = np.linspace(0, 1, 8)
    strips = []
    for _, start, stop in (BANDS[0], BANDS[2]):
        plans = [
            Plan([Style(Source.from_w(a)), Style(Source.from_w((1 - t) * a + t * b), start=start, stop=stop)])
            for t in ts
        ]
        strips.append(arr(c.synthesize(MODEL, plans)))
    labels = [f"coarse t={t:.2f}" for t in ts] + [f"fine t={t:.2f}" for t in ts]
    _strip(strips[0] + strips[1], labels, per_row=8).save(out / "demo_interp.png")

    # Semantic edits: one row per (range, direction), alpha from -3 to 3 (the middle column is the original).
    plans = [
        Plan([Style(Source.from_seed(EDIT_SEED).edited(Edit(k, alpha, rng)))])
        for rng, k in EDITS
        for alpha in EDIT_ALPHAS
    ]
    labels = [f"{rng} d{k} {alpha:+.1f}" for rng, k in EDITS for alpha in EDIT_ALPHAS]
    _strip(arr(c.synthesize(MODEL, plans)), labels, per_row=len(EDIT_ALPHAS)).save(out / "demo_edits.png")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs", type=Path)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "models"
        exe = Path(sys.executable).with_name("styleserve")
        subprocess.run([str(exe), "export", "--demo", str(repo / MODEL)], check=True)
        proc, target = start_server(repo, Path(tmp) / "server.log")
        try:
            with Client(target, timeout=120) as c:
                c.wait_until_serving(120)
                draw(c, args.out)
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"figures in {args.out}/: demo_samples.png demo_stylemix.png demo_noise.png demo_interp.png demo_edits.png")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("STYLESERVE_INTRA_OP_THREADS", "1")
    sys.exit(main())
