"""The client half of the ``styleserve`` CLI: ``styleserve models|generate|map|synthesize|grid|walk|cache ...``.

``main(argv)`` takes argv starting at the subcommand name (``styleserve batch ...`` is handed to
:mod:`styleserve.clients.batch`). Expected failures (server errors, an unreachable server, bad files, bad
layer ranges) print ``error: ...`` to stderr and exit 1, without a traceback; bad command lines exit 2
(argparse).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from styleserve import seeds as _seeds

from ._args import UsageError, add_connection_args, int_at_least, resolve_token
from ._client import Client
from ._errors import StyleServeRpcError
from ._requests import REQUEST_CHUNK
from ._types import Edit, GeneratedImage, ModelInfo, Noise, Plan, Source, Style, Transform, atomic_write
from ._walk import interpolate_path, interpolate_ws

__all__ = ["load_w", "main", "parse_range"]

F32 = npt.NDArray[np.float32]

GENERATE_CHUNK = REQUEST_CHUNK
"""Seeds per ``Generate``/``Map`` call and frames per ``Synthesize`` call (as :meth:`Client.generate` splits)."""

class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions and epilogs as written; room for long option and command names."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):  # argparse undercounts the subcommands' indent
            longest = max((len(name) for name in action.choices), default=0)
            needed = longest + self._current_indent + 2 * self._indent_increment
            self._action_max_length = max(self._action_max_length, needed)


_RAW = _Formatter

DESCRIPTION = """\
Talk to a styleserve server: list its models, draw images from seeds, save and reuse w vectors, mix
styles layer by layer, render latent walks, and manage the server's w cache.
Run 'styleserve COMMAND --help' for a command's options."""

EPILOG = """\
examples:
  styleserve health --wait 60
  styleserve models
  styleserve generate --model ffhq --seeds 0-7,42 --psi 0.7 --out out/
  styleserve map --model ffhq --seeds 85,100 --psi 0.7 --format npz --out ws/
  styleserve synthesize --model ffhq --w ws/seed0085_projected_w.npz --style 0-3=seed:55 --out mix.png
  styleserve grid --model ffhq --rows 85,100,75 --cols 55,821,1789 --out grid.png
  styleserve walk --model ffhq --seeds 1,5,9 --psi 0.7 --loop --out walk.gif
  styleserve cache put --model ffhq ws/seed0085.npy

The server is --target HOST:PORT (or STYLESERVE_TARGET, default 127.0.0.1:50051); a bearer token comes
from --token or STYLESERVE_AUTH_TOKEN. Seed lists are ranges like 0-99,200.
exit status: 0 ok, 1 a failure (printed as 'error: ...'), 2 a bad command line."""


# ---------------------------------------------------------------------------- argument types


def parse_range(text: str, *, max_items: int = 100_000) -> list[int]:
    """``'0-3,7'`` -> ``[0, 1, 2, 3, 7]`` (order and repeats kept); ValueError with a clear message otherwise.

    The one parser of :mod:`styleserve.seeds`, shared with ``styleserve batch`` and ``styleserve-render``.
    """
    return _seeds.parse_range(text, max_items=max_items)


def _range_arg(text: str) -> list[int]:
    try:
        return parse_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_positive_int = int_at_least(1)


def _psi_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _alphas_arg(text: str) -> list[float]:
    """``'-3,0,3'`` -> edit strengths (finite numbers, at least one)."""
    values = [_psi_arg(x.strip()) for x in text.split(",") if x.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"no strengths in {text!r}; e.g. -3,0,3")
    return values


def _edit_args(group: argparse._ArgumentGroup, walk: bool = False) -> None:
    """``--direction`` / ``--range`` / ``--alphas`` / ``--layers`` (semantic edits; 'styleserve models --json' lists
    each model's directions)."""
    if walk:
        group.add_argument(
            "--direction", type=int, default=None, metavar="N",
            help="walk along semantic direction N instead: keyframes are each seed edited by each of --alphas",
        )  # fmt: skip
    else:
        group.add_argument(
            "--direction", type=_range_arg, required=True, metavar="N[,M...]",
            help="semantic direction indices (0 = strongest), one row of the strip each",
        )  # fmt: skip
    group.add_argument(
        "--range", dest="layer_range", default="all", choices=["all", "coarse", "middle", "fine"],
        help="layer range of the directions (default all)",
    )  # fmt: skip
    group.add_argument(
        "--alphas", type=_alphas_arg, default=None if walk else [-3.0, 0.0, 3.0], metavar="A,B,...",
        help="edit strengths, e.g. -3,0,3" + ("" if walk else " (default; one column each)"),
    )  # fmt: skip
    group.add_argument(
        "--layers", dest="edit_layers", type=_range_arg, default=None, metavar="LAYERS",
        help="ws indices the edit moves, e.g. 0-5 (default: the range's own layers)",
    )  # fmt: skip


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _tagged(tag: str) -> Callable[[str], tuple[str, str]]:
    def parse(text: str) -> tuple[str, str]:
        return tag, text

    return parse


# ---------------------------------------------------------------------------- parser


def _connection_parent() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_connection_args(common.add_argument_group("connection"))
    return common


def _model(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--model", required=True, help="model name (see 'styleserve models')")


def _truncation(group: argparse._ArgumentGroup, what: str = "") -> None:
    group.add_argument(
        "--psi", "--trunc", dest="psi", type=_psi_arg, default=None, metavar="PSI",
        help=f"truncation psi{what} (default 1 = none; --trunc as in gen_images.py)",
    )  # fmt: skip
    group.add_argument(
        "--cutoff", type=int, default=None, metavar="N", help=f"truncate only ws indices below N{what} (default all)"
    )
    group.add_argument(
        "--class", dest="class_index", type=int, default=None, metavar="K", help=f"class{what} for conditional models"
    )


def _noise_args(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--noise-mode", choices=["const", "none", "random"], default="const", help="noise inputs (default const)"
    )
    group.add_argument("--noise-seed", type=int, default=None, metavar="N", help="seed for --noise-mode random")


def _translate_arg(text: str) -> tuple[float, float]:
    """gen_images.py's ``--translate X,Y`` (``parse_vec2``)."""
    parts = text.split(",")
    try:
        if len(parts) == 2:
            return float(parts[0]), float(parts[1])
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected X,Y (two numbers), got {text!r}")


def _transform_args(group: argparse._ArgumentGroup, walk: bool = False) -> None:
    """gen_images.py's ``--translate X,Y --rotate DEG`` (models with a transform input: StyleGAN3)."""
    group.add_argument("--translate", type=_translate_arg, default=(0.0, 0.0), metavar="X,Y",
                       help="translate the image (StyleGAN3; gen_images.py's --translate, default 0,0)")  # fmt: skip
    group.add_argument("--rotate", type=float, default=0.0, metavar="DEG",
                       help="rotate by DEG degrees (StyleGAN3; gen_images.py's --rotate, default 0)")  # fmt: skip
    if walk:
        group.add_argument("--pan-to", type=_translate_arg, default=None, metavar="X,Y",
                           help="pan from --translate to X,Y over the walk (StyleGAN3)")  # fmt: skip
        group.add_argument("--rotate-to", type=float, default=None, metavar="DEG",
                           help="rotate from --rotate to DEG over the walk (StyleGAN3)")  # fmt: skip


def _transform(args: argparse.Namespace) -> Transform | None:
    """The --translate / --rotate of every image; None (no field sent) for the identity."""
    (tx, ty), deg = args.translate, args.rotate
    return None if (tx, ty, deg) == (0.0, 0.0, 0.0) else Transform(tx, ty, deg)


def _walk_transforms(args: argparse.Namespace, n: int) -> list[Transform | None]:
    """Per frame: --translate/--rotate moved linearly to --pan-to/--rotate-to (the last frame reaches them)."""
    (tx0, ty0), deg0 = args.translate, args.rotate
    (tx1, ty1) = args.pan_to if args.pan_to is not None else (tx0, ty0)
    deg1 = args.rotate_to if args.rotate_to is not None else deg0
    out: list[Transform | None] = []
    for i in range(n):
        t = i / (n - 1) if n > 1 else 0.0
        move = (tx0 + t * (tx1 - tx0), ty0 + t * (ty1 - ty0), deg0 + t * (deg1 - deg0))
        out.append(None if move == (0.0, 0.0, 0.0) else Transform(*move))
    return out


def _image_format(group: argparse._ArgumentGroup, jpeg_quality: bool = True) -> None:
    group.add_argument("--format", choices=["png", "jpeg"], default="png", help="image encoding (default png)")
    if jpeg_quality:
        group.add_argument(
            "--jpeg-quality", type=int, default=None, metavar="Q", help="1..100 with --format jpeg (default 90)"
        )


def _parser() -> argparse.ArgumentParser:
    common = _connection_parent()
    p = argparse.ArgumentParser(prog="styleserve", description=DESCRIPTION, epilog=EPILOG, formatter_class=_RAW)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    def command(name: str, help: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, parents=[common], help=help, description=description, epilog=epilog, formatter_class=_RAW
        )

    # health
    health = command(
        "health",
        "print the server's health; exit 0 when SERVING",
        "Print the server's health status (SERVING, NOT_SERVING, ...); exit 0 only when SERVING.",
        "example:\n  styleserve health --wait 60 --target 10.0.0.5:50051",
    )
    health.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="poll until SERVING or timeout")
    health.set_defaults(func=_cmd_health)

    # models
    models = command(
        "models",
        "list the served models",
        "List the models the server serves: resolution, ws layers, w_dim, classes, execution provider.",
    )
    models.add_argument("--json", action="store_true", help="print JSON (with the layer tables) instead of a table")
    models.set_defaults(func=_cmd_models)

    # generate
    gen = command(
        "generate",
        "seeds -> image files",
        "Draw one image per seed (official seed -> z rule) into a directory, as seedNNNN.png / .jpg.",
        "example:\n  styleserve generate --model ffhq --seeds 0-7,42 --psi 0.7 --out out/",
    )
    g = gen.add_argument_group("sampling")
    _model(g)
    g.add_argument("--seeds", type=_range_arg, required=True, help="seeds, e.g. 0-7,12")
    _truncation(g)
    _noise_args(g)
    _transform_args(g)
    o = gen.add_argument_group("output")
    _image_format(o)
    o.add_argument(
        "--out", "--outdir", dest="out", default="out", metavar="DIR",
        help="output directory (default %(default)s; --outdir as in gen_images.py)",
    )  # fmt: skip
    gen.set_defaults(func=_cmd_generate)

    # map
    mp = command(
        "map",
        "seeds -> w vectors saved as .npy / projected_w.npz",
        "Map seeds to w and save one file per seed: seedNNNN.npy holding w [w_dim], or w+ [num_ws, w_dim]\n"
        "when --psi with --cutoff leaves some layers untruncated; with --format npz, seedNNNN_projected_w.npz\n"
        "in the stylegan2-ada-pytorch projector.py layout (key 'w', float32 [1, num_ws, w_dim]), which\n"
        "'styleserve synthesize --w' and the official gen_images.py --projected-w read back.",
        "examples:\n"
        "  styleserve map --model ffhq --seeds 0-3 --psi 0.7 --out ws/\n"
        "  styleserve map --model ffhq --seeds 85 --format npz --cache --out ws/",
    )
    g = mp.add_argument_group("sampling")
    _model(g)
    g.add_argument("--seeds", type=_range_arg, required=True, help="seeds, e.g. 0-3,12")
    _truncation(g)
    o = mp.add_argument_group("output")
    o.add_argument("--out", default="out", metavar="DIR", help="output directory (default %(default)s)")
    o.add_argument("--format", choices=["npy", "npz"], default="npy", help="npy (w or w+) or npz (projector.py layout)")
    o.add_argument("--cache", action="store_true", help="also keep the ws in the server's w cache; print their ids")
    mp.set_defaults(func=_cmd_map)

    # synthesize
    syn = command(
        "synthesize",
        "saved w / w+ files, seeds or cached ids -> one image, layer by layer",
        "Draw one image from a style plan: a base source for every ws layer (--w) and sources for some layers\n"
        "(--plan / --style; later entries override earlier ones). A SOURCE is a .npy file (w [w_dim] or w+\n"
        "[num_ws, w_dim]), a projected_w.npz file (key 'w', [1, num_ws, w_dim]), seed:N (mapped on the\n"
        "server with --psi/--cutoff/--class) or w_id:ID (the server's w cache). LAYERS are ws indices like\n"
        "0-3 or 4,5 (see 'styleserve models --json'), or 'all'.",
        "examples:\n"
        "  styleserve synthesize --model ffhq --w ws/seed0085.npy --style 0-3=seed:55 --out mix.png\n"
        "  styleserve synthesize --model ffhq --plan '0-3:a.npy,4-13:b_projected_w.npz' --out ab.png\n"
        "  styleserve synthesize --model ffhq --w seed:85 --psi 0.7 --style 8-13=w_id:w_0123... --out c.png",
    )
    g = syn.add_argument_group("styles")
    _model(g)
    g.add_argument("--w", metavar="SOURCE", default=None, help="base source for every ws layer")
    g.add_argument(
        "--plan",
        dest="entries",
        action="append",
        type=_tagged("plan"),
        metavar="LAYERS:SOURCE,...",
        help="style entries, e.g. '0-3:a.npy,4-7:b.npz' (repeatable)",
    )
    g.add_argument(
        "--style",
        dest="entries",
        action="append",
        type=_tagged("style"),
        metavar="LAYERS=SOURCE",
        help="one style entry, e.g. 0-3=seed:55 or 4,5=w.npy (repeatable)",
    )
    _truncation(g, " of seed:N sources")
    g = syn.add_argument_group("sampling")
    _noise_args(g)
    o = syn.add_argument_group("output")
    _image_format(o)
    o.add_argument("--out", default=None, metavar="FILE", help="output file (default synthesized.png / .jpg)")
    syn.set_defaults(func=_cmd_synthesize)

    # grid
    grid = command(
        "grid",
        "a style-mixing grid into one image",
        "Draw the official style-mixing figure: row seeds x column seeds, the --styles ws layers taken from\n"
        "the columns, composed into one image with the sources along the edges.",
        "example:\n  styleserve grid --model ffhq --rows 85,100,75 --cols 55,821,1789 --styles 0-6 --out grid.png",
    )
    g = grid.add_argument_group("sampling")
    _model(g)
    g.add_argument("--rows", type=_range_arg, default=[85, 100, 75, 458, 1500], help="row seeds")
    g.add_argument("--cols", type=_range_arg, default=[55, 821, 1789, 293], help="column seeds")
    g.add_argument("--styles", type=_range_arg, default=None, help="ws indices from the columns (default 0-6)")
    _truncation(g)
    _noise_args(g)
    _transform_args(g)
    o = grid.add_argument_group("output")
    _image_format(o, jpeg_quality=False)
    o.add_argument(
        "--out", default=None, metavar="FILE", help="grid file (default stylemix_grid.png/.jpg, or DIR/grid.png)"
    )
    o.add_argument(
        "--outdir", default=None, metavar="DIR",
        help="as style_mixing.py: also write every image as DIR/ROW-COL.png (sources as SEED-SEED.png) and the "
        "grid as DIR/grid.png",
    )  # fmt: skip
    grid.set_defaults(func=_cmd_grid)

    # walk
    walk = command(
        "walk",
        "a latent walk between seeds -> animated GIF/WebP or frames",
        "Map the seeds to w, interpolate linearly in W from each seed to the next (and back to the first\n"
        "with --loop), and draw every frame. The output is an animated GIF or WebP when --out ends in\n"
        ".gif or .webp, otherwise a directory of numbered frames (frameNNNN.png / .jpg).",
        "examples:\n"
        "  styleserve walk --model ffhq --seeds 1,5,9 --psi 0.7 --loop --out walk.gif\n"
        "  styleserve walk --model ffhq --seeds 1-3 --steps 120 --out frames/",
    )
    g = walk.add_argument_group("sampling")
    _model(g)
    g.add_argument("--seeds", type=_range_arg, required=True, help="keyframe seeds in order, e.g. 1,5,9")
    n = g.add_mutually_exclusive_group()
    n.add_argument(
        "--frames-per-seed",
        type=_positive_int,
        default=None,
        metavar="N",
        help="frames from each seed to the next (default 16)",
    )
    n.add_argument("--steps", type=_positive_int, default=None, metavar="N", help="total frames, evenly spaced")
    g.add_argument("--loop", action="store_true", help="walk back to the first seed (a seamless loop)")
    _truncation(g)
    _noise_args(g)
    _transform_args(g, walk=True)
    _edit_args(walk.add_argument_group("semantic walk (--direction)"), walk=True)
    o = walk.add_argument_group("output")
    o.add_argument("--out", default="walk.gif", metavar="FILE.gif|FILE.webp|DIR", help="output (default %(default)s)")
    o.add_argument("--fps", type=_positive_float, default=24.0, help="animation frame rate (default 24)")
    o.add_argument(
        "--format", choices=["png", "jpeg"], default="png", help="frame encoding in a directory (default png)"
    )
    walk.set_defaults(func=_cmd_walk)

    # edit
    edit = command(
        "edit",
        "a seed edited along semantic directions -> one strip image",
        "Move a seed's w+ along closed-form semantic directions (SeFa, computed at export from the generator's\n"
        "style weights; 'styleserve models --json' lists them) by each strength in --alphas, and draw the\n"
        "results side by side: one row per direction, one column per strength (alpha 0 is the seed itself).",
        "examples:\n"
        "  styleserve edit --model demo --seed 42 --direction 0 --alphas -3,0,3 --layers 0-5 --out strip.png\n"
        "  styleserve edit --model demo --seed 42 --direction 0-4 --range coarse --psi 0.7 --out coarse.png",
    )
    g = edit.add_argument_group("sampling")
    _model(g)
    g.add_argument("--seed", type=int, required=True, help="the seed to edit")
    _truncation(g)
    _noise_args(g)
    _edit_args(edit.add_argument_group("edits"))
    o = edit.add_argument_group("output")
    o.add_argument("--out", default="edit.png", metavar="FILE", help="strip image (default %(default)s)")
    o.add_argument("--outdir", default=None, metavar="DIR", help="also write every image as DIR/dirN_alphaA.png")
    edit.set_defaults(func=_cmd_edit)

    # cache
    cache = sub.add_parser(
        "cache",
        help="the server's w cache: put / get / delete",
        description="Store w vectors in the server's w cache (for w_id:ID sources), read them back, drop them.\n"
        "Ids can disappear (eviction, TTL, restart): put the vector again when a call says NOT_FOUND.",
        epilog="examples:\n"
        "  styleserve cache put --model ffhq ws/seed0085.npy\n"
        "  styleserve cache get --model ffhq w_0123... --out w.npy\n"
        "  styleserve cache delete --model ffhq w_0123...",
        formatter_class=_RAW,
    )
    csub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION", title="actions")
    put = csub.add_parser(
        "put",
        parents=[common],
        help="upload a .npy / .npz w and print its id",
        description="Upload a w [w_dim] or w+ [num_ws, w_dim] (.npy, or projected_w.npz) and print its cache id.",
    )
    _model(put.add_argument_group("cache"))
    put.add_argument("file", metavar="FILE", help=".npy or .npz file")
    put.set_defaults(func=_cmd_cache_put)
    get = csub.add_parser(
        "get",
        parents=[common],
        help="download a cached w into a .npy (or .npz) file",
        description="Write a cached w or w+ to FILE: .npy as stored, .npz in the projector.py layout.",
    )
    g = get.add_argument_group("cache")
    _model(g)
    get.add_argument("w_id", metavar="ID", help="cache id (w_...)")
    g.add_argument("--out", default=None, metavar="FILE", help="output file (default ID.npy)")
    get.set_defaults(func=_cmd_cache_get)
    delete = csub.add_parser(
        "delete",
        parents=[common],
        help="drop a cached w",
        description="Drop a cached w; exits 1 when the id was not cached.",
    )
    _model(delete.add_argument_group("cache"))
    delete.add_argument("w_id", metavar="ID", help="cache id (w_...)")
    delete.set_defaults(func=_cmd_cache_delete)

    # batch: dispatched by main() before parsing; listed here for --help.
    sub.add_parser("batch", help="run a batch job (see 'styleserve batch --help')", add_help=False).set_defaults(
        func=None
    )
    return p


# ---------------------------------------------------------------------------- helpers


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
        "directions": [
            {"range": d.layer_range, "layers": d.layers, "count": d.count, "eigenvalues": d.eigenvalues}
            for d in m.directions
        ],
    }


def _npy_bytes(arr: npt.NDArray[Any]) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def projected_w(w: npt.ArrayLike, num_ws: int) -> F32:
    """A w ``[w_dim]`` (broadcast to every layer) or w+ ``[num_ws, w_dim]`` -> float32 ``[1, num_ws, w_dim]``."""
    arr = np.asarray(w, dtype=np.float32)
    if arr.ndim == 1:
        arr = np.broadcast_to(arr, (num_ws, arr.shape[0]))
    if arr.ndim != 2 or arr.shape[0] != num_ws:
        raise ValueError(f"expected w [w_dim] or w+ [{num_ws}, w_dim], got shape {arr.shape}")
    return np.ascontiguousarray(arr[None], dtype=np.float32)


def _save_w(path: Path, w: F32, num_ws: Callable[[], int], npz: bool) -> Path:
    """Atomically write ``w`` as .npy (as is) or as a projector.py ``.npz`` (key ``w``, [1, num_ws, w_dim])."""
    if npz:
        buf = io.BytesIO()
        np.savez(buf, w=projected_w(w, num_ws() if w.ndim == 1 else w.shape[0]))
        payload = buf.getvalue()
    else:
        payload = _npy_bytes(np.ascontiguousarray(w, dtype=np.float32))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, payload)
    return path


def load_w(path: str | os.PathLike[str], info: ModelInfo) -> F32:
    """A w ``[w_dim]`` or w+ ``[num_ws, w_dim]`` from a ``.npy`` file or a projector.py ``.npz`` (key ``w``,
    ``[1, num_ws, w_dim]`` or ``[num_ws, w_dim]``), checked against the model; ValueError naming the file.
    """
    p = Path(path)
    expected = (
        f"w [w_dim] = [{info.w_dim}], w+ [num_ws, w_dim] = [{info.num_ws}, {info.w_dim}] "
        f"or [1, num_ws, w_dim] = [1, {info.num_ws}, {info.w_dim}] for model {info.name!r}"
    )
    if not p.is_file():
        raise ValueError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    try:
        loaded = np.load(p, allow_pickle=False)
    except Exception as exc:  # np.load raises ValueError, OSError, EOFError, zipfile and pickle errors.
        raise ValueError(f"{p}: not a .npy or .npz file ({type(exc).__name__}: {exc})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.files)
            if "w" not in keys:
                found = ", ".join(repr(k) for k in keys) or "none"
                raise ValueError(
                    f"{p}: no array 'w' (found {found}); expected the projector.py layout, "
                    f"'w' of shape [1, num_ws, w_dim] = [1, {info.num_ws}, {info.w_dim}]"
                )
            try:
                arr = np.asarray(loaded["w"])
            except Exception as exc:
                raise ValueError(f"{p}: cannot read array 'w' ({exc})") from None
    else:
        arr = np.asarray(loaded)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{p}: holds {arr.dtype} values; expected float32 {expected}")
    shape = arr.shape
    if arr.ndim == 3 and shape[0] == 1:
        arr = arr[0]
    if not (arr.shape == (info.w_dim,) or arr.shape == (info.num_ws, info.w_dim)):
        raise ValueError(f"{p}: shape {list(shape)}; expected {expected}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{p}: holds NaN or infinite values")
    return out


def _layers(text: str, info: ModelInfo, what: str) -> list[int] | None:
    """``'0-3'``, ``'4,5'`` -> ws indices checked against the model; ``'all'`` -> None (every layer)."""
    if text.strip().lower() in ("all", "*"):
        return None
    try:
        layers = list(dict.fromkeys(parse_range(text)))
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None
    bad = [x for x in layers if x >= info.num_ws]
    if bad:
        raise UsageError(
            f"{what}: ws index {bad[0]} out of range; model {info.name!r} has ws layers 0-{info.num_ws - 1}"
        )
    return layers


def _source(text: str, args: argparse.Namespace, info: ModelInfo, what: str) -> Source:
    """``seed:N``, ``w_id:ID`` or a .npy/.npz path -> a :class:`Source`."""
    spec = text.strip()
    if spec.startswith("seed:"):
        value = spec[len("seed:") :].strip()
        if not value.isdigit():
            raise UsageError(f"{what}: bad seed {value!r} in {spec!r}; expected seed:N")
        try:
            return Source.from_seed(int(value), args.class_index, args.psi, args.cutoff)
        except ValueError as exc:
            raise UsageError(f"{what}: {exc}") from None
    if spec.startswith("w_id:"):
        value = spec[len("w_id:") :].strip()
        if not value:
            raise UsageError(f"{what}: empty id in {spec!r}; expected w_id:ID")
        return Source.from_w_id(value)
    if not spec:
        raise UsageError(f"{what}: empty source; expected FILE.npy, FILE.npz, seed:N or w_id:ID")
    w = load_w(spec, info)
    return Source.from_w(w) if w.ndim == 1 else Source.from_w_plus(w)


def _split_entry(text: str, what: str) -> tuple[str, str]:
    """``LAYERS=SOURCE`` or ``LAYERS:SOURCE`` -> (layers, source), split at the first ``=`` or ``:``."""
    m = re.search(r"[=:]", text)
    if m is None:
        raise UsageError(f"{what}: expected LAYERS=SOURCE, e.g. 0-3=seed:55 or 4,5=w.npy")
    return text[: m.start()], text[m.end() :]


def _plan_entries(text: str) -> list[tuple[str, str]]:
    """``'0-3:a.npy,4,5:seed:7'`` -> ``[('0-3', 'a.npy'), ('4,5', 'seed:7')]`` (entries split at ``,`` or ``;``;
    a piece without a separator is a layer item of the next entry)."""
    what = f"--plan {text!r}"
    entries, pending = [], []
    for piece in re.split(r"[,;]", text):
        if re.search(r"[=:]", piece) is None:
            pending.append(piece)
            continue
        layers, source = _split_entry(piece, what)
        entries.append((",".join([*pending, layers]), source))
        pending = []
    if pending or not entries:
        raise UsageError(f"{what}: expected LAYERS:SOURCE entries, e.g. '0-3:a.npy,4-7:b.npz'")
    return entries


def _ranges(xs: Sequence[int]) -> str:
    parts: list[str] = []
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        parts.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ",".join(parts)


def _styles(args: argparse.Namespace, info: ModelInfo) -> list[Style]:
    """--w, then the --plan/--style entries in command-line order -> styles covering every ws layer."""
    styles: list[Style] = []
    if args.w is not None:
        styles.append(Style(_source(args.w, args, info, f"--w {args.w!r}")))
    for tag, text in args.entries or ():
        if tag == "plan":
            pairs, what = _plan_entries(text), f"--plan {text!r}"
        else:
            pairs, what = [_split_entry(text, f"--style {text!r}")], f"--style {text!r}"
        for layers_text, source_text in pairs:
            layers = _layers(layers_text, info, what)
            styles.append(Style(_source(source_text, args, info, what), layers=layers))
    if not styles:
        raise UsageError("no styles: give --w SOURCE (every layer) and/or --style LAYERS=SOURCE / --plan")
    covered: set[int] = set()
    for s in styles:
        covered.update(range(info.num_ws) if s.layers is None else s.layers)
    missing = sorted(set(range(info.num_ws)) - covered)
    if missing:
        raise UsageError(
            f"ws layers {_ranges(missing)} of model {info.name!r} have no source; "
            "add --w SOURCE (every layer) or a --style covering them"
        )
    return styles


# ---------------------------------------------------------------------------- commands


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
            format=args.format, jpeg_quality=args.jpeg_quality, transform=_transform(args),
        )  # fmt: skip
        if len(images) != len(chunk):
            raise ValueError(f"the server returned {len(images)} images for {len(chunk)} seeds")
        for seed, img in zip(chunk, images, strict=True):
            print(img.save(out / f"seed{seed:04d}{suffix}"), flush=True)
    return 0


def _cmd_map(client: Client, args: argparse.Namespace) -> int:
    seeds = list(dict.fromkeys(args.seeds))
    out = Path(args.out)
    npz = args.format == "npz"
    info: list[ModelInfo] = []

    def num_ws() -> int:  # asked once, and only when a plain w has to be broadcast into the npz layout
        if not info:
            info.append(client.get_model(args.model))
        return info[0].num_ws

    for i in range(0, len(seeds), GENERATE_CHUNK):
        chunk = seeds[i : i + GENERATE_CHUNK]
        mapped = client.map(
            args.model, seeds=chunk, class_index=args.class_index, psi=args.psi, cutoff=args.cutoff, return_w=True,
            cache=args.cache,
        )  # fmt: skip
        if len(mapped) != len(chunk):
            raise ValueError(f"the server returned {len(mapped)} ws for {len(chunk)} seeds")
        for seed, m in zip(chunk, mapped, strict=True):
            if m.w is None:
                raise ValueError(f"the server returned no w for seed {seed}")
            name = f"seed{seed:04d}_projected_w.npz" if npz else f"seed{seed:04d}.npy"
            path = _save_w(out / name, m.w, num_ws, npz)
            print(f"{path}\t{m.w_id}" if args.cache else path, flush=True)
    return 0


def _cmd_synthesize(client: Client, args: argparse.Namespace) -> int:
    info = client.get_model(args.model)
    plan = Plan(_styles(args, info), noise=_noise(args))
    images = client.synthesize(args.model, [plan], format=args.format, jpeg_quality=args.jpeg_quality)
    if len(images) != 1:
        raise ValueError(f"the server returned {len(images)} images for one plan")
    (img,) = images
    out = Path(args.out) if args.out else Path(f"synthesized{img.suffix}")
    out.parent.mkdir(parents=True, exist_ok=True)
    print(img.save(out))
    return 0


def _cmd_grid(client: Client, args: argparse.Namespace) -> int:
    styles = args.styles
    if styles is None:  # the official 0-6, clipped to the model's layers like styleserve-render does
        styles = list(range(min(7, client.get_model(args.model).num_ws)))
    rows = [Source.from_seed(s, args.class_index, args.psi, args.cutoff) for s in args.rows]
    cols = [Source.from_seed(s, args.class_index, args.psi, args.cutoff) for s in args.cols]
    result = client.style_mix_grid(
        args.model, rows, cols, col_styles=styles, noise=_noise(args), format=args.format, compose=True,
        transform=_transform(args),
    )
    if result.grid is None:
        raise ValueError("the server returned no composed grid")
    outdir = Path(args.outdir) if args.outdir else None
    if args.out:
        out = Path(args.out)
    else:
        out = (outdir or Path()) / (f"grid{result.grid.suffix}" if outdir else f"stylemix_grid{result.grid.suffix}")
    if outdir is not None:  # style_mixing.py's files: every mix ROW-COL, the sources SEED-SEED, then the grid
        if len(result.cells) != len(rows) * len(cols):
            raise ValueError(f"the server returned {len(result.cells)} cells for {len(rows)}x{len(cols)}")
        outdir.mkdir(parents=True, exist_ok=True)
        sources = list(dict.fromkeys([*args.rows, *args.cols]))
        images = client.generate(
            args.model, sources, class_index=args.class_index, psi=args.psi, cutoff=args.cutoff, noise=_noise(args),
            format=args.format, transform=_transform(args),
        )  # fmt: skip
        for seed, img in zip(sources, images, strict=True):
            print(img.save(outdir / f"{seed}-{seed}{img.suffix}"), flush=True)
        for i, cell in enumerate(result.cells):
            r, c = args.rows[i // len(cols)], args.cols[i % len(cols)]
            print(cell.save(outdir / f"{r}-{c}{cell.suffix}"), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(result.grid.save(out))
    return 0


def _edits(args: argparse.Namespace, direction: int, alpha: float) -> Edit:
    layers = tuple(dict.fromkeys(args.edit_layers)) if args.edit_layers else None
    return Edit(direction, alpha, args.layer_range, layers)


def _cmd_edit(client: Client, args: argparse.Namespace) -> int:
    directions: list[int] = list(dict.fromkeys(args.direction))
    alphas: list[float] = args.alphas
    base = Source.from_seed(args.seed, args.class_index, args.psi, args.cutoff)
    cells = [(d, a) for d in directions for a in alphas]
    images: list[GeneratedImage] = []
    for i in range(0, len(cells), GENERATE_CHUNK):
        chunk = cells[i : i + GENERATE_CHUNK]
        plans = [Plan([Style(base.edited(_edits(args, d, a)))], noise=_noise(args)) for d, a in chunk]
        got = client.synthesize(args.model, plans)
        if len(got) != len(plans):
            raise ValueError(f"the server returned {len(got)} images for {len(plans)} edits")
        images.extend(got)
    if args.outdir:
        outdir = Path(args.outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        for (d, a), img in zip(cells, images, strict=True):
            print(img.save(outdir / f"dir{d}_alpha{a:g}{img.suffix}"), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, _strip(images, len(directions), len(alphas), out.suffix.lower()))
    print(f"{out}  ({len(directions)} direction(s) x {len(alphas)} strength(s))")
    return 0


def _strip(images: Sequence[GeneratedImage], rows: int, cols: int, suffix: str) -> bytes:
    """Row-major images -> one ``rows x cols`` canvas, encoded as PNG (JPEG for .jpg/.jpeg)."""
    from PIL import Image  # Pillow only when composing.

    tiles = [img.to_array() for img in images]  # [H, W, C] uint8 each
    h, w, c = tiles[0].shape
    canvas = np.zeros((rows * h, cols * w, c), np.uint8)
    for k, tile in enumerate(tiles):
        r, q = divmod(k, cols)
        canvas[r * h : (r + 1) * h, q * w : (q + 1) * w] = tile
    buf = io.BytesIO()
    jpeg = suffix in (".jpg", ".jpeg")
    Image.fromarray(canvas[..., 0] if c == 1 else canvas).save(buf, format="JPEG" if jpeg else "PNG")
    return buf.getvalue()


def _walk_keys(client: Client, args: argparse.Namespace, seeds: list[int]) -> list[F32]:
    """The walk's keyframes: each seed's w (or w+), or with --direction each seed's w+ edited by each alpha."""
    keys: list[F32] = []
    edit_sets: list[list[Edit]] = [[]]
    if args.direction is not None:
        edit_sets = [[_edits(args, args.direction, a)] for a in args.alphas]
    for i in range(0, len(seeds), GENERATE_CHUNK):
        chunk = seeds[i : i + GENERATE_CHUNK]
        per_edit = []
        for edits in edit_sets:
            mapped = client.map(
                args.model, seeds=chunk, class_index=args.class_index, psi=args.psi, cutoff=args.cutoff,
                return_w=True, edits=edits,
            )  # fmt: skip
            if len(mapped) != len(chunk) or any(m.w is None for m in mapped):
                raise ValueError(f"the server returned {len(mapped)} ws for {len(chunk)} seeds")
            per_edit.append([m.w for m in mapped if m.w is not None])
        keys.extend(ws[j] for j in range(len(chunk)) for ws in per_edit)  # seed by seed, alphas in order
    return keys


def _cmd_walk(client: Client, args: argparse.Namespace) -> int:
    seeds: list[int] = args.seeds
    if args.direction is not None and not args.alphas:
        raise UsageError("--direction needs --alphas, e.g. --alphas -3,3")
    if args.direction is None and (args.alphas or args.edit_layers):
        raise UsageError("--alphas and --layers belong to a walk along a --direction")
    if args.direction is None and len(seeds) < 2:
        raise UsageError("a walk needs at least two seeds, e.g. --seeds 1,5 (or one seed and a --direction)")
    out = Path(args.out)
    animated = out.suffix.lower() in WALK_SUFFIXES and not args.out.endswith(("/", os.sep)) and not out.is_dir()
    keys = _walk_keys(client, args, seeds)
    if len(keys) < 2:
        raise UsageError("a walk needs at least two keyframes: give two --alphas or two seeds")
    if len({k.shape for k in keys}) > 1:  # some w, some w+: walk in w+
        num_ws = max(k.shape[0] for k in keys if k.ndim == 2)
        keys = [np.broadcast_to(k, (num_ws, k.shape[-1])) if k.ndim == 1 else k for k in keys]
    ws = np.stack(keys)
    if args.steps is not None:
        frames = interpolate_path(ws, args.steps, loop=args.loop)
    else:
        frames = interpolate_ws(ws, args.frames_per_seed or 16, loop=args.loop)
    noise = _noise(args)
    moves = _walk_transforms(args, len(frames))
    fmt = "png" if animated else args.format
    if not animated:
        out.mkdir(parents=True, exist_ok=True)
    digits = max(4, len(str(len(frames) - 1)))
    images: list[GeneratedImage] = []
    for i in range(0, len(frames), GENERATE_CHUNK):
        frame_chunk = frames[i : i + GENERATE_CHUNK]
        plans = [
            Plan([Style(Source.from_w(w) if w.ndim == 1 else Source.from_w_plus(w))], noise=noise, transform=move)
            for w, move in zip(frame_chunk, moves[i : i + GENERATE_CHUNK], strict=True)
        ]
        got = client.synthesize(args.model, plans, format=fmt)
        if len(got) != len(plans):
            raise ValueError(f"the server returned {len(got)} images for {len(plans)} frames")
        if animated:
            images.extend(got)
            continue
        for j, img in enumerate(got, start=i):
            print(img.save(out / f"frame{j:0{digits}d}{img.suffix}"), flush=True)
    if animated:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, _animation(images, out.suffix.lower(), args.fps))
        print(f"{out}  ({len(images)} frames, {args.fps:g} fps)")
    return 0


def _animation(images: Sequence[GeneratedImage], suffix: str, fps: float) -> bytes:
    """PNG frames -> an animated GIF or WebP (looping forever) as bytes."""
    from PIL import Image  # Pillow only when drawing animations.

    frames = []
    for img in images:
        with Image.open(io.BytesIO(img.data)) as im:
            frames.append(im.convert("L" if img.channels == 1 and suffix == ".gif" else "RGB"))
    duration = max(1, round(1000 / fps))
    buf = io.BytesIO()
    if suffix == ".gif":
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=duration, loop=0)
    else:
        frames[0].save(
            buf, format="WEBP", save_all=True, append_images=frames[1:], duration=duration, loop=0, quality=90
        )
    return buf.getvalue()


def _cmd_cache_put(client: Client, args: argparse.Namespace) -> int:
    w = load_w(args.file, client.get_model(args.model))
    print(client.put_w(args.model, w))
    return 0


def _cmd_cache_get(client: Client, args: argparse.Namespace) -> int:
    w = client.get_w(args.model, args.w_id)
    out = Path(args.out) if args.out else Path(f"{args.w_id}.npy")
    npz = out.suffix.lower() == ".npz"
    print(_save_w(out, w, lambda: client.get_model(args.model).num_ws, npz))
    return 0


def _cmd_cache_delete(client: Client, args: argparse.Namespace) -> int:
    if not client.delete_w(args.model, args.w_id):
        print(f"error: {args.w_id} was not cached", file=sys.stderr)
        return 1
    print(f"deleted {args.w_id}")
    return 0


# ---------------------------------------------------------------------------- entry point


WALK_SUFFIXES = (".gif", ".webp")


def _walk_out_problem(out: str) -> str | None:
    """Why ``walk --out`` cannot be used (an unknown file type), or None: FILE.gif, FILE.webp or a directory."""
    p = Path(out)
    if out.endswith(("/", os.sep)) or p.is_dir() or not p.suffix or p.suffix.lower() in WALK_SUFFIXES:
        return None
    return f"--out {out!r}: unknown animation type {p.suffix!r}; expected FILE.gif, FILE.webp or a directory (DIR/)"


def quiet_broken_pipe() -> int:
    """After stdout's reader went away: point stdout at /dev/null (so the exit flush cannot fail) -> 141."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 128 + 13  # as a shell reports a process ended by SIGPIPE


def _run_batch(argv: Sequence[str]) -> int:
    try:
        from .batch import main as batch_main
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.batch":
            raise
        print("error: 'styleserve batch' is not available in this installation", file=sys.stderr)
        return 1
    return batch_main(argv)


def _join_alphas(argv: list[str]) -> list[str]:
    """``--alphas -3,0,3`` -> ``--alphas=-3,0,3`` (up to an option terminator ``--``)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--":
            return out + argv[i:]
        if argv[i] == "--alphas" and i + 1 < len(argv):
            out.append(f"--alphas={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run a client command (argv starts at the subcommand, e.g. ``["generate", ...]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "batch":
        return _run_batch(argv[1:])
    if argv and argv[0] in ("edit", "walk"):  # "--alphas -3,0,3": argparse would take -3,0,3 for an option
        argv = _join_alphas(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.func is None:  # "batch" after an option terminator ("-- batch")
        return _run_batch([])
    if getattr(args, "noise_seed", None) is not None and args.noise_mode != "random":
        parser.error("--noise-seed needs --noise-mode random")
    if getattr(args, "jpeg_quality", None) is not None and (args.format != "jpeg" or not 1 <= args.jpeg_quality <= 100):
        parser.error("--jpeg-quality takes 1..100 and needs --format jpeg")
    if args.func is _cmd_walk:
        problem = _walk_out_problem(args.out)
        if problem:
            parser.error(problem)
    func: Callable[[Client, argparse.Namespace], int] = args.func
    try:
        root = Path(args.ca_cert).read_bytes() if args.ca_cert else None
        with Client(
            args.target, token=resolve_token(args.token), tls=args.tls or root is not None, root_certificates=root,
            timeout=args.timeout,
        ) as client:  # fmt: skip
            return func(client, args)
    except BrokenPipeError:  # e.g. 'styleserve generate ... | head': the reader left; end quietly.
        return quiet_broken_pipe()
    except StyleServeRpcError as exc:
        print(f"error: {exc.code.name}: {exc.details}", file=sys.stderr)
        if exc.code.name == "UNAVAILABLE":
            print(f"hint: is a server running at {args.target}? (--target or STYLESERVE_TARGET)", file=sys.stderr)
        elif exc.code.name == "DEADLINE_EXCEEDED":
            print("hint: raise --timeout (seconds per call, 0 = no deadline)", file=sys.stderr)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
