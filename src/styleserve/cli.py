"""``styleserve``: one command, one subcommand per job; each side is imported only when used.

::

    styleserve serve MODEL_REPOSITORY [flags]     the gRPC server (needs the `server` extra)
    styleserve export CHECKPOINT OUT_DIR [flags]  checkpoint -> model directory (needs the `export` extra)
    styleserve models | generate | grid ...       client commands (need the `client` extra)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: styleserve COMMAND [args]

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
  cache       the server's w cache: put / get / delete
  batch       run a batch job

Run 'styleserve COMMAND --help' for a command's options and examples, e.g.
  styleserve generate --model ffhq --seeds 0-7,42 --psi 0.7 --out out/
  styleserve walk --model ffhq --seeds 1,5,9 --loop --out walk.gif
"""

CLIENT_COMMANDS = ("health", "models", "generate", "map", "synthesize", "grid", "walk", "cache", "batch")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "serve":
        from styleserve.server.app import main as serve_main

        return serve_main(rest)
    if cmd == "export":
        from styleserve.export.cli import main as export_main

        return export_main(rest)
    if cmd in CLIENT_COMMANDS:
        from styleserve.clients.cli import main as client_main

        return client_main(args)
    print(f"styleserve: unknown command {cmd!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
