"""The shipped demo model (export/demo_weights), measured on small samples as docs/DEMO.md reports it.

Each measurement is also run on the untrained generator of the same architecture, which must fail it.
Thresholds leave room for the small samples against the numbers in docs/DEMO.md (measured there on 256
samples with a probe trained twice as long); each says what it was measured at there.
"""

from __future__ import annotations

import pytest
import torch
from styleserve.export import demo_metrics as dm
from styleserve.export.demo import DEMO_WEIGHTS, demo_config, make_demo_generator, make_random_generator
from styleserve.export.networks import Generator

N = 48
GEN_R2 = {"coarse": 0.6, "middle": 0.0, "fine": 0.85}  # docs/DEMO.md: 0.84, 0.17, 0.97 (untrained: < -0.8)
SWAP_OWN = 0.6  # docs/DEMO.md: 0.98 (coarse), 0.83 (middle), 0.97 (fine)


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
    # The grain input is used: the constant planes against no noise change the image by a grain's amplitude.
    ws = trained.mapping(torch.randn(4, 64, generator=torch.Generator().manual_seed(0))).unsqueeze(1).repeat(1, 10, 1)
    with torch.no_grad():
        const = trained.synthesis(ws, trained.synthesis.make_noise("const"))
        none = trained.synthesis(ws, trained.synthesis.make_noise("none"))
    assert float((const - none).abs().mean()) > 0.02


def test_realism(trained: Generator, untrained: Generator) -> None:
    """Pixel error to the world's own rendering (docs: 0.049 vs 0.574 untrained) and a classifier's held-out
    accuracy separating generated from rendered images (docs: 0.50, chance, vs 0.996 untrained)."""
    good, bad = dm.realism(trained, N), dm.realism(untrained, N)
    assert good["recon_l1"] < 0.08, good
    assert bad["recon_l1"] > 5 * good["recon_l1"], (good, bad)
    assert bad["classifier_acc"] > 0.9, bad  # a random generator fails by a wide margin
    assert good["classifier_acc"] < 0.7, good


def test_control_by_scale(trained: Generator) -> None:
    """Coarse ws carry the head's geometry and not the colours (docs: 0.91 / 0.08); fine ws carry the colours
    and far less of the geometry estimates (docs: 0.96 / 0.36; those outline the head by its contrast with the
    background, which the colours change)."""
    m = dm.style_swap(trained, N)
    assert m["swap_coarse_ws_moves_coarse"] > 0.7, m
    assert m["swap_coarse_ws_moves_colour"] < 0.15, m
    assert m["swap_fine_ws_moves_colour"] > 0.8, m
    assert m["swap_fine_ws_moves_coarse"] < 0.5 * m["swap_fine_ws_moves_colour"], m
    assert m["swap_fine_ws_moves_colour"] > 5 * m["swap_coarse_ws_moves_colour"], m


def test_noise_changes_only_fine_detail(trained: Generator) -> None:
    m = dm.noise_effect(trained, N)
    assert 0.005 < m["noise_change_vs_latent_change"] < 0.3, m
    assert m["noise_change_energy_after_4x4_pool"] < 0.15, m  # white grain keeps ~1/16 after 4x4 pooling
    assert m["noise_moves_colour"] < 0.05, m  # docs: 0.009
    assert m["noise_moves_coarse"] < 0.15, m  # docs: 0.046


def test_paths_in_w_are_smoother_than_in_z(trained: Generator) -> None:
    m = dm.path_length(trained, 2 * N)
    assert m["ppl_w"] < m["ppl_z"], m


def test_served_weights_match_the_generator(trained: Generator) -> None:
    """The constant noise planes and w_avg that serving uses are the shipped ones (finite, non-trivial)."""
    assert bool(torch.isfinite(trained.mapping.w_avg).all()) and float(trained.mapping.w_avg.abs().sum()) > 0
    planes = [layer.noise_const for _, layer in trained.synthesis.noise_layers()]
    assert all(0.5 < float(p.std()) < 1.5 for p in planes)


# ---------------------------------------------------------------------------- the factor probe (all 15 factors)

PROBE_STEPS = 300


@pytest.fixture(scope="module")
def probe() -> dm.FactorProbe:
    return dm.train_probe(PROBE_STEPS)


def test_probe_reads_rendered_images(trained: Generator, probe: dm.FactorProbe) -> None:
    """The reader itself: trained on rendered images only, it reads held-out rendered images' factors."""
    m = dm.probe_report(trained, probe, 2 * N)
    assert m["probe_r2_rendered_coarse"] > 0.7 and m["probe_r2_rendered_fine"] > 0.85, m
    assert m["probe_r2_rendered_middle"] > 0.3, m


def test_generated_images_carry_the_latents_factors(
    trained: Generator, untrained: Generator, probe: dm.FactorProbe
) -> None:
    """Realism in the world's terms: the probe reads z's factors from G(z) (R^2 per group); the untrained
    generator's images carry none of them."""
    good, bad = dm.probe_report(trained, probe, 2 * N), dm.probe_report(untrained, probe, 2 * N)
    assert good["probe_r2_generated_coarse"] > GEN_R2["coarse"], good
    assert good["probe_r2_generated_middle"] > GEN_R2["middle"], good
    assert good["probe_r2_generated_fine"] > GEN_R2["fine"], good
    assert max(bad[f"probe_r2_generated_{g}"] for g in ("coarse", "middle", "fine")) < 0.0, bad


def test_each_ws_range_moves_its_own_factor_group(trained: Generator, probe: dm.FactorProbe) -> None:
    """Swapping one ws range from B into A moves, of the probed A -> B difference, most of its own group and
    little of the others."""
    m = dm.probe_swap(trained, probe, N)
    for rng in ("coarse", "middle", "fine"):
        own = m[f"probe_swap_{rng}_ws_moves_{rng}"]
        assert own > SWAP_OWN, (rng, m)
        for other in ("coarse", "middle", "fine"):
            if other != rng:
                assert m[f"probe_swap_{rng}_ws_moves_{other}"] < own, (rng, other, m)


def test_sefa_directions_move_factors(trained: Generator, probe: dm.FactorProbe) -> None:
    """Each range's first direction moves some factor of the world by a visible amount (probed, +-3)."""
    report = dm.sefa_report(trained, probe, count=2)
    assert set(report) == {"all", "coarse", "middle", "fine"}
    for rng, rows in report.items():
        top = float(rows[0].split(",")[0].split()[-1])
        assert abs(top) > 0.05, (rng, rows)
