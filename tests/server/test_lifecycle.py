"""Start-up, warm-up, overload, deadlines, cache bounds, shutdown, auth and TLS of a real server process.

Tests that need work to pile up use the 64 px demo model with ``--max-batch-size 1``: one image per
onnxruntime run (a few ms each), so a request for many images keeps the queue busy long enough.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from styleserve.v1 import styleserve_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ServerProcess

COND = "tiny-cond"
SERVING, NOT_SERVING = 1, 2
SLOW = ("--max-batch-size", "1", "--max-queue-delay-ms", "0", "--max-images-per-request", "256")


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from styleserve.export.demo import make_demo_generator
    from styleserve.export.onnx_export import export_model

    root = tmp_path_factory.mktemp("demo-repo")
    export_model(make_demo_generator(), root / "demo", verify_batches=(1,))
    return root


def tensor(a: np.ndarray) -> pb.Tensor:
    a = np.ascontiguousarray(a, "<f4")
    return pb.Tensor(shape=list(a.shape), data=a.tobytes())


def wait_for(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError("condition not reached")
        time.sleep(0.005)


# ---------------------------------------------------------------------------------------- start-up


def run_serve(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "styleserve.cli", "serve", str(repo), "--port", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_broken_model_stops_the_start_naming_the_file(repo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "repo"
    shutil.copytree(repo, bad, symlinks=False)
    (bad / "tiny-uncond" / "mapping.onnx").write_bytes(b"garbage")
    r = run_serve(bad)
    assert r.returncode == 2 and "tiny-uncond/mapping.onnx" in r.stderr, r.stderr
    (bad / "tiny-uncond" / "model.json").unlink()
    r = run_serve(bad)
    assert r.returncode == 2 and "tiny-uncond/model.json: missing" in r.stderr, r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_serve(empty)
    assert r.returncode == 2 and "holds no model directories" in r.stderr, r.stderr
    (bad / "twin").symlink_to(bad / "tiny-cond", target_is_directory=True)  # a link inside the repository is fine
    shutil.rmtree(bad / "tiny-uncond")
    r = run_serve(bad)
    assert r.returncode == 2 and "'tiny-cond' is also used" in r.stderr, r.stderr


def test_bad_config_is_refused(repo: Path) -> None:
    r = run_serve(repo, "--max-batch-size", "0")
    assert r.returncode == 2 and "max_batch_size" in r.stderr
    r = run_serve(repo, "--tls-cert", "cert.pem")
    assert r.returncode == 2 and "tls_cert and tls_key" in r.stderr


def test_health_is_not_serving_until_warm(start_server: Callable[..., ServerProcess], demo_repo: Path) -> None:
    # Warm-up runs the max batch size (256 images of 64 px): long enough to be seen from outside.
    s = start_server(demo_repo, "--max-batch-size", "256", "--max-queue-images", "256", wait=False).wait_listening()
    seen = [s.health()]
    with pytest.raises(grpc.RpcError) as e:
        s.stub().ListModels(pb.ListModelsRequest(), timeout=5)
    seen.append(s.health())
    s.wait_serving()
    assert seen[0] == NOT_SERVING and seen[1] in (NOT_SERVING, SERVING), seen
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "warming up" in (e.value.details() or "")
    assert [m.name for m in s.stub().ListModels(pb.ListModelsRequest()).models] == ["demo"]


# ------------------------------------------------------------------------------ overload, deadlines


def test_full_queue_answers_resource_exhausted(start_server: Callable[..., ServerProcess], demo_repo: Path) -> None:
    s = start_server(demo_repo, *SLOW, "--max-queue-images", "8")
    stub = s.stub()
    big = stub.Generate.future(pb.GenerateRequest(model="demo", seeds=range(1000, 1128)), timeout=60)
    codes = []
    while not big.done():
        try:
            stub.Generate(pb.GenerateRequest(model="demo", seeds=[7]), timeout=60)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            codes.append(exc.code())
            assert exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or "queue is full" in (exc.details() or "")
    assert len(big.result().images) == 128  # The admitted request loses nothing.
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert s.metrics()['styleserve_rejected_total{model="demo"}'] >= 1


def test_expired_and_cancelled_work_is_dropped(start_server: Callable[..., ServerProcess], demo_repo: Path) -> None:
    s = start_server(demo_repo, *SLOW)
    stub = s.stub()
    big = stub.Generate.future(pb.GenerateRequest(model="demo", seeds=range(2000, 2128)), timeout=60)
    wait_for(lambda: s.metrics().get('styleserve_queue_rows{model="demo",network="synthesis"}', 0) > 0)
    late = [stub.Generate.future(pb.GenerateRequest(model="demo", seeds=[10 + i]), timeout=0.05) for i in range(4)]
    gone = stub.Generate.future(pb.GenerateRequest(model="demo", seeds=[20]), timeout=60)
    time.sleep(0.05)
    gone.cancel()
    for f in late:
        with pytest.raises(grpc.RpcError) as e:
            f.result()
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(big.result().images) == 128
    m = s.metrics()
    dropped = m.get("styleserve_dropped_total", 0)
    ran = m['styleserve_network_rows_total{model="demo",network="synthesis"}']
    assert dropped >= 5, m
    assert ran == 128 + 5 - dropped + 0, (ran, dropped)  # Warm-up does not go through the batcher.


# ---------------------------------------------------------------------------------------- w cache


def test_w_cache_is_bounded_in_bytes_lru_and_ttl(start_server: Callable[..., ServerProcess], repo: Path) -> None:
    w_bytes = 32 * 4
    s = start_server(repo, "--w-cache-bytes", str(3 * w_bytes), "--w-cache-ttl-s", "2")
    stub = s.stub()
    ws = [np.full(32, i, np.float32) for i in range(5)]

    def put(i: int) -> str:
        return stub.PutW(pb.PutWRequest(model=COND, w=tensor(ws[i]))).w_id

    def cached(w_id: str) -> bool:
        try:
            stub.GetW(pb.GetWRequest(model=COND, w_id=w_id))
            return True
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
            return False

    ids = [put(i) for i in range(3)]
    assert all(cached(i) for i in ids)  # Reads in order 0, 1, 2: 0 is now the least recently used.
    assert cached(ids[0])  # ... now 1 is.
    ids.append(put(3))
    assert [cached(i) for i in ids] == [True, False, True, True]
    assert s.metrics()['styleserve_w_cache_evictions_total{reason="size"}'] == 1
    assert s.metrics()["styleserve_w_cache_bytes"] == 3 * w_bytes
    with pytest.raises(grpc.RpcError) as e:  # A w+ (8 x 32 floats) is larger than the whole cache.
        stub.PutW(pb.PutWRequest(model=COND, w=tensor(np.zeros((8, 32)))))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    time.sleep(2.1)
    assert not cached(ids[3])
    assert s.metrics()['styleserve_w_cache_evictions_total{reason="ttl"}'] >= 1


# ---------------------------------------------------------------------------------------- shutdown


def test_sigterm_drains_in_flight_work(start_server: Callable[..., ServerProcess], demo_repo: Path) -> None:
    s = start_server(demo_repo, *SLOW, "--drain-delay-s", "0.5", "--grace-s", "30")
    stub = s.stub()
    stream = stub.StreamGenerate(pb.StreamGenerateRequest(model="demo", seeds=pb.SeedRange(start=0, stop=96)))
    first = next(stream)
    big = stub.Generate.future(pb.GenerateRequest(model="demo", seeds=range(3000, 3128)), timeout=60)
    wait_for(lambda: s.metrics().get("styleserve_inflight_requests", 0) >= 2)
    s.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: s.health() != SERVING, timeout=5)
    with pytest.raises(grpc.RpcError) as e:
        stub.Generate(pb.GenerateRequest(model="demo", seeds=[1]), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(big.result().images) == 128
    rest = list(stream)
    assert [first.index] + [i.index for i in rest] == list(range(96))
    assert s.proc.wait(30) == 0
    log = s.log()
    assert "draining" in log and "stopped" in log


# ---------------------------------------------------------------------------------------- security


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return d / "cert.pem", d / "key.pem"


def test_tls_and_token_auth(
    start_server: Callable[..., ServerProcess], repo: Path, tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = tls_files
    tokens = tmp_path / "tokens"
    tokens.write_text("# accepted tokens\nalpha-token\nbeta-token\n")
    s = start_server(
        repo,
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--auth-token-file",
        str(tokens),
        "--reflection",
        "false",
        wait=False,
    )
    s.credentials = grpc.ssl_channel_credentials(cert.read_bytes())
    s.wait_serving()  # Health checks need TLS but no token.
    req = pb.ListModelsRequest()

    def code(metadata: tuple[tuple[str, str], ...] | None, channel: grpc.Channel | None = None) -> grpc.StatusCode:
        from styleserve.v1 import styleserve_pb2_grpc as pb_grpc

        try:
            pb_grpc.StyleServeStub(channel or s.channel()).ListModels(req, metadata=metadata, timeout=5)
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            return exc.code()

    assert code(None) == grpc.StatusCode.UNAUTHENTICATED
    assert code((("authorization", "Bearer wrong"),)) == grpc.StatusCode.UNAUTHENTICATED
    assert code((("authorization", "Basic beta-token"),)) == grpc.StatusCode.UNAUTHENTICATED
    assert code((("authorization", "Bearer beta-token"),)) == grpc.StatusCode.OK
    plain = grpc.insecure_channel(s.target)
    assert code((("authorization", "Bearer beta-token"),), plain) == grpc.StatusCode.UNAVAILABLE
    plain.close()
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    refl = reflection_pb2_grpc.ServerReflectionStub(s.channel())
    with pytest.raises(grpc.RpcError) as e:
        list(
            refl.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                metadata=(("authorization", "Bearer alpha-token"),),
                timeout=5,
            )
        )
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_connections_are_recycled_without_failing_calls(start_server: Callable[..., ServerProcess], repo: Path) -> None:
    """--max-connection-age-s: the server closes connections (clients re-resolve DNS); calls keep succeeding."""
    s = start_server(repo, "--max-connection-age-s", "0.3", "--grace-s", "2")
    assert '"max_connection_age_s": 0.3' in s.log()
    stub = s.stub()
    end = time.monotonic() + 1.5
    n = 0
    while time.monotonic() < end:
        assert len(stub.Generate(pb.GenerateRequest(model="tiny-uncond", seeds=[n]), timeout=10).images) == 1
        n += 1
        time.sleep(0.05)
    assert n >= 10
