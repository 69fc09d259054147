"""Semantic edits over a real server: GetModel lists the directions, Map returns edited w+ (= ws + alpha * d on
exactly the selected layers, checked in numpy against directions.npy), alpha 0 is the identity, Synthesize applies
the same edits, bad edits answer INVALID_ARGUMENT naming the field, a model exported before directions lists none
and refuses edits; the runtime loads directions.npy only through the sha256 / inside-the-directory checks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from harness import ServerProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from styleserve.errors import ManifestError
from styleserve.manifest import ModelManifest, sha256_file
from styleserve.v1 import styleserve_pb2 as pb
from styleserve.wire import tensor_from_proto

MODEL, LEGACY = "tiny-uncond", "legacy"  # 16 px, w_dim 32; the same model without directions


@pytest.fixture(scope="module")
def edit_repo(tiny_uncond_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("edit-repo")
    shutil.copytree(tiny_uncond_model, root / MODEL)
    legacy = root / LEGACY
    shutil.copytree(tiny_uncond_model, legacy)
    meta = json.loads((legacy / "model.json").read_text())
    (legacy / meta.pop("directions")["file"]).unlink()  # as exported before directions existed
    meta["name"] = LEGACY
    meta["source"]["files_sha256"].pop("directions.npy")
    (legacy / "model.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def edit_server(edit_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(edit_repo, log_dir=tmp_path_factory.mktemp("log")).wait_serving()
    yield s
    assert s.stop() == 0, s.log()


@pytest.fixture(scope="module")
def stub(edit_server: ServerProcess) -> object:
    return edit_server.stub()


@pytest.fixture(scope="module")
def directions(edit_repo: Path) -> dict[str, np.ndarray]:
    m = ModelManifest.load(edit_repo / MODEL)
    assert m.directions is not None
    arr = np.load(edit_repo / MODEL / m.directions.file)
    return {r.name: arr[i] for i, r in enumerate(m.directions.ranges)}


def map_ws(stub: object, seed: int, edits: list[pb.StyleEdit], psi: float = 0.7) -> np.ndarray:
    req = pb.MapRequest(model=MODEL, latents=[pb.Latent(seed=seed)], truncation=pb.Truncation(psi=psi), return_w=True)
    req.edits.extend(edits)
    (r,) = stub.Map(req, timeout=30).results  # type: ignore[attr-defined]
    return tensor_from_proto(r.w)


def seed_source(seed: int, edits: list[pb.StyleEdit], psi: float = 0.7) -> pb.StyleSource:
    return pb.StyleSource(seed=pb.SeedSource(seed=seed, truncation=pb.Truncation(psi=psi)), edits=edits)


def invalid(call: object, *args: object) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, timeout=30)  # type: ignore[operator]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    return str(info.value.details())


def test_get_model_lists_directions(stub: object, edit_repo: Path) -> None:
    m = ModelManifest.load(edit_repo / MODEL)
    assert m.directions is not None
    info = stub.GetModel(pb.GetModelRequest(model=MODEL), timeout=30)  # type: ignore[attr-defined]
    got = [(d.layer_range, list(d.layers), d.count) for d in info.directions]
    assert got == [(r.name, r.layers, m.directions.count) for r in m.directions.ranges]
    np.testing.assert_allclose(info.directions[0].eigenvalues, m.directions.ranges[0].eigenvalues, rtol=1e-6)
    legacy = stub.GetModel(pb.GetModelRequest(model=LEGACY), timeout=30)  # type: ignore[attr-defined]
    assert len(legacy.directions) == 0


def test_alpha_zero_is_the_identity(stub: object) -> None:
    plain = map_ws(stub, 42, [])  # w [w_dim] (psi on every layer)
    edited = map_ws(stub, 42, [pb.StyleEdit(direction=3, alpha=0.0, layer_range="all")])
    assert edited.shape == (6, plain.shape[0])  # an edited Map result is a w+
    assert np.array_equal(edited, np.broadcast_to(plain, edited.shape))
    out = pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW_UINT8)
    images = [
        stub.Synthesize(  # type: ignore[attr-defined]
            pb.SynthesizeRequest(model=MODEL, plans=[pb.StylePlan(styles=[pb.LayerStyle(source=src)])], output=out),
            timeout=30,
        )
        .images[0]
        .data
        for src in (seed_source(42, []), seed_source(42, [pb.StyleEdit(direction=0, alpha=0.0)]))
    ]
    assert images[0] == images[1]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["", "all", "coarse", "middle"]),
            st.integers(0, 15),
            st.floats(-100, 100, allow_nan=False, width=32),
            st.one_of(st.just([]), st.lists(st.integers(0, 5), min_size=1, max_size=6, unique=True)),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_edit_is_ws_plus_alpha_d_on_exactly_the_selected_layers(
    stub: object, directions: dict[str, np.ndarray], edit_repo: Path, seed: int, edits: list[tuple]
) -> None:
    m = ModelManifest.load(edit_repo / MODEL)
    assert m.directions is not None
    own = {r.name: r.layers for r in m.directions.ranges}
    protos = [pb.StyleEdit(layer_range=r, direction=d, alpha=a, layers=layers) for r, d, a, layers in edits]
    base = np.broadcast_to(map_ws(stub, seed, []), (m.num_ws, m.w_dim)).astype(np.float64)
    want = base.copy()
    for r, d, a, layers in edits:
        rows = layers or own[r or "all"]
        want[rows] += np.float64(np.float32(a)) * directions[r or "all"][d]
    got = map_ws(stub, seed, protos)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    touched = {i for r, _, _, layers in edits for i in (layers or own[r or "all"])}
    untouched = sorted(set(range(m.num_ws)) - touched)
    assert np.array_equal(got[untouched], base[untouched].astype(np.float32))

    # Synthesize applies the same edits where it assembles ws (return_ws shows them), and draws from them.
    req = pb.SynthesizeRequest(
        model=MODEL,
        plans=[pb.StylePlan(styles=[pb.LayerStyle(source=seed_source(seed, protos))])],
        output=pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW_UINT8, return_ws=True),
    )
    (img,) = stub.Synthesize(req, timeout=30).images  # type: ignore[attr-defined]
    assert np.array_equal(tensor_from_proto(img.ws), got)


def test_edits_on_w_plus_and_cached_sources(stub: object, directions: dict[str, np.ndarray]) -> None:
    ws = map_ws(stub, 7, [pb.StyleEdit(alpha=0.0)])  # a plain w+ of seed 7
    put = stub.PutW(pb.PutWRequest(model=MODEL, w=pb.Tensor(shape=list(ws.shape), data=ws.tobytes())), timeout=30)  # type: ignore[attr-defined]
    edit = pb.StyleEdit(direction=1, alpha=-2.5, layer_range="coarse", layers=[4])
    out = pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW_UINT8, return_ws=True)
    for src in (
        pb.StyleSource(w_id=put.w_id, edits=[edit]),
        pb.StyleSource(w_plus=pb.Tensor(shape=list(ws.shape), data=ws.tobytes()), edits=[edit]),
    ):
        req = pb.SynthesizeRequest(model=MODEL, plans=[pb.StylePlan(styles=[pb.LayerStyle(source=src)])], output=out)
        got = tensor_from_proto(stub.Synthesize(req, timeout=30).images[0].ws)  # type: ignore[attr-defined]
        want = ws.copy()
        want[4] += np.float32(-2.5) * directions["coarse"][1]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # Cached edited Map results are keyed by their edits.
    req = pb.MapRequest(model=MODEL, latents=[pb.Latent(seed=7)], cache=True, edits=[edit])
    a = stub.Map(req, timeout=30).results[0].w_id  # type: ignore[attr-defined]
    req.edits[0].alpha = 2.5
    b = stub.Map(req, timeout=30).results[0].w_id  # type: ignore[attr-defined]
    assert a != b and a.startswith("w_")


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (pb.StyleEdit(direction=16), "edits[0].direction"),
        (pb.StyleEdit(layer_range="fine"), "edits[0].layer_range"),  # a 16 px model has no fine layers
        (pb.StyleEdit(layer_range="x" * 100), "edits[0].layer_range"),
        (pb.StyleEdit(alpha=float("nan")), "edits[0].alpha"),
        (pb.StyleEdit(alpha=float("inf")), "edits[0].alpha"),
        (pb.StyleEdit(alpha=101.0), "edits[0].alpha"),
        (pb.StyleEdit(layers=[6]), "edits[0].layers[0]"),
        (pb.StyleEdit(layers=[1, 1]), "edits[0].layers[1]"),
        (pb.StyleEdit(layers=list(range(7))), "edits[0].layers"),
    ],
)
def test_bad_edits_name_the_field(stub: object, edit: pb.StyleEdit, field: str) -> None:
    details = invalid(stub.Synthesize, pb.SynthesizeRequest(  # type: ignore[attr-defined]
        model=MODEL, plans=[pb.StylePlan(styles=[pb.LayerStyle(source=seed_source(1, [edit]))])]
    ))  # fmt: skip
    assert details.startswith(f"plans[0].styles[0].source.{field}: "), details
    details = invalid(stub.Map, pb.MapRequest(model=MODEL, latents=[pb.Latent(seed=1)], return_w=True, edits=[edit]))  # type: ignore[attr-defined]
    assert details.startswith(f"{field}: "), details


def test_edit_count_is_capped_and_legacy_models_refuse_edits(stub: object) -> None:
    many = [pb.StyleEdit(alpha=0.1)] * 17
    details = invalid(stub.Map, pb.MapRequest(model=MODEL, latents=[pb.Latent(seed=1)], return_w=True, edits=many))  # type: ignore[attr-defined]
    assert details.startswith("edits: has 17 entries"), details
    grid = pb.StyleMixGridRequest(model=LEGACY, rows=[seed_source(1, [])], cols=[seed_source(2, [pb.StyleEdit()])])
    details = invalid(stub.StyleMixGrid, grid)  # type: ignore[attr-defined]
    assert details.startswith("cols[0].edits: model 'legacy' has no edit directions"), details


# ---------------------------------------------------------------------------- loading directions.npy


def _rehash(model: Path) -> None:
    meta = json.loads((model / "model.json").read_text())
    meta["source"]["files_sha256"]["directions.npy"] = sha256_file(model / "directions.npy")
    (model / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "directions.npy").write_bytes((d / "directions.npy").read_bytes()[:-4]), "sha256"),
        (lambda d: (np.save(d / "directions.npy", np.zeros((1, 2, 3), np.float32)), _rehash(d)), "need float32"),
        (lambda d: (np.save(d / "directions.npy", np.load(d / "directions.npy") * 2), _rehash(d)), "unit vectors"),
        (lambda d: ((d / "directions.npy").write_bytes(b"\x00" * 10**6), _rehash(d)), "holds 1000000 bytes"),
        (lambda d: ((d / "directions.npy").unlink(), (d / "directions.npy").symlink_to("/etc/hostname")), "outside"),
    ],
)
def test_runtime_checks_the_directions_file(
    tiny_uncond_model: Path, tmp_path: Path, damage: object, message: str
) -> None:
    from styleserve.server.runtime import ModelRuntime

    model = tmp_path / "m"
    shutil.copytree(tiny_uncond_model, model)
    damage(model)  # type: ignore[operator]
    with pytest.raises(ManifestError, match="directions") as info:
        ModelRuntime(model, device="cpu", intra_op_threads=1)
    assert message in str(info.value)
