"""Retries with exponential backoff, within a call's overall deadline, across the client's targets.

:class:`RetryPolicy` is the configuration (and a pure :meth:`RetryPolicy.backoff`); :class:`Attempts` drives one
call's attempts the same way for the sync and the asyncio client::

    for attempt in Attempts(policy, timeout, first_target, len(targets)):
        time.sleep(attempt.delay)                      # await asyncio.sleep(...) in the asyncio client
        with attempt.guard():                          # RpcError: retry (suppressed) or raise it translated
            return stubs[attempt.target].Generate(request, timeout=attempt.timeout())

All unary styleserve RPCs are safe to repeat (PutW and DeleteW are idempotent by content); a stream is retried
only while it has delivered nothing.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from ._errors import from_rpc_error

_DEFAULT_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


@dataclass(frozen=True)
class RetryPolicy:
    """How failed calls are retried: at most ``max_attempts`` attempts in all (1 = no retries).

    Before attempt ``n + 1`` the client waits :meth:`backoff` ``(n)`` seconds: ``initial_backoff_s`` times
    ``multiplier ** (n - 1)``, capped at ``max_backoff_s``, then spread by ``±jitter`` (a fraction). Only
    ``retry_codes`` are retried, each retry on the next target. A retry never waits past the call's deadline:
    when the wait would reach it, the last error is raised instead, and each attempt's timeout is the time left.
    """

    max_attempts: int = 4
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2
    retry_codes: tuple[grpc.StatusCode, ...] = _DEFAULT_CODES

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        for name in ("initial_backoff_s", "max_backoff_s", "multiplier", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("initial_backoff_s and max_backoff_s must be >= 0")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter}")
        codes = tuple(self.retry_codes)
        for code in codes:
            if not isinstance(code, grpc.StatusCode):
                raise ValueError(f"retry_codes must be grpc.StatusCode values, got {code!r}")
        object.__setattr__(self, "retry_codes", codes)

    @classmethod
    def none(cls) -> RetryPolicy:
        """One attempt per call: no retries."""
        return cls(max_attempts=1)

    def backoff(self, attempt: int, rand: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one.

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
        """Whether a failure with ``code`` is retried (attempts and deadline permitting)."""
        return code in self.retry_codes


class Attempts:
    """One call's attempts under a policy; iterating yields itself once per attempt.

    For each attempt: wait ``delay`` seconds, call ``target`` (an index into the client's targets; the first
    attempt goes to ``first_target``, each retry to the next) with ``timeout()``, return on success, and run the
    call inside :meth:`guard`, which either suppresses a retryable ``grpc.RpcError`` (the loop goes on) or raises
    it as a :class:`StyleServeRpcError`. The loop ends only by the caller returning or :meth:`guard` raising.
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
        self._timeout = timeout
        self.deadline = None if timeout is None else clock() + timeout
        self.number = 0  # 1-based once iterating
        self.target = first_target % self._n
        self.delay = 0.0
        self.received = False  # a stream sets it once an item arrived: then it is not retried

    def __iter__(self) -> Iterator[Attempts]:
        while self.number < self.policy.max_attempts:
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
        """Record a failed attempt: set ``delay`` for the next one, or raise the translated error."""
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        if not self.received and self.number < self.policy.max_attempts and self.policy.retries(code):
            delay = self.policy.backoff(self.number)
            left = self.left()
            if left is None or delay < left:
                self.delay = delay
                return
        raise from_rpc_error(exc) from exc

    @contextlib.contextmanager
    def guard(self) -> Iterator[Attempts]:
        """Run one attempt: a ``grpc.RpcError`` goes to :meth:`failed` (suppressed when it will be retried)."""
        try:
            yield self
        except grpc.RpcError as exc:
            self.failed(exc)
