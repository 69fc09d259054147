"""StyleGAN (v1) end to end: TF pickle -> styleserve-export -> a real server process -> gRPC.

The server serves the v1 model directory unchanged (it knows nothing of the architecture): truncation
with a cutoff, a style-mixing plan, and the w cache are checked against the PyTorch ``GeneratorV1``
read from the same pickle, on raw float32 images.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from styleserve.export.checkpoints import load_generator_from
from styleserve.export.networks_v1 import GeneratorV1

from styleserve.latent import class_labels, z_from_seeds
from styleserve.v1 import styleserve_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ckpt_writers as cw
import numpy_reference_v1 as ref

CFG: dict[str, Any] = dict(
    latent_size=16,
    label_size=3,
    dlatent_size=16,
    mapping_layers=2,
    mapping_fmaps=16,
    resolution=16,
    num_channels=3,
    fmap_base=64,
    fmap_max=16,
    fused_scale=True,
)
RAW = pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW_FLOAT32, return_ws=True)
NAME = "stylegan-v1"


def arr(t: pb.Tensor) -> np.ndarray:
    return np.frombuffer(t.data, "<f4").reshape(tuple(t.shape))


def images(resp: Any) -> np.ndarray:
    return np.stack([np.frombuffer(i.data, "<f4").reshape(i.channels, i.height, i.width) for i in resp.images])


def seed_src(seed: int, cls: int, psi: float = 1.0, cutoff: int | None = None) -> pb.StyleSource:
    t = pb.Truncation(psi=psi)
    if cutoff is not None:
        t.cutoff = cutoff
    return pb.StyleSource(seed=pb.SeedSource(seed=seed, class_index=cls, truncation=t))


@pytest.fixture(scope="module")
def v1_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GeneratorV1]:
    tmp = tmp_path_factory.mktemp("v1")
    m, s, avg = ref.random_tf_vars(CFG, seed=9)
    nets = cw.tf_stylegan_pickle(
        m,
        s,
        avg,
        src=cw.TF_PAYLOAD_TEMPLATE.format(flag=tmp / "pwned"),
        g_kwargs=dict(num_channels=3, resolution=16, label_size=3),
        synthesis_kwargs=dict(fmap_base=64, fmap_max=16, fused_scale=True),
    )
    pkl = cw.dump_tf_pickle(nets, tmp / "stylegan-tiny.pkl")
    repo = tmp / "repo"
    r = subprocess.run(
        [sys.executable, "-m", "styleserve.export.cli", str(pkl), str(repo / NAME), "--verify-batches", "1,3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert not (tmp / "pwned").exists()
    G, _ = load_generator_from(pkl)
    assert isinstance(G, GeneratorV1)
    return repo, G


def test_server_serves_a_stylegan_v1_model(
    v1_export: tuple[Path, GeneratorV1], start_server: Callable[..., Any]
) -> None:
    repo, G = v1_export
    server = start_server(repo)
    stub = server.stub()
    info = stub.GetModel(pb.GetModelRequest(model=NAME))
    assert info.architecture == "stylegan" and info.num_ws == G.num_ws == 6
    assert [list(s.layers) for s in info.ws_layers][:2] == [["b4.input"], ["b4.conv"]]

    # Generate with truncation psi 0.7 below layer 4, against the PyTorch G_style equivalent.
    seeds = [0, 1, 2]
    resp = stub.Generate(
        pb.GenerateRequest(
            model=NAME, seeds=seeds, class_index=2, truncation=pb.Truncation(psi=0.7, cutoff=4), output=RAW
        )
    )
    z = torch.from_numpy(z_from_seeds(seeds, 16))
    c = torch.from_numpy(class_labels([2] * 3, 3))
    with torch.no_grad():
        expect = G(z, c, truncation_psi=0.7, truncation_cutoff=4).numpy()
    err = float(np.abs(images(resp) - expect).max())
    assert err <= 1e-4, err

    # Style mixing: coarse layers (0..3) from seed 5, the rest from seed 6, through a cached w.
    mapped = stub.Map(pb.MapRequest(model=NAME, latents=[pb.Latent(seed=5, class_index=0)], cache=True, return_w=True))
    w_id, w5 = mapped.results[0].w_id, arr(mapped.results[0].w)
    plan = pb.StylePlan(
        styles=[pb.LayerStyle(source=seed_src(6, 1)), pb.LayerStyle(start=0, stop=4, source=pb.StyleSource(w_id=w_id))]
    )
    mixed = stub.Synthesize(pb.SynthesizeRequest(model=NAME, plans=[plan], output=RAW))
    with torch.no_grad():
        w6 = G.mapping(torch.from_numpy(z_from_seeds([6], 16)), torch.from_numpy(class_labels([1], 3)))
        w5_t = G.mapping(torch.from_numpy(z_from_seeds([5], 16)), torch.from_numpy(class_labels([0], 3)))
        ws = w6[:, None].repeat(1, G.num_ws, 1)
        ws[:, :4] = w5_t[:, None]
        expect_mix = G.synthesis(ws, G.synthesis.make_noise("const")).numpy()
    assert np.abs(w5 - w5_t.numpy()[0]).max() <= 1e-5
    assert np.abs(arr(mixed.images[0].ws) - ws.numpy()[0]).max() <= 1e-5
    err = float(np.abs(images(mixed) - expect_mix).max())
    assert err <= 1e-4, err

    # The cache: synthesizing from the cached w alone equals Generate(seed 5) without truncation.
    from_cache = stub.Synthesize(
        pb.SynthesizeRequest(
            model=NAME, plans=[pb.StylePlan(styles=[pb.LayerStyle(source=pb.StyleSource(w_id=w_id))])], output=RAW
        )
    )
    direct = stub.Generate(pb.GenerateRequest(model=NAME, seeds=[5], class_index=0, output=RAW))
    assert np.abs(images(from_cache) - images(direct)).max() <= 1e-6
    with torch.no_grad():
        expect5 = G(torch.from_numpy(z_from_seeds([5], 16)), torch.from_numpy(class_labels([0], 3))).numpy()
    assert float(np.abs(images(direct) - expect5).max()) <= 1e-4
