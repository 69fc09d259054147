"""Our torch StyleGAN3 generator (configs T and R) against an independent numpy reference of the official one.

The reference (``numpy_reference_sg3.py``, float64) is written from the NVlabs sources and takes the
official routes our torch code avoids (fused per-sample weights with the batch-wide style RMS, 2-D
filters at full rate then decimated, explicit transform matrices, scipy's filter formulas). Every
parameter and buffer is randomised (biases, ``magnitude_ema``, ``w_avg``, frequencies) except the
designed filters, which are compared with the reference's own design.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from styleserve.export.networks import truncate_ws
from styleserve.export.networks_sg3 import (
    GeneratorConfigSG3,
    GeneratorSG3,
    SynthesisConfigSG3,
    expected_shapes_sg3,
    generator_from_official,
    input_transform,
    load_generator_sg3,
    make_config_sg3,
)

from styleserve.errors import CheckpointError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sg3_models import MOVES, TINY, ref
from sg3_models import make_tiny as _make

IMG_TOL = 1e-4
W_TOL = 1e-5


@pytest.fixture(scope="module", params=list(TINY))
def model(request: pytest.FixtureRequest) -> tuple[str, GeneratorSG3, dict[str, Any]]:
    G, rcfg = _make(request.param)
    return request.param, G, rcfg


def _z(seed: int, z_dim: int) -> np.ndarray:
    return np.random.RandomState(seed).randn(1, z_dim)  # gen_images.py


def test_torch_matches_reference_for_seeds_psi_and_transforms(model: tuple[str, GeneratorSG3, dict[str, Any]]) -> None:
    name, G, rcfg = model
    seeds = list(range(8)) if name != "R32-cond" else [0, 5]
    z = np.concatenate([_z(s, G.cfg.z_dim) for s in seeds])
    c = np.eye(G.cfg.c_dim)[[s % G.cfg.c_dim for s in seeds]] if G.cfg.c_dim else None
    transforms = np.stack([input_transform(*MOVES[s]) for s in seeds])
    state = G.state_dict()
    for psi in (1.0, 0.7):
        ws = ref.reference_ws(state, rcfg, z, c, truncation_psi=psi)
        want = np.concatenate([ref.reference_synthesis(state, rcfg, ws[i : i + 4], transforms[i : i + 4])
                               for i in range(0, len(seeds), 4)])  # fmt: skip
        with torch.no_grad():
            c_t = None if c is None else torch.from_numpy(c).float()
            got = G(torch.from_numpy(z).float(), c_t, truncation_psi=psi, transform=torch.from_numpy(transforms))
        assert got.shape == want.shape == (len(seeds), 3, G.cfg.img_resolution, G.cfg.img_resolution)
        assert np.abs(want).max() > 0.05  # not a degenerate image
        err = np.abs(got.numpy() - want).max()
        assert err <= IMG_TOL, f"{name} psi={psi}: max abs error {err:.3g}"


def test_each_transform_is_gen_images_buffer_copy(model: tuple[str, GeneratorSG3, dict[str, Any]]) -> None:
    """The per-image transform input equals gen_images.py copying inv(make_transform) into the buffer."""
    _, G, _ = model
    z = torch.from_numpy(_z(3, G.cfg.z_dim)).float()
    c = torch.eye(G.cfg.c_dim)[[1]] if G.cfg.c_dim else None
    for translate, angle in MOVES[2:4]:
        m = np.linalg.inv(ref.make_transform(translate, angle))
        assert np.allclose(input_transform(translate, angle), m, atol=1e-7)
        with torch.no_grad():
            got = G(z, c, transform=torch.from_numpy(input_transform(translate, angle)))
            G.synthesis.input.transform.copy_(torch.from_numpy(m))
            try:
                want = G(z, c)
            finally:
                G.synthesis.input.transform.copy_(torch.eye(3))
            plain = G(z, c)
        assert torch.equal(got, want)
        assert (got - plain).abs().max() > 1e-3  # the transform does move the image


def test_truncation_cutoff_follows_official_convention(model: tuple[str, GeneratorSG3, dict[str, Any]]) -> None:
    _, G, rcfg = model
    z = np.concatenate([_z(s, G.cfg.z_dim) for s in range(8)])
    c = np.eye(G.cfg.c_dim)[np.arange(8) % G.cfg.c_dim] if G.cfg.c_dim else None
    state = G.state_dict()
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(z).float(), None if c is None else torch.from_numpy(c).float())
    for psi, cutoff in ((1.0, None), (0.7, None), (0.5, 3), (-0.2, 1)):
        want = ref.reference_ws(state, rcfg, z, c, truncation_psi=psi, truncation_cutoff=cutoff)
        got = truncate_ws(w, G.mapping.w_avg, G.num_ws, psi, cutoff).numpy()
        assert got.shape == (8, G.num_ws, G.cfg.w_dim)
        assert np.abs(got - want).max() <= W_TOL


def test_batch_independent_styles() -> None:
    """An image does not depend on its batch mates (the official batch-wide style RMS only differs by rounding)."""
    G, _ = _make("T16")
    ws = G.mapping.w_avg + torch.randn(3, G.num_ws, G.cfg.w_dim, generator=torch.Generator().manual_seed(2))
    ws[2] *= 100  # a batch mate with huge styles changes a batch-wide RMS by orders of magnitude
    eye = torch.eye(3).repeat(3, 1, 1)
    with torch.no_grad():
        full = G.synthesis(ws, eye)
        one = torch.cat([G.synthesis(ws[i : i + 1], eye[:1]) for i in range(3)])
    # Float32 rounding of differently batched convolutions only (image 2 is ~100x larger: relative bound).
    assert (full[:2] - one[:2]).abs().max() <= 1e-5
    assert (full[2] - one[2]).abs().max() <= 1e-5 * one[2].abs().max()


@pytest.mark.parametrize("cfg_name", ["T", "R"])
@pytest.mark.parametrize("res", [16, 256, 1024])
def test_layout_keys_shapes_and_filters_are_official(cfg_name: str, res: int) -> None:
    """Default 14 layers: 16 ws, the official layer names, state keys and shapes (meta device), and filters."""
    cfg = make_config_sg3(cfg_name, img_resolution=res)
    rcfg = ref.train_config(cfg_name, img_resolution=res)
    assert cfg.num_ws == ref.num_ws(rcfg) == 16
    assert expected_shapes_sg3(cfg) == ref.official_state_shapes(rcfg)
    _, layers = ref.layout(rcfg)
    specs = cfg.synthesis.layer_specs()
    assert [s.name for s in specs] == [L["name"] for L in layers]
    assert specs[-1].name == f"L14_{res}_3" and specs[-1].is_torgb
    assert [list(s.padding) for s in specs] == [L["padding"] for L in layers]
    if res > 16:
        return
    G = GeneratorSG3(cfg)
    for L in layers:
        layer = getattr(G.synthesis, L["name"])
        for f in ("up_filter", "down_filter"):
            got, want = getattr(layer, f), L[f]
            assert (got is None) == (want is None), (L["name"], f)
            if want is not None:
                assert got.shape == want.shape and np.abs(got.numpy() - want).max() <= 1e-6, (L["name"], f)
                assert abs(float(got.sum()) ** (2 / got.ndim) - 1) <= 1e-5  # unit DC gain in 2-D
    assert any(getattr(G.synthesis, L["name"]).down_filter is not None and getattr(
        G.synthesis, L["name"]).down_filter.ndim == 2 for L in layers) == (cfg_name == "R")  # fmt: skip


def test_load_from_official_kwargs_and_state() -> None:
    G, _ = _make("R32-cond")
    init_kwargs = dict(
        z_dim=8, c_dim=3, w_dim=8, img_resolution=32, img_channels=3,
        mapping_kwargs=dict(num_layers=3, w_avg_beta=0.998), channel_base=256, channel_max=8, num_layers=4,
        margin_size=np.int64(2), conv_kernel=1, use_radial_filters=np.bool_(True), magnitude_ema_beta=0.999,
        num_fp16_res=0,
        conv_clamp=np.float64(256),
    )  # fmt: skip
    state = G.state_dict()
    G2 = generator_from_official(init_kwargs, state)
    assert G2.cfg == G.cfg
    z = torch.randn(2, 8)
    c = torch.eye(3)[[0, 2]]
    with torch.no_grad():
        assert torch.equal(G2(z, c, 0.7), G(z, c, 0.7))
    assert GeneratorConfigSG3.from_dict(G.cfg.to_dict()) == G.cfg

    def refused(kw: dict[str, Any], st_: dict[str, Any], match: str) -> None:
        with pytest.raises(CheckpointError, match=match):
            generator_from_official(kw, st_)

    refused({**init_kwargs, "fused_modconv_default": True}, state, "unknown StyleGAN3 Generator argument")
    refused({**init_kwargs, "mapping_kwargs": {"num_layers": 3, "bogus": 1}}, state, "mapping_kwargs")
    refused({k: v for k, v in init_kwargs.items() if k != "w_dim"}, state, "lack 'w_dim'")
    refused({**init_kwargs, "num_critical": 9}, state, "invalid")
    radial = [s for s in G.cfg.synthesis.layer_specs() if s.down_radial and s.up_factor == 4]
    assert radial, "the config must cover a radial layer that up-samples by 4"
    key = f"synthesis.{radial[0].name}.down_filter"
    first = G.synthesis.layer_names[0]
    refused(init_kwargs, {k: v for k, v in state.items() if k != key}, "missing key")
    refused(init_kwargs, {**state, "synthesis.L9.weight": torch.zeros(1)}, "unexpected key")
    refused(init_kwargs, {**state, key: state[key][:-1]}, "has shape")
    refused(init_kwargs, {**state, "mapping.w_avg": torch.full([8], float("nan"))}, "NaN")
    refused(init_kwargs, {**state, f"synthesis.{first}.magnitude_ema": torch.tensor(0.0)}, "must be > 0")
    refused(init_kwargs, {**state, "synthesis.input.freqs": torch.zeros(8, 2, dtype=torch.int64)}, "dtype")


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["num_layers", "num_critical", "margin_size", "channel_base", "channel_max", "filter_size",
                     "lrelu_upsampling", "conv_kernel", "img_resolution", "first_cutoff", "conv_clamp"]),
    st.one_of(st.integers(-5, 70), st.floats(allow_nan=True), st.booleans(), st.none(), st.text(max_size=3)),
    max_size=3,
))  # fmt: skip
def test_hostile_configs_raise_value_error_or_build(overrides: dict[str, Any]) -> None:
    kw: dict[str, Any] = dict(w_dim=8, img_resolution=16, img_channels=3, channel_base=64, channel_max=4)
    kw.update(overrides)
    try:
        cfg = SynthesisConfigSG3(**kw)
    except ValueError:
        return
    assert cfg.num_ws == cfg.num_layers + 2
    assert all(s.out_channels >= 1 and s.in_size >= 1 and s.up_factor >= 1 for s in cfg.layer_specs())


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10**6), st.sampled_from(["drop", "extra", "reshape", "nonfinite"]))
def test_hostile_states_are_refused(seed: int, how: str) -> None:
    G, _ = _make("T16")
    state = dict(G.state_dict())
    keys = sorted(state)
    key = keys[seed % len(keys)]
    if how == "drop":
        del state[key]
    elif how == "extra":
        state[key + "_x"] = torch.zeros(1)
    elif how == "reshape":
        state[key] = torch.zeros(*state[key].shape, 2)
    else:
        state[key] = state[key].clone().fill_(math.inf)
    with pytest.raises(CheckpointError):
        load_generator_sg3(G.cfg, state)
