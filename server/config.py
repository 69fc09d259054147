"""The server's one typed config, built once from CLI flags over ``STYLESERVE_*`` environment variables.

Every flag ``--some-name`` has the environment fallback ``STYLESERVE_SOME_NAME``; a flag given on the
command line wins. :meth:`ServerConfig.describe` is what the server logs at start (secrets redacted).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

MiB = 2**20
ENV_PREFIX = "STYLESERVE_"
METRICS_PORT = 9464
"""The /metrics port of the deploy files and docs (not Prometheus's own 9090); ``--metrics-port`` is off (0) by
default."""


@dataclass(frozen=True)
class ServerConfig:
    model_repository: Path  # A directory of model directories (or one model directory).
    host: str = "127.0.0.1"
    port: int = 50051  # 0 = pick a free port (logged).
    # onnxruntime
    device: str = "auto"  # auto | cpu | cuda
    device_id: int = 0
    intra_op_threads: int = 0  # 0 = one per core.
    fp16: bool = False  # Serve synthesis_fp16.onnx where the model has one.
    engine: str = "onnxruntime"  # onnxruntime | openvino (synthesis on OpenVINO, CPU; server/engine_openvino.py)
    precision: str = "fp32"  # fp32 | bf16 (--engine openvino on CPUs with AVX-512 BF16/AMX)
    graph_rewrites: bool = True  # --engine openvino fp32: Winograd / phase-conv rewrites (server/ov_passes.py).
    verify_files: bool = True  # Check every opened file against model.json's source.files_sha256 at start.
    cpu_mem_arena: bool = True  # onnxruntime's CPU memory arena (off: RSS falls back between runs, runs slower).
    max_run_pixels: int = 4 * 1024 * 1024  # Rows x H x W per synthesis run; larger batches run in pieces.
    # batching and limits
    max_batch_size: int = 16  # Rows per onnxruntime run.
    max_queue_delay_ms: float = 2.0  # How long a queued request waits for other in-flight requests to join.
    max_queue_images: int = 512  # Rows waiting per network and model before RESOURCE_EXHAUSTED.
    max_images_per_request: int = 64
    max_stream_images: int = 1_000_000
    max_message_bytes: int = 64 * MiB
    max_connection_age_s: float = 0.0  # Close client connections after this long (0 = never), so DNS re-resolves.
    # w cache
    w_cache_bytes: int = 256 * MiB  # 0 disables the cache.
    w_cache_ttl_s: float = 0.0  # 0 = no expiry.
    # encoding
    encode_workers: int = 0  # 0 = one per core.
    png_compress_level: int = 1  # Pillow's zlib level (grayscale PNGs, or --png-encoder pillow).
    png_encoder: str = "auto"  # auto | fpng | pillow (auto: fpng where installed).
    # lifecycle and security
    grace_s: float = 10.0
    drain_delay_s: float = 0.0  # After SIGTERM, report NOT_SERVING this long before closing the port.
    reflection: bool = True
    auth_token_file: Path | None = None  # One accepted bearer token per line.
    auth_token: str | None = None  # Or a single token (env STYLESERVE_AUTH_TOKEN).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # Require client certificates signed by this CA.
    metrics_port: int = 0  # 0 = no /metrics endpoint.
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(what)

        need(self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}")
        need(self.engine in ("onnxruntime", "openvino"), f"engine must be onnxruntime or openvino, got {self.engine!r}")
        need(self.precision in ("fp32", "bf16"), f"precision must be fp32 or bf16, got {self.precision!r}")
        need(0 <= self.port <= 65535, f"port out of range: {self.port}")
        need(self.max_batch_size >= 1, "max_batch_size must be >= 1")
        need(self.max_run_pixels >= 1, "max_run_pixels must be >= 1")
        need(self.max_queue_delay_ms >= 0, "max_queue_delay_ms must be >= 0")
        need(self.max_queue_images >= self.max_batch_size, "max_queue_images must be >= max_batch_size")
        need(self.max_images_per_request >= 1, "max_images_per_request must be >= 1")
        need(self.max_message_bytes >= MiB, "max_message_bytes must be >= 1 MiB")
        need(self.max_connection_age_s >= 0, "max_connection_age_s must be >= 0")
        need(self.w_cache_bytes >= 0 and self.w_cache_ttl_s >= 0, "w cache size and TTL must be >= 0")
        need(0 <= self.png_compress_level <= 9, "png_compress_level must be in 0..9")
        need(self.png_encoder in ("auto", "fpng", "pillow"), "png_encoder must be auto, fpng or pillow")
        need(self.grace_s >= 0 and self.drain_delay_s >= 0, "grace_s and drain_delay_s must be >= 0")
        need((self.tls_cert is None) == (self.tls_key is None), "tls_cert and tls_key go together")
        need(self.tls_client_ca is None or self.tls_cert is not None, "tls_client_ca needs tls_cert and tls_key")

    @property
    def tokens(self) -> tuple[str, ...]:
        """Accepted bearer tokens; empty = no auth."""
        out = [self.auth_token] if self.auth_token else []
        if self.auth_token_file is not None:
            lines = self.auth_token_file.read_text(encoding="utf-8").splitlines()
            out += [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
        return tuple(out)

    def describe(self) -> dict[str, Any]:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        if d["auth_token"]:
            d["auth_token"] = "<redacted>"
        return d

    @staticmethod
    def from_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
        env = os.environ if environ is None else environ
        parser = build_parser(env)
        ns = parser.parse_args(argv)
        values = vars(ns)
        if values["model_repository"] is None:
            parser.error(f"a model repository is required (argument or {ENV_PREFIX}MODEL_REPOSITORY)")
        try:
            return ServerConfig(**values)
        except (TypeError, ValueError) as exc:
            parser.error(str(exc))
            raise  # unreachable: parser.error exits


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="styleserve serve",
        description="Serve StyleGAN model directories over gRPC (flags override STYLESERVE_* environment variables).",
    )
    defaults = {f.name: None if f.default is MISSING else f.default for f in fields(ServerConfig)}
    helps = {
        "host": "address to bind (0.0.0.0 or [::] for every interface)",
        "port": "gRPC port; 0 picks a free one and logs it",
        "device": "onnxruntime device: auto (CUDA when available), cpu or cuda",
        "intra_op_threads": "onnxruntime threads per session, 0 = one per core",
        "fp16": "serve synthesis_fp16.onnx where a model has one",
        "engine": "synthesis engine: onnxruntime, or openvino (CPU, static batch buckets, verified against "
        "onnxruntime at start; needs the openvino extra)",
        "precision": "fp32, or bf16 with --engine openvino on CPUs with AVX-512 BF16/AMX "
        "(verified at start within 0.4)",
        "graph_rewrites": "with --engine openvino fp32: run the 3x3 convs of 128+ channels (up to 128 px) as "
        "Winograd F(2x2,3x3) and the up-sampling convs from <= 16 px as phase convolutions (the same function; the "
        "graph is verified against onnxruntime at start either way); false compiles the graph as read",
        "verify_files": "check each model file against model.json's files_sha256 at start (false skips it)",
        "cpu_mem_arena": "onnxruntime's CPU memory arena: on, RSS stays at the largest run's peak; off, each run's "
        "buffers go back to the system after it, at the cost of page faults every run (docs/BENCHMARKS.md, Memory)",
        "max_run_pixels": "most image pixels (rows x height x width) per synthesis run; a batch beyond it runs in "
        "pieces, which bounds a run's memory (the default: 4 rows of 1024 px, 64 of 256 px)",
        "max_batch_size": "rows per onnxruntime run (dynamic batching)",
        "max_queue_delay_ms": "how long a queued request waits for other in-flight requests to join its run "
        "(a lone request never waits)",
        "max_queue_images": "rows waiting per model and network before RESOURCE_EXHAUSTED",
        "max_connection_age_s": "close each client connection after this many seconds (0 = never) so clients "
        "re-resolve DNS and find new replicas; in-flight calls get a grace period",
        "w_cache_bytes": "w cache size in bytes, 0 disables it",
        "w_cache_ttl_s": "w cache entry lifetime in seconds, 0 = none",
        "grace_s": "seconds in-flight work may finish after SIGTERM",
        "drain_delay_s": "after SIGTERM, seconds to keep answering health checks NOT_SERVING before closing the port",
        "auth_token_file": "file of accepted bearer tokens, one per line",
        "auth_token": "one accepted bearer token (prefer the file or the environment)",
        "tls_client_ca": "CA bundle; when given, clients must present a certificate it signed",
        "metrics_port": f"port of the Prometheus /metrics endpoint, 0 = off (the deploy files use {METRICS_PORT})",
        "model_repository": "directory of model directories (or one model directory)",
        "device_id": "CUDA device index with --device cuda/auto",
        "max_images_per_request": "most images one unary request may ask for (INVALID_ARGUMENT beyond)",
        "max_stream_images": "most images one StreamGenerate call may ask for",
        "max_message_bytes": "largest gRPC message sent or received, in bytes",
        "encode_workers": "PNG/JPEG encoding threads, 0 = one per core",
        "png_compress_level": "zlib level of PNG outputs written by Pillow, 0..9",
        "png_encoder": "lossless PNG encoder: auto (fpng where installed), fpng or pillow; pixels are identical",
        "reflection": "serve gRPC server reflection",
        "tls_cert": "PEM certificate chain; serves TLS (with --tls-key)",
        "tls_key": "PEM private key of --tls-cert",
        "metrics_host": "address the /metrics endpoint binds",
        "log_level": "DEBUG, INFO, WARNING or ERROR",
    }
    for f in fields(ServerConfig):
        env_name = ENV_PREFIX + f.name.upper()
        raw = env.get(env_name)
        typ: Any
        if f.type in ("Path", "Path | None"):
            typ = Path
        elif f.type == "bool":
            typ = _bool
        elif f.type == "int":
            typ = int
        elif f.type == "float":
            typ = float
        else:
            typ = str
        try:
            default = typ(raw) if raw is not None else defaults[f.name]
        except (ValueError, argparse.ArgumentTypeError) as exc:
            p.error(f"bad {env_name}={raw!r}: {exc}")  # exits 2, as every usage error
        shown = "<redacted>" if f.name == "auth_token" and default else default
        default_text = "" if shown is None and f.name == "model_repository" else f" (default {shown})"
        help_text = helps.get(f.name, f.name.replace("_", " ")) + f"{default_text} [env {env_name}]"
        help_text = help_text.replace("%", "%%")
        if f.name == "model_repository":
            p.add_argument(
                "model_repository", nargs="?", type=Path, default=default, help=help_text
            )
        elif f.type == "bool":
            p.add_argument("--" + f.name.replace("_", "-"), type=_bool, nargs="?", const=True, default=default,
                           metavar="BOOL", help=help_text)  # fmt: skip
        else:
            p.add_argument("--" + f.name.replace("_", "-"), type=typ, default=default, help=help_text)
    return p
