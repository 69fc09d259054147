"""``styleserve``: one command, one subcommand per job; each side is imported only when used.

::

    styleserve serve MODEL_REPOSITORY [flags]     the gRPC server (needs the `server` extra)
    styleserve export CHECKPOINT OUT_DIR [flags]  checkpoint -> model directory (needs the `export` extra)
    styleserve models | generate | grid ...       client commands (need the `client` extra)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from styleserve import __version__

USAGE = """usage: styleserve COMMAND [args]   |   styleserve --version

server side:
  serve       serve a model repository over gRPC
  export      export a checkpoint to a model directory

client side (talk to a server: --target HOST:PORT or STYLESERVE_TARGET):
  health      a server's health; --wait SECONDS polls until SERVING
  models      list the models a server serves
  generate    seeds -> image files
  map         seeds -> w vectors saved as .npy / projected_w.npz
  synthesize  saved w / w+ files, seeds or cached ids -> one image, layer by layer
  grid        a style-mixing grid into one image
  walk        a latent walk between seeds -> animated GIF/WebP or frames
  edit        a seed edited along semantic directions (SeFa) -> one strip image
  cache       the server's w cache: put / get / delete
  batch       a resumable batch job: millions of seeds into a directory

offline (onnxruntime only, no server): styleserve-render MODEL_DIR OUT_DIR --seeds 0-7

Run 'styleserve COMMAND --help' for a command's options and examples, e.g.
  styleserve generate --model ffhq --seeds 0-7,42 --psi 0.7 --out out/
  styleserve walk --model ffhq --seeds 1,5,9 --loop --out walk.gif
"""

CLIENT_COMMANDS = ("health", "models", "generate", "map", "synthesize", "grid", "walk", "edit", "cache", "batch")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:  # 'styleserve ... | head': the reader left; end quietly
        from styleserve.clients.cli import quiet_broken_pipe

        return quiet_broken_pipe()


def _export_target_exists(rest: Sequence[str]) -> str | None:
    """``styleserve export`` into an existing directory without ``--overwrite``: the message, found before torch
    is imported (None when the command line is anything else, or unclear: the exporter's own parser decides)."""
    import argparse

    if any(a in ("-h", "--help", "--overwrite") for a in rest):
        return None
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("paths", nargs="*")
    for flag in ("--demo", "--fp16"):
        p.add_argument(flag, action="store_true")
    for option in ("--name", "--kind", "--resolution", "--verify-batches"):
        p.add_argument(option)
    try:
        ns, unknown = p.parse_known_args(rest)
    except SystemExit:
        return None
    if unknown or len(ns.paths) != (1 if ns.demo else 2):
        return None
    out = Path(ns.paths[-1])
    if not out.exists():
        return None
    return f"styleserve export: error: {out} exists; pass --overwrite to replace it"


def _dispatch(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"styleserve {__version__}")
        return 0
    cmd, rest = args[0], args[1:]
    if cmd == "serve":
        from styleserve.server.app import main as serve_main

        return serve_main(rest)
    if cmd == "export":
        problem = _export_target_exists(rest)
        if problem is not None:
            print(problem, file=sys.stderr)
            return 2
        from styleserve.export.cli import main as export_main

        return export_main(rest)
    if cmd in CLIENT_COMMANDS:
        from styleserve.clients.cli import main as client_main

        return client_main(args)
    print(f"styleserve: unknown command {cmd!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
