"""Hostile but well-formed requests, and bodies that are not requests at all, against one real server.

Every answer is a documented status (INVALID_ARGUMENT naming the field, NOT_FOUND, ...), never INTERNAL
or UNKNOWN, with details of at most ``MAX_DETAILS_CHARS``; the work and memory a request causes follow
what validation allows, not what the request claims; refused calls cost nothing.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from styleserve.server.status import MAX_DETAILS_CHARS

from styleserve.v1 import styleserve_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ServerProcess

COND, UNCOND = "tiny-cond", "tiny-uncond"
NUM_WS, W_DIM, Z_DIM = 8, 32, 32  # tiny-cond; tiny-uncond has 16 px and fewer ws
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FIELD = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*: ")
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
METHODS = ["ListModels", "GetModel", "Map", "Synthesize", "Generate", "StyleMixGrid", "PutW", "GetW", "DeleteW"]
MiB = 2**20


def call(server: ServerProcess, method: str, request: Any, timeout: float = 20) -> tuple[grpc.StatusCode, str]:
    try:
        getattr(server.stub(), method)(request, timeout=timeout)
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


def check_answer(code: grpc.StatusCode, details: str) -> None:
    assert code in DOCUMENTED, (code, details[:300])
    assert len(details) <= MAX_DETAILS_CHARS, len(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert FIELD.match(details), details[:300]


def rss_kib(server: ServerProcess) -> int:
    text = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1))  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def authed(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(
        repo, log_dir=tmp_path_factory.mktemp("log"), env={"STYLESERVE_AUTH_TOKEN": "s3cret-token"}
    ).wait_serving()
    yield s
    assert s.stop() == 0, s.log()


# --------------------------------------------------------------------------------- strategies

floats = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.sampled_from([1e30, -1e30, 1e3, 1001.0])
names = st.sampled_from([COND, UNCOND, "", "nope"]) | st.text(max_size=300) | st.integers(1, 2_000_000).map("m".__mul__)


@st.composite
def tensors(draw: st.DrawFn) -> pb.Tensor:
    shape = draw(
        st.sampled_from([[W_DIM], [NUM_WS, W_DIM], [Z_DIM], []])
        | st.lists(st.integers(0, 2**32 - 1), max_size=2000)
        | st.lists(st.integers(0, 40), max_size=4)
    )
    n = int(np.prod(shape, dtype=np.float64)) if shape else 1
    fill = draw(floats)
    nbytes = draw(st.sampled_from([4 * n, 4 * n - 1, 4 * n + 4, 0, 7])) if n < 100_000 else draw(st.integers(0, 64))
    data = np.full(max(nbytes, 0) // 4 + 1, fill, "<f4").tobytes()[: max(nbytes, 0)]
    return pb.Tensor(shape=shape, data=data)


layer_lists = st.lists(st.integers(0, 2 * NUM_WS), max_size=40) | st.sampled_from(
    [list(range(NUM_WS)) * 3, [0, 0], [2**32 - 1]]
)
truncations = st.builds(
    lambda psi, cutoff: pb.Truncation(
        **({} if psi is None else {"psi": psi}), **({} if cutoff is None else {"cutoff": cutoff})
    ),
    st.none() | floats,
    st.none() | st.integers(0, 2**32 - 1),
)
noises = st.builds(
    lambda mode, seed, strength: pb.NoiseControl(mode=mode, noise_seed=seed, strength=strength),
    st.sampled_from(["", "const", "none", "random"]) | st.text(max_size=100) | st.just("x" * 100_000),
    st.integers(0, 2**64 - 1),
    st.lists(floats, max_size=30),
)


@st.composite
def sources(draw: st.DrawFn) -> pb.StyleSource:
    kind = draw(st.sampled_from(["w_id", "w", "w_plus", "seed", "none"]))
    if kind == "w_id":
        return pb.StyleSource(w_id=draw(st.text(max_size=80) | st.just("w_" + "0" * 200_000)))
    if kind in ("w", "w_plus"):
        return pb.StyleSource(**{kind: draw(tensors())})
    if kind == "seed":
        sd = pb.SeedSource(seed=draw(st.integers(0, 2**64 - 1)), truncation=draw(truncations))
        if draw(st.booleans()):
            sd.class_index = draw(st.integers(0, 2**32 - 1))
        return pb.StyleSource(seed=sd)
    return pb.StyleSource()


@st.composite
def layer_styles(draw: st.DrawFn) -> pb.LayerStyle:
    ls = pb.LayerStyle(layers=draw(layer_lists), source=draw(sources()))
    if draw(st.booleans()):
        ls.start = draw(st.integers(0, 2 * NUM_WS))
    if draw(st.booleans()):
        ls.stop = draw(st.integers(0, 2 * NUM_WS))
    return ls


plans = st.builds(
    lambda styles, noise: pb.StylePlan(styles=styles, noise=noise),
    st.lists(layer_styles(), max_size=12),
    noises,
)
outputs = st.builds(
    lambda fmt, q: pb.OutputOptions(format=fmt, **({} if q is None else {"jpeg_quality": q})),
    st.integers(0, 6),
    st.none() | st.integers(0, 2**32 - 1),
)


# ----------------------------------------------------------------------------------- properties


@SETTINGS
@given(model=st.sampled_from([COND, COND, UNCOND]) | names, plans=st.lists(plans, max_size=4), output=outputs)
def test_hostile_synthesize(server: ServerProcess, model: str, plans: list[pb.StylePlan], output: Any) -> None:
    check_answer(*call(server, "Synthesize", pb.SynthesizeRequest(model=model, plans=plans, output=output)))


@SETTINGS
@given(
    model=st.sampled_from([COND, UNCOND]) | names,
    seeds=st.lists(st.integers(0, 2**64 - 1), max_size=80),
    cls=st.none() | st.integers(0, 2**32 - 1),
    truncation=truncations,
    noise=noises,
    output=outputs,
)
def test_hostile_generate(
    server: ServerProcess, model: str, seeds: list[int], cls: int | None, truncation: Any, noise: Any, output: Any
) -> None:
    req = pb.GenerateRequest(model=model, seeds=seeds, truncation=truncation, noise=noise, output=output)
    if cls is not None:
        req.class_index = cls
    check_answer(*call(server, "Generate", req))


@SETTINGS
@given(
    rows=st.lists(sources(), max_size=4),
    cols=st.lists(sources(), max_size=4),
    col_styles=layer_lists,
    compose=st.booleans(),
    noise=noises,
)
def test_hostile_grid(
    server: ServerProcess, rows: Any, cols: Any, col_styles: list[int], compose: bool, noise: Any
) -> None:
    req = pb.StyleMixGridRequest(model=COND, rows=rows, cols=cols, col_styles=col_styles, compose=compose, noise=noise)
    check_answer(*call(server, "StyleMixGrid", req))


@SETTINGS
@given(model=st.sampled_from([COND]) | names, w=tensors(), w_id=st.text(max_size=100), z=tensors())
def test_hostile_w_cache_and_map(server: ServerProcess, model: str, w: pb.Tensor, w_id: str, z: pb.Tensor) -> None:
    check_answer(*call(server, "PutW", pb.PutWRequest(model=model, w=w)))
    check_answer(*call(server, "GetW", pb.GetWRequest(model=model, w_id=w_id)))
    check_answer(*call(server, "DeleteW", pb.DeleteWRequest(model=model, w_id=w_id)))
    req = pb.MapRequest(model=model, latents=[pb.Latent(z=z), pb.Latent(seed=3, class_index=1)], return_w=True)
    check_answer(*call(server, "Map", req))


@SETTINGS
@given(method=st.sampled_from(METHODS), body=st.binary(max_size=300))
def test_garbage_bodies(server: ServerProcess, method: str, body: bytes) -> None:
    """Random bytes sent as a request body: INVALID_ARGUMENT when they do not parse, a documented code otherwise."""
    raw = server.channel().unary_unary(f"/styleserve.v1.StyleServe/{method}")
    try:
        raw(body, timeout=20)
        code, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        code, details = e.code(), e.details() or ""
    check_answer(code, details)


# ----------------------------------------------------------------------------- named regressions


def test_four_million_repeated_layers_are_refused_fast(server: ServerProcess) -> None:
    """A 4 MB Synthesize of 4M repeated layer indices: INVALID_ARGUMENT naming the field, quickly, without
    the memory it used to cost (1.1 GB of RSS and a 3-4 s stall before the fix). Bounds: 5 s, 200 MB."""
    style = pb.LayerStyle(layers=[1] * 4_000_000, source=pb.StyleSource(seed=pb.SeedSource(seed=1, class_index=0)))
    req = pb.SynthesizeRequest(model=COND, plans=[pb.StylePlan(styles=[style])])
    before = rss_kib(server)
    t0 = time.monotonic()
    code, details = call(server, "Synthesize", req)
    took = time.monotonic() - t0
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("plans[0].styles[0].layers:"), details
    assert took < 5.0
    grown = rss_kib(server) - before
    print(f"4M repeated layers: {took:.2f} s, server RSS growth {grown} KiB")
    assert grown < 200 * 1024
    grid = pb.StyleMixGridRequest(
        model=UNCOND, rows=[pb.StyleSource(seed=pb.SeedSource(seed=1))], col_styles=[0] * 400_000
    )
    grid.cols.add().seed.seed = 2
    code, details = call(server, "StyleMixGrid", grid)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("col_styles:"), details
    grid.col_styles.extend([0] * 3_600_000)  # 4 MB: over StyleMixGrid's body cap, refused before parsing.
    code, details = call(server, "StyleMixGrid", grid)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("request: a "), details


@pytest.mark.parametrize(
    ("method", "request_", "code", "field"),
    [
        ("GetModel", pb.GetModelRequest(model="m" * 1_000_000), grpc.StatusCode.INVALID_ARGUMENT, "model"),
        ("GetModel", pb.GetModelRequest(model="m" * 200), grpc.StatusCode.NOT_FOUND, "model"),
        ("GetW", pb.GetWRequest(model=COND, w_id="w" * 1_000_000), grpc.StatusCode.INVALID_ARGUMENT, "w_id"),
        ("GetW", pb.GetWRequest(model=COND, w_id="w_" + "f" * 60), grpc.StatusCode.NOT_FOUND, "w_id"),
        ("PutW", pb.PutWRequest(model=COND, w=pb.Tensor(shape=[2**32 - 1] * 1250)), grpc.StatusCode.INVALID_ARGUMENT,
         "w.shape"),
        ("Generate", pb.GenerateRequest(model=UNCOND, seeds=[1], noise=pb.NoiseControl(mode="x" * 1_000_000)),
         grpc.StatusCode.INVALID_ARGUMENT, "noise.mode"),
    ],
)  # fmt: skip
def test_details_never_echo_unbounded_input(
    server: ServerProcess, method: str, request_: Any, code: grpc.StatusCode, field: str
) -> None:
    got, details = call(server, method, request_)
    assert got == code and details.startswith(field + ":"), (got, details[:300])
    assert len(details) <= 300, details


def test_million_seed_stream_streams_at_once(server: ServerProcess) -> None:
    """A 16-byte request for a million seeds: health answers within 1 s right after it arrives and its first
    item comes within 10 s (generous bounds: it used to build every source first, ~5 s with the server blocked)."""
    req = pb.StreamGenerateRequest(model=UNCOND, seeds=pb.SeedRange(start=0, stop=1_000_000))
    t0 = time.monotonic()
    stream = server.stub().StreamGenerate(req, timeout=60)
    try:
        time.sleep(0.05)
        h0 = time.monotonic()
        assert server.health() == 1
        assert time.monotonic() - h0 < 1.0
        first = next(stream)
        assert time.monotonic() - t0 < 10.0
        assert first.index == 0 and first.seed == 0
        assert [next(stream).seed for _ in range(40)] == list(range(1, 41))
    finally:
        stream.cancel()


def test_garbage_body_is_invalid_argument_without_traceback(server: ServerProcess) -> None:
    raw = server.channel().unary_unary("/styleserve.v1.StyleServe/Synthesize")
    for _ in range(30):
        with pytest.raises(grpc.RpcError) as e:
            raw(b"\xff\xff\xff\xff garbage", timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (e.value.details() or "").startswith("request: the body does not parse"), e.value.details()
    log = server.log()
    assert "Traceback" not in log
    assert log.count("does not parse") <= 6  # Rate-limited: at most 5 lines a minute, plus one with the count.


def test_unauthenticated_requests_cost_nothing(authed: ServerProcess) -> None:
    """Unauthenticated 15 MB requests: UNAUTHENTICATED without the body being parsed, no log line beyond the
    rate-limited one; the metrics endpoint still answers. Server RSS over 20 of them (300 MB sent), after 20
    to reach the allocator's high-water mark, grows <= 32 MiB: the HTTP/2 transport buffers up to its flow-control
    window per refused call and frees it (measured: within +-12 MB); before the fix, the first 20 cost +358 MB."""
    body = pb.PutWRequest(model=COND, w=pb.Tensor(shape=[15 * MiB // 4], data=bytes(15 * MiB))).SerializeToString()
    ch = authed.channel()
    put = ch.unary_unary("/styleserve.v1.StyleServe/PutW")

    def refused_twenty() -> None:
        for i in range(20):
            with pytest.raises(grpc.RpcError) as e:
                put(body, metadata=[("authorization", "Bearer wrong")] if i % 2 else None, timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED

    refused_twenty()
    before = rss_kib(authed)
    refused_twenty()
    grown = rss_kib(authed) - before
    print(f"server RSS growth over 20 unauthenticated 15 MB requests: {grown} KiB")
    assert grown <= 32 * 1024, f"RSS grew {grown} KiB"
    assert "Traceback" not in authed.log()
    assert authed.log().count("refused a call") <= 6
    ok = ch.unary_unary("/styleserve.v1.StyleServe/ListModels")(
        b"", metadata=[("authorization", "Bearer s3cret-token")], timeout=10
    )
    assert len(pb.ListModelsResponse.FromString(ok).models) == 2
    assert authed.health() == 1
    assert authed.metrics()["process_resident_memory_bytes"] > 0


def test_health_answers_fast_under_maximal_requests(server: ServerProcess) -> None:
    """While four clients send maximal valid requests (64 plans x num_ws styles x w+; 64-image grids composed),
    p99 of health checks <= 250 ms (the issue asks 100 ms; 250 ms is the bound for a loaded 2-core box)."""
    rng = np.random.default_rng(0)
    wplus = pb.Tensor(shape=[NUM_WS, W_DIM], data=rng.standard_normal((NUM_WS, W_DIM)).astype("<f4").tobytes())
    plan = pb.StylePlan(styles=[pb.LayerStyle(layers=[i], source=pb.StyleSource(w_plus=wplus)) for i in range(NUM_WS)])
    synth = pb.SynthesizeRequest(model=COND, plans=[plan] * 64, output=pb.OutputOptions(format=pb.IMAGE_FORMAT_PNG))
    src = pb.StyleSource(w_plus=wplus)
    grid = pb.StyleMixGridRequest(model=COND, rows=[src] * 7, cols=[src] * 7, compose=True)
    stop = threading.Event()
    errors: list[BaseException] = []

    def hammer(method: str, request: Any) -> None:
        stub = server.stub()
        while not stop.is_set():
            try:
                getattr(stub, method)(request, timeout=30)
            except grpc.RpcError as e:  # A full queue is a documented answer under load.
                if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    errors.append(e)

    threads = [threading.Thread(target=hammer, args=a) for a in [("Synthesize", synth)] * 3 + [("StyleMixGrid", grid)]]
    for t in threads:
        t.start()
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(server.channel())
    latencies = []
    try:
        time.sleep(0.5)
        for _ in range(60):
            t0 = time.perf_counter()
            health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join()
    p99 = float(np.percentile(latencies, 99))
    print(f"health p50 {1000 * np.median(latencies):.1f} ms, p99 {1000 * p99:.1f} ms")
    assert not errors, errors[0]
    assert p99 <= 0.25


def _length_delimited(field: int, payload: bytes) -> bytes:
    from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[attr-defined]

    return _VarintBytes(field << 3 | 2) + _VarintBytes(len(payload)) + payload


def test_small_methods_refuse_large_bodies_before_parsing(server: ServerProcess) -> None:
    """Methods whose valid requests are small (Generate: at most 64 seeds) refuse a 2 MB body unparsed."""
    body = pb.GenerateRequest(model=UNCOND, seeds=list(range(800_000))).SerializeToString()
    assert len(body) > 2 * MiB
    raw = server.channel().unary_unary("/styleserve.v1.StyleServe/Generate")
    with pytest.raises(grpc.RpcError) as e:
        raw(body, timeout=20)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (e.value.details() or "").startswith("request: a ") and "cap" in (e.value.details() or "")


def test_bodies_of_tiny_submessages_cost_bounded_memory(server: ServerProcess) -> None:
    """Synthesize bodies of millions of tiny LayerStyle messages (about 32 MB each; parsed, ~20x that, and the parse
    holds the GIL for ~1.8 s): refused INVALID_ARGUMENT by the pre-scan process, never parsed by the server, so its
    RSS does not grow by their parsed size and the health check keeps answering. Before: +2.5 GB of RSS kept after
    four, health stalled ~1 s. Bounds: RSS growth < 150 MB after four (measured +47 to +87 MB: the bodies' bytes in
    transit); the slowest health check < 1 s (measured 0.2 s on the loaded 2-core box)."""
    style = pb.LayerStyle(layers=[0]).SerializeToString()
    plan = _length_delimited(1, style) * 100_000  # StylePlan.styles (field 1) x 100k of 5 bytes each.
    body = pb.SynthesizeRequest(model=COND).SerializeToString() + _length_delimited(2, plan) * 64
    assert len(body) > 30 * MiB
    raw = server.channel().unary_unary("/styleserve.v1.StyleServe/Synthesize")
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(server.channel())
    worst, stop = [0.0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            worst[0] = max(worst[0], time.perf_counter() - t0)
            time.sleep(0.02)

    before = rss_kib(server)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        codes = []
        for _ in range(4):
            try:
                raw(body, timeout=60)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
                assert (e.details() or "").startswith("request: holds more than 100000 nested"), e.details()
    finally:
        stop.set()
        watcher.join()
    time.sleep(1.0)  # Bodies are released just after their calls end.
    grown = rss_kib(server) - before
    print(f"4 x {len(body) / MiB:.1f} MiB tiny-submessage bodies: RSS +{grown} KiB, slowest health {worst[0]:.3f} s")
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 4
    assert grown < 150 * 1024
    assert worst[0] < 1.0  # Before the pre-scan process: 0.9-1.1 s (the parse holds the GIL); after: 0.2 s loaded.
