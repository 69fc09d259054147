"""TensorFlow StyleGAN2 (NVlabs/stylegan2) ``.pkl`` -> styleserve-export (CLI) -> onnxruntime and a real server.

Tiny ``(G, D, Gs)`` pickles in the official layout (``ckpt_writers.tf_stylegan2_pickle``: ``G_main`` with
``G_mapping`` / ``G_synthesis_stylegan2``, an embedded ``build_module_src`` that would leave a flag file if
it ever ran) are exported by the CLI and compared, for seeds 0-7 at psi 1.0 and 0.7, with an independent
numpy reference that follows the TF graph's own route (``numpy_reference_tf2.py``: fused modconv with the
runtime weight gains, ``upsample_conv_2d`` through a transposed conv, the LabelConcat mapping).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from styleserve.export.checkpoints import FORMATS, load_checkpoint
from styleserve.export.cli import build_parser
from styleserve.export.cli import main as cli_main
from styleserve.server.runtime import ModelRuntime, NoiseSpec

from styleserve.errors import CheckpointError, UnsupportedArchitecture
from styleserve.latent import broadcast_ws, class_labels, truncate, z_from_seeds
from styleserve.v1 import styleserve_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ckpt_writers as cw
import numpy_reference_tf2 as ref

TINY = dict(latent_size=16, dlatent_size=16, mapping_layers=2, mapping_fmaps=16, fmap_max=16)
CASES: dict[str, tuple[dict[str, Any], bool]] = {
    # name: (G_main kwargs, variable names prefixed with the component name)
    "64px-skip-uncond": ({**TINY, "resolution": 64, "fmap_base": 256}, False),
    "32px-skip-5class": ({**TINY, "resolution": 32, "fmap_base": 128, "label_size": 5}, True),
    "32px-resnet-gray": ({**TINY, "resolution": 32, "fmap_base": 128, "architecture": "resnet", "num_channels": 1},
                         False),
    "16px-orig-3class-unfused": ({**TINY, "resolution": 16, "fmap_base": 64, "architecture": "orig", "label_size": 3,
                                  "fused_modconv": False}, False),
}  # fmt: skip
SEEDS = list(range(8))
RAW = pb.OutputOptions(format=pb.IMAGE_FORMAT_RAW_FLOAT32)


def write(tmp: Path, cfg: dict[str, Any], *, seed: int = 3, name: str = "tf2.pkl", prefix: bool = False,
          **kw: Any) -> tuple[Path, tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]]:  # fmt: skip
    m, s, avg = ref.random_tf2_vars(cfg, seed=seed)
    nets = cw.tf_stylegan2_pickle(
        m, s, avg, src=cw.TF2_PAYLOAD_TEMPLATE.format(flag=tmp / "pwned"), g_kwargs=cfg, prefix_names=prefix, **kw
    )
    return cw.dump_tf_pickle(nets, tmp / name), (m, s, avg)


def labels(cfg: dict[str, Any]) -> np.ndarray | None:
    n = cfg.get("label_size", 0)
    return class_labels([s % n for s in SEEDS], n) if n else None


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    """Every case written as a TF pickle and exported by the CLI into one model repository (the first in a
    fresh process, the others through the same ``main`` in this one, to spare three torch imports)."""
    tmp = tmp_path_factory.mktemp("tf2")
    out: dict[str, tuple[Path, Any]] = {}
    for i, (case, (cfg, prefix)) in enumerate(CASES.items()):
        pkl, tf_vars = write(tmp, cfg, seed=10 + i, name=f"{case}.pkl", prefix=prefix)
        model = tmp / "repo" / case
        args = [str(pkl), str(model), "--verify-batches", "1,3"]
        if i == 0:
            r = subprocess.run(
                [sys.executable, "-m", "styleserve.export.cli", *args], capture_output=True, text=True, timeout=300
            )
            assert r.returncode == 0, r.stderr
        else:
            assert cli_main(args) == 0
        out[case] = (model, tf_vars)
    assert not (tmp / "pwned").exists(), "the pickled build_module_src was executed"
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_tf_stylegan2_onnx_reproduces_the_tf_graph(exported: dict[str, tuple[Path, Any]], case: str) -> None:
    model, (m, s, avg) = exported[case]
    cfg, _ = CASES[case]
    rt = ModelRuntime(model, intra_op_threads=2)
    man = rt.manifest
    assert man.source["format"] == "stylegan2-tf-pkl" and man.source["class"] == "G_main"
    assert man.num_ws == ref.num_layers(cfg) and man.c_dim == cfg.get("label_size", 0)
    z = z_from_seeds(SEEDS, man.z_dim)
    c = labels(cfg)
    w = rt.map(z, c)
    w_ref = ref.reference_mapping(m, cfg, z, c)
    assert np.abs(w - w_ref).max() <= 1e-4 * max(1.0, np.abs(w_ref).max())
    L = ref.num_layers(cfg)
    for psi in (1.0, 0.7):
        ws = truncate(broadcast_ws(w, man.num_ws), rt.w_avg, psi)
        ws_ref = avg + (np.tile(w_ref[:, None], [1, L, 1]) - avg) * psi
        assert np.abs(ws - ws_ref).max() <= 1e-4, f"{case} psi={psi}: truncated ws"
        for noise in ("const", "none") if case.startswith("64px") else ("const",):
            img = rt.synthesize(ws, [NoiseSpec(noise)] * len(SEEDS), output="float")
            expect = ref.reference_generator(m, s, avg, cfg, z, c, truncation_psi=psi, noises=noise)
            err = float(np.abs(img - expect).max())
            assert err <= 1e-4, f"{case} psi={psi} noise={noise}: max abs error {err:.3g}"


def test_tf_stylegan2_served(exported: dict[str, tuple[Path, Any]], start_server: Callable[..., Any]) -> None:
    repo = next(iter(exported.values()))[0].parent
    stub = start_server(repo).stub()
    for case, (_, (m, s, avg)) in exported.items():
        cfg, _ = CASES[case]
        n_cls = cfg.get("label_size", 0)
        for psi in (1.0, 0.7):
            # One request per class: Generate takes one class for all its seeds.
            for cls in range(n_cls) if n_cls else [0]:
                seeds = [sd for sd in SEEDS if not n_cls or sd % n_cls == cls]
                req = pb.GenerateRequest(model=case, seeds=seeds, truncation=pb.Truncation(psi=psi), output=RAW)
                if n_cls:
                    req.class_index = cls
                resp = stub.Generate(req)
                got = np.stack(
                    [np.frombuffer(i.data, "<f4").reshape(i.channels, i.height, i.width) for i in resp.images]
                )
                z = z_from_seeds(seeds, cfg["latent_size"])
                c = class_labels([cls] * len(seeds), n_cls) if n_cls else None
                expect = ref.reference_generator(m, s, avg, cfg, z, c, truncation_psi=psi)
                err = float(np.abs(got - expect).max())
                assert err <= 1e-4, f"{case} psi={psi} class={cls}: max abs error {err:.3g}"


SMALL = {**TINY, "resolution": 8, "fmap_base": 32, "label_size": 2}


def test_reader_details(tmp_path: Path) -> None:
    assert "stylegan2-tf-pkl" in FORMATS
    kinds = next(a for a in build_parser()._actions if a.dest == "kind").choices
    assert kinds is not None and "stylegan2-tf-pkl" in kinds
    pkl, (m, _, avg) = write(tmp_path, SMALL)
    ck = load_checkpoint(pkl)
    assert ck.format == "stylegan2-tf-pkl" and ck.config.mapping.label_concat  # type: ignore[union-attr]
    assert np.array_equal(ck.state_dict["mapping.w_avg"].numpy(), avg)
    assert np.array_equal(ck.state_dict["mapping.fc1.weight"].numpy(), m["Dense1/weight"].T)
    assert any("not executed" in n for n in ck.notes)
    assert load_checkpoint(pkl, kind="stylegan2-tf-pkl").format == "stylegan2-tf-pkl"
    with pytest.raises(UnsupportedArchitecture, match="stylegan2-tf-pkl"):
        load_checkpoint(pkl, kind="stylegan-tf-pkl")
    # No dlatent_avg: estimated (and said so), as for the other formats.
    mm, ss, _ = ref.random_tf2_vars(SMALL, seed=3)
    nets = cw.tf_stylegan2_pickle(mm, ss, None, src="", g_kwargs=SMALL)
    ck2 = load_checkpoint(cw.dump_tf_pickle(nets, tmp_path / "noavg.pkl"))
    assert any("w_avg estimated" in n for n in ck2.notes)


def test_refusals(tmp_path: Path) -> None:
    # The v1 synthesis under G_main (NVlabs/stylegan2 config-a): named, not guessed.
    pkl, _ = write(tmp_path, SMALL, name="a.pkl", synthesis_func="G_synthesis")
    with pytest.raises(UnsupportedArchitecture, match="G_synthesis_stylegan2"):
        load_checkpoint(pkl)
    m, s, avg = ref.random_tf2_vars(SMALL, seed=1)
    nets = cw.tf_stylegan2_pickle(m, s, avg, src="", g_kwargs={**SMALL, "architecture": "resnet"})
    with pytest.raises(CheckpointError, match="resnet"):  # Skip-architecture variables, a resnet kwarg.
        load_checkpoint(cw.dump_tf_pickle(nets, tmp_path / "b.pkl"))
    for name, mvars, svars, kwargs, match in (
        ("missing", m, {k: v for k, v in s.items() if k != "8x8/Conv1/mod_bias"}, {}, "8x8/Conv1/mod_bias"),
        ("extra", m, {**s, "8x8/Conv1/extra": s["8x8/Conv1/bias"]}, {}, "8x8/Conv1/extra"),
        ("shape", m, {**s, "8x8/Conv1/mod_bias": s["8x8/Conv1/mod_bias"][:3]}, {}, "affine.bias"),
        ("norm", m, s, {"normalize_latents": False}, "normalize_latents"),
        ("act", m, s, {"nonlinearity": "gelu"}, "gelu"),
        ("nan", m, {**s, "noise0": s["noise0"] * np.nan}, {}, "NaN"),
    ):
        nets = cw.tf_stylegan2_pickle(mvars, svars, avg, src="", g_kwargs={**SMALL, **kwargs})
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(cw.dump_tf_pickle(nets, tmp_path / f"{name}.pkl"))


_M, _S, _AVG = ref.random_tf2_vars(SMALL, seed=5)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(sorted(_S) + sorted(_M)),
    action=st.sampled_from(["drop", "grow", "shrink", "scalar", "rank", "rename"]),
)
def test_hostile_variables_are_refused_cleanly(tmp_path: Path, key: str, action: str) -> None:
    """A forged variable (gone, resized, re-ranked, renamed) gives a CheckpointError, never another exception."""
    m, s = dict(_M), dict(_S)
    vs = s if key in s else m
    v = np.asarray(vs[key])
    if action == "drop":
        del vs[key]
    elif action == "grow":
        vs[key] = np.concatenate([v.reshape(-1), np.ones(3, np.float32)]).astype(np.float32)
    elif action == "shrink":
        vs[key] = v.reshape(-1)[:1]
    elif action == "scalar":
        vs[key] = np.float32(1.0) if v.ndim else np.ones(2, np.float32)  # type: ignore[assignment]
    elif action == "rank":
        vs[key] = v[None, None]
    else:
        vs[key + "_x"] = vs.pop(key)
    nets = cw.tf_stylegan2_pickle(m, s, _AVG, src="", g_kwargs=SMALL)
    pkl = cw.dump_tf_pickle(nets, tmp_path / "hostile.pkl")
    if key == "LabelConcat/weight" and action == "drop":  # What is left is a valid unconditional model, z 32.
        assert load_checkpoint(pkl).config.c_dim == 0
        return
    with pytest.raises(CheckpointError):
        load_checkpoint(pkl)
