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

commands:
  serve      serve a model repository over gRPC             (styleserve serve --help)
  export     export a checkpoint to a model directory       (styleserve export --help)
  health     a server's health; --wait SECONDS polls until SERVING (client)
  models     list the models a server serves                (client)
  generate   seeds -> image files                            (client)
  grid       a style-mixing grid                             (client)
"""

CLIENT_COMMANDS = ("health", "models", "generate", "grid")


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
