"""StyleGAN (v1) checkpoint import: official TensorFlow ``.pkl`` files.

``"stylegan-tf-pkl"``
    The pickles of NVlabs stylegan (``training_loop.py``: ``pickle.dump((G, D, Gs), f)``), whose
    objects are ``dnnlib.tflib.network.Network``. Read by the restricted unpickler of
    :mod:`styleserve.export._pickle` into :class:`~styleserve.export._pickle.TFNetwork` records:
    the pickled ``build_module_src`` (which the official ``__setstate__`` would ``exec``) is never
    executed, and TensorFlow is not needed. ``Gs`` (the moving average, ``build_func_name ==
    'G_style'``) is read: its ``dlatent_avg`` and its components ``mapping`` (``G_mapping``) and
    ``synthesis`` (``G_synthesis``). Variable names are relative to their network
    (``Dense0/weight``, ``4x4/Const/const``); names prefixed with the component's name
    (``G_synthesis/4x4/...``) are accepted too. The config comes from the variable shapes (layer
    counts, channels, resolution) and the ``static_kwargs`` (``fused_scale``, ``blur_filter``,
    nonlinearities, ``mapping_lrmul``, norms; the official defaults where absent). Only the
    final-resolution ``ToRGB_lod0`` is used; the other ``ToRGB_lod*`` are ignored. A snapshot in
    the middle of progressive growing (``lod != 0``) is refused. TensorFlow StyleGAN2 pickles
    (``G_main``) raise :class:`~styleserve.errors.UnsupportedArchitecture`.
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

from ._pickle import NumpyArray, TFNetwork
from .networks_v1 import (
    TRUNCATION_CUTOFF,
    TRUNCATION_PSI,
    GeneratorConfigV1,
    MappingConfigV1,
    MappingNetworkV1,
    SynthesisConfigV1,
    expected_shapes_v1,
    tf_layer_names,
    tf_to_state,
)

W_AVG_SAMPLES = 10000
W_AVG_SEED = 0
MAX_PARAMETERS = 2**31

_RES_RE = re.compile(r"^(\d+)x\1/Conv1/weight$")
_TORGB_RE = re.compile(r"^ToRGB_lod\d+/(weight|bias)$")
_MAPPING_VAR_RE = re.compile(r"^(Dense\d+/(weight|bias)|LabelConcat/weight)$")


def looks_tf(obj: Any) -> bool:
    """A TF network, or a tuple/list holding one (``(G, D, Gs)``)."""
    if isinstance(obj, TFNetwork):
        return True
    return isinstance(obj, (tuple, list)) and any(isinstance(o, TFNetwork) for o in obj)


def _pick_gs(obj: Any, notes: list[str]) -> TFNetwork:
    if isinstance(obj, TFNetwork):
        return obj
    nets = [o for o in obj if isinstance(o, TFNetwork)]
    named = [n for n in nets if n.name == "Gs"]
    if named:
        gs = named[0]
    elif len(obj) == 3 and isinstance(obj[2], TFNetwork):
        gs = obj[2]
    else:
        styled = [n for n in nets if n.build_func_name in ("G_style", "G_main")]
        if not styled:
            raise CheckpointError("TF pickle holds no generator (no network named Gs or built by G_style)")
        gs = styled[-1]
    others = [n.name for n in nets if n is not gs]
    notes.append(
        f"read {gs.name} from a TensorFlow StyleGAN pickle; embedded build_module_src "
        f"({gs.build_module_src_len} chars) was not executed"
    )
    if others:
        notes.append(f"ignored networks: {', '.join(others)}")
    return gs


def _array(value: Any, where: str) -> np.ndarray[Any, Any]:
    if isinstance(value, NumpyArray):
        value = value.value
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        raise CheckpointError(f"TF pickle: variable {where} is not a numeric array ({type(value).__name__})")
    return value


def _vars(net: TFNetwork) -> dict[str, np.ndarray[Any, Any]]:
    out: dict[str, np.ndarray[Any, Any]] = {}
    prefix = net.name + "/"
    for name, value in net.variables:
        key = name[len(prefix) :] if name.startswith(prefix) else name
        if key in out:
            raise CheckpointError(f"TF pickle: variable {net.name}/{key} appears twice")
        out[key] = _array(value, f"{net.name}/{key}")
    return out


def _kw(net: TFNetwork, parent: TFNetwork, key: str, default: Any) -> Any:
    for src in (net.static_kwargs, parent.static_kwargs):
        if key in src:
            v = src[key]
            return v.item() if isinstance(v, np.generic) else v
    return default


def _shape(vars_: Mapping[str, np.ndarray[Any, Any]], name: str, where: str, ndim: int) -> tuple[int, ...]:
    if name not in vars_:
        raise CheckpointError(f"TF pickle is missing variable {where}/{name}")
    shape = tuple(int(s) for s in vars_[name].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"TF pickle: {where}/{name} has shape {shape}, expected {ndim} dims")
    return shape


def _component(gs: TFNetwork, key: str, func: str) -> TFNetwork:
    comp = gs.components.get(key)
    if not isinstance(comp, TFNetwork):
        raise CheckpointError(f"TF pickle: {gs.name} has no {key} component")
    if comp.build_func_name != func:
        raise UnsupportedArchitecture(
            f"unsupported architecture: {gs.name}.{key} is built by {comp.build_func_name!r}, expected {func!r}"
        )
    return comp


def from_tf_pickle(obj: Any) -> tuple[GeneratorConfigV1, dict[str, Tensor], str, list[str], dict[str, Any]]:
    """``(config, state dict, source class, notes, init kwargs)`` of the ``Gs`` in a TF StyleGAN pickle."""
    notes: list[str] = []
    gs = _pick_gs(obj, notes)
    if gs.build_func_name == "G_main":
        raise UnsupportedArchitecture(
            "unsupported architecture: TensorFlow StyleGAN2 pickles (G_main) are not supported; convert them "
            "with stylegan2-ada-pytorch's legacy.py"
        )
    if gs.build_func_name != "G_style":
        raise UnsupportedArchitecture(f"unsupported architecture: TF network built by {gs.build_func_name!r}")
    mnet = _component(gs, "mapping", "G_mapping")
    snet = _component(gs, "synthesis", "G_synthesis")
    gvars, mvars, svars = _vars(gs), _vars(mnet), _vars(snet)

    for where, vs in (("Gs", gvars), ("G_synthesis", svars)):
        lod = vs.get("lod")
        if lod is not None and float(np.asarray(lod).reshape(-1)[0]) != 0.0:
            raise UnsupportedArchitecture(
                f"unsupported architecture: {where}/lod = {float(np.asarray(lod).reshape(-1)[0]):g}, a snapshot in the "
                "middle of progressive growing (only lod 0, the final resolution, is supported)"
            )
    for key, want in (("use_wscale", True), ("use_styles", True), ("const_input_layer", True)):
        if bool(_kw(snet, gs, key, want)) != want or bool(_kw(mnet, gs, key, want)) != want:
            raise UnsupportedArchitecture(f"unsupported architecture: {key}={not want}")
    if str(_kw(snet, gs, "dtype", "float32")) != "float32":
        raise UnsupportedArchitecture("unsupported architecture: dtype other than float32")

    # Mapping, from the shapes.
    num_layers = 0
    while f"Dense{num_layers}/weight" in mvars:
        num_layers += 1
    if num_layers == 0:
        raise CheckpointError("TF pickle is missing variable G_mapping/Dense0/weight")
    d0 = _shape(mvars, "Dense0/weight", "G_mapping", 2)
    w_dim = _shape(mvars, f"Dense{num_layers - 1}/weight", "G_mapping", 2)[1]
    if "LabelConcat/weight" in mvars:
        c_dim, z_dim = _shape(mvars, "LabelConcat/weight", "G_mapping", 2)
    else:
        c_dim, z_dim = 0, d0[0]
    fmaps = d0[1] if num_layers > 1 else int(_kw(mnet, gs, "mapping_fmaps", 512))

    # Synthesis, from the shapes.
    res_found = sorted(int(m.group(1)) for k in svars if (m := _RES_RE.match(k)))
    resolution = res_found[-1] if res_found else 4
    channels = [_shape(svars, "4x4/Conv/weight", "G_synthesis", 4)[3]]
    for r in [2**i for i in range(3, int(math.log2(resolution)) + 1)]:
        channels.append(_shape(svars, f"{r}x{r}/Conv1/weight", "G_synthesis", 4)[3])
    img_channels = _shape(svars, "ToRGB_lod0/weight", "G_synthesis", 4)[3]
    use_noise = "noise0" in svars
    blur = _kw(snet, gs, "blur_filter", [1, 2, 1])
    fused = _kw(snet, gs, "fused_scale", "auto")
    psi = _kw(gs, gs, "truncation_psi", TRUNCATION_PSI)
    cutoff = _kw(gs, gs, "truncation_cutoff", TRUNCATION_CUTOFF)
    try:
        scfg = SynthesisConfigV1(
            w_dim=w_dim,
            img_resolution=resolution,
            img_channels=img_channels,
            channels=tuple(channels),
            fused_scale=fused if isinstance(fused, str) else bool(fused),
            blur_filter=tuple(float(t) for t in blur) if blur else (),
            use_noise=use_noise,
            activation=str(_kw(snet, gs, "nonlinearity", "lrelu")),
            use_pixel_norm=bool(_kw(snet, gs, "use_pixel_norm", False)),
            use_instance_norm=bool(_kw(snet, gs, "use_instance_norm", True)),
        )
        mcfg = MappingConfigV1(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            num_ws=scfg.num_ws,
            num_layers=num_layers,
            layer_features=fmaps,
            lr_multiplier=float(_kw(mnet, gs, "mapping_lrmul", 0.01)),
            activation=str(_kw(mnet, gs, "mapping_nonlinearity", "lrelu")),
            normalize_latents=bool(_kw(mnet, gs, "normalize_latents", True)),
        )
        cfg = GeneratorConfigV1(
            mapping=mcfg,
            synthesis=scfg,
            truncation_psi=float(psi) if psi is not None else 1.0,
            truncation_cutoff=int(cutoff) if cutoff is not None else None,
        )
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"cannot derive the StyleGAN config from the TF pickle: {e}") from e
    total = sum(math.prod(s) for s in expected_shapes_v1(cfg).values())
    if total > MAX_PARAMETERS:
        raise CheckpointError(f"implausibly large generator: {total} parameters (limit {MAX_PARAMETERS})")

    # Unused variables: the lower-resolution ToRGB layers are expected, anything else is not.
    used_s = {"lod", "4x4/Const/const", "ToRGB_lod0/weight", "ToRGB_lod0/bias"}
    for _, scope, idx in tf_layer_names(scfg):
        used_s |= {f"{scope}/{n}" for n in ("weight", "bias", "Noise/weight", "StyleMod/weight", "StyleMod/bias")}
        used_s.add(f"noise{idx}")
    unexpected = sorted(k for k in svars if k not in used_s and not _TORGB_RE.match(k))
    unexpected += sorted(f"G_mapping/{k}" for k in mvars if not _MAPPING_VAR_RE.match(k))
    if unexpected:
        raise UnsupportedArchitecture(f"unsupported architecture: unexpected TF variable {unexpected[0]!r}")

    avg = gvars.get("dlatent_avg")
    try:
        state = tf_to_state(cfg, mvars, svars, avg)
    except KeyError as e:
        raise CheckpointError(f"TF pickle is missing variable {e.args[0]}") from e
    for key, shape in expected_shapes_v1(cfg).items():
        got = state.get(key)
        if got is not None and tuple(got.shape) != shape:
            raise CheckpointError(f"TF pickle: the variable for {key!r} has shape {tuple(got.shape)}, need {shape}")
    if avg is None:
        state["mapping.w_avg"] = estimate_w_avg_v1(cfg, state)
        notes.append(
            f"dlatent_avg missing: w_avg estimated from {W_AVG_SAMPLES} mapping samples "
            f"(RandomState({W_AVG_SEED}).randn({W_AVG_SAMPLES}, {z_dim}))"
        )
    for key, t in state.items():
        if not torch.isfinite(t).all():
            raise CheckpointError(f"TF pickle: {key!r} holds NaN or Inf")
    kwargs = {
        "Gs": _plain(gs.static_kwargs),
        "mapping": _plain(mnet.static_kwargs),
        "synthesis": _plain(snet.static_kwargs),
    }
    return cfg, state, "G_style", notes, kwargs


def estimate_w_avg_v1(cfg: GeneratorConfigV1, state: Mapping[str, Tensor], num_samples: int = W_AVG_SAMPLES) -> Tensor:
    """Mean mapping output over ``RandomState(0).randn(num_samples, z_dim)`` (class ``i % c_dim``)."""
    mapping = MappingNetworkV1(cfg.mapping)
    msd = {k[len("mapping.") :]: v for k, v in state.items() if k.startswith("mapping.") and k != "mapping.w_avg"}
    msd["w_avg"] = torch.zeros([cfg.w_dim])
    mapping.load_state_dict(msd, strict=True)
    z = torch.from_numpy(np.random.RandomState(W_AVG_SEED).randn(num_samples, cfg.z_dim).astype(np.float32))
    c = None
    if cfg.c_dim:
        c = torch.nn.functional.one_hot(torch.arange(num_samples) % cfg.c_dim, cfg.c_dim).to(torch.float32)
    with torch.no_grad():
        return mapping(z, c).to(torch.float64).mean(dim=0).to(torch.float32)


def _plain(x: Any, depth: int = 0) -> Any:
    if depth > 16:
        return str(x)
    if isinstance(x, np.generic):
        return x.item()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v, depth + 1) for v in x]
    return str(x)
