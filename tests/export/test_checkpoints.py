"""Safe checkpoint import: official pickles, rosinality .pt files, the native format, hostile files."""

from __future__ import annotations

import copyreg
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from styleserve.export import networks as nw
from styleserve.export._pickle import LEGACY_MAGIC
from styleserve.export.checkpoints import load_checkpoint, load_generator_from, save_native

from styleserve.errors import CheckpointError, UnsafePickleError, UnsupportedArchitecture

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ckpt_writers as cw

# ----------------------------------------------------------------------------
# Helpers.


def make_generator(seed: int, **kw: Any) -> nw.Generator:
    cfg = nw.make_config(channel_base=512, channel_max=32, **kw)
    return cw.randomize_(nw.Generator(cfg), seed)  # type: ignore[return-value]


def payload(tmp_path: Path) -> tuple[str, Path]:
    flag = tmp_path / "pwned"
    return cw.PAYLOAD_TEMPLATE.format(flag=flag, class_name="Generator"), flag


def images_equal_exactly(G_src: nw.Generator, G_new: nw.Generator, batch: int = 3) -> None:
    cfg = G_src.cfg
    z = torch.from_numpy(np.random.RandomState(1).randn(batch, cfg.z_dim).astype(np.float32))
    c = torch.eye(cfg.c_dim)[torch.arange(batch) % cfg.c_dim] if cfg.c_dim else None
    with torch.no_grad():
        w_src, w_new = G_src.mapping(z, c), G_new.mapping(z, c)
        assert (w_src - w_new).abs().max().item() == 0
        ws = w_src.unsqueeze(1).repeat(1, cfg.num_ws, 1)
        img_src = G_src.synthesis(ws, G_src.synthesis.make_noise("const"))
        img_new = G_new.synthesis(ws, G_new.synthesis.make_noise("const"))
        assert img_src.shape == (batch, cfg.img_channels, cfg.img_resolution, cfg.img_resolution)
        assert (img_src - img_new).abs().max().item() == 0
        full_src = G_src(z, c, truncation_psi=0.7, noise_mode="const")
        full_new = G_new(z, c, truncation_psi=0.7, noise_mode="const")
        assert (full_src - full_new).abs().max().item() == 0


def assert_state_equal(ckpt_state: dict[str, torch.Tensor], G: nw.Generator) -> None:
    ref = G.state_dict()
    assert list(ckpt_state) == list(ref)
    for k, v in ref.items():
        assert ckpt_state[k].dtype == torch.float32, k
        assert torch.equal(ckpt_state[k], v), k


class Reduce:
    """Pickles as ``func(*args)`` (plus BUILD ``state`` when given)."""

    def __init__(self, func: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        if self.state is None:
            return (self.func, self.args)
        return (self.func, self.args, self.state)


def legacy_stream(main: bytes) -> bytes:
    """A legacy torch.save stream around an arbitrary main pickle, with no storages."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    head = pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(1001, protocol=2) + pickle.dumps(sys_info, protocol=2)
    return head + main + pickle.dumps([], protocol=2)


# ----------------------------------------------------------------------------
# Official pickles.

OFFICIAL_VARIANTS = {
    # name: (generator kwargs, flavor, pickle options, channels_last resolutions, conv_clamp in init kwargs)
    "ada-64px-uncond": (dict(img_resolution=64, z_dim=32, w_dim=32), "ada", dict(protocol=4), (), True),
    "sg3-32px-10-classes": (
        dict(img_resolution=32, z_dim=32, w_dim=32, c_dim=10, mapping_layers=2, conv_clamp=256.0),
        "sg3",
        dict(protocol=2, numpy1=True),
        (32,),
        False,  # sg3's SynthesisBlock defaults conv_clamp=256: only the layer state says so.
    ),
    "ada-32px-gray-resnet": (
        dict(img_resolution=32, z_dim=16, w_dim=32, img_channels=1, mapping_layers=3, architecture="resnet"),
        "ada",
        dict(protocol=4, numpy1=True),
        (),
        True,
    ),
}


@pytest.mark.parametrize("variant", list(OFFICIAL_VARIANTS))
def test_official_pkl_loads_exactly(tmp_path: Path, variant: str) -> None:
    gkw, flavor, pkw, cl_res, with_clamp = OFFICIAL_VARIANTS[variant]
    G_ema, G = make_generator(1, **gkw), make_generator(2, **gkw)
    src, flag = payload(tmp_path)
    snap = cw.official_snapshot(G_ema, G, flavor=flavor, src=src, channel_base=512, channel_max=32,
                                include_conv_clamp=with_clamp, channels_last_res=cl_res)  # fmt: skip
    path = cw.dump_pickle(snap, tmp_path / "network-snapshot.pkl", **pkw)

    ckpt = load_checkpoint(path)
    assert not flag.exists(), "module_src was executed"
    assert ckpt.format == ("stylegan3-pkl" if flavor == "sg3" else "stylegan2-ada-pkl")
    assert ckpt.source_class == "Generator"
    assert ckpt.config == G_ema.cfg
    assert ckpt.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert_state_equal(ckpt.state_dict, G_ema)
    assert any("G_ema" in n for n in ckpt.notes)
    json.dumps(ckpt.init_kwargs)
    assert ckpt.init_kwargs["img_resolution"] == gkw["img_resolution"]
    if flavor == "ada":
        assert ckpt.init_kwargs["synthesis_kwargs"]["channel_base"] == 512
    else:
        assert ckpt.init_kwargs["channel_base"] == 512 and "conv_clamp" not in ckpt.init_kwargs

    G_new, ckpt2 = load_generator_from(path)
    assert ckpt2.config == G_ema.cfg
    images_equal_exactly(G_ema, G_new)
    assert not flag.exists()


def test_official_kind_override_and_bare_generator(tmp_path: Path) -> None:
    G_ema = make_generator(3, img_resolution=16, z_dim=16, w_dim=16, mapping_layers=2)
    src, flag = payload(tmp_path)
    kwargs = cw.generator_init_kwargs(G_ema, flavor="ada", channel_base=512, channel_max=32)
    record = cw.official_generator_record(G_ema, flavor="ada", src=src, init_kwargs=kwargs)
    path = cw.dump_pickle(record, tmp_path / "bare.pkl")
    ckpt = load_checkpoint(path, kind="stylegan3-pkl")
    assert ckpt.format == "stylegan3-pkl"
    assert ckpt.config == G_ema.cfg
    assert_state_equal(ckpt.state_dict, G_ema)
    assert "bare" in ckpt.notes[0]
    assert not flag.exists()


def test_official_without_g_ema_falls_back_to_g(tmp_path: Path) -> None:
    G_ema, G = (
        make_generator(4, img_resolution=16, z_dim=16, w_dim=16),
        make_generator(5, img_resolution=16, z_dim=16, w_dim=16),
    )
    src, _ = payload(tmp_path)
    snap = cw.official_snapshot(G_ema, G, flavor="ada", src=src, channel_base=512, channel_max=32)
    del snap["G_ema"]
    ckpt = load_checkpoint(cw.dump_pickle(snap, tmp_path / "g-only.pkl"))
    assert_state_equal(ckpt.state_dict, G)
    assert any("no G_ema" in n for n in ckpt.notes)


def test_official_missing_w_avg_is_estimated(tmp_path: Path) -> None:
    G_ema = make_generator(6, img_resolution=16, z_dim=16, w_dim=16, c_dim=3, mapping_layers=2)
    src, _ = payload(tmp_path)
    kwargs = cw.generator_init_kwargs(G_ema, flavor="ada", channel_base=512, channel_max=32)
    record = cw.official_generator_record(G_ema, flavor="ada", src=src, init_kwargs=kwargs)
    mapping = record.state["_modules"]["mapping"]
    del mapping.state["_buffers"]["w_avg"]
    mapping.state["w_avg_beta"] = None
    ckpt = load_checkpoint(cw.dump_pickle({"G_ema": record}, tmp_path / "no-w-avg.pkl"))
    assert any("w_avg estimated from 10000 mapping samples (numpy seed 0" in n for n in ckpt.notes)
    z = torch.from_numpy(np.random.RandomState(0).randn(10000, 16).astype(np.float32))
    c = torch.eye(3)[torch.arange(10000) % 3]
    with torch.no_grad():
        expected = G_ema.mapping(z, c).mean(dim=0)
    torch.testing.assert_close(ckpt.state_dict["mapping.w_avg"], expected, atol=1e-5, rtol=1e-5)


def _small_record(tmp_path: Path) -> tuple[nw.Generator, cw.Persistent]:
    G_ema = make_generator(7, img_resolution=16, z_dim=16, w_dim=16, mapping_layers=2)
    src, _ = payload(tmp_path)
    kwargs = cw.generator_init_kwargs(G_ema, flavor="ada", channel_base=512, channel_max=32)
    return G_ema, cw.official_generator_record(G_ema, flavor="ada", src=src, init_kwargs=kwargs)


def _child(rec: cw.Persistent, dotted: str) -> cw.Persistent:
    for name in dotted.split("."):
        rec = rec.state["_modules"][name]
    return rec


def test_official_key_and_shape_mismatches_name_the_key(tmp_path: Path) -> None:
    _, rec = _small_record(tmp_path)
    _child(rec, "synthesis.b8.conv0").state["_parameters"]["extra"] = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(CheckpointError, match=r"unexpected key 'synthesis\.b8\.conv0\.extra'"):
        load_checkpoint(cw.dump_pickle({"G_ema": rec}, tmp_path / "extra.pkl"))

    _, rec = _small_record(tmp_path)
    _child(rec, "mapping.fc1").state["_parameters"]["bias"] = torch.nn.Parameter(torch.zeros(5))
    with pytest.raises(CheckpointError, match=r"'mapping\.fc1\.bias' has shape \(5,\)"):
        load_checkpoint(cw.dump_pickle({"G_ema": rec}, tmp_path / "shape.pkl"))

    _, rec = _small_record(tmp_path)
    del _child(rec, "synthesis.b16.conv1").state["_buffers"]["noise_const"]
    with pytest.raises(CheckpointError, match=r"missing key 'synthesis\.b16\.conv1\.noise_const'"):
        load_checkpoint(cw.dump_pickle({"G_ema": rec}, tmp_path / "missing.pkl"))

    _, rec = _small_record(tmp_path)
    _child(rec, "synthesis.b8.torgb").state["_parameters"]["weight"] = torch.nn.Parameter(torch.zeros(3, 31, 1, 1))
    with pytest.raises(CheckpointError, match=r"'synthesis\.b8\.torgb\.weight' has shape \(3, 31, 1, 1\)"):
        load_checkpoint(cw.dump_pickle({"G_ema": rec}, tmp_path / "torgb.pkl"))


def test_stylegan3_pickle_is_read_as_data(tmp_path: Path) -> None:
    """A stylegan3 snapshot (official module structure, see ckpt_writers.official_sg3_record) is recognised by its
    SynthesisInput and L<idx> layers and read without executing its source; a class the official stylegan3
    Generator does not have is refused naming it (tests/export/test_sg3_checkpoints.py covers the rest)."""
    from styleserve.export.networks_sg3 import GeneratorSG3, make_config_sg3

    src, flag = payload(tmp_path)
    cfg = make_config_sg3("T", z_dim=8, w_dim=8, img_resolution=16, channel_base=128, channel_max=4, num_layers=3,
                          margin_size=2)  # fmt: skip
    G3 = GeneratorSG3(cfg).eval().requires_grad_(False)
    snap = cw.official_sg3_snapshot(G3, src=src)
    ckpt = load_checkpoint(cw.dump_pickle(snap, tmp_path / "stylegan3-t.pkl"))
    assert ckpt.format == "stylegan3-pkl" and ckpt.config == cfg
    assert not flag.exists()
    first = G3.synthesis.layer_names[0]
    snap["G_ema"].state["_modules"]["synthesis"].state["_modules"]["input"].class_name = "SynthesisInputXL"
    with pytest.raises(UnsupportedArchitecture, match=r"SynthesisInputXL") as e:
        load_checkpoint(cw.dump_pickle(snap, tmp_path / "stylegan3-xl.pkl"))
    assert "G_ema.synthesis.input" in str(e.value) and first.startswith("L0_")
    assert not flag.exists()


def test_unknown_generator_classes_are_unsupported(tmp_path: Path) -> None:
    _, rec = _small_record(tmp_path)
    rec.state["_modules"]["synthesis"].class_name = "SynthesisNetworkXL"
    with pytest.raises(UnsupportedArchitecture, match="SynthesisNetworkXL"):
        load_checkpoint(cw.dump_pickle({"G_ema": rec}, tmp_path / "xl.pkl"))
    _, rec = _small_record(tmp_path)
    rec.class_name = "StyleGAN2Generator"
    with pytest.raises(UnsupportedArchitecture, match="StyleGAN2Generator"):
        load_checkpoint(cw.dump_pickle({"G_ema": rec}, tmp_path / "renamed.pkl"))


# ----------------------------------------------------------------------------
# Hostile pickles.


def _hostile_payloads(flag: Path) -> dict[str, tuple[Any, str]]:
    touch = f"touch {flag}"
    write = f"open({str(flag)!r}, 'w').write('x')"
    inner = legacy_stream(pickle.dumps(Reduce(os.system, (touch,)), protocol=2))
    nested_storage = Reduce(
        torch._utils._rebuild_tensor_v2,
        (Reduce(torch.storage._load_from_bytes, (inner,)), 0, (1,), (1,), False, OrderedDict()),
    )
    tensor = torch.zeros(2)
    return {
        "os.system": (Reduce(os.system, (touch,)), "system'"),
        "builtins.eval": (Reduce(eval, (write,)), "refused global 'builtins.eval'"),
        "builtins.exec": (Reduce(exec, (write,)), "refused global 'builtins.exec'"),
        "subprocess.Popen": (Reduce(subprocess.Popen, (["touch", str(flag)],)), "refused global 'subprocess.Popen'"),
        "getattr-chain": (
            Reduce(getattr, (Reduce(__import__, ("os",)), "system")),
            "refused global 'builtins.getattr'",
        ),
        "torch.load": (Reduce(torch.load, (str(flag),)), "refused global 'torch.serialization.load'"),
        "not-allowed-rebuild": (
            Reduce(torch._utils._rebuild_device_tensor_from_numpy, (np.zeros(1), torch.float32, "cpu", False)),
            "refused global 'torch._utils._rebuild_device_tensor_from_numpy'",
        ),
        "call-of-value-only-storage": (Reduce(torch.FloatStorage, (3,)), "refused call of 'torch.FloatStorage'"),
        "call-of-value-only-ndarray": (Reduce(np.ndarray, ((2,),)), "refused call of 'numpy.ndarray'"),
        "copyreg-reconstructor": (
            Reduce(copyreg._reconstructor, (np.ndarray, object, None)),
            "refused call of 'copyreg._reconstructor' for 'numpy.ndarray'",
        ),
        "build-on-tensor": (
            Reduce(
                torch._utils._rebuild_tensor_v2,
                (tensor.untyped_storage(), 0, (2,), (1,), False, OrderedDict()),
                state={"x": 1},
            ),
            "refused BUILD",
        ),
        "global-in-nested-storage-bytes": (nested_storage, "system'"),
    }


@pytest.mark.parametrize(
    "name",
    [
        "os.system",
        "builtins.eval",
        "builtins.exec",
        "subprocess.Popen",
        "getattr-chain",
        "torch.load",
        "not-allowed-rebuild",
        "call-of-value-only-storage",
        "call-of-value-only-ndarray",
        "copyreg-reconstructor",
        "build-on-tensor",
        "global-in-nested-storage-bytes",
    ],
)
@pytest.mark.parametrize("container", ["pkl", "torch-zip", "torch-legacy"])
def test_hostile_pickles_are_refused_without_side_effects(tmp_path: Path, name: str, container: str) -> None:
    flag = tmp_path / "pwned"
    obj, message = _hostile_payloads(flag)[name]
    data = {"G_ema": obj, "g_ema": obj}
    path = tmp_path / "evil.bin"
    if container == "pkl":
        path.write_bytes(pickle.dumps(data, protocol=2))
    elif container == "torch-zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", pickle.dumps(data, protocol=2))
            zf.writestr("archive/version", "3\n")
    else:
        path.write_bytes(legacy_stream(pickle.dumps(data, protocol=2)))
    with pytest.raises(UnsafePickleError) as e:
        load_checkpoint(path)
    assert message in str(e.value)
    assert not flag.exists()


def test_malformed_files_raise_checkpoint_error(tmp_path: Path) -> None:
    G_ema = make_generator(9, img_resolution=8, z_dim=8, w_dim=8, mapping_layers=1)
    src, _ = payload(tmp_path)
    kwargs = cw.generator_init_kwargs(G_ema, flavor="ada", channel_base=512, channel_max=32)
    good = cw.dump_pickle({"G_ema": cw.official_generator_record(G_ema, flavor="ada", src=src, init_kwargs=kwargs)},
                          tmp_path / "good.pkl").read_bytes()  # fmt: skip
    (tmp_path / "truncated.pkl").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="malformed pickle"):
        load_checkpoint(tmp_path / "truncated.pkl")
    (tmp_path / "text.pkl").write_text("hello")
    with pytest.raises(CheckpointError, match="not a pickle"):
        load_checkpoint(tmp_path / "text.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(CheckpointError, match="unrecognised checkpoint"):
        load_checkpoint(tmp_path / "list.pkl")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pkl")
    with pytest.raises(ValueError, match="unknown checkpoint kind"):
        load_checkpoint(tmp_path / "good.pkl", kind="tensorflow")
    # A tensor view that reaches past its storage.
    bad_view = Reduce(
        torch._utils._rebuild_tensor_v2, (torch.zeros(2).untyped_storage(), 0, (9,), (1,), False, OrderedDict())
    )
    (tmp_path / "view.pkl").write_bytes(pickle.dumps({"G_ema": bad_view}))
    with pytest.raises(CheckpointError, match="exceeds its storage"):
        load_checkpoint(tmp_path / "view.pkl")


# ----------------------------------------------------------------------------
# rosinality/stylegan2-pytorch.

ROSI_CHANNELS = {4: 32, 8: 32, 16: 16, 32: 8}


def make_rosinality(seed: int) -> cw.RosinalityGenerator:
    torch.manual_seed(seed)
    return cw.randomize_(cw.RosinalityGenerator(32, 32, 3, ROSI_CHANNELS), seed)  # type: ignore[return-value]


def test_rosinality_pt_matches_independent_forward(tmp_path: Path) -> None:
    rosi = make_rosinality(10)
    # Tiny weights make demodulation's 1e-8 epsilon matter: only folding rosinality's weight scale
    # into our conv weight (instead of dropping it) reproduces that layer.
    rosi.convs[1].conv.weight.mul_(1e-5)
    latent_avg = torch.randn(32)
    path = cw.write_rosinality_pt(tmp_path / "550000.pt", rosi, latent_avg=latent_avg)
    G, ckpt = load_generator_from(path)
    assert ckpt.format == "rosinality-pt"
    assert ckpt.source_class == "rosinality.Generator"
    cfg = ckpt.config
    assert cfg.synthesis.channels == (32, 32, 16, 8)
    assert (cfg.z_dim, cfg.w_dim, cfg.mapping.num_layers, cfg.num_ws) == (32, 32, 3, rosi.n_latent)
    assert cfg.synthesis.architecture == "skip" and cfg.mapping.lr_multiplier == 0.01
    assert torch.equal(ckpt.state_dict["mapping.w_avg"], latent_avg)
    assert ckpt.init_kwargs["size"] == 32 and ckpt.init_kwargs["args"]["n_mlp"] == 3
    json.dumps(ckpt.init_kwargs)
    assert any("lr_mlp=0.01 assumed" in n for n in ckpt.notes)

    z = torch.from_numpy(np.random.RandomState(2).randn(4, 32).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(z), rosi.style(z), atol=1e-5, rtol=1e-5)
        ours = G(z, noise_mode="const")
        theirs = rosi(z)
    assert ours.shape == theirs.shape == (4, 3, 32, 32)
    assert (ours - theirs).abs().max().item() < 1e-4
    assert theirs.abs().max().item() > 0.1  # Not trivially zero.


def test_rosinality_legacy_file_without_latent_avg_estimates_w_avg(tmp_path: Path) -> None:
    rosi = make_rosinality(11)
    path = cw.write_rosinality_pt(tmp_path / "old.pt", rosi, latent_avg=None, legacy=True)
    G, ckpt = load_generator_from(path, kind="rosinality-pt")
    assert any("w_avg estimated from 10000 mapping samples (numpy seed 0" in n for n in ckpt.notes)
    z = torch.from_numpy(np.random.RandomState(0).randn(10000, 32).astype(np.float32))
    with torch.no_grad():
        expected = rosi.style(z).mean(dim=0)
        torch.testing.assert_close(ckpt.state_dict["mapping.w_avg"], expected, atol=1e-5, rtol=1e-5)
        z4 = z[:2]
        assert (G(z4, noise_mode="const") - rosi(z4)).abs().max().item() < 1e-4


def test_rosinality_key_and_shape_mismatches_name_the_key(tmp_path: Path) -> None:
    rosi = make_rosinality(12)
    sd = rosi.state_dict()

    def save(state: dict[str, torch.Tensor], name: str) -> Path:
        path = tmp_path / name
        torch.save({"g_ema": state, "latent_avg": torch.zeros(32)}, path)
        return path

    bad = dict(sd)
    bad["style.2.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError, match=r"'style\.2\.bias' has shape \(7,\)"):
        load_checkpoint(save(bad, "shape.pt"))
    bad = dict(sd)
    del bad["to_rgbs.1.conv.weight"]
    with pytest.raises(CheckpointError, match=r"missing key 'to_rgbs\.1\.conv\.weight'"):
        load_checkpoint(save(bad, "missing.pt"))
    bad = dict(sd)
    bad["convs.0.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unexpected key 'convs\.0\.extra'"):
        load_checkpoint(save(bad, "extra.pt"))
    bad = dict(sd)
    bad["noises.noise_3"] = torch.zeros(1, 1, 4, 4)
    with pytest.raises(CheckpointError, match=r"'noises\.noise_3' has shape"):
        load_checkpoint(save(bad, "noise.pt"))


# ----------------------------------------------------------------------------
# The native format.


def test_native_round_trip(tmp_path: Path) -> None:
    G = make_generator(13, img_resolution=16, z_dim=16, w_dim=16, c_dim=4, architecture="orig", conv_clamp=128.0)
    out = save_native(G, tmp_path / "native")
    assert json.loads((out / "config.json").read_text()) == json.loads(json.dumps(G.cfg.to_dict()))
    for target in (out, out / "weights.safetensors"):
        G_new, ckpt = load_generator_from(target)
        assert ckpt.format == "styleserve" and ckpt.config == G.cfg
        assert ckpt.sha256 == hashlib.sha256((out / "weights.safetensors").read_bytes()).hexdigest()
        assert_state_equal(ckpt.state_dict, G)
        images_equal_exactly(G, G_new)
    # Without config.json the safetensors metadata still has the config.
    (out / "config.json").unlink()
    assert load_checkpoint(out / "weights.safetensors").config == G.cfg


def test_native_mismatches_name_the_key(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    G = make_generator(14, img_resolution=8, z_dim=8, w_dim=8, mapping_layers=1)
    out = save_native(G, tmp_path / "native")
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    del sd["synthesis.b8.conv0.bias"]
    save_file(sd, str(out / "weights.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing key 'synthesis\.b8\.conv0\.bias'"):
        load_checkpoint(out)
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    sd["mapping.fc0.weight"] = torch.zeros(8, 9)
    save_file(sd, str(out / "weights.safetensors"))
    with pytest.raises(CheckpointError, match=r"'mapping\.fc0\.weight' has shape \(8, 9\)"):
        load_checkpoint(out)
    (out / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="bad generator config"):
        load_checkpoint(out)


def test_legacy_storage_views_and_dtypes_load(tmp_path: Path) -> None:
    """Legacy torch streams, views into shared storages, fp16 and channels_last tensors."""
    base = torch.arange(24, dtype=torch.float32)
    obj = {
        "view": base[4:10],
        "strided": base.reshape(4, 6).t(),
        "half": torch.arange(5, dtype=torch.float16),
        "cl": torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
        "ns": __import__("argparse").Namespace(size=16),
    }
    path = tmp_path / "x.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    from styleserve.export._pickle import load_torch_legacy

    with path.open("rb") as f:
        got = load_torch_legacy(f, size_limit=path.stat().st_size)
    for k in ("view", "strided", "half", "cl"):
        assert torch.equal(got[k], obj[k]) and got[k].dtype == obj[k].dtype, k
    assert got["ns"] == {"size": 16}
    buf = io.BytesIO(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        load_torch_legacy(buf, size_limit=10**6)


def test_pickled_typed_and_untyped_storages_load() -> None:
    """``TypedStorage`` / ``UntypedStorage`` both pickle as ``_load_from_bytes`` of a legacy stream."""
    import warnings

    from styleserve.export._pickle import TorchStorage, restricted_loads

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        typed = torch.arange(5, dtype=torch.float16).storage()
    untyped = torch.arange(3, dtype=torch.int32).untyped_storage()
    for proto in (2, 4):
        got = restricted_loads(pickle.dumps({"typed": typed, "untyped": untyped}, protocol=proto))
        assert isinstance(got["typed"], TorchStorage) and isinstance(got["untyped"], TorchStorage)
        assert torch.equal(got["typed"].flat, torch.arange(5, dtype=torch.float16))
        assert got["untyped"].flat.dtype == torch.uint8
        assert torch.equal(got["untyped"].flat.view(torch.int32), torch.arange(3, dtype=torch.int32))
