"""``styleserve-export``: checkpoint -> verified model directory.

Exit codes: 0 written; 1 the checkpoint (or the export) was refused, with one line
``styleserve-export: error: ...`` on stderr and no traceback; 2 a usage error (argparse).
See docs/SECURITY.md for the bounds a hostile checkpoint meets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from styleserve.errors import StyleServeError

from .checkpoints import FORMAT_SUMMARIES, FORMATS

MAX_MESSAGE_CHARS = 500


def _one_line(msg: str) -> str:
    """An error message as one line of at most :data:`MAX_MESSAGE_CHARS` characters."""
    msg = " ".join(msg.split())
    return msg if len(msg) <= MAX_MESSAGE_CHARS else msg[:MAX_MESSAGE_CHARS] + "..."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="styleserve-export",
        description=(
            "Export a StyleGAN checkpoint to a styleserve model directory (mapping.onnx, synthesis.onnx, "
            "model.json, noise_const.npz). Checkpoints are read without executing any pickled code: official "
            "stylegan2-ada-pytorch / stylegan3 .pkl, TensorFlow StyleGAN2 and StyleGAN (v1) .pkl, "
            "rosinality stylegan2-pytorch .pt, rosinality style-based-gan-pytorch (v1) .model/.pt, or the styleserve "
            "format (config.json + weights.safetensors). The export checks itself against PyTorch and writes "
            "nothing if it fails."
        ),
    )
    p.add_argument("checkpoint", nargs="?", help="checkpoint file or directory (omit with --demo)")
    p.add_argument("out_dir", help="model directory to create")
    p.add_argument("--demo", action="store_true", help="export the bundled trained demo generator (docs/DEMO.md)")
    p.add_argument("--name", help="model name (default: the directory name)")
    p.add_argument(
        "--kind",
        choices=["auto", *FORMATS],
        default="auto",
        help="checkpoint format (default: detect from the content): "
        + "; ".join(f"{name} = {FORMAT_SUMMARIES[name]}" for name in FORMATS),
    )
    p.add_argument(
        "--resolution",
        type=int,
        help="rosinality-v1-pt only: the resolution trained to (default: the highest block with trained weights)",
    )
    p.add_argument("--fp16", action="store_true", help="also write synthesis_fp16.onnx (fp16 convolutions)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    p.add_argument("--verify-batches", default="1,3,8", help="batch sizes of the self-check (default 1,3,8)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.overwrite and Path(args.out_dir).exists():  # before the heavy imports
        print(f"styleserve-export: error: {args.out_dir} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        from .onnx_export import export_model

        source: dict[str, object]
        if args.demo:  # The shipped trained demo weights, read like any styleserve-format checkpoint.
            from .demo import DEMO_WEIGHTS

            args.checkpoint, args.kind = str(DEMO_WEIGHTS), "styleserve"
        if not args.checkpoint:
            print("styleserve-export: error: CHECKPOINT is required (or --demo)", file=sys.stderr)
            return 2
        from .checkpoints import load_generator_from

        kind = None if args.kind == "auto" else args.kind
        G, ckpt = load_generator_from(args.checkpoint, kind=kind, resolution=args.resolution)
        source = {
            "file": Path(args.checkpoint).name,
            "checkpoint_sha256": ckpt.sha256,
            "format": ckpt.format,
            "class": ckpt.source_class,
            "notes": list(ckpt.notes),
            "init_kwargs": ckpt.init_kwargs,
        }
        batches = [int(b) for b in args.verify_batches.split(",") if b]
        t0 = time.perf_counter()
        manifest = export_model(
            G,
            args.out_dir,
            name=args.name,
            fp16=args.fp16,
            source=source,
            overwrite=args.overwrite,
            verify_batches=batches,
        )
    except (StyleServeError, FileExistsError, OSError, ValueError) as exc:
        print(f"styleserve-export: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except (RecursionError, MemoryError, ArithmeticError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # Safety net: the readers turn malformed input into CheckpointError; anything that slips through
        # still ends in one line and exit 1, never a traceback.
        print(f"styleserve-export: error: malformed input ({type(exc).__name__})", file=sys.stderr)
        return 1
    v = manifest.verification
    print(
        f"wrote {args.out_dir} ({manifest.img_resolution}px, {manifest.img_channels} ch, {manifest.num_ws} ws, "
        f"{manifest.c_dim} classes) in {time.perf_counter() - t0:.1f}s"
    )
    print("verification: " + json.dumps({k: v[k] for k in sorted(v) if k.endswith("err")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
