"""Train the demo generator on the toy-face world (:mod:`styleserve.export.world`): a supervised scheme.

``python -m styleserve.export.train_demo --out export/demo_weights`` (the shipped weights; see docs/DEMO.md
for the command, the time it took and why this objective rather than a GAN).

The generator is :class:`~styleserve.export.networks.Generator` with :func:`styleserve.export.demo.demo_config`
(the official StyleGAN2 architecture: mapping network, skip synthesis, modulated convolutions, noise
inputs). The world gives the exact image for every latent, so instead of a discriminator the generator is
trained to *render* it:

* ``z`` ``[N, z_dim]`` standard normal; target ``world.render(world.factors_from_z(z), grain)``; loss L1 with
  each pixel weighted by ``1 + HEAD_WEIGHT * head + FEATURE_WEIGHT * features`` (the renderer's coverage masks:
  the background is most of the image and easy, the eyes, glasses and mouth a few pixels each).
* **Style-mixing targets.** Half of each batch is mixed: ``ws[:, :k]`` from ``mapping(z1)``, ``ws[:, k:]``
  from ``mapping(z2)``, for ``k`` = 4 (the coarse/middle boundary: 4-8 px layers) or ``k`` = 8 (the
  middle/fine boundary: 64 px layers); the target takes the factor groups above the boundary from
  ``z1`` and the rest from ``z2``. This is what ties coarse factors to ws 0-3, middle factors to ws 4-7
  and colours to ws 8-9.
* **Noise drives the stochastic detail.** Every noise input gets a fresh standard normal plane per image;
  the target's background grain is the very plane fed to ``b64.conv1``, so that input (and only it) is
  worth using.
* **Progressive schedule** (to fit one CPU core in about an hour): phases at output resolution 16, 32 and 64.
  A phase at resolution ``R`` runs the synthesis blocks up to ``R`` and compares their skip image with the target
  average-pooled to ``R`` (no grain below 64 px, mixing at ``k`` = 4 only); the 64 px phase is the full
  network, the same function that is exported.
* Adam (betas 0.9, 0.99), the mapping network at a higher learning rate (its weights carry the official
  ``lr_multiplier`` 0.01), both falling linearly to a tenth over the last quarter of the steps, an exponential
  moving average of the weights (the shipped ones, as the official ``G_ema``). Afterwards ``w_avg`` is
  estimated as for any checkpoint without one and the constant noise planes are drawn from a fixed seed.

Everything is seeded (``--seed``); torch runs ``--threads`` threads. Progress goes to stdout, one line per
``--log-every`` steps.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import torch
from torch import Tensor

from . import world
from .checkpoints import save_native
from .networks import Generator, GeneratorConfig, mean_w

MIX_BOUNDARIES = {4: ("coarse",), 8: ("coarse", "middle")}  # k -> factor groups taken from z1 (ws[:k])
GRAIN_LAYER = "b64.conv1"
DEFAULT_SCHEDULE = "16:8000,32:8000,64:9000"
HEAD_WEIGHT = 2.0  # extra L1 weight on the head's pixels (the background is most of the image and easy)
FEATURE_WEIGHT = 6.0  # and on the eyes, glasses and mouth: a few pixels each that decide the middle factors


def parse_schedule(text: str) -> list[tuple[int, int]]:
    """``"16:1200,32:800,64:1000"`` -> ``[(16, 1200), (32, 800), (64, 1000)]`` (resolution, steps)."""
    out: list[tuple[int, int]] = []
    for part in text.split(","):
        res, _, steps = part.partition(":")
        r, s = int(res), int(steps)
        if r not in (4, 8, 16, 32, 64) or s < 0:
            raise ValueError(f"bad schedule entry {part!r}")
        out.append((r, s))
    return out


def synthesize_to(G: Generator, ws: Tensor, noises: Sequence[Tensor | None], res: int) -> Tensor:
    """The synthesis network's skip image after the block at ``res``. ``# [N, C, res, res]``"""
    x: Tensor | None = None
    img: Tensor | None = None
    w_idx = n_idx = 0
    for block in G.synthesis.blocks():
        if block.resolution > res:
            break
        cur = ws[:, w_idx : w_idx + block.num_conv + block.num_torgb]
        x, img = block(x, img, cur, noises[n_idx : n_idx + block.num_conv])
        w_idx += block.num_conv
        n_idx += block.num_conv
    assert img is not None
    return img


def make_batch(
    G: Generator, batch: int, res: int, gen: torch.Generator, mix_prob: float = 0.5
) -> tuple[Tensor, list[Tensor | None], Tensor, Tensor]:
    """ws ``[N, num_ws, w_dim]`` (with mixed rows), noise planes, the target ``[N, 3, res, res]`` and the
    loss's pixel weights ``[N, 1, res, res]`` (1 + ``HEAD_WEIGHT`` on the head + ``FEATURE_WEIGHT`` on its
    features, from the renderer's own coverage)."""
    z_dim = G.cfg.z_dim
    z1 = torch.randn(batch, z_dim, generator=gen)
    z2 = torch.randn(batch, z_dim, generator=gen)
    mixed = torch.rand(batch, generator=gen) < mix_prob
    ks = [4, 8] if res == world.RESOLUTION else [4]
    k = torch.tensor(ks)[torch.randint(len(ks), (batch,), generator=gen)]
    f1, f2 = world.factors_from_z(z1), world.factors_from_z(z2)
    f = {n: f1[n].clone() for n in world.FACTORS}
    for kk, groups in MIX_BOUNDARIES.items():
        rows = mixed & (k == kk)
        below = {n for g in groups for n in world.GROUPS[g]}
        for n in world.FACTORS:
            if n not in below:
                f[n] = torch.where(rows, f2[n], f[n])
    w = G.mapping(torch.cat([z1, z2]))
    w1, w2 = w[:batch], w[batch:]
    layer = torch.arange(G.num_ws)
    take2 = mixed[:, None] & (layer[None, :] >= k[:, None])  # [N, num_ws]
    ws = torch.where(take2[:, :, None], w2[:, None, :], w1[:, None, :])
    noises: list[Tensor | None] = []
    grain: Tensor | None = None
    for name, nl in G.synthesis.noise_layers():
        plane = torch.randn(batch, 1, nl.resolution, nl.resolution, generator=gen)
        noises.append(plane)
        if name == GRAIN_LAYER:
            grain = plane
    with torch.no_grad():
        target, head, features = world.render_with_masks(f, grain if res == world.RESOLUTION else None, res=res)
        weight = 1.0 + HEAD_WEIGHT * head + FEATURE_WEIGHT * features
    return ws, noises, target, weight


def weighted_l1(img: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """The training loss: the mean absolute error with each pixel weighted by ``weight`` ``[N, 1, H, W]``,
    normalised by the weights' mean (so it reads in image units, like a plain L1)."""
    return ((img - target).abs() * weight).mean() / weight.mean()


def train(
    cfg: GeneratorConfig,
    schedule: Sequence[tuple[int, int]],
    *,
    batch: int = 16,
    lr: float = 3e-3,
    mapping_lr: float = 0.1,
    ema_half_life: float = 100.0,
    lr_rampdown: float = 0.25,
    seed: int = 0,
    log_every: int = 20,
    log: TextIO | None = None,
    checkpoint: Path | None = None,
    checkpoint_every: int = 200,
    w_avg_samples: int = 10000,
) -> Generator:
    """Train a generator of ``cfg`` by the supervised scheme; returns the EMA generator (eval, no grad).
    The learning rates fall linearly to a tenth over the last ``lr_rampdown`` of all steps."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    G = Generator(cfg).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt = torch.optim.Adam(
        [
            {"params": list(G.synthesis.parameters()), "lr": lr},
            {"params": list(G.mapping.parameters()), "lr": mapping_lr},
        ],
        betas=(0.9, 0.99),
    )
    beta = 0.5 ** (1.0 / ema_half_life)
    out = sys.stdout if log is None else log
    t0 = time.perf_counter()
    step = 0
    total = sum(steps for _, steps in schedule)
    ramp_from = total * (1.0 - lr_rampdown)
    base_lrs = [group["lr"] for group in opt.param_groups]
    for res, steps in schedule:
        for _ in range(steps):
            scale = 1.0 - 0.9 * max(0.0, step - ramp_from) / max(1.0, total - ramp_from)
            for group, base in zip(opt.param_groups, base_lrs, strict=True):
                group["lr"] = base * scale
            ws, noises, target, weight = make_batch(G, batch, res, gen)
            img = synthesize_to(G, ws, noises, res)
            loss = weighted_l1(img, target, weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            with torch.no_grad():
                for pe, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                    pe.lerp_(p, 1 - beta)
            step += 1
            if step % log_every == 0:
                print(
                    json.dumps(
                        {
                            "step": step,
                            "res": res,
                            "loss": round(loss.item(), 5),
                            "l1": round(float((img.detach() - target).abs().mean()), 5),
                            "s": round(time.perf_counter() - t0),
                        }
                    ),
                    file=out,
                    flush=True,
                )
            if checkpoint is not None and step % checkpoint_every == 0:
                save_native(finalize(G_ema, cfg, seed, 1000), checkpoint)
    return finalize(G_ema, cfg, seed, w_avg_samples)


def finalize(G_ema: Generator, cfg: GeneratorConfig, seed: int, w_avg_samples: int = 10000) -> Generator:
    """The shipped generator: ``cfg``, the EMA weights, ``w_avg`` estimated as for a checkpoint without one
    (the mean mapping output over ``w_avg_samples`` seeded z), constant noise planes drawn from ``seed + 1``."""
    G = Generator(cfg).eval().requires_grad_(False)
    G.load_state_dict(G_ema.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(seed + 1)
    for _, layer in G.synthesis.noise_layers():
        layer.noise_const.copy_(torch.randn(layer.noise_const.shape, generator=gen))
    G.mapping.w_avg.copy_(mean_w(G.mapping, cfg.z_dim, cfg.c_dim, num_samples=w_avg_samples))
    return G


def main(argv: list[str] | None = None) -> int:
    from .demo import DEMO_TRAIN_SEED, demo_config

    p = argparse.ArgumentParser(prog="python -m styleserve.export.train_demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="directory for config.json + weights.safetensors")
    p.add_argument("--schedule", default=DEFAULT_SCHEDULE, help=f"RES:STEPS,... (default {DEFAULT_SCHEDULE})")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--mapping-lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=DEMO_TRAIN_SEED)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--checkpoint-every", type=int, default=500, help="write the EMA weights to --out this often")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cfg = demo_config()
    G = train(
        cfg,
        parse_schedule(args.schedule),
        batch=args.batch,
        lr=args.lr,
        mapping_lr=args.mapping_lr,
        seed=args.seed,
        log_every=args.log_every,
        checkpoint=Path(args.out),
        checkpoint_every=args.checkpoint_every,
    )
    save_native(G, args.out)
    minutes = (time.perf_counter() - t0) / 60
    print(json.dumps({"done": args.out, "minutes": round(minutes, 1), "threads": args.threads}), flush=True)
    return 0 if math.isfinite(minutes) else 1


if __name__ == "__main__":
    sys.exit(main())
