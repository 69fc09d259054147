"""``styleserve-render``: offline images and a style-mixing grid from a model directory (onnxruntime only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from styleserve.errors import StyleServeError
from styleserve.grid import DEFAULT_COL_STYLES, compose_grid, mix_grid_ws
from styleserve.latent import broadcast_ws, class_labels, truncate, z_from_seeds

from .runtime import ModelRuntime


def parse_range(text: str) -> list[int]:
    """``'0-3,7'`` -> ``[0, 1, 2, 3, 7]``."""
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def save_image(arr: np.ndarray, path: Path) -> None:
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    tmp = path.with_name(path.name + ".tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)


def seeds_to_ws(rt: ModelRuntime, seeds: list[int], psi: float, class_index: int | None) -> np.ndarray:
    m = rt.manifest
    z = z_from_seeds(seeds, m.z_dim)
    c = class_labels([class_index] * len(seeds), m.c_dim) if m.c_dim else None
    return truncate(broadcast_ws(rt.map(z, c), m.num_ws), rt.w_avg, psi)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="styleserve-render", description="Render seeds and a style-mixing grid offline.")
    p.add_argument("model_dir")
    p.add_argument("out_dir")
    p.add_argument("--seeds", default="0-7", help="seeds to render, e.g. 0-7,42")
    p.add_argument("--psi", type=float, default=0.7, help="truncation psi")
    p.add_argument("--class-index", type=int, default=None, help="class for conditional models")
    p.add_argument("--noise-mode", default="const", choices=["const", "none", "random"])
    p.add_argument("--rows", default="85,100,75,458,1500", help="style-mixing row seeds")
    p.add_argument("--cols", default="55,821,1789,293", help="style-mixing column seeds")
    p.add_argument("--styles", default=None, help="layers taken from the columns (default 0-6)")
    args = p.parse_args(argv)
    try:
        from .runtime import NoiseSpec

        rt = ModelRuntime(args.model_dir)
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        seeds = parse_range(args.seeds)
        ws = seeds_to_ws(rt, seeds, args.psi, args.class_index)
        noise = [NoiseSpec(mode=args.noise_mode, seed=s) for s in seeds]
        for seed, img in zip(seeds, rt.synthesize(ws, noise), strict=True):
            save_image(img, out / f"seed{seed:04d}.png")
        rows, cols = parse_range(args.rows), parse_range(args.cols)
        styles = parse_range(args.styles) if args.styles else [s for s in DEFAULT_COL_STYLES if s < rt.manifest.num_ws]
        row_ws = seeds_to_ws(rt, rows, args.psi, args.class_index)
        col_ws = seeds_to_ws(rt, cols, args.psi, args.class_index)
        cells = rt.synthesize(mix_grid_ws(row_ws, col_ws, styles))
        grid = compose_grid(rt.synthesize(row_ws), rt.synthesize(col_ws), cells)
        save_image(grid, out / "stylemix_grid.png")
    except (StyleServeError, OSError, ValueError) as exc:
        print(f"styleserve-render: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(seeds)} images and stylemix_grid.png to {out} ({rt.provider})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
