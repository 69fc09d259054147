"""End-to-end benchmark of the gRPC ``Generate`` RPC against raw onnxruntime in the same run.

What is measured: one image per request, seed -> mapping -> truncation (psi 0.7) -> synthesis -> PNG
bytes, at each concurrency level (default 1 and 16). For every level the script reports throughput
(images per second over the wall time of the whole level) and p50/p99 per-request latency.

* ``grpc``: a ``styleserve serve`` subprocess (dynamic batching, w cache, encoding pool) driven by
  ``styleserve.clients.Client.generate`` from C client threads of this process over loopback.
* ``raw-ort``: the baseline, the same work without the service: one in-process ``ModelRuntime``
  (its raw onnxruntime sessions), each request doing z from seed, ``map``, ``truncate``, ``synthesize``
  (uint8) and a Pillow PNG encode (compress_level 1, the server's default), called from C threads
  without batching (ORT sessions are thread-safe).

Both sides use the same onnxruntime intra-op thread count and run one after the other, never at
the same time. Every request uses its own seed, so the server's w cache never hits and the mapping
network runs for every request, as in the baseline. Nothing here asserts timings.

    python bench/serve_bench.py [--model-dir models/demo] [--requests N] [--warmup N] [--concurrency 1,16]
                                [--max-batch-size 16] [--max-queue-delay-ms X] [--threads T] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
from grpc_health.v1 import health_pb2, health_pb2_grpc
from machine import cpu_busy, cpu_model  # bench/machine.py (bench/ is sys.path[0] for scripts)
from PIL import Image
from styleserve.clients import Client
from styleserve.server.config import ServerConfig
from styleserve.server.runtime import ModelRuntime

from styleserve.latent import broadcast_ws, truncate, z_from_seeds

PSI = 0.7
PNG_LEVEL = ServerConfig.png_compress_level  # The server's default (1), passed to it explicitly too.
SEED_BASE = 1_000_000  # Request seeds are SEED_BASE + a run-wide counter: never repeated, never cached.


# ----------------------------------------------------------------------------------- measurement


@dataclass
class Result:
    mode: str  # grpc | raw-ort
    concurrency: int
    requests: int
    wall_s: float
    img_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    errors: int = 0
    batch_rows: dict[str, float] = field(default_factory=dict)  # network -> mean rows per ORT run (grpc only)
    vs_raw: float | None = None  # Throughput relative to raw-ort at the same concurrency.


class Seeds:
    """A thread-safe run-wide seed counter."""

    def __init__(self, base: int) -> None:
        self._next = base
        self._lock = threading.Lock()

    def take(self, n: int) -> list[int]:
        with self._lock:
            start = self._next
            self._next += n
        return list(range(start, start + n))


def run_level(one: Callable[[int], bytes], seeds: Sequence[int], concurrency: int) -> tuple[float, list[float], int]:
    """Run ``one(seed)`` for every seed from ``concurrency`` threads pulling from a shared queue.

    Returns (wall seconds, per-request latencies in seconds, error count).
    """
    lock = threading.Lock()
    todo = iter(seeds)
    latencies: list[float] = []
    errors: list[BaseException] = []
    start = threading.Barrier(concurrency + 1)

    def worker() -> None:
        mine: list[float] = []
        start.wait()
        while True:
            with lock:
                seed = next(todo, None)
            if seed is None:
                break
            t0 = time.perf_counter()
            try:
                data = one(seed)
                if not data:
                    raise RuntimeError(f"seed {seed}: empty image")
            except Exception as exc:  # Counted and reported, not fatal.
                with lock:
                    errors.append(exc)
                continue
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        while t.is_alive():  # join() with a timeout so that Ctrl-C / SIGTERM get through.
            t.join(0.2)
    wall = time.perf_counter() - t0
    if errors:
        print(f"  {len(errors)} failed requests, first: {errors[0]!r}", file=sys.stderr)
    return wall, latencies, len(errors)


def summarize(mode: str, concurrency: int, wall: float, lat: list[float], errors: int) -> Result:
    arr = np.asarray(lat, dtype=np.float64) * 1000 if lat else np.full(1, np.nan)
    return Result(
        mode=mode,
        concurrency=concurrency,
        requests=len(lat),
        wall_s=round(wall, 3),
        img_per_s=round(len(lat) / wall, 1) if wall > 0 else 0.0,
        p50_ms=round(float(np.percentile(arr, 50)), 2),
        p99_ms=round(float(np.percentile(arr, 99)), 2),
        mean_ms=round(float(arr.mean()), 2),
        errors=errors,
    )


# ---------------------------------------------------------------------------------- raw baseline


def raw_request(rt: ModelRuntime) -> Callable[[int], bytes]:
    """The server's Generate work for one seed, directly on the onnxruntime sessions."""
    m = rt.manifest

    def one(seed: int) -> bytes:
        z = z_from_seeds([seed], m.z_dim)  # [1, z_dim]
        w = rt.map(z)  # [1, w_dim]
        ws = truncate(broadcast_ws(w, m.num_ws), rt.w_avg, PSI)  # [1, num_ws, w_dim]
        img = rt.synthesize(ws, output="uint8")  # [1, H, W, C]
        pil = Image.fromarray(img[0, :, :, 0] if img.shape[-1] == 1 else img[0])
        buf = io.BytesIO()
        pil.save(buf, format="PNG", compress_level=PNG_LEVEL)
        return buf.getvalue()

    return one


def bench_raw(
    model_dir: Path, threads: int, levels: Sequence[int], requests: int, warmup: int, seeds: Seeds
) -> tuple[list[Result], ModelRuntime]:
    rt = ModelRuntime(model_dir, device="cpu", intra_op_threads=threads)
    rt.warmup((1,))
    one = raw_request(rt)
    out = []
    for c in levels:
        run_level(one, seeds.take(warmup), c)
        wall, lat, err = run_level(one, seeds.take(requests), c)
        out.append(summarize("raw-ort", c, wall, lat, err))
        print(f"  raw-ort  c={c:<3d} {out[-1].img_per_s:8.1f} img/s  p50 {out[-1].p50_ms:.2f} ms", flush=True)
    return out, rt


# ------------------------------------------------------------------------------------ the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``styleserve serve MODEL_DIR --port 0 --metrics-port P ...`` as a subprocess; stop() always ends it."""

    def __init__(self, model_dir: Path, args: Sequence[str], log_dir: Path) -> None:
        self.metrics_port = free_port()
        self.log_path = log_dir / "server.log"
        self._log = self.log_path.open("wb")
        cmd = [sys.executable, "-m", "styleserve.cli", "serve", str(model_dir), "--port", "0",
               "--metrics-port", str(self.metrics_port), "--device", "cpu", *args]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")

    def wait_serving(self, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while not self.port:
            m = re.search(r"listening on [^ ]+:(\d+)", self.log())
            if m:
                self.port = int(m.group(1))
                break
            self._alive()
            if time.monotonic() > end:
                raise TimeoutError(f"server did not listen within {timeout} s:\n{self.log()[-4000:]}")
            time.sleep(0.05)
        with grpc.insecure_channel(self.target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
                except grpc.RpcError:
                    status = -1
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
                self._alive()
                if time.monotonic() > end:
                    raise TimeoutError(f"server not SERVING within {timeout} s:\n{self.log()[-4000:]}")
                time.sleep(0.05)

    def batch_rows(self) -> dict[str, tuple[float, float]]:
        """``{network: (styleserve_batch_size_sum, _count)}`` summed over models, from /metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        out: dict[str, list[float]] = {}
        pat = re.compile(r"^styleserve_batch_size_(sum|count)\{([^}]*)\}\s+(\S+)$")
        for line in text.splitlines():
            m = pat.match(line)
            if not m:
                continue
            net = re.search(r'network="([^"]*)"', m.group(2))
            if net is None:
                continue
            acc = out.setdefault(net.group(1), [0.0, 0.0])
            acc[0 if m.group(1) == "sum" else 1] += float(m.group(3))
        return {k: (v[0], v[1]) for k, v in out.items()}

    def stop(self, timeout: float = 30.0) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            self._log.close()


def bench_grpc(
    model_dir: Path, model: str, server_args: Sequence[str], levels: Sequence[int], requests: int, warmup: int,
    seeds: Seeds, log_dir: Path,
) -> tuple[list[Result], bytes]:  # fmt: skip
    server = Server(model_dir, server_args, log_dir)
    out: list[Result] = []
    try:
        server.wait_serving()
        with Client(server.target, timeout=60.0) as client:

            def one(seed: int) -> bytes:
                (img,) = client.generate(model, [seed], psi=PSI, format="png")
                data: bytes = img.data
                return data

            for c in levels:
                run_level(one, seeds.take(warmup), c)
                before = server.batch_rows()
                wall, lat, err = run_level(one, seeds.take(requests), c)
                after = server.batch_rows()
                res = summarize("grpc", c, wall, lat, err)
                for net, (s1, n1) in after.items():
                    s0, n0 = before.get(net, (0.0, 0.0))
                    if n1 > n0:
                        res.batch_rows[net] = round((s1 - s0) / (n1 - n0), 2)
                out.append(res)
                mean_batch = res.batch_rows.get("synthesis", float("nan"))
                print(
                    f"  grpc     c={c:<3d} {res.img_per_s:8.1f} img/s  p50 {res.p50_ms:.2f} ms  "
                    f"mean synthesis batch {mean_batch:.2f}",
                    flush=True,
                )
            sample = one(SEED_BASE - 1)
    finally:
        server.stop()
    return out, sample


# ------------------------------------------------------------------------------------------ main


def ensure_model(model_dir: Path) -> None:
    if (model_dir / "model.json").is_file():
        return
    exe = shutil.which("styleserve-export") or str(Path(sys.executable).with_name("styleserve-export"))
    print(f"exporting the demo model into {model_dir} ...", flush=True)
    subprocess.run([exe, "--demo", str(model_dir), "--overwrite"], check=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--model-dir", type=Path, default=Path("models/demo"), help="model directory (demo exported if absent)"
    )
    p.add_argument("--requests", type=int, default=2000, help="measured requests per mode and concurrency level")
    p.add_argument("--warmup", type=int, default=100, help="unmeasured requests before each level")
    p.add_argument("--concurrency", default="1,16", help="comma-separated concurrency levels")
    p.add_argument("--max-batch-size", type=int, default=16, help="server --max-batch-size")
    p.add_argument(
        "--max-queue-delay-ms",
        type=float,
        default=ServerConfig.max_queue_delay_ms,
        help="server --max-queue-delay-ms (default: the server's default)",
    )
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="onnxruntime intra-op threads, both sides")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = p.parse_args(argv)
    a.levels = [int(x) for x in str(a.concurrency).split(",") if x.strip()]
    if not a.levels or min(a.levels) < 1 or a.requests < 1 or a.warmup < 0 or a.threads < 1:
        p.error("concurrency levels, --requests and --threads must be >= 1, --warmup >= 0")
    return a


def table(results: Sequence[Result]) -> str:
    head = ["mode", "concurrency", "requests", "img/s", "p50 ms", "p99 ms", "throughput vs raw ORT (same concurrency)"]
    rows = [head, ["---"] * len(head)]
    for r in results:
        vs = f"{r.vs_raw:.2f}x" if r.vs_raw is not None else "-"
        if r.batch_rows.get("synthesis") is not None:
            vs += f" (mean synthesis batch {r.batch_rows['synthesis']:.2f})"
        rows.append([r.mode, str(r.concurrency), str(r.requests), f"{r.img_per_s:.1f}", f"{r.p50_ms:.2f}",
                     f"{r.p99_ms:.2f}", vs])  # fmt: skip
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # Unwinds through the finally that stops the server.


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    ensure_model(a.model_dir)
    seeds = Seeds(SEED_BASE)
    busy = cpu_busy()
    if busy is not None and busy > 0.1:
        print(f"warning: the CPU was {busy:.0%} busy before the benchmark started; numbers will be noisy", flush=True)
    server_args = [
        "--intra-op-threads", str(a.threads),
        "--max-batch-size", str(a.max_batch_size),
        "--max-queue-delay-ms", str(a.max_queue_delay_ms),
        "--png-compress-level", str(PNG_LEVEL),
    ]  # fmt: skip

    print("raw onnxruntime baseline (in-process ModelRuntime, no batching) ...", flush=True)
    raw, rt = bench_raw(a.model_dir, a.threads, a.levels, a.requests, a.warmup, seeds)
    m = rt.manifest
    expected = raw_request(rt)(SEED_BASE - 1)
    provider = rt.provider
    del rt  # Free the baseline's sessions before the server runs.

    print("gRPC server (subprocess; clients in this process) ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        served, sample = bench_grpc(a.model_dir, m.name, server_args, a.levels, a.requests, a.warmup, seeds, Path(tmp))
    raw_by_c = {r.concurrency: r for r in raw}
    for r in served:
        r.vs_raw = round(r.img_per_s / raw_by_c[r.concurrency].img_per_s, 3)
    results = [x for c in a.levels for x in (raw_by_c[c], *[r for r in served if r.concurrency == c])]
    with Image.open(io.BytesIO(sample)) as s, Image.open(io.BytesIO(expected)) as e:
        pixel_diff = int(np.abs(np.asarray(s, np.int16) - np.asarray(e, np.int16)).max())

    machine: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpu": "none" if provider == "CPUExecutionProvider" else provider,
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "provider": provider,
        "intra_op_threads": a.threads,
        "cpu_busy_before": None if busy is None else round(busy, 3),
        "model": f"{m.name} ({a.model_dir}), {m.img_resolution}x{m.img_resolution}x{m.img_channels}, "
        f"z_dim {m.z_dim}, w_dim {m.w_dim}, num_ws {m.num_ws}",
    }
    print()
    for k, v in machine.items():
        print(f"{k:>16}: {v}")
    print(f"{'server':>16}: {' '.join(server_args)}")
    print(
        f"{'workload':>16}: Generate, 1 image/request, psi {PSI}, PNG level {PNG_LEVEL}, {a.requests} requests "
        f"per row after {a.warmup} warm-up"
    )
    print(f"{'seeds':>16}: unique per request (the server's w cache never hits; mapping runs for every request)")
    print(f"{'check':>16}: max |pixel diff| server vs raw ORT for seed {SEED_BASE - 1}: {pixel_diff}")
    print()
    print(table(results))
    if any(r.errors for r in results):
        print(f"\nfailed requests: {sum(r.errors for r in results)} (excluded from latencies)")
    if a.json is not None:
        doc = {
            "machine": machine,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items() if k != "json"},
            "pixel_diff": pixel_diff,
            "results": [asdict(r) for r in results],
        }
        a.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
