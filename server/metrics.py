"""Prometheus metrics of the server, all in one place.

Names follow the Prometheus conventions: the ``styleserve_`` prefix, base units (``_seconds``,
``_bytes``), ``_total`` counters. Every histogram has explicit buckets chosen for this workload:

* latency (``LATENCY_BUCKETS``, 1 ms .. 30 s): a 64 px image takes about 2 ms on a CPU core, a
  1024 px one tens of ms on a GPU and seconds on a CPU, and whole requests can carry 64 images;
* batch sizes (``BATCH_BUCKETS``): powers of two up to 128, the largest sensible ``--max-batch-size``.

RPC series carry a ``model`` label, as Triton's do. Its values stay bounded: the servicer sets it to the
request's model name only when that model is served, and to ``""`` (:data:`NO_MODEL`) otherwise (no model
field, or an unknown or hostile name), so a client cannot create series. ``_created`` series are off
(:func:`prometheus_client.disable_created_metrics`, process-wide, so whatever registry is passed).

:class:`Metrics` takes a registry so tests can use a fresh one; the server exposes it over HTTP on
``--metrics-port`` with the standard process and Python collectors and, on CUDA hosts with NVML
(``pip install nvidia-ml-py``), GPU memory. docs/METRICS.md lists every metric.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("styleserve.server")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
NETWORK = ["model", "network"]  # network: mapping | synthesis
NO_MODEL = ""  # The model label of an RPC whose request names no served model.

__all__ = ["BATCH_BUCKETS", "LATENCY_BUCKETS", "NO_MODEL", "GpuMemoryCollector", "Metrics"]


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = False) -> None:
        """``process=True`` adds the standard process, platform and GC collectors to the registry."""
        disable_created_metrics()  # type: ignore[no-untyped-call]  # Read at collection time: every registry.
        self.registry = r = registry if registry is not None else CollectorRegistry()
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        # RPCs
        self.requests = Counter(
            "styleserve_requests_total",
            "RPCs handled, by model, method and status code.",
            ["model", "method", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "styleserve_request_duration_seconds",
            "RPC latency, from arrival to the last byte handed to gRPC.",
            ["model", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge("styleserve_inflight_requests", "RPCs being handled now.", registry=r)
        self.images = Counter("styleserve_images_total", "Images returned, by model.", ["model"], registry=r)
        # batching and inference
        self.batch_size = Histogram(
            "styleserve_batch_size",
            "Rows (latents or images) per onnxruntime run.",
            NETWORK,
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "styleserve_batch_requests",
            "Queued submissions merged into one onnxruntime run.",
            NETWORK,
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.network_rows = Counter("styleserve_network_rows_total", "Rows run through a network.", NETWORK, registry=r)
        self.compute_seconds = Histogram(
            "styleserve_compute_seconds",
            "Time of one onnxruntime run (noise feeds included).",
            NETWORK,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "styleserve_queue_wait_seconds",
            "Time a submission waited in the batching queue before its run started.",
            NETWORK,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_rows = Gauge("styleserve_queue_rows", "Rows waiting in the batching queue.", NETWORK, registry=r)
        self.dropped = Counter(
            "styleserve_dropped_total",
            "Queued submissions dropped before running (reason: cancelled, deadline).",
            [*NETWORK, "reason"],
            registry=r,
        )
        self.rejected = Counter(
            "styleserve_rejected_total", "Requests refused because a queue was full.", ["model"], registry=r
        )
        # w cache
        self.cache_lookups = Counter(
            "styleserve_w_cache_lookups_total", "w cache lookups (result: hit, miss).", ["result"], registry=r
        )
        self.cache_evictions = Counter(
            "styleserve_w_cache_evictions_total", "w cache entries evicted (reason: size, ttl).", ["reason"], registry=r
        )
        self.cache_bytes = Gauge("styleserve_w_cache_bytes", "Bytes held by the w cache.", registry=r)
        self.cache_capacity_bytes = Gauge(
            "styleserve_w_cache_capacity_bytes", "The w cache's size limit in bytes.", registry=r
        )
        self.cache_entries = Gauge("styleserve_w_cache_entries", "Entries in the w cache.", registry=r)
        # encoding, state, models
        self.encode_seconds = Histogram(
            "styleserve_encode_seconds", "Time to encode one image.", ["format"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.ready = Gauge("styleserve_ready", "1 when warmed up and serving, 0 otherwise.", registry=r)
        self.model_info = Gauge(
            "styleserve_model_info",
            "A served model (always 1); its labels describe it.",
            ["model", "architecture", "resolution", "channels", "num_ws", "provider"],
            registry=r,
        )
        for result in ("hit", "miss"):
            self.cache_lookups.labels(result)
        for reason in ("size", "ttl"):
            self.cache_evictions.labels(reason)

    def add_model(
        self, model: str, architecture: str, resolution: int, channels: int, num_ws: int, provider: str
    ) -> None:
        """Publish a model's info series and zeroed per-model series (so dashboards see them before traffic)."""
        self.model_info.labels(model, architecture, str(resolution), str(channels), str(num_ws), provider).set(1)
        self.images.labels(model)
        self.rejected.labels(model)
        for network in ("mapping", "synthesis"):
            self.queue_rows.labels(model, network).set(0)
            self.network_rows.labels(model, network)

    def add_gpu_collector(self, device_ids: Sequence[int]) -> bool:
        """GPU memory through NVML when ``pynvml`` (nvidia-ml-py) and a driver are present; False otherwise."""
        collector = GpuMemoryCollector.create(device_ids)
        if collector is None:
            return False
        self.registry.register(collector)
        return True

    def serve_http(self, port: int, host: str = "0.0.0.0") -> None:
        """Expose ``/metrics`` on ``host:port`` from a background thread."""
        start_http_server(port, addr=host, registry=self.registry)


class GpuMemoryCollector(Collector):
    """``styleserve_gpu_memory_{used,total}_bytes{device}`` read from NVML at scrape time."""

    def __init__(self, nvml: object, device_ids: Iterable[int]) -> None:
        self._nvml = nvml
        self._handles = [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in device_ids]  # type: ignore[attr-defined]

    @staticmethod
    def create(device_ids: Sequence[int]) -> GpuMemoryCollector | None:
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            return GpuMemoryCollector(pynvml, device_ids)
        except Exception as exc:  # No package, no driver or no such device: the metric is absent.
            log.info("GPU memory metrics off: %s", exc)
            return None

    def collect(self) -> Iterator[Metric]:
        used = GaugeMetricFamily("styleserve_gpu_memory_used_bytes", "GPU memory in use (NVML).", labels=["device"])
        total = GaugeMetricFamily("styleserve_gpu_memory_total_bytes", "GPU memory size (NVML).", labels=["device"])
        for i, handle in self._handles:
            try:
                info = self._nvml.nvmlDeviceGetMemoryInfo(handle)  # type: ignore[attr-defined]
            except Exception:  # A scrape must not fail because the driver hiccuped.
                continue
            used.add_metric([str(i)], float(info.used))
            total.add_metric([str(i)], float(info.total))
        yield used
        yield total
