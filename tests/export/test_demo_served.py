"""The demo model as a user's model: exported by the CLI (``--demo``), served by a real ``styleserve serve``,
drawn through the real client; the images look like the world and the styles mix by scale."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from styleserve.clients import Client, Plan, Source, Style
from styleserve.export import world
from styleserve.export.demo import DEMO_WEIGHTS

from styleserve.latent import z_from_seeds

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from harness import ServerProcess

SEEDS = [0, 1, 2, 3, 4, 5]


def _images(arrays: list[np.ndarray]) -> torch.Tensor:
    """uint8 HWC images -> ``[N, 3, H, W]`` in [-1, 1]."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_served_demo_draws_the_world(tmp_path: Path, start_server: Callable[..., ServerProcess]) -> None:
    repo = tmp_path / "models"
    cli = [sys.executable, "-m", "styleserve.export.cli", "--demo", str(repo / "demo"), "--verify-batches", "1"]
    r = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = start_server(repo)
    with Client(s.target, timeout=60) as c:
        got = _images([im.to_array() for im in c.generate("demo", SEEDS)])
        # The same seeds rendered by the world (seed -> z as the server maps it; grain from the const plane).
        from safetensors.torch import load_file

        grain = load_file(str(DEMO_WEIGHTS / "weights.safetensors"))["synthesis.b64.conv1.noise_const"][None, None]
        want = world.render(world.factors_from_z(torch.from_numpy(z_from_seeds(SEEDS, 64))), grain)
        assert float((got - want).abs().mean()) < 0.2
        # Coarse ws from seed 9: the head moves with seed 9, the background colour stays with the row.
        plans = [Plan([Style(Source.from_seed(a)), Style(Source.from_seed(9), start=0, stop=4)]) for a in SEEDS]
        mixed = world.estimate(_images([im.to_array() for im in c.synthesize("demo", plans)]))
        rows = world.estimate(got)
        col = world.estimate(_images([c.generate("demo", [9])[0].to_array()]))
        assert float((mixed["cen_x"] - col["cen_x"]).abs().mean()) < float((rows["cen_x"] - col["cen_x"]).abs().mean())
        assert float((mixed["bg_r"] - rows["bg_r"]).abs().mean()) < 0.1
