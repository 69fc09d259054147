"""Official-format stylegan3 .pkl (configs T and R, tiny) -> ``styleserve-export`` CLI -> a real server process ->
images over gRPC, against the numpy reference of the official code (gen_images.py ``--seeds 0-7 --trunc PSI
--translate X,Y --rotate DEG``): seeds 0-7, psi 1.0 and 0.7, every seed with its own translation and rotation.
Also the transform through Synthesize, StreamGenerate and the grid, and the refusals (INVALID_ARGUMENT naming
the field): transforms for a model without a transform input, non-default noise controls for StyleGAN3,
non-finite or out-of-range transforms, a transform count that fits no image count."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from styleserve.transform import input_transform
from styleserve.v1 import styleserve_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ckpt_writers as cw
from sg3_models import MOVES, ref
from sg3_models import make_tiny as _make

RAW = pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW_FLOAT32)
CASES = ("T16", "R16")
SG2 = "tiny-uncond"


def _move(i: int) -> pb.InputTransform:
    (tx, ty), deg = MOVES[i]
    return pb.InputTransform(translate_x=tx, translate_y=ty, rotate_deg=deg)


def _img(image: pb.Image) -> np.ndarray:
    return np.frombuffer(image.data, "<f4").reshape(image.channels, image.height, image.width)


@pytest.fixture(scope="module")
def sg3_repo(tiny_uncond_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Each case pickled as the official training loop does, exported by the CLI; plus a StyleGAN2 model."""
    root = tmp_path_factory.mktemp("sg3repo")
    work = tmp_path_factory.mktemp("sg3work")
    models: dict[str, Any] = {}
    for case in CASES:
        G, rcfg = _make(case)
        flag = work / f"pwned-{case}"
        snap = cw.official_sg3_snapshot(G, src=cw.PAYLOAD_TEMPLATE.format(flag=flag, class_name="Generator"))
        pkl = cw.dump_pickle(snap, work / f"{case}.pkl")
        r = subprocess.run([sys.executable, "-m", "styleserve.export.cli", str(pkl), str(root / case.lower()),
                            "--verify-batches", "1,3"], capture_output=True, text=True, timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert not flag.exists(), "the pickled module source was executed"
        models[case.lower()] = ({k: v.numpy() for k, v in G.state_dict().items()}, rcfg)
    shutil.copytree(tiny_uncond_model, root / SG2)
    return root, models


@pytest.fixture(scope="module")
def served(sg3_repo: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from harness import ServerProcess

    s = ServerProcess(sg3_repo[0], "--max-queue-delay-ms", "2", log_dir=tmp_path_factory.mktemp("log")).wait_serving()
    yield s
    assert s.stop() == 0, s.log()


@pytest.fixture(scope="module")
def stub(served: Any) -> Any:
    return served.stub()


def _want(models: dict[str, Any], name: str, seeds: list[int], psi: float, moves: list[int]) -> np.ndarray:
    state, rcfg = models[name]
    z = np.concatenate([np.random.RandomState(s).randn(1, rcfg["z_dim"]) for s in seeds])
    ws = ref.reference_ws(state, rcfg, z, None, truncation_psi=psi)
    tf = np.stack([np.linalg.inv(ref.make_transform(*MOVES[i])) for i in moves])
    return np.concatenate([ref.reference_synthesis(state, rcfg, ws[i : i + 4], tf[i : i + 4])
                           for i in range(0, len(seeds), 4)])  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_generate_matches_official_reference_with_translations_and_rotations(
    stub: Any, sg3_repo: tuple[Path, dict[str, Any]], case: str
) -> None:
    name = case.lower()
    info = stub.GetModel(pb.GetModelRequest(model=name))
    assert info.architecture == "stylegan3" and info.takes_transform and info.num_ws == 6
    assert list(info.noise_layers) == [] and list(info.noise_modes) == ["const"]
    seeds = list(range(8))
    for psi in (1.0, 0.7):
        resp = stub.Generate(pb.GenerateRequest(model=name, seeds=seeds, truncation=pb.Truncation(psi=psi),
                                                transforms=[_move(s) for s in seeds], output=RAW))  # fmt: skip
        got = np.stack([_img(im) for im in resp.images])
        want = _want(sg3_repo[1], name, seeds, psi, seeds)
        err = float(np.abs(got - want).max())
        assert err <= 1e-4, f"{case} psi={psi}: max abs error {err:.3g}"
    # One transform for every seed; none = identity (MOVES[0]).
    resp = stub.Generate(pb.GenerateRequest(model=name, seeds=[2, 3], transforms=[_move(4)], output=RAW))
    got = np.stack([_img(im) for im in resp.images])
    assert np.abs(got - _want(sg3_repo[1], name, [2, 3], 1.0, [4, 4])).max() <= 1e-4
    plain = stub.Generate(pb.GenerateRequest(model=name, seeds=[2], output=RAW))
    assert np.abs(_img(plain.images[0]) - _want(sg3_repo[1], name, [2], 1.0, [0])[0]).max() <= 1e-4


def test_synthesize_stream_and_grid_take_the_transform(stub: Any, sg3_repo: tuple[Path, dict[str, Any]]) -> None:
    name = "t16"
    models = sg3_repo[1]

    def plan(seed: int, move: int | None) -> pb.StylePlan:
        src = pb.StyleSource(seed=pb.SeedSource(seed=seed, truncation=pb.Truncation(psi=0.7)))
        p = pb.StylePlan(styles=[pb.LayerStyle(source=src)])
        if move is not None:
            p.transform.CopyFrom(_move(move))
        return p

    resp = stub.Synthesize(pb.SynthesizeRequest(model=name, plans=[plan(1, 6), plan(5, None), plan(7, 2)], output=RAW))
    got = np.stack([_img(im) for im in resp.images])
    want = np.concatenate([_want(models, name, [s], 0.7, [m]) for s, m in ((1, 6), (5, 0), (7, 2))])
    assert np.abs(got - want).max() <= 1e-4

    items = list(stub.StreamGenerate(pb.StreamGenerateRequest(
        model=name, seeds=pb.SeedRange(start=3, stop=6), transform=_move(5), output=RAW)))  # fmt: skip
    assert [it.seed for it in items] == [3, 4, 5]
    want = _want(models, name, [3, 4, 5], 1.0, [5, 5, 5])
    assert np.abs(np.stack([_img(it.image) for it in items]) - want).max() <= 1e-4
    items = list(stub.StreamGenerate(pb.StreamGenerateRequest(
        model=name, plans=pb.PlanList(plans=[plan(0, 3), plan(1, 7)]), output=RAW)))  # fmt: skip
    want = np.concatenate([_want(models, name, [0], 0.7, [3]), _want(models, name, [1], 0.7, [7])])
    assert np.abs(np.stack([_img(it.image) for it in items]) - want).max() <= 1e-4

    seed = lambda s: pb.StyleSource(seed=pb.SeedSource(seed=s))  # noqa: E731
    grid = stub.StyleMixGrid(pb.StyleMixGridRequest(model=name, rows=[seed(0)], cols=[seed(0)], col_styles=[0, 1],
                                                    transform=_move(3), output=RAW))  # fmt: skip
    assert np.abs(_img(grid.cells[0]) - _want(models, name, [0], 1.0, [3])[0]).max() <= 1e-4


def test_refusals_name_the_field(stub: Any) -> None:
    def refused(call: Callable[[], Any], field: str) -> None:
        with pytest.raises(grpc.RpcError) as e:
            call()
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        assert e.value.details().startswith(field), e.value.details()

    gen = stub.Generate
    assert not stub.GetModel(pb.GetModelRequest(model=SG2)).takes_transform
    refused(lambda: gen(pb.GenerateRequest(model=SG2, seeds=[0], transforms=[_move(2)])), "transforms[0]")
    src = pb.StyleSource(seed=pb.SeedSource(seed=0))
    p = pb.StylePlan(styles=[pb.LayerStyle(source=src)], transform=_move(1))
    refused(lambda: stub.Synthesize(pb.SynthesizeRequest(model=SG2, plans=[p])), "plans[0].transform")
    ok = gen(pb.GenerateRequest(model=SG2, seeds=[0], transforms=[pb.InputTransform()]))  # the identity is fine
    assert len(ok.images) == 1
    refused(lambda: gen(pb.GenerateRequest(model="t16", seeds=[0], noise=pb.NoiseControl(mode="none"))), "noise.mode")
    refused(lambda: gen(pb.GenerateRequest(model="t16", seeds=[0], noise=pb.NoiseControl(noise_seed=3))),
            "noise.noise_seed")  # fmt: skip
    refused(lambda: gen(pb.GenerateRequest(model="t16", seeds=[0], noise=pb.NoiseControl(strength=[1.0]))),
            "noise.strength")  # fmt: skip
    refused(lambda: gen(pb.GenerateRequest(model="t16", seeds=[0],
                                           transforms=[pb.InputTransform(translate_x=float("nan"))])),
            "transforms[0].translate_x")  # fmt: skip
    refused(lambda: gen(pb.GenerateRequest(model="t16", seeds=[0], transforms=[pb.InputTransform(rotate_deg=1e9)])),
            "transforms[0].rotate_deg")  # fmt: skip
    refused(lambda: gen(pb.GenerateRequest(model="t16", seeds=[0, 1, 2], transforms=[_move(1), _move(2)])),
            "transforms")  # fmt: skip
    refused(lambda: stub.StyleMixGrid(pb.StyleMixGridRequest(model=SG2, rows=[src], cols=[src], transform=_move(2))),
            "transform")  # fmt: skip


def test_transform_helper_is_gen_images() -> None:
    from styleserve.export.networks_sg3 import input_transform as torch_side

    for (tx, ty), deg in MOVES:
        assert np.array_equal(input_transform((tx, ty), deg), torch_side((tx, ty), deg))
        assert np.allclose(input_transform((tx, ty), deg), np.linalg.inv(ref.make_transform((tx, ty), deg)), atol=1e-7)


def test_cli_generate_translate_rotate_is_gen_images(
    served: Any, sg3_repo: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """``styleserve generate --seeds 0,5 --trunc 0.7 --translate 0.3,1 --rotate 30``: gen_images.py's PNGs (the
    reference's uint8 conversion, within one level of float rounding); a walk pans and rotates frame by frame."""
    from PIL import Image

    out = tmp_path / "gen"
    r = subprocess.run([sys.executable, "-m", "styleserve.cli", "generate", "--target", served.target, "--model",
                        "r16", "--seeds", "0,5", "--trunc", "0.7", "--translate", "0.3,1", "--rotate", "30",
                        "--out", str(out)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    state, rcfg = sg3_repo[1]["r16"]
    z = np.concatenate([np.random.RandomState(s).randn(1, rcfg["z_dim"]) for s in (0, 5)])
    want = ref.reference_generator(state, rcfg, z, truncation_psi=0.7, translate=(0.3, 1.0), rotate=30.0)
    want_u8 = np.clip(want.transpose(0, 2, 3, 1) * 127.5 + 128, 0, 255).astype(np.uint8).astype(int)
    for i, seed in enumerate((0, 5)):
        got = np.asarray(Image.open(out / f"seed{seed:04d}.png")).astype(int)
        assert np.abs(got - want_u8[i]).max() <= 1
    frames = tmp_path / "walk"
    r = subprocess.run([sys.executable, "-m", "styleserve.cli", "walk", "--target", served.target, "--model", "t16",
                        "--seeds", "1,2", "--steps", "3", "--pan-to", "0.5,0", "--rotate-to", "90",
                        "--out", str(frames) + "/"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    pngs = sorted(frames.glob("*.png"))
    assert len(pngs) == 3
    first, last = (np.asarray(Image.open(p)).astype(int) for p in (pngs[0], pngs[-1]))
    state, rcfg = sg3_repo[1]["t16"]
    z = np.random.RandomState(1).randn(1, rcfg["z_dim"])
    want0 = ref.reference_generator(state, rcfg, z)
    assert np.abs(first - np.clip(want0[0].transpose(1, 2, 0) * 127.5 + 128, 0, 255).astype(np.uint8)).max() <= 1
    z = np.random.RandomState(2).randn(1, rcfg["z_dim"])
    want2 = ref.reference_generator(state, rcfg, z, translate=(0.5, 0.0), rotate=90.0)
    assert np.abs(last - np.clip(want2[0].transpose(1, 2, 0) * 127.5 + 128, 0, 255).astype(np.uint8)).max() <= 1
