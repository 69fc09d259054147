"""The shipped demo model (export/demo_weights), measured on small samples as docs/DEMO.md reports it.

Each measurement is also run on the untrained generator of the same architecture, which must fail it.
Thresholds are loose against the numbers in docs/DEMO.md (measured there on 256 samples).
"""

from __future__ import annotations

import pytest
import torch
from styleserve.export import demo_metrics as dm
from styleserve.export.demo import DEMO_WEIGHTS, demo_config, make_demo_generator, make_random_generator
from styleserve.export.networks import Generator

N = 48


@pytest.fixture(scope="module")
def trained() -> Generator:
    return make_demo_generator()


@pytest.fixture(scope="module")
def untrained() -> Generator:
    return make_random_generator()


def test_shipped_weights_are_small_and_in_the_styleserve_format(trained: Generator) -> None:
    assert (DEMO_WEIGHTS / "config.json").is_file()
    assert (DEMO_WEIGHTS / "weights.safetensors").stat().st_size < 4 * 2**20
    assert trained.cfg == demo_config() and trained.num_ws == 10
    assert not trained.training
    assert float(trained.synthesis.b64.conv1.noise_strength.abs()) > 0.01  # the grain input is used


def test_realism(trained: Generator, untrained: Generator) -> None:
    good, bad = dm.realism(trained, N), dm.realism(untrained, N)
    assert good["recon_l1"] < 0.15, good
    assert bad["recon_l1"] > 3 * good["recon_l1"], (good, bad)
    assert bad["classifier_acc"] > 0.9, bad
    assert good["classifier_acc"] < bad["classifier_acc"], (good, bad)


def test_control_by_scale(trained: Generator) -> None:
    """Coarse ws carry the head's geometry and not the colours; fine ws carry the colours. (Not asserted,
    because it does not hold yet: that the fine ws leave the coarse estimates alone; see docs/DEMO.md.)"""
    m = dm.style_swap(trained, N)
    assert m["swap_coarse_ws_moves_coarse"] > 0.5, m
    assert m["swap_coarse_ws_moves_colour"] < 0.15, m
    assert m["swap_fine_ws_moves_colour"] > 0.7, m
    assert m["swap_fine_ws_moves_colour"] > 5 * m["swap_coarse_ws_moves_colour"], m


def test_noise_changes_only_fine_detail(trained: Generator) -> None:
    m = dm.noise_effect(trained, N)
    assert 0.005 < m["noise_change_vs_latent_change"] < 0.3, m
    assert m["noise_change_energy_after_4x4_pool"] < 0.15, m  # white grain keeps ~1/16 after 4x4 pooling
    assert m["noise_moves_colour"] < 0.05, m


def test_paths_in_w_are_smoother_than_in_z(trained: Generator) -> None:
    m = dm.path_length(trained, 2 * N)
    assert m["ppl_w"] < m["ppl_z"], m


def test_served_weights_match_the_generator(trained: Generator) -> None:
    """The constant noise planes and w_avg that serving uses are the shipped ones (finite, non-trivial)."""
    assert bool(torch.isfinite(trained.mapping.w_avg).all()) and float(trained.mapping.w_avg.abs().sum()) > 0
    planes = [layer.noise_const for _, layer in trained.synthesis.noise_layers()]
    assert all(0.5 < float(p.std()) < 1.5 for p in planes)
