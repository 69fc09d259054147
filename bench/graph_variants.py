"""Graph rewrites tried for the up-sampling layers, measured on onnxruntime: what each gives, one run.

The synthesis network's up-sampling layer (``conv0`` of every block above 4 px) is exported as the official
op computes it: a stride-2 transposed 3x3 convolution, then the 4x4 FIR low-pass filter (``upfirdn2d``,
padding 1). At 1024 px that layer and its FIR are the largest single costs after the plain 3x3 convs
(docs/BENCHMARKS.md, "Efficiency at 1024 px"). This script times, per block size of FFHQ config F (the
64, 256 and 1024 px blocks), the exported form against the rewrites that compute the same function:

* ``polyphase``: the transposed conv as one 2x2 convolution with 4x the output channels (one per output
  phase; 9 of its 16 taps non-zero), ``DepthToSpace``, then the same FIR;
* ``merged``: the transposed conv and the FIR folded into one 6x6 stride-2 kernel, run as a 3x3 convolution
  with 4x the output channels and ``DepthToSpace`` (no FIR pass, 4x the MACs of the transposed conv);
* ``separable FIR``: the 4x4 FIR as two 1-D depthwise passes (4 + 4 taps instead of 16);
* with ``--model DIR``: the whole ``synthesis.onnx`` with ``session.set_denormal_as_zero`` on and off.

Each variant is exported to ONNX with torch and run on an onnxruntime CPU session with the server's
options (``--threads`` intra-op threads); the table gives ms per run (batch 1, median of timed runs), the
ratio to the exported form (> 1: the rewrite is faster) and the max abs difference to it.

    python bench/graph_variants.py [--threads 1] [--seconds 2] [--model bench/.cache/ffhq1024-.../] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from styleserve.export.networks import setup_filter, upfirdn2d
from styleserve.server.runtime import session_options
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, write_json

FIR = setup_filter([1, 3, 3, 1])  # [4, 4], the official resample filter
BLOCKS = {  # output resolution -> (in channels, out channels) of FFHQ config F's up-sampling conv
    64: (512, 512),
    256: (256, 128),
    1024: (64, 32),
}


def exported(x: Tensor, wt: Tensor) -> Tensor:
    """The exported form (networks.conv2d_resample): transposed conv, then the FIR with padding 1."""
    return upfirdn2d(F.conv_transpose2d(x, wt, stride=2), FIR, padding=[1, 1, 1, 1], gain=4)


def polyphase_weight(wt: Tensor) -> Tensor:
    """``wt`` ``[I, O, 3, 3]`` -> the 2x2 conv's ``[4 O, I, 2, 2]``: output phase p of ``out[2m + p]`` takes
    ``x[m - 1] * k[2] + x[m] * k[0]`` (p = 0) or ``x[m] * k[1]`` (p = 1)."""
    taps = torch.zeros(2, 2, 3)  # [phase, tap, k]
    taps[0, 0, 2] = taps[0, 1, 0] = taps[1, 1, 1] = 1
    i, o = int(wt.shape[0]), int(wt.shape[1])
    return torch.einsum("ayk,bxl,iokl->oabiyx", taps, taps, wt).reshape(4 * o, i, 2, 2)


def polyphase(x: Tensor, w: Tensor) -> Tensor:
    y = F.pixel_shuffle(F.conv2d(F.pad(x, [1, 1, 1, 1]), w), 2)  # [N, O, 2H + 2, 2W + 2]: a zero last row
    return upfirdn2d(y, FIR, padding=[1, 0, 1, 0], gain=4)


def merged_weight(wt: Tensor) -> Tensor:
    """Transposed conv then FIR as one 6x6 stride-2 kernel, split into its 4 phases of 3x3 taps."""
    fk = (FIR * 4).flip([0, 1])
    i, o = int(wt.shape[0]), int(wt.shape[1])
    kc = torch.zeros(i, o, 6, 6)  # offset d + 2, d in [-2, 3]
    for jy in range(4):
        for jx in range(4):
            kc[:, :, 3 - jy : 6 - jy, 3 - jx : 6 - jx] += wt * fk[jy, jx]
    w = torch.zeros(o, 2, 2, i, 3, 3)
    for py in range(2):
        for px in range(2):
            for ty in range(3):
                for tx in range(3):
                    w[:, py, px, :, ty, tx] = kc[:, :, 2 * (1 - ty) + py + 2, 2 * (1 - tx) + px + 2].t()
    return w.reshape(4 * o, i, 3, 3)


def merged(x: Tensor, w: Tensor) -> Tensor:
    return F.pixel_shuffle(F.conv2d(x, w, padding=1), 2)


def fir_2d(x: Tensor, _: Tensor) -> Tensor:
    return upfirdn2d(x, FIR, padding=[1, 1, 1, 1], gain=4)


def fir_separable(x: Tensor, _: Tensor) -> Tensor:
    c = int(x.shape[1])
    f1 = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8 * 2  # the 1-D filter with gain 2 per axis
    x = F.pad(x, [1, 1, 1, 1])
    x = F.conv2d(x, f1.flip(0).view(1, 1, 4, 1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, f1.flip(0).view(1, 1, 1, 4).repeat(c, 1, 1, 1), groups=c)


class _Op(torch.nn.Module):
    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], w: Tensor) -> None:
        super().__init__()
        self.fn, self.w = fn, torch.nn.Parameter(w, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x, self.w)


def timed_ms(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], seconds: float) -> float:
    sess.run(None, feeds)
    times: list[float] = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 3:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def run_op(fn: Callable[[Tensor, Tensor], Tensor], w: Tensor, x: Tensor, a: argparse.Namespace) -> tuple[float, Any]:
    buf = io.BytesIO()
    torch.onnx.export(_Op(fn, w), (x,), buf, input_names=["x"], dynamo=False, opset_version=17)
    sess = ort.InferenceSession(buf.getvalue(), session_options(a.threads), providers=["CPUExecutionProvider"])
    feeds = {"x": x.numpy()}
    return timed_ms(sess, feeds, a.seconds), sess.run(None, feeds)[0]


def bench_blocks(a: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for res, (cin, cout) in BLOCKS.items():
        h = res // 2
        g = torch.Generator().manual_seed(res)
        wt = torch.randn(cin, cout, 3, 3, generator=g) / (3 * cin**0.5)
        x = torch.randn(1, cin, h, h, generator=g)
        base_ms, base = run_op(exported, wt, x, a)
        row: dict[str, Any] = {"res": res, "in": cin, "out": cout, "exported_ms": round(base_ms, 2)}
        for name, fn, w in (("polyphase", polyphase, polyphase_weight(wt)), ("merged", merged, merged_weight(wt))):
            ms, got = run_op(fn, w, x, a)
            row[name] = {
                "ms": round(ms, 2),
                "speedup": round(base_ms / ms, 3),
                "max_abs": float(np.abs(got - base).max()),
            }
        y = torch.randn(1, cout, 2 * h + 1, 2 * h + 1, generator=g)  # the transposed conv's output
        fir_ms, fir_out = run_op(fir_2d, torch.zeros(1), y, a)
        sep_ms, sep_out = run_op(fir_separable, torch.zeros(1), y, a)
        row["fir_2d_ms"] = round(fir_ms, 2)
        row["fir_separable"] = {"ms": round(sep_ms, 2), "speedup": round(fir_ms / sep_ms, 3),
                                "max_abs": float(np.abs(sep_out - fir_out).max())}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def bench_denormals(model: Path, a: argparse.Namespace) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, value in (("off", "0"), ("on", "1"), ("off_again", "0")):
        so = session_options(a.threads)
        so.add_session_config_entry("session.set_denormal_as_zero", value)
        sess = ort.InferenceSession(str(model / "synthesis.onnx"), so, providers=["CPUExecutionProvider"])
        rng = np.random.RandomState(0)
        feeds = {}
        for i in sess.get_inputs():
            shape = [1 if not isinstance(d, int) else d for d in i.shape]
            feeds[i.name] = rng.randn(*shape).astype(np.float32)
        out[label] = round(timed_ms(sess, feeds, a.seconds), 1)
        del sess
    print(json.dumps({"denormal_as_zero_ms": out}), flush=True)
    return out


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| block (px, in -> out ch) | exported: ConvTranspose + FIR ms | polyphase 2x2 + DepthToSpace | "
        "merged 3x3 + DepthToSpace | FIR 2-D ms | FIR separable |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cells = [f"{r[k]['ms']} ms ({r[k]['speedup']}x, {r[k]['max_abs']:.1e})" for k in ("polyphase", "merged")]
        sep = r["fir_separable"]
        lines.append(
            f"| {r['res']} ({r['in']} -> {r['out']}) | {r['exported_ms']} | {cells[0]} | {cells[1]} | "
            f"{r['fir_2d_ms']} | {sep['ms']} ms ({sep['speedup']}x) |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per variant")
    p.add_argument("--model", type=Path, default=None, help="a model directory: also time denormals-as-zero")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    rows = bench_blocks(a)
    out: dict[str, Any] = {"blocks": rows, "machine": machine_info() | {"threads": a.threads}}
    if a.model is not None:
        out["denormal_as_zero_ms"] = bench_denormals(a.model, a)
    print(table(rows))
    print(json.dumps(out["machine"]))
    write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
