"""Serving matrix: Generate per output format and concurrency vs raw onnxruntime, batching on/off, w cache.

One run, one model (default: the FFHQ-like 64 px model of ``networks_bench.py``, z/w dim 512, exported
into ``bench/.cache/`` if missing; ``--model-dir`` for another), the same onnxruntime intra-op threads
everywhere. Every request asks for one image. Sections:

1. ``formats``: gRPC ``Generate`` (png, jpeg, raw_uint8) at each concurrency (default 1, 4, 16, 64) on a
   server with dynamic batching, against ``raw-ort``: an in-process ``ModelRuntime`` doing the same work
   per request (z from seed, ``map``, truncation, ``synthesize`` uint8 and the server's own ``encode``),
   called from C threads without batching. ``vs raw`` = served / raw throughput: 1 - that is the overhead.
2. ``batching``: the same server vs one started with ``--max-batch-size 1`` (no merging), raw_uint8,
   concurrent single-image Generate requests.
3. ``wcache``: raw_uint8 at concurrency 1 and 16: Generate with fresh seeds (cache miss: the mapping
   network runs), Generate with seeds seen before (cache hit: mapping skipped), and Synthesize from a
   cached w id (``Map(cache=True)`` first, untimed).

Seeds are unique per request unless the row says otherwise. Nothing here asserts timings.

    python bench/serve_matrix.py [--model-dir DIR] [--requests 200] [--concurrency 1,4,16,64]
                                 [--formats png,jpeg,raw_uint8] [--threads 2] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import onnxruntime as ort
from styleserve.clients import Client, Plan, Source, Style
from styleserve.server.convert import Output
from styleserve.server.imaging import encode
from styleserve.server.runtime import ModelRuntime

from styleserve.latent import broadcast_ws, truncate, z_from_seeds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_busy, loadavg, machine_info, write_json
from serve_bench import PNG_LEVEL, PSI, Seeds, Server, run_level, summarize

SEED_BASE = 5_000_000


@dataclass
class Row:
    section: str
    mode: str
    format: str
    concurrency: int
    requests: int
    img_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    synthesis_batch: float | None = None
    vs: float | None = None  # Throughput ratio to the row's reference (see ``ref``).
    ref: str = ""


def raw_one(rt: ModelRuntime, fmt: str) -> Callable[[int], bytes]:
    m = rt.manifest
    out = Output(fmt)

    def one(seed: int) -> bytes:
        w = rt.map(z_from_seeds([seed], m.z_dim))
        ws = truncate(broadcast_ws(w, m.num_ws), rt.w_avg, PSI)
        img = rt.synthesize(ws, output="uint8")
        data: bytes = encode(img[0], out, PNG_LEVEL).data
        return data

    return one


def measure(section: str, mode: str, fmt: str, c: int, one: Callable[[int], bytes], seeds: Sequence[int],
            warm: Sequence[int], server: Server | None = None) -> Row:  # fmt: skip
    run_level(one, warm, c)
    before = server.batch_rows() if server else {}
    wall, lat, err = run_level(one, seeds, c)
    r = summarize(mode, c, wall, lat, err)
    row = Row(section, mode, fmt, c, r.requests, r.img_per_s, r.p50_ms, r.p99_ms, err)
    if server is not None:
        s1, n1 = server.batch_rows().get("synthesis", (0.0, 0.0))
        s0, n0 = before.get("synthesis", (0.0, 0.0))
        row.synthesis_batch = round((s1 - s0) / (n1 - n0), 2) if n1 > n0 else None
    print(f"  {section:<8} {mode:<22} {fmt:<9} c={c:<3d} {row.img_per_s:8.1f} img/s  p50 {row.p50_ms:8.2f} ms  "
          f"p99 {row.p99_ms:8.2f} ms  batch {row.synthesis_batch}", flush=True)  # fmt: skip
    return row


def server_args(threads: int, max_batch: int) -> list[str]:
    return ["--intra-op-threads", str(threads), "--max-batch-size", str(max_batch),
            "--png-compress-level", str(PNG_LEVEL)]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--model-dir", type=Path, default=None, help="default: the FFHQ-like 64 px bench model")
    p.add_argument("--requests", type=int, default=200, help="measured requests per row")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured requests before each row")
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--formats", default="png,jpeg,raw_uint8")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--skip", default="", help="comma-separated sections to skip: formats, batching, wcache")
    p.add_argument("--quick", action="store_true", help="40 requests per row, concurrency 1,16 (a smoke run)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if a.quick:
        a.requests, a.warmup, a.concurrency = 40, 5, "1,16"
    levels = [int(x) for x in a.concurrency.split(",") if x.strip()]
    formats = [x.strip() for x in a.formats.split(",") if x.strip()]
    skip = {x.strip() for x in a.skip.split(",") if x.strip()}
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(SystemExit(128 + s)))
    if a.model_dir is None:
        from networks_bench import build

        _, a.model_dir = build(64)
    busy, load0 = cpu_busy(), loadavg()
    if busy is not None and busy > 0.1:
        print(f"warning: the CPU was {busy:.0%} busy before the benchmark started; numbers will be noisy", flush=True)
    seeds = Seeds(SEED_BASE)
    n, w = a.requests, a.warmup
    rows: list[Row] = []

    rt = ModelRuntime(a.model_dir, device="cpu", intra_op_threads=a.threads)
    rt.warmup((1,))
    m = rt.manifest
    raw: dict[tuple[str, int], Row] = {}
    if "formats" not in skip or "batching" not in skip:
        print("raw onnxruntime (in-process ModelRuntime, per request, no batching) ...", flush=True)
        for fmt in formats if "formats" not in skip else ["raw_uint8"]:
            for c in levels:
                raw[(fmt, c)] = measure("formats", "raw-ort", fmt, c, raw_one(rt, fmt), seeds.take(n), seeds.take(w))
                rows.append(raw[(fmt, c)])
    del rt

    with tempfile.TemporaryDirectory(prefix="serve-matrix-") as tmp:
        server = Server(a.model_dir, server_args(a.threads, a.max_batch_size), Path(tmp))
        try:
            server.wait_serving()
            with Client(server.target, timeout=120.0) as client:

                def gen(fmt: str) -> Callable[[int], bytes]:
                    def one(seed: int) -> bytes:
                        (img,) = client.generate(m.name, [seed], psi=PSI, format=fmt)
                        data: bytes = img.data
                        return data

                    return one

                if "formats" not in skip:
                    print(f"gRPC Generate (--max-batch-size {a.max_batch_size}) ...", flush=True)
                    for fmt in formats:
                        for c in levels:
                            r = measure("formats", "grpc", fmt, c, gen(fmt), seeds.take(n), seeds.take(w), server)
                            r.vs, r.ref = round(r.img_per_s / raw[(fmt, c)].img_per_s, 3), f"raw-ort {fmt} c={c}"
                            rows.append(r)
                batched: dict[int, Row] = {}
                if "batching" not in skip:
                    for c in [x for x in levels if x > 1]:
                        r = measure("batching", f"batching on (max {a.max_batch_size})", "raw_uint8", c,
                                    gen("raw_uint8"), seeds.take(n), seeds.take(w), server)  # fmt: skip
                        batched[c] = r
                        rows.append(r)
                if "wcache" not in skip:
                    print("w cache ...", flush=True)
                    for c in (1, 16):
                        miss = measure("wcache", "generate, new seed", "raw_uint8", c, gen("raw_uint8"),
                                       seeds.take(n), seeds.take(w), server)  # fmt: skip
                        hot = seeds.take(n)
                        run_level(gen("raw_uint8"), hot, c)  # Puts every seed's w into the cache.
                        hit = measure("wcache", "generate, cached seed", "raw_uint8", c, gen("raw_uint8"), hot,
                                      [], server)  # fmt: skip
                        ids: dict[int, str] = {}
                        fresh = seeds.take(n + w)
                        for i in range(0, len(fresh), 16):
                            chunk = fresh[i : i + 16]
                            mapped = client.map(m.name, seeds=chunk, psi=PSI, return_w=False, cache=True)
                            ids.update({s: str(x.w_id) for s, x in zip(chunk, mapped, strict=True)})

                        def syn(seed: int, ids: dict[int, str] = ids) -> bytes:
                            plan = Plan([Style(Source.from_w_id(ids[seed]))])
                            (img,) = client.synthesize(m.name, [plan], format="raw_uint8")
                            data: bytes = img.data
                            return data

                        cached = measure("wcache", "synthesize, cached w id", "raw_uint8", c, syn, fresh[w:],
                                         fresh[:w], server)  # fmt: skip
                        for r in (hit, cached):
                            r.vs, r.ref = round(r.img_per_s / miss.img_per_s, 3), f"generate, new seed c={c}"
                        rows += [miss, hit, cached]
        finally:
            server.stop()
        if "batching" not in skip and batched:
            (Path(tmp) / "off").mkdir()
            server = Server(a.model_dir, server_args(a.threads, 1), Path(tmp) / "off")
            try:
                server.wait_serving()
                with Client(server.target, timeout=120.0) as client:
                    for c, on in batched.items():
                        r = measure("batching", "batching off (max 1)", "raw_uint8", c, gen("raw_uint8"),
                                    seeds.take(n), seeds.take(w), server)  # fmt: skip
                        on.vs, on.ref = round(on.img_per_s / r.img_per_s, 3), f"batching off c={c}"
                        base = raw[("raw_uint8", c)].img_per_s
                        r.vs, r.ref = round(r.img_per_s / base, 3), f"raw-ort raw_uint8 c={c}"
                        rows.append(r)
            finally:
                server.stop()

    machine = machine_info()
    machine.update(
        threads=a.threads, onnxruntime=ort.__version__, python=platform.python_version(),
        cpu_busy_before=None if busy is None else round(busy, 3), loadavg_before=load0, loadavg_after=loadavg(),
        model=f"{m.name} ({a.model_dir}), {m.img_resolution} px, z/w dim {m.z_dim}/{m.w_dim}, num_ws {m.num_ws}",
    )  # fmt: skip
    print()
    for k, v in machine.items():
        print(f"{k:>16}: {v}")
    print()
    print(table(rows))
    write_json(a.json, {"machine": machine, "settings": {k: str(v) for k, v in vars(a).items()},
                        "rows": [asdict(r) for r in rows]})  # fmt: skip
    return 0


def table(rows: Sequence[Row]) -> str:
    head = ["section", "mode", "format", "concurrency", "img/s", "p50 ms", "p99 ms", "mean synthesis batch",
            "throughput ratio", "ratio vs"]  # fmt: skip
    out = [head, ["---"] * len(head)]
    for r in rows:
        out.append([r.section, r.mode, r.format, str(r.concurrency), f"{r.img_per_s:.1f}", f"{r.p50_ms:.1f}",
                    f"{r.p99_ms:.1f}", "-" if r.synthesis_batch is None else f"{r.synthesis_batch:.2f}",
                    "-" if r.vs is None else f"{r.vs:.2f}x", r.ref or "-"])  # fmt: skip
    return "\n".join("| " + " | ".join(x) + " |" for x in out)


if __name__ == "__main__":
    sys.exit(main())
