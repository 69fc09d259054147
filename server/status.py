"""Domain errors -> gRPC status codes: the one place where the translation happens."""

from __future__ import annotations

import logging

import grpc

from styleserve.errors import (
    DeadlineExpired,
    InvalidArgument,
    NotFound,
    Overloaded,
    StyleServeError,
    Unavailable,
)

log = logging.getLogger("styleserve.server")

CODES: tuple[tuple[type[StyleServeError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),  # details: "<field>: <message>"
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DeadlineExpired, grpc.StatusCode.DEADLINE_EXCEEDED),
)


def status_for(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str]:
    """The status code and details a failed RPC answers with; unexpected errors are logged, not leaked."""
    for cls, code in CODES:
        if isinstance(exc, cls):
            return code, str(exc)
    if isinstance(exc, StyleServeError):
        log.error("%s failed: %s", method, exc)
        return grpc.StatusCode.INTERNAL, str(exc)
    log.exception("%s failed with an unexpected error", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the server log"
