"""The w cache's TTL sweep on an injected clock (no sleeping for the TTL), and its asyncio lifecycle."""

from __future__ import annotations

import asyncio

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from styleserve.server.metrics import Metrics
from styleserve.server.wcache import SWEEP_BATCH, WCache

MODEL = "m"
TTL = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sample(m: Metrics, name: str, **labels: str) -> float:
    value = m.registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


def w(i: int, rows: int = 1) -> np.ndarray:
    return np.full((rows, 4) if rows > 1 else (4,), i, np.float32)


def test_sweep_removes_only_expired_entries_and_the_gauges_fall() -> None:
    clock, m = Clock(), Metrics(CollectorRegistry())
    cache = WCache(10_000, TTL, metrics=m, clock=clock)
    for i in range(3):
        cache.put(f"k{i}", MODEL, w(i))
        clock.now += 1.0
    assert cache.get("k0", MODEL) is not None  # LRU order now k1, k2, k0; expiry order still k0, k1, k2.
    assert cache.sweep() == 0
    clock.now = TTL + 1.0  # k0 (put at 0) and k1 (put at 1) expired; k2 (put at 2) lives until 12.
    assert cache.sweep() == 2
    assert len(cache) == 1 and cache.get("k2", MODEL) is not None
    assert (sample(m, "styleserve_w_cache_entries"), sample(m, "styleserve_w_cache_bytes")) == (1, 16)
    assert sample(m, "styleserve_w_cache_evictions_total", reason="ttl") == 2
    cache.put("k2", MODEL, w(2))  # A new put restarts the entry's TTL.
    clock.now = 12.5
    assert cache.sweep() == 0
    clock.now = TTL + 11.0
    assert cache.sweep() == 1
    assert (len(cache), cache.nbytes, sample(m, "styleserve_w_cache_bytes")) == (0, 0, 0)
    assert sample(m, "styleserve_w_cache_evictions_total", reason="ttl") == 3


def test_sweep_work_per_tick_is_bounded() -> None:
    clock = Clock()
    cache = WCache(10**8, TTL, clock=clock)
    for i in range(SWEEP_BATCH + 5):
        cache.put(f"k{i}", MODEL, w(i))
    clock.now = TTL
    assert (cache.sweep(), cache.sweep(), cache.sweep()) == (SWEEP_BATCH, 5, 0)
    assert len(cache) == 0


def test_no_ttl_never_sweeps() -> None:
    clock = Clock()
    cache = WCache(10_000, 0, clock=clock)
    cache.put("k", MODEL, w(1))
    clock.now = 1e9
    assert cache.sweep() == 0 and cache.get("k", MODEL) is not None


Op = tuple[str, int, float]
OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "get", "delete", "advance", "sweep"]),
        st.integers(0, 7),  # key index, or the sweep limit
        st.floats(0.0, 2 * TTL, allow_nan=False),  # time step for "advance"
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, max_bytes=st.sampled_from([64, 200, 10_000]))
def test_sweep_agrees_with_a_model_of_the_cache(ops: list[Op], max_bytes: int) -> None:
    """Under any interleaving of puts (LRU size evictions included), lookups, deletes and time, a sweep of
    ``limit`` removes min(limit, expired) entries, the oldest first, and the gauges equal the contents."""
    clock, m = Clock(), Metrics(CollectorRegistry())
    cache = WCache(max_bytes, TTL, metrics=m, clock=clock)
    put_order: dict[str, int] = {}  # Ties in expiry time go in put order.
    for n, (op, k, dt) in enumerate(ops):
        key = f"k{k}"
        if op == "put":
            if cache.put(key, MODEL, w(k, rows=1 + k % 3)):
                put_order[key] = n
        elif op == "get":
            cache.get(key, MODEL)
        elif op == "delete":
            cache.delete(key, MODEL)
        elif op == "advance":
            clock.now += dt
        else:
            expires = sorted((e.expires_at or 0.0, put_order[key], key) for key, e in cache._entries.items())
            expired = [key for t, _, key in expires if t <= clock.now]
            assert cache.sweep(limit=k) == min(k, len(expired))
            assert not set(expired[:k]) & set(cache._entries)
            assert set(expired[k:]) <= set(cache._entries)
        assert cache.nbytes == sum(e.nbytes for e in cache._entries.values()) <= max_bytes
        assert sample(m, "styleserve_w_cache_bytes") == cache.nbytes
        assert sample(m, "styleserve_w_cache_entries") == len(cache)
    cache.sweep(limit=10**6)
    assert all((e.expires_at or 0.0) > clock.now for e in cache._entries.values())
    assert sample(m, "styleserve_w_cache_entries") == len(cache)


def test_the_sweeper_task_empties_the_cache_with_no_lookups() -> None:
    """Real time: TTL 50 ms, sweep every 10 ms; the cache must be empty within a generous 5 s, then close."""
    m = Metrics(CollectorRegistry())
    cache = WCache(10_000, 0.05, metrics=m, sweep_interval_s=0.01)

    async def main() -> None:
        cache.start()
        for i in range(5):
            cache.put(f"k{i}", MODEL, w(i))
        loop = asyncio.get_running_loop()
        end = loop.time() + 5.0
        while len(cache) and loop.time() < end:
            await asyncio.sleep(0.01)
        await cache.close()

    asyncio.run(main())
    assert (len(cache), sample(m, "styleserve_w_cache_entries"), sample(m, "styleserve_w_cache_bytes")) == (0, 0, 0)
    assert sample(m, "styleserve_w_cache_evictions_total", reason="ttl") == 5
    assert sample(m, "styleserve_w_cache_lookups_total", result="miss") == 0
