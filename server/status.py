"""Domain errors -> gRPC status codes: the one place where the translation happens.

Details never echo unbounded input: messages quote client values through :func:`quote`, and
:func:`status_for` cuts every details string to :data:`MAX_DETAILS_CHARS` (through
:func:`styleserve.manifest.one_line`) as a last line of defence
(gRPC carries details in trailing metadata, which the client refuses beyond its metadata limit).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import grpc

from styleserve.errors import (
    DeadlineExpired,
    InvalidArgument,
    NotFound,
    Overloaded,
    StyleServeError,
    Unavailable,
)
from styleserve.manifest import one_line

log = logging.getLogger("styleserve.server")

MAX_DETAILS_CHARS = 1024
"""Longest details string any status carries."""

MAX_QUOTE_CHARS = 64
"""Longest client value a message quotes (longer ones are cut, with their length)."""

CODES: tuple[tuple[type[StyleServeError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),  # details: "<field>: <message>"
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DeadlineExpired, grpc.StatusCode.DEADLINE_EXCEEDED),
)


def quote(value: str | bytes, limit: int = MAX_QUOTE_CHARS) -> str:
    """``repr`` of a client-supplied value, cut to about ``limit`` characters: ``'abc…' (1000000 chars)``."""
    if len(value) <= limit:
        return repr(value)
    unit = "bytes" if isinstance(value, bytes) else "chars"
    return f"{value[:limit]!r}... ({len(value)} {unit})"


def status_for(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str]:
    """The status code and details a failed RPC answers with; unexpected errors are logged, not leaked."""
    for cls, code in CODES:
        if isinstance(exc, cls):
            return code, one_line(exc, MAX_DETAILS_CHARS)
    if isinstance(exc, StyleServeError):
        log.error("%s failed: %s", method, one_line(exc, MAX_DETAILS_CHARS))
        return grpc.StatusCode.INTERNAL, one_line(exc, MAX_DETAILS_CHARS)
    log.exception("%s failed with an unexpected error", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log"


class RateLimitedLog:
    """At most ``burst`` lines per ``interval_s``; the rest are counted, and the count is reported with the next
    line that gets through. For events a client can cause at will (garbage bodies, refused tokens)."""

    def __init__(self, logger: logging.Logger, burst: int = 5, interval_s: float = 60.0) -> None:
        self.logger, self.burst, self.interval_s = logger, burst, interval_s
        self.total = 0  # Every event, logged or not.
        self._lock = threading.Lock()
        self._window_start = -float("inf")
        self._in_window = 0
        self._suppressed = 0

    def warning(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self.total += 1
            if now - self._window_start >= self.interval_s:
                self._window_start, self._in_window = now, 0
            if self._in_window >= self.burst:
                self._suppressed += 1
                return
            self._in_window += 1
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            msg += " (%d more like this not logged)"
            args = (*args, suppressed)
        self.logger.warning(msg, *args)
