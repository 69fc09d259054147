"""Every RPC over a real server process and a real gRPC channel, against the PyTorch networks.

The server serves the session's exported tiny models; images come back as raw float32 so they can
be compared with the export side's PyTorch generator on the same inputs.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from PIL import Image
from styleserve.export.networks import Generator

from styleserve.grid import mix_grid_ws
from styleserve.latent import class_labels, z_from_seeds
from styleserve.manifest import ModelManifest
from styleserve.v1 import styleserve_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ServerProcess

COND = "tiny-cond"
UNCOND = "tiny-uncond"
RAW = pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW_FLOAT32, return_ws=True)


def arr(t: pb.Tensor) -> np.ndarray:
    return np.frombuffer(t.data, "<f4").reshape(tuple(t.shape))


def tensor(a: np.ndarray) -> pb.Tensor:
    a = np.ascontiguousarray(a, "<f4")
    return pb.Tensor(shape=list(a.shape), data=a.tobytes())


def images(resp: pb.SynthesizeResponse) -> np.ndarray:
    return np.stack([np.frombuffer(i.data, "<f4").reshape(i.channels, i.height, i.width) for i in resp.images])


def seed_src(seed: int, cls: int | None = 0, psi: float | None = None, cutoff: int | None = None) -> pb.StyleSource:
    t = pb.Truncation()
    if psi is not None:
        t.psi = psi
    if cutoff is not None:
        t.cutoff = cutoff
    s = pb.SeedSource(seed=seed, truncation=t)
    if cls is not None:
        s.class_index = cls
    return pb.StyleSource(seed=s)


def torch_synth(G: Generator, ws: np.ndarray, noise_mode: str = "const") -> np.ndarray:
    with torch.no_grad():
        noises = G.synthesis.make_noise(noise_mode, batch=len(ws))
        return G.synthesis(torch.from_numpy(np.array(ws, np.float32)), noises).numpy()


def test_list_and_get_model(server: ServerProcess, tiny_cond_model: Path) -> None:
    stub = server.stub()
    names = [m.name for m in stub.ListModels(pb.ListModelsRequest()).models]
    assert names == [COND, UNCOND]
    info = stub.GetModel(pb.GetModelRequest(model=COND))
    m = ModelManifest.load(tiny_cond_model)
    assert (info.z_dim, info.w_dim, info.num_ws, info.num_classes) == (m.z_dim, m.w_dim, m.num_ws, 10)
    assert (info.img_resolution, info.img_channels) == (32, 3)
    assert [list(s.layers) for s in info.ws_layers] == [s.layers for s in m.ws_layers]
    assert [n.layer for n in info.noise_layers] == [n.layer for n in m.noise_inputs]
    assert list(info.noise_modes) == ["const", "none", "random"]
    assert info.execution_provider == "CPUExecutionProvider"


@pytest.mark.parametrize(("psi", "cutoff"), [(None, None), (0.7, None), (0.5, 3)])
def test_generate_reproduces_the_torch_generator(
    server: ServerProcess, tiny_cond_generator: Generator, psi: float | None, cutoff: int | None
) -> None:
    seeds = [0, 1, 2, 3, 4]
    t = pb.Truncation()
    if psi is not None:
        t.psi = psi
    if cutoff is not None:
        t.cutoff = cutoff
    resp = server.stub().Generate(pb.GenerateRequest(model=COND, seeds=seeds, class_index=4, truncation=t, output=RAW))
    z = z_from_seeds(seeds, 32)
    c = class_labels([4] * len(seeds), 10)
    with torch.no_grad():
        ref = tiny_cond_generator(torch.from_numpy(z), torch.from_numpy(c), psi or 1.0, cutoff).numpy()
    assert np.abs(images(resp) - ref).max() <= 1e-4
    assert resp.images[0].ws.shape == [tiny_cond_generator.synthesis.num_ws, 32]


def test_encoded_formats_agree(server: ServerProcess) -> None:
    stub = server.stub()

    def gen(fmt: int, **kw: int) -> pb.SynthesizeResponse:
        return stub.Generate(
            pb.GenerateRequest(model=COND, seeds=[7, 8], class_index=1, output=pb.OutputOptions(format=fmt, **kw))
        )

    raw = gen(pb.IMAGE_FORMAT_RAW_UINT8).images
    png = gen(pb.IMAGE_FORMAT_PNG).images
    jpg = gen(pb.IMAGE_FORMAT_JPEG, jpeg_quality=95).images
    for r, p, j in zip(raw, png, jpg, strict=True):
        ref = np.frombuffer(r.data, np.uint8).reshape(r.height, r.width, r.channels)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(p.data))), ref)
        assert p.data[:8] == b"\x89PNG\r\n\x1a\n" and j.data[:2] == b"\xff\xd8"
        assert np.asarray(Image.open(io.BytesIO(j.data))).shape == ref.shape
    gray = stub.Generate(pb.GenerateRequest(model=UNCOND, seeds=[1])).images[0]
    assert Image.open(io.BytesIO(gray.data)).mode == "L" and gray.channels == 1


def test_map_seeds_and_z(server: ServerProcess, tiny_cond_generator: Generator) -> None:
    stub = server.stub()
    z = z_from_seeds([3, 9], 32)
    lat = [pb.Latent(seed=3, class_index=2), pb.Latent(z=tensor(z[1]), class_index=5)]
    resp = stub.Map(pb.MapRequest(model=COND, latents=lat, return_w=True))
    with torch.no_grad():
        ref = tiny_cond_generator.mapping(torch.from_numpy(z), torch.from_numpy(class_labels([2, 5], 10))).numpy()
    got = np.stack([arr(r.w) for r in resp.results])
    assert got.shape == (2, 32) and np.abs(got - ref[:, 0] if ref.ndim == 3 else got - ref).max() <= 1e-5
    # Truncation with a cutoff returns a w+, stored under a content-derived id.
    tr = stub.Map(
        pb.MapRequest(
            model=COND, latents=lat[:1], truncation=pb.Truncation(psi=0.5, cutoff=2), return_w=True, cache=True
        )
    ).results[0]
    w_plus = arr(tr.w)
    assert w_plus.shape == (tiny_cond_generator.synthesis.num_ws, 32)
    w_avg = tiny_cond_generator.mapping.w_avg.numpy()
    assert np.allclose(w_plus[0], w_avg + 0.5 * (got[0] - w_avg), atol=1e-6)
    assert np.array_equal(w_plus[2], got[0])
    again = stub.Map(
        pb.MapRequest(model=COND, latents=lat[:1], truncation=pb.Truncation(psi=0.5, cutoff=2), cache=True)
    ).results[0]
    assert again.w_id == tr.w_id and not again.HasField("w")
    assert np.array_equal(arr(stub.GetW(pb.GetWRequest(model=COND, w_id=tr.w_id)).w), w_plus)


def test_style_plan_equals_hand_assembled_ws(server: ServerProcess, tiny_cond_generator: Generator) -> None:
    """Per-layer injection is exact: the mixed image is the image of the hand-assembled ws."""
    stub = server.stub()
    num_ws = tiny_cond_generator.synthesis.num_ws
    base = arr(
        stub.Map(pb.MapRequest(model=COND, latents=[pb.Latent(seed=1, class_index=0)], return_w=True)).results[0].w
    )
    other = arr(
        stub.Map(pb.MapRequest(model=COND, latents=[pb.Latent(seed=2, class_index=3)], return_w=True)).results[0].w
    )
    rng = np.random.RandomState(0)
    inverted = rng.randn(num_ws, 32).astype(np.float32)  # A w+ such as a GAN-inversion result.
    w_id = stub.PutW(pb.PutWRequest(model=COND, w=tensor(other))).w_id
    plan = pb.StylePlan(
        styles=[
            pb.LayerStyle(source=seed_src(1, 0)),  # every layer: seed 1
            pb.LayerStyle(start=0, stop=3, source=pb.StyleSource(w_id=w_id)),  # coarse: seed 2 (cached)
            pb.LayerStyle(layers=[5, num_ws - 1], source=pb.StyleSource(w_plus=tensor(inverted))),
        ]
    )
    hand = np.repeat(base[None], num_ws, axis=0)
    hand[:3] = other
    hand[[5, num_ws - 1]] = inverted[[5, num_ws - 1]]
    resp = stub.Synthesize(pb.SynthesizeRequest(model=COND, plans=[plan], output=RAW))
    assert np.array_equal(arr(resp.images[0].ws), hand)
    explicit = stub.Synthesize(
        pb.SynthesizeRequest(
            model=COND,
            plans=[pb.StylePlan(styles=[pb.LayerStyle(source=pb.StyleSource(w_plus=tensor(hand)))])],
            output=RAW,
        )
    )
    assert np.abs(images(resp) - images(explicit)).max() <= 1e-6
    assert np.abs(images(resp)[0] - torch_synth(tiny_cond_generator, hand[None])[0]).max() <= 1e-4


def test_noise_control(server: ServerProcess, tiny_cond_generator: Generator) -> None:
    stub = server.stub()
    num_noise = len(stub.GetModel(pb.GetModelRequest(model=COND)).noise_layers)

    def synth(noise: pb.NoiseControl) -> np.ndarray:
        plan = pb.StylePlan(styles=[pb.LayerStyle(source=seed_src(4, 1))], noise=noise)
        return images(stub.Synthesize(pb.SynthesizeRequest(model=COND, plans=[plan], output=RAW)))[0]

    const = synth(pb.NoiseControl())
    none = synth(pb.NoiseControl(mode="none"))
    zero = synth(pb.NoiseControl(mode="const", strength=[0.0] * num_noise))
    r1, r1b, r2 = (synth(pb.NoiseControl(mode="random", noise_seed=s)) for s in (1, 1, 2))
    assert np.array_equal(none, zero) and np.array_equal(r1, r1b)
    assert np.abs(const - none).max() > 1e-3 and np.abs(r1 - r2).max() > 1e-3
    ws = arr(
        stub.Synthesize(
            pb.SynthesizeRequest(
                model=COND, plans=[pb.StylePlan(styles=[pb.LayerStyle(source=seed_src(4, 1))])], output=RAW
            )
        )
        .images[0]
        .ws
    )
    assert np.abs(none - torch_synth(tiny_cond_generator, ws[None], "none")[0]).max() <= 1e-4


def test_style_mix_grid(server: ServerProcess) -> None:
    stub = server.stub()
    rows, cols, styles = [85, 100], [55, 821, 1789], [0, 1, 2]
    req = pb.StyleMixGridRequest(
        model=COND,
        rows=[seed_src(s, 0, 0.7) for s in rows],
        cols=[seed_src(s, 1, 0.7) for s in cols],
        col_styles=styles,
        output=pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW_UINT8, return_ws=True),
        compose=True,
    )
    resp = stub.StyleMixGrid(req)
    assert len(resp.cells) == 6
    def ws_of(src: pb.StyleSource) -> np.ndarray:
        plan = pb.StylePlan(styles=[pb.LayerStyle(source=src)])
        return arr(stub.Synthesize(pb.SynthesizeRequest(model=COND, plans=[plan], output=RAW)).images[0].ws)

    row_ws = np.stack([ws_of(src) for src in req.rows])
    col_ws = np.stack([ws_of(src) for src in req.cols])
    cells_ws = mix_grid_ws(row_ws, col_ws, styles)
    assert np.array_equal(np.stack([arr(c.ws) for c in resp.cells]), cells_ws)
    grid = np.asarray(Image.open(io.BytesIO(resp.grid.data)))
    assert grid.shape == (3 * 32, 4 * 32, 3)
    cell = np.frombuffer(resp.cells[1 * 3 + 2].data, np.uint8).reshape(32, 32, 3)
    assert np.array_equal(grid[2 * 32 : 3 * 32, 3 * 32 : 4 * 32], cell)
    assert not grid[:32, :32].any()  # The black corner.


def test_w_cache_round_trip(server: ServerProcess) -> None:
    stub = server.stub()
    w = np.linspace(-1, 1, 32, dtype=np.float32)
    w_id = stub.PutW(pb.PutWRequest(model=COND, w=tensor(w))).w_id
    assert stub.PutW(pb.PutWRequest(model=COND, w=tensor(w))).w_id == w_id  # Keyed by content.
    assert np.array_equal(arr(stub.GetW(pb.GetWRequest(model=COND, w_id=w_id)).w), w)
    with pytest.raises(grpc.RpcError) as e:
        stub.GetW(pb.GetWRequest(model=UNCOND, w_id=w_id))  # Ids belong to their model.
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert stub.DeleteW(pb.DeleteWRequest(model=COND, w_id=w_id)).deleted
    assert not stub.DeleteW(pb.DeleteWRequest(model=COND, w_id=w_id)).deleted
    with pytest.raises(grpc.RpcError) as e:
        stub.GetW(pb.GetWRequest(model=COND, w_id=w_id))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "w_id" in (e.value.details() or "")


def test_repeated_seeds_skip_the_mapping_network(server: ServerProcess) -> None:
    stub = server.stub()
    key = 'styleserve_network_rows_total{model="tiny-uncond",network="mapping"}'
    seeds = [9001, 9002, 9003]
    before = server.metrics().get(key, 0.0)
    first = stub.Generate(pb.GenerateRequest(model=UNCOND, seeds=seeds, output=RAW))
    mid = server.metrics()[key]
    second = stub.Generate(pb.GenerateRequest(model=UNCOND, seeds=[*seeds, 9004], output=RAW))
    after = server.metrics()[key]
    assert (mid - before, after - mid) == (3, 1)
    assert np.array_equal(images(first), images(second)[:3])


def test_stream_generate(server: ServerProcess) -> None:
    stub = server.stub()
    items = list(
        stub.StreamGenerate(
            pb.StreamGenerateRequest(
                model=UNCOND,
                seeds=pb.SeedRange(start=100, stop=140),
                truncation=pb.Truncation(psi=0.8),
                output=pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW_UINT8),
            )
        )
    )
    assert [i.index for i in items] == list(range(40)) and [i.seed for i in items] == list(range(100, 140))
    ref = stub.Generate(
        pb.GenerateRequest(
            model=UNCOND,
            seeds=[117, 139],
            truncation=pb.Truncation(psi=0.8),
            output=pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW_UINT8),
        )
    )
    assert items[17].image.data == ref.images[0].data and items[39].image.data == ref.images[1].data
    plans = pb.PlanList(plans=[pb.StylePlan(styles=[pb.LayerStyle(source=seed_src(s, None))]) for s in (117, 139)])
    planned = list(
        stub.StreamGenerate(
            pb.StreamGenerateRequest(
                model=UNCOND, plans=plans, output=pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW_UINT8)
            )
        )
    )
    assert [i.index for i in planned] == [0, 1] and not planned[0].HasField("seed")


def test_concurrent_requests_merge_into_batches(server: ServerProcess) -> None:
    """16 single-image requests at once: the server runs fewer synthesis batches than requests."""
    stub = server.stub()
    key = 'styleserve_batch_size_count{model="tiny-cond",network="synthesis"}'
    before = server.metrics().get(key, 0.0)
    futures = [stub.Generate.future(pb.GenerateRequest(model=COND, seeds=[500 + i], class_index=0)) for i in range(16)]
    assert all(len(f.result().images) == 1 for f in futures)
    runs = server.metrics()[key] - before
    assert 1 <= runs < 16, f"{runs} synthesis runs for 16 concurrent requests"
    hist = server.metrics()
    merged = hist['styleserve_batch_requests_sum{model="tiny-cond",network="synthesis"}']
    assert merged >= 16


def test_health_and_reflection(server: ServerProcess) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    assert server.health() == 1 and server.health("styleserve.v1.StyleServe") == 1  # SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel())
    resp = next(iter(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))))
    names = {s.name for s in resp.list_services_response.service}
    assert {"styleserve.v1.StyleServe", "grpc.health.v1.Health"} <= names
