"""``styleserve-render``: offline images and a style-mixing grid from a model directory (onnxruntime only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from styleserve.errors import InvalidArgument, StyleServeError
from styleserve.grid import DEFAULT_COL_STYLES, compose_grid, mix_grid_ws
from styleserve.latent import SEED_MAX, broadcast_ws, check_psi, class_labels, truncate, z_from_seeds
from styleserve.seeds import parse_range

from .runtime import ModelRuntime


def _seeds_arg(text: str) -> list[int]:
    try:
        return parse_range(text, maximum=SEED_MAX)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _psi_arg(text: str) -> float:
    try:
        return check_psi(float(text), "--psi")
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _class_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def save_image(arr: np.ndarray, path: Path) -> None:
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    tmp = path.with_name(path.name + ".tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)


def seeds_to_ws(rt: ModelRuntime, seeds: list[int], psi: float, class_index: int | None) -> np.ndarray:
    m = rt.manifest
    z = z_from_seeds(seeds, m.z_dim)
    c = class_labels([class_index] * len(seeds), m.c_dim) if m.c_dim else None  # checked in main()
    return truncate(broadcast_ws(rt.map(z, c), m.num_ws), rt.w_avg, psi)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="styleserve-render", description="Render seeds and a style-mixing grid offline.")
    p.add_argument("model_dir")
    p.add_argument("out_dir")
    p.add_argument("--seeds", type=_seeds_arg, default="0-7", help="seeds to render, e.g. 0-7,42 (default 0-7)")
    p.add_argument(
        "--psi", "--trunc", dest="psi", type=_psi_arg, default=0.7, help="truncation psi (default 0.7; --trunc too)"
    )
    p.add_argument(
        "--class-index", "--class", dest="class_index", type=_class_arg, default=None,
        help="class for conditional models (required there; refused for unconditional ones)",
    )  # fmt: skip
    p.add_argument("--noise-mode", default="const", choices=["const", "none", "random"], help="default const")
    p.add_argument("--rows", type=_seeds_arg, default="85,100,75,458,1500", help="style-mixing row seeds")
    p.add_argument("--cols", type=_seeds_arg, default="55,821,1789,293", help="style-mixing column seeds")
    p.add_argument(
        "--styles", type=_seeds_arg, default=None, help="ws indices taken from the columns (default 0-6)"
    )
    args = p.parse_args(argv)
    try:
        from .runtime import NoiseSpec

        rt = ModelRuntime(args.model_dir)
        rt.warmup((1,))  # the server's start-up checks: a graph that fails or asks too much is refused here
    except (StyleServeError, OSError, ValueError) as exc:
        print(f"styleserve-render: error: {exc}", file=sys.stderr)
        return 1
    m = rt.manifest
    try:  # what the command line asks of this model: usage errors, exit 2
        class_labels([args.class_index], m.c_dim)
    except InvalidArgument as exc:
        what = f"--class {args.class_index}" if args.class_index is not None else "no --class"
        p.error(f"{what}: {exc.message} (model {args.model_dir})")
    bad = [s for s in args.styles or () if s >= m.num_ws]
    if bad:
        p.error(f"--styles: ws index {bad[0]} out of range; the model has ws layers 0-{m.num_ws - 1}")
    try:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        seeds = args.seeds
        ws = seeds_to_ws(rt, seeds, args.psi, args.class_index)
        noise = [NoiseSpec(mode=args.noise_mode, seed=s) for s in seeds]
        for seed, img in zip(seeds, rt.synthesize(ws, noise), strict=True):
            save_image(img, out / f"seed{seed:04d}.png")
        rows, cols = args.rows, args.cols
        styles = args.styles or [s for s in DEFAULT_COL_STYLES if s < m.num_ws]
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
