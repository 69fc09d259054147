"""ONNX export: files, manifest, dynamic batch, noise modes, self-verification and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from styleserve.export import onnx_export
from styleserve.export.networks import Generator, make_config
from styleserve.export.onnx_export import export_model, verify

from styleserve.errors import VerificationError
from styleserve.manifest import ModelManifest


def test_model_directory_contents(tiny_cond_model: Path, tiny_cond_generator: Generator) -> None:
    names = {p.name for p in tiny_cond_model.iterdir()}
    assert names == {
        "model.json", "mapping.onnx", "synthesis.onnx", "synthesis_fp16.onnx", "noise_const.npz", "directions.npy"
    }  # fmt: skip
    m = ModelManifest.load(tiny_cond_model)
    G = tiny_cond_generator
    assert (m.z_dim, m.c_dim, m.w_dim, m.num_ws, m.img_resolution, m.img_channels) == (32, 10, 32, 8, 32, 3)
    assert m.mapping.inputs == ["z", "c"] and m.mapping.outputs == ["w"]
    assert m.synthesis.inputs[0] == "ws" and m.synthesis.outputs == ["image", "image_uint8"]
    assert [n.layer for n in m.noise_inputs] == [name for name, _ in G.synthesis.noise_layers()]
    assert m.ws_layers[1].layers == ["b4.torgb", "b8.conv0"]
    assert np.allclose(m.w_avg, G.mapping.w_avg.numpy())
    v = m.verification
    assert v["image_max_abs_err"] <= 1e-4 and v["mapping_max_abs_err"] <= 1e-5
    assert v["fp16_image_max_abs_err"] <= onnx_export.FP16_IMAGE_TOL
    assert m.versions["opset"] >= 18 and m.versions["torch"].startswith("2.13")
    for graph in ("mapping.onnx", "synthesis.onnx", "synthesis_fp16.onnx"):
        model = onnx.load(str(tiny_cond_model / graph))
        onnx.checker.check_model(model)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def _sess(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("mode", ["const", "none", "random"])
def test_synthesis_matches_torch_for_any_batch_and_noise(
    tiny_cond_model: Path, tiny_cond_generator: Generator, batch: int, mode: str
) -> None:
    G = tiny_cond_generator
    m = ModelManifest.load(tiny_cond_model)
    rng = np.random.RandomState(batch)
    ws = (G.mapping.w_avg.numpy() + rng.randn(batch, m.num_ws, m.w_dim)).astype(np.float32)
    noises = G.synthesis.make_noise(mode, batch=batch, seed=11)
    feeds = {"ws": ws}
    for n, t in zip(m.noise_inputs, noises, strict=True):
        feeds[n.name] = np.zeros((1, 1, n.resolution, n.resolution), np.float32) if t is None else t.numpy()
    img, u8 = _sess(tiny_cond_model / "synthesis.onnx").run(None, feeds)
    with torch.no_grad():
        ref = G.synthesis(torch.from_numpy(ws), noises).numpy()
    assert img.shape == (batch, 3, 32, 32) and u8.shape == (batch, 32, 32, 3) and u8.dtype == np.uint8
    assert np.abs(img - ref).max() <= 1e-4
    ref_u8 = np.clip(ref.transpose(0, 2, 3, 1) * 127.5 + 128, 0, 255).astype(np.uint8)
    assert np.abs(u8.astype(int) - ref_u8.astype(int)).max() <= 1


def test_noise_modes_change_the_image(tiny_cond_model: Path, tiny_cond_generator: Generator) -> None:
    G = tiny_cond_generator
    m = ModelManifest.load(tiny_cond_model)
    ws = np.repeat(G.mapping.w_avg.numpy()[None, None], m.num_ws, axis=1)
    sess = _sess(tiny_cond_model / "synthesis.onnx")

    def run(mode: str, seed: int = 0) -> np.ndarray:
        feeds = {"ws": ws}
        for n, t in zip(m.noise_inputs, G.synthesis.make_noise(mode, seed=seed), strict=True):
            feeds[n.name] = np.zeros((1, 1, n.resolution, n.resolution), np.float32) if t is None else t.numpy()
        return sess.run(["image"], feeds)[0]

    assert np.abs(run("const") - run("none")).max() > 1e-3
    assert np.array_equal(run("random", 5), run("random", 5))
    assert np.abs(run("random", 5) - run("random", 6)).max() > 1e-3


def test_mapping_matches_torch(tiny_cond_model: Path, tiny_cond_generator: Generator) -> None:
    rng = np.random.RandomState(0)
    z = rng.randn(6, 32).astype(np.float32)
    c = np.eye(10, dtype=np.float32)[[0, 3, 9, 1, 1, 2]]
    (w,) = _sess(tiny_cond_model / "mapping.onnx").run(["w"], {"z": z, "c": c})
    with torch.no_grad():
        ref = tiny_cond_generator.mapping(torch.from_numpy(z), torch.from_numpy(c)).numpy()
    assert np.abs(w - ref).max() <= 1e-5


def test_verify_detects_a_mismatched_network(tiny_cond_model: Path, tiny_cond_generator: Generator) -> None:
    import copy

    G = copy.deepcopy(tiny_cond_generator)
    G.synthesis.b32.conv1.bias.add_(1e-3)
    with pytest.raises(VerificationError, match="synthesis max abs image error"):
        verify(G, tiny_cond_model / "mapping.onnx", tiny_cond_model / "synthesis.onnx", batches=(1,))
    G = copy.deepcopy(tiny_cond_generator)
    G.mapping.fc1.weight.mul_(1.01)
    with pytest.raises(VerificationError, match="mapping max abs error"):
        verify(G, tiny_cond_model / "mapping.onnx", tiny_cond_model / "synthesis.onnx", batches=(1,))


def test_failed_verification_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    G = Generator(make_config(z_dim=8, w_dim=8, img_resolution=8, channel_base=32, channel_max=8, mapping_layers=2))
    monkeypatch.setattr(onnx_export, "IMAGE_TOL", 0.0)
    with torch.no_grad():
        G.synthesis.b8.conv1.noise_strength.fill_(1.0)
    out = tmp_path / "model"
    with pytest.raises(VerificationError):
        export_model(G, out, verify_batches=(3,))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # No temporary directory left behind either.


def test_export_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    G = Generator(make_config(z_dim=8, w_dim=8, img_resolution=8, channel_base=32, channel_max=8, mapping_layers=2))
    with pytest.raises(FileExistsError):
        export_model(G, tmp_path / "m")


def test_cli_demo_and_errors(tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "styleserve.export.cli"]
    r = subprocess.run([*exe, "--demo", str(tmp_path / "demo")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "verification" in r.stdout and (tmp_path / "demo" / "model.json").exists()
    r = subprocess.run([*exe, str(tmp_path / "missing.pkl"), str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 1
    assert "error" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()
