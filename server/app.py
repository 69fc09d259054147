"""The server process: ``styleserve serve MODEL_REPOSITORY [flags]``.

Start-up order: build the config, load every model (a broken one stops the start, naming the
file), listen with health NOT_SERVING, warm every model up, then report SERVING. On SIGTERM or
SIGINT: health NOT_SERVING, refuse new work (UNAVAILABLE), keep the port open ``drain_delay_s`` for
load balancers to notice, then let in-flight work finish within ``grace_s`` and exit 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from styleserve import __version__
from styleserve.errors import StyleServeError
from styleserve.v1 import styleserve_pb2 as pb

from . import oip
from .auth import TokenAuthInterceptor
from .config import ServerConfig
from .engine import Engine
from .metrics import Metrics
from .repository import load_repository
from .service import StyleServeServicer, add_to_server

log = logging.getLogger("styleserve.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["StyleServe"].full_name


def grpc_options(config: ServerConfig) -> list[tuple[str, int]]:
    n = config.max_message_bytes
    opts = [("grpc.max_send_message_length", n), ("grpc.max_receive_message_length", n), ("grpc.so_reuseport", 0)]
    if config.max_connection_age_s > 0:
        # Clients reconnect (and re-resolve a headless Service) after this; in-flight calls get the grace period.
        opts += [
            ("grpc.max_connection_age_ms", int(config.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", int(max(config.grace_s, 1.0) * 1000)),
        ]
    return opts


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    ca = config.tls_client_ca.read_bytes() if config.tls_client_ca is not None else None
    return grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


async def serve(config: ServerConfig, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (by default: SIGTERM or SIGINT)."""
    log.info("styleserve %s (Python %s)", __version__, sys.version.split()[0])
    log.info("config %s", json.dumps(config.describe(), sort_keys=True))
    runtimes = load_repository(config)
    for name, rt in runtimes.items():
        log.info("loaded model %s from %s (%s, %s)", name, rt.dir, rt.provider, rt.synthesis_file)
    metrics = Metrics(process=True)
    cuda_ids = sorted({rt.device_id for rt in runtimes.values() if rt.on_cuda})
    if cuda_ids and metrics.add_gpu_collector(cuda_ids):
        log.info("GPU memory metrics from NVML for devices %s", cuda_ids)
    engine = Engine(runtimes, config, metrics)
    tokens = config.tokens
    server = grpc.aio.server(
        options=grpc_options(config), interceptors=[TokenAuthInterceptor(tokens)] if tokens else []
    )
    add_to_server(StyleServeServicer(engine), server)
    oip.add_to_server(engine, server)  # KServe Open Inference Protocol, same port (docs/OIP.md)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    if config.reflection:
        names = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
    address = f"{config.host}:{config.port}"
    creds = server_credentials(config)
    port = server.add_secure_port(address, creds) if creds is not None else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    engine.start()
    await server.start()
    log.info(
        "listening on %s:%d (%s%s)",
        config.host,
        port,
        "TLS" if creds else "plaintext",
        ", token auth" if tokens else "",
    )
    if config.metrics_port:
        metrics.serve_http(config.metrics_port, config.metrics_host)
        log.info("metrics on http://%s:%d/metrics", config.metrics_host, config.metrics_port)

    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    warm = asyncio.ensure_future(engine.warmup())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([warm, stopping], return_when=asyncio.FIRST_COMPLETED)
        if warm.done():
            warm.result()  # Raises if a model failed its warm-up.
            for service in ("", SERVICE_NAME):
                await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
            log.info("serving %s", ", ".join(sorted(engine.models)))
            await stopping
        log.info("draining: finishing in-flight work for up to %.1f s", config.grace_s)
    finally:
        warm.cancel()
        stopping.cancel()
        await health_servicer.enter_graceful_shutdown()
        await engine.drain()
        if config.drain_delay_s and warm.done():
            await asyncio.sleep(config.drain_delay_s)  # Load balancers see NOT_SERVING; new work gets UNAVAILABLE.
        await server.stop(config.grace_s)
        await engine.close()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    config = ServerConfig.from_args(argv)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        asyncio.run(serve(config))
    except (StyleServeError, OSError, RuntimeError) as exc:
        log.error("cannot serve: %s", exc)
        return 2
    except Exception:
        log.exception("the server failed")
        return 1
    return 0
