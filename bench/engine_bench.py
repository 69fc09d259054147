"""Synthesis throughput and error: onnxruntime vs OpenVINO fp32 (static buckets) vs OpenVINO bf16, one run.

What is measured, in one process, one engine after the other, with the same thread count:

* ``ort``: the exported FFHQ-like model through :class:`styleserve.server.runtime.ModelRuntime` (the
  server's onnxruntime session and options).
* ``ov-fp32`` / ``ov-bf16``: the same ``synthesis.onnx`` through
  :class:`styleserve.server.engine_openvino.OpenVINORuntime` (the server's ``--engine openvino`` code path:
  static-shape buckets compiled, verified against onnxruntime and timed at warm-up). bf16 only on CPUs with
  AVX-512 BF16 / AMX.

Per batch size: images/s of ``run_synthesis`` (const noise, float output; median of timed calls), and the
max abs difference of the float image to onnxruntime's on the same inputs. Then the error over many seeds
(``--error-seeds``, psi 1, const and random noise), the warm-up cost per bucket (compile seconds, resident
memory added), pad vs split for 3 rows (one padded run of the 4-bucket vs runs of 2 + 1), and with
``--serve`` end-to-end ``Generate`` (PNG, psi 0.7) through a real server per engine at one concurrency.
Load average and cores busy are printed before and after: rerun when other load was high.

Models: ``bench/networks_bench.py``'s FFHQ-like configs (z = w = 512, channel_max 512, channel_base 16384,
random seeded weights), exported once into ``bench/.cache/``.

    python bench/engine_bench.py [--resolutions 64,256] [--batches 1,4,16] [--threads 2] [--error-seeds 32]
                                 [--serve] [--serve-requests 32] [--serve-rounds 3] [--serve-concurrency 4]
                                 [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import openvino as ov
from styleserve.clients import Client
from styleserve.server.engine_openvino import BF16_MAX_ABS, FP32_MAX_ABS, OpenVINORuntime, cpu_has_bf16
from styleserve.server.ov_passes import DEFAULT_RULE
from styleserve.server.runtime import IMAGE_FLOAT, ModelRuntime, NoiseSpec

from styleserve.latent import z_from_seeds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_busy, loadavg, machine_info, write_json
from networks_bench import build, measure


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def seeds_ws(rt: ModelRuntime, seeds: Sequence[int]) -> np.ndarray:
    """ws ``[N, num_ws, w_dim]`` of the seeds (official z, psi 1)."""
    m = rt.manifest
    w = rt.map(z_from_seeds(list(seeds), m.z_dim))
    return np.ascontiguousarray(np.repeat(w[:, None], m.num_ws, axis=1))


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def bench_res(res: int, batches: Sequence[int], a: argparse.Namespace, out: dict[str, Any]) -> None:
    _, model_dir = build(res)
    top = max(batches)
    rt_ort = ModelRuntime(model_dir, device="cpu", intra_op_threads=a.threads)
    rt_ort.warmup((1,))
    engines: dict[str, ModelRuntime] = {"ort": rt_ort}
    warm: dict[str, Any] = {}
    # label -> (precision, graph rewrites); "fp32-as-read" gives the rewrites' gain in the same run.
    variants = {"fp32": ("fp32", DEFAULT_RULE), "fp32-as-read": ("fp32", None)}
    if cpu_has_bf16():
        variants["bf16"] = ("bf16", None)
    for prec, (precision, rule) in variants.items():
        gc.collect()
        before = rss_mib()
        t0 = time.perf_counter()
        rt = OpenVINORuntime(model_dir, precision=precision, max_batch_size=top, device="cpu",
                             intra_op_threads=a.threads, rewrite_rule=rule)  # fmt: skip
        if prec == "bf16":
            rt.max_abs = float("inf")  # Measure the error rather than refuse: the bound is set from these figures.
        rt.warmup()
        warm[prec] = {
            "warmup_s": round(time.perf_counter() - t0, 2),
            "rss_added_mib": round(rss_mib() - before, 1),
            "compile_s": {b: round(s, 2) for b, s in rt.compile_seconds.items()},
            "run_ms": {b: round(1000 * s, 2) for b, s in rt.run_seconds.items()},
            "verify_max_abs": rt.verify_error,
            "rewrites": rt.rewrites,
        }
        print(f"  {res} px ov-{prec} warm-up: {warm[prec]}", flush=True)
        engines[f"ov-{prec}"] = rt
    rows = []
    for b in batches:
        ws = seeds_ws(rt_ort, range(b))
        ref = rt_ort.run_synthesis(ws, None, (IMAGE_FLOAT,))[IMAGE_FLOAT]
        row: dict[str, Any] = {"res": res, "batch": b}
        for name, rt in engines.items():
            time.sleep(0.3)  # The previous engine's idle threads stop spinning.
            got = rt.run_synthesis(ws, None, (IMAGE_FLOAT,))[IMAGE_FLOAT]
            s = measure(lambda rt=rt, ws=ws: rt.run_synthesis(ws, None, (IMAGE_FLOAT,)), a.min_time, a.min_reps)
            row[name] = {"img_per_s": round(b / s, 2), "max_abs_vs_ort": max_abs(got, ref)}
        for name in engines:
            row[name]["vs_ort"] = round(row[name]["img_per_s"] / row["ort"]["img_per_s"], 3)
        rows.append(row)
        print("  " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    # Error over many seeds, const and random noise, in runs of the largest bucket.
    errors: dict[str, dict[str, float]] = {}
    seeds = list(range(a.error_seeds))
    for mode in ("const", "random"):
        for lo in range(0, len(seeds), top):
            chunk = seeds[lo : lo + top]
            ws = seeds_ws(rt_ort, chunk)
            specs = [NoiseSpec(mode, seed=s) for s in chunk]
            ref = rt_ort.run_synthesis(ws, specs, (IMAGE_FLOAT,))[IMAGE_FLOAT]
            for name, rt in engines.items():
                if name == "ort":
                    continue
                got = rt.run_synthesis(ws, specs, (IMAGE_FLOAT,))[IMAGE_FLOAT]
                per_image = np.abs(got.astype(np.float64) - ref).reshape(len(chunk), -1).max(axis=1)
                e = errors.setdefault(name, {})
                e[f"{mode}_max"] = max(e.get(f"{mode}_max", 0.0), float(per_image.max()))
                e.setdefault("_all", []).extend(per_image.tolist())  # type: ignore[attr-defined]
    for e in errors.values():
        values = e.pop("_all")  # type: ignore[misc]
        e["median_per_image"] = float(np.median(values))  # type: ignore[arg-type]
    print(f"  {res} px errors over {len(seeds)} seeds vs ort: {errors}", flush=True)
    # Pad vs split for 3 rows, from buckets 4, 2 and 1 at full rows.
    pad_split: dict[str, Any] = {}
    for name, rt in engines.items():
        if not isinstance(rt, OpenVINORuntime) or not {1, 2, 4} <= set(rt.buckets):
            continue
        ws4 = seeds_ws(rt_ort, range(4))

        def run(n: int, rt: OpenVINORuntime = rt, ws4: np.ndarray = ws4) -> object:
            return rt._run_ov(ws4[:n], dict(rt.noise_const), [IMAGE_FLOAT])

        t = {n: measure(lambda n=n: run(n), a.min_time, a.min_reps) for n in (1, 2)}
        saved = dict(rt.run_seconds)
        rt.run_seconds = {4: 1.0}  # Force one padded run of the 4-bucket.
        t4 = measure(lambda: run(3), a.min_time, a.min_reps)
        rt.run_seconds = saved
        pad_split[name] = {"pad_4_ms": round(1000 * t4, 2), "split_2_1_ms": round(1000 * (t[1] + t[2]), 2)}
    print(f"  {res} px 3 rows, pad vs split: {pad_split}", flush=True)
    out["models"].append({"res": res, "model_dir": str(model_dir), "warmup": warm, "rows": rows,
                          "errors": errors, "pad_vs_split_3_rows": pad_split})  # fmt: skip
    del engines, rt_ort
    gc.collect()


def bench_serve(res: int, a: argparse.Namespace, out: dict[str, Any]) -> None:
    """End-to-end Generate through a real server per engine, against the raw onnxruntime session, interleaved.

    One server per engine is started and warmed up; then ``--serve-rounds`` rounds each measure, one after
    the other, the raw onnxruntime session (``run_synthesis`` at batch 1 and 4, the server's own session
    class in this process) and ``--serve-requests`` Generate calls at ``--serve-concurrency`` on every server.
    Medians over the rounds are reported, and each engine's ratio to the raw session's best batch is taken
    round by round (the same minute of the same machine) before its median: a slow minute on a shared
    host moves both sides of a ratio, not one.
    """
    from serve_bench import PSI, Server, run_level, summarize

    _, model_dir = build(res)
    name = f"ffhq{res}"
    runs = {"ort": [], "ov-fp32": ["--engine", "openvino"],
            "ov-fp32-as-read": ["--engine", "openvino", "--graph-rewrites", "false"]}  # fmt: skip
    if cpu_has_bf16():
        runs["ov-bf16"] = ["--engine", "openvino", "--precision", "bf16"]
    common = ["--intra-op-threads", str(a.threads), "--max-batch-size", str(a.serve_max_batch)]
    rt_ort = ModelRuntime(model_dir, device="cpu", intra_op_threads=a.threads)
    rt_ort.warmup((1, 4))
    ws = {b: seeds_ws(rt_ort, range(b)) for b in (1, 4)}
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as log_dir:
        servers: dict[str, Any] = {}
        clients: dict[str, Client] = {}
        try:
            for label, flags in runs.items():
                (Path(log_dir) / label).mkdir()
                servers[label] = Server(model_dir, [*common, *flags], Path(log_dir) / label)
                servers[label].wait_serving()  # one at a time: warm-ups do not overlap
                clients[label] = Client(servers[label].target, timeout=120.0)
            seed = 0

            def gen(label: str) -> Any:
                def one(s: int, c: Client = clients[label]) -> bytes:
                    (img,) = c.generate(name, [s], psi=PSI, format="png")
                    data: bytes = img.data
                    return data

                return one

            for label in runs:  # warm-up requests, not measured
                run_level(gen(label), range(seed, seed + a.serve_warmup), a.serve_concurrency)
                seed += a.serve_warmup
            for r in range(a.serve_rounds):
                row: dict[str, Any] = {"round": r}
                for b in (1, 4):
                    time.sleep(0.3)
                    fn = functools.partial(rt_ort.run_synthesis, ws[b], None, (IMAGE_FLOAT,))
                    s = measure(fn, a.min_time, a.min_reps)
                    row[f"raw_ort_b{b}"] = round(b / s, 3)
                row["raw_ort_best"] = max(row["raw_ort_b1"], row["raw_ort_b4"])
                for label in runs:
                    time.sleep(0.3)  # The previous engine's idle threads stop spinning.
                    seeds = range(seed, seed + a.serve_requests)
                    seed += a.serve_requests
                    wall, lat, err = run_level(gen(label), seeds, a.serve_concurrency)
                    res_ = summarize("grpc", a.serve_concurrency, wall, lat, err)
                    ips = a.serve_requests / wall
                    row[label] = {"img_per_s": round(ips, 3), "p50_ms": res_.p50_ms, "p99_ms": res_.p99_ms,
                                  "errors": err, "vs_raw_ort": round(ips / row["raw_ort_best"], 3)}  # fmt: skip
                rounds.append(row)
                print(f"  {res} px serve round {r}: {row}", flush=True)
        finally:
            for c in clients.values():
                c.close()
            for srv in servers.values():
                srv.stop()
    gc.collect()
    med = {
        "raw_ort_best": float(np.median([r["raw_ort_best"] for r in rounds])),
        **{
            label: {
                "img_per_s": float(np.median([r[label]["img_per_s"] for r in rounds])),
                "vs_raw_ort": float(np.median([r[label]["vs_raw_ort"] for r in rounds])),
                "p50_ms": float(np.median([r[label]["p50_ms"] for r in rounds])),
                "p99_ms": float(np.median([r[label]["p99_ms"] for r in rounds])),
                "errors": sum(r[label]["errors"] for r in rounds),
            }
            for label in runs
        },
    }
    print(f"  {res} px serve, medians over {len(rounds)} rounds: {med}", flush=True)
    entry = {"res": res, "concurrency": a.serve_concurrency, "requests": a.serve_requests,
             "max_batch_size": a.serve_max_batch, "rounds": rounds, "median": med}  # fmt: skip
    print(serve_table(entry))
    out["serve"].append(entry)


SERVE_FLAGS = {
    "ort": "--engine onnxruntime",
    "ov-fp32": "--engine openvino",
    "ov-fp32-as-read": "--engine openvino --graph-rewrites false",
    "ov-bf16": "--engine openvino --precision bf16",
}


def serve_table(entry: dict[str, Any]) -> str:
    """One ``out["serve"]`` entry as a markdown table (also bench/report.py's)."""
    med = entry["median"]
    lines = [
        f"{entry['res']} px, `Generate` (PNG, psi 0.7) at concurrency {entry['concurrency']}, `--max-batch-size "
        f"{entry['max_batch_size']}`: medians of {len(entry['rounds'])} interleaved rounds of {entry['requests']} "
        "requests per server",
        "",
        "| what | img/s | x raw onnxruntime session (per round, median) | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- |",
        f"| raw onnxruntime session, best of batch 1 / 4 | {med['raw_ort_best']:.2f} | 1.00 | - | - |",
    ]
    for label, m in med.items():
        if label == "raw_ort_best":
            continue
        lines.append(
            f"| server {SERVE_FLAGS[label]} | {m['img_per_s']:.2f} | {m['vs_raw_ort']:.2f} | {m['p50_ms']:.0f} | "
            f"{m['p99_ms']:.0f} |"
        )
    return "\n".join(lines)


def raw_table(model: dict[str, Any], errors: bool = True) -> str:
    """One ``out["models"]`` entry's raw synthesis rows (and errors over seeds) as a markdown table."""
    engines = [k for k in model["rows"][0] if k not in ("res", "batch")]
    head = "| batch | " + " | ".join(f"{e} img/s (x ort, max abs)" for e in engines) + " |"
    lines = [f"{model['res']} px raw `run_synthesis`", "", head, "|" + " --- |" * (len(engines) + 1)]
    for row in model["rows"]:
        cells = [
            f"{row[e]['img_per_s']:.2f} ({row[e]['vs_ort']:.2f}x, {row[e]['max_abs_vs_ort']:.1e})" for e in engines
        ]
        lines.append(f"| {row['batch']} | " + " | ".join(cells) + " |")
    if errors and model.get("errors"):
        lines += ["", "Max abs vs onnxruntime over seeds: " + "; ".join(
            f"{e}: const {v['const_max']:.2g}, random {v['random_max']:.2g}" for e, v in model["errors"].items()
        )]  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--resolutions", default="64,256")
    p.add_argument("--batches", default="1,4,16")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of every engine")
    p.add_argument("--min-time", type=float, default=1.0)
    p.add_argument("--min-reps", type=int, default=3)
    p.add_argument("--error-seeds", type=int, default=32)
    p.add_argument("--serve", action="store_true", help="also end-to-end Generate through a server per engine")
    p.add_argument("--serve-res", type=int, default=256)
    p.add_argument("--serve-requests", type=int, default=32)
    p.add_argument("--serve-warmup", type=int, default=4)
    p.add_argument("--serve-concurrency", type=int, default=4)
    p.add_argument("--serve-max-batch", type=int, default=4)
    p.add_argument("--serve-rounds", type=int, default=3, help="interleaved measurement rounds (medians reported)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    out: dict[str, Any] = {"models": [], "serve": []}
    busy0, load0 = cpu_busy(), loadavg()
    print(f"before: load average {load0}, cores busy {busy0 if busy0 is None else round(busy0, 2)}", flush=True)
    for res in [int(x) for x in a.resolutions.split(",") if x.strip()]:
        bench_res(res, [int(x) for x in a.batches.split(",") if x.strip()], a, out)
    if a.serve:
        bench_serve(a.serve_res, a, out)
    busy1, load1 = cpu_busy(), loadavg()
    print(f"after: load average {load1}, cores busy {busy1 if busy1 is None else round(busy1, 2)}", flush=True)
    machine: dict[str, Any] = machine_info()
    machine.update(threads=a.threads, onnxruntime=ort.__version__, openvino=ov.get_version(),
                   python=platform.python_version(), loadavg_before=load0, loadavg_after=load1, cpu_busy_before=busy0,
                   cpu_busy_after=busy1, fp32_bound=FP32_MAX_ABS, bf16_bound=BF16_MAX_ABS)  # fmt: skip
    out["machine"] = machine
    out["command"] = " ".join([".venv/bin/python", "bench/engine_bench.py", *(argv or sys.argv[1:])])
    print(json.dumps(machine, indent=1))
    write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
