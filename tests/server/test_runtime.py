"""The onnxruntime side against the PyTorch networks: seeds, truncation, mixing and noise control."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from styleserve.export.networks import Generator
from styleserve.server.runtime import ModelRuntime, NoiseSpec

from styleserve.errors import InvalidArgument, ManifestError
from styleserve.grid import compose_grid, mix_grid_ws
from styleserve.latent import broadcast_ws, class_labels, truncate, z_from_seeds


@pytest.fixture(scope="module")
def rt(tiny_cond_model: Path) -> ModelRuntime:
    return ModelRuntime(tiny_cond_model, intra_op_threads=2)


@pytest.mark.parametrize("psi", [1.0, 0.7])
@pytest.mark.parametrize("noise_mode", ["const", "none"])
def test_seeds_reproduce_the_torch_generator(
    rt: ModelRuntime, tiny_cond_generator: Generator, psi: float, noise_mode: str
) -> None:
    seeds = list(range(8))
    m = rt.manifest
    z = z_from_seeds(seeds, m.z_dim)
    assert np.array_equal(z[3], np.random.RandomState(3).randn(m.z_dim).astype(np.float32))
    c = class_labels([s % 10 for s in seeds], m.c_dim)
    ws = truncate(broadcast_ws(rt.map(z, c), m.num_ws), rt.w_avg, psi)
    img = rt.synthesize(ws, [NoiseSpec(noise_mode)] * len(seeds), output="float")
    with torch.no_grad():
        ref = tiny_cond_generator(torch.from_numpy(z), torch.from_numpy(c), truncation_psi=psi, noise_mode=noise_mode)
    assert np.abs(img - ref.numpy()).max() <= 1e-4


def test_truncation_cutoff_matches_torch(rt: ModelRuntime, tiny_cond_generator: Generator) -> None:
    z = z_from_seeds([5, 6], rt.manifest.z_dim)
    c = class_labels([1, 2], 10)
    ws = truncate(broadcast_ws(rt.map(z, c), rt.manifest.num_ws), rt.w_avg, 0.5, cutoff=3)
    img = rt.synthesize(ws, output="float")
    with torch.no_grad():
        ref = tiny_cond_generator(torch.from_numpy(z), torch.from_numpy(c), 0.5, 3).numpy()
    assert np.abs(img - ref).max() <= 1e-4


def test_style_mixing_equals_hand_assembled_ws(rt: ModelRuntime) -> None:
    m = rt.manifest
    rows = broadcast_ws(rt.map(z_from_seeds([1, 2], m.z_dim), class_labels([0, 0], 10)), m.num_ws)
    cols = broadcast_ws(rt.map(z_from_seeds([3, 4, 5], m.z_dim), class_labels([1, 1, 1], 10)), m.num_ws)
    mixed = mix_grid_ws(rows, cols, [0, 1, 2])
    hand = rows[1].copy()
    hand[:3] = cols[2][:3]
    assert np.array_equal(mixed[1 * 3 + 2], hand)
    assert np.array_equal(rt.synthesize(mixed)[5], rt.synthesize(hand[None])[0])
    grid = compose_grid(rt.synthesize(rows), rt.synthesize(cols), rt.synthesize(mixed))
    assert grid.shape == (3 * 32, 4 * 32, 3)
    with pytest.raises(InvalidArgument, match=r"col_styles\[0\]"):
        mix_grid_ws(rows, cols, [m.num_ws])


def test_noise_specs_per_image(rt: ModelRuntime) -> None:
    ws = np.repeat(rt.w_avg[None, None], rt.manifest.num_ws, axis=1).repeat(4, axis=0)
    zero = [0.0] * len(rt.noise_names)
    imgs = rt.synthesize(
        ws, [NoiseSpec("const"), NoiseSpec("none"), NoiseSpec("const", strength=zero), NoiseSpec("random", 9)], "float"
    )
    assert np.abs(imgs[0] - imgs[1]).max() > 1e-3
    assert np.array_equal(imgs[1], imgs[2])  # Strength 0 everywhere is 'none'.
    again = rt.synthesize(ws[:1], [NoiseSpec("random", 9)], "float")
    assert np.abs(again[0] - imgs[3]).max() <= 1e-5  # Batch composition does not change an image.
    with pytest.raises(InvalidArgument, match=r"noise\[0\].mode"):
        rt.synthesize(ws[:1], [NoiseSpec("loud")])
    with pytest.raises(InvalidArgument, match="ws"):
        rt.synthesize(ws[:, :3])


def test_fp16_graph_is_close(tiny_cond_model: Path, rt: ModelRuntime) -> None:
    rt16 = ModelRuntime(tiny_cond_model, fp16=True, intra_op_threads=2)
    ws = broadcast_ws(rt.map(z_from_seeds([0, 1], 32), class_labels([0, 1], 10)), rt.manifest.num_ws)
    assert np.abs(rt16.synthesize(ws, output="float") - rt.synthesize(ws, output="float")).max() <= 0.05


def test_broken_model_directory_names_the_file(tmp_path: Path, tiny_cond_model: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_cond_model, bad)
    (bad / "synthesis.onnx").write_bytes(b"not a graph")
    with pytest.raises(ManifestError, match=r"synthesis\.onnx"):
        ModelRuntime(bad)
    (bad / "model.json").write_text("{}")
    with pytest.raises(ManifestError, match="format_version"):
        ModelRuntime(bad)


def test_io_binding_path_gives_the_same_images(tiny_cond_model: Path, rt: ModelRuntime) -> None:
    """The IO-binding path (the default on CUDA) run on CPU: same outputs as plain session.run."""
    bound = ModelRuntime(tiny_cond_model, intra_op_threads=2, io_binding=True)
    ws = broadcast_ws(rt.map(z_from_seeds([0, 1, 2], 32), class_labels([0, 1, 2], 10)), rt.manifest.num_ws)
    specs = [NoiseSpec("const"), NoiseSpec("random", 4), NoiseSpec("none")]
    for noise in (None, specs):
        a = bound.run_synthesis(ws, noise, ("image", "image_uint8"))
        b = rt.run_synthesis(ws, noise, ("image", "image_uint8"))
        assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["image_uint8"], b["image_uint8"])


def test_device_cuda_never_falls_back_to_the_cpu(tiny_cond_model: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a CUDA build of onnxruntime: covered on GPU hosts")
    with pytest.raises(RuntimeError, match="CUDA"):
        ModelRuntime(tiny_cond_model, device="cuda")
