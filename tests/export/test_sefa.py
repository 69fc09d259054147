"""SeFa semantic directions at export: the stored directions against an independent numpy SeFa (an SVD of the
row-normalised affine weights) of the exported generator's own parameters, the ranges, the manifest entry."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from styleserve.export.networks import Generator
from styleserve.export.networks_v1 import GeneratorV1, make_config_v1
from styleserve.export.onnx_export import ws_slots
from styleserve.export.sefa import DEFAULT_COUNT, range_layers, write_directions

from styleserve.manifest import ModelManifest, WsSlot, sha256_file


def numpy_sefa(weights: list[np.ndarray], count: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: right singular vectors of the row-normalised stacked weights (= eigenvectors of A^T A,
    eigenvalues = squared singular values), largest first."""
    A = np.concatenate([w / np.linalg.norm(w, axis=1, keepdims=True) for w in weights]).astype(np.float64)
    _, s, vt = np.linalg.svd(A, full_matrices=False)
    return (s**2)[:count], vt[:count]


def expected_ranges(slots: list[WsSlot]) -> dict[str, list[int]]:
    """The documented rule: coarse <= 8 px, middle 16-32 px, fine >= 64 px, by each ws index's recorded resolution
    (the lowest of the layers it feeds)."""
    out = {
        "all": [s.index for s in slots],
        "coarse": [s.index for s in slots if s.resolution in (4, 8)],
        "middle": [s.index for s in slots if s.resolution in (16, 32)],
        "fine": [s.index for s in slots if s.resolution >= 64],
    }
    return {k: v for k, v in out.items() if v}


def assert_same_directions(got: np.ndarray, want: np.ndarray, eig_got: list[float], eig_want: np.ndarray) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(eig_got, eig_want, rtol=1e-5)
    assert all(a >= b for a, b in itertools.pairwise(eig_got))  # largest first
    # Same direction up to the sign an eigenvector is free to take; the stored sign has its largest |component| > 0.
    np.testing.assert_allclose(np.abs(np.sum(got * want, axis=1)), 1.0, atol=1e-4)
    assert (got[np.arange(len(got)), np.abs(got).argmax(axis=1)] > 0).all()


def test_exported_directions_match_numpy_sefa(tiny_uncond_model: Path, tiny_uncond_generator: Generator) -> None:
    m = ModelManifest.load(tiny_uncond_model)
    assert m.directions is not None and m.directions.method == "sefa"
    assert m.directions.count == min(DEFAULT_COUNT, m.w_dim)
    path = tiny_uncond_model / m.directions.file
    assert m.files_sha256[m.directions.file] == sha256_file(path)  # served files are all hashed
    stored = np.load(path)
    assert stored.dtype == np.float32 and stored.shape == (len(m.directions.ranges), m.directions.count, m.w_dim)

    # The generator's parameters, read by name from its state dict (official SeFa: one modulation per ws index,
    # its first conv layer, the last index's to-RGB).
    params = {k: v.numpy() for k, v in tiny_uncond_generator.state_dict().items()}
    per_ws = []
    for slot in m.ws_layers:
        convs = [n for n in slot.layers if "torgb" not in n]
        per_ws.append(params[f"synthesis.{(convs or slot.layers)[0]}.affine.weight"])
    assert {r.name: r.layers for r in m.directions.ranges} == expected_ranges(m.ws_layers)
    for i, r in enumerate(m.directions.ranges):
        eig, dirs = numpy_sefa([per_ws[j] for j in r.layers], m.directions.count)
        assert_same_directions(stored[i], dirs, r.eigenvalues, eig)
    # Distinct directions of one range are orthogonal.
    gram = stored[0] @ stored[0].T
    np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-5)


def test_stylegan_v1_style_affines(tmp_path: Path) -> None:
    """StyleGAN v1: the AdaIN ``style.weight`` [2C, w_dim] of each layer, one layer per ws index."""
    torch.manual_seed(0)
    cfg = make_config_v1(
        img_resolution=16, img_channels=3, z_dim=24, w_dim=24, mapping_fmaps=24, fmap_base=128, fmap_max=32
    )
    G = GeneratorV1(cfg).eval().requires_grad_(False)
    slots = ws_slots(G.synthesis)
    d = write_directions(G.synthesis, slots, tmp_path, count=5)
    stored = np.load(tmp_path / d.file)
    params = {k: v.numpy() for k, v in G.state_dict().items()}
    for i, r in enumerate(d.ranges):
        weights = [params[f"synthesis.{slots[j].layers[0]}.style.weight"] for j in r.layers]
        assert all(w.shape[1] == 24 and w.shape[0] % 2 == 0 for w in weights)
        eig, dirs = numpy_sefa(weights, 5)
        assert_same_directions(stored[i], dirs, r.eigenvalues, eig)
    assert [r.name for r in d.ranges] == ["all", "coarse", "middle"]  # 16 px: no fine layers


def test_ranges_of_a_1024_px_stylegan2() -> None:
    """The 18 ws of a 1024 px StyleGAN2 as the exporter records them (ws_slots of the real synthesis network:
    layers fed, the lowest of their resolutions): the paper's coarse 4-8 px, middle 16-32 px and fine 64-1024 px
    are ws 0-3, 4-7 and 8-17."""
    from styleserve.export.networks import SynthesisNetwork, make_config

    cfg = make_config(img_resolution=1024, z_dim=8, w_dim=8, channel_base=2048, channel_max=4)
    slots = ws_slots(SynthesisNetwork(cfg.synthesis))
    assert [s.resolution for s in slots] == [r for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024) for _ in (0, 1)]
    assert slots[3].layers == ["b8.torgb", "b16.conv0"]
    got = range_layers(slots)
    assert got == {"all": list(range(18)), "coarse": [0, 1, 2, 3], "middle": [4, 5, 6, 7], "fine": list(range(8, 18))}
    assert got == expected_ranges(slots)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.update(method="pca"), "directions.method"),
        (lambda d: d.update(count=0), "directions.count"),
        (lambda d: d.update(count=10**6), "directions.count"),
        (lambda d: d.update(file="../x.npy"), "directions.file"),
        (lambda d: d.update(ranges=[]), "directions.ranges"),
        (lambda d: d["ranges"][0].update(name="huge"), "directions.ranges[0].name"),
        (lambda d: d["ranges"].append(dict(d["ranges"][0])), "directions.ranges"),
        (lambda d: d["ranges"][0].update(layers=[0, 0]), "directions.ranges[0].layers"),
        (lambda d: d["ranges"][0].update(layers=[99]), "directions.ranges[0].layers[0]"),
        (lambda d: d["ranges"][0]["eigenvalues"].pop(), "directions.ranges[0].eigenvalues"),
        (lambda d: d["ranges"][0]["eigenvalues"].__setitem__(0, -1.0), "directions.ranges[0].eigenvalues[0]"),
    ],
)
def test_manifest_refuses_bad_directions(tiny_uncond_model: Path, edit: object, field: str) -> None:
    from styleserve.errors import ManifestError

    d = json.loads((tiny_uncond_model / "model.json").read_text())
    edit(d["directions"])  # type: ignore[operator]
    with pytest.raises(ManifestError, match=re.escape(f": {field}")):
        ModelManifest.from_dict(d)
