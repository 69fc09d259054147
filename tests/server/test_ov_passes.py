"""The OpenVINO engine's graph rewrites (server/ov_passes.py): each computes its layer's function, only the
layers the rule selects are touched, and a real server whose model qualifies serves the rewritten graph within
the fp32 bound of onnxruntime."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'styleserve[openvino]')")

import openvino as ov
import openvino.opset13 as ops
from styleserve.server.engine_openvino import FP32_MAX_ABS, OpenVINORuntime
from styleserve.server.ov_passes import (
    RewriteRule,
    phase_conv_transpose3x3,
    rewrite_synthesis,
    winograd_conv3x3,
)

from styleserve.v1 import styleserve_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ServerProcess

CFG = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "1"}
EVERYTHING = RewriteRule(conv_min_channels=1, conv_max_res=1 << 20, up_min_channels=1, up_max_res=1 << 20)


def run(outputs: list[Any], param: Any, x: np.ndarray) -> list[np.ndarray]:
    compiled = ov.Core().compile_model(ov.Model(outputs, [param]), "CPU", CFG)
    req = compiled.create_infer_request()
    req.infer({0: x})
    return [np.array(req.get_output_tensor(i).data) for i in range(len(outputs))]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 2),
    c_in=st.integers(1, 20),
    c_out=st.integers(1, 20),
    half_h=st.integers(1, 7),
    half_w=st.integers(1, 7),
    seed=st.integers(0, 2**31 - 1),
)
def test_winograd_is_the_3x3_convolution(n: int, c_in: int, c_out: int, half_h: int, half_w: int, seed: int) -> None:
    rng = np.random.RandomState(seed % 2**32)
    x = rng.randn(n, c_in, 2 * half_h, 2 * half_w).astype(np.float32)
    weight = rng.randn(c_out, c_in, 3, 3).astype(np.float32)
    p = ops.parameter(x.shape, np.float32)
    direct = ops.convolution(p, ops.constant(weight), [1, 1], [1, 1], [1, 1], [1, 1])
    ref, got = run([direct, winograd_conv3x3(p.output(0), weight)], p, x)
    assert rel_err(got, ref) < 1e-5


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 2),
    c_in=st.integers(1, 20),
    c_out=st.integers(1, 20),
    h=st.integers(1, 13),
    w=st.integers(1, 13),
    seed=st.integers(0, 2**31 - 1),
)
def test_phase_convolutions_are_the_transposed_convolution(
    n: int, c_in: int, c_out: int, h: int, w: int, seed: int
) -> None:
    rng = np.random.RandomState(seed % 2**32)
    x = rng.randn(n, c_in, h, w).astype(np.float32)
    weight = rng.randn(c_in, c_out, 3, 3).astype(np.float32)  # ConvTranspose layout [C_in, C_out, kH, kW]
    p = ops.parameter(x.shape, np.float32)
    direct = ops.convolution_backprop_data(
        p, ops.constant(weight), [2, 2], pads_begin=[0, 0], pads_end=[0, 0], dilations=[1, 1]
    )
    ref, got = run([direct, phase_conv_transpose3x3(p.output(0), weight)], p, x)
    assert ref.shape == (n, c_out, 2 * h + 1, 2 * w + 1)
    assert rel_err(got, ref) < 1e-5


def layer_zoo(c: int, r: int) -> tuple[Any, Any]:
    """One model with every conv kind a synthesis graph has, and some it does not: (model, input parameter)."""
    rng = np.random.RandomState(0)

    def w(*shape: int) -> Any:
        return ops.constant((rng.randn(*shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32))

    x = ops.parameter([1, c, r, r], np.float32)
    y = ops.convolution(x, w(c, c, 3, 3), [1, 1], [1, 1], [1, 1], [1, 1])  # rewritten (Winograd)
    y = ops.convolution(y, w(c, c, 1, 1), [1, 1], [0, 0], [0, 0], [1, 1])  # 1x1: kept
    y = ops.convolution(y, w(c, c, 3, 3), [2, 2], [1, 1], [1, 1], [1, 1])  # stride 2: kept
    y = ops.convolution(y, w(c, c, 3, 3), [1, 1], [0, 0], [0, 0], [1, 1])  # no padding: kept
    y = ops.convolution_backprop_data(y, w(c, c, 3, 3), [2, 2], pads_begin=[0, 0], pads_end=[0, 0], dilations=[1, 1])
    y = ops.convolution_backprop_data(y, w(c, c, 4, 4), [2, 2], pads_begin=[1, 1], pads_end=[1, 1], dilations=[1, 1])
    y = ops.convolution(y, ops.multiply(w(c, c, 3, 3), ops.constant(np.float32(1.0))), [1, 1], [1, 1], [1, 1], [1, 1])
    return ov.Model([y], [x]), x


def test_the_rule_selects_layers_and_the_model_keeps_its_function() -> None:
    c, r = 8, 8
    x = np.random.RandomState(1).randn(1, c, r, r).astype(np.float32)

    def out(model: Any) -> np.ndarray:
        req = ov.Core().compile_model(model, "CPU", CFG).create_infer_request()
        req.infer({0: x})
        return np.array(req.get_output_tensor(0).data)

    ref = out(layer_zoo(c, r)[0])
    # 3x3 stride 1 pads 1 with a constant weight: the first conv only (the last one's weight is computed);
    # a 3x3 stride-2 transposed conv without padding: the first only (the second is 4x4 and padded).
    model = layer_zoo(c, r)[0]
    assert rewrite_synthesis(model, EVERYTHING) == {"winograd": 1, "phase_up": 1}
    assert rel_err(out(model), ref) < 1e-5
    types = [n.get_type_name() for n in model.get_ordered_ops()]
    assert types.count("ConvolutionBackpropData") == 1 and "DepthToSpace" in types
    # Too few channels, too large an input: nothing is touched.
    for rule in (
        RewriteRule(conv_min_channels=c + 1, up_min_channels=c + 1),
        RewriteRule(conv_max_res=r - 1, up_max_res=1),
        RewriteRule(conv_min_channels=1, up_min_channels=1, max_weight_bytes=c * c * 9 * 4 - 1),
    ):
        model = layer_zoo(c, r)[0]
        assert rewrite_synthesis(model, rule) == {"winograd": 0, "phase_up": 0}


def test_runtime_with_every_layer_rewritten_matches_onnxruntime(tiny_cond_model: Path) -> None:
    """The whole tiny synthesis graph with every 3x3 conv and up-sampling conv rewritten, verified at warm-up."""
    rt = OpenVINORuntime(tiny_cond_model, max_batch_size=2, intra_op_threads=1, rewrite_rule=EVERYTHING)
    assert rt.rewrites["winograd"] >= 4 and rt.rewrites["phase_up"] >= 3, rt.rewrites
    rt.warmup()
    assert rt.verify_error is not None and rt.verify_error <= FP32_MAX_ABS
    # bf16 is never rewritten (its bound is spent by the precision itself).
    from styleserve.server.engine_openvino import cpu_has_bf16

    if cpu_has_bf16():
        assert OpenVINORuntime(tiny_cond_model, precision="bf16", rewrite_rule=EVERYTHING).rewrites == {}


@pytest.fixture(scope="module")
def wide_repo(tmp_path_factory: pytest.TempPathFactory, make_randomized: Any) -> Path:
    """A 16 px model with 256 channels at every resolution: the default rule rewrites it."""
    from styleserve.export.networks import make_config
    from styleserve.export.onnx_export import export_model

    cfg = make_config(
        img_resolution=16, img_channels=3, c_dim=0, z_dim=32, w_dim=32, channel_base=4096, channel_max=256,
        mapping_layers=2, conv_clamp=256,
    )  # fmt: skip
    root = tmp_path_factory.mktemp("wide")
    export_model(make_randomized(cfg, seed=5), root / "wide", verify_batches=(1,))
    return root


def test_server_serves_the_rewritten_graph_within_the_fp32_bound(wide_repo: Path, start_server: Any) -> None:
    ov_server: ServerProcess = start_server(wide_repo, "--engine", "openvino", "--max-batch-size", "2")
    ref: ServerProcess = start_server(wide_repo)
    log = ov_server.log()
    # 3x3 convs at 4, 8 and 16 px; up-sampling convs from 4 and 8 px (a 16 px input would be above the rule).
    assert "wide: OpenVINO graph rewrites: 3 winograd, 2 phase_up" in log, log
    as_read: ServerProcess = start_server(wide_repo, "--engine", "openvino", "--graph-rewrites", "false")
    assert "graph rewrites" not in as_read.log() and "OpenVINO fp32 batch 1: compiled" in as_read.log()
    raw = pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW_FLOAT32)
    for noise in (None, pb.NoiseControl(mode="random", noise_seed=3)):
        req = pb.GenerateRequest(model="wide", seeds=[0, 1, 2], truncation=pb.Truncation(psi=0.7), output=raw)
        if noise is not None:
            req.noise.CopyFrom(noise)
        b = ref.stub().Generate(req, timeout=60).images
        for s in (ov_server, as_read):
            a = s.stub().Generate(req, timeout=60).images
            for ia, ib in zip(a, b, strict=True):
                err = np.abs(np.frombuffer(ia.data, "<f4") - np.frombuffer(ib.data, "<f4")).max()
                assert err <= FP32_MAX_ABS
