"""1024 px, the reference workload: export memory, serving memory and start-up, throughput, against raw sessions
and the project's own PyTorch networks, and an onnxruntime profile of one synthesis run by operator type.

The model is an FFHQ config F generator (official architecture and sizes: 1024 px, z/w 512, 8 mapping layers,
channel_base 32768, channel_max 512; 30.4 M parameters, ~75 GMAC per image) with random, seeded weights, made by
the project's own code (no download). Every step runs in its own subprocess, one after the other (never two
1024 px processes at once), and its peak RSS is the kernel's high-water mark of that process (``ru_maxrss`` /
``VmHWM``), so the figures are load-independent; timings are not, and the load average is printed beside them.

Steps:

* ``export``: ``export_model`` with the CLI's default verification (``--verify-batches 1,3,8``, clipped to the
  pixel budget): wall time and peak RSS.
* ``raw``: an in-process :class:`ModelRuntime` with the server's default session options: seed -> mapping ->
  synthesis uint8 at ``--batch`` rows per run: img/s, p50/p99 per run, peak RSS.
* ``torch``: the same weights in PyTorch eager (``export/networks.py``), same work, same threads.
* ``serve``: ``styleserve serve MODEL_DIR`` at its defaults (plus ``--intra-op-threads``): time from process start
  to SERVING, RSS at SERVING, then ``--requests`` Generate calls of ``--batch`` seeds (raw uint8, concurrency 1):
  img/s, p50/p99, peak RSS (VmHWM) and RSS after the load. ``--serve-variants`` adds other flag sets.
* ``profile``: one batch-1 synthesis run with onnxruntime profiling: time per operator type.

    python bench/scale_1024.py [--resolution 1024] [--threads 2] [--batch 4] [--requests 4] [--model-dir DIR]
                               [--steps export,raw,torch,serve,profile] [--serve-variants "--max-batch-size 4"]
                               [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import cpu_busy, loadavg, machine_info, write_json  # noqa: E402

SEED = 20261125
MODEL = "ffhq"
GiB = 2**30


def _maxrss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of a live process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def _generator(res: int) -> Any:
    import torch
    from networks_bench import ffhq_config
    from styleserve.export.networks import Generator

    torch.manual_seed(SEED)
    G = Generator(ffhq_config(res)).eval().requires_grad_(False)
    for _, layer in G.synthesis.noise_layers():  # small learned noise strengths: the noise inputs are live
        layer.noise_strength.fill_(0.05)
    return G


def _pcts(times: Sequence[float]) -> tuple[float, float]:
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


# ------------------------------------------------------------------------------------ children


def child_export(res: int, out: str, threads: int) -> dict[str, Any]:
    import torch
    from styleserve.export.onnx_export import VERIFY_BATCHES, export_model

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    G = _generator(res)
    m = export_model(G, out, name=MODEL, overwrite=True, verify_batches=VERIFY_BATCHES)
    return {"seconds": time.perf_counter() - t0, "peak_rss": _maxrss(), "verified_batches": m.verification["batches"],
            "params": sum(p.numel() for p in G.parameters())}  # fmt: skip


def child_raw(model_dir: str, threads: int, batch: int, runs: int) -> dict[str, Any]:
    from styleserve.server.runtime import ModelRuntime, NoiseSpec

    from styleserve.latent import z_from_seed

    t0 = time.perf_counter()
    rt = ModelRuntime(model_dir, device="cpu", intra_op_threads=threads)
    rt.warmup((1, batch))
    ready = time.perf_counter() - t0
    times = []
    for i in range(runs):
        t = time.perf_counter()
        z = np.stack([z_from_seed(i * batch + k, rt.manifest.z_dim) for k in range(batch)])
        w = rt.map(z)
        rt.synthesize(np.repeat(w[:, None], rt.manifest.num_ws, axis=1), [NoiseSpec()] * batch, "uint8")
        times.append(time.perf_counter() - t)
    p50, p99 = _pcts(times)
    return {"img_per_s": batch * runs / sum(times), "p50_ms": p50, "p99_ms": p99, "peak_rss": _maxrss(),
            "ready_s": ready}  # fmt: skip


def child_torch(res: int, threads: int, batch: int, runs: int) -> dict[str, Any]:
    import torch

    from styleserve.latent import z_from_seed

    torch.set_num_threads(threads)
    G = _generator(res)
    noise = G.synthesis.make_noise("const")
    times = []
    with torch.inference_mode():
        for i in range(runs + 1):  # the first run is the warm-up
            t = time.perf_counter()
            z = torch.from_numpy(np.stack([z_from_seed(i * batch + k, G.cfg.z_dim) for k in range(batch)]))
            w = G.mapping(z)
            img = G.synthesis(w[:, None].repeat(1, G.num_ws, 1), noise)  # [N, C, H, W]
            (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
            if i:
                times.append(time.perf_counter() - t)
    p50, p99 = _pcts(times)
    return {"img_per_s": batch * runs / sum(times), "p50_ms": p50, "p99_ms": p99, "peak_rss": _maxrss()}


def child_profile(model_dir: str, threads: int) -> dict[str, Any]:
    import onnxruntime as ort
    from styleserve.server.runtime import session_options

    m = json.loads((Path(model_dir) / "model.json").read_text())
    so = session_options(threads)
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    sess = ort.InferenceSession(str(Path(model_dir) / m["synthesis"]["file"]), so, providers=["CPUExecutionProvider"])
    feeds: dict[str, np.ndarray] = {"ws": np.zeros((1, m["num_ws"], m["w_dim"]), np.float32)}
    for n in m["noise_inputs"]:
        feeds[n["name"]] = np.zeros((1, 1, n["resolution"], n["resolution"]), np.float32)
    sess.run(["image_uint8"], feeds)  # warm-up, profiled too: only the last run is counted
    t0 = time.perf_counter()
    sess.run(["image_uint8"], feeds)
    wall = time.perf_counter() - t0
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    last = runs[-1]
    start, end = last["ts"], last["ts"] + last["dur"]
    by_op: dict[str, float] = defaultdict(float)
    by_node: dict[str, tuple[str, float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and start <= e["ts"] <= end:
            op = e["args"].get("op_name", "?")
            by_op[op] += e["dur"] / 1e3
            node = e["name"][: -len("_kernel_time")]
            by_node[node] = (op, by_node.get(node, (op, 0.0))[1] + e["dur"] / 1e3)
    top = sorted(by_node.items(), key=lambda kv: -kv[1][1])[:12]
    return {"wall_ms": wall * 1000, "by_op_ms": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
            "top_nodes": [[name, op, ms] for name, (op, ms) in top]}  # fmt: skip


CHILDREN = {"export": child_export, "raw": child_raw, "torch": child_torch, "profile": child_profile}


def run_child(step: str, *args: object) -> dict[str, Any]:
    """One step in a fresh interpreter; its result is the last line of its stdout (JSON)."""
    cmd = [sys.executable, __file__, "--child", step, *map(str, args)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{step} failed with exit code {proc.returncode}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - t0
    return out


# ------------------------------------------------------------------------------------ serving


def serve(model_dir: Path, threads: int, batch: int, requests: int, flags: Sequence[str]) -> dict[str, Any]:
    from serve_bench import Server
    from styleserve.clients import Client

    name = json.loads((model_dir / "model.json").read_text())["name"]
    with tempfile.TemporaryDirectory() as logs:
        t0 = time.perf_counter()
        server = Server(model_dir, ["--intra-op-threads", str(threads), *flags], Path(logs))
        try:
            server.wait_serving(timeout=1800)
            to_serving = time.perf_counter() - t0
            at_serving = _status(server.proc.pid)
            times = []
            with Client(server.target, timeout=1800.0) as client:
                for i in range(requests):
                    t = time.perf_counter()
                    imgs = client.generate(name, range(i * batch, (i + 1) * batch), format="raw_uint8")
                    times.append(time.perf_counter() - t)
                    assert len(imgs) == batch
            after = _status(server.proc.pid)
        finally:
            server.stop()
    p50, p99 = _pcts(times)
    return {"flags": " ".join(flags) or "(defaults)", "to_serving_s": to_serving, "rss_serving": at_serving["VmRSS"],
            "rss_after": after["VmRSS"], "peak_rss": after["VmHWM"], "img_per_s": batch * requests / sum(times),
            "p50_ms": p50, "p99_ms": p99}  # fmt: skip


# ------------------------------------------------------------------------------------ report


def gib(x: float) -> str:
    return f"{x / GiB:.2f}"


def report(doc: dict[str, Any]) -> str:
    s, r = doc["settings"], doc["results"]
    lines = [f"FFHQ-like at {s['resolution']} px ({doc['params'] / 1e6:.1f} M parameters, "
             f"{doc['macs_per_image'] / 1e9:.1f} GMAC/img), {s['threads']} threads, batch {s['batch']}; "
             f"load average before/after: {doc['machine']['loadavg_before']} / {doc['machine']['loadavg_after']}.",
             ""]  # fmt: skip
    if "export" in r:
        e = r["export"]
        lines += ["| step | wall s | peak RSS GiB | verified at batches |", "| --- | --- | --- | --- |",
                  f"| export + verify | {e['wall_s']:.0f} | {gib(e['peak_rss'])} | {e['verified_batches']} |", ""]
    rows = []
    torch_rss = r.get("torch", {}).get("peak_rss")
    for key, label in (("torch", "PyTorch eager (export/networks.py)"), ("raw", "raw onnxruntime (ModelRuntime)")):
        if key in r:
            x = r[key]
            rows.append([label, "-", f"{x['img_per_s']:.3f}", f"{x['p50_ms']:.0f}", f"{x['p99_ms']:.0f}",
                         gib(x["peak_rss"]), "-", "-"])  # fmt: skip
    for x in r.get("serve", []):
        ratio = f"{x['peak_rss'] / torch_rss:.2f}x" if torch_rss else "-"
        rows.append([f"styleserve serve {x['flags']}", f"{x['to_serving_s']:.1f}", f"{x['img_per_s']:.3f}",
                     f"{x['p50_ms']:.0f}", f"{x['p99_ms']:.0f}", gib(x["peak_rss"]),
                     f"{gib(x['rss_serving'])} / {gib(x['rss_after'])}", ratio])  # fmt: skip
    if rows:
        head = ["process", "s to SERVING", "img/s", f"p50 ms / batch {s['batch']}", "p99 ms", "peak RSS GiB",
                "RSS at SERVING / after GiB", "peak RSS vs PyTorch"]  # fmt: skip
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    checks = []
    if "export" in r:
        checks.append(f"export peak RSS {gib(r['export']['peak_rss'])} GiB <= 6 GB: "
                      f"{'yes' if r['export']['peak_rss'] <= 6e9 else 'NO'}")  # fmt: skip
    default = next((x for x in r.get("serve", []) if x["flags"] == "(defaults)"), None)
    if default is not None and torch_rss:
        ok = default["peak_rss"] <= 2 * torch_rss
        checks.append(f"server at defaults: peak RSS {default['peak_rss'] / torch_rss:.2f}x PyTorch's <= 2x: "
                      f"{'yes' if ok else 'NO'}")  # fmt: skip
    if checks:
        lines += ["Issue #13 bounds: " + "; ".join(checks) + ".", ""]
    if "profile" in r:
        p = r["profile"]
        total = sum(p["by_op_ms"].values())
        lines += [f"onnxruntime profile, one batch-1 synthesis run ({p['wall_ms']:.0f} ms wall):", "",
                  "| op type | ms | share |", "| --- | --- | --- |"]  # fmt: skip
        lines += [f"| {op} | {ms:.0f} | {ms / total:.0%} |" for op, ms in list(p["by_op_ms"].items())[:10]]
        lines += ["", "| node | op | ms |", "| --- | --- | --- |"]
        lines += [f"| {n} | {op} | {ms:.0f} |" for n, op, ms in p["top_nodes"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        step, *args = argv[1:]
        fn: Any = CHILDREN[step]
        conv = [int(a) if a.isdigit() else a for a in args]
        print(json.dumps(fn(*conv)), flush=True)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--resolution", type=int, default=1024)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--batch", type=int, default=4, help="images per run / per Generate request")
    p.add_argument("--requests", type=int, default=4, help="measured runs / requests per process")
    p.add_argument("--steps", default="export,raw,torch,serve,profile")
    p.add_argument("--model-dir", type=Path, default=None,
                   help="an exported model directory to use (skips no step; default: bench/.cache/scale<res>)")
    p.add_argument("--serve-variants", action="append", default=[],
                   help="extra flags of a further server run (repeatable), e.g. '--max-batch-size 4'")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    steps = [s for s in a.steps.split(",") if s]
    model_dir = a.model_dir or HERE / ".cache" / f"scale{a.resolution}"
    from networks_bench import ffhq_config, synthesis_macs

    busy, load0 = cpu_busy(), loadavg()
    print(f"load average {load0}, CPU busy {busy if busy is None else f'{busy:.0%}'}", flush=True)
    results: dict[str, Any] = {}
    if "export" in steps:
        print(f"export {a.resolution} px into {model_dir} ...", flush=True)
        results["export"] = run_child("export", a.resolution, model_dir, a.threads)
        print(f"  {results['export']['wall_s']:.0f} s, peak RSS {gib(results['export']['peak_rss'])} GiB", flush=True)
    if not (model_dir / "model.json").is_file():
        raise SystemExit(f"{model_dir}: no model (run the export step)")
    if "raw" in steps:
        results["raw"] = run_child("raw", model_dir, a.threads, a.batch, a.requests)
        print(f"  raw   {results['raw']}", flush=True)
    if "torch" in steps:
        results["torch"] = run_child("torch", a.resolution, a.threads, a.batch, a.requests)
        print(f"  torch {results['torch']}", flush=True)
    if "serve" in steps:
        results["serve"] = []
        for flags in ["", *a.serve_variants]:
            results["serve"].append(serve(model_dir, a.threads, a.batch, a.requests, flags.split()))
            print(f"  serve {results['serve'][-1]}", flush=True)
    if "profile" in steps:
        results["profile"] = run_child("profile", model_dir, a.threads)
    import onnxruntime as ort
    import torch
    from styleserve.export.networks import Generator

    machine = machine_info()
    machine.update(threads=a.threads, torch=torch.__version__, onnxruntime=ort.__version__,
                   python=platform.python_version(), cpu_busy_before=busy, loadavg_before=load0,
                   loadavg_after=loadavg())  # fmt: skip
    doc = {"machine": machine, "settings": {k: str(v) for k, v in vars(a).items()},
           "macs_per_image": synthesis_macs(ffhq_config(a.resolution)), "results": results,
           "params": sum(p.numel() for p in Generator(ffhq_config(a.resolution)).parameters())}  # fmt: skip
    doc["settings"].update(resolution=a.resolution, threads=a.threads, batch=a.batch)
    print()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['mem_gib']} GiB")
    print(report(doc))
    write_json(a.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
