"""Retries through gRPC's own machinery (a service config), and failover across the client's targets.

:class:`RetryPolicy` is the configuration. :meth:`RetryPolicy.service_config` turns it into the channel's gRPC
service config: a ``retryPolicy`` (codes, attempts, exponential backoff; gRPC draws each wait uniformly below the
backoff and never waits past the call's deadline) and ``retryThrottling`` (a per-channel retry budget: every
failed attempt spends a token, every success earns ``token_ratio``, and retries stop while half the tokens or
fewer are left, so that an overloaded server is not hit by every client's full set of attempts).

What gRPC cannot do is change channels: :class:`Attempts` drives one call across the client's targets (replica
failover) the same way for the sync and the asyncio client::

    for attempt in Attempts(policy, timeout, first_target, len(targets)):
        time.sleep(attempt.delay)                      # await asyncio.sleep(...) in the asyncio client
        with attempt.guard():                          # RpcError: fail over (suppressed) or raise it translated
            return stubs[attempt.target].Generate(request, timeout=attempt.timeout())

All unary styleserve RPCs are safe to repeat (PutW and DeleteW are idempotent by content); gRPC retries a stream
only until the server has sent its first response (headers included), and the client fails a stream over to
another target only while it has delivered nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from ._errors import from_rpc_error

_DEFAULT_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
GRPC_MAX_ATTEMPTS = 5  # gRPC caps a retryPolicy's maxAttempts at 5.
MIN_BACKOFF_S = 0.01  # the shortest backoff given to gRPC
SERVICE = "styleserve.v1.StyleServe"
UNARY_METHODS = ("ListModels", "GetModel", "Map", "Synthesize", "Generate", "StyleMixGrid", "PutW", "GetW", "DeleteW")
"""The methods gRPC retries (not grpc.health.v1, and not StreamGenerate: a server-streaming call that gRPC retried
after its server died mid-stream was seen to hang in grpcio 1.85 until its deadline; streams are retried by the
client, from the first item not yet received, and by the batch job's own loop)."""


def _duration(seconds: float) -> str:
    """A backoff as a protobuf JSON Duration ("0.05s"), at least 10 ms: gRPC requires backoffs > 0, and with
    ~1 ms backoffs grpcio 1.85 was seen to leave a retried call hanging until its deadline."""
    return f"{max(seconds, MIN_BACKOFF_S):.9f}".rstrip("0").rstrip(".") + "s"


@dataclass(frozen=True)
class RetryPolicy:
    """How failed calls are retried: at most ``max_attempts`` attempts per target (1 = no retries).

    gRPC itself retries ``retry_codes`` on the same target, at most ``min(max_attempts, 5)`` attempts (gRPC's
    cap), waiting before attempt ``n + 1`` a random time below ``initial_backoff_s * multiplier ** (n - 1)``
    capped at ``max_backoff_s``, within the call's deadline, and only while the channel's retry budget
    (``max_tokens``, ``token_ratio``; ``max_tokens=None``: no budget) lasts. When a target's attempts fail with
    a retry code, the call fails over to the next target (each target once) after :meth:`backoff` seconds,
    ``initial_backoff_s * multiplier ** (n - 1)`` capped and spread by ``±jitter``, never past the deadline.
    """

    max_attempts: int = 4
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2
    retry_codes: tuple[grpc.StatusCode, ...] = _DEFAULT_CODES
    max_tokens: int | None = 50
    token_ratio: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        for name in ("initial_backoff_s", "max_backoff_s", "multiplier", "jitter", "token_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("initial_backoff_s and max_backoff_s must be >= 0")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter}")
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or not 0 < self.max_tokens <= 1000
        ):
            raise ValueError(f"max_tokens must be an integer in 1..1000 or None, got {self.max_tokens!r}")
        if not 0 < self.token_ratio <= 1000:
            raise ValueError(f"token_ratio must be in (0, 1000], got {self.token_ratio}")
        codes = tuple(self.retry_codes)
        for code in codes:
            if not isinstance(code, grpc.StatusCode):
                raise ValueError(f"retry_codes must be grpc.StatusCode values, got {code!r}")
        object.__setattr__(self, "retry_codes", codes)

    @classmethod
    def none(cls) -> RetryPolicy:
        """One attempt per call: no retries, no failover."""
        return cls(max_attempts=1)

    def backoff(self, attempt: int, rand: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before failing over to the next target.

        ``rand`` in [0, 1) places the jitter (0.5 = none); None draws it from ``random.random()``. With
        ``jitter=0`` the result is deterministic.
        """
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"attempt must be an integer >= 1, got {attempt!r}")
        # Cap the exponent so huge attempt numbers cannot overflow the float.
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** min(attempt - 1, 1000))
        if self.jitter:
            r = random.random() if rand is None else rand
            base *= 1.0 + self.jitter * (2.0 * r - 1.0)
        return max(0.0, min(self.max_backoff_s, base))

    def retries(self, code: grpc.StatusCode) -> bool:
        """Whether a failure with ``code`` is retried (attempts, budget and deadline permitting)."""
        return code in self.retry_codes

    def service_config(self) -> dict[str, Any]:
        """The gRPC service config (as JSON data) that makes a channel retry the styleserve RPCs by this policy."""
        config: dict[str, Any] = {}
        if self.max_attempts > 1 and self.retry_codes:
            config["methodConfig"] = [{
                "name": [{"service": SERVICE, "method": m} for m in UNARY_METHODS],
                "retryPolicy": {
                    "maxAttempts": min(self.max_attempts, GRPC_MAX_ATTEMPTS),
                    "initialBackoff": _duration(self.initial_backoff_s),
                    "maxBackoff": _duration(max(self.max_backoff_s, self.initial_backoff_s)),
                    "backoffMultiplier": self.multiplier,
                    "retryableStatusCodes": sorted({code.name for code in self.retry_codes}),
                },
            }]  # fmt: skip
            if self.max_tokens is not None:
                # gRPC keeps 3 decimals of tokenRatio.
                config["retryThrottling"] = {"maxTokens": self.max_tokens, "tokenRatio": round(self.token_ratio, 3)}
        return config

    def channel_options(self) -> list[tuple[str, Any]]:
        """gRPC channel options carrying :meth:`service_config` (retries enabled, or explicitly disabled)."""
        config = self.service_config()
        if not config:
            return [("grpc.enable_retries", 0)]
        return [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(config, separators=(",", ":")))]


class Attempts:
    """One call's attempts across the client's targets (gRPC retries within each); iterating yields itself.

    For each attempt: wait ``delay`` seconds, call ``target`` (an index into the client's targets; the first
    attempt goes to ``first_target``, each failover to the next, every target at most once; one attempt in all
    when the policy allows no retries) with ``timeout()``, return on success, and run the call inside
    :meth:`guard`, which either suppresses a ``grpc.RpcError`` that fails over (the loop goes on) or raises it
    as a :class:`StyleServeRpcError`. The loop ends only by the caller returning or :meth:`guard` raising.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        timeout: float | None,
        first_target: int,
        n_targets: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._first = first_target
        self._n = max(1, n_targets)
        self.limit = self._n if policy.max_attempts > 1 else 1
        self._timeout = timeout
        self.deadline = None if timeout is None else clock() + timeout
        self.number = 0  # 1-based once iterating
        self.target = first_target % self._n
        self.delay = 0.0
        self.received = False  # a stream sets it once an item arrived: then it is not retried

    def __iter__(self) -> Iterator[Attempts]:
        while self.number < self.limit:
            self.number += 1
            self.target = (self._first + self.number - 1) % self._n
            yield self
        raise AssertionError("guard() did not raise after the last attempt")  # pragma: no cover

    def timeout(self) -> float | None:
        """The per-attempt timeout: the call's timeout for the first attempt, then what is left of it."""
        return self._timeout if self.number <= 1 else self.left()

    def left(self) -> float | None:
        """Seconds left before the call's deadline (None = no deadline)."""
        return None if self.deadline is None else max(0.0, self.deadline - self._clock())

    def failed(self, exc: Any) -> None:
        """Record a failed attempt: set ``delay`` before failing over, or raise the translated error."""
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        if not self.received and self.number < self.limit and self.policy.retries(code):
            delay = self.policy.backoff(self.number)
            left = self.left()
            if left is None or delay < left:
                self.delay = delay
                return
        raise from_rpc_error(exc) from exc

    @contextlib.contextmanager
    def guard(self) -> Iterator[Attempts]:
        """Run one attempt: a ``grpc.RpcError`` goes to :meth:`failed` (suppressed when it fails over)."""
        try:
            yield self
        except grpc.RpcError as exc:
            self.failed(exc)
