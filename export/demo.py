"""The bundled demo model: a small StyleGAN2 generator made deterministically (no downloads).

Its weights are the official initialisation drawn from a fixed torch seed; ``w_avg`` is the mean
of the mapping output over 10000 seeded z, and the to-RGB layers are scaled so that images span
roughly [-1, 1]. It is untrained, so its images are abstract colour fields, but every part of the
pipeline (mapping, truncation, per-layer styles, noise) acts on them as on a real model.
"""

from __future__ import annotations

import numpy as np
import torch

from .networks import Generator, GeneratorConfig, ToRGBLayer, make_config

DEMO_SEED = 20261125


def demo_config() -> GeneratorConfig:
    return make_config(
        z_dim=64,
        w_dim=64,
        img_resolution=64,
        img_channels=3,
        mapping_layers=4,
        channel_base=2048,
        channel_max=128,
        conv_clamp=256,
    )


def make_demo_generator() -> Generator:
    torch.manual_seed(DEMO_SEED)
    G = Generator(demo_config()).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(DEMO_SEED)
    for name, layer in G.synthesis.noise_layers():
        layer.noise_const.copy_(torch.randn(layer.noise_const.shape, generator=gen))
        layer.noise_strength.fill_(0.05 if name.startswith(("b32", "b64")) else 0.0)
    z = torch.from_numpy(np.random.RandomState(0).randn(10000, G.cfg.z_dim).astype(np.float32))
    G.mapping.w_avg.copy_(G.mapping(z).mean(0))
    # Scale the to-RGB layers so typical images use the [-1, 1] range.
    ws = G.mapping(z[:64]).unsqueeze(1).repeat(1, G.num_ws, 1)
    img = G.synthesis(ws, G.synthesis.make_noise("const"))
    scale = 0.6 / float(img.std())
    for m in G.synthesis.modules():
        if isinstance(m, ToRGBLayer):
            m.weight.mul_(scale)
    return G
