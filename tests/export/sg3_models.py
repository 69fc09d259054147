"""Tiny StyleGAN3 generators (configs T and R, every parameter and buffer randomised) and the gen_images.py moves
that the StyleGAN3 tests share, with the numpy reference of the official code (``numpy_reference_sg3.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from styleserve.export.networks_sg3 import GeneratorSG3, make_config_sg3

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy_reference_sg3 as ref

__all__ = ["MOVES", "TINY", "make_tiny", "ref"]

# (config, official-style kwargs): make_config_sg3 and the reference's train_config take the same names.
TINY: dict[str, tuple[str, dict[str, Any]]] = {
    "T16": ("T", dict(z_dim=16, w_dim=16, img_resolution=16, channel_base=256, channel_max=8, num_layers=4,
                      margin_size=2)),
    "R16": ("R", dict(z_dim=16, w_dim=16, img_resolution=16, channel_base=256, channel_max=4, num_layers=4,
                      margin_size=2)),
    # 32 px: a layer up-samples by 4 and down-samples by 2 (rates 16 -> 32); radial filters there for R.
    "R32-cond": ("R", dict(z_dim=8, c_dim=3, w_dim=8, img_resolution=32, channel_base=128, channel_max=4,
                           num_layers=4, margin_size=2, mapping_layers=3)),
}  # fmt: skip
# gen_images.py --translate X,Y --rotate DEG, one per seed.
MOVES = [((0.0, 0.0), 0.0), ((0.3, 1.0), 0.0), ((0.0, 0.0), 30.0), ((-0.25, 0.1), -75.0),
         ((0.5, -0.5), 180.0), ((0.1, 0.2), 12.5), ((-1.0, 0.0), 90.0), ((0.0, 0.4), -5.0)]  # fmt: skip


def make_tiny(name: str) -> tuple[GeneratorSG3, dict[str, Any]]:
    cfg_name, kw = TINY[name]
    G = GeneratorSG3(make_config_sg3(cfg_name, **kw)).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(len(name))
    for _, p in G.named_parameters():
        p.add_(0.2 * torch.randn(p.shape, generator=gen))
    for key, b in G.named_buffers():
        if key.endswith("magnitude_ema"):
            b.fill_(0.3 + float(torch.rand((), generator=gen)))
        elif key.endswith(("freqs", "phases")):
            b.mul_(1 + 0.1 * torch.randn(b.shape, generator=gen))
    G.mapping.w_avg.copy_(0.5 * torch.randn(G.mapping.w_avg.shape, generator=gen))
    return G, ref.train_config(cfg_name, **kw)
