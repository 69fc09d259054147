"""Bearer-token auth: a server interceptor over the ``authorization`` metadata.

Health checks stay open (load balancers and orchestrators probe them without credentials);
every other service, reflection included, needs ``authorization: Bearer <token>``. The decision is
made from the metadata alone, before the request body is read: a refused call costs a few kilobytes
and one rate-limited log line.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from .status import RateLimitedLog, log

refused_log = RateLimitedLog(log)

OPEN_SERVICES = ("/grpc.health.v1.Health/",)


def _token_ok(metadata: Sequence[tuple[str, str | bytes]] | None, tokens: Sequence[bytes]) -> bool:
    for key, value in metadata or ():
        if key.lower() == "authorization":
            raw = value.encode() if isinstance(value, str) else value
            scheme, _, token = raw.partition(b" ")
            if scheme.lower() != b"bearer":
                return False
            # Compare against every token so the time taken does not tell which one nearly matched.
            return any([hmac.compare_digest(token, t) for t in tokens])
    return False


async def _refuse(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    refused_log.warning("refused a call without a valid bearer token")
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")


# Whatever the method's kind, a refused call gets a stream-request handler without a deserializer that aborts
# before it reads a message: the body is never parsed, nor pulled past the flow-control window.
DENY = grpc.stream_unary_rpc_method_handler(_refuse)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: Sequence[str]) -> None:
        if not tokens:
            raise ValueError("token auth needs at least one token")
        self._tokens = [t.encode() for t in tokens]

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        if _token_ok(handler_call_details.invocation_metadata, self._tokens):
            return handler
        return DENY
