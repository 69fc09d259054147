"""The demo model's measurements, in the world's own terms (:mod:`styleserve.export.world`).

``python -m styleserve.export.demo_metrics [--n 512]`` prints them as JSON for the shipped demo generator
and for the untrained one of the same architecture (docs/DEMO.md quotes the output). All run the PyTorch
generator, which the exporter checks against the served ONNX model to 1e-4, with the constant noise
planes unless said otherwise. Every function takes ``n`` (sample size) and ``seed``:

* :func:`realism`: ``recon_l1``, the mean absolute pixel error (in [-1, 1] units) between ``G(z)`` and
  the world's rendering of ``z``'s factors (grain from the same constant plane the generator uses), and
  ``classifier_acc``, the held-out accuracy of a logistic-regression classifier trained to tell generated
  images from rendered ones (independent latents; 16x16 average-pooled pixels): 0.5 is indistinguishable.
* :func:`style_swap`: images of ``A`` with the coarse ws (0-3) or the fine ws (8-9) of ``B``; for each, the
  fraction of the ``A`` -> ``B`` difference in the coarse estimates (head centroid, orientation, size) and
  in the colour estimates (background and mean head colour) that moved: ``sum |e(mix) - e(A)| / sum
  |e(B) - e(A)|`` over pairs, each estimate scaled by its spread over the sample.
* :func:`noise_effect`: the same ws under two random noise draws: the image change relative to the change
  between two latents, the share of its energy left after 4x4 average pooling (low = fine detail only),
  and the moved fractions of the coarse and colour estimates as above.
* :func:`path_length`: the perceptual-path-length idea with pixels as the distance: mean over ``n`` random
  points ``t`` on random paths of ``|G(p(t + eps)) - G(p(t))|^2 / eps^2`` (mean squared pixel difference),
  for paths slerped in Z and lerped in W (the official PPL's two forms), and with the world's own factor
  map (a Z path is a path of factors), the ratio Z / W.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import world
from .networks import Generator

COARSE_WS = range(0, 4)  # The groups the demo was trained on, and the SeFa ranges of its export (sefa.range_layers).
MIDDLE_WS = range(4, 8)
FINE_WS = range(8, 10)


def _z(n: int, z_dim: int, seed: int) -> Tensor:
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


def _synth(G: Generator, ws: Tensor, noise: str = "const", noise_seed: int = 0) -> Tensor:
    out: list[Tensor] = []
    with torch.no_grad():
        for i in range(0, ws.shape[0], 64):
            part = ws[i : i + 64]
            if noise == "random":
                gen = torch.Generator().manual_seed(noise_seed * 100003 + i)
                noises: list[Tensor | None] = [
                    torch.randn(part.shape[0], 1, nl.resolution, nl.resolution, generator=gen)
                    for _, nl in G.synthesis.noise_layers()
                ]
            else:
                noises = G.synthesis.make_noise(noise)
            out.append(G.synthesis(part, noises))
    return torch.cat(out)


def _ws(G: Generator, z: Tensor) -> Tensor:
    with torch.no_grad():
        return G.mapping(z).unsqueeze(1).repeat(1, G.num_ws, 1)


def const_grain(G: Generator) -> Tensor:
    """The constant plane of the grain noise input (``b64.conv1``). ``# [1, 1, 64, 64]``"""
    layer = dict(G.synthesis.noise_layers())["b64.conv1"]
    return layer.noise_const[None, None]


def realism(G: Generator, n: int = 256, seed: int = 1) -> dict[str, float]:
    z = _z(n, G.cfg.z_dim, seed)
    gen = _synth(G, _ws(G, z))
    target = world.render(world.factors_from_z(z), const_grain(G))
    recon = float((gen - target).abs().mean())
    # Classifier: independent latents for the rendered side, half of each for training.
    other = world.render(world.factors_from_z(_z(n, G.cfg.z_dim, seed + 1)), const_grain(G))
    acc = classifier_accuracy(gen, other, seed)
    return {"recon_l1": round(recon, 4), "classifier_acc": round(acc, 3)}


def classifier_accuracy(fake: Tensor, real: Tensor, seed: int = 0, steps: int = 150) -> float:
    """Held-out accuracy of logistic regression (16x16 pooled pixels, standardised) separating two sets."""
    x = torch.cat([F.avg_pool2d(fake, 4), F.avg_pool2d(real, 4)]).flatten(1)
    y = torch.cat([torch.ones(fake.shape[0]), torch.zeros(real.shape[0])])
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    half = x.shape[0] // 2
    mu, sd = x[:half].mean(0), x[:half].std(0) + 1e-3
    x = (x - mu) / sd
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x[:half] @ w + b, y[:half]) + 1e-3 * w.square().sum()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    with torch.no_grad():
        pred = (x[half:] @ w + b) > 0
        return float((pred == (y[half:] > 0.5)).float().mean())


def _moved(e_mix: Tensor, e_a: Tensor, e_b: Tensor, spread: Tensor) -> float:
    return float(((e_mix - e_a).abs() / spread).sum() / ((e_b - e_a).abs() / spread).sum().clamp(min=1e-8))


def _spreads(img: Tensor) -> dict[str, Tensor]:
    g = world.estimate_groups(img)
    return {k: v.std(0).clamp(min=1e-3) for k, v in g.items()}


def style_swap(G: Generator, n: int = 256, seed: int = 2) -> dict[str, float]:
    za, zb = _z(n, G.cfg.z_dim, seed), _z(n, G.cfg.z_dim, seed + 1)
    wa, wb = _ws(G, za), _ws(G, zb)
    img_a, img_b = _synth(G, wa), _synth(G, wb)
    spread = _spreads(torch.cat([img_a, img_b]))
    ea, eb = world.estimate_groups(img_a), world.estimate_groups(img_b)
    out: dict[str, float] = {}
    for name, layers in (("coarse", COARSE_WS), ("fine", FINE_WS)):
        mix = wa.clone()
        mix[:, list(layers)] = wb[:, list(layers)]
        em = world.estimate_groups(_synth(G, mix))
        for group in ("coarse", "colour"):
            out[f"swap_{name}_ws_moves_{group}"] = round(_moved(em[group], ea[group], eb[group], spread[group]), 3)
    return out


def noise_effect(G: Generator, n: int = 256, seed: int = 3) -> dict[str, float]:
    za, zb = _z(n, G.cfg.z_dim, seed), _z(n, G.cfg.z_dim, seed + 1)
    wa, wb = _ws(G, za), _ws(G, zb)
    img1 = _synth(G, wa, "random", 1)
    img2 = _synth(G, wa, "random", 2)
    img_b = _synth(G, wb, "random", 1)
    d = img2 - img1
    spread = _spreads(torch.cat([img1, img_b]))
    e1, e2, eb = world.estimate_groups(img1), world.estimate_groups(img2), world.estimate_groups(img_b)
    return {
        "noise_change_vs_latent_change": round(float(d.abs().mean() / (img_b - img1).abs().mean()), 3),
        "noise_change_energy_after_4x4_pool": round(float(F.avg_pool2d(d, 4).square().mean() / d.square().mean()), 3),
        "noise_moves_coarse": round(_moved(e2["coarse"], e1["coarse"], eb["coarse"], spread["coarse"]), 3),
        "noise_moves_colour": round(_moved(e2["colour"], e1["colour"], eb["colour"], spread["colour"]), 3),
    }


def _slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    t = t.view(-1, 1)
    out = (torch.sin((1 - t) * omega) * a_n + torch.sin(t * omega) * b_n) / torch.sin(omega)
    return out * ((1 - t) * a.norm(dim=-1, keepdim=True) + t * b.norm(dim=-1, keepdim=True))


def _ppl(d: Tensor, eps: float) -> float:
    """Mean of ``d / eps^2`` inside the official 1st-99th percentile trim."""
    d = d / eps**2
    lo, hi = torch.quantile(d, 0.01), torch.quantile(d, 0.99)
    return float(d[(d >= lo) & (d <= hi)].mean())


def path_length(G: Generator, n: int = 256, seed: int = 4, eps: float = 1e-2) -> dict[str, float]:
    gen = torch.Generator().manual_seed(seed)
    z0, z1 = torch.randn(n, G.cfg.z_dim, generator=gen), torch.randn(n, G.cfg.z_dim, generator=gen)
    t = torch.rand(n, generator=gen)
    za, zb = _slerp(z0, z1, t), _slerp(z0, z1, t + eps)
    with torch.no_grad():
        w0, w1 = G.mapping(z0), G.mapping(z1)
    wa, wb = torch.lerp(w0, w1, t.view(-1, 1)), torch.lerp(w0, w1, (t + eps).view(-1, 1))

    def dist(x: Tensor, y: Tensor) -> Tensor:
        return (x - y).square().flatten(1).mean(1)

    rep = G.num_ws
    ppl_z = _ppl(dist(_synth(G, _ws(G, za)), _synth(G, _ws(G, zb))), eps)
    ppl_w = _ppl(dist(_synth(G, wa.unsqueeze(1).repeat(1, rep, 1)), _synth(G, wb.unsqueeze(1).repeat(1, rep, 1))), eps)
    grain = const_grain(G)
    ppl_world = _ppl(
        dist(world.render(world.factors_from_z(za), grain), world.render(world.factors_from_z(zb), grain)), eps
    )
    return {
        "ppl_z": round(ppl_z, 2),
        "ppl_w": round(ppl_w, 2),
        "ppl_z_over_w": round(ppl_z / max(ppl_w, 1e-8), 2),
        "ppl_world_z": round(ppl_world, 2),
    }


# ----------------------------------------------------------------------------
# A learned reader of all 15 factors (also the middle ones, which world.estimate does not read).


class FactorProbe(nn.Module):
    """A small CNN trained on *rendered* images (grain included) to read the world's 15 factors back, in
    :data:`world.FACTORS` order. It never sees a generated image while training, so on a generated image it
    reads what the generator drew in the world's own terms. ``# [N, 3, 64, 64] -> [N, 15]`` in [0, 1]"""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1),  # 32 px
            nn.LeakyReLU(0.2),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),  # 16 px
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 64, 3, stride=2, padding=1),  # 8 px
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(64 * 8 * 8, 128),
            nn.LeakyReLU(0.2),
            nn.Linear(128, len(world.FACTORS)),
        )

    def forward(self, img: Tensor) -> Tensor:
        return torch.sigmoid(self.net(img))

    def read(self, img: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([self(img[i : i + 256]) for i in range(0, img.shape[0], 256)])


def _rendered(n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` rendered images with fresh grain, and their factors ``[n, 15]``."""
    f = world.factors_from_z(torch.randn(n, len(world.FACTORS), generator=gen))
    noise = torch.randn(n, 1, world.RESOLUTION, world.RESOLUTION, generator=gen)
    return world.render(f, noise), torch.stack([f[k] for k in world.FACTORS], 1)


def train_probe(steps: int = 600, batch: int = 64, seed: int = 6) -> FactorProbe:
    """:class:`FactorProbe` fitted (MSE, Adam) to rendered images drawn fresh every step; seeded."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    probe = FactorProbe()
    opt = torch.optim.Adam(probe.parameters(), lr=2e-3)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = 2e-3 * (0.1 ** (step / steps))
        img, f = _rendered(batch, gen)
        loss = (probe(img) - f).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return probe.eval().requires_grad_(False)


def _r2(pred: Tensor, true: Tensor) -> Tensor:
    """Per-column coefficient of determination. ``# [N, K] -> [K]``"""
    return 1 - (pred - true).square().mean(0) / true.var(0, unbiased=False).clamp(min=1e-8)


def _group_means(per_factor: Tensor) -> dict[str, float]:
    idx = {g: [world.FACTORS.index(n) for n in names] for g, names in world.GROUPS.items()}
    return {g: round(float(per_factor[i].mean()), 3) for g, i in idx.items()}


def probe_report(G: Generator, probe: FactorProbe, n: int = 256, seed: int = 7) -> dict[str, float]:
    """How well the probe reads rendered images (its own held-out R^2 per group), and how well it reads the
    latent's factors from ``G``'s images (R^2 of the probe on ``G(z)`` against ``factors(z)``, per group):
    the generator draws the world's factors where the second is close to the first."""
    gen = torch.Generator().manual_seed(seed)
    img, f = _rendered(n, gen)
    z = _z(n, G.cfg.z_dim, seed)
    fz = world.factors_from_z(z)
    true = torch.stack([fz[k] for k in world.FACTORS], 1)
    on_rendered = _group_means(_r2(probe.read(img), f))
    on_generated = _group_means(_r2(probe.read(_synth(G, _ws(G, z))), true))
    return {
        **{f"probe_r2_rendered_{g}": v for g, v in on_rendered.items()},
        **{f"probe_r2_generated_{g}": v for g, v in on_generated.items()},
    }


def probe_swap(G: Generator, probe: FactorProbe, n: int = 256, seed: int = 8) -> dict[str, float]:
    """Swap one ws range (coarse 0-3, middle 4-7, fine 8-9) from ``B`` into ``A``; for each factor group, the
    fraction of the probed ``A`` -> ``B`` difference that moved (``sum |p(mix) - p(A)| / sum |p(B) - p(A)|``)."""
    za, zb = _z(n, G.cfg.z_dim, seed), _z(n, G.cfg.z_dim, seed + 1)
    wa, wb = _ws(G, za), _ws(G, zb)
    pa, pb = probe.read(_synth(G, wa)), probe.read(_synth(G, wb))
    idx = {g: [world.FACTORS.index(k) for k in names] for g, names in world.GROUPS.items()}
    out: dict[str, float] = {}
    for name, layers in (("coarse", COARSE_WS), ("middle", MIDDLE_WS), ("fine", FINE_WS)):
        mix = wa.clone()
        mix[:, list(layers)] = wb[:, list(layers)]
        pm = probe.read(_synth(G, mix))
        for g, i in idx.items():
            moved = (pm[:, i] - pa[:, i]).abs().sum() / (pb[:, i] - pa[:, i]).abs().sum().clamp(min=1e-8)
            out[f"probe_swap_{name}_ws_moves_{g}"] = round(float(moved), 3)
    return out


def direction_effects(
    G: Generator,
    probe: FactorProbe,
    directions: Tensor,
    layers: Sequence[int],
    alpha: float = 3.0,
    n: int = 128,
    seed: int = 9,
) -> list[dict[str, float]]:
    """For each direction ``[K, w_dim]`` applied to ``layers``: the mean probed change of every factor between
    ``ws + alpha d`` and ``ws - alpha d`` over ``n`` latents, in factor units ([0, 1] ranges)."""
    ws = _ws(G, _z(n, G.cfg.z_dim, seed))
    out: list[dict[str, float]] = []
    for d in directions:
        lo, hi = ws.clone(), ws.clone()
        lo[:, list(layers)] -= alpha * d
        hi[:, list(layers)] += alpha * d
        delta = (probe.read(_synth(G, hi)) - probe.read(_synth(G, lo))).mean(0)
        out.append({k: round(float(v), 3) for k, v in zip(world.FACTORS, delta, strict=True)})
    return out


def sefa_report(G: Generator, probe: FactorProbe, count: int = 5, alpha: float = 3.0) -> dict[str, list[str]]:
    """Per SeFa range (computed as the exporter does), the two factors each of the first ``count`` directions
    moves most, as ``"factor +0.21, factor -0.08"`` (probed change from ``-alpha`` to ``+alpha``)."""
    from .onnx_export import ws_slots
    from .sefa import affine_weights, range_layers, sefa

    slots = ws_slots(G.synthesis)
    report: dict[str, list[str]] = {}
    for name, layers in range_layers(slots).items():
        _, dirs = sefa(affine_weights(G.synthesis, [slots[i] for i in layers]), count)
        effects = direction_effects(G, probe, torch.from_numpy(dirs.astype("float32")), layers, alpha)
        report[name] = [
            ", ".join(f"{k} {v:+.2f}" for k, v in sorted(e.items(), key=lambda kv: -abs(kv[1]))[:2]) for e in effects
        ]
    return report


def measure(G: Generator, n: int = 256, probe: FactorProbe | None = None) -> dict[str, float]:
    out = {**realism(G, n), **style_swap(G, n), **noise_effect(G, n), **path_length(G, n)}
    if probe is not None:
        out.update(probe_report(G, probe, n))
        out.update(probe_swap(G, probe, n))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from .demo import make_demo_generator, make_random_generator

    p = argparse.ArgumentParser(prog="python -m styleserve.export.demo_metrics", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=512, help="sample size of each measurement (default 512)")
    p.add_argument("--weights", help="a styleserve-format directory (default: the shipped demo weights)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--probe-steps", type=int, default=600, help="training steps of the factor probe")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    trained = make_demo_generator(args.weights) if args.weights else make_demo_generator()
    probe = train_probe(args.probe_steps)
    report = {
        "n": args.n,
        "trained": measure(trained, args.n, probe),
        "untrained": measure(make_random_generator(), args.n, probe),
        "sefa_trained": sefa_report(trained, probe),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
