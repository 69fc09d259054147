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
from torch import Tensor

from . import world
from .networks import Generator

COARSE_WS = range(0, 4)
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


def measure(G: Generator, n: int = 256) -> dict[str, float]:
    return {**realism(G, n), **style_swap(G, n), **noise_effect(G, n), **path_length(G, n)}


def main(argv: Sequence[str] | None = None) -> int:
    from .demo import make_demo_generator, make_random_generator

    p = argparse.ArgumentParser(prog="python -m styleserve.export.demo_metrics", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=512, help="sample size of each measurement (default 512)")
    p.add_argument("--weights", help="a styleserve-format directory (default: the shipped demo weights)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    trained = make_demo_generator(args.weights) if args.weights else make_demo_generator()
    report = {"n": args.n, "trained": measure(trained, args.n), "untrained": measure(make_random_generator(), args.n)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
