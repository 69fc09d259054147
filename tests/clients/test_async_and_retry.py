"""AsyncClient, gRPC's built-in retries and retry budget, client-side round-robin and failover, against real
server processes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from harness import ServerProcess
from styleserve.clients import (
    AsyncClient,
    Client,
    DeadlineExceededError,
    InvalidArgumentError,
    Noise,
    NotFoundError,
    Plan,
    ResourceExhaustedError,
    RetryPolicy,
    Source,
    Style,
    StyleServeRpcError,
    UnauthenticatedError,
    UnavailableError,
)
from styleserve.clients._retry import UNARY_METHODS, Attempts

COND, UNCOND = "tiny-cond", "tiny-uncond"
OVERLOAD_FLAGS = ("--max-batch-size", "1", "--max-queue-images", "1", "--max-queue-delay-ms", "0")


def dead_target() -> str:
    """A loopback port nothing listens on (bound, then closed): connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


def generates(s: ServerProcess, code: str) -> float:
    """Generate calls the server answered with ``code``, all models (every attempt gRPC makes reaches it)."""
    return sum(v for k, v in s.metrics().items() if k.startswith("styleserve_requests_total{")
               and f'code="{code}"' in k and 'method="Generate"' in k)  # fmt: skip


def ok_generates(s: ServerProcess) -> float:
    return generates(s, "OK")


# ------------------------------------------------------------------------------ RetryPolicy, Attempts (pure)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    p = RetryPolicy(initial_backoff_s=0.05, max_backoff_s=0.3, multiplier=2.0, jitter=0.0)
    assert [p.backoff(n) for n in range(1, 6)] == pytest.approx([0.05, 0.1, 0.2, 0.3, 0.3])
    assert p.backoff(10_000) == 0.3  # No overflow.
    j = dataclasses.replace(p, jitter=0.2)
    assert j.backoff(2, rand=0.0) == pytest.approx(0.08) and j.backoff(2, rand=0.5) == pytest.approx(0.1)
    assert j.backoff(2, rand=0.999999) == pytest.approx(0.12, abs=1e-6)
    assert j.backoff(4, rand=0.999999) == 0.3  # Jitter never passes the cap.
    assert all(0.08 <= j.backoff(2) <= 0.12 for _ in range(200))
    with pytest.raises(ValueError, match="attempt"):
        p.backoff(0)


def test_retry_policy_defaults_none_and_validation() -> None:
    d = RetryPolicy()
    assert (d.max_attempts, d.initial_backoff_s, d.max_backoff_s, d.multiplier, d.jitter) == (4, 0.05, 2.0, 2.0, 0.2)
    assert d.retry_codes == (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert d.retries(grpc.StatusCode.UNAVAILABLE) and not d.retries(grpc.StatusCode.DEADLINE_EXCEEDED)
    assert RetryPolicy.none().max_attempts == 1
    assert RetryPolicy(retry_codes=[grpc.StatusCode.UNAVAILABLE]).retry_codes == (grpc.StatusCode.UNAVAILABLE,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.max_attempts = 2  # type: ignore[misc]
    for bad in (
        dict(max_attempts=0),
        dict(max_attempts=1.5),
        dict(initial_backoff_s=-1),
        dict(max_backoff_s=float("inf")),
        dict(multiplier=0.5),
        dict(jitter=1.5),
        dict(retry_codes=("UNAVAILABLE",)),
    ):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry"):
        Client("127.0.0.1:1", retry=3)  # type: ignore[arg-type]


class FakeRpcError(grpc.RpcError):
    """What a failed attempt raises (the schedule reads only ``code()`` and ``details()``)."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "boom"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_attempts(attempts: Attempts, clock: FakeClock, codes: list[grpc.StatusCode]) -> list[tuple[int, float]]:
    """Fail one attempt per code (sleeping on the fake clock); returns (target, timeout) per attempt."""
    seen: list[tuple[int, float]] = []
    for attempt, code in zip(attempts, codes, strict=False):
        clock.now += attempt.delay
        seen.append((attempt.target, attempt.timeout() or 0.0))
        with attempt.guard():
            raise FakeRpcError(code)
    return seen


def test_attempts_fail_over_to_each_target_once() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=4, jitter=0.0)
    attempts = Attempts(policy, None, first_target=1, n_targets=3, clock=clock)
    with pytest.raises(UnavailableError) as e:
        run_attempts(attempts, clock, [grpc.StatusCode.UNAVAILABLE] * 10)
    # gRPC retries within a target; the client only fails over, each target once: 1, 2, 0.
    assert attempts.number == 3 and e.value.details == "boom"
    assert isinstance(e.value.__cause__, FakeRpcError)
    assert clock.now == pytest.approx(100.0 + 0.05 + 0.1)
    targets = []
    for attempt in Attempts(policy, None, first_target=1, n_targets=3, clock=clock):
        targets.append(attempt.target)
        with attempt.guard():
            if len(targets) < 3:
                raise FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED)
            break
    assert targets == [1, 2, 0]
    single = Attempts(policy, None, first_target=0, n_targets=1, clock=clock)
    with pytest.raises(ResourceExhaustedError):
        run_attempts(single, clock, [grpc.StatusCode.RESOURCE_EXHAUSTED] * 4)
    assert single.number == 1  # One target: gRPC's own retries are all there is.
    no_retry = Attempts(RetryPolicy.none(), None, first_target=0, n_targets=3, clock=clock)
    with pytest.raises(UnavailableError):
        run_attempts(no_retry, clock, [grpc.StatusCode.UNAVAILABLE] * 4)
    assert no_retry.number == 1  # No retries: no failover either.


def test_attempts_never_sleep_past_the_deadline() -> None:
    clock = FakeClock()
    attempts = Attempts(RetryPolicy(max_attempts=5, jitter=0.0), 0.2, first_target=0, n_targets=100, clock=clock)
    with pytest.raises(UnavailableError):
        run_attempts(attempts, clock, [grpc.StatusCode.UNAVAILABLE] * 100)
    # Attempts at 0 and 0.05 (after 0.05); the next wait (0.1) would end at 0.15 < 0.2: a third attempt at
    # 0.15 with 0.05 left; the wait after it (0.2) would pass the deadline, so the error is raised then.
    assert attempts.number == 3
    assert clock.now - 100.0 == pytest.approx(0.15)
    assert attempts.timeout() == pytest.approx(0.05)


def test_service_config_from_the_policy() -> None:
    assert RetryPolicy().service_config() == {
        "methodConfig": [{
            "name": [{"service": "styleserve.v1.StyleServe", "method": m} for m in UNARY_METHODS],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.05s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2.0,
                "retryableStatusCodes": ["RESOURCE_EXHAUSTED", "UNAVAILABLE"],
            },
        }],
        "retryThrottling": {"maxTokens": 50, "tokenRatio": 0.1},
    }  # fmt: skip
    capped = RetryPolicy(max_attempts=1000, initial_backoff_s=0, max_backoff_s=0, max_tokens=None)
    retry = capped.service_config()["methodConfig"][0]["retryPolicy"]
    assert retry["maxAttempts"] == 5 and retry["initialBackoff"] == retry["maxBackoff"] == "0.01s"
    assert "retryThrottling" not in capped.service_config()
    options = dict(RetryPolicy(max_tokens=1000, token_ratio=0.25).channel_options())
    assert options["grpc.enable_retries"] == 1
    assert json.loads(options["grpc.service_config"])["retryThrottling"] == {"maxTokens": 1000, "tokenRatio": 0.25}
    # StreamGenerate is left to the client's own failover and the batch job's loop: a server-streaming call that
    # gRPC retried after its server died mid-stream hung until its deadline (test_batch's restart test).
    assert "StreamGenerate" not in UNARY_METHODS and len(UNARY_METHODS) == 9
    for off in (RetryPolicy.none(), RetryPolicy(retry_codes=())):
        assert off.service_config() == {} and off.channel_options() == [("grpc.enable_retries", 0)]
    for bad in (dict(max_tokens=0), dict(max_tokens=1001), dict(max_tokens=2.5), dict(token_ratio=0)):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)  # type: ignore[arg-type]


def test_attempts_do_not_retry_other_codes_or_started_streams() -> None:
    clock = FakeClock()
    for code, exc_type in (
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
    ):
        attempts = Attempts(RetryPolicy(), None, 0, 2, clock=clock)
        with pytest.raises(exc_type):
            run_attempts(attempts, clock, [code] * 4)
        assert attempts.number == 1
    attempts = Attempts(RetryPolicy(), None, 0, 2, clock=clock)
    with pytest.raises(UnavailableError):
        for attempt in attempts:
            with attempt.guard():
                attempt.received = True
                raise FakeRpcError(grpc.StatusCode.UNAVAILABLE)
    assert attempts.number == 1


def test_client_targets() -> None:
    with Client("a:1, b:2,") as c:
        assert c.targets == ("a:1", "b:2") and c.target == "a:1, b:2,"
    with Client(["a:1", "b:2"], retry=RetryPolicy.none()) as c:
        assert c.target == "a:1,b:2" and c.retry.max_attempts == 1 and repr(c) == "Client('a:1,b:2')"
    assert AsyncClient("a:1").retry == RetryPolicy() and AsyncClient("a:1").timeout == 60.0
    for bad in ("", " , ", []):
        with pytest.raises(ValueError, match="no target"):
            Client(bad)
    with pytest.raises(ValueError, match="one target"):
        Client("a:1,b:2", channel=grpc.insecure_channel("a:1"))


# ------------------------------------------------------------------------------ AsyncClient


def test_async_client_round_trip(server: ServerProcess) -> None:
    client = AsyncClient(server.target)  # Built outside the event loop: channels open at the first call.

    async def main() -> None:
        async with client as c:
            assert await c.health() == "SERVING" and await c.wait_until_serving(5) == "SERVING"
            assert [m.name for m in await c.list_models()] == [COND, UNCOND]
            assert (await c.get_model(COND)).num_classes == 10

            imgs = await c.generate(COND, [3, 4], class_index=2, psi=0.7, format="raw_float32", return_ws=True)
            assert imgs[0].to_array().shape == (3, 32, 32) and imgs[0].ws is not None
            png = (await c.generate(COND, [3], class_index=2, psi=0.7))[0]
            with Client(server.target) as sync:
                assert sync.generate(COND, [3], class_index=2, psi=0.7)[0].data == png.data
            pil = png.to_pil()
            assert pil.size == (32, 32) and pil.mode == "RGB"
            assert np.array_equal(np.asarray(pil), png.to_array())
            assert np.array_equal(np.asarray(imgs[0].to_pil()), png.to_array())  # raw_float32 -> uint8 as served

            mapped = await c.map(COND, seeds=[3], class_index=2, psi=0.7, cache=True)
            w_id = mapped[0].w_id
            assert w_id and mapped[0].w is not None and np.allclose(mapped[0].w, imgs[0].ws[0], atol=1e-6)
            other = await c.put_w(COND, np.zeros(32, np.float32))
            plan = Plan([Style(Source.from_w_id(w_id)), Style(Source.from_w_id(other), start=0, stop=2)])
            (mixed,) = await c.synthesize(COND, [plan], format="raw_float32", return_ws=True)
            assert mixed.ws is not None
            assert np.array_equal(mixed.ws[:2], np.zeros((2, 32))) and np.array_equal(mixed.ws[2:], imgs[0].ws[2:])
            assert np.array_equal(await c.get_w(COND, other), np.zeros(32))
            assert await c.delete_w(COND, other) and not await c.delete_w(COND, other)

            grid = await c.style_mix_grid(COND, [Source.from_seed(1, 0), Source.from_seed(2, 0)],
                                          [Source.from_seed(3, 1)], col_styles=[0, 1])  # fmt: skip
            assert len(grid.cells) == 2 and grid.grid is not None and grid.grid.to_array().shape == (96, 64, 3)

            stream = c.stream_generate(UNCOND, range(10, 30), noise=Noise("random", 5), format="raw_uint8")
            items = [item async for item in stream]
            assert [i.index for i in items] == list(range(20)) and [i.seed for i in items] == list(range(10, 30))
            gray = items[0].image.to_pil()
            assert gray.mode == "L" and gray.size == (16, 16)

            early = c.stream_generate(UNCOND, range(0, 100_000), format="raw_uint8")
            assert (await early.__anext__()).seed == 0
            await early.aclose()  # type: ignore[attr-defined]  # Cancels the call.

            with pytest.raises(InvalidArgumentError) as e:
                await c.generate(COND, [1], class_index=99)
            assert e.value.field == "class_index"
            with pytest.raises(NotFoundError):
                await c.get_w(COND, "w_does_not_exist")
            with pytest.raises(ValueError, match="exactly one"):
                c.stream_generate(UNCOND)  # Checked at the call, before any iteration.
        with pytest.raises(ValueError, match="closed"):
            await client.list_models()
        await client.close()  # Idempotent.

    asyncio.run(main())


# ------------------------------------------------------------------------------ round-robin and failover


def test_round_robin_over_two_replicas(start_server: Callable[..., ServerProcess], repo: Path) -> None:
    a, b = start_server(repo), start_server(repo)
    with Client([a.target, b.target]) as c:
        for seed in range(10):
            assert len(c.generate(UNCOND, [seed])) == 1
        assert c.health() == "SERVING"
    assert (ok_generates(a), ok_generates(b)) == (5, 5)

    async def main() -> None:
        async with AsyncClient(f"{a.target},{b.target}") as c:
            results = await asyncio.gather(*(c.generate(UNCOND, [seed]) for seed in range(6)))
            assert all(len(r) == 1 for r in results)

    asyncio.run(main())
    assert (ok_generates(a), ok_generates(b)) == (8, 8)


def test_failover_from_a_dead_target(server: ServerProcess) -> None:
    dead = dead_target()
    before = ok_generates(server)
    with Client([dead, server.target], timeout=30) as c:
        for seed in range(6):  # Half the calls start on the dead target and are retried on the live one.
            assert c.generate(UNCOND, [seed])[0].to_array().shape == (16, 16, 1)
        items = list(c.stream_generate(UNCOND, range(5), format="raw_uint8"))
        assert [i.seed for i in items] == list(range(5))
        assert c.health() == "SERVING"
    assert ok_generates(server) - before == 6

    with Client([dead, server.target], retry=RetryPolicy.none()) as c:
        with pytest.raises(UnavailableError):
            c.generate(UNCOND, [0])  # The first call goes to the first target; no retry.
        assert len(c.generate(UNCOND, [0])) == 1
    with Client(dead) as c:
        assert c.health() == "UNREACHABLE"

    async def main() -> None:
        async with AsyncClient([dead, server.target]) as c:
            for seed in range(4):
                assert len(await c.generate(UNCOND, [seed])) == 1
            assert [i.seed async for i in c.stream_generate(UNCOND, range(3))] == [0, 1, 2]
            assert await c.health() == "SERVING"

    asyncio.run(main())


def test_started_stream_is_not_retried(start_server: Callable[..., ServerProcess], repo: Path, server: ServerProcess
                                       ) -> None:  # fmt: skip
    doomed = start_server(repo)
    with Client([doomed.target, server.target]) as c:
        stream = c.stream_generate(UNCOND, range(0, 1_000_000), format="raw_uint8")
        first = next(stream)
        assert first.index == 0
        doomed.proc.kill()
        with pytest.raises(StyleServeRpcError):  # Not restarted on the live target: images would repeat.
            for item in stream:
                assert item.index > 0


def test_deadline_bounds_the_retries() -> None:
    dead = dead_target()
    # Waits that alone would add up to seconds: gRPC never waits past the call's deadline (0.5 s).
    policy = RetryPolicy(max_attempts=1000, initial_backoff_s=0.5, max_backoff_s=5.0, max_tokens=None)
    with Client(dead, timeout=0.5, retry=policy) as c:
        t0 = time.monotonic()
        with pytest.raises((UnavailableError, DeadlineExceededError)):
            c.generate(UNCOND, [0])
        elapsed = time.monotonic() - t0
    assert elapsed < 3.0, elapsed  # Generous bound for a loaded machine; the waits alone could reach 11.5 s.

    async def main() -> float:
        async with AsyncClient(dead, timeout=0.5, retry=policy) as ac:
            t0 = time.monotonic()
            with pytest.raises((UnavailableError, DeadlineExceededError)):
                await ac.list_models()
            return time.monotonic() - t0

    assert asyncio.run(main()) < 3.0


# ------------------------------------------------------------------------------ gRPC's built-in retries


def unavailable_generates(s: ServerProcess, expected: float | None = None) -> float:
    """The count, once it reaches ``expected`` (within 5 s) or, without one, once it holds still: the server counts
    a request just after answering it, so the client can see the answer before the count moves."""
    value = generates(s, "UNAVAILABLE")
    end = time.monotonic() + 5.0
    while time.monotonic() < end:
        time.sleep(0.05)
        previous, value = value, generates(s, "UNAVAILABLE")
        if (expected is None and value == previous) or value == expected:
            break
    return value


def test_builtin_retries_and_the_retry_budget(start_server: Callable[..., ServerProcess], repo: Path) -> None:
    """A draining server answers every call UNAVAILABLE: its metrics count the attempts gRPC made."""
    s = start_server(repo, "--drain-delay-s", "60", "--grace-s", "0")
    s.proc.send_signal(signal.SIGTERM)
    end = time.monotonic() + 30
    while s.health() == 1 and time.monotonic() < end:  # 1 = SERVING
        time.sleep(0.05)
    try:
        fast = dict(initial_backoff_s=0.01, max_backoff_s=0.05)
        for policy, calls, attempts in (
            (RetryPolicy.none(), 2, 2),
            (RetryPolicy(max_attempts=4, max_tokens=None, **fast), 2, 8),  # type: ignore[arg-type]
            (RetryPolicy(max_attempts=1000, max_tokens=None, **fast), 1, 5),  # type: ignore[arg-type]  # gRPC's cap
            # The budget: 4 tokens, retries only while more than 2 are left; each failed attempt spends one.
            # Call 1: 4 -> 3 (retry) -> 2 (no more); calls 2-5: one attempt each, the budget spent.
            (RetryPolicy(max_attempts=5, max_tokens=4, **fast), 5, 2 + 4),  # type: ignore[arg-type]
        ):
            before = unavailable_generates(s)
            with Client(s.target, retry=policy, timeout=10) as c:
                for _ in range(calls):
                    with pytest.raises(UnavailableError):
                        c.generate(UNCOND, [0])
            assert unavailable_generates(s, before + attempts) - before == attempts, policy

        async def main() -> None:
            async with AsyncClient(s.target, retry=RetryPolicy(max_attempts=3, max_tokens=None, **fast)) as c:
                with pytest.raises(UnavailableError):
                    await c.generate(UNCOND, [0])

        before = unavailable_generates(s)
        asyncio.run(main())
        assert unavailable_generates(s, before + 3) - before == 3
    finally:
        s.proc.kill()  # Rather than wait out the drain delay.


# ------------------------------------------------------------------------------ RESOURCE_EXHAUSTED


def burst(target: str, retry: RetryPolicy, threads: int = 24) -> list[Any]:
    """``threads`` concurrent 4-image Generate calls, released together; returns each result or exception."""
    results: list[Any] = [None] * threads
    barrier = threading.Barrier(threads)

    with Client(target, retry=retry, timeout=60) as c:

        def work(i: int) -> None:
            barrier.wait()
            try:
                results[i] = c.generate(UNCOND, range(4 * i, 4 * i + 4), format="raw_uint8")
            except StyleServeRpcError as exc:
                results[i] = exc

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return results


def test_resource_exhausted_is_retried(start_server: Callable[..., ServerProcess], repo: Path) -> None:
    s = start_server(repo, *OVERLOAD_FLAGS)
    rejected = 'styleserve_rejected_total{model="tiny-uncond"}'

    no_retry = []
    for _ in range(5):  # Timing-dependent: a burst that happens to fit is tried again.
        no_retry = burst(s.target, RetryPolicy.none())
        if any(isinstance(r, ResourceExhaustedError) for r in no_retry):
            break
    assert any(isinstance(r, ResourceExhaustedError) for r in no_retry), no_retry
    assert all(isinstance(r, (list, ResourceExhaustedError)) for r in no_retry), no_retry

    # gRPC makes at most 5 attempts; without a retry budget and with waits drawn below 0.2 s .. 1.6 s (about 1.5 s
    # in all on average) they span far more than a burst of 12 calls takes to serve (a 24-call burst with waits
    # below 0.05 .. 1 s sometimes ran out of attempts on the loaded 2-core CI box).
    patient = RetryPolicy(max_attempts=5, initial_backoff_s=0.2, max_backoff_s=2.0, max_tokens=None)
    for _ in range(5):
        before = s.metrics().get(rejected, 0.0)
        results = burst(s.target, patient, threads=12)
        assert all(isinstance(r, list) and len(r) == 4 for r in results), results
        if s.metrics().get(rejected, 0.0) > before:  # Some attempts were refused and retried.
            break
    else:
        pytest.fail("no attempt was refused in 5 bursts: the retries were not exercised")
    expected = np.stack([img.to_array() for img in results[3]])
    with Client(s.target) as c:
        again = np.stack([img.to_array() for img in c.generate(UNCOND, range(12, 16), format="raw_uint8")])
    assert np.array_equal(expected, again)


# ------------------------------------------------------------------------------ TLS and token


def test_tls_and_token_with_both_clients(
    start_server: Callable[..., ServerProcess], repo: Path, tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
    san = ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run([*openssl.split(), *san], check=True, capture_output=True)
    s = start_server(repo, "--tls-cert", str(cert), "--tls-key", str(key), wait=False,
                     env={"STYLESERVE_AUTH_TOKEN": "t0ken"})  # fmt: skip
    s.credentials = grpc.ssl_channel_credentials(cert.read_bytes())
    s.wait_serving()
    root = cert.read_bytes()
    with Client(s.target, root_certificates=root, token="t0ken") as c:
        assert c.health() == "SERVING" and len(c.generate(UNCOND, [1])) == 1
    plain = Client(s.target, tls=False, token="t0ken", retry=RetryPolicy(max_attempts=2))
    with plain, pytest.raises(UnavailableError):  # Plain text to a TLS port.
        plain.list_models()

    async def main() -> None:
        async with AsyncClient(s.target, tls=True, root_certificates=root, token="t0ken") as c:
            assert await c.health() == "SERVING" and len(await c.generate(UNCOND, [1])) == 1
        async with AsyncClient(s.target, root_certificates=root) as anonymous:
            with pytest.raises(UnauthenticatedError):
                await anonymous.list_models()

    asyncio.run(main())


def test_one_name_with_several_addresses_is_balanced(start_server: Callable[..., ServerProcess], repo: Path) -> None:
    """A target resolving to several addresses (a headless Service via dns:///) spreads calls: round_robin."""
    a, b = start_server(repo), start_server(repo)
    with Client([f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"]) as c:
        for i in range(10):
            c.generate("tiny-uncond", [i], format="raw_uint8")
    counts = (ok_generates(a), ok_generates(b))
    assert sum(counts) == 10 and min(counts) >= 3, counts
