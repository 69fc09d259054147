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

from ._pickle import NumpyArray, TFNetwork, WalkBudget, describe
from .networks import W_AVG_SAMPLES, W_AVG_SEED, check_parameter_count, load_mapping, mean_w
from .networks_v1 import (
    TRUNCATION_CUTOFF,
    TRUNCATION_PSI,
    GeneratorConfigV1,
    MappingConfigV1,
    MappingNetworkV1,
    SynthesisConfigV1,
    blur_kernel,
    expected_shapes_v1,
    tf_layer_names,
    tf_to_state,
)
from .readers import Read, Reader

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
    """A static kwarg: None, a bool, a number, a short string or a short flat list of numbers."""
    for src in (net.static_kwargs, parent.static_kwargs):
        if key in src:
            v = src[key]
            v = v.item() if isinstance(v, np.generic) else v
            if isinstance(v, (list, tuple)) and len(v) <= 64 and all(isinstance(e, (int, float)) for e in v):
                return v
            if v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 64):
                return v
            raise CheckpointError(f"TF pickle: static kwarg {key} of {net.name!r} is {describe(v)}")
    return default


def _kw_str(net: TFNetwork, parent: TFNetwork, key: str, default: str) -> str:
    v = _kw(net, parent, key, default)
    if not isinstance(v, str):
        raise CheckpointError(f"TF pickle: static kwarg {key} must be a string, got {describe(v)}")
    return v


def _shape(vars_: Mapping[str, np.ndarray[Any, Any]], name: str, where: str, ndim: int) -> tuple[int, ...]:
    if name not in vars_:
        raise CheckpointError(f"TF pickle is missing variable {where}/{name}")
    shape = tuple(int(s) for s in vars_[name].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"TF pickle: {where}/{name} has shape {shape}, expected {ndim} dims")
    return shape


def tf_mapping_shape(mvars: Mapping[str, np.ndarray[Any, Any]]) -> tuple[int, int, int, int, int]:
    """A TF ``G_mapping``'s (num_layers, z_dim, c_dim, w_dim, Dense0 output features), from its variables'
    shapes (StyleGAN v1 and v2 alike): ``Dense0..DenseN-1``, and with labels ``LabelConcat`` ``[c_dim, z_dim]``
    whose embedding is concatenated to z, so that Dense0 takes ``2 * z_dim`` features."""
    num_layers = 0
    while f"Dense{num_layers}/weight" in mvars:
        num_layers += 1
    if num_layers == 0:
        raise CheckpointError("TF pickle is missing variable G_mapping/Dense0/weight")
    d0 = _shape(mvars, "Dense0/weight", "G_mapping", 2)
    w_dim = _shape(mvars, f"Dense{num_layers - 1}/weight", "G_mapping", 2)[1]
    if "LabelConcat/weight" in mvars:
        c_dim, z_dim = _shape(mvars, "LabelConcat/weight", "G_mapping", 2)
        if d0[0] != 2 * z_dim:
            raise CheckpointError(
                f"TF pickle: G_mapping/Dense0/weight takes {d0[0]} features, LabelConcat gives {2 * z_dim}"
            )
    else:
        c_dim, z_dim = 0, d0[0]
    return num_layers, z_dim, c_dim, w_dim, d0[1]


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
            "unsupported architecture: a TensorFlow StyleGAN2 pickle (G_main), not StyleGAN (v1); read it as "
            "kind stylegan2-tf-pkl"
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
    if _kw_str(snet, gs, "dtype", "float32") != "float32":
        raise UnsupportedArchitecture("unsupported architecture: dtype other than float32")

    # Mapping, from the shapes.
    num_layers, z_dim, c_dim, w_dim, hidden = tf_mapping_shape(mvars)
    fmaps = hidden if num_layers > 1 else int(_kw(mnet, gs, "mapping_fmaps", 512))

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
            activation=_kw_str(snet, gs, "nonlinearity", "lrelu"),
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
            activation=_kw_str(mnet, gs, "mapping_nonlinearity", "lrelu"),
            normalize_latents=bool(_kw(mnet, gs, "normalize_latents", True)),
        )
        cfg = GeneratorConfigV1(
            mapping=mcfg,
            synthesis=scfg,
            truncation_psi=float(psi) if psi is not None else 1.0,
            truncation_cutoff=int(cutoff) if cutoff is not None else None,
        )
    except (ValueError, TypeError, ArithmeticError) as e:
        raise CheckpointError(f"cannot derive the StyleGAN config from the TF pickle: {describe(str(e), 200)}") from e
    check_parameter_count(expected_shapes_v1(cfg), "TF pickle")

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
        state["mapping.w_avg"] = mean_w(load_mapping(MappingNetworkV1(cfg.mapping), state, cfg.w_dim), z_dim, cfg.c_dim)
        notes.append(
            f"dlatent_avg missing: w_avg estimated from {W_AVG_SAMPLES} mapping samples "
            f"(RandomState({W_AVG_SEED}).randn({W_AVG_SAMPLES}, {z_dim}))"
        )
    for key, t in state.items():
        if not torch.isfinite(t).all():
            raise CheckpointError(f"TF pickle: {key!r} holds NaN or Inf")
    walk = WalkBudget("TF static kwargs", max_depth=16)
    kwargs = {
        "Gs": _plain(gs.static_kwargs, walk),
        "mapping": _plain(mnet.static_kwargs, walk),
        "synthesis": _plain(snet.static_kwargs, walk),
    }
    return cfg, state, "G_style", notes, kwargs


def _plain(x: Any, walk: WalkBudget, depth: int = 0) -> Any:
    """Untrusted static kwargs as JSON-able data, counting nodes, depth and characters against ``walk``."""
    walk.visit(depth)
    if isinstance(x, np.generic):
        x = x.item()
    if x is None or isinstance(x, (bool, float)):
        return x
    if isinstance(x, int):
        return x if x.bit_length() <= 64 else walk.str_of(x)
    if isinstance(x, str):
        return walk.text(x)
    if isinstance(x, Mapping):
        return {walk.str_of(k): _plain(v, walk, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v, walk, depth + 1) for v in x]
    return walk.str_of(x)


# ----------------------------------------------------------------------------
# rosinality/style-based-gan-pytorch.

ROSINALITY_MEAN_BATCHES = 10
ROSINALITY_MEAN_BATCH = 1024
ROSINALITY_MEAN_SEED = 0
ROSINALITY_NOISE_SEED = 0
_R_KEY = "generator.progression.0.conv1.input"
_R_STYLE_RE = re.compile(r"^style\.(\d+)\.linear\.weight_orig$")
_R_BLOCK_RE = re.compile(r"^generator\.progression\.(\d+)\.")


def _r_strip(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Keys as strings, without the ``module.`` prefix of an ``nn.DataParallel`` state dict."""
    out = {str(k): v for k, v in sd.items()}
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out


def _r_is_state(x: Any) -> bool:
    return isinstance(x, Mapping) and (_R_KEY in x or f"module.{_R_KEY}" in x)


def looks_rosinality_v1(obj: Any) -> bool:
    """A style-based-gan-pytorch ``StyledGenerator`` state dict, bare or under ``g_running`` / ``generator``."""
    if not isinstance(obj, Mapping):
        return False
    return _r_is_state(obj) or _r_is_state(obj.get("g_running")) or _r_is_state(obj.get("generator"))


def _r_trained(sd: Mapping[str, Any], i: int) -> bool:
    """Whether block ``i`` was ever trained: its noise weights (initialised to zeros) moved."""
    for n in ("noise1", "noise2"):
        t = sd.get(f"generator.progression.{i}.{n}.weight_orig")
        if isinstance(t, Tensor) and bool((t.detach().float() != 0).any()):
            return True
    return False


def from_rosinality_v1(
    obj: Any, *, resolution: int | None = None
) -> tuple[GeneratorConfigV1, dict[str, Tensor], list[str], dict[str, Any]]:
    """``(config, state dict, notes, init kwargs)`` of a rosinality/style-based-gan-pytorch checkpoint.

    ``train.py`` saves ``{'generator', 'discriminator', 'g_optimizer', 'd_optimizer', 'g_running'}`` at the
    end of each phase and the bare ``g_running.state_dict()`` every 10k iterations. ``g_running`` (the
    moving average, what ``generate.py`` samples from) is preferred, then ``generator``. The file does not
    record the resolution it was trained to (every block up to 1024 px is always present): ``resolution``
    picks it, by default the highest block whose noise weights are not all zero (they start at zero and
    only move once the block is trained). See :func:`rosinality_v1_to_state` for the weight mapping.
    """
    notes: list[str] = []
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"not a rosinality style-based-gan-pytorch checkpoint: a {type(obj).__name__}")
    if _r_is_state(obj.get("g_running")):
        sd = _r_strip(obj["g_running"])
        notes.append("read g_running from a rosinality style-based-gan-pytorch checkpoint")
    elif _r_is_state(obj.get("generator")):
        sd = _r_strip(obj["generator"])
        notes.append("no g_running: read generator (the raw training weights, not the running average)")
    elif _r_is_state(obj):
        sd = _r_strip(obj)
        notes.append("read a bare rosinality style-based-gan-pytorch generator state dict (g_running)")
    else:
        raise CheckpointError("not a rosinality style-based-gan-pytorch checkpoint (no generator.progression.0)")
    if sd is not obj:
        ignored = sorted(str(k) for k in obj if k not in ("g_running", "generator", "mean_style"))
        if ignored:
            notes.append(f"ignored entries: {', '.join(ignored)}")
    blocks = sorted({int(m.group(1)) if len(m.group(1)) <= 6 else 10**6 for k in sd if (m := _R_BLOCK_RE.match(k))})
    if blocks != list(range(len(blocks))) or len(blocks) > 12:
        raise CheckpointError(f"rosinality checkpoint: progression blocks {describe(blocks)} are not 0..n-1 (n <= 12)")
    if resolution is None:
        trained = [i for i in blocks if _r_trained(sd, i)]
        if not trained:
            raise CheckpointError(
                "rosinality checkpoint: no block has trained noise weights, cannot tell its resolution; pass it"
            )
        step = trained[-1]
        notes.append(f"resolution {4 * 2**step} px (step {step}): the highest block with trained noise weights")
    else:
        if resolution < 4 or resolution & (resolution - 1):
            raise CheckpointError(f"resolution must be a power of two >= 4, got {resolution}")
        step = int(math.log2(resolution)) - 2
        if step >= len(blocks):
            raise CheckpointError(
                f"rosinality checkpoint has blocks up to {4 * 2 ** (len(blocks) - 1)} px, not {resolution}"
            )
        notes.append(f"resolution {resolution} px (step {step}) as requested")
    if step < len(blocks) - 1:
        notes.append(f"ignored progression/to_rgb blocks {step + 1}..{len(blocks) - 1} (above {4 * 2**step} px)")
    mean = obj.get("mean_style") if sd is not obj else None
    cfg, state = rosinality_v1_to_state(sd, step)
    if mean is not None:
        if not isinstance(mean, Tensor) or mean.numel() != cfg.w_dim:
            raise CheckpointError(f"rosinality checkpoint: mean_style has shape {tuple(getattr(mean, 'shape', ()))}")
        state["mapping.w_avg"] = mean.detach().to(torch.float32).reshape([cfg.w_dim])
        notes.append("w_avg from the stored mean_style")
    else:
        state["mapping.w_avg"] = estimate_mean_style_rosinality(cfg, state)
        notes.append(
            f"w_avg estimated as rosinality's generate.py does: the mean of {ROSINALITY_MEAN_BATCHES} batch means of "
            f"style(torch.randn({ROSINALITY_MEAN_BATCH}, {cfg.z_dim})), torch.Generator seeded {ROSINALITY_MEAN_SEED}"
        )
    notes.append(
        f"noise: the checkpoint stores none; const planes are RandomState({ROSINALITY_NOISE_SEED}).randn(res, res) "
        "per block, shared by its two layers as in rosinality's StyledConvBlock"
    )
    for key, t in state.items():
        if not torch.isfinite(t).all():
            raise CheckpointError(f"rosinality checkpoint: {key!r} holds NaN or Inf")
    return cfg, state, notes, {"step": step, "resolution": 4 * 2**step}


def rosinality_v1_to_state(sd: Mapping[str, Any], step: int) -> tuple[GeneratorConfigV1, dict[str, Tensor]]:
    """Map a ``StyledGenerator`` state dict (blocks ``0..step``) onto :class:`GeneratorV1` (no ``w_avg``).

    Equivalences (rosinality ``model.py`` -> :mod:`.networks_v1`); ``EqualLR`` scales ``weight_orig`` by
    ``sqrt(2 / fan_in)``, ``fan_in = size(1) * weight[0][0].numel()``, on every equalised layer:

    * ``style.{2k+1}`` (PixelNorm, then EqualLinear + LeakyReLU 0.2) -> ``mapping.fc{k}`` with
      ``lr_multiplier = 1`` (gain ``sqrt(2) / sqrt(in)``): the weights as stored.
    * Block ``i`` (``4 * 2**i`` px): ``conv1, noise1, lrelu1, adain1`` then ``conv2, noise2, lrelu2,
      adain2`` -> layers ``b4.input`` / ``b4.conv`` or ``b{r}.conv0`` / ``b{r}.conv1`` (ws ``2i`` and
      ``2i+1``). Bias then noise then leaky ReLU equals our noise, bias, activation.
    * ``conv1.input`` -> ``b4.const``; the constant layer has no bias (zeros).
    * ``conv1 = [Upsample, EqualConv2d, Blur]`` -> the non-fused up layer; ``[FusedUpsample, Blur]``
      (weight ``[in, out, 3, 3]``, ``sqrt(2 / (in*9))``, padded 4-shift *average*) -> the fused one, whose
      4-shift *sum* needs ``weight.transpose(0, 1) / 4``. Both add their bias before the blur
      (``up_bias_before_blur``).
    * ``noise{1,2}.weight_orig [1, C, 1, 1]``: ``EqualLR`` too, fan-in ``C``: strength ``* sqrt(2 / C)``.
    * ``adain.style`` (gain ``sqrt(2)``; bias initialised to 1 for gamma) -> ``style`` (gain 1, ``s0 + 1``):
      weight ``* sqrt(2)``, bias ``[:C] - 1``. ``nn.InstanceNorm2d`` eps 1e-5 (``instance_norm_eps``).
    * ``to_rgb.{step}`` (gain ``sqrt(2)``) -> ``torgb`` (gain 1): weight ``* sqrt(2)``.
    """

    def take(name: str, ndim: int) -> Tensor:
        t = sd.get(name)
        if t is None:
            raise CheckpointError(f"rosinality checkpoint is missing key {name!r}")
        if not isinstance(t, Tensor):
            raise CheckpointError(f"rosinality checkpoint: {name!r} is a {type(t).__name__}, not a tensor")
        if t.ndim != ndim:
            raise CheckpointError(f"rosinality checkpoint: {name!r} has shape {tuple(t.shape)}, expected {ndim} dims")
        return t.detach().to(torch.float32)

    n_mlp = len([k for k in sd if _R_STYLE_RE.match(k)])
    if n_mlp == 0 or any(f"style.{2 * k + 1}.linear.weight_orig" not in sd for k in range(n_mlp)):
        raise CheckpointError("rosinality checkpoint: the style network is missing or not style.1, style.3, ...")
    z_dim = int(take("style.1.linear.weight_orig", 2).shape[1])
    fmaps = int(take("style.1.linear.weight_orig", 2).shape[0])
    w_dim = int(take(f"style.{2 * n_mlp - 1}.linear.weight_orig", 2).shape[0])

    g = "generator.progression"
    channels = [int(take(f"{g}.{i}.noise1.weight_orig", 4).shape[1]) for i in range(step + 1)]
    fused_blocks = []
    for i in range(1, step + 1):
        if f"{g}.{i}.conv1.0.weight" in sd:
            fused_blocks.append(True)
        elif f"{g}.{i}.conv1.1.conv.weight_orig" in sd:
            fused_blocks.append(False)
        else:
            raise UnsupportedArchitecture(f"unsupported architecture: block {i} is not an up-sampling StyledConvBlock")
    resolutions = [4 * 2**i for i in range(step + 1)]
    auto = [r >= 128 for r in resolutions[1:]]
    fused: bool | str = "auto" if fused_blocks == auto else (all(fused_blocks) if len(set(fused_blocks)) == 1 else "")
    if fused == "":
        raise UnsupportedArchitecture(f"unsupported architecture: fused up-sampling at blocks {fused_blocks}")
    img_channels = int(take(f"generator.to_rgb.{step}.conv.weight_orig", 4).shape[0])
    try:
        scfg = SynthesisConfigV1(
            w_dim=w_dim,
            img_resolution=resolutions[-1],
            img_channels=img_channels,
            channels=tuple(channels),
            fused_scale=fused,
            blur_filter=(1.0, 2.0, 1.0),
            instance_norm_eps=1e-5,
            up_bias_before_blur=True,
        )
        mcfg = MappingConfigV1(
            z_dim=z_dim, c_dim=0, w_dim=w_dim, num_ws=scfg.num_ws, num_layers=n_mlp, layer_features=fmaps,
            lr_multiplier=1.0,
        )  # fmt: skip
        cfg = GeneratorConfigV1(mapping=mcfg, synthesis=scfg, truncation_psi=0.7, truncation_cutoff=None)
    except (ValueError, TypeError, ArithmeticError) as e:
        raise CheckpointError(
            f"cannot derive the StyleGAN config from the rosinality checkpoint: {describe(str(e), 200)}"
        ) from e
    expected = expected_shapes_v1(cfg)
    check_parameter_count(expected, "rosinality checkpoint")

    blur = blur_kernel((1, 2, 1))
    state: dict[str, Tensor] = {}
    for k in range(n_mlp):
        state[f"mapping.fc{k}.weight"] = take(f"style.{2 * k + 1}.linear.weight_orig", 2)
        state[f"mapping.fc{k}.bias"] = take(f"style.{2 * k + 1}.linear.bias", 1)
    rs = np.random.RandomState(ROSINALITY_NOISE_SEED)
    for i, res in enumerate(resolutions):
        src = f"{g}.{i}"
        C = channels[i]
        plane = torch.from_numpy(rs.randn(res, res).astype(np.float32))
        names = ("b4.input", "b4.conv") if i == 0 else (f"b{res}.conv0", f"b{res}.conv1")
        for j, ours in enumerate(names, start=1):
            p = f"synthesis.{ours}"
            if j == 1 and i == 0:
                state["synthesis.b4.const"] = take(f"{src}.conv1.input", 4)[0]
                state[f"{p}.bias"] = torch.zeros([C])
            elif j == 1 and fused_blocks[i - 1]:
                state[f"{p}.weight"] = take(f"{src}.conv1.0.weight", 4).transpose(0, 1) / 4
                state[f"{p}.bias"] = take(f"{src}.conv1.0.bias", 1)
            else:
                conv = f"{src}.conv1.1.conv" if j == 1 else f"{src}.conv2.conv"
                state[f"{p}.weight"] = take(f"{conv}.weight_orig", 4)
                state[f"{p}.bias"] = take(f"{conv}.bias", 1)
            if j == 1 and i > 0:
                bk = f"{src}.conv1.1.weight" if fused_blocks[i - 1] else f"{src}.conv1.2.weight"
                buf = take(bk, 4)
                if not torch.allclose(buf, blur.expand(int(buf.shape[0]), 1, 3, 3), atol=1e-6):
                    raise UnsupportedArchitecture(f"unsupported architecture: {bk} is not the [1, 2, 1] blur")
                state[f"{p}.blur_filter"] = blur.clone()
            state[f"{p}.noise_const"] = plane.clone()
            state[f"{p}.noise_strength"] = take(f"{src}.noise{j}.weight_orig", 4).reshape(-1) * math.sqrt(2 / C)
            sw = take(f"{src}.adain{j}.style.linear.weight_orig", 2)
            sb = take(f"{src}.adain{j}.style.linear.bias", 1).clone()
            sb[:C] -= 1
            state[f"{p}.style.weight"] = sw * math.sqrt(2)
            state[f"{p}.style.bias"] = sb
    state["synthesis.torgb.weight"] = take(f"generator.to_rgb.{step}.conv.weight_orig", 4) * math.sqrt(2)
    state["synthesis.torgb.bias"] = take(f"generator.to_rgb.{step}.conv.bias", 1)
    for key, shape in expected.items():
        got = state.get(key)
        if key != "mapping.w_avg" and got is None:
            raise CheckpointError(f"rosinality checkpoint: nothing maps onto {key!r}")
        if got is not None and tuple(got.shape) != shape:
            raise CheckpointError(
                f"rosinality checkpoint: the tensor for {key!r} has shape {tuple(got.shape)}, need {shape}"
            )
    return cfg, state


def estimate_mean_style_rosinality(cfg: GeneratorConfigV1, state: Mapping[str, Tensor]) -> Tensor:
    """rosinality ``generate.py``'s ``get_mean_style``: the mean of 10 ``style(randn(1024, z)).mean(0)``.

    Made deterministic with ``torch.Generator().manual_seed(0)`` (CPU), the batches drawn in order.
    """
    mapping = load_mapping(MappingNetworkV1(cfg.mapping), state, cfg.w_dim)
    gen = torch.Generator().manual_seed(ROSINALITY_MEAN_SEED)
    total = torch.zeros([cfg.w_dim], dtype=torch.float64)
    with torch.no_grad():
        for _ in range(ROSINALITY_MEAN_BATCHES):
            z = torch.randn(ROSINALITY_MEAN_BATCH, cfg.z_dim, generator=gen)
            total += mapping(z).mean(dim=0).to(torch.float64)
    return (total / ROSINALITY_MEAN_BATCHES).to(torch.float32)


def _read_tf(obj: Any, resolution: int | None) -> Read:
    cfg, state, source_class, notes, kwargs = from_tf_pickle(obj)
    return Read(cfg, state, source_class, notes, kwargs)


def _read_rosinality_v1(obj: Any, resolution: int | None) -> Read:
    cfg, state, notes, kwargs = from_rosinality_v1(obj, resolution=resolution)
    return Read(cfg, state, "rosinality.StyledGenerator", notes, kwargs)


TF_READER = Reader(
    name="stylegan-tf-pkl",
    summary="TensorFlow StyleGAN (v1) .pkl (NVlabs/stylegan, (G, D, Gs) built by G_style)",
    detect=looks_tf,
    read=_read_tf,
    containers=("pickle",),
    accepts=looks_tf,
    what="a TensorFlow StyleGAN pickle",
)
ROSINALITY_V1_READER = Reader(
    name="rosinality-v1-pt",
    summary="rosinality style-based-gan-pytorch (StyleGAN v1) .model/.pt (g_running); --resolution applies",
    detect=looks_rosinality_v1,
    read=_read_rosinality_v1,
    containers=("zip", "legacy"),
    container_text="a torch.save file as rosinality writes",
    takes_resolution=True,
)
