"""The OpenVINO engine's graph rewrites (server/ov_passes.py), one layer at a time: what each gives, one run.

Per layer shape of FFHQ config F (input channels x resolution), the layer as the exported graph has it is
timed against its rewrite on OpenVINO's CPU plugin with the engine's fp32 configuration (``--threads``
threads, one stream, static shapes), interleaved: round after round, one timed run of each.

* ``conv``: a 3x3 stride-1 convolution (C -> C), direct vs Winograd F(2x2, 3x3);
* ``up``: the 3x3 stride-2 transposed convolution (C -> C/2) vs four phase convolutions + DepthToSpace.

The table gives ms per run (median), the median of the per-round ratios (> 1: the rewrite is faster), the
max abs difference between the two outputs and whether :data:`styleserve.server.ov_passes.DEFAULT_RULE`
rewrites that layer. The rule's defaults come from this table.

    python bench/ov_rewrites.py [--threads 2] [--batch 2] [--rounds 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops
from styleserve.server.ov_passes import DEFAULT_RULE, phase_conv_transpose3x3, winograd_conv3x3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, write_json

CONV_SHAPES = [(512, 8), (512, 16), (512, 32), (512, 64), (256, 64), (256, 128), (128, 128), (128, 256), (64, 256)]
UP_SHAPES = [(512, 8), (512, 16), (512, 32), (256, 64), (128, 128), (64, 256)]  # input channels, input px


def direct_conv(x: Any, w: np.ndarray) -> Any:
    return ops.convolution(x, ops.constant(w), [1, 1], [1, 1], [1, 1], [1, 1])


def direct_up(x: Any, w: np.ndarray) -> Any:
    return ops.convolution_backprop_data(x, ops.constant(w), [2, 2], pads_begin=[0, 0], pads_end=[0, 0],
                                         dilations=[1, 1])  # fmt: skip


def compiled(fn: Callable[[Any, np.ndarray], Any], shape: list[int], w: np.ndarray, threads: int) -> Any:
    p = ops.parameter(shape, np.float32)
    cfg = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
           "INFERENCE_NUM_THREADS": str(threads)}  # fmt: skip
    out = fn(p.output(0), w)
    return ov.Core().compile_model(ov.Model([out], [p]), "CPU", cfg).create_infer_request()


def one(kind: str, c: int, r: int, a: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.RandomState(0)
    x = rng.randn(a.batch, c, r, r).astype(np.float32)
    if kind == "conv":
        w = (rng.randn(c, c, 3, 3) / np.sqrt(9 * c)).astype(np.float32)
        fns = (direct_conv, winograd_conv3x3)
        chosen = c >= DEFAULT_RULE.conv_min_channels and r <= DEFAULT_RULE.conv_max_res
    else:
        w = (rng.randn(c, c // 2, 3, 3) / np.sqrt(9 * c)).astype(np.float32)
        fns = (direct_up, phase_conv_transpose3x3)
        chosen = c >= DEFAULT_RULE.up_min_channels and r <= DEFAULT_RULE.up_max_res
    reqs = [compiled(fn, list(x.shape), w, a.threads) for fn in fns]
    outs = []
    for req in reqs:
        req.infer({0: x})
        outs.append(np.array(req.get_output_tensor(0).data))
    times: list[list[float]] = [[], []]
    for _ in range(a.rounds):
        for req, t in zip(reqs, times, strict=True):
            t0 = time.perf_counter()
            req.infer({0: x})
            t.append(time.perf_counter() - t0)
    ta, tb = np.array(times[0]), np.array(times[1])
    row = {"kind": kind, "channels": c, "res": r, "batch": a.batch, "direct_ms": round(1000 * float(np.median(ta)), 2),
           "rewrite_ms": round(1000 * float(np.median(tb)), 2), "speedup": round(float(np.median(ta / tb)), 3),
           "max_abs": float(np.abs(outs[0] - outs[1]).max()), "out_max": float(np.abs(outs[0]).max()),
           "in_default_rule": chosen}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| layer | input (ch x px) | as exported ms | rewritten ms | x (median of rounds) | max abs (out max) | "
        "rewritten by default |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    names = {"conv": "3x3 conv -> Winograd F(2x2,3x3)", "up": "up-sampling transposed conv -> 4 phase convs"}
    for r in rows:
        lines.append(
            f"| {names[r['kind']]} | {r['channels']} x {r['res']} | {r['direct_ms']} | {r['rewrite_ms']} | "
            f"{r['speedup']:.2f} | {r['max_abs']:.1e} ({r['out_max']:.1f}) | "
            f"{'yes' if r['in_default_rule'] else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    rows = [one("conv", c, r, a) for c, r in CONV_SHAPES] + [one("up", c, r, a) for c, r in UP_SHAPES]
    command = " ".join([".venv/bin/python", "bench/ov_rewrites.py", *(argv or sys.argv[1:])])
    out: dict[str, Any] = {"rows": rows, "machine": machine_info() | {"threads": a.threads}, "command": command}
    print(table(rows))
    print(json.dumps(out["machine"]))
    write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
