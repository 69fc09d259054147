"""``--engine openvino``: real servers over the session's exported tiny models, against the onnxruntime server.

The OpenVINO server compiles static-shape buckets (1, 2, 4 for ``--max-batch-size 4``) and verifies each
against onnxruntime at start; here its images must match the onnxruntime server's within 1e-4 (fp32) or
``BF16_MAX_ABS`` (bf16, only on CPUs with native bf16). Refusals exit 2 with one error line.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'styleserve[openvino]')")

from styleserve.server.engine_openvino import (
    BF16_MAX_ABS,
    FP32_MAX_ABS,
    OpenVINORuntime,
    buckets_for,
    check_engine_options,
    cpu_has_bf16,
    plan_runs,
)
from styleserve.server.ov_passes import RewriteRule
from styleserve.server.runtime import IMAGE_FLOAT, IMAGE_UINT8, ModelRuntime, NoiseSpec

from styleserve.errors import ConfigError
from styleserve.v1 import styleserve_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ServerProcess

COND = "tiny-cond"
UNCOND = "tiny-uncond"
RAW = pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW_FLOAT32)
OV_FLAGS = ("--engine", "openvino", "--max-batch-size", "4")
NEED_BF16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16 (avx512_bf16 / amx_bf16)")


def generate(s: ServerProcess, model: str, seeds: list[int], noise: pb.NoiseControl | None = None) -> np.ndarray:
    """Float images ``[N, C, H, W]`` of one Generate call."""
    req = pb.GenerateRequest(model=model, seeds=seeds, truncation=pb.Truncation(psi=0.7), output=RAW)
    if model == COND:
        req.class_index = 3
    if noise is not None:
        req.noise.CopyFrom(noise)
    resp = s.stub().Generate(req, timeout=60)
    return np.stack([np.frombuffer(i.data, "<f4").reshape(i.channels, i.height, i.width) for i in resp.images])


def compare(ov: ServerProcess, ref: ServerProcess, bound: float) -> None:
    """Both models, 7 seeds (runs of 4 + 2 + 1 rows or padded), const, random and weakened noise."""
    for model in (COND, UNCOND):
        n_noise = len(ref.stub().GetModel(pb.GetModelRequest(model=model)).noise_layers)
        for noise in (
            None,
            pb.NoiseControl(mode="random", noise_seed=5),
            pb.NoiseControl(mode="const", strength=[0.5] * n_noise),
        ):
            a, b = generate(ov, model, list(range(7)), noise), generate(ref, model, list(range(7)), noise)
            assert a.shape == b.shape
            err = float(np.abs(a - b).max())
            assert err <= bound, (model, noise, err)


def test_openvino_server_matches_the_onnxruntime_server(
    repo: Path, server: ServerProcess, start_server: object
) -> None:
    ov = start_server(repo, *OV_FLAGS)  # type: ignore[operator]
    compare(ov, server, FP32_MAX_ABS)
    info = ov.stub().GetModel(pb.GetModelRequest(model=COND))
    assert info.execution_provider == "OpenVINO:CPU:fp32"
    assert server.stub().GetModel(pb.GetModelRequest(model=COND)).execution_provider == "CPUExecutionProvider"
    metrics = ov.metrics()
    assert any(k.startswith("styleserve_model_info{") and 'provider="OpenVINO:CPU:fp32"' in k for k in metrics)
    log = ov.log()
    assert "OpenVINO fp32 batch 4: compiled" in log and "tiny-uncond: OpenVINO fp32 batch 1" in log


@NEED_BF16
def test_bf16_server_within_its_bound(repo: Path, server: ServerProcess, start_server: object) -> None:
    ov = start_server(repo, *OV_FLAGS, "--precision", "bf16")  # type: ignore[operator]
    compare(ov, server, BF16_MAX_ABS)
    assert ov.stub().GetModel(pb.GetModelRequest(model=UNCOND)).execution_provider == "OpenVINO:CPU:bf16"


def refused(start_server: object, repo: Path, *flags: str) -> str:
    """The one error line of a server that refused to start with exit code 2."""
    s = start_server(repo, *flags, wait=False)  # type: ignore[operator]
    assert s.proc.wait(120) == 2, s.log()
    errors = [ln for ln in s.log().splitlines() if " ERROR " in ln or "error:" in ln]
    assert len(errors) == 1 and "Traceback" not in s.log(), s.log()
    return str(errors[0])


def test_refusals_exit_2_with_one_line(repo: Path, start_server: object) -> None:
    assert "--precision bf16 needs --engine openvino" in refused(start_server, repo, "--precision", "bf16")
    assert "use --precision bf16" in refused(start_server, repo, *OV_FLAGS, "--fp16", "true")
    assert "--device cuda" in refused(start_server, repo, *OV_FLAGS, "--device", "cuda")
    assert "engine must be onnxruntime or openvino" in refused(start_server, repo, "--engine", "tensorrt")
    if not cpu_has_bf16():
        assert "needs a CPU with native bf16" in refused(start_server, repo, *OV_FLAGS, "--precision", "bf16")


@NEED_BF16
def test_bf16_beyond_its_bound_is_refused(tiny_uncond_model: Path, tmp_path: Path, start_server: object) -> None:
    """A model whose float image is the tiny model's times 100: bf16's error (about 0.05 before) passes its bound."""
    import json

    import onnx
    from onnx import helper, numpy_helper

    from styleserve.manifest import sha256_file

    d = tmp_path / "repo" / "loud"
    shutil.copytree(tiny_uncond_model, d)
    g = onnx.load(str(d / "synthesis.onnx"))
    out = next(o for o in g.graph.output if o.name == IMAGE_FLOAT)
    for node in g.graph.node:  # Rename the float output's producer and multiply by 100 after it.
        node.output[:] = ["image_pre" if o == IMAGE_FLOAT else o for o in node.output]
        node.input[:] = ["image_pre" if i == IMAGE_FLOAT else i for i in node.input]
    g.graph.initializer.append(numpy_helper.from_array(np.array(100.0, np.float32), "loud_gain"))
    g.graph.node.append(helper.make_node("Mul", ["image_pre", "loud_gain"], [out.name]))
    onnx.save(g, str(d / "synthesis.onnx"))
    meta = json.loads((d / "model.json").read_text())
    meta["source"]["files_sha256"]["synthesis.onnx"] = sha256_file(d / "synthesis.onnx")
    (d / "model.json").write_text(json.dumps(meta))
    line = refused(start_server, d.parent, *OV_FLAGS, "--precision", "bf16")
    assert str(d / "model.json") in line and "--engine openvino --precision bf16" in line, line
    assert f"more than the {BF16_MAX_ABS:g} allowed" in line, line


def test_engine_options_in_process() -> None:
    with pytest.raises(ConfigError, match="needs --engine openvino"):
        check_engine_options("onnxruntime", "bf16", device="auto", fp16=False)
    with pytest.raises(ConfigError, match="runs on the CPU"):
        check_engine_options("openvino", "fp32", device="cuda", fp16=False)
    check_engine_options("openvino", "fp32", device="auto", fp16=False)
    assert buckets_for(16) == [1, 2, 4, 8, 16] and buckets_for(6) == [1, 2, 4, 6] and buckets_for(1) == [1]


@settings(max_examples=200, deadline=None)
@given(
    times=st.dictionaries(st.sampled_from([1, 2, 3, 4, 6, 8, 16]), st.floats(1e-4, 10.0), min_size=1),
    n=st.integers(1, 40),
)
def test_plan_runs_covers_the_rows_at_least_cost(times: dict[int, float], n: int) -> None:
    """Every run but the last is full, the last holds the rest, and no single-bucket plan is cheaper."""
    plan = plan_runs(n, times)
    left = n
    for i, b in enumerate(plan):
        assert b in times
        if i < len(plan) - 1:
            assert b <= left
        left -= min(b, left)
    assert left == 0 and sum(plan[:-1]) < n
    cost = sum(times[b] for b in plan)
    for b, t in times.items():  # Runs of one bucket size only, the last padded: never cheaper.
        assert cost <= -(-n // b) * t * (1 + 1e-9)


@pytest.fixture(scope="module", params=["as read", "every layer rewritten"])
def ov_runtime(tiny_cond_model: Path, request: pytest.FixtureRequest) -> OpenVINORuntime:
    """The tiny graph as read (its 32 channels are below the default rule) and with every 3x3 conv and
    up-sampling conv rewritten (server/ov_passes.py)."""
    rule = RewriteRule(conv_min_channels=1, conv_max_res=1 << 20, up_min_channels=1, up_max_res=1 << 20)
    rt = OpenVINORuntime(tiny_cond_model, max_batch_size=4, intra_op_threads=1,
                         **({} if request.param == "as read" else {"rewrite_rule": rule}))  # fmt: skip
    assert (sum(rt.rewrites.values()) > 0) == (request.param != "as read")
    rt.warmup()
    return rt


@pytest.fixture(scope="module")
def ort_runtime(tiny_cond_model: Path) -> ModelRuntime:
    return ModelRuntime(tiny_cond_model, intra_op_threads=1)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 6),
    modes=st.lists(st.sampled_from(["const", "none", "random"]), min_size=6, max_size=6),
    strength=st.one_of(st.none(), st.floats(-3.0, 3.0)),
    seed=st.integers(0, 2**31 - 1),
)
def test_any_batch_and_noise_mix_matches_onnxruntime(
    ov_runtime: OpenVINORuntime, ort_runtime: ModelRuntime, n: int, modes: list[str], strength: float | None, seed: int
) -> None:
    """Batches above the largest bucket split, odd ones pad; per-image noise modes and strengths as onnxruntime."""
    m = ort_runtime.manifest
    ws = np.random.RandomState(seed % 2**32).randn(n, m.num_ws, m.w_dim).astype(np.float32)
    k = len(m.noise_inputs)
    specs = [
        NoiseSpec(modes[i], seed=seed + i, strength=None if strength is None else [strength] * k) for i in range(n)
    ]
    a = ov_runtime.run_synthesis(ws, specs, (IMAGE_FLOAT, IMAGE_UINT8))
    b = ort_runtime.run_synthesis(ws, specs, (IMAGE_FLOAT, IMAGE_UINT8))
    assert a[IMAGE_FLOAT].shape == b[IMAGE_FLOAT].shape and a[IMAGE_UINT8].shape == b[IMAGE_UINT8].shape
    assert float(np.abs(a[IMAGE_FLOAT] - b[IMAGE_FLOAT]).max()) <= FP32_MAX_ABS
    assert int(np.abs(a[IMAGE_UINT8].astype(int) - b[IMAGE_UINT8]).max()) <= 1  # Rounding at a .5 boundary.


def test_server_and_client_import_without_openvino() -> None:
    """openvino is optional: the server imports and serves onnxruntime without it; the client never needs it."""
    import subprocess

    code = (
        "import sys; sys.modules['openvino'] = None\n"
        "import styleserve.server.app, styleserve.server.repository, styleserve.clients, styleserve.clients.cli\n"
        "from styleserve.server.engine_openvino import runtime_factory\n"
        "from styleserve.server.runtime import ModelRuntime\n"
        "assert runtime_factory('onnxruntime', 'fp32', 16) is ModelRuntime\n"
        "try:\n"
        "    runtime_factory('openvino', 'fp32', 16)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ConfigError --engine openvino needs the openvino package"), r.stdout
    assert "pip install 'styleserve[openvino]'" in r.stdout
