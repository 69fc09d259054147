"""The bundled demo model: a small StyleGAN2 generator trained on the toy-face world (no downloads).

:func:`make_demo_generator` loads the shipped weights (``export/demo_weights/``: ``config.json`` +
``weights.safetensors``, the styleserve format) through the same reader as a user's checkpoint. They were
trained by :mod:`styleserve.export.train_demo` on :mod:`styleserve.export.world`, whose factors of variation
are grouped by scale (coarse: head position, tilt, face and hair shape; middle: eyes, glasses, mouth; fine:
colours and lighting tint; noise: background grain). docs/DEMO.md has the command, the time it took and
the measurements. :func:`make_random_generator` is the untrained generator of the same architecture (the
official initialisation from a fixed seed), the baseline a trained model is measured against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .networks import Generator, GeneratorConfig, ToRGBLayer, make_config

DEMO_SEED = 20261125
DEMO_TRAIN_SEED = 14
DEMO_WEIGHTS = Path(__file__).resolve().parent / "demo_weights"


def demo_config() -> GeneratorConfig:
    """64 px, z = w = 64, 4 mapping layers, channels 64 (4-16 px), 32 (32 px), 16 (64 px); 10 ws."""
    return make_config(
        z_dim=64,
        w_dim=64,
        img_resolution=64,
        img_channels=3,
        mapping_layers=4,
        channel_base=1024,
        channel_max=64,
        conv_clamp=256,
    )


def make_demo_generator(weights: str | Path = DEMO_WEIGHTS) -> Generator:
    """The trained demo generator from the shipped weights (eval, no grad)."""
    from .checkpoints import load_generator_from

    G, _ = load_generator_from(weights, kind="styleserve")
    assert isinstance(G, Generator)
    return G


def make_random_generator() -> Generator:
    """The untrained demo generator: official initialisation from :data:`DEMO_SEED`, ``w_avg`` the mean of
    the mapping output over 10000 seeded z, to-RGB layers scaled so that images span roughly [-1, 1]."""
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
