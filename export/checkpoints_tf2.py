"""StyleGAN2 checkpoint import: official TensorFlow ``.pkl`` files of NVlabs/stylegan2.

``"stylegan2-tf-pkl"``
    ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` as ``training_loop.py`` pickles them, ``Gs``
    built by ``G_main`` with the components ``mapping`` (``G_mapping``) and ``synthesis``
    (``G_synthesis_stylegan2``). Read by the allow-list unpickler of :mod:`styleserve.export._pickle`
    into :class:`~styleserve.export._pickle.TFNetwork` records: the pickled ``build_module_src`` is
    never executed and TensorFlow is not needed. ``Gs`` becomes a StyleGAN2
    :class:`~styleserve.export.networks.Generator` (:class:`~styleserve.export.networks.GeneratorConfig`).

The config comes from the variable shapes (mapping depth and widths, label size, resolution,
channels, image channels, kernel size, architecture: ``Skip/weight`` = resnet, a ``ToRGB`` below
the last block = skip, else orig) and the static kwargs (``mapping_lrmul``, nonlinearities,
``resample_kernel``; the official defaults where absent); an ``architecture`` kwarg that disagrees
with the variables is refused. Variable map (TF -> ours), as NVlabs stylegan2-ada-pytorch's
``legacy.py`` ``convert_tf_generator`` does it:

* ``mapping/Dense{i}/weight [in, out]`` -> ``mapping.fc{i}.weight`` transposed; ``bias`` as is
  (both apply ``lrmul / sqrt(in)`` and ``lrmul`` at run time).
* ``mapping/LabelConcat/weight [c, z]`` (conditional models): TF computes ``[z, c @ W]`` and
  normalises the concatenation jointly (not stylegan2-ada's ``LabelEmbed``, which ``legacy.py``
  expects). Read into ``mapping.embed`` of a ``MappingConfig(label_concat=True)``: ``W.T * sqrt(c)``
  (our layer multiplies by ``1 / sqrt(c)``; TF's weight has no gain), no bias.
* ``synthesis/4x4/Const/const [1, C, 4, 4]`` -> ``b4.const``; ``.../Conv*/weight [k, k, I, O]`` ->
  ``weight [O, I, k, k]``, flipped in both spatial axes for ``Conv0_up`` and ``Skip`` (TF's
  ``upsample_conv_2d`` flips the kernel; ours runs the transposed conv unflipped). The runtime gain
  ``1 / sqrt(I k k)`` of demodulated convs cancels in demodulation (up to its 1e-8), so it is not
  folded in; ToRGB's equals our ``ToRGBLayer.weight_gain``.
* ``mod_weight [w, I]`` -> ``affine.weight`` transposed; ``mod_bias + 1`` -> ``affine.bias`` (TF
  adds the 1 at run time); ``noise_strength []``, ``bias [O]`` as is; ``noise{j} [1, 1, r, r]`` ->
  the ``noise_const`` of the j-th conv layer; ``ToRGB`` of ``{r}x{r}`` -> ``b{r}.torgb``;
  ``Gs/dlatent_avg`` -> ``mapping.w_avg`` (estimated by the caller when absent).
* ``fused_modconv`` (grouped per-sample weights in TF) and ``randomize_noise`` only change how or
  with which noise the same function is computed; ``const`` noise is ``randomize_noise=False``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch
from torch import Tensor

from styleserve.errors import CheckpointError, UnsupportedArchitecture

from ._pickle import TFNetwork, WalkBudget, describe
from .checkpoints_v1 import _component, _kw, _kw_str, _pick_gs, _plain, _shape, _vars, looks_tf, tf_mapping_shape
from .networks import (
    ACTIVATIONS,
    ARCHITECTURES,
    MAX_IMG_RESOLUTION,
    GeneratorConfig,
    MappingConfig,
    SynthesisConfig,
    check_parameter_count,
    expected_shapes,
    setup_filter,
)
from .readers import Read, Reader, finish_stylegan2

__all__ = ["READER", "from_tf2_pickle", "looks_tf2"]

_RES_RE = re.compile(r"^(\d+)x\1/Conv1/weight$")
_MAPPING_VAR_RE = re.compile(r"^(Dense\d+/(weight|bias)|LabelConcat/weight)$")
_LAYER_VARS = ("weight", "bias", "mod_weight", "mod_bias", "noise_strength")


def looks_tf2(obj: Any) -> bool:
    """A TF network (or ``(G, D, Gs)``) whose generator is built by ``G_main`` (NVlabs/stylegan2)."""
    nets = [obj] if isinstance(obj, TFNetwork) else list(obj) if isinstance(obj, (tuple, list)) else []
    nets = [n for n in nets if isinstance(n, TFNetwork)]
    named = [n for n in nets if n.name == "Gs"]
    gs = named[0] if named else (nets[-1] if nets else None)
    return gs is not None and gs.build_func_name == "G_main"


def _f32(a: np.ndarray[Any, Any]) -> Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))  # A copy; keeps 0-d arrays 0-d.


def from_tf2_pickle(obj: Any) -> tuple[GeneratorConfig, dict[str, Tensor], str, list[str], dict[str, Any]]:
    """``(config, state dict, source class, notes, init kwargs)`` of the ``Gs`` in a TF StyleGAN2 pickle.

    The state dict has our key names; ``mapping.w_avg`` is absent when the pickle has no ``dlatent_avg``
    (the caller estimates it). Shapes are checked against the config before any tensor is made.
    """
    notes: list[str] = []
    gs = _pick_gs(obj, notes)
    if gs.build_func_name != "G_main":
        raise UnsupportedArchitecture(
            f"unsupported architecture: TF network built by {describe(gs.build_func_name)}, expected 'G_main'"
        )
    for key, func in (("mapping", "G_mapping"), ("synthesis", "G_synthesis_stylegan2")):
        comp = gs.components.get(key)
        if isinstance(comp, TFNetwork) and comp.build_func_name != func:
            raise UnsupportedArchitecture(
                f"unsupported architecture: the {key} of this G_main pickle is built by "
                f"{describe(comp.build_func_name)}, expected {func!r} (NVlabs/stylegan2)"
            )
    mnet = _component(gs, "mapping", "G_mapping")
    snet = _component(gs, "synthesis", "G_synthesis_stylegan2")
    gvars, mvars, svars = _vars(gs), _vars(mnet), _vars(snet)

    if _kw_str(snet, gs, "dtype", "float32") != "float32":
        raise UnsupportedArchitecture("unsupported architecture: dtype other than float32")
    if not bool(_kw(mnet, gs, "normalize_latents", True)):
        raise UnsupportedArchitecture(
            "unsupported architecture: normalize_latents=False (the StyleGAN2 mapping always normalises z)"
        )

    # Mapping, from the shapes.
    num_layers, z_dim, c_dim, w_dim, hidden = tf_mapping_shape(mvars)
    hidden = hidden if num_layers > 1 else w_dim

    # Synthesis, from the shapes.
    res_found = sorted(int(m.group(1)) for k in svars if (m := _RES_RE.match(k)))
    resolution = res_found[-1] if res_found else 4
    if resolution > MAX_IMG_RESOLUTION:
        raise CheckpointError(f"TF pickle: resolution {resolution} is above {MAX_IMG_RESOLUTION}")
    resolutions = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
    conv4 = _shape(svars, "4x4/Conv/weight", "G_synthesis", 4)
    kernel = conv4[0]
    channels = [conv4[3]]
    for r in resolutions[1:]:
        channels.append(_shape(svars, f"{r}x{r}/Conv1/weight", "G_synthesis", 4)[3])
    img_channels = _shape(svars, f"{resolution}x{resolution}/ToRGB/weight", "G_synthesis", 4)[3]
    has_skip = any(f"{r}x{r}/Skip/weight" in svars for r in resolutions)
    has_low_torgb = any(f"{r}x{r}/ToRGB/weight" in svars for r in resolutions[:-1])
    arch = "resnet" if has_skip else ("skip" if has_low_torgb else "orig")
    stated = _kw(snet, gs, "architecture", None)
    if stated is not None and stated != arch:
        shown = describe(stated)
        if stated not in ARCHITECTURES:
            raise UnsupportedArchitecture(f"unsupported architecture: architecture={shown}")
        raise CheckpointError(f"TF pickle: architecture={shown} but the variables are those of {arch!r}")
    if resolution == 4 and stated is not None:
        arch = stated  # A 4 px generator looks the same in all three.
    act = _kw_str(snet, gs, "nonlinearity", "lrelu")
    m_act = _kw_str(mnet, gs, "mapping_nonlinearity", "lrelu")
    for name, fn in (("nonlinearity", act), ("mapping_nonlinearity", m_act)):
        if fn not in ACTIVATIONS:
            raise UnsupportedArchitecture(f"unsupported architecture: {name}={describe(fn)}")
    taps = _kw(snet, gs, "resample_kernel", [1, 3, 3, 1])
    if not isinstance(taps, (list, tuple)) or not taps:
        raise UnsupportedArchitecture(f"unsupported architecture: resample_kernel={describe(taps)}")
    lrmul = _kw(mnet, gs, "mapping_lrmul", 0.01)
    try:
        scfg = SynthesisConfig(
            w_dim=w_dim,
            img_resolution=resolution,
            img_channels=img_channels,
            channels=tuple(channels),
            architecture=arch,
            conv_clamp=None,
            resample_filter=tuple(float(t) for t in taps),
            use_noise=True,
            activation=act,
            kernel_size=kernel,
        )
        mcfg = MappingConfig(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            num_ws=scfg.num_ws,
            num_layers=num_layers,
            embed_features=z_dim if c_dim else 0,
            layer_features=hidden,
            activation=m_act,
            lr_multiplier=float(lrmul),
            label_concat=c_dim > 0,
        )
        cfg = GeneratorConfig(mapping=mcfg, synthesis=scfg)
    except (ValueError, TypeError, ArithmeticError) as e:
        raise CheckpointError(f"cannot derive the StyleGAN2 config from the TF pickle: {describe(str(e), 200)}") from e
    expected = expected_shapes(cfg)
    check_parameter_count(expected, "TF pickle")

    # The variable map (see the module docstring); every variable must be used.
    used_s: set[str] = set()
    used_m: set[str] = set()

    def sv(name: str) -> np.ndarray[Any, Any]:
        if name not in svars:
            raise CheckpointError(f"TF pickle is missing variable G_synthesis/{name}")
        used_s.add(name)
        return svars[name]

    def mv(name: str) -> np.ndarray[Any, Any]:
        if name not in mvars:
            raise CheckpointError(f"TF pickle is missing variable G_mapping/{name}")
        used_m.add(name)
        return mvars[name]

    arrays: dict[str, np.ndarray[Any, Any]] = {}
    if c_dim:
        arrays["mapping.embed.weight"] = mv("LabelConcat/weight").astype(np.float64).T * math.sqrt(c_dim)
    for i in range(num_layers):
        arrays[f"mapping.fc{i}.weight"] = mv(f"Dense{i}/weight").T
        arrays[f"mapping.fc{i}.bias"] = mv(f"Dense{i}/bias")
    if "dlatent_avg" in gvars:
        arrays["mapping.w_avg"] = gvars["dlatent_avg"]
    else:
        notes.append("Gs has no dlatent_avg")

    def conv(scope: str, dst: str, noise_idx: int, flip: bool) -> None:
        w = sv(f"{scope}/weight")
        if w.ndim != 4:
            raise CheckpointError(f"TF pickle: G_synthesis/{scope}/weight has shape {w.shape}, expected 4 dims")
        arrays[f"{dst}.weight"] = (w[::-1, ::-1] if flip else w).transpose(3, 2, 0, 1)
        arrays[f"{dst}.bias"] = sv(f"{scope}/bias")
        arrays[f"{dst}.affine.weight"] = sv(f"{scope}/mod_weight").T
        arrays[f"{dst}.affine.bias"] = sv(f"{scope}/mod_bias").astype(np.float64) + 1
        arrays[f"{dst}.noise_strength"] = np.asarray(sv(f"{scope}/noise_strength"))
        noise = sv(f"noise{noise_idx}")
        if noise.ndim != 4 or noise.shape[:2] != (1, 1):
            raise CheckpointError(f"TF pickle: G_synthesis/noise{noise_idx} has shape {noise.shape}")
        arrays[f"{dst}.noise_const"] = noise[0, 0]

    def torgb(scope: str, dst: str) -> None:
        w = sv(f"{scope}/weight")
        if w.ndim != 4:
            raise CheckpointError(f"TF pickle: G_synthesis/{scope}/weight has shape {w.shape}, expected 4 dims")
        arrays[f"{dst}.weight"] = w.transpose(3, 2, 0, 1)
        arrays[f"{dst}.bias"] = sv(f"{scope}/bias")
        arrays[f"{dst}.affine.weight"] = sv(f"{scope}/mod_weight").T
        arrays[f"{dst}.affine.bias"] = sv(f"{scope}/mod_bias").astype(np.float64) + 1

    const = sv("4x4/Const/const")
    if const.ndim != 4 or const.shape[0] != 1:
        raise CheckpointError(f"TF pickle: G_synthesis/4x4/Const/const has shape {const.shape}")
    arrays["synthesis.b4.const"] = const[0]
    conv("4x4/Conv", "synthesis.b4.conv1", 0, flip=False)
    for k, r in enumerate(resolutions[1:]):
        conv(f"{r}x{r}/Conv0_up", f"synthesis.b{r}.conv0", 2 * k + 1, flip=True)
        conv(f"{r}x{r}/Conv1", f"synthesis.b{r}.conv1", 2 * k + 2, flip=False)
        if arch == "resnet":
            w = sv(f"{r}x{r}/Skip/weight")
            arrays[f"synthesis.b{r}.skip.weight"] = w[::-1, ::-1].transpose(3, 2, 0, 1)
    for r in resolutions:
        if arch == "skip" or r == resolution:
            torgb(f"{r}x{r}/ToRGB", f"synthesis.b{r}.torgb")

    unexpected = sorted(f"G_synthesis/{k}" for k in svars if k not in used_s)
    unexpected += sorted(f"G_mapping/{k}" for k in mvars if k not in used_m or not _MAPPING_VAR_RE.match(k))
    unexpected += sorted(f"Gs/{k}" for k in gvars if k != "dlatent_avg")
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise UnsupportedArchitecture(f"unsupported architecture: unexpected TF variable {unexpected[0]!r}{more}")

    # Shapes first (nothing converted yet), then the tensors; resample filters are config, not variables.
    for key, a in arrays.items():
        shape = tuple(int(d) for d in a.shape)
        if key not in expected:
            raise CheckpointError(f"TF pickle: nothing in the network takes {key!r}")
        if shape != expected[key]:
            raise CheckpointError(f"TF pickle: the variable for {key!r} has shape {shape}, need {expected[key]}")
    state = {k: _f32(a) for k, a in arrays.items()}
    for key in expected:
        if key.endswith("resample_filter"):
            state[key] = setup_filter(scfg.resample_filter)
    fused = _kw(snet, gs, "fused_modconv", True)
    notes.append(
        f"architecture {arch}; computed with fused_modconv=False (the checkpoint was built with "
        f"fused_modconv={describe(fused)}: the same function)"
    )
    if c_dim:
        notes.append("conditional: TF LabelConcat mapping ([z, c @ LabelConcat/weight], normalised jointly)")
    walk = WalkBudget("TF static kwargs", max_depth=16)
    kwargs = {
        "Gs": _plain(gs.static_kwargs, walk),
        "mapping": _plain(mnet.static_kwargs, walk),
        "synthesis": _plain(snet.static_kwargs, walk),
    }
    return cfg, state, "G_main", notes, kwargs


def _read(obj: Any, resolution: int | None) -> Read:
    cfg, state, source_class, notes, kwargs = from_tf2_pickle(obj)
    return Read(cfg, finish_stylegan2(cfg, state, "TF pickle", notes), source_class, notes, kwargs)


READER = Reader(
    name="stylegan2-tf-pkl",
    summary="TensorFlow StyleGAN2 .pkl (NVlabs/stylegan2, (G, D, Gs) built by G_main)",
    detect=looks_tf2,
    read=_read,
    containers=("pickle",),
    accepts=looks_tf,
    what="a TensorFlow StyleGAN2 pickle",
)
