"""rosinality/style-based-gan-pytorch (StyleGAN v1) checkpoints: safe import and export, against an
independent forward pass written from its ``model.py`` (``ckpt_writers.RosinalityV1StyledGenerator``).

The tiny checkpoints have rosinality's key names with small channels; blocks above the trained
resolution keep their initial values (noise weights zero), as in a run stopped there.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from styleserve.export.checkpoints import load_checkpoint, load_generator_from
from styleserve.export.networks_v1 import GeneratorConfigV1, GeneratorV1, load_generator_v1
from styleserve.server.runtime import ModelRuntime, NoiseSpec

from styleserve.errors import CheckpointError, UnsafePickleError, UnsupportedArchitecture
from styleserve.latent import broadcast_ws, truncate, z_from_seeds
from styleserve.manifest import ModelManifest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ckpt_writers as cw

Z_DIM = 16
STEP = 3  # 32 px; the checkpoint also holds an untrained 64 px block.


def reference(
    R: cw.RosinalityV1StyledGenerator,
    G: GeneratorV1,
    z: np.ndarray[Any, Any],
    psi: float = 1.0,
    step: int = STEP,
    z_mix: np.ndarray[Any, Any] | None = None,
    mixing_range: tuple[int, int] = (-1, -1),
) -> np.ndarray[Any, Any]:
    """rosinality's forward with our const noise planes (one per block) and our w_avg as ``mean_style``."""
    nz = G.synthesis.make_noise("const")
    planes = []
    for i in range(step + 1):
        a, b = nz[2 * i], nz[2 * i + 1]
        assert a is not None and b is not None and torch.equal(a, b), "the two layers of a block share its noise"
        planes.append(a)
    zs = [torch.from_numpy(z)] + ([torch.from_numpy(z_mix)] if z_mix is not None else [])
    mean = G.mapping.w_avg[None] if psi != 1 else None
    with torch.no_grad():
        img = R(
            zs, cw.rosinality_v1_noise(R, planes), step, mean_style=mean, style_weight=psi, mixing_range=mixing_range
        )
    return img.numpy()  # type: ignore[no-any-return]


def rosinality_mean_style(R: cw.RosinalityV1StyledGenerator) -> torch.Tensor:
    """generate.py's get_mean_style, with a seeded CPU generator."""
    gen = torch.Generator().manual_seed(0)
    mean = None
    with torch.no_grad():
        for _ in range(10):
            style = R.mean_style(torch.randn(1024, Z_DIM, generator=gen))
            mean = style if mean is None else mean + style
    assert mean is not None
    return (mean / 10)[0]


@pytest.mark.parametrize(
    ("layout", "legacy", "fused_from"),
    [("phase", False, 128), ("bare", True, 128), ("generator-only", False, 8), ("phase", True, 8)],
)
def test_checkpoint_matches_reference(tmp_path: Path, layout: str, legacy: bool, fused_from: int) -> None:
    R = cw.make_rosinality_v1(1, fused_from=fused_from)
    path = cw.write_rosinality_v1(tmp_path / "040000.model", R, layout=layout, legacy=legacy)
    G, ckpt = load_generator_from(path)
    assert isinstance(G, GeneratorV1) and isinstance(ckpt.config, GeneratorConfigV1)
    assert ckpt.format == "rosinality-v1-pt" and ckpt.source_class == "rosinality.StyledGenerator"
    cfg = ckpt.config
    assert (cfg.z_dim, cfg.w_dim, cfg.num_ws, cfg.img_resolution, cfg.mapping.num_layers) == (16, 16, 8, 32, 3)
    assert cfg.synthesis.fused_scale == {128: "auto", 8: True}[fused_from]
    assert cfg.truncation_psi == 0.7 and cfg.truncation_cutoff is None
    assert any("resolution 32 px" in n for n in ckpt.notes)
    assert any(("g_running" if layout != "generator-only" else "raw training weights") in n for n in ckpt.notes)
    # The mean style: generate.py's rule (10 batch means of 1024, torch seed 0).
    assert any("estimated" in n for n in ckpt.notes)
    assert float((G.mapping.w_avg - rosinality_mean_style(R)).abs().max()) <= 1e-5
    z = np.random.RandomState(0).randn(3, Z_DIM).astype(np.float32)
    for psi in (1.0, 0.7):
        with torch.no_grad():
            img = G(torch.from_numpy(z), truncation_psi=psi, truncation_cutoff=None).numpy()
        err = float(np.abs(img - reference(R, G, z, psi)).max())
        assert err <= 1e-4, f"psi={psi}: {err:.3g}"
    # Style mixing: rosinality's mixing_range=(0, 1) takes blocks 0-1 (our ws 0..3) from the second code.
    z2 = np.random.RandomState(1).randn(3, Z_DIM).astype(np.float32)
    with torch.no_grad():
        w1, w2 = G.mapping(torch.from_numpy(z)), G.mapping(torch.from_numpy(z2))
        ws = w1[:, None].repeat(1, G.num_ws, 1)
        ws[:, :4] = w2[:, None]
        mixed = G.synthesis(ws, G.synthesis.make_noise("const")).numpy()
    assert float(np.abs(mixed - reference(R, G, z, z_mix=z2, mixing_range=(0, 1))).max()) <= 1e-4


def test_mixed_fused_pattern_is_unsupported(tmp_path: Path) -> None:
    """Fused from 16 px at 32 px is neither rosinality's pattern (from 128 px) nor all-or-nothing."""
    R = cw.make_rosinality_v1(3, fused_from=16)
    with pytest.raises(UnsupportedArchitecture, match="fused"):
        load_checkpoint(cw.write_rosinality_v1(tmp_path / "mixed.model", R))


def test_stored_mean_style_and_resolution(tmp_path: Path) -> None:
    R = cw.make_rosinality_v1(2)
    mean = torch.randn(1, Z_DIM)
    path = cw.write_rosinality_v1(tmp_path / "train_step-4.model", R, extra={"mean_style": mean})
    G, ckpt = load_generator_from(path, resolution=16)
    assert isinstance(G, GeneratorV1) and G.cfg.img_resolution == 16 and G.num_ws == 6
    assert torch.equal(G.mapping.w_avg, mean[0]) and any("mean_style" in n for n in ckpt.notes)
    z = np.random.RandomState(3).randn(2, Z_DIM).astype(np.float32)
    with torch.no_grad():
        img = G(torch.from_numpy(z), truncation_psi=0.5, truncation_cutoff=None).numpy()
    assert float(np.abs(img - reference(R, G, z, 0.5, step=2)).max()) <= 1e-4
    with pytest.raises(CheckpointError, match="64 px"):
        load_checkpoint(path, resolution=128)
    with pytest.raises(ValueError, match="rosinality-v1-pt"):
        load_checkpoint(path, kind="rosinality-pt", resolution=32)


def test_the_rosinality_knobs_matter(tmp_path: Path) -> None:
    """With the official instance-norm eps or bias placement, the same weights give another image."""
    R = cw.make_rosinality_v1(4)
    ckpt = load_checkpoint(cw.write_rosinality_v1(tmp_path / "g.model", R, layout="bare"))
    assert isinstance(ckpt.config, GeneratorConfigV1)
    z = torch.from_numpy(np.random.RandomState(0).randn(2, Z_DIM).astype(np.float32))
    base = load_generator_v1(ckpt.config, ckpt.state_dict)
    with torch.no_grad():
        ref_img = base(z)
        for change in (dict(instance_norm_eps=1e-8), dict(up_bias_before_blur=False)):
            cfg = dataclasses.replace(ckpt.config, synthesis=dataclasses.replace(ckpt.config.synthesis, **change))
            other = load_generator_v1(cfg, ckpt.state_dict)(z)
            assert float((other - ref_img).abs().max()) > 1e-2, change


def test_cli_export_matches_reference(tmp_path: Path) -> None:
    R = cw.make_rosinality_v1(5, fused_from=8)
    path = cw.write_rosinality_v1(tmp_path / "stylegan-32px.model", R)
    out = tmp_path / "model"
    r = subprocess.run(
        [sys.executable, "-m", "styleserve.export.cli", str(path), str(out), "--verify-batches", "1,3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    man = ModelManifest.load(out)
    assert man.architecture == "stylegan" and man.source["format"] == "rosinality-v1-pt"
    assert man.truncation == {"psi": 0.7, "cutoff": None}
    G, _ = load_generator_from(path)
    assert isinstance(G, GeneratorV1)
    rt = ModelRuntime(out, intra_op_threads=1)
    seeds = [0, 1, 2]
    z = z_from_seeds(seeds, Z_DIM)
    w = rt.map(z, None)
    assert np.abs(rt.w_avg - G.mapping.w_avg.numpy()).max() == 0
    for psi in (1.0, 0.7):
        ws = truncate(broadcast_ws(w, man.num_ws), rt.w_avg, psi, None)
        img = rt.synthesize(ws, [NoiseSpec("const")] * len(seeds), output="float")
        err = float(np.abs(img - reference(R, G, z, psi)).max())
        assert err <= 1e-4, f"psi={psi}: {err:.3g}"


def test_hostile_pickle_in_the_pt_is_refused(tmp_path: Path) -> None:
    flag = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {flag}",))

    path = tmp_path / "evil.model"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"g_running": Evil(), "generator": {}}, protocol=2))
        zf.writestr("archive/version", "3\n")
    with pytest.raises(UnsafePickleError, match="system"):
        load_checkpoint(path)
    with pytest.raises(UnsafePickleError, match="system"):
        load_checkpoint(path, kind="rosinality-v1-pt")
    assert not flag.exists()
