"""Official stylegan3 ``.pkl`` snapshots (configs T and R, official module structure written by ckpt_writers) read by
the allow-list unpickler: the generator they hold, other layer counts / margins, and refusals naming what differs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from styleserve.export.checkpoints import load_checkpoint, load_generator_from
from styleserve.export.networks_sg3 import GeneratorSG3, input_transform, make_config_sg3

from styleserve.errors import CheckpointError, UnsupportedArchitecture

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ckpt_writers as cw
from sg3_models import MOVES, ref
from sg3_models import make_tiny as _make


def _snapshot(tmp_path: Path, G: GeneratorSG3, name: str = "snap.pkl", **extra: Any) -> tuple[dict[str, Any], Path]:
    flag = tmp_path / "pwned"
    src = cw.PAYLOAD_TEMPLATE.format(flag=flag, class_name="Generator")
    return cw.official_sg3_snapshot(G, src=src, **extra), flag


def _child(rec: Any, path: str) -> Any:
    for part in path.split("."):
        rec = rec.state["_modules"][part]
    return rec


@pytest.mark.parametrize("name,numpy1", [("T16", False), ("R32-cond", True)])
def test_official_snapshot_reads_as_the_generator_it_holds(tmp_path: Path, name: str, numpy1: bool) -> None:
    G, rcfg = _make(name)
    snap, flag = _snapshot(tmp_path, G)
    path = cw.dump_pickle(snap, tmp_path / "network-snapshot-000100.pkl", numpy1=numpy1)
    G2, ckpt = load_generator_from(path)
    assert not flag.exists(), "the pickled module source was executed"
    assert isinstance(G2, GeneratorSG3) and G2.cfg == G.cfg
    assert ckpt.format == "stylegan3-pkl" and ckpt.source_class == "Generator"
    assert ckpt.init_kwargs["num_layers"] == 4 and ckpt.init_kwargs["mapping_kwargs"]["num_layers"] >= 2
    assert "embedded class source was not executed" in ckpt.notes[0]
    assert list(ckpt.state_dict) == list(G.state_dict())
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in G.state_dict().items())
    # The official function on the read state: seed 0 with a gen_images.py move, against the numpy reference.
    z = np.random.RandomState(0).randn(1, G.cfg.z_dim)
    c = np.eye(G.cfg.c_dim)[[0]] if G.cfg.c_dim else None
    (translate, angle) = MOVES[3]
    want = ref.reference_generator({k: v.numpy() for k, v in ckpt.state_dict.items()}, rcfg, z, c,
                                   truncation_psi=0.7, translate=translate, rotate=angle)  # fmt: skip
    with torch.no_grad():
        got = G2(torch.from_numpy(z).float(), None if c is None else torch.from_numpy(c).float(), 0.7,
                 transform=torch.from_numpy(input_transform(translate, angle)))  # fmt: skip
    assert np.abs(got.numpy() - want).max() <= 1e-4


def test_other_layer_counts_and_margins_work_from_the_pickled_state(tmp_path: Path) -> None:
    cfg = make_config_sg3("T", z_dim=8, w_dim=8, img_resolution=16, channel_base=128, channel_max=4, num_layers=6,
                          margin_size=5, num_critical=1, mapping_layers=3)  # fmt: skip
    G = GeneratorSG3(cfg).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(5)
    for _, p in G.named_parameters():
        p.add_(0.2 * torch.randn(p.shape, generator=gen))
    snap, _ = _snapshot(tmp_path, G, num_critical=1)
    G2, _ = load_generator_from(cw.dump_pickle(snap, tmp_path / "variant.pkl"))
    assert isinstance(G2, GeneratorSG3) and G2.cfg == cfg and G2.num_ws == 8
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(G2(z, None, 0.7), G(z, None, 0.7))


def test_missing_w_avg_is_estimated_and_noted(tmp_path: Path) -> None:
    G, _ = _make("T16")
    snap, _ = _snapshot(tmp_path, G)
    del _child(snap["G_ema"], "mapping").state["_buffers"]["w_avg"]
    ckpt = load_checkpoint(cw.dump_pickle(snap, tmp_path / "no_w_avg.pkl"))
    assert any("w_avg estimated" in n for n in ckpt.notes)
    assert ckpt.state_dict["mapping.w_avg"].shape == (G.cfg.w_dim,)
    assert torch.isfinite(ckpt.state_dict["mapping.w_avg"]).all()


def test_variants_that_differ_from_their_arguments_are_refused_naming_what(tmp_path: Path) -> None:
    G, _ = _make("T16")

    def refused(edit: Any, exc: type[Exception], match: str, **extra: Any) -> None:
        snap, flag = _snapshot(tmp_path, G, **extra)
        edit(snap["G_ema"])
        with pytest.raises(exc, match=match):
            load_checkpoint(cw.dump_pickle(snap, tmp_path / "bad.pkl"))
        assert not flag.exists()

    first = G.synthesis.layer_names[0]
    # The arguments say 5 layers (+ ToRGB), the pickled network has 4: refused naming both.
    refused(lambda g: None, UnsupportedArchitecture, r"synthesis has 5 layers \(L0_.*num_layers=5.*give 6",
            num_layers=5)  # fmt: skip
    # Another margin in the arguments than the modules were built with.
    refused(lambda g: None, UnsupportedArchitecture, r"layers.*margin_size=4", margin_size=4)
    # One attribute differs from what the arguments build.
    refused(lambda g: _child(g, f"synthesis.{first}").state.update(padding=[0, 0, 0, 0]),
            UnsupportedArchitecture, rf"synthesis\.{first}\.padding is \[0, 0, 0, 0\]")  # fmt: skip
    refused(lambda g: _child(g, "synthesis.input").state.update(sampling_rate=np.float64(99)),
            UnsupportedArchitecture, r"synthesis\.input\.sampling_rate is 99")  # fmt: skip
    # A class the official stylegan3 Generator does not have.
    refused(lambda g: setattr(_child(g, f"synthesis.{first}"), "class_name", "SynthesisLayerXL"),
            UnsupportedArchitecture, rf"'SynthesisLayerXL' module 'G_ema\.synthesis\.{first}'")  # fmt: skip
    # Weights that do not fit the arguments: the key and both shapes.
    refused(lambda g: _child(g, f"synthesis.{first}").state["_parameters"].update(
        weight=torch.nn.Parameter(torch.zeros(1, 1, 3, 3))), CheckpointError,
        rf"'synthesis\.{first}\.weight' has shape")  # fmt: skip
    refused(lambda g: _child(g, "synthesis.input").state["_buffers"].pop("freqs"), CheckpointError,
            r"missing key 'synthesis\.input\.freqs'")  # fmt: skip
    refused(lambda g: g.state.update(_init_kwargs={}), CheckpointError, "no _init_kwargs")
    refused(lambda g: g.state["_init_kwargs"].update(channel_base="big"), CheckpointError, "channel_base")
    refused(lambda g: g.state["_init_kwargs"].update(bogus=1), CheckpointError, "unknown StyleGAN3 Generator argument")
