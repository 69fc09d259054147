"""The client half of the ``styleserve`` CLI: ``styleserve models|generate|grid ...``.

``main(argv)`` takes argv starting at the subcommand name. Server errors print ``error: <CODE>: <details>``
to stderr and exit 1, without a traceback; bad command lines exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._client import Client
from ._errors import StyleServeRpcError
from ._types import ModelInfo, Noise, Source

__all__ = ["main", "parse_range"]

DEFAULT_TARGET = "127.0.0.1:50051"
GENERATE_CHUNK = 16
"""Seeds per ``Generate`` call in ``styleserve generate``."""

_ITEM_RE = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")


def parse_range(text: str, *, max_items: int = 100_000) -> list[int]:
    """``'0-3,7'`` -> ``[0, 1, 2, 3, 7]`` (order and repeats kept); ValueError with a clear message otherwise."""
    if not text.strip():
        raise ValueError("empty range; expected e.g. '0-3,7'")
    out: list[int] = []
    for part in text.split(","):
        item = part.strip()
        m = _ITEM_RE.match(item)
        if m is None:
            what = "empty item" if not item else f"bad item {item!r}"
            raise ValueError(f"{what} in {text!r}; expected N or A-B (non-negative integers), e.g. '0-3,7'")
        a = int(m.group(1))
        b = a if m.group(2) is None else int(m.group(2))
        if b < a:
            raise ValueError(f"descending range {item!r} in {text!r}; write it as {b}-{a}")
        if len(out) + (b - a + 1) > max_items:
            raise ValueError(f"{text!r} expands to more than {max_items} items")
        out.extend(range(a, b + 1))
    return out


def _range_arg(text: str) -> list[int]:
    try:
        return parse_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _timeout_arg(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds (0 = no deadline), got {text!r}")
    return value or None


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    conn = common.add_argument_group("connection")
    conn.add_argument(
        "--target",
        default=os.environ.get("STYLESERVE_TARGET") or DEFAULT_TARGET,
        help="server host:port (env STYLESERVE_TARGET, default %(default)s)",
    )
    conn.add_argument(
        "--token", default=os.environ.get("STYLESERVE_TOKEN") or None, help="bearer token (env STYLESERVE_TOKEN)"
    )
    conn.add_argument("--tls", action="store_true", help="connect with TLS")
    conn.add_argument("--ca-cert", metavar="PATH", default=None, help="PEM root certificates (implies --tls)")
    conn.add_argument(
        "--timeout", type=_timeout_arg, default=60.0, help="seconds per call, 0 = no deadline (default 60)"
    )

    def sampling(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True, help="model name (see 'styleserve models')")
        p.add_argument("--psi", type=float, default=None, help="truncation psi (default 1 = none)")
        p.add_argument("--cutoff", type=int, default=None, help="truncate only ws indices below this")
        p.add_argument("--class", dest="class_index", type=int, default=None, help="class for conditional models")
        p.add_argument("--noise-mode", choices=["const", "none", "random"], default="const", help="default const")
        p.add_argument("--noise-seed", type=int, default=None, help="seed for --noise-mode random")
        p.add_argument("--format", choices=["png", "jpeg"], default="png", help="image encoding (default png)")

    p = argparse.ArgumentParser(prog="styleserve", description="Talk to a styleserve server.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    health = sub.add_parser("health", parents=[common], help="print the server's health; exit 0 when SERVING")
    health.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="poll until SERVING or timeout")
    health.set_defaults(func=_cmd_health)

    models = sub.add_parser("models", parents=[common], help="list the served models")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(func=_cmd_models)

    gen = sub.add_parser("generate", parents=[common], help="draw images from seeds into a directory")
    sampling(gen)
    gen.add_argument("--seeds", type=_range_arg, required=True, help="seeds, e.g. 0-7,12")
    gen.add_argument("--jpeg-quality", type=int, default=None, help="1..100 with --format jpeg (default 90)")
    gen.add_argument("--out", default="out", metavar="DIR", help="output directory (default %(default)s)")
    gen.set_defaults(func=_cmd_generate)

    grid = sub.add_parser("grid", parents=[common], help="draw a style-mixing grid")
    sampling(grid)
    grid.add_argument("--rows", type=_range_arg, default=[85, 100, 75, 458, 1500], help="row seeds")
    grid.add_argument("--cols", type=_range_arg, default=[55, 821, 1789, 293], help="column seeds")
    grid.add_argument("--styles", type=_range_arg, default=None, help="ws indices from the columns (default 0-6)")
    grid.add_argument("--out", default=None, metavar="FILE", help="output file (default stylemix_grid.png/.jpg)")
    grid.set_defaults(func=_cmd_grid)
    return p


def _noise(args: argparse.Namespace) -> Noise | None:
    if args.noise_seed is not None:
        return Noise(args.noise_mode, args.noise_seed)
    return None if args.noise_mode == "const" else Noise(args.noise_mode)


def _model_row(m: ModelInfo) -> dict[str, Any]:
    return {
        "name": m.name,
        "architecture": m.architecture,
        "z_dim": m.z_dim,
        "num_classes": m.num_classes,
        "w_dim": m.w_dim,
        "num_ws": m.num_ws,
        "img_resolution": m.img_resolution,
        "img_channels": m.img_channels,
        "ws_layers": [{"index": x.index, "layers": x.layers, "resolution": x.resolution} for x in m.ws_layers],
        "noise_layers": [{"layer": x.layer, "resolution": x.resolution} for x in m.noise_layers],
        "noise_modes": m.noise_modes,
        "execution_provider": m.execution_provider,
    }


def _cmd_health(client: Client, args: argparse.Namespace) -> int:
    status = client.wait_until_serving(args.wait) if args.wait > 0 else client.health()
    print(status)
    return 0 if status == "SERVING" else 1


def _cmd_models(client: Client, args: argparse.Namespace) -> int:
    models = client.list_models()
    if args.json:
        print(json.dumps([_model_row(m) for m in models], indent=2))
        return 0
    rows = [["NAME", "RESOLUTION", "NUM_WS", "W_DIM", "CLASSES", "PROVIDER"]]
    for m in models:
        res = f"{m.img_resolution}x{m.img_resolution}x{m.img_channels}"
        rows.append([m.name, res, str(m.num_ws), str(m.w_dim), str(m.num_classes), m.execution_provider])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _cmd_generate(client: Client, args: argparse.Namespace) -> int:
    seeds = list(dict.fromkeys(args.seeds))  # one file per seed
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    noise, suffix = _noise(args), (".jpg" if args.format == "jpeg" else ".png")
    for i in range(0, len(seeds), GENERATE_CHUNK):
        chunk = seeds[i : i + GENERATE_CHUNK]
        images = client.generate(
            args.model, chunk, class_index=args.class_index, psi=args.psi, cutoff=args.cutoff, noise=noise,
            format=args.format, jpeg_quality=args.jpeg_quality,
        )  # fmt: skip
        if len(images) != len(chunk):
            raise ValueError(f"the server returned {len(images)} images for {len(chunk)} seeds")
        for seed, img in zip(chunk, images, strict=True):
            print(img.save(out / f"seed{seed:04d}{suffix}"), flush=True)
    return 0


def _cmd_grid(client: Client, args: argparse.Namespace) -> int:
    styles = args.styles
    if styles is None:  # the official 0-6, clipped to the model's layers like styleserve-render does
        styles = list(range(min(7, client.get_model(args.model).num_ws)))
    rows = [Source.from_seed(s, args.class_index, args.psi, args.cutoff) for s in args.rows]
    cols = [Source.from_seed(s, args.class_index, args.psi, args.cutoff) for s in args.cols]
    result = client.style_mix_grid(
        args.model, rows, cols, col_styles=styles, noise=_noise(args), format=args.format, compose=True
    )
    if result.grid is None:
        raise ValueError("the server returned no composed grid")
    out = Path(args.out) if args.out else Path(f"stylemix_grid{result.grid.suffix}")
    out.parent.mkdir(parents=True, exist_ok=True)
    print(result.grid.save(out))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``styleserve health|models|generate|grid`` (argv starts at the subcommand); returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "noise_seed", None) is not None and args.noise_mode != "random":
        parser.error("--noise-seed needs --noise-mode random")
    func: Callable[[Client, argparse.Namespace], int] = args.func
    try:
        root = Path(args.ca_cert).read_bytes() if args.ca_cert else None
        with Client(
            args.target, token=args.token, tls=args.tls or root is not None, root_certificates=root,
            timeout=args.timeout,
        ) as client:  # fmt: skip
            return func(client, args)
    except StyleServeRpcError as exc:
        print(f"error: {exc.code.name}: {exc.details}", file=sys.stderr)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
