"""StyleGAN3 ONNX export: manifest (no noise, a transform input), dynamic batch, onnxruntime vs torch and vs the
independent numpy reference with gen_images.py translations and rotations.

Raw onnxruntime sessions: ``styleserve.server.runtime.ModelRuntime`` checks synthesis inputs as ws + noise
planes only and does not feed a ``transform`` yet.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from styleserve.export import onnx_export
from styleserve.export.networks_sg3 import GeneratorSG3, input_transform
from styleserve.export.onnx_export import TRANSFORM_INPUT, export_model

from styleserve.errors import ManifestError
from styleserve.latent import broadcast_ws, truncate, z_from_seeds
from styleserve.manifest import ModelManifest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sg3_models import MOVES, ref
from sg3_models import make_tiny as _make


@pytest.fixture(scope="module", params=["T16", "R32-cond"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[
    GeneratorSG3, dict[str, Any], Path
]:  # fmt: skip
    G, rcfg = _make(request.param)
    out = tmp_path_factory.mktemp("sg3") / request.param.lower()
    export_model(G, out, fp16=request.param == "T16", verify_batches=(1, 3))
    return G, rcfg, out


def _sess(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_manifest_and_graphs(exported: tuple[GeneratorSG3, dict[str, Any], Path]) -> None:
    G, _, out = exported
    m = ModelManifest.load(out)
    assert m.architecture == "stylegan3" and m.num_ws == G.num_ws == 6
    assert m.noise_inputs == [] and m.transform_input == TRANSFORM_INPUT == "transform"
    assert m.synthesis.inputs == ["ws", "transform"] and m.synthesis.outputs == ["image", "image_uint8"]
    assert m.mapping.inputs == (["z", "c"] if G.cfg.c_dim else ["z"])
    assert [s.layers for s in m.ws_layers] == [["input"]] + [[n] for n in G.synthesis.layer_names]
    assert m.verification["image_max_abs_err"] <= 1e-4 and m.verification["mapping_max_abs_err"] <= 1e-5
    if m.synthesis_fp16 is not None:
        assert m.verification["fp16_image_max_abs_err"] <= onnx_export.FP16_IMAGE_TOL
    assert set(np.load(out / "noise_const.npz").files) == set()
    for graph in ["mapping.onnx", "synthesis.onnx"] + (["synthesis_fp16.onnx"] if m.synthesis_fp16 else []):
        model = onnx.load(str(out / graph))
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 18
        assert all(i.type.tensor_type.shape.dim[0].dim_param == "N" for i in model.graph.input)
        assert not {n.op_type for n in model.graph.node} & {"AffineGrid", "GridSample"}


@pytest.mark.parametrize("batch", [1, 5])
def test_synthesis_matches_torch_with_per_image_transforms(
    exported: tuple[GeneratorSG3, dict[str, Any], Path], batch: int
) -> None:
    G, _, out = exported
    rng = np.random.RandomState(batch)
    ws = (G.mapping.w_avg.numpy() + rng.randn(batch, G.num_ws, G.cfg.w_dim)).astype(np.float32)
    transform = np.stack([input_transform(*MOVES[(i + 3) % len(MOVES)]) for i in range(batch)])
    img, u8 = _sess(out / "synthesis.onnx").run(None, {"ws": ws, "transform": transform})
    with torch.no_grad():
        want = G.synthesis(torch.from_numpy(ws), torch.from_numpy(transform)).numpy()
    res = G.cfg.img_resolution
    assert img.shape == (batch, 3, res, res) and u8.shape == (batch, res, res, 3) and u8.dtype == np.uint8
    assert np.abs(img - want).max() <= 1e-4
    want_u8 = np.clip(want.transpose(0, 2, 3, 1) * 127.5 + 128, 0, 255).astype(np.uint8)
    assert np.abs(u8.astype(int) - want_u8.astype(int)).max() <= 1


def test_pipeline_matches_reference_gen_images(exported: tuple[GeneratorSG3, dict[str, Any], Path]) -> None:
    """mapping.onnx -> styleserve.latent truncation -> synthesis.onnx with inv(make_transform) equals the reference
    of gen_images.py ``--seeds S --trunc 0.7 --translate X,Y --rotate DEG`` (one move per seed)."""
    G, rcfg, out = exported
    m = ModelManifest.load(out)
    seeds = [0, 1, 2, 3]
    z = z_from_seeds(seeds, m.z_dim)
    feeds = {"z": z}
    c = None
    if m.c_dim:
        c = np.eye(m.c_dim, dtype=np.float32)[[s % m.c_dim for s in seeds]]
        feeds["c"] = c
    (w,) = _sess(out / "mapping.onnx").run(["w"], feeds)
    ws = truncate(broadcast_ws(w, m.num_ws), np.asarray(m.w_avg, np.float32), 0.7)
    transform = np.stack([input_transform(*MOVES[s + 2]) for s in seeds])
    (img,) = _sess(out / "synthesis.onnx").run(["image"], {"ws": ws, "transform": transform})
    state = G.state_dict()
    want = np.concatenate([
        ref.reference_generator(state, rcfg, z[i : i + 1].astype(np.float64), None if c is None else c[i : i + 1],
                                truncation_psi=0.7, translate=MOVES[s + 2][0], rotate=MOVES[s + 2][1])
        for i, s in enumerate(seeds)
    ])  # fmt: skip
    assert np.abs(img - want).max() <= 1e-4


def test_identity_transform_is_default_image(exported: tuple[GeneratorSG3, dict[str, Any], Path]) -> None:
    G, _, out = exported
    ws = np.repeat(G.mapping.w_avg.numpy()[None, None], G.num_ws, axis=1).repeat(2, axis=0)
    eye = np.repeat(np.eye(3, dtype=np.float32)[None], 2, axis=0)
    assert np.array_equal(input_transform(), np.eye(3, dtype=np.float32))
    (img,) = _sess(out / "synthesis.onnx").run(["image"], {"ws": ws, "transform": eye})
    with torch.no_grad():
        want = G.synthesis(torch.from_numpy(ws)).numpy()  # the checkpoint's (identity) buffer
    assert np.abs(img - want).max() <= 1e-4


def test_manifest_transform_input_is_validated(exported: tuple[GeneratorSG3, dict[str, Any], Path]) -> None:
    _, _, out = exported
    d = json.loads((out / "model.json").read_text())
    for bad, match in (("ws", "collides"), ("", "transform_input"), (7, "transform_input")):
        with pytest.raises(ManifestError, match=match):
            ModelManifest.from_dict({**d, "transform_input": bad})
    with pytest.raises(ManifestError, match=r"synthesis\.inputs"):
        ModelManifest.from_dict({**d, "transform_input": None})  # the graph takes an input the manifest lacks


def test_openvino_engine_refuses_a_transform_model(exported: tuple[GeneratorSG3, dict[str, Any], Path]) -> None:
    """The OpenVINO engine does not feed the transform input: it refuses StyleGAN3 models at load, naming the file
    and the engine (exit 2 through the server), instead of failing at warm-up."""
    pytest.importorskip("openvino")
    from styleserve.server.engine_openvino import OpenVINORuntime

    from styleserve.errors import ManifestError

    _, _, out = exported
    with pytest.raises(ManifestError, match=r"synthesis\.file: --engine openvino .*StyleGAN3"):
        OpenVINORuntime(out, device="cpu")
