"""The toy-face world (export/world.py) and the demo training script (export/train_demo.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from styleserve.export import world
from styleserve.export.demo import demo_config
from styleserve.export.networks import Generator
from styleserve.export.train_demo import make_batch, parse_schedule, synthesize_to, train


def _z(n: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(seed).randn(n, 64).astype(np.float32))


def test_render_is_deterministic_and_in_range() -> None:
    f = world.factors_from_z(_z(8, 0))
    noise = torch.randn(8, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    a, b = world.render(f, noise), world.render(f, noise)
    assert a.shape == (8, 3, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert float(a.min()) >= -1 and float(a.max()) <= 1
    # Grain lives on the background only: the head's pixels do not depend on the noise.
    clean = world.render(f)
    diff = (a - clean).abs().amax(1)  # [N, H, W]
    head = world.estimate(clean)["size"]
    assert float(diff.mean()) > 0.01
    assert float((diff > 1e-3).float().mean((1, 2)).max()) < float(1 - head.min() ** 2) + 0.05


def test_factors_are_uniform_and_named() -> None:
    f = world.factors_from_z(_z(4000, 1))
    assert set(f) == set(world.FACTORS) and len(world.FACTORS) == 15
    for name, v in f.items():
        assert float(v.min()) >= 0 and float(v.max()) <= 1, name
        assert abs(float(v.mean()) - 0.5) < 0.03, name
    with pytest.raises(ValueError):
        world.factors_from_z(torch.zeros(3, 4))


def test_mix_factors_takes_groups_from_each_side() -> None:
    a, b = world.factors_from_z(_z(4, 2)), world.factors_from_z(_z(4, 3))
    m = world.mix_factors(a, b, ("coarse",))
    assert all(torch.equal(m[n], a[n]) for n in world.COARSE)
    assert all(torch.equal(m[n], b[n]) for n in world.MIDDLE + world.FINE)


def test_estimates_follow_the_factors() -> None:
    """The world's own estimates track the factors they stand for (rank correlation on 256 renders)."""
    z = _z(128, 4)
    f = world.factors_from_z(z)
    e = world.estimate(world.render(f, torch.randn(128, 1, 64, 64, generator=torch.Generator().manual_seed(1))))

    def corr(x: torch.Tensor, y: torch.Tensor) -> float:
        return float(np.corrcoef(x.numpy(), y.numpy())[0, 1])

    assert corr(e["cen_x"], f["pos_x"]) > 0.9
    assert corr(e["cen_y"], f["pos_y"]) > 0.5
    assert corr(e["bg_r"], f["bg_r"]) > 0.9 and corr(e["bg_b"], f["bg_b"]) > 0.9
    assert corr(e["size"], f["face_w"] + f["face_h"] + f["hair_len"]) > 0.5
    # Colours do not move the coarse estimates, position does not move the background colour.
    g = dict(f)
    for n in world.FINE:
        g[n] = f[n].flip(0)
    e2 = world.estimate(world.render(g))
    assert float((e2["cen_x"] - e["cen_x"]).abs().mean()) < 0.02
    h = dict(f)
    h["pos_x"] = f["pos_x"].flip(0)
    e3 = world.estimate(world.render(h))
    assert float((e3["bg_r"] - e["bg_r"]).abs().mean()) < 0.02


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=15, max_size=15), st.sampled_from([16, 32, 64]))
def test_render_any_factors(values: list[float], res: int) -> None:
    f = {n: torch.tensor([v]) for n, v in zip(world.FACTORS, values, strict=True)}
    img = world.render(f, res=res)
    assert img.shape == (1, 3, res, res) and bool(torch.isfinite(img).all())
    e = world.estimate(img)
    assert all(bool(torch.isfinite(v).all()) for v in e.values())


def test_schedule_parsing() -> None:
    assert parse_schedule("16:5,64:2") == [(16, 5), (64, 2)]
    for bad in ("17:5", "16", "16:-1", "x:1"):
        with pytest.raises(ValueError):
            parse_schedule(bad)


def test_mixed_batches_follow_the_boundaries() -> None:
    torch.manual_seed(0)
    G = Generator(demo_config())
    ws, noises, target, _ = make_batch(G, 32, 64, torch.Generator().manual_seed(0), mix_prob=1.0)
    assert ws.shape == (32, 10, 64) and target.shape == (32, 3, 64, 64) and len(noises) == 9
    same = (ws[:, 1:] == ws[:, :-1]).all(-1)  # [N, 9]: layer i+1 equals layer i
    changes = [int(torch.nonzero(~row)[0]) + 1 for row in same]  # every row is mixed once
    assert set(changes) <= {4, 8} and len(set(changes)) == 2


def test_training_smoke_reduces_the_loss() -> None:
    """20 steps at 16 px on the real scheme lower the L1 on a fixed held-out batch (no EMA lag)."""
    cfg = demo_config()

    def loss(G: Generator) -> float:
        with torch.no_grad():
            ws, noises, target, _ = make_batch(G, 16, 16, torch.Generator().manual_seed(99))
            return float((synthesize_to(G, ws, noises, 16) - target).abs().mean())

    torch.manual_seed(3)  # train() starts from the same initialisation
    before = loss(Generator(cfg))
    with open(os.devnull, "w") as log:
        G = train(cfg, [(16, 20)], batch=8, seed=3, ema_half_life=1e-3, log=log, w_avg_samples=100)
    after = loss(G)
    assert after < before - 0.02, (before, after)


def test_render_masks_cover_the_head_and_its_features() -> None:
    """The loss weights' masks: the features lie inside the head, the border is background, and glasses
    (on above 0.5) add to the feature mask exactly where they are drawn."""
    f = world.factors_from_z(_z(16, 5))
    img, head, features = world.render_with_masks(f)
    assert torch.equal(img, world.render(f))
    assert head.shape == features.shape == (16, 1, 64, 64)
    assert float(head.min()) >= 0 and float(head.max()) <= 1 and float(features.max()) <= 1
    assert float((features - head).max()) < 1e-5  # features are painted on the head
    border = world.border_mask()
    assert float(head[:, 0][:, border].mean()) < 0.2  # the head seldom reaches the border
    area = features.mean((1, 2, 3))
    assert float(area.min()) > 0.005 and float(area.max()) < float(head.mean((1, 2, 3)).min())
    on = dict(f, glasses=torch.ones(16))
    off = dict(f, glasses=torch.zeros(16))
    assert float(world.render_with_masks(on)[2].mean()) > float(world.render_with_masks(off)[2].mean()) + 0.002
