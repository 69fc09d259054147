"""Official-format .pkl -> styleserve-export (CLI) -> onnxruntime, against the numpy reference of the official code.

The three configurations of issue 2's acceptance: 64 px unconditional, 32 px with 10 classes and
32 px grayscale; seeds 0-7, psi 1.0 and 0.7, noise 'const' and 'none'. The reference
(``numpy_reference.py``) follows the official NVlabs code by a different computational route.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from styleserve.export import networks as nw
from styleserve.server.runtime import ModelRuntime, NoiseSpec

from styleserve.latent import broadcast_ws, class_labels, truncate, z_from_seeds

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ckpt_writers as cw
import numpy_reference as ref

CASES: dict[str, tuple[dict[str, Any], str, bool]] = {
    # name: (Generator kwargs, official repo flavour, numpy-1.x pickle names)
    "64px-uncond-ada": (dict(img_resolution=64, img_channels=3, c_dim=0), "ada", False),
    "32px-10class-sg3": (dict(img_resolution=32, img_channels=3, c_dim=10), "sg3", False),
    "32px-gray-ada-numpy1": (dict(img_resolution=32, img_channels=1, c_dim=0), "ada", True),
}
COMMON = dict(z_dim=32, w_dim=32, mapping_layers=4, conv_clamp=256)
BASE, CMAX = 512, 32


@pytest.mark.parametrize("case", list(CASES))
def test_official_pkl_to_onnx_reproduces_official_images(tmp_path: Path, case: str) -> None:
    gkw, flavor, numpy1 = CASES[case]
    kw = {**COMMON, **gkw}
    cfg = nw.make_config(channel_base=BASE, channel_max=CMAX, **kw)
    G_ema = cw.randomize_(nw.Generator(cfg), 7)
    flag = tmp_path / "pwned"
    src = cw.PAYLOAD_TEMPLATE.format(flag=flag, class_name="Generator")
    snap = cw.official_snapshot(G_ema, G_ema, flavor=flavor, src=src, channel_base=BASE, channel_max=CMAX)
    pkl = cw.dump_pickle(snap, tmp_path / "network-snapshot-000100.pkl", numpy1=numpy1)

    out = tmp_path / "model"
    r = subprocess.run(
        [sys.executable, "-m", "styleserve.export.cli", str(pkl), str(out)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert not flag.exists(), "the pickled module source was executed"

    rt = ModelRuntime(out, intra_op_threads=2)
    m = rt.manifest
    assert m.source["format"] in ("stylegan2-ada-pkl", "stylegan3-pkl")
    state = {k: v.numpy() for k, v in G_ema.state_dict().items()}
    ref_cfg = {**kw, "channel_base": BASE, "channel_max": CMAX}
    seeds = list(range(8))
    z = z_from_seeds(seeds, m.z_dim)
    c = class_labels([s % 10 for s in seeds], m.c_dim) if m.c_dim else None
    w = rt.map(z, c)
    assert np.abs(w - ref.reference_mapping(state, ref_cfg, z, c)).max() <= 1e-5
    for psi in (1.0, 0.7):
        ws = truncate(broadcast_ws(w, m.num_ws), rt.w_avg, psi)
        for noise_mode in ("const", "none"):
            img = rt.synthesize(ws, [NoiseSpec(noise_mode)] * len(seeds), output="float")
            expect = ref.reference_generator(state, ref_cfg, z, c, truncation_psi=psi, noise_mode=noise_mode)
            err = float(np.abs(img - expect).max())
            assert err <= 1e-4, f"{case} psi={psi} noise={noise_mode}: max abs error {err:.3g}"
