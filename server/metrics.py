"""Prometheus metrics of the server, all in one place.

Names follow the Prometheus conventions (``_total`` counters, ``_seconds`` / ``_bytes`` units) and
every histogram has explicit buckets. :class:`Metrics` takes a registry so tests can use a fresh
one; the server exposes its registry over HTTP (``--metrics-port``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "styleserve_requests_total", "RPCs handled, by method and status code.", ["method", "code"], registry=r
        )
        self.request_seconds = Histogram(
            "styleserve_request_duration_seconds", "RPC latency.", ["method"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.inflight = Gauge("styleserve_inflight_requests", "RPCs being handled now.", registry=r)
        self.images = Counter("styleserve_images_total", "Images returned, by model.", ["model"], registry=r)
        self.batch_rows = Histogram(
            "styleserve_batch_rows",
            "Rows (latents or images) per onnxruntime run, by model and network.",
            ["model", "network"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "styleserve_batch_requests",
            "Queued submissions merged into one onnxruntime run.",
            ["model", "network"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.network_rows = Counter(
            "styleserve_network_rows_total", "Rows run through a network.", ["model", "network"], registry=r
        )
        self.inference_seconds = Histogram(
            "styleserve_inference_seconds",
            "Time of one onnxruntime run.",
            ["model", "network"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "styleserve_queue_wait_seconds",
            "Time a submission waited in the batching queue.",
            ["model", "network"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_rows = Gauge(
            "styleserve_queue_rows", "Rows waiting in the batching queue.", ["model", "network"], registry=r
        )
        self.dropped = Counter(
            "styleserve_dropped_total",
            "Queued submissions dropped before running (reason: cancelled, deadline).",
            ["model", "network", "reason"],
            registry=r,
        )
        self.rejected = Counter(
            "styleserve_rejected_total", "Submissions refused because the queue was full.", ["model"], registry=r
        )
        self.cache_lookups = Counter(
            "styleserve_w_cache_lookups_total", "w cache lookups (result: hit, miss).", ["result"], registry=r
        )
        self.cache_evictions = Counter(
            "styleserve_w_cache_evictions_total", "w cache entries evicted (reason: size, ttl).", ["reason"], registry=r
        )
        self.cache_bytes = Gauge("styleserve_w_cache_bytes", "Bytes held by the w cache.", registry=r)
        self.cache_entries = Gauge("styleserve_w_cache_entries", "Entries in the w cache.", registry=r)
        self.encode_seconds = Histogram(
            "styleserve_encode_seconds", "Time to encode one image.", ["format"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.ready = Gauge("styleserve_ready", "1 when warmed up and serving, 0 otherwise.", registry=r)

    def serve_http(self, port: int, host: str = "0.0.0.0") -> None:
        """Expose ``/metrics`` on ``host:port`` from a background thread."""
        start_http_server(port, addr=host, registry=self.registry)
