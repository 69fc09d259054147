"""Command-line pieces shared by the client CLI (:mod:`.cli`) and ``styleserve batch`` (:mod:`.batch`).

Both import this module; neither imports the other (``cli`` loads ``batch`` only to dispatch ``styleserve batch``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from typing import TextIO

from ._requests import DEFAULT_PORT

__all__ = [
    "DEFAULT_TARGET",
    "TOKEN_ENV",
    "TOKEN_ENV_DEPRECATED",
    "add_connection_args",
    "int_at_least",
    "resolve_token",
]

DEFAULT_TARGET = f"127.0.0.1:{DEFAULT_PORT}"
TOKEN_ENV = "STYLESERVE_AUTH_TOKEN"
"""The bearer token's environment variable, on both sides (the server reads it for ``--auth-token``)."""
TOKEN_ENV_DEPRECATED = "STYLESERVE_TOKEN"
"""The client's former name: still read when :data:`TOKEN_ENV` is unset, with a warning on stderr."""


class UsageError(ValueError):
    """A command line that cannot work as given (found after argparse, e.g. against the model's layers): exit 2,
    like argparse's own usage errors. Other ValueErrors (a file's content, ...) exit 1."""


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def timeout_arg(text: str) -> float | None:
    """An argparse type: seconds >= 0, 0 = no deadline (None)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds (0 = no deadline), got {text!r}")
    return value or None


def resolve_token(given: str | None, environ: Mapping[str, str] | None = None, err: TextIO | None = None) -> str | None:
    """``--token``, else ``STYLESERVE_AUTH_TOKEN``, else the deprecated ``STYLESERVE_TOKEN`` (warning on ``err``)."""
    if given is not None:
        return given
    env = os.environ if environ is None else environ
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV]
    if env.get(TOKEN_ENV_DEPRECATED):
        print(
            f"warning: {TOKEN_ENV_DEPRECATED} is deprecated; set {TOKEN_ENV} (the name the server reads) instead",
            file=sys.stderr if err is None else err,
        )
        return env[TOKEN_ENV_DEPRECATED]
    return None


def add_connection_args(
    group: argparse._ArgumentGroup, *, timeout_default: float = 60.0, timeout_help: str = "deadline per call"
) -> None:
    """``--target --token --tls --ca-cert --timeout``, shared by every client command and ``styleserve batch``.

    ``--token`` defaults to None: call :func:`resolve_token` after parsing (it reads the environment).
    """
    group.add_argument(
        "--target",
        metavar="HOST[:PORT]",
        default=os.environ.get("STYLESERVE_TARGET") or DEFAULT_TARGET,
        help="server address, or several comma-separated replicas; the port defaults to "
        f"{DEFAULT_PORT} (env STYLESERVE_TARGET, default %(default)s)",
    )
    group.add_argument("--token", default=None, help=f"bearer token (env {TOKEN_ENV})")
    group.add_argument("--tls", action="store_true", help="connect with TLS")
    group.add_argument("--ca-cert", metavar="PATH", default=None, help="PEM root certificates (implies --tls)")
    group.add_argument(
        "--timeout",
        type=timeout_arg,
        default=timeout_default,
        metavar="SECONDS",
        help=f"{timeout_help}, 0 = none (default {timeout_default:g})",
    )
