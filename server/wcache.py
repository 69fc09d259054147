"""The w cache: content-keyed w / w+ vectors, bounded in bytes (LRU) with an optional TTL.

Keys are derived from content, so the same seed, class and model (or the same uploaded bytes) always
get the same id and repeated seeds skip the mapping network. Entries are read-only arrays.

With a TTL, expired entries go without waiting for a lookup of their key: :meth:`WCache.sweep` removes
them (counted as ``ttl`` evictions; the size gauges fall with them), and :meth:`WCache.start` runs it on
the event loop every ``sweep_interval_s``. Every entry lives the same TTL from its last put, so the
expiry index (kept in put order, apart from the LRU order) is also in expiry order: a sweep pops from its
front and stops at the first live entry, at most ``SWEEP_BATCH`` entries per tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .metrics import Metrics

F32 = npt.NDArray[np.float32]

ID_PREFIX = "w_"
SWEEP_BATCH = 1024  # Entries one sweep tick removes at most (the lock is held that long); more: next tick at once.


def content_key(model: str, kind: str, *parts: bytes | str | int | float | None) -> str:
    """A stable id for ``parts`` under ``model``: ``w_`` + 32 hex digits of a SHA-256."""
    h = hashlib.sha256()
    for part in (model, kind, *parts):
        if part is None:
            b = b"\x00"
        elif isinstance(part, bytes):
            b = b"b" + part
        elif isinstance(part, str):
            b = b"s" + part.encode()
        elif isinstance(part, int):
            b = b"i" + str(part).encode()
        else:
            b = b"f" + struct.pack("<d", float(part))
        h.update(struct.pack("<Q", len(b)) + b)
    return ID_PREFIX + h.hexdigest()[:32]


@dataclass(frozen=True)
class Entry:
    model: str
    w: F32  # [w_dim] or [num_ws, w_dim], read-only.
    expires_at: float | None

    @property
    def nbytes(self) -> int:
        return int(self.w.nbytes)


class WCache:
    """LRU by bytes; ``max_bytes == 0`` disables caching. Thread-safe."""

    def __init__(
        self,
        max_bytes: int,
        ttl_s: float | None = None,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        sweep_interval_s: float | None = None,
    ) -> None:
        """``sweep_interval_s``: the period of the TTL sweep, by default a quarter of the TTL within 10 ms .. 1 s."""
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s if ttl_s and ttl_s > 0 else None
        ttl = self.ttl_s or 0.0
        self.sweep_interval_s = sweep_interval_s if sweep_interval_s is not None else min(1.0, max(0.01, ttl / 4))
        self._clock = clock
        self._metrics = metrics
        self._entries: OrderedDict[str, Entry] = OrderedDict()  # LRU order.
        self._expiry: OrderedDict[str, float] = OrderedDict()  # key -> expires_at, in put (= expiry) order.
        self._sweeper: asyncio.Task[None] | None = None
        self._bytes = 0
        self._lock = threading.Lock()
        if metrics is not None:
            metrics.cache_capacity_bytes.set(max_bytes)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, model: str) -> F32 | None:
        """The entry's array, or None (unknown, expired, or stored for another model)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at is not None and self._clock() >= entry.expires_at:
                self._remove(key, "ttl")
                entry = None
            if entry is None or entry.model != model:
                self._count("miss")
                return None
            self._entries.move_to_end(key)
            self._count("hit")
            return entry.w

    def put(self, key: str, model: str, w: F32) -> bool:
        """Store ``w`` under ``key``; False when it is larger than the whole cache."""
        arr = np.array(w, dtype=np.float32, copy=True)
        arr.setflags(write=False)
        if arr.nbytes > self.max_bytes:
            return False
        with self._lock:
            expires = self._clock() + self.ttl_s if self.ttl_s is not None else None
            if key in self._entries:
                self._remove(key, None)
            self._entries[key] = Entry(model, arr, expires)
            if expires is not None:
                self._expiry[key] = expires
            self._bytes += arr.nbytes
            while self._bytes > self.max_bytes:
                self._remove(next(iter(self._entries)), "size")
            self._gauge()
        return True

    def delete(self, key: str, model: str) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.model != model:
                return False
            self._remove(key, None)
            self._gauge()
            return True

    def sweep(self, limit: int = SWEEP_BATCH) -> int:
        """Remove up to ``limit`` expired entries (the oldest first); the number removed."""
        removed = 0
        with self._lock:
            now = self._clock()
            while removed < limit and self._expiry:
                key, expires = next(iter(self._expiry.items()))
                if expires > now:
                    break
                self._remove(key, "ttl")
                removed += 1
            if removed:
                self._gauge()
        return removed

    def start(self) -> None:
        """Sweep expired entries on the running loop until :meth:`close` (nothing to do without a TTL)."""
        if self.ttl_s is not None and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(), name="w-cache-sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_loop(self) -> None:
        while True:
            full = self.sweep() >= SWEEP_BATCH
            await asyncio.sleep(0 if full else self.sweep_interval_s)  # A full tick: more may be due; yield first.

    def _remove(self, key: str, reason: str | None) -> None:
        entry = self._entries.pop(key)
        self._expiry.pop(key, None)
        self._bytes -= entry.nbytes
        if reason is not None and self._metrics is not None:
            self._metrics.cache_evictions.labels(reason).inc()

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.cache_lookups.labels(result).inc()
        self._gauge()

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.cache_bytes.set(self._bytes)
            self._metrics.cache_entries.set(len(self._entries))
