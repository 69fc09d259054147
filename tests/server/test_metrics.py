"""The /metrics endpoint of a real server: exact amounts after a scripted set of requests, and the dashboard."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from harness import ServerProcess

from styleserve.v1 import styleserve_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
UNCOND = "tiny-uncond"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "styleserve.json"
NVML_ONLY = {"styleserve_gpu_memory_used_bytes", "styleserve_gpu_memory_total_bytes"}


@pytest.fixture
def fresh(start_server: Callable[..., ServerProcess], repo: Path) -> ServerProcess:
    """A server that has seen no traffic but health checks."""
    return start_server(repo, "--max-queue-delay-ms", "0")


def test_exact_amounts_after_scripted_requests(fresh: ServerProcess) -> None:
    stub = fresh.stub()
    stub.Generate(pb.GenerateRequest(model=UNCOND, seeds=[1, 2, 3]))  # 3 misses; runs of 3 rows
    stub.Generate(pb.GenerateRequest(model=UNCOND, seeds=[1, 2, 3, 4]))  # 3 hits, 1 miss; runs of 1 and 4
    w_id = stub.Map(pb.MapRequest(model=UNCOND, latents=[pb.Latent(seed=5)], cache=True)).results[0].w_id  # 1 miss
    stub.GetW(pb.GetWRequest(model=UNCOND, w_id=w_id))  # 1 hit
    with pytest.raises(grpc.RpcError):
        stub.GetW(pb.GetWRequest(model=UNCOND, w_id="w_unknown"))  # 1 miss, NOT_FOUND
    with pytest.raises(grpc.RpcError):
        stub.Generate(pb.GenerateRequest(model=UNCOND, seeds=[1], class_index=3))  # INVALID_ARGUMENT, no work
    stub.Generate(pb.GenerateRequest(model=UNCOND, seeds=[9], output=pb.OutputOptions(format=pb.JPEG)))  # 1 miss

    m = fresh.metrics()
    net = 'model="tiny-uncond",network="{}"'
    expected = {
        'styleserve_requests_total{code="OK",method="Generate"}': 3,
        'styleserve_requests_total{code="INVALID_ARGUMENT",method="Generate"}': 1,
        'styleserve_requests_total{code="OK",method="Map"}': 1,
        'styleserve_requests_total{code="OK",method="GetW"}': 1,
        'styleserve_requests_total{code="NOT_FOUND",method="GetW"}': 1,
        'styleserve_request_duration_seconds_count{method="Generate"}': 4,
        'styleserve_images_total{model="tiny-uncond"}': 8,
        'styleserve_images_total{model="tiny-cond"}': 0,
        'styleserve_w_cache_lookups_total{result="hit"}': 4,
        'styleserve_w_cache_lookups_total{result="miss"}': 7,
        'styleserve_w_cache_entries': 6,  # Seeds 1, 2, 3, 4, 5, 9.
        'styleserve_w_cache_bytes': 6 * 32 * 4,
        'styleserve_w_cache_capacity_bytes': 256 * 2**20,
        "styleserve_w_cache_evictions_total": 0,
        # mapping runs: [1,2,3], [4], [5], [9]; synthesis runs: 3, 4, 1 images.
        f"styleserve_batch_size_count{{{net.format('mapping')}}}": 4,
        f"styleserve_batch_size_sum{{{net.format('mapping')}}}": 6,
        f'styleserve_batch_size_bucket{{le="1.0",{net.format("mapping")}}}': 3,
        f"styleserve_batch_size_count{{{net.format('synthesis')}}}": 3,
        f"styleserve_batch_size_sum{{{net.format('synthesis')}}}": 8,
        f'styleserve_batch_size_bucket{{le="2.0",{net.format("synthesis")}}}': 1,
        f'styleserve_batch_size_bucket{{le="4.0",{net.format("synthesis")}}}': 3,
        f"styleserve_batch_requests_sum{{{net.format('synthesis')}}}": 3,
        f"styleserve_network_rows_total{{{net.format('synthesis')}}}": 8,
        f"styleserve_compute_seconds_count{{{net.format('synthesis')}}}": 3,
        f"styleserve_queue_wait_seconds_count{{{net.format('mapping')}}}": 4,
        f"styleserve_queue_rows{{{net.format('synthesis')}}}": 0,
        'styleserve_encode_seconds_count{format="png"}': 7,
        'styleserve_encode_seconds_count{format="jpeg"}': 1,
        'styleserve_rejected_total{model="tiny-uncond"}': 0,
        "styleserve_inflight_requests": 0,
        "styleserve_ready": 1,
    }
    got = {k: m.get(k) for k in expected}
    assert got == expected
    assert m.get("styleserve_dropped_total", 0) == 0  # No series until something is dropped.
    info = [k for k in m if k.startswith("styleserve_model_info{")]
    assert len(info) == 2
    assert any('model="tiny-cond"' in k and 'resolution="32"' in k and 'num_ws="8"' in k for k in info), info
    assert all('provider="CPUExecutionProvider"' in k for k in info)
    assert m["process_resident_memory_bytes"] > 0 and "python_info" in {k.split("{")[0] for k in m}
    assert not any(k.startswith("styleserve_gpu_") for k in m)  # No NVML here: absent, not zero.


def test_histogram_buckets_are_the_documented_ones(fresh: ServerProcess) -> None:
    from styleserve.server.metrics import BATCH_BUCKETS, LATENCY_BUCKETS

    fresh.stub().Generate(pb.GenerateRequest(model=UNCOND, seeds=[1]))
    m = fresh.metrics()

    def bounds(prefix: str) -> list[float]:
        les = [re.search(r'le="([^"]+)"', k) for k in m if k.startswith(prefix + "_bucket{")]
        return sorted(float(x.group(1)) for x in les if x and x.group(1) != "+Inf")

    assert bounds('styleserve_request_duration_seconds') == list(LATENCY_BUCKETS)
    assert sorted(set(bounds("styleserve_batch_size"))) == [float(b) for b in BATCH_BUCKETS]
    doc = " ".join((ROOT / "docs" / "METRICS.md").read_text().split())
    assert ", ".join(f"{b:g}" for b in LATENCY_BUCKETS) in doc and ", ".join(map(str, BATCH_BUCKETS)) in doc


def dashboard_exprs() -> list[str]:
    exprs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("expr", "query") and isinstance(v, str):
                    exprs.append(v)
                elif isinstance(v, dict) and k == "query" and isinstance(v.get("query"), str):
                    exprs.append(v["query"])
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(DASHBOARD.read_text()))
    return exprs


def test_every_metric_the_dashboard_queries_exists(fresh: ServerProcess) -> None:
    stub = fresh.stub()
    stub.Generate(pb.GenerateRequest(model=UNCOND, seeds=[1, 2]))
    w = np.zeros(32, "<f4")
    stub.PutW(pb.PutWRequest(model=UNCOND, w=pb.Tensor(shape=[32], data=w.tobytes())))
    samples = {k.split("{")[0] for k in fresh.metrics()}
    text = urllib.request.urlopen(f"http://127.0.0.1:{fresh.metrics_port}/metrics", timeout=5).read().decode()
    declared = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))  # Families with no series yet.
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    used = {name for e in exprs for name in re.findall(r"\b((?:styleserve|process)_[a-z0-9_]+)", e)}
    assert {"styleserve_request_duration_seconds_bucket", "styleserve_w_cache_lookups_total"} <= used
    missing = sorted(used - samples - declared - NVML_ONLY)
    assert not missing, f"the dashboard queries metrics the server does not export: {missing}"


def test_deploy_files_agree() -> None:
    compose = (ROOT / "deploy" / "docker-compose.yml").read_text()
    prom = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    port = re.search(r"STYLESERVE_METRICS_PORT[=:]\s*\"?(\d+)", compose)
    assert port is not None
    assert f"styleserve:{port.group(1)}" in prom
    assert "target: server" in compose and "grafana/dashboards" in compose
