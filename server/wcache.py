"""The w cache: content-keyed w / w+ vectors, bounded in bytes (LRU) with an optional TTL.

Keys are derived from content, so the same seed, class and model (or the same uploaded bytes) always
get the same id and repeated seeds skip the mapping network. Entries are read-only arrays.
"""

from __future__ import annotations

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
    ) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s if ttl_s and ttl_s > 0 else None
        self._clock = clock
        self._metrics = metrics
        self._entries: OrderedDict[str, Entry] = OrderedDict()
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
        expires = self._clock() + self.ttl_s if self.ttl_s is not None else None
        with self._lock:
            if key in self._entries:
                self._remove(key, None)
            self._entries[key] = Entry(model, arr, expires)
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

    def _remove(self, key: str, reason: str | None) -> None:
        entry = self._entries.pop(key)
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
