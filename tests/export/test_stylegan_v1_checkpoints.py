"""TensorFlow StyleGAN (v1) pickles: safe import, and export through the CLI against the numpy reference.

The pickles are written with a stand-in ``dnnlib.tflib.network.Network`` whose state has the
official ``__getstate__`` layout; their ``build_module_src`` would create a file if executed.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from styleserve.export.checkpoints import load_checkpoint, load_generator_from
from styleserve.export.networks_v1 import GeneratorConfigV1, GeneratorV1
from styleserve.server.runtime import ModelRuntime, NoiseSpec

from styleserve.errors import CheckpointError, UnsafePickleError, UnsupportedArchitecture
from styleserve.latent import broadcast_ws, class_labels, truncate, z_from_seeds
from styleserve.manifest import ModelManifest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ckpt_writers as cw
import numpy_reference_v1 as ref

# Official kwargs. The fused up-sampling conv is forced on at 32 px (the official 'auto' is >= 128).
CFG: dict[str, Any] = dict(
    latent_size=16,
    label_size=4,
    dlatent_size=16,
    mapping_layers=3,
    mapping_fmaps=16,
    resolution=32,
    num_channels=3,
    fmap_base=128,
    fmap_max=16,
    fused_scale=True,
)
G_KWARGS = dict(num_channels=3, resolution=32, label_size=4)
M_KWARGS = dict(latent_size=16, dlatent_size=16, mapping_layers=3, mapping_fmaps=16)
S_KWARGS = dict(dlatent_size=16, fmap_base=128, fmap_max=16, fused_scale=True)


def write(tmp_path: Path, *, name: str = "karras2019stylegan-tiny.pkl", **kw: Any) -> tuple[Path, Path, Any]:
    flag = tmp_path / "pwned"
    m, s, avg = ref.random_tf_vars(CFG, seed=3)
    nets = cw.tf_stylegan_pickle(
        m,
        s,
        kw.pop("dlatent_avg", avg),
        src=cw.TF_PAYLOAD_TEMPLATE.format(flag=flag),
        g_kwargs=G_KWARGS,
        mapping_kwargs=M_KWARGS,
        synthesis_kwargs=S_KWARGS,
        **kw,
    )
    return cw.dump_tf_pickle(nets, tmp_path / name), flag, (m, s, avg)


@pytest.mark.parametrize("variant", ["protocol4", "protocol2-numpy1", "prefixed-names"])
def test_tf_pickle_loads_without_executing_its_source(tmp_path: Path, variant: str) -> None:
    flag = tmp_path / "pwned"
    m, s, avg = ref.random_tf_vars(CFG, seed=3)
    nets = cw.tf_stylegan_pickle(
        m,
        s,
        avg,
        src=cw.TF_PAYLOAD_TEMPLATE.format(flag=flag),
        g_kwargs=G_KWARGS,
        mapping_kwargs=M_KWARGS,
        synthesis_kwargs=S_KWARGS,
        prefix_names=variant == "prefixed-names",
    )
    path = cw.dump_tf_pickle(
        nets, tmp_path / "g.pkl", protocol=2 if variant.startswith("protocol2") else 4, numpy1="numpy1" in variant
    )
    G, ckpt = load_generator_from(path)
    assert not flag.exists(), "the pickled build_module_src was executed"
    assert ckpt.format == "stylegan-tf-pkl" and ckpt.source_class == "G_style"
    assert isinstance(G, GeneratorV1) and isinstance(ckpt.config, GeneratorConfigV1)
    cfg = ckpt.config
    assert (cfg.z_dim, cfg.c_dim, cfg.w_dim, cfg.num_ws, cfg.img_resolution) == (16, 4, 16, 8, 32)
    assert cfg.synthesis.fused_scale is True and cfg.truncation_cutoff == 8
    assert any("not executed" in n for n in ckpt.notes)
    assert np.array_equal(G.mapping.w_avg.numpy(), avg)
    # Images of the loaded network against the reference on the raw TF variables.
    z = np.random.RandomState(0).randn(2, 16).astype(np.float32)
    c = np.eye(4, dtype=np.float32)[[1, 3]]
    with torch.no_grad():
        img = G(torch.from_numpy(z), torch.from_numpy(c), truncation_psi=0.7, truncation_cutoff=8).numpy()
    expect = ref.reference_generator(m, s, avg, CFG, z, c, truncation_psi=0.7, truncation_cutoff=8)
    assert float(np.abs(img - expect).max()) <= 1e-4


def test_tf_pickle_exports_and_matches_reference(tmp_path: Path) -> None:
    pkl, flag, (mvars, svars, avg) = write(tmp_path)
    out = tmp_path / "model"
    r = subprocess.run(
        [sys.executable, "-m", "styleserve.export.cli", str(pkl), str(out), "--verify-batches", "1,3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert not flag.exists(), "the pickled build_module_src was executed"
    man = ModelManifest.load(out)
    assert man.architecture == "stylegan" and man.source["format"] == "stylegan-tf-pkl"
    assert man.truncation == {"psi": 0.7, "cutoff": 8}
    assert man.num_ws == 8 and [s.layers for s in man.ws_layers][:3] == [["b4.input"], ["b4.conv"], ["b8.conv0"]]

    rt = ModelRuntime(out, intra_op_threads=1)
    seeds = list(range(4))
    z = z_from_seeds(seeds, man.z_dim)
    c = class_labels([s % 4 for s in seeds], man.c_dim)
    w = rt.map(z, c)
    assert np.abs(w - ref.reference_mapping(mvars, CFG, z, c)).max() <= 1e-5
    for psi, cutoff in ((1.0, None), (0.7, 8), (0.7, 4)):
        ws = truncate(broadcast_ws(w, man.num_ws), rt.w_avg, psi, cutoff)
        for mode in ("const", "none"):
            img = rt.synthesize(ws, [NoiseSpec(mode)] * len(seeds), output="float")
            expect = ref.reference_generator(
                mvars, svars, avg, CFG, z, c, truncation_psi=psi, truncation_cutoff=cutoff or 99, noises=mode
            )
            err = float(np.abs(img - expect).max())
            assert err <= 1e-4, f"psi={psi} cutoff={cutoff} noise={mode}: max abs error {err:.3g}"


def test_missing_dlatent_avg_is_estimated(tmp_path: Path) -> None:
    pkl, _, _ = write(tmp_path, dlatent_avg=None)
    G, ckpt = load_generator_from(pkl)
    assert any("estimated" in n for n in ckpt.notes)
    z = torch.from_numpy(np.random.RandomState(0).randn(10000, 16).astype(np.float32))
    c = torch.nn.functional.one_hot(torch.arange(10000) % 4, 4).float()
    with torch.no_grad():
        assert torch.allclose(G.mapping.w_avg, G.mapping(z, c).mean(0), atol=1e-4)


def test_refusals(tmp_path: Path) -> None:
    pkl, _, _ = write(tmp_path, name="sg2.pkl", gs_func="G_main")
    with pytest.raises(UnsupportedArchitecture, match="G_main"):
        load_checkpoint(pkl)
    pkl, _, _ = write(tmp_path, name="growing.pkl", lod=1.0)
    with pytest.raises(UnsupportedArchitecture, match="lod"):
        load_checkpoint(pkl)
    # Calling the Network class (REDUCE) instead of NEWOBJ + BUILD is refused.
    evil = (
        b"\x80\x04cdnnlib.tflib.network\nNetwork\n" + pickle.dumps(("G",), protocol=4)[2:-1] + b"R."
    )  # GLOBAL, an args tuple, REDUCE.
    (tmp_path / "evil.pkl").write_bytes(evil)
    with pytest.raises(UnsafePickleError):
        load_checkpoint(tmp_path / "evil.pkl")
    # Other dnnlib.tflib globals stay refused.
    (tmp_path / "evil2.pkl").write_bytes(b"\x80\x04cdnnlib.tflib.tfutil\nrun\n.")
    with pytest.raises(UnsafePickleError, match="tfutil"):
        load_checkpoint(tmp_path / "evil2.pkl")
    # A truncated variable list.
    m, s, avg = ref.random_tf_vars(CFG, seed=3)
    del s["16x16/Conv0_up/StyleMod/bias"]
    nets = cw.tf_stylegan_pickle(m, s, avg, src="", g_kwargs=G_KWARGS, synthesis_kwargs=S_KWARGS)
    with pytest.raises(CheckpointError, match="StyleMod/bias"):
        load_checkpoint(cw.dump_tf_pickle(nets, tmp_path / "broken.pkl"))
