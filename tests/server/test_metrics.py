"""The /metrics endpoint of a real server: exact amounts after a scripted set of requests, and the dashboard."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from harness import ServerProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

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
    jpeg = pb.OutputOptions(format=pb.IMAGE_FORMAT_JPEG)
    stub.Generate(pb.GenerateRequest(model=UNCOND, seeds=[9], output=jpeg))  # 1 miss

    m = fresh.metrics()
    net = 'model="tiny-uncond",network="{}"'
    expected = {
        'styleserve_requests_total{code="OK",method="Generate",model="tiny-uncond"}': 3,
        'styleserve_requests_total{code="INVALID_ARGUMENT",method="Generate",model="tiny-uncond"}': 1,
        'styleserve_requests_total{code="OK",method="Map",model="tiny-uncond"}': 1,
        'styleserve_requests_total{code="OK",method="GetW",model="tiny-uncond"}': 1,
        'styleserve_requests_total{code="NOT_FOUND",method="GetW",model="tiny-uncond"}': 1,
        'styleserve_request_duration_seconds_count{method="Generate",model="tiny-uncond"}': 4,
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


# ------------------------------------------------------------------- metrics that tell the truth (issue 12 D)

COND = "tiny-cond"
SERVED = {COND, UNCOND}
# One image per onnxruntime run: a 256-image request keeps the synthesis queue busy for about 1-2 s.
SLOW = ("--max-batch-size", "1", "--max-queue-delay-ms", "0", "--max-images-per-request", "256")


def scrape(server: ServerProcess) -> str:
    return str(urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode())


def wait_for(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


def total(m: dict[str, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in m.items() if k.startswith(name + "{") and all(w in k for w in want))


def test_deadline_expiry_is_deadline_exceeded_and_a_deadline_drop(
    start_server: Callable[..., ServerProcess], repo: Path
) -> None:
    s = start_server(repo, *SLOW)
    stub = s.stub()
    big = stub.Generate.future(pb.GenerateRequest(model=COND, seeds=range(1000, 1256), class_index=1), timeout=60)
    syn = f'styleserve_queue_rows{{model="{COND}",network="synthesis"}}'
    wait_for(lambda: s.metrics().get(syn, 0) > 100)  # > 100 images (> 0.3 s of runs) ahead of what follows.
    late = [
        stub.Generate.future(pb.GenerateRequest(model=COND, seeds=[10 + i], class_index=1), timeout=0.2)
        for i in range(4)
    ]
    gone = stub.Generate.future(pb.GenerateRequest(model=COND, seeds=[20], class_index=1), timeout=60)
    time.sleep(0.05)
    gone.cancel()
    for f in late:
        with pytest.raises(grpc.RpcError) as e:
            f.result()
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(big.result().images) == 256
    # The queued expired work is dropped when the batcher reaches it, after the big request's last run.
    wait_for(lambda: total(s.metrics(), "styleserve_dropped_total") >= 5)
    m = s.metrics()
    rpc = {"method": "Generate", "model": COND}
    assert total(m, "styleserve_requests_total", code="DEADLINE_EXCEEDED", **rpc) == 4, m
    assert total(m, "styleserve_requests_total", code="CANCELLED", **rpc) == 1, m
    assert total(m, "styleserve_requests_total", code="OK", **rpc) == 1, m
    assert total(m, "styleserve_dropped_total", model=COND, reason="deadline") == 4, m
    assert total(m, "styleserve_dropped_total", model=COND, reason="cancelled") == 1, m
    assert m[f'styleserve_network_rows_total{{model="{COND}",network="synthesis"}}'] == 256  # Nothing dropped ran.


def test_w_cache_ttl_sweep_empties_the_cache_without_lookups(
    start_server: Callable[..., ServerProcess], repo: Path
) -> None:
    s = start_server(repo, "--w-cache-ttl-s", "1", "--max-queue-delay-ms", "0")
    s.stub().Generate(pb.GenerateRequest(model=UNCOND, seeds=[1, 2, 3]))  # 3 misses, 3 entries of 128 bytes
    m = s.metrics()
    evicted = 'styleserve_w_cache_evictions_total{reason="ttl"}'
    assert m["styleserve_w_cache_entries"] + m[evicted] == 3
    # No traffic from here on: the sweep alone must empty the cache (the TTL is 1 s; the bound is generous).
    wait_for(lambda: s.metrics()["styleserve_w_cache_entries"] == 0)
    m = s.metrics()
    assert (m["styleserve_w_cache_entries"], m["styleserve_w_cache_bytes"], m[evicted]) == (0, 0, 3)
    assert m['styleserve_w_cache_evictions_total{reason="size"}'] == 0
    assert (m['styleserve_w_cache_lookups_total{result="miss"}'], m['styleserve_w_cache_lookups_total{result="hit"}']) \
        == (3, 0)  # fmt: skip


def test_model_label_takes_only_served_names(fresh: ServerProcess) -> None:
    """Hostile model names answer NOT_FOUND / INVALID_ARGUMENT and are counted under model="", never as a label."""
    stub = fresh.stub()
    sent: list[str] = []

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(name=st.text(max_size=300).filter(lambda n: n not in SERVED), kind=st.sampled_from(["gen", "get", "w"]))
    def call(name: str, kind: str) -> None:
        with pytest.raises(grpc.RpcError) as e:
            if kind == "gen":
                stub.Generate(pb.GenerateRequest(model=name, seeds=[1]), timeout=10)
            elif kind == "get":
                stub.GetModel(pb.GetModelRequest(model=name), timeout=10)
            else:
                stub.GetW(pb.GetWRequest(model=name, w_id="w_0"), timeout=10)
        assert e.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
        sent.append(name)

    call()
    stub.ListModels(pb.ListModelsRequest())  # No model field: model="".
    stub.Generate(pb.GenerateRequest(model=UNCOND, seeds=[1]))
    values: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(scrape(fresh)):
        if fam.name in ("styleserve_requests", "styleserve_request_duration_seconds"):
            values[fam.name] = {smp.labels["model"] for smp in fam.samples}
    assert values == {"styleserve_requests": {"", UNCOND}, "styleserve_request_duration_seconds": {"", UNCOND}}
    m = fresh.metrics()
    assert total(m, "styleserve_requests_total", model="") == len(sent) + 1
    assert m[f'styleserve_requests_total{{code="OK",method="Generate",model="{UNCOND}"}}'] == 1


def test_no_created_series(fresh: ServerProcess) -> None:
    fresh.stub().Generate(pb.GenerateRequest(model=UNCOND, seeds=[1]))
    text = scrape(fresh)
    assert "styleserve_requests_total{" in text and "styleserve_request_duration_seconds_bucket{" in text
    assert "_created" not in text
    # Also for a registry passed in (the flag is process-wide, read at collection time).
    from prometheus_client import CollectorRegistry, generate_latest
    from styleserve.server.metrics import Metrics

    metrics = Metrics(CollectorRegistry())
    metrics.requests.labels(UNCOND, "Generate", "OK").inc()
    metrics.request_seconds.labels(UNCOND, "Generate").observe(0.1)
    own = generate_latest(metrics.registry).decode()
    assert "styleserve_requests_total{" in own and "_created" not in own


def test_dashboard_hard_codes_no_job_and_filters_requests_by_model() -> None:
    """The PodMonitor's job is ``namespace/name`` and compose's is ``styleserve``: panels take ``$job``."""
    exprs = dashboard_exprs()
    jobs = [(e, m) for e in exprs for m in re.findall(r"\bjob\s*(=~|!~|!=|=)\s*\"([^\"]*)\"", e)]
    assert jobs, "the process panels should select the job through $job"
    assert all(m == ("=~", "$job") for _, m in jobs), jobs
    process = [e for e in exprs if re.search(r"\bprocess_", e)]
    assert process and all('job=~"$job"' in e for e in process), process
    variables = {v["name"]: v for v in json.loads(DASHBOARD.read_text())["templating"]["list"]}
    job = variables["job"]
    query = job["query"]["query"] if isinstance(job["query"], dict) else job["query"]
    assert re.fullmatch(r"label_values\(styleserve_[a-z_]+, job\)", query), query
    assert job["includeAll"] and "allValue" not in job  # All = the styleserve jobs found, not every job.
    requests = [e for e in exprs if re.search(r"styleserve_request(s_total|_duration_seconds)", e)]
    assert len(requests) >= 4 and all('model=~"$model"' in e for e in requests), requests
