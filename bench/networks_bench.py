"""Mapping and synthesis throughput: exported ONNX on onnxruntime vs the same weights in PyTorch eager.

What is measured, in one process and one run, with the same intra-op thread count everywhere:

* ``ort``: the exported model directory through :class:`styleserve.server.runtime.ModelRuntime` (the
  server's sessions and session options; synthesis with const noise, float output).
* ``torch``: the same :class:`Generator` in PyTorch eager, export-friendly modulated conv (the graph
  that is exported).
* ``torch-fused``: PyTorch eager, the official-style fused grouped modulated conv
  (``G.synthesis.set_mode(fused=True)``); synthesis only (mapping has no fused variant).

FFHQ-like configs (z_dim = w_dim = 512, 8 mapping layers, channel_max 512) with random, seeded
weights: 64 px and 256 px with channel_base 16384, 1024 px with channel_base 32768 (only when asked:
``--resolutions 64,256,1024``). Models are exported once (``export_model``, verified at batch 1) into
``bench/.cache/``.

MACs per image are counted analytically from the config (dense layers, modulated 3x3 convs with the
up-sampling conv counted as the transposed conv it is, to-RGB 1x1 convs, the 4x4 FIR filters of the
up-sampling paths; demodulation and elementwise work are not counted). Achieved FLOP/s =
2 * MACs * images/s, reported as a fraction of the machine's fp32 peak, measured in the same run as the
best of large (4096^2) matmuls in onnxruntime (MLAS), PyTorch (MKL) and numpy (OpenBLAS).

    python bench/networks_bench.py [--resolutions 64,256] [--batches 1,4,16] [--threads 2]
                                   [--min-time 1.0] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from styleserve.export.networks import Generator, GeneratorConfig, make_config
from styleserve.export.onnx_export import export_model
from styleserve.server.runtime import IMAGE_FLOAT, ModelRuntime, session_options

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_busy, loadavg, machine_info, write_json

CACHE = Path(__file__).resolve().parent / ".cache"
SEED = 20261125


def ffhq_config(res: int) -> GeneratorConfig:
    base = 32768 if res >= 1024 else 16384
    return make_config(
        img_resolution=res, z_dim=512, w_dim=512, channel_base=base, channel_max=512, mapping_layers=8
    )


# ---------------------------------------------------------------------------------------- MACs


def mapping_macs(cfg: GeneratorConfig) -> int:
    f = cfg.mapping.features
    return sum(a * b for a, b in itertools.pairwise(f))


def synthesis_macs(cfg: GeneratorConfig) -> int:
    s = cfg.synthesis
    k2 = s.kernel_size**2
    fir = len(s.resample_filter) ** 2
    ch = dict(zip(s.block_resolutions, s.channels, strict=True))
    total = 0
    for r in s.block_resolutions:
        cout = ch[r]
        if r == 4:
            total += s.w_dim * cout + r * r * cout * cout * k2  # conv1 (affine + conv)
        else:
            cin = ch[r // 2]
            h = r // 2
            total += s.w_dim * cin + h * h * cin * cout * k2  # conv0: transposed conv at the input size
            total += r * r * cout * fir  # its FIR filter (depthwise, output size)
            total += s.w_dim * cout + r * r * cout * cout * k2  # conv1
            if s.architecture == "skip":
                total += r * r * s.img_channels * fir  # image up-sampling FIR
        if s.architecture == "skip" or r == s.img_resolution:
            total += s.w_dim * cout + r * r * cout * s.img_channels  # torgb (affine + 1x1 conv)
    return total


# ------------------------------------------------------------------------------------- timing


def measure(fn: Callable[[], object], min_time: float, min_reps: int) -> float:
    """Median seconds per call after one warm-up call; at least ``min_reps`` calls and ``min_time`` s."""
    fn()
    times: list[float] = []
    t_end = time.perf_counter() + min_time
    while len(times) < min_reps or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def peak_flops(threads: int, n: int = 4096) -> dict[str, float]:
    """fp32 GFLOP/s of an n x n x n matmul in onnxruntime, torch and numpy (best of a few runs each)."""
    a = np.random.RandomState(0).randn(n, n).astype(np.float32)
    b = np.random.RandomState(1).randn(n, n).astype(np.float32)
    flop = 2.0 * n**3
    out: dict[str, float] = {}
    g = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])],
        "mm",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n]),
         helper.make_tensor_value_info("B", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])],
    )  # fmt: skip
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    sess = ort.InferenceSession(model.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"])
    feeds = {"A": a, "B": b}
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    runs: dict[str, Callable[[], object]] = {
        "onnxruntime": lambda: sess.run(None, feeds),
        "torch": lambda: torch.mm(ta, tb),
        "numpy": lambda: a @ b,
    }
    for name, fn in runs.items():
        fn()
        best = min(_time_once(fn) for _ in range(4))
        out[name] = round(flop / best / 1e9, 1)
        time.sleep(0.3)  # Let the previous library's spinning threads go to sleep.
    return out


def _time_once(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------- models


def build(res: int) -> tuple[Generator, Path]:
    cfg = ffhq_config(res)
    torch.manual_seed(SEED)
    G = Generator(cfg).eval().requires_grad_(False)
    # Like the demo model: small learned noise strengths, so the noise inputs are live.
    for _, layer in G.synthesis.noise_layers():
        layer.noise_strength.fill_(0.05)
    key = hashlib.sha256(
        json.dumps([cfg.to_dict(), SEED, torch.__version__, ort.__version__, _export_stamp()]).encode()
    ).hexdigest()[:12]
    out = CACHE / f"ffhq{res}-{key}"
    if not (out / "model.json").is_file():
        print(f"exporting the {res} px model into {out} ...", flush=True)
        t0 = time.perf_counter()
        export_model(G, out, name=f"ffhq{res}", overwrite=True, verify_batches=(1,))
        print(f"  exported and verified in {time.perf_counter() - t0:.1f} s", flush=True)
    return G, out


def _export_stamp() -> str:
    """Changes whenever the exporter or the networks change, so cached models are re-exported."""
    root = Path(__file__).resolve().parent.parent / "export"
    h = hashlib.sha256()
    for name in ("onnx_export.py", "networks.py"):
        h.update((root / name).read_bytes())
    return h.hexdigest()[:12]


# ---------------------------------------------------------------------------------------- main


@dataclass
class Row:
    res: int
    network: str
    batch: int
    engine: str  # ort | torch | torch-fused
    s_per_run: float
    img_per_s: float
    macs_per_img: int
    gflops: float
    frac_peak: float
    vs_torch: float | None = None
    vs_fused: float | None = None


def bench_model(res: int, batches: Sequence[int], threads: int, min_time: float, min_reps: int,
                peak: float) -> list[Row]:  # fmt: skip
    G, model_dir = build(res)
    cfg = G.cfg
    rt = ModelRuntime(model_dir, device="cpu", intra_op_threads=threads)
    rng = np.random.RandomState(0)
    noise = G.synthesis.make_noise("const")
    macs = {"mapping": mapping_macs(cfg), "synthesis": synthesis_macs(cfg)}
    rows: list[Row] = []
    for batch in batches:
        z = rng.randn(batch, cfg.z_dim).astype(np.float32)
        ws = (rng.randn(batch, cfg.num_ws, cfg.w_dim) * 0.5).astype(np.float32)
        tz, tws = torch.from_numpy(z), torch.from_numpy(ws)

        def torch_syn(fused: bool, tws: torch.Tensor = tws) -> Callable[[], object]:
            def run() -> object:
                G.synthesis.set_mode(fused=fused)
                with torch.inference_mode():
                    return G.synthesis(tws, noise)

            return run

        def torch_map(tz: torch.Tensor = tz) -> object:
            with torch.inference_mode():
                return G.mapping(tz)

        cases: list[tuple[str, str, Callable[[], object]]] = [
            ("mapping", "ort", lambda z=z: rt.map(z)),
            ("mapping", "torch", torch_map),
            ("synthesis", "ort", lambda ws=ws: rt.run_synthesis(ws, None, (IMAGE_FLOAT,))),
            ("synthesis", "torch", torch_syn(False)),
            ("synthesis", "torch-fused", torch_syn(True)),
        ]
        got: dict[tuple[str, str], Row] = {}
        for net, engine, fn in cases:
            time.sleep(0.2)  # The other library's idle threads stop spinning.
            s = measure(fn, min_time, min_reps)
            ips = batch / s
            gf = 2 * macs[net] * ips / 1e9
            row = Row(res, net, batch, engine, round(s, 5), round(ips, 2), macs[net], round(gf, 1), round(gf / peak, 3))
            got[(net, engine)] = row
            rows.append(row)
            print(f"  {res:>4} px {net:<9} b={batch:<3d} {engine:<11} {ips:9.2f} img/s  {gf:7.1f} GFLOP/s "
                  f"({gf / peak:.0%} of peak)", flush=True)  # fmt: skip
        G.synthesis.set_mode(fused=False)
        for net in ("mapping", "synthesis"):
            o = got[(net, "ort")]
            o.vs_torch = round(o.img_per_s / got[(net, "torch")].img_per_s, 3)
            if (net, "torch-fused") in got:
                o.vs_fused = round(o.img_per_s / got[(net, "torch-fused")].img_per_s, 3)
    gc.collect()
    return rows


def table(rows: Sequence[Row], peak: float) -> str:
    head = ["res", "network", "batch", "MMAC/img", "ORT img/s", "torch img/s", "torch-fused img/s",
            "ORT/torch", "ORT/fused", "ORT % peak", "torch % peak", "fused % peak"]  # fmt: skip
    out = [head, ["---"] * len(head)]
    keys = list(dict.fromkeys((r.res, r.network, r.batch) for r in rows))
    by = {(r.res, r.network, r.batch, r.engine): r for r in rows}
    for res, net, b in keys:
        o, t, f = (by.get((res, net, b, e)) for e in ("ort", "torch", "torch-fused"))
        assert o is not None and t is not None

        def fmt(x: Row | None, attr: str, spec: str) -> str:
            return "-" if x is None else format(getattr(x, attr), spec)

        out.append([str(res), net, str(b), f"{o.macs_per_img / 1e6:.1f}", fmt(o, "img_per_s", ".1f"),
                    fmt(t, "img_per_s", ".1f"), fmt(f, "img_per_s", ".1f"),
                    f"{o.vs_torch:.2f}x", "-" if o.vs_fused is None else f"{o.vs_fused:.2f}x",
                    fmt(o, "frac_peak", ".0%"), fmt(t, "frac_peak", ".0%"), fmt(f, "frac_peak", ".0%")])  # fmt: skip
    return "\n".join("| " + " | ".join(r) + " |" for r in out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--resolutions", default="64,256", help="comma-separated: 64, 256, 1024")
    p.add_argument("--batches", default="1,4,16")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads, every engine")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timed calls per measurement (at least)")
    p.add_argument("--min-reps", type=int, default=3, help="timed calls per measurement (at least)")
    p.add_argument("--quick", action="store_true", help="64 px, batches 1,4, short timings (a smoke run)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if a.quick:
        a.resolutions, a.batches, a.min_time, a.min_reps = "64", "1,4", 0.2, 2
    resolutions = [int(x) for x in a.resolutions.split(",") if x.strip()]
    batches = [int(x) for x in a.batches.split(",") if x.strip()]
    torch.set_num_threads(a.threads)
    busy = cpu_busy()
    load0 = loadavg()
    if busy is not None and busy > 0.1:
        print(f"warning: the CPU was {busy:.0%} busy before the benchmark started; numbers will be noisy", flush=True)
    print(f"peak fp32 matmul (4096^3, {a.threads} threads) ...", flush=True)
    peaks = peak_flops(a.threads)
    peak = max(peaks.values())
    print(f"  GFLOP/s: {peaks} -> peak {peak}", flush=True)
    rows: list[Row] = []
    for res in resolutions:
        bs = [b for b in batches if res < 1024 or b <= 4]  # 1024 px: batch 16 would take minutes per call.
        rows += bench_model(res, bs, a.threads, a.min_time, a.min_reps, peak)
    machine = machine_info()
    machine.update(
        threads=a.threads, torch=torch.__version__, onnxruntime=ort.__version__, python=platform.python_version(),
        cpu_busy_before=None if busy is None else round(busy, 3), loadavg_before=load0, loadavg_after=loadavg(),
        peak_gflops=peaks,
    )  # fmt: skip
    print()
    for k, v in machine.items():
        print(f"{k:>16}: {v}")
    print(f"{'peak':>16}: {peak} GFLOP/s fp32 (best matmul); % peak below = 2*MACs*img/s / peak")
    print()
    print(table(rows, peak))
    write_json(a.json, {"machine": machine, "peak_gflops": peak, "settings": {k: str(v) for k, v in vars(a).items()},
                        "rows": [asdict(r) for r in rows]})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
