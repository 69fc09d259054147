"""Our torch StyleGAN2 generator against an independent numpy reference of the official one.

The reference (``numpy_reference.py``, float64) is written from the NVlabs sources and takes the
official generic routes (explicit upfirdn2d, fallback up-sampling conv, fused per-sample weights),
so that a transcription slip in ``styleserve.export.networks`` shows up as a mismatch. Every
parameter and buffer except the resample filters is randomised (noise strengths and biases
non-zero, random ``w_avg``) so that no term can hide behind an initial value of 0 or 1.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from styleserve.export.networks import Generator, GeneratorConfig, make_config

from styleserve.latent import noise_from_seed


def _load_reference() -> Any:
    name = "styleserve_tests_numpy_reference"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("numpy_reference.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ref = _load_reference()

IMG_TOL = 1e-4
W_TOL = 1e-5

# Official Generator keyword arguments (the reference's config); make_config takes the same names
# except the ones listed in _REF_ONLY.
CONFIGS: dict[str, dict[str, Any]] = {
    "skip-rgb-16": dict(
        z_dim=32,
        w_dim=32,
        img_resolution=16,
        img_channels=3,
        mapping_layers=8,
        channel_base=256,
        channel_max=32,
        architecture="skip",
    ),
    "skip-gray-32-clamp-cond": dict(
        z_dim=16,
        c_dim=5,
        w_dim=16,
        img_resolution=32,
        img_channels=1,
        mapping_layers=3,
        lr_multiplier=0.1,
        channel_base=512,
        channel_max=16,
        architecture="skip",
        conv_clamp=1.0,
    ),
    "orig-rgb-32-clamp": dict(
        z_dim=24,
        w_dim=16,
        img_resolution=32,
        img_channels=3,
        mapping_layers=2,
        channel_base=256,
        channel_max=24,
        architecture="orig",
        conv_clamp=0.8,
    ),
    "orig-gray-16-cond": dict(
        z_dim=16,
        c_dim=3,
        w_dim=24,
        img_resolution=16,
        img_channels=1,
        mapping_layers=4,
        lr_multiplier=1.0,
        channel_base=128,
        channel_max=16,
        architecture="orig",
    ),
    "resnet-rgb-32": dict(
        z_dim=16,
        w_dim=16,
        img_resolution=32,
        img_channels=3,
        mapping_layers=4,
        channel_base=128,
        channel_max=32,
        architecture="resnet",
    ),
    "resnet-rgb-16-clamp-cond": dict(
        z_dim=20,
        c_dim=4,
        w_dim=16,
        img_resolution=16,
        img_channels=3,
        mapping_layers=2,
        channel_base=256,
        channel_max=32,
        architecture="resnet",
        conv_clamp=0.6,
    ),
    "skip-rgb-4": dict(
        z_dim=16,
        w_dim=16,
        img_resolution=4,
        img_channels=3,
        mapping_layers=2,
        channel_base=64,
        channel_max=16,
        architecture="skip",
        conv_clamp=1.5,
    ),
}
MAIN_CONFIGS = [
    "skip-rgb-16",
    "skip-gray-32-clamp-cond",
    "orig-rgb-32-clamp",
    "resnet-rgb-32",
    "resnet-rgb-16-clamp-cond",
]


def _build(kw: dict[str, Any], seed: int) -> tuple[Generator, dict[str, torch.Tensor]]:
    """Our Generator with every parameter/buffer (except resample filters) randomised."""
    make_kw = {
        k: v
        for k, v in kw.items()
        if k
        in {
            "z_dim",
            "c_dim",
            "w_dim",
            "img_resolution",
            "img_channels",
            "mapping_layers",
            "lr_multiplier",
            "channel_base",
            "channel_max",
            "architecture",
            "conv_clamp",
        }
    }
    cfg = make_config(**make_kw)
    if "resample_filter" in kw:
        cfg = GeneratorConfig(
            mapping=cfg.mapping,
            synthesis=dataclasses.replace(cfg.synthesis, resample_filter=tuple(kw["resample_filter"])),
        )
    torch.manual_seed(seed)
    G = Generator(cfg).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed + 1)
    lr = kw.get("lr_multiplier", 0.01)
    with torch.no_grad():
        for name, t in [*G.named_parameters(), *G.named_buffers()]:
            if name.endswith("resample_filter"):
                continue
            noise = torch.randn(t.shape, generator=gen)
            if name.endswith("noise_strength"):
                t.copy_(0.5 * noise + 0.25)  # never ~0: noise must matter
            elif name == "mapping.w_avg":
                t.copy_(noise)
            elif name.startswith("mapping.fc") and name.endswith(".bias"):
                t.add_(0.3 * noise / lr)  # effective bias = bias * lr_multiplier
            elif name.endswith("bias"):
                t.add_(0.3 * noise)
            else:
                t.mul_(0.8).add_(0.6 * t.std() * noise)  # same variance, new values
    return G, G.state_dict()


_CACHE: dict[tuple[str, int], tuple[Generator, dict[str, torch.Tensor]]] = {}


def _model(name: str, seed: int = 0) -> tuple[Generator, dict[str, torch.Tensor]]:
    key = (name, seed)
    if key not in _CACHE:
        _CACHE[key] = _build(CONFIGS[name], seed=1000 + 17 * seed + list(CONFIGS).index(name))
    G, state = _CACHE[key]
    G.synthesis.set_mode(fused=False)
    return G, state


def _inputs(kw: dict[str, Any], batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    rs = np.random.RandomState(seed)
    z = torch.from_numpy(rs.randn(batch, kw["z_dim"]).astype(np.float32))
    c = None
    if kw.get("c_dim", 0) > 0:
        labels = rs.randint(0, kw["c_dim"], size=batch)
        c = torch.nn.functional.one_hot(torch.from_numpy(labels), kw["c_dim"]).to(torch.float32)
    return z, c


def _max_err(ours: torch.Tensor, theirs: np.ndarray) -> float:
    assert tuple(ours.shape) == theirs.shape, (tuple(ours.shape), theirs.shape)
    return float(np.max(np.abs(ours.detach().double().numpy() - theirs)))


# ----------------------------------------------------------------------------
# Structure.


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_names_and_shapes_are_official(name: str) -> None:
    G, state = _model(name)
    expected = ref.official_state_shapes(CONFIGS[name])
    assert sorted(state) == sorted(expected)
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert G.num_ws == ref.num_ws(CONFIGS[name])
    f = ref.setup_filter(CONFIGS[name].get("resample_filter", (1, 3, 3, 1)))
    for key in state:
        if key.endswith("resample_filter"):
            np.testing.assert_allclose(state[key].double().numpy(), f, rtol=0, atol=1e-7)


@pytest.mark.parametrize("name", ["skip-rgb-16", "orig-rgb-32-clamp", "resnet-rgb-32", "skip-rgb-4"])
def test_ws_table_is_official(name: str) -> None:
    G, _ = _model(name)
    table = ref.official_ws_table(CONFIGS[name])
    assert G.synthesis.ws_table() == table
    # The reference's closed-form index agrees with the simulated official bookkeeping.
    for idx, layers in enumerate(table):
        for layer in layers:
            block, kind = layer.split(".")
            assert ref.layer_w_index(int(block[1:]), kind) == idx
    assert [n for n, _ in G.synthesis.noise_layers()] == [n for n, _ in ref.noise_layer_names(CONFIGS[name])]


def test_reference_upsample_preserves_dc() -> None:
    """Self-check of the reference: FIR up-sampling keeps a constant image constant (gain up**2)."""
    f = ref.setup_filter((1, 3, 3, 1))
    x = np.full((1, 2, 6, 6), 2.5)
    y = ref.upsample2d(x, f)
    assert y.shape == (1, 2, 12, 12)
    np.testing.assert_allclose(y[:, :, 2:-2, 2:-2], 2.5, atol=1e-12)
    # An impulse up-sampled lands centred on its 2x2 output cell (the official padding 2, 1).
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = 1.0
    y = ref.upsample2d(x, f)[0, 0]
    np.testing.assert_allclose(y, y.T, atol=0)  # same in x and y
    com = (np.indices(y.shape) * y).reshape(2, -1).sum(1) / y.sum()
    np.testing.assert_allclose(com, [2.5, 2.5], atol=1e-12)


# ----------------------------------------------------------------------------
# Mapping.


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_mapping_matches_reference(name: str, batch: int) -> None:
    kw = CONFIGS[name]
    G, state = _model(name)
    z, c = _inputs(kw, batch, seed=batch)
    w = G.mapping(z, c)
    w_ref = ref.reference_mapping(state, kw, z, c)
    err = _max_err(w, w_ref)
    assert err <= W_TOL, f"{name}: max |w - w_ref| = {err:.3g}"
    assert np.abs(w_ref).max() > 0.1  # not a degenerate comparison


def test_mapping_without_z() -> None:
    kw = dict(
        z_dim=0, c_dim=4, w_dim=16, img_resolution=8, img_channels=3, mapping_layers=3, channel_base=64, channel_max=16
    )
    G, state = _build(kw, seed=7)
    c = torch.eye(4)[[0, 2, 3]]
    w = G.mapping(torch.zeros(3, 0), c)
    assert _max_err(w, ref.reference_mapping(state, kw, np.zeros((3, 0)), c)) <= W_TOL
    img = G(torch.zeros(3, 0), c, truncation_psi=0.6)
    img_ref = ref.reference_generator(state, kw, np.zeros((3, 0)), c, truncation_psi=0.6)
    assert _max_err(img, img_ref) <= IMG_TOL


# ----------------------------------------------------------------------------
# Whole generator: mapping + truncation + synthesis.

TRUNCATIONS = [(1.0, None), (0.7, None), (0.7, 3), (-0.4, 5)]


@pytest.mark.parametrize("psi,cutoff", TRUNCATIONS)
@pytest.mark.parametrize("noise_mode", ["const", "none"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", MAIN_CONFIGS)
def test_generator_matches_reference(name: str, batch: int, noise_mode: str, psi: float, cutoff: int | None) -> None:
    kw = CONFIGS[name]
    G, state = _model(name)
    z, c = _inputs(kw, batch, seed=10 + batch)
    img_ref = ref.reference_generator(
        state, kw, z, c, truncation_psi=psi, truncation_cutoff=cutoff, noise_mode=noise_mode
    )
    assert img_ref.shape == (batch, kw["img_channels"], kw["img_resolution"], kw["img_resolution"])
    for fused in (False, True):
        G.synthesis.set_mode(fused=fused)
        img = G(z, c, truncation_psi=psi, truncation_cutoff=cutoff, noise_mode=noise_mode)
        err = _max_err(img, img_ref)
        assert err <= IMG_TOL, f"{name} fused={fused}: max |img - ref| = {err:.3g}"
    G.synthesis.set_mode(fused=False)


@pytest.mark.parametrize("name", ["orig-gray-16-cond", "skip-rgb-4"])
def test_generator_small_configs(name: str) -> None:
    kw = CONFIGS[name]
    G, state = _model(name)
    z, c = _inputs(kw, 3, seed=5)
    for psi, cutoff in TRUNCATIONS:
        img_ref = ref.reference_generator(state, kw, z, c, truncation_psi=psi, truncation_cutoff=cutoff)
        for fused in (False, True):
            G.synthesis.set_mode(fused=fused)
            img = G(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
            assert _max_err(img, img_ref) <= IMG_TOL, (psi, cutoff, fused)
    G.synthesis.set_mode(fused=False)


# ----------------------------------------------------------------------------
# Synthesis with arbitrary ws and explicit noise tensors.


def _explicit_noises(G: Generator, batch: int, seed: int) -> list[torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor | None] = []
    for i, (_, layer) in enumerate(G.synthesis.noise_layers()):
        n = batch if i % 3 != 1 else 1  # mix per-sample and shared noise planes
        out.append(torch.randn([n, 1, layer.resolution, layer.resolution], generator=gen))
    if len(out) > 2:
        out[2] = None  # a layer without noise
    return out


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", [*MAIN_CONFIGS, "skip-rgb-4"])
def test_synthesis_explicit_noise(name: str, batch: int) -> None:
    kw = CONFIGS[name]
    G, state = _model(name)
    gen = torch.Generator().manual_seed(100 + batch)
    ws = torch.randn([batch, G.num_ws, kw["w_dim"]], generator=gen)  # every ws row different
    noises = _explicit_noises(G, batch, seed=200 + batch)
    img_ref = ref.reference_synthesis(state, kw, ws, noises=[None if n is None else n.numpy() for n in noises])
    for fused in (False, True):
        G.synthesis.set_mode(fused=fused)
        err = _max_err(G.synthesis(ws, noises), img_ref)
        assert err <= IMG_TOL, f"{name} fused={fused}: max |img - ref| = {err:.3g}"
    G.synthesis.set_mode(fused=False)
    # The noise actually matters (so the comparison above covers its scaling).
    img_none = ref.reference_synthesis(state, kw, ws, noise_mode="none")
    assert np.abs(img_none - img_ref).max() > 1e-2


def test_random_noise_mode_is_seed0_noise() -> None:
    """Our 'random' mode feeds ``noise_from_seed(0, ...)`` planes, shared by the batch."""
    kw = CONFIGS["skip-rgb-16"]
    G, state = _model("skip-rgb-16")
    z, c = _inputs(kw, 2, seed=3)
    planes = noise_from_seed(0, [res for _, res in ref.noise_layer_names(kw)])
    img_ref = ref.reference_generator(state, kw, z, c, noises=planes)
    assert _max_err(G(z, c, noise_mode="random"), img_ref) <= IMG_TOL


# ----------------------------------------------------------------------------
# Beyond the official defaults: an asymmetric / odd-length resample filter exposes filter flips
# and padding offsets that the symmetric [1, 3, 3, 1] hides.


@pytest.mark.parametrize("taps", [(1, 2, 4, 3), (1, 2, 2), (2, 1)])
@pytest.mark.parametrize("arch", ["skip", "resnet"])
def test_asymmetric_resample_filter(arch: str, taps: tuple[int, ...]) -> None:
    kw = dict(
        z_dim=16,
        w_dim=16,
        img_resolution=16,
        img_channels=3,
        mapping_layers=2,
        channel_base=128,
        channel_max=16,
        architecture=arch,
        resample_filter=taps,
    )
    G, state = _build(kw, seed=31)
    z, c = _inputs(kw, 2, seed=4)
    img_ref = ref.reference_generator(state, kw, z, c, truncation_psi=0.8)
    for fused in (False, True):
        G.synthesis.set_mode(fused=fused)
        err = _max_err(G(z, c, truncation_psi=0.8), img_ref)
        assert err <= IMG_TOL, f"taps={taps} fused={fused}: {err:.3g}"


@pytest.mark.parametrize("fused", [False, True])
def test_tiny_weights_demodulation_epsilon(fused: bool) -> None:
    """Weights so small that sum (w * s)^2 is near 1e-8: the demodulation epsilon shapes the output."""
    kw = CONFIGS["skip-rgb-16"]
    G, state = _build(kw, seed=41)
    with torch.no_grad():
        G.synthesis.b4.conv1.weight.mul_(2e-6)
        G.synthesis.b8.conv0.weight.mul_(5e-6)
        G.synthesis.b16.conv1.weight.mul_(1e-5)
    state = G.state_dict()
    gen = torch.Generator().manual_seed(5)
    ws = torch.randn([2, G.num_ws, kw["w_dim"]], generator=gen)
    noises = G.synthesis.make_noise("none")
    img_ref = ref.reference_synthesis(state, kw, ws, noise_mode="none")
    G.synthesis.set_mode(fused=fused)
    assert _max_err(G.synthesis(ws, noises), img_ref) <= IMG_TOL
    # Sanity: without the epsilon the reference would differ clearly.
    sq = sum(float(((state[f"synthesis.{n}.weight"].double().numpy()) ** 2).sum()) for n in ("b4.conv1", "b8.conv0"))
    assert sq < 1e-6
