"""The client's exception tree; :func:`from_rpc_error` is the one place ``grpc.RpcError`` is translated.

::

    StyleServeError                  (styleserve.errors)
    └── StyleServeRpcError           any failed RPC: ``code`` (grpc.StatusCode) and ``details``
        ├── InvalidArgumentError     INVALID_ARGUMENT; ``field`` parsed from "<field>: <message>"
        ├── NotFoundError            NOT_FOUND: unknown model, w id, ...
        ├── ResourceExhaustedError   RESOURCE_EXHAUSTED: overloaded server, message too large
        ├── UnavailableError         UNAVAILABLE: server down or unreachable
        ├── UnauthenticatedError     UNAUTHENTICATED: missing or wrong token
        └── DeadlineExceededError    DEADLINE_EXCEEDED: the call's timeout passed

Problems the client can see before calling (e.g. both seeds and zs) raise ``ValueError`` instead.
"""

from __future__ import annotations

import re
from typing import Any

import grpc

from styleserve.errors import StyleServeError

# The server formats INVALID_ARGUMENT details as "<field>: <message>", field a dotted path like "plans[0].styles[1]".
_FIELD_RE = re.compile(r"^(?P<field>[A-Za-z_][\w.\[\]]*): (?P<message>.*)$", re.DOTALL)


class StyleServeRpcError(StyleServeError):  # type: ignore[misc]  # mypy sees styleserve.* as Any
    """An RPC failed; ``code`` is the ``grpc.StatusCode``, ``details`` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class InvalidArgumentError(StyleServeRpcError):
    """The server rejected a request field; ``field`` names it (None if the details did not)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        m = _FIELD_RE.match(details)
        self.field: str | None = m.group("field") if m else None
        self.message: str = m.group("message") if m else details


class NotFoundError(StyleServeRpcError):
    """An unknown model, cached w id or other named resource."""


class ResourceExhaustedError(StyleServeRpcError):
    """The server is overloaded or a message exceeded a size limit."""


class UnavailableError(StyleServeRpcError):
    """The server is down, unreachable or shutting down."""


class UnauthenticatedError(StyleServeRpcError):
    """The call carried no token, or a wrong one."""


class DeadlineExceededError(StyleServeRpcError):
    """The call did not finish within its timeout."""


_BY_CODE: dict[grpc.StatusCode, type[StyleServeRpcError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def from_rpc_error(exc: Any) -> StyleServeRpcError:
    """``grpc.RpcError`` (a ``grpc.Call``) -> the matching :class:`StyleServeRpcError` subclass."""
    code_fn = getattr(exc, "code", None)
    details_fn = getattr(exc, "details", None)
    code = code_fn() if callable(code_fn) else None
    details = details_fn() if callable(details_fn) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    if details is None:
        details = str(exc)
    return _BY_CODE.get(code, StyleServeRpcError)(code, str(details))
