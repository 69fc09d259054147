"""Our torch StyleGAN (v1) generator against an independent numpy reference of the official one.

The reference (``numpy_reference_v1.py``, float64) reads the TensorFlow variables by their TF names
and layouts; the torch network gets them through ``networks_v1.tf_to_state``, so the name and
layout map is checked along with the math. Both the fused (transposed conv) and the separate
(nearest + conv) up-sampling paths are exercised at small resolutions through ``fused_scale``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from styleserve.export.networks_v1 import (
    GeneratorV1,
    load_generator_v1,
    make_config_v1,
    tf_to_state,
)

from styleserve.latent import noise_from_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy_reference_v1 as ref

IMG_TOL = 1e-4
W_TOL = 1e-5

CONFIGS: dict[str, dict[str, Any]] = {
    "32px-fused-cond": dict(
        latent_size=16,
        label_size=5,
        dlatent_size=16,
        mapping_layers=3,
        mapping_fmaps=24,
        resolution=32,
        num_channels=3,
        fmap_base=128,
        fmap_max=16,
        fused_scale=True,
    ),
    "32px-separate-gray": dict(
        latent_size=16,
        dlatent_size=12,
        mapping_layers=2,
        mapping_fmaps=12,
        mapping_lrmul=0.1,
        resolution=32,
        num_channels=1,
        fmap_base=128,
        fmap_max=16,
        fused_scale=False,
    ),
    "16px-auto-relu-noblur": dict(
        latent_size=8,
        dlatent_size=8,
        mapping_layers=1,
        mapping_fmaps=8,
        resolution=16,
        fmap_base=64,
        fmap_max=8,
        nonlinearity="relu",
        mapping_nonlinearity="relu",
        blur_filter=[],
    ),
}


def build(ref_cfg: dict[str, Any], seed: int) -> tuple[GeneratorV1, Any, Any, np.ndarray]:
    cfg = ref.full_config(ref_cfg)
    gcfg = make_config_v1(
        z_dim=cfg["latent_size"],
        c_dim=cfg["label_size"],
        w_dim=cfg["dlatent_size"],
        img_resolution=cfg["resolution"],
        img_channels=cfg["num_channels"],
        mapping_layers=cfg["mapping_layers"],
        mapping_fmaps=cfg["mapping_fmaps"],
        mapping_lrmul=cfg["mapping_lrmul"],
        fmap_base=cfg["fmap_base"],
        fmap_max=cfg["fmap_max"],
        fused_scale=cfg["fused_scale"],
        blur_filter=cfg["blur_filter"],
        nonlinearity=cfg["nonlinearity"],
    )
    m, s, avg = ref.random_tf_vars(cfg, seed)
    G = load_generator_v1(gcfg, tf_to_state(gcfg, m, s, avg))
    return G, m, s, avg


def inputs(G: GeneratorV1, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    rng = np.random.RandomState(seed)
    z = rng.randn(n, G.cfg.z_dim).astype(np.float32)
    c = np.eye(G.cfg.c_dim, dtype=np.float32)[rng.randint(0, G.cfg.c_dim, n)] if G.cfg.c_dim else None
    return z, c


@pytest.mark.parametrize("name", list(CONFIGS))
def test_generator_matches_reference(name: str) -> None:
    G, m, s, avg = build(CONFIGS[name], seed=1)
    z, c = inputs(G, 3, seed=2)
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(z), None if c is None else torch.from_numpy(c)).numpy()
    assert np.abs(w - ref.reference_mapping(m, CONFIGS[name], z, c)).max() <= W_TOL
    for psi, cutoff in ((1.0, None), (0.7, 8), (0.5, 3), (-0.3, None)):
        for mode in ("const", "none"):
            with torch.no_grad():
                img = G(
                    torch.from_numpy(z),
                    None if c is None else torch.from_numpy(c),
                    truncation_psi=psi,
                    truncation_cutoff=cutoff,
                    noise_mode=mode,
                ).numpy()
            expect = ref.reference_generator(
                m, s, avg, CONFIGS[name], z, c, truncation_psi=psi, truncation_cutoff=cutoff or 99, noises=mode
            )
            err = float(np.abs(img - expect).max())
            assert err <= IMG_TOL, f"{name} psi={psi} cutoff={cutoff} noise={mode}: {err:.3g}"
            assert float(np.abs(expect).max()) > 0.1


def test_mixed_ws_and_random_noise_match_reference() -> None:
    name = "32px-fused-cond"
    G, _, s, _ = build(CONFIGS[name], seed=5)
    rng = np.random.RandomState(7)
    ws = rng.randn(2, G.num_ws, G.cfg.w_dim).astype(np.float32)  # Every layer its own w: mixing.
    planes = noise_from_seed(3, [layer.resolution for _, layer in G.synthesis.noise_layers()])
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(ws), [torch.from_numpy(p) for p in planes]).numpy()
    expect = ref.reference_synthesis(s, CONFIGS[name], ws, list(planes))
    assert float(np.abs(img - expect).max()) <= IMG_TOL


def test_layer_tables() -> None:
    G, *_ = build(CONFIGS["32px-separate-gray"], seed=0)
    names = [n for n, _ in G.synthesis.noise_layers()]
    assert names == ["b4.input", "b4.conv", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1", "b32.conv0", "b32.conv1"]
    assert G.synthesis.ws_table() == [[n] for n in names]
    assert [layer.resolution for _, layer in G.synthesis.noise_layers()] == [4, 4, 8, 8, 16, 16, 32, 32]
    assert G.num_ws == 8 and G.cfg.truncation_cutoff == 8


def test_fused_scale_auto_switches_at_128() -> None:
    cfg = make_config_v1(img_resolution=256, fmap_base=2048, fmap_max=4, z_dim=4, w_dim=4, mapping_fmaps=4)
    fused = {n: layer.fused for n, layer in GeneratorV1(cfg).synthesis.noise_layers() if n.endswith("conv0")}
    assert fused == {"b8.conv0": False, "b16.conv0": False, "b32.conv0": False, "b64.conv0": False,
                     "b128.conv0": True, "b256.conv0": True}  # fmt: skip
