"""Exact rewrites the OpenVINO engine makes in the synthesis graph it has read (fp32; never imports torch).

Two layer kinds of StyleGAN synthesis graphs run well below the CPU's convolution rate where resolutions are low
and channels many (OpenVINO's per-layer profile at 256 px: the 512-channel 3x3 convs at 32 px ran at 84 GMAC/s
where those at 128-256 px ran at 123, the 16 -> 32 px transposed conv at 38; docs/BENCHMARKS.md "OpenVINO graph
rewrites"). Each is replaced by a subgraph computing the same function with OpenVINO's fast kernels:

* **3x3 stride-1 convolution** (``conv1`` of every block, the 4 px block's ``conv``) -> **Winograd F(2x2, 3x3)**
  (Lavin & Gray 2016): the padded input cut into 4x4 tiles at stride 2 and transformed by ``B^T d B`` (16
  depthwise 4x4 convolutions), 16 products ``U_k V_k`` with ``U = G g G^T`` (16 1x1 convolutions), the outputs
  ``A^T M A`` (additions) interleaved by DepthToSpace: 2.25x fewer multiplications.
* **3x3 stride-2 transposed convolution** (``conv0``'s up-sampling) -> **four phase convolutions** (2x2, 2x1, 1x2
  and 1x1 taps of the same weight) interleaved by DepthToSpace: the same multiplications as direct convolutions.

Which layers are rewritten is a :class:`RewriteRule` (where the rewrite measured faster). The rewritten graph
differs from the original by float rounding only (Winograd F(2x2, 3x3) measured ~3e-6 of a layer's output
range); the engine checks the whole graph against onnxruntime at warm-up, as for every compiled graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

# Winograd F(2x2, 3x3) for correlation, y = A^T [(G g G^T) * (B^T d B)] A, tile 4x4 -> output 2x2.
WINO_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)  # [4, 4]
WINO_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)  # [4, 3]


@dataclass(frozen=True)
class RewriteRule:
    """Which layers to rewrite: 3x3 convs with at least ``conv_min_channels`` input channels and an input of at
    most ``conv_max_res`` pixels a side; transposed convs likewise with ``up_min_channels`` / ``up_max_res``.

    Defaults from ``bench/ov_rewrites.py`` on this project's 2-core machine (2 threads, batch 2; the table is in
    docs/BENCHMARKS.md): Winograd 1.40x / 1.63x / 1.73x at 512 channels and 16 / 32 / 64 px, 1.37x / 1.28x at
    256 channels and 64 / 128 px, 1.11x at 128 channels and 128 px, 0.82-0.85x at 64-128 channels and 256 px;
    phase convolutions 1.08x at 512 channels and 16 px, 0.87-1.03x elsewhere.
    """

    conv_min_channels: int = 128
    conv_max_res: int = 128
    up_min_channels: int = 256
    up_max_res: int = 16
    # Larger weights are left as read (config F's largest 3x3 weight is 9 MiB): Winograd adds 16/9 of a weight
    # as constants (computed one component at a time in float64), so this bounds what one layer may cost.
    max_weight_bytes: int = 64 * 2**20


DEFAULT_RULE = RewriteRule()


def _i64(values: list[int]) -> Any:
    import openvino.opset13 as ops

    return ops.constant(np.array(values, np.int64))


def winograd_conv3x3(x: Any, weight: npt.NDArray[np.float32]) -> Any:
    """``Convolution(x, weight, stride 1, pads 1)`` as Winograd F(2x2, 3x3); x ``[N, C_in, H, W]``, H and W even.

    weight ``[C_out, C_in, 3, 3]``; returns the ``[N, C_out, H, W]`` output. Each tile component k = 4a + b is
    its own chain (depthwise 4x4 stride-2 conv -> 1x1 conv): measured 1.2-1.4x faster than one concatenated
    grouped conv, which copies the components twice.
    """
    import openvino.opset13 as ops

    c_in = weight.shape[1]
    mk = []  # M_k = U_k V_k: [N, C_out, H/2, W/2] each
    for a in range(4):
        for b in range(4):
            kernel = np.outer(WINO_BT[a], WINO_BT[b]).astype(np.float32)  # [4, 4], entries 0 / +-1
            depthwise = np.ascontiguousarray(np.broadcast_to(kernel, (c_in, 1, 1, 4, 4)))
            v = ops.group_convolution(x, ops.constant(depthwise), [2, 2], [1, 1], [1, 1], [1, 1])  # (B^T d B)[a, b]
            # U_k = (G g G^T)[a, b] in float64, one component at a time: [C_out, C_in, 1, 1]
            u = np.einsum("i,ocij,j->oc", WINO_G[a], weight.astype(np.float64), WINO_G[b])[:, :, None, None]
            mk.append(ops.convolution(v, ops.constant(u.astype(np.float32)), [1, 1], [0, 0], [0, 0], [1, 1]))
    # A^T M A with A^T = [[1, 1, 1, 0], [0, 1, -1, -1]], first along b, then along a.
    r = [
        (ops.add(ops.add(mk[4 * a], mk[4 * a + 1]), mk[4 * a + 2]),
         ops.subtract(ops.subtract(mk[4 * a + 1], mk[4 * a + 2]), mk[4 * a + 3]))
        for a in range(4)
    ]  # fmt: skip
    y = [
        ops.add(ops.add(r[0][v_], r[1][v_]), r[2][v_]) for v_ in range(2)
    ] + [ops.subtract(ops.subtract(r[1][v_], r[2][v_]), r[3][v_]) for v_ in range(2)]  # y[2 * u + v]: output (u, v)
    return ops.depth_to_space(ops.concat(y, 1), "blocks_first", 2)  # [N, C_out, H, W]


def phase_conv_transpose3x3(x: Any, weight: npt.NDArray[np.float32]) -> Any:
    """``ConvTranspose(x, weight, stride 2, pads 0)`` as four phase convolutions; x ``[N, C_in, H, W]``.

    weight ``[C_in, C_out, 3, 3]`` (the transposed conv's layout); returns ``[N, C_out, 2H + 1, 2W + 1]``.
    Output row ``2m`` takes taps 0 and 2 of the kernel (input rows m and m - 1), row ``2m + 1`` tap 1 (row m).
    """
    import openvino.opset13 as ops

    h = x.get_partial_shape()[2].get_length()
    w = x.get_partial_shape()[3].get_length()
    wc = weight.transpose(1, 0, 2, 3)  # [C_out, C_in, 3, 3]
    taps = {0: [2, 0], 1: [1]}  # phase -> kernel taps in correlation order
    phases = []
    for py in (0, 1):
        for px in (0, 1):
            kernel = np.ascontiguousarray(wc[:, :, taps[py]][:, :, :, taps[px]])
            # Even phases: 2 taps over the input padded by 1 on both sides; odd: 1 tap, padded by 1 at the end
            # (a zero row / column, so that every phase has H + 1 rows).
            phases.append(ops.convolution(x, ops.constant(kernel), [1, 1], [1 - py, 1 - px], [1, 1], [1, 1]))
    y = ops.depth_to_space(ops.concat(phases, 1), "blocks_first", 2)  # [N, C_out, 2H + 2, 2W + 2]
    return ops.slice(y, _i64([0, 0]), _i64([2 * h + 1, 2 * w + 1]), _i64([1, 1]), _i64([2, 3]))


class _Kind(NamedTuple):
    """A layer kind the rules rewrite: the attributes it must have and where its rule's bounds are."""

    want: dict[str, list[int]]  # attribute -> the only value rewritten
    c_axis: int  # the weight's input-channel axis
    min_channels: int
    max_res: int
    rewrite: Callable[[Any, Any], Any]
    name: str


def _const_weight(node: Any) -> npt.NDArray[np.float32] | None:
    """The node's weight when it is a float32 ``[O, I, kH, kW]`` constant (a view of OpenVINO's buffer)."""
    src = node.input_value(1).get_node()
    if src.get_type_name() != "Constant":
        return None
    data = np.asarray(src.get_data())
    return data if data.dtype == np.float32 and data.ndim == 4 else None


def _explicit(attrs: dict[str, Any]) -> bool:
    return str(attrs.get("auto_pad", "explicit")).lower() in ("explicit", "notset")


def _replace(node: Any, new: Any, suffix: str) -> None:
    new.set_friendly_name(f"{node.get_friendly_name()}/{suffix}")
    for target in node.output(0).get_target_inputs():
        target.replace_source_output(new.output(0))


def rewrite_synthesis(model: Any, rule: RewriteRule = DEFAULT_RULE) -> dict[str, int]:
    """Rewrite the layers of an ``openvino.Model`` that ``rule`` selects, in place; counts per rewrite.

    Only layers with a constant float32 weight of at most ``rule.max_weight_bytes``, static spatial sizes and
    exactly the attributes above are touched (anything else is left as read).
    """
    kinds = {
        "Convolution": _Kind({"strides": [1, 1], "pads_begin": [1, 1], "pads_end": [1, 1], "dilations": [1, 1]}, 1,
                             rule.conv_min_channels, rule.conv_max_res, winograd_conv3x3, "winograd"),
        "ConvolutionBackpropData": _Kind({"strides": [2, 2], "pads_begin": [0, 0], "pads_end": [0, 0],
                                          "dilations": [1, 1], "output_padding": [0, 0]}, 0,
                                         rule.up_min_channels, rule.up_max_res, phase_conv_transpose3x3, "phase_up"),
    }  # fmt: skip
    counts = {"winograd": 0, "phase_up": 0}
    for node in model.get_ordered_ops():
        kind = kinds.get(node.get_type_name())
        weight = _const_weight(node) if kind is not None and node.get_input_size() == 2 else None
        if kind is None or weight is None or weight.shape[2:] != (3, 3) or weight.nbytes > rule.max_weight_bytes:
            continue
        attrs = node.get_attributes()
        if not _explicit(attrs) or any([int(v) for v in attrs.get(k, [0, 0])] != v for k, v in kind.want.items()):
            continue
        shape = node.input_value(0).get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4 or shape[2].is_dynamic or shape[3].is_dynamic:
            continue
        h, w = shape[2].get_length(), shape[3].get_length()
        if weight.shape[kind.c_axis] < kind.min_channels or max(h, w) > kind.max_res:
            continue
        if kind.name == "winograd" and (h % 2 or w % 2):  # Winograd tiles 2x2 outputs.
            continue
        _replace(node, kind.rewrite(node.input_value(0), weight), kind.name)
        counts[kind.name] += 1
    model.validate_nodes_and_infer_types()
    return counts
