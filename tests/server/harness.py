"""A real ``styleserve serve`` process on a free loopback port, for the tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from styleserve.v1 import styleserve_pb2_grpc as pb_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``styleserve serve REPO --port 0 ...``; the bound port is read from the log."""

    def __init__(self, repo: Path, *args: str, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.metrics_port = free_port()
        self.log_path = log_dir / f"server-{self.metrics_port}.log"
        self._log = self.log_path.open("wb")
        cmd = [
            sys.executable,
            "-m",
            "styleserve.cli",
            "serve",
            str(repo),
            "--port",
            "0",
            "--metrics-port",
            str(self.metrics_port),
            "--intra-op-threads",
            "1",
            *args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.port = 0
        self.channels: list[grpc.Channel] = []
        self.credentials: grpc.ChannelCredentials | None = None  # TLS servers: set before waiting.

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = 60.0) -> ServerProcess:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = re.search(r"listening on [^ ]+:(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        raise TimeoutError(f"server did not listen within {timeout} s:\n{self.log()}")

    def wait_serving(self, timeout: float = 60.0) -> ServerProcess:
        self.wait_listening(timeout)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.health() == health_pb2.HealthCheckResponse.SERVING:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        raise TimeoutError(f"server not SERVING within {timeout} s:\n{self.log()}")

    def channel(self, credentials: grpc.ChannelCredentials | None = None, **options: Any) -> grpc.Channel:
        opts = [("grpc.max_receive_message_length", 64 * 2**20), ("grpc.max_send_message_length", 64 * 2**20)]
        opts += list(options.items())
        credentials = credentials or self.credentials
        if credentials is None:
            ch = grpc.insecure_channel(self.target, options=opts)
        else:
            ch = grpc.secure_channel(f"localhost:{self.port}", credentials, options=opts)
        self.channels.append(ch)
        return ch

    def stub(self) -> pb_grpc.StyleServeStub:
        return pb_grpc.StyleServeStub(self.channel())

    def health(self, service: str = "") -> int:
        stub = health_pb2_grpc.HealthStub(self.channel())
        try:
            return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status)
        except grpc.RpcError:
            return -1

    def metrics(self) -> dict[str, float]:
        """Samples as ``{'name{label="v",...}': value}`` plus unlabelled sums per sample name."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
                out[s.name] = out.get(s.name, 0.0) + s.value
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        for ch in self.channels:
            ch.close()
        self.channels.clear()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)
