"""Official NVlabs PyTorch ``.pkl`` reader: stylegan2-ada-pytorch and stylegan3 training pickles.

Formats ``"stylegan2-ada-pkl"`` and ``"stylegan3-pkl"`` (one reader, registered under both names in
:data:`styleserve.export.checkpoints.READERS`). The pickle arrives already unpickled by
:mod:`styleserve.export.checkpoints` through the allow-list unpickler :mod:`styleserve.export._pickle`:
its ``torch_utils.persistence`` networks are inert
:class:`~styleserve.export._pickle.PersistentObject` trees whose embedded class source is never executed.
Only ``G_ema`` (else ``G``, with a note; or a bare persistent ``Generator``) is read. The
:class:`GeneratorConfig` comes from the module *state* and the weight shapes (:func:`_official_config`),
after :func:`_check_classes` has refused any module that is not part of the StyleGAN2 generator;
StyleGAN3 generators are handed to :mod:`styleserve.export.checkpoints_sg3`. The format says which
repository wrote the pickle (stylegan3's ``networks_stylegan2`` has e.g. ``fused_modconv_default``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from styleserve.errors import CheckpointError, UnsupportedArchitecture

from . import networks
from ._pickle import PersistentObject, WalkBudget, describe
from .checkpoints_sg3 import from_official_sg3, looks_sg3
from .networks import ACTIVATIONS, GeneratorConfig, MappingConfig, SynthesisConfig, expected_shapes
from .networks_sg3 import GeneratorConfigSG3
from .readers import Read, Reader, _describe_top, _jsonable, _py, _taps_from_filter
from .readers import finish_stylegan2 as _finish

__all__ = ["looks_official", "read_official"]

_BLOCK_RE = re.compile(r"^b(\d+)$")
_FC_RE = re.compile(r"^(embed|fc\d+)$")
_SG3_LAYER_RE = re.compile(r"^L\d+_\d+_\d+$")
_CHILD_CLASSES: dict[str, dict[str, str]] = {
    "Generator": {"synthesis": "SynthesisNetwork", "mapping": "MappingNetwork"},
    "SynthesisBlock": {
        "conv0": "SynthesisLayer",
        "conv1": "SynthesisLayer",
        "torgb": "ToRGBLayer",
        "skip": "Conv2dLayer",
    },
    "SynthesisLayer": {"affine": "FullyConnectedLayer"},
    "ToRGBLayer": {"affine": "FullyConnectedLayer"},
    "Conv2dLayer": {},
    "FullyConnectedLayer": {},
}


def _state_map(rec: PersistentObject, name: str) -> dict[str, Any]:
    m = rec.state.get(name)
    if m is None:
        return {}
    if not isinstance(m, Mapping):
        raise CheckpointError(f"malformed {rec.class_name}: {name} is a {type(m).__name__}")
    return {str(k): v for k, v in m.items() if v is not None}


def _modules(rec: PersistentObject) -> dict[str, Any]:
    return _state_map(rec, "_modules")


def _tensor(rec: PersistentObject, name: str) -> Tensor | None:
    for where in ("_parameters", "_buffers"):
        t = _state_map(rec, where).get(name)
        if t is not None:
            if not isinstance(t, Tensor):
                raise CheckpointError(f"malformed {rec.class_name}: {name} is a {type(t).__name__}")
            return t
    return None


def _need_tensor(rec: PersistentObject, name: str, path: str) -> Tensor:
    t = _tensor(rec, name)
    if t is None:
        raise CheckpointError(f"checkpoint is missing key {f'{path}.{name}'!r}")
    return t


def _attr(rec: PersistentObject, name: str, default: Any = None) -> Any:
    """A plain attribute of a module's state: None, a bool, an int, a float or a short str, else CheckpointError."""
    v = _py(rec.state.get(name, default))
    if not (v is None or isinstance(v, (bool, int, float, str))) or (isinstance(v, str) and len(v) > 64):
        raise CheckpointError(f"malformed {describe(rec.class_name)}: attribute {name} is {describe(v)}")
    return v


def _attr_int(rec: PersistentObject, name: str, default: Any = None) -> int:
    v = _attr(rec, name, default)
    if not isinstance(v, int) or isinstance(v, bool) or v.bit_length() > 62:
        raise CheckpointError(f"malformed {describe(rec.class_name)}: {name} must be an int, got {describe(v)}")
    return v


def _attr_float(rec: PersistentObject, name: str, default: Any = None) -> float:
    v = _attr(rec, name, default)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise CheckpointError(
            f"malformed {describe(rec.class_name)}: {name} must be a finite number, got {describe(v)}"
        )
    return float(v)


def _attr_opt_float(rec: PersistentObject, name: str) -> float | None:
    return None if _attr(rec, name) is None else _attr_float(rec, name)


def _attr_str(rec: PersistentObject, name: str, default: str) -> str:
    v = _attr(rec, name, default)
    if not isinstance(v, str):
        raise CheckpointError(f"malformed {describe(rec.class_name)}: {name} must be a string, got {describe(v)}")
    return v


def _attr_bool(rec: PersistentObject, name: str, default: bool) -> bool:
    v = _attr(rec, name, default)
    if not isinstance(v, bool):
        raise CheckpointError(f"malformed {describe(rec.class_name)}: {name} must be a bool, got {describe(v)}")
    return v


def _check_classes(rec: PersistentObject, path: str) -> None:
    """Refuse anything that is not the StyleGAN2 generator, naming the offending class."""
    children = _modules(rec)
    if rec.class_name == "SynthesisNetwork":
        sg3 = [n for n, c in children.items() if n == "input" or _SG3_LAYER_RE.match(n)
               or (isinstance(c, PersistentObject) and c.class_name == "SynthesisInput")]  # fmt: skip
        if sg3:
            layers = [n for n in children if _SG3_LAYER_RE.match(n)]
            shown = ", ".join(layers[:3]) + (", ..." if len(layers) > 3 else "")
            raise UnsupportedArchitecture(
                f"unsupported architecture: StyleGAN3 (SynthesisNetwork with SynthesisInput; layers {shown}) "
                f"at {path}; only StyleGAN2 generators are supported"
            )
        expected = {n: "SynthesisBlock" for n in children if _BLOCK_RE.match(n)}
    elif rec.class_name == "MappingNetwork":
        expected = {n: "FullyConnectedLayer" for n in children if _FC_RE.match(n)}
    elif rec.class_name in _CHILD_CLASSES:
        expected = _CHILD_CLASSES[rec.class_name]
    else:
        raise UnsupportedArchitecture(f"unsupported architecture: class {rec.class_name!r} at {path}")
    for name, child in children.items():
        child_path = f"{path}.{name}"
        if not isinstance(child, PersistentObject):
            raise UnsupportedArchitecture(
                f"unsupported architecture: {child_path} is a {type(child).__name__}, not a StyleGAN2 module"
            )
        if name not in expected or child.class_name != expected[name]:
            raise UnsupportedArchitecture(
                f"unsupported architecture: unexpected {child.class_name!r} module {child_path!r} in {rec.class_name}"
            )
        _check_classes(child, child_path)


def _flatten(rec: PersistentObject, prefix: str, out: dict[str, Tensor]) -> None:
    """Parameters, persistent buffers, then submodules, as ``nn.Module.state_dict`` orders them."""
    non_persistent = rec.state.get("_non_persistent_buffers_set")
    if not isinstance(non_persistent, (set, frozenset, list, tuple)):
        non_persistent = set()
    for where in ("_parameters", "_buffers"):
        for name, t in _state_map(rec, where).items():
            if where == "_buffers" and name in non_persistent:
                continue
            if not isinstance(t, Tensor):
                raise CheckpointError(f"{prefix}{name!s} is a {type(t).__name__}, not a tensor")
            out[prefix + name] = t
    for name, child in _modules(rec).items():
        _flatten(child, f"{prefix}{name}.", out)


def _one(values: list[Any], what: str) -> Any:
    distinct: list[Any] = []
    for v in values:
        if v not in distinct:
            distinct.append(v)
    if len(distinct) != 1:
        shown = ", ".join(describe(v, 30) for v in distinct[:4]) + (", ..." if len(distinct) > 4 else "")
        raise UnsupportedArchitecture(f"unsupported architecture: {what} differs between layers ({shown})")
    return distinct[0]


def _official_config(G: PersistentObject) -> GeneratorConfig:
    syn, mapping = _modules(G)["synthesis"], _modules(G)["mapping"]
    blocks = sorted(((int(m.group(1)), c) for n, c in _modules(syn).items() if (m := _BLOCK_RE.match(n))),
                    key=lambda rc: rc[0])  # fmt: skip
    if not blocks:
        raise CheckpointError("G_ema.synthesis has no blocks")
    img_resolution = _attr_int(G, "img_resolution", blocks[-1][0])
    if not 4 <= img_resolution <= networks.MAX_IMG_RESOLUTION:
        raise CheckpointError(f"img_resolution {img_resolution} is out of range [4, {networks.MAX_IMG_RESOLUTION}]")
    expected_res = [2**i for i in range(2, int(np.log2(max(img_resolution, 4))) + 1)]
    if [r for r, _ in blocks] != expected_res:
        raise CheckpointError(f"synthesis blocks {[r for r, _ in blocks]} do not match img_resolution {img_resolution}")

    channels: list[int] = []
    kernels: list[int] = []
    archs: list[str] = []
    clamps: list[Any] = []
    acts: list[str] = []
    noise: list[bool] = []
    filters: list[tuple[float, ...]] = []
    prev = 0
    for res, block in blocks:
        path = f"synthesis.b{res}"
        layers = {n: c for n, c in _modules(block).items() if n in ("conv0", "conv1")}
        if "conv1" not in layers or (res > 4) != ("conv0" in layers):
            raise CheckpointError(f"checkpoint is missing key {f'{path}.conv{0 if res > 4 else 1}.weight'!r}")
        w1 = _need_tensor(layers["conv1"], "weight", f"{path}.conv1")
        if w1.ndim != 4:
            raise CheckpointError(f"{path}.conv1.weight has shape {tuple(w1.shape)}")
        out_ch = int(w1.shape[0])
        in_ch = _attr_int(block, "in_channels", prev if res > 4 else 0)
        if in_ch != (prev if res > 4 else 0):
            raise UnsupportedArchitecture(
                f"unsupported architecture: {path} takes {in_ch} channels but the previous block gives {prev}"
            )
        channels.append(out_ch)
        prev = out_ch
        modules = _modules(block)
        default_arch = (
            "resnet" if "skip" in modules else ("skip" if "torgb" in modules and res < img_resolution else "orig")
        )
        archs.append(_attr_str(block, "architecture", default_arch))
        f = _tensor(block, "resample_filter")
        if f is not None:
            filters.append(_taps_from_filter(f, f"{path}.resample_filter"))
        for name, layer in layers.items():
            w = _need_tensor(layer, "weight", f"{path}.{name}")
            kernels.append(int(w.shape[-1]))
            clamps.append(_attr_opt_float(layer, "conv_clamp"))
            acts.append(_attr_str(layer, "activation", "lrelu"))
            has_noise = _tensor(layer, "noise_const") is not None
            noise.append(_attr_bool(layer, "use_noise", has_noise))
            up = _attr_int(layer, "up", 2 if name == "conv0" else 1)
            if up != (2 if name == "conv0" else 1):
                raise UnsupportedArchitecture(f"unsupported architecture: {path}.{name} has up={up}")
            lf = _tensor(layer, "resample_filter")
            if lf is not None:
                filters.append(_taps_from_filter(lf, f"{path}.{name}.resample_filter"))
        if "torgb" in modules:
            torgb = modules["torgb"]
            clamps.append(_attr_opt_float(torgb, "conv_clamp"))
            tw = _need_tensor(torgb, "weight", f"{path}.torgb")
            if tw.ndim != 4 or tw.shape[-1] != 1 or tw.shape[-2] != 1:
                raise UnsupportedArchitecture(f"unsupported architecture: {path}.torgb kernel {tuple(tw.shape)}")
    last_torgb = _modules(blocks[-1][1]).get("torgb")
    if last_torgb is None:
        raise CheckpointError(f"checkpoint is missing key {f'synthesis.b{img_resolution}.torgb.weight'!r}")
    img_channels = int(_need_tensor(last_torgb, "weight", f"synthesis.b{img_resolution}.torgb").shape[0])

    clamp = _one(clamps, "conv_clamp")
    activation = _one(acts, "activation")
    if activation not in ACTIVATIONS:
        raise UnsupportedArchitecture(f"unsupported architecture: activation {activation!r}")
    synthesis = SynthesisConfig(
        w_dim=_attr_int(G, "w_dim", _attr(syn, "w_dim")),
        img_resolution=img_resolution,
        img_channels=img_channels,
        channels=tuple(channels),
        architecture=_one(archs, "architecture"),
        conv_clamp=None if clamp is None else float(clamp),
        resample_filter=_one(filters, "resample filter") if filters else (1.0, 3.0, 3.0, 1.0),
        use_noise=_one(noise, "use_noise"),
        activation=activation,
        kernel_size=_one(kernels, "kernel size"),
    )

    fcs = {n: c for n, c in _modules(mapping).items() if n.startswith("fc")}
    num_layers = _attr_int(mapping, "num_layers", len(fcs))
    if sorted(fcs) != sorted(f"fc{i}" for i in range(num_layers)):
        raise CheckpointError(f"mapping has layers {sorted(fcs)}, expected fc0..fc{num_layers - 1}")
    z_dim = _attr_int(G, "z_dim", _attr(mapping, "z_dim"))
    c_dim = _attr_int(G, "c_dim", _attr(mapping, "c_dim", 0))
    w_dim = synthesis.w_dim
    embed_features = 0
    if c_dim > 0:
        embed = _modules(mapping).get("embed")
        if embed is None:
            raise CheckpointError("checkpoint is missing key 'mapping.embed.weight'")
        embed_features = int(_need_tensor(embed, "weight", "mapping.embed").shape[0])
    layer_features = int(_need_tensor(fcs["fc0"], "weight", "mapping.fc0").shape[0]) if num_layers > 1 else 0
    lr = _one([_attr_float(fc, "bias_gain", 1.0) for fc in fcs.values()], "mapping lr_multiplier")
    for name, fc in fcs.items():
        w = _need_tensor(fc, "weight", f"mapping.{name}")
        gain = _attr_opt_float(fc, "weight_gain")
        if gain is not None and w.ndim == 2 and not math.isclose(float(gain), lr / math.sqrt(w.shape[1]), rel_tol=1e-5):
            raise UnsupportedArchitecture(f"unsupported architecture: mapping.{name} weight_gain {gain} != lr/sqrt(in)")
    mapping_cfg = MappingConfig(
        z_dim=z_dim,
        c_dim=c_dim,
        w_dim=w_dim,
        num_ws=synthesis.num_ws,
        num_layers=num_layers,
        embed_features=0 if embed_features == w_dim else embed_features,
        layer_features=0 if layer_features in (0, w_dim) else layer_features,
        activation=_one([_attr_str(fc, "activation", "lrelu") for fc in fcs.values()], "mapping activation"),
        lr_multiplier=lr,
    )
    for rec, what in ((G, "G_ema"), (mapping, "G_ema.mapping"), (syn, "G_ema.synthesis")):
        num_ws = None if _attr(rec, "num_ws") is None else _attr_int(rec, "num_ws")
        if num_ws is not None and num_ws != synthesis.num_ws:
            raise CheckpointError(f"{what}.num_ws is {num_ws}, the synthesis network has {synthesis.num_ws} ws")
    return GeneratorConfig(mapping=mapping_cfg, synthesis=synthesis)


def _from_official(
    obj: Any,
) -> tuple[GeneratorConfig | GeneratorConfigSG3, dict[str, Tensor], str, str, list[str], dict[str, Any]]:
    notes: list[str] = []
    if isinstance(obj, PersistentObject):
        G, which = obj, "a bare persistent generator"
    elif isinstance(obj, Mapping) and isinstance(obj.get("G_ema"), PersistentObject):
        G, which = obj["G_ema"], "G_ema"
    elif isinstance(obj, Mapping) and isinstance(obj.get("G"), PersistentObject):
        G, which = obj["G"], "G"
        notes.append("the pickle has no G_ema: using G, the raw training generator (not the EMA weights)")
    else:
        raise CheckpointError(f"not an official StyleGAN pickle: {_describe_top(obj)}")
    if G.class_name != "Generator":
        raise UnsupportedArchitecture(
            f"unsupported architecture: {which} is a {G.class_name!r}, not a StyleGAN2 Generator"
        )
    if looks_sg3(G):  # networks_stylegan3.Generator: see checkpoints_sg3.
        name = "G_ema" if which != "G" else "G"
        cfg3, state3, kwargs3 = from_official_sg3(G, name, notes)
        notes.insert(0, f"read {which} (Generator) from a stylegan3 pickle; embedded class source was not executed")
        ignored3 = sorted(str(k) for k in obj if k != which) if isinstance(obj, Mapping) else []
        if ignored3:
            notes.append(f"ignored entries: {', '.join(ignored3)}")
        kwargs3 = _jsonable(kwargs3, WalkBudget(f"{which} init kwargs"))
        return cfg3, state3, "stylegan3-pkl", G.class_name, notes, kwargs3
    _check_classes(G, "G_ema" if which != "G" else "G")
    mods = _modules(G)
    if "synthesis" not in mods or "mapping" not in mods:
        raise UnsupportedArchitecture("unsupported architecture: Generator without synthesis and mapping networks")
    try:
        cfg = _official_config(G)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError) as e:
        raise CheckpointError(f"cannot derive the generator config from {which}: {describe(str(e), 200)}") from e
    networks.check_parameter_count(expected_shapes(cfg), f"official pickle ({which})")

    syn = mods["synthesis"]
    blocks = [c for n, c in _modules(syn).items() if _BLOCK_RE.match(n)]
    raw_kwargs = G.state.get("_init_kwargs")
    init_kwargs: dict[str, Any] = dict(raw_kwargs) if isinstance(raw_kwargs, Mapping) else {}
    sg3_repo = (
        any("fused_modconv_default" in b.state for b in blocks)
        or "num_fp16_res" in syn.state
        or ("synthesis_kwargs" not in init_kwargs and "channel_base" in init_kwargs)
    )
    fmt = "stylegan3-pkl" if sg3_repo else "stylegan2-ada-pkl"

    raw: dict[str, Tensor] = {}
    _flatten(G, "", raw)
    state: dict[str, Tensor] = {}
    for key, t in raw.items():
        if key.endswith("resample_filter") and t.ndim == 1:  # Separable filters (>= 8 taps) stay 1-D.
            t = torch.outer(t, t)
        state[key] = t
    repo = "stylegan3" if sg3_repo else "stylegan2-ada-pytorch"
    ignored = sorted(str(k) for k in obj if k != which) if isinstance(obj, Mapping) else []
    notes.insert(0, f"read {which} ({G.class_name}) from a {repo} pickle; embedded class source code was not executed")
    if ignored:
        notes.append(f"ignored entries: {', '.join(ignored)}")
    state = _finish(cfg, state, "checkpoint", notes)
    walk = WalkBudget(f"{which} init kwargs")
    kwargs = _jsonable(init_kwargs, walk)
    init_args = G.state.get("_init_args")
    if isinstance(init_args, (tuple, list)) and init_args:
        kwargs["_init_args"] = _jsonable(init_args, walk)
    return cfg, state, fmt, G.class_name, notes, kwargs


def looks_official(obj: Any) -> bool:
    return isinstance(obj, PersistentObject) or (
        isinstance(obj, Mapping) and any(isinstance(obj.get(k), PersistentObject) for k in ("G_ema", "G"))
    )


def read_official(obj: Any, resolution: int | None) -> Read:
    cfg, state, fmt, source_class, notes, init_kwargs = _from_official(obj)
    return Read(cfg, state, source_class, notes, init_kwargs, format=fmt)  # stylegan2-ada-pkl or stylegan3-pkl.


OFFICIAL_READER = Reader(
    name="stylegan2-ada-pkl",
    summary="official NVlabs stylegan2-ada-pytorch / stylegan3 .pkl (G_ema; StyleGAN2 or StyleGAN3 by content)",
    detect=looks_official,
    read=read_official,
)
SG3_PKL_READER = Reader(
    name="stylegan3-pkl",
    summary="official NVlabs stylegan3 .pkl (read as stylegan2-ada-pkl; recorded under this name)",
    detect=looks_official,
    read=read_official,
)
