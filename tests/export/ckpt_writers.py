"""Writers of tiny checkpoints in the real third-party formats, without the third-party code.

* Official StyleGAN pickles: ``torch_utils.persistence`` objects pickle as
  ``_reconstruct_persistent_obj(meta)`` with ``meta = dict(type='class', version=6, module_src=...,
  class_name=..., state=<the module __dict__>)``. :func:`write_official_pkl` registers stand-in
  ``torch_utils``/``dnnlib`` modules in ``sys.modules`` only while pickling and builds records whose
  ``state`` mirrors an ``nn.Module.__dict__`` (hooks, ``_parameters``, ``_buffers``, ``_modules``,
  ``_init_args``/``_init_kwargs``, plain attributes with numpy scalars where the official code has
  them). Tensors are pickled by real torch. ``module_src`` holds a payload that would create a file
  if anything executed it.
* rosinality stylegan2-pytorch: :class:`RosinalityGenerator` is an independent implementation of
  rosinality's generator forward (its parameter names, its math: EqualLinear, PixelNorm, fused
  ModulatedConv2d with conv_transpose + Blur, NoiseInjection, ToRGB with Upsample), saved with the
  real ``torch.save`` by :func:`write_rosinality_pt`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import pickle
import re
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from styleserve.export.networks import (
    Conv2dLayer,
    FullyConnectedLayer,
    Generator,
    MappingNetwork,
    SynthesisBlock,
    SynthesisLayer,
    SynthesisNetwork,
    ToRGBLayer,
)
from styleserve.export.networks_sg3 import GeneratorSG3
from torch import nn

# ----------------------------------------------------------------------------
# Our generator with random weights.


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Random values for every parameter and buffer except the FIR filters (noise_strength too)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith("resample_filter") or name.endswith("kernel"):
                continue
            scale = 0.5 if name.endswith(("noise_strength", "bias", "noise.weight")) else 1.0
            t.copy_(torch.randn(t.shape, generator=gen) * scale)
            if name.endswith("affine.bias"):
                t.add_(1.0)
    return module.eval().requires_grad_(False)


# ----------------------------------------------------------------------------
# Official pickles.

PAYLOAD_TEMPLATE = (
    "import os\n"
    "import pathlib\n"
    "pathlib.Path(r'{flag}').write_text('executed')\n"
    "os.system('touch {flag}')\n"
    "import torch\n"
    "class {class_name}(torch.nn.Module):\n"
    "    pass\n"
)


def _reconstruct_persistent_obj(meta: Any) -> Any:  # pragma: no cover - only pickled by reference
    raise AssertionError("the stand-in persistence reconstructor must never be called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):  # type: ignore[type-arg]
    """Like ``dnnlib.util.EasyDict``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


EasyDict.__module__ = "dnnlib.util"


@contextlib.contextmanager
def official_modules() -> Iterator[None]:
    """``torch_utils.persistence`` and ``dnnlib.util`` stand-ins in ``sys.modules`` while pickling."""
    names = ["torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"]
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}
    mods["torch_utils"].persistence = mods["torch_utils.persistence"]  # type: ignore[attr-defined]
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj  # type: ignore[attr-defined]
    mods["dnnlib"].util = mods["dnnlib.util"]  # type: ignore[attr-defined]
    mods["dnnlib"].EasyDict = EasyDict  # type: ignore[attr-defined]
    mods["dnnlib.util"].EasyDict = EasyDict  # type: ignore[attr-defined]
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


class Persistent:
    """Pickles exactly like a ``@persistence.persistent_class`` instance."""

    def __init__(self, class_name: str, state: dict[str, Any], module_src: str) -> None:
        self.class_name = class_name
        self.state = state
        self.module_src = module_src

    def __reduce__(self) -> tuple[Any, ...]:
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return (_reconstruct_persistent_obj, (meta,))


def module_state(
    params: dict[str, torch.Tensor | None],
    buffers: dict[str, torch.Tensor],
    children: dict[str, Any],
    attrs: dict[str, Any],
    init_args: tuple[Any, ...] = (),
    init_kwargs: dict[str, Any] | None = None,
    non_persistent: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A realistic ``nn.Module.__dict__``: the hook dicts of this torch version plus our entries."""
    state: dict[str, Any] = {}
    for k, v in nn.Module().__dict__.items():
        state[k] = v.copy() if isinstance(v, (dict, set)) else v
    state["training"] = False
    state["_parameters"] = OrderedDict(
        (n, None if p is None else nn.Parameter(p.detach().clone(), requires_grad=False)) for n, p in params.items()
    )
    state["_buffers"] = OrderedDict((n, b.detach().clone()) for n, b in buffers.items())
    state["_non_persistent_buffers_set"] = set(non_persistent)
    state["_modules"] = OrderedDict(children)
    state["_init_args"] = init_args
    state["_init_kwargs"] = dict(init_kwargs or {})
    state.update(attrs)
    return state


def _own(m: nn.Module) -> tuple[dict[str, torch.Tensor | None], dict[str, torch.Tensor]]:
    return dict(m._parameters), {n: b for n, b in m._buffers.items() if b is not None}


def official_generator_record(
    G: Generator,
    *,
    flavor: str,
    src: str,
    init_kwargs: dict[str, Any],
    channels_last_res: tuple[int, ...] = (),
) -> Persistent:
    """The ``G_ema`` record of our ``G`` as stylegan2-ada-pytorch (``ada``) or stylegan3 (``sg3``) has it."""
    sg3 = flavor == "sg3"
    cfg = G.cfg

    def fc(m: FullyConnectedLayer, in_f: int, out_f: int, kwargs: dict[str, Any]) -> Persistent:
        params, buffers = _own(m)
        attrs: dict[str, Any] = dict(activation=m.activation, weight_gain=np.float64(m.weight_gain))
        attrs["bias_gain"] = m.bias_gain if m.bias_gain != 1 else 1
        if sg3:
            attrs.update(in_features=in_f, out_features=out_f)
        return Persistent("FullyConnectedLayer", module_state(params, buffers, {}, attrs, (in_f, out_f), kwargs), src)

    def layer(m: SynthesisLayer, in_ch: int, out_ch: int, channels_last: bool) -> Persistent:
        params, buffers = _own(m)
        if channels_last:
            params["weight"] = m.weight.detach().to(memory_format=torch.channels_last)
        affine = fc(m.affine, cfg.w_dim, in_ch, {"bias_init": 1})
        attrs: dict[str, Any] = dict(
            resolution=m.resolution,
            up=m.up,
            use_noise=m.use_noise,
            activation=m.activation,
            conv_clamp=m.conv_clamp,
            padding=m.padding,
            act_gain=np.sqrt(2),
        )
        if sg3:
            attrs.update(in_channels=in_ch, out_channels=out_ch, w_dim=cfg.w_dim)
        kwargs = dict(w_dim=cfg.w_dim, resolution=m.resolution, up=m.up, resample_filter=[1, 3, 3, 1],
                      conv_clamp=m.conv_clamp, channels_last=channels_last)  # fmt: skip
        return Persistent(
            "SynthesisLayer", module_state(params, buffers, {"affine": affine}, attrs, (in_ch, out_ch), kwargs), src
        )

    def torgb(m: ToRGBLayer, in_ch: int, channels_last: bool) -> Persistent:
        params, buffers = _own(m)
        if channels_last:
            params["weight"] = m.weight.detach().to(memory_format=torch.channels_last)
        affine = fc(m.affine, cfg.w_dim, in_ch, {"bias_init": 1})
        attrs: dict[str, Any] = dict(conv_clamp=m.conv_clamp, weight_gain=np.float64(m.weight_gain))
        if sg3:
            attrs.update(in_channels=in_ch, out_channels=cfg.img_channels, w_dim=cfg.w_dim)
        args = (in_ch, cfg.img_channels)
        kwargs = dict(w_dim=cfg.w_dim, conv_clamp=m.conv_clamp, channels_last=channels_last)
        return Persistent("ToRGBLayer", module_state(params, buffers, {"affine": affine}, attrs, args, kwargs), src)

    def skip(m: Conv2dLayer, in_ch: int, out_ch: int) -> Persistent:
        params, buffers = _own(m)
        params["bias"] = None  # bias=False: the official layer keeps a None entry.
        attrs: dict[str, Any] = dict(
            activation="linear", up=2, down=1, conv_clamp=None, padding=0,
            weight_gain=np.float64(m.weight_gain), act_gain=1,
        )  # fmt: skip
        if sg3:
            attrs.update(in_channels=in_ch, out_channels=out_ch)
        kwargs = dict(kernel_size=1, bias=False, up=2, resample_filter=[1, 3, 3, 1], channels_last=False)
        return Persistent("Conv2dLayer", module_state(params, buffers, {}, attrs, (in_ch, out_ch), kwargs), src)

    def block(b: SynthesisBlock) -> Persistent:
        params, buffers = _own(b)
        out_ch = cfg.synthesis.channels[cfg.synthesis.block_resolutions.index(b.resolution)]
        cl = b.resolution in channels_last_res
        children: dict[str, Any] = {}
        if b.in_channels != 0:
            children["conv0"] = layer(b.conv0, b.in_channels, out_ch, cl)
        children["conv1"] = layer(b.conv1, out_ch, out_ch, cl)
        if hasattr(b, "torgb"):
            children["torgb"] = torgb(b.torgb, out_ch, cl)
        if hasattr(b, "skip"):
            children["skip"] = skip(b.skip, b.in_channels, out_ch)
        attrs: dict[str, Any] = dict(
            in_channels=b.in_channels,
            w_dim=cfg.w_dim,
            resolution=b.resolution,
            img_channels=cfg.img_channels,
            is_last=b.is_last,
            architecture=b.architecture,
            use_fp16=cl,
            channels_last=cl,
            num_conv=b.num_conv,
            num_torgb=b.num_torgb,
        )
        if sg3:
            attrs["fused_modconv_default"] = "inference_only"
        kwargs = dict(w_dim=cfg.w_dim, resolution=b.resolution, img_channels=cfg.img_channels, is_last=b.is_last,
                      use_fp16=cl, architecture=b.architecture, conv_clamp=cfg.synthesis.conv_clamp)  # fmt: skip
        state = module_state(params, buffers, children, attrs, (b.in_channels, out_ch), kwargs)
        return Persistent("SynthesisBlock", state, src)

    syn: SynthesisNetwork = G.synthesis
    blocks = {f"b{b.resolution}": block(b) for b in syn.blocks()}
    syn_attrs: dict[str, Any] = dict(
        w_dim=cfg.w_dim,
        img_resolution=cfg.img_resolution,
        img_resolution_log2=int(np.log2(cfg.img_resolution)),
        img_channels=cfg.img_channels,
        block_resolutions=list(cfg.synthesis.block_resolutions),
        num_ws=cfg.num_ws,
    )
    if sg3:
        syn_attrs["num_fp16_res"] = len(channels_last_res)
    syn_kwargs = dict(w_dim=cfg.w_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels)
    synthesis = Persistent("SynthesisNetwork", module_state({}, {}, blocks, syn_attrs, (), syn_kwargs), src)

    mp: MappingNetwork = G.mapping
    feats = cfg.mapping.features
    m_children: dict[str, Any] = {}
    if cfg.c_dim > 0:
        m_children["embed"] = fc(mp.embed, cfg.c_dim, cfg.mapping.embed_dim, {})
    for i in range(cfg.mapping.num_layers):
        kw = dict(activation=cfg.mapping.activation, lr_multiplier=cfg.mapping.lr_multiplier)
        m_children[f"fc{i}"] = fc(getattr(mp, f"fc{i}"), feats[i], feats[i + 1], kw)
    m_params, m_buffers = _own(mp)
    m_attrs: dict[str, Any] = dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_ws=cfg.num_ws,
                                   num_layers=cfg.mapping.num_layers, w_avg_beta=0.995)  # fmt: skip
    m_kwargs = dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_ws=cfg.num_ws,
                    num_layers=cfg.mapping.num_layers)  # fmt: skip
    mapping = Persistent("MappingNetwork", module_state(m_params, m_buffers, m_children, m_attrs, (), m_kwargs), src)

    g_attrs = dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                   img_channels=cfg.img_channels, num_ws=cfg.num_ws)  # fmt: skip
    g_state = module_state({}, {}, {"synthesis": synthesis, "mapping": mapping}, g_attrs, (), init_kwargs)
    return Persistent("Generator", g_state, src)


def generator_init_kwargs(
    G: Generator, *, flavor: str, channel_base: int, channel_max: int, include_conv_clamp: bool = True
) -> dict[str, Any]:
    """``G._init_kwargs``: ada nests ``synthesis_kwargs``, stylegan3 passes them flat."""
    cfg = G.cfg
    syn = EasyDict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=0)
    if cfg.synthesis.architecture != "skip":
        syn["architecture"] = cfg.synthesis.architecture
    if include_conv_clamp:
        syn["conv_clamp"] = cfg.synthesis.conv_clamp
    common = dict(z_dim=cfg.z_dim, w_dim=cfg.w_dim, mapping_kwargs=EasyDict(num_layers=cfg.mapping.num_layers))
    tail = dict(c_dim=cfg.c_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels)
    if flavor == "sg3":
        return {**common, **syn, "fused_modconv_default": "inference_only", **tail}
    return {**common, "synthesis_kwargs": syn, **tail}


def generic_record(
    class_name: str,
    src: str,
    *,
    params: dict[str, torch.Tensor | None] | None = None,
    buffers: dict[str, torch.Tensor] | None = None,
    children: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
    non_persistent: tuple[str, ...] = (),
) -> Persistent:
    state = module_state(params or {}, buffers or {}, children or {}, attrs or {}, non_persistent=non_persistent)
    return Persistent(class_name, state, src)


def discriminator_record(img_resolution: int, img_channels: int, src: str) -> Persistent:
    """A small ``Discriminator`` record (only pickled, never used by the loader)."""
    g = torch.Generator().manual_seed(7)

    def conv(i: int, o: int, k: int) -> Persistent:
        return generic_record(
            "Conv2dLayer", src,
            params={"weight": torch.randn([o, i, k, k], generator=g), "bias": torch.zeros([o])},
            buffers={"resample_filter": torch.ones(4, 4) / 16},
            attrs=dict(activation="lrelu", up=1, down=2, conv_clamp=256, padding=k // 2,
                       weight_gain=np.float64(1 / math.sqrt(i * k * k)), act_gain=np.sqrt(2)),
        )  # fmt: skip

    blk = generic_record(
        "DiscriminatorBlock", src,
        children={"fromrgb": conv(img_channels, 8, 1), "conv0": conv(8, 8, 3), "conv1": conv(8, 8, 3)},
        buffers={"resample_filter": torch.ones(4, 4) / 16},
        attrs=dict(in_channels=0, resolution=img_resolution, img_channels=img_channels, first_layer_idx=0,
                   architecture="resnet", use_fp16=False, channels_last=False, num_layers=3),
    )  # fmt: skip
    mbstd = generic_record("MinibatchStdLayer", src, attrs=dict(group_size=4, num_channels=1))
    epi = generic_record(
        "DiscriminatorEpilogue", src,
        children={"mbstd": mbstd, "conv": conv(9, 8, 3)},
        attrs=dict(in_channels=8, cmap_dim=0, resolution=4, img_channels=img_channels, architecture="resnet"),
    )  # fmt: skip
    return generic_record(
        "Discriminator", src,
        children={f"b{img_resolution}": blk, "b4": epi},
        attrs=dict(c_dim=0, img_resolution=img_resolution, img_resolution_log2=int(np.log2(img_resolution)),
                   img_channels=img_channels, block_resolutions=[img_resolution]),
    )  # fmt: skip


def augment_pipe_record(src: str) -> Persistent:
    return generic_record(
        "AugmentPipe", src,
        buffers={"p": torch.tensor([0.25]), "Hz_geom": torch.randn(12), "Hz_fbank": torch.randn(4, 12)},
        attrs=dict(xflip=1.0, rotate90=1.0, xint=1.0, scale=1.0, brightness_std=0.2, contrast_std=np.float64(0.5)),
        non_persistent=("Hz_fbank",),
    )  # fmt: skip


def sg3_init_kwargs(G: GeneratorSG3, **extra: Any) -> dict[str, Any]:
    """``Generator._init_kwargs`` as ``train.py --cfg stylegan3-t|r`` passes them (flat synthesis kwargs, numpy
    values where train.py computes them); ``extra`` overrides or adds (e.g. ``num_layers``)."""
    cfg, s = G.cfg, G.cfg.synthesis
    kw: dict[str, Any] = dict(
        z_dim=cfg.z_dim, w_dim=cfg.w_dim,
        mapping_kwargs=EasyDict(num_layers=cfg.mapping.num_layers),
        channel_base=s.channel_base, channel_max=s.channel_max, num_fp16_res=4, conv_clamp=s.conv_clamp,
        magnitude_ema_beta=np.float64(0.5 ** (32 / (20 * 1e3))),
        num_layers=s.num_layers, margin_size=s.margin_size,
    )  # fmt: skip
    if s.use_radial_filters:
        kw.update(conv_kernel=s.conv_kernel, use_radial_filters=True)
    kw.update(c_dim=cfg.c_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels)
    kw.update(extra)
    return kw


def official_sg3_record(G: GeneratorSG3, *, src: str, init_kwargs: dict[str, Any]) -> Persistent:
    """The ``G_ema`` record of our StyleGAN3 ``G`` as NVlabs stylegan3 (``networks_stylegan3``) pickles it: every
    module a persistent object with its ``__init__`` arguments, official parameter / buffer names (``None`` for the
    1-tap filters, as ``register_buffer(name, None)`` leaves them) and the official plain attributes."""
    cfg, sc = G.cfg, G.cfg.synthesis

    def fc(m: FullyConnectedLayer, in_f: int, out_f: int, kwargs: dict[str, Any]) -> Persistent:
        params, buffers = _own(m)
        attrs: dict[str, Any] = dict(in_features=in_f, out_features=out_f, activation=m.activation,
                                     weight_gain=np.float64(m.weight_gain), bias_gain=m.bias_gain)  # fmt: skip
        return Persistent("FullyConnectedLayer", module_state(params, buffers, {}, attrs, (), kwargs), src)

    syn = G.synthesis
    inp = syn.input
    i_params, i_buffers = _own(inp)
    i_buffers = {n: b for n, b in i_buffers.items() if n not in inp._non_persistent_buffers_set}  # ours only
    i_attrs = dict(w_dim=cfg.w_dim, channels=inp.channels, size=np.broadcast_to(np.asarray(inp.size), [2]),
                   sampling_rate=np.float64(inp.sampling_rate), bandwidth=np.float64(inp.bandwidth))  # fmt: skip
    i_kwargs = dict(w_dim=cfg.w_dim, channels=inp.channels, size=inp.size,
                    sampling_rate=np.float64(inp.sampling_rate), bandwidth=np.float64(inp.bandwidth))  # fmt: skip
    affine = fc(inp.affine, cfg.w_dim, 4, dict(weight_init=0, bias_init=[1, 0, 0, 0]))
    i_state = module_state(i_params, i_buffers, {"affine": affine}, i_attrs, (), i_kwargs)
    children: dict[str, Any] = {"input": Persistent("SynthesisInput", i_state, src)}
    for layer in syn.layers():
        s = layer.spec
        params, buffers = _own(layer)
        buffers_all: dict[str, Any] = dict(buffers)
        for f in ("up_filter", "down_filter"):
            buffers_all.setdefault(f, None)
        attrs = dict(
            w_dim=cfg.w_dim, is_torgb=s.is_torgb, is_critically_sampled=s.is_critically_sampled,
            use_fp16=bool(s.out_sampling_rate * 2**4 > sc.img_resolution), in_channels=s.in_channels,
            out_channels=s.out_channels, in_size=np.broadcast_to(np.asarray(s.in_size), [2]),
            out_size=np.broadcast_to(np.asarray(s.out_size), [2]), in_sampling_rate=s.in_sampling_rate,
            out_sampling_rate=s.out_sampling_rate, tmp_sampling_rate=s.tmp_sampling_rate,
            in_cutoff=np.float64(s.in_cutoff), out_cutoff=np.float64(s.out_cutoff),
            in_half_width=np.float64(s.in_half_width), out_half_width=np.float64(s.out_half_width),
            conv_kernel=s.conv_kernel, conv_clamp=sc.conv_clamp, magnitude_ema_beta=0.999,
            up_factor=s.up_factor, up_taps=s.up_taps, down_factor=s.down_factor, down_taps=s.down_taps,
            down_radial=s.down_radial, padding=list(s.padding),
        )  # fmt: skip
        kwargs = dict(w_dim=cfg.w_dim, is_torgb=s.is_torgb, is_critically_sampled=s.is_critically_sampled,
                      in_channels=s.in_channels, out_channels=s.out_channels, in_size=s.in_size,
                      out_size=s.out_size, in_sampling_rate=s.in_sampling_rate,
                      out_sampling_rate=s.out_sampling_rate, conv_kernel=sc.conv_kernel,
                      use_radial_filters=sc.use_radial_filters, conv_clamp=sc.conv_clamp)  # fmt: skip
        aff = fc(layer.affine, cfg.w_dim, s.in_channels, dict(bias_init=1))
        state = module_state(params, {}, {"affine": aff}, attrs, (), kwargs)
        state["_buffers"] = OrderedDict(
            (n, None if b is None else b.detach().clone()) for n, b in buffers_all.items()
        )  # fmt: skip
        children[s.name] = Persistent("SynthesisLayer", state, src)
    syn_attrs = dict(w_dim=cfg.w_dim, num_ws=cfg.num_ws, img_resolution=cfg.img_resolution,
                     img_channels=cfg.img_channels, num_layers=sc.num_layers, num_critical=sc.num_critical,
                     margin_size=sc.margin_size, output_scale=sc.output_scale, num_fp16_res=4,
                     layer_names=list(syn.layer_names))  # fmt: skip
    syn_kwargs = {k: v for k, v in init_kwargs.items() if k not in ("z_dim", "c_dim", "mapping_kwargs")}
    synthesis = Persistent("SynthesisNetwork", module_state({}, {}, children, syn_attrs, (), syn_kwargs), src)

    mp = G.mapping
    mc = cfg.mapping
    m_children: dict[str, Any] = {}
    if cfg.c_dim > 0:
        m_children["embed"] = fc(mp.embed, cfg.c_dim, cfg.w_dim, {})
    feats = [cfg.z_dim + (cfg.w_dim if cfg.c_dim else 0)] + [cfg.w_dim] * mc.num_layers
    for i in range(mc.num_layers):
        kw = dict(activation="lrelu", lr_multiplier=mc.lr_multiplier, trainable=True)
        m_children[f"fc{i}"] = fc(getattr(mp, f"fc{i}"), feats[i], feats[i + 1], kw)
    m_params, m_buffers = _own(mp)
    m_attrs = dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_ws=cfg.num_ws,
                   num_layers=mc.num_layers, w_avg_beta=0.998, trainable_layers=mc.num_layers)  # fmt: skip
    m_kwargs = dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_ws=cfg.num_ws,
                    num_layers=mc.num_layers)  # fmt: skip
    mapping = Persistent("MappingNetwork", module_state(m_params, m_buffers, m_children, m_attrs, (), m_kwargs), src)
    g_attrs = dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                   img_channels=cfg.img_channels, num_ws=cfg.num_ws)  # fmt: skip
    g_state = module_state({}, {}, {"synthesis": synthesis, "mapping": mapping}, g_attrs, (), init_kwargs)
    return Persistent("Generator", g_state, src)


def official_sg3_snapshot(G_ema: GeneratorSG3, *, src: str, **init_extra: Any) -> dict[str, Any]:
    """The dict stylegan3's ``training_loop.py`` pickles (G, D, G_ema, augment_pipe, training_set_kwargs)."""
    kwargs = sg3_init_kwargs(G_ema, **init_extra)
    cfg = G_ema.cfg
    return dict(
        G=official_sg3_record(G_ema, src=src, init_kwargs=kwargs),
        D=discriminator_record(cfg.img_resolution, cfg.img_channels, src),
        G_ema=official_sg3_record(G_ema, src=src, init_kwargs=kwargs),
        augment_pipe=augment_pipe_record(src),
        training_set_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="/data/tiny.zip",
                                 use_labels=cfg.c_dim > 0, resolution=np.int64(cfg.img_resolution)),
    )  # fmt: skip


class Numpy1Pickler(pickle._Pickler):
    """The pure-Python pickler, naming numpy's modules as numpy 1.x does (``numpy.core.*``)."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", None) or ""
        if module.startswith("numpy._core"):
            legacy = "numpy.core" + module[len("numpy._core") :]
            name = name or obj.__qualname__
            if self.proto >= 4:
                self.save(legacy)
                self.save(name)
                self.write(pickle.STACK_GLOBAL)
            else:
                self.write(pickle.GLOBAL + f"{legacy}\n{name}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)


def dump_pickle(obj: Any, path: Path, *, protocol: int = 4, numpy1: bool = False) -> Path:
    """``pickle.dump`` as ``training_loop.py`` does (C pickler), or numpy-1.x-style names."""
    with official_modules(), path.open("wb") as f:
        if numpy1:
            Numpy1Pickler(f, protocol=protocol).dump(obj)
        else:
            pickle.dump(obj, f, protocol=protocol)
    return path


def official_snapshot(
    G_ema: Generator,
    G: Generator,
    *,
    flavor: str,
    src: str,
    channel_base: int,
    channel_max: int,
    include_conv_clamp: bool = True,
    channels_last_res: tuple[int, ...] = (),
) -> dict[str, Any]:
    """The dict ``training_loop.py`` pickles: G, D, G_ema, augment_pipe, training_set_kwargs."""
    kwargs = generator_init_kwargs(
        G_ema, flavor=flavor, channel_base=channel_base, channel_max=channel_max, include_conv_clamp=include_conv_clamp
    )
    cfg = G_ema.cfg
    training_set_kwargs = dict(
        class_name="training.dataset.ImageFolderDataset",
        path="/data/tiny.zip",
        use_labels=cfg.c_dim > 0,
        max_size=np.int64(1000),
        xflip=False,
        resolution=np.int64(cfg.img_resolution),
        random_seed=0,
        label_shape=np.array([cfg.c_dim], dtype=np.int64),
        mean=np.arange(3, dtype=np.float32) / 3,
        augment=EasyDict(xflip=1, strength=np.float32(0.5)),
    )
    return dict(
        G=official_generator_record(G, flavor=flavor, src=src, init_kwargs=kwargs),
        D=discriminator_record(cfg.img_resolution, cfg.img_channels, src),
        G_ema=official_generator_record(
            G_ema, flavor=flavor, src=src, init_kwargs=kwargs, channels_last_res=channels_last_res
        ),
        augment_pipe=augment_pipe_record(src),
        training_set_kwargs=training_set_kwargs,
    )


# ----------------------------------------------------------------------------
# rosinality/stylegan2-pytorch, re-implemented from its math.


def r_make_kernel(k: list[float]) -> torch.Tensor:
    t = torch.tensor(k, dtype=torch.float32)
    if t.ndim == 1:
        t = t[None, :] * t[:, None]
    return t / t.sum()


def r_upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """rosinality's ``upfirdn2d`` (``upfirdn2d_native``), NCHW: zero-stuff, pad both axes, convolve."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    kh, kw = kernel.shape
    wk = torch.flip(kernel, [0, 1]).reshape(1, 1, kh, kw)
    out = F.conv2d(x.reshape(-1, 1, x.shape[2], x.shape[3]), wk)
    return out.reshape(n, c, out.shape[2], out.shape[3])


def r_fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, slope: float = 0.2, scale: float = 2**0.5) -> torch.Tensor:
    return F.leaky_relu(x + bias.reshape(1, -1, *([1] * (x.ndim - 2))), negative_slope=slope) * scale


class RPixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class REqualLinear(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0, lr_mul: float = 1, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init))
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return r_fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class RBlur(nn.Module):
    def __init__(self, kernel: list[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", r_make_kernel(kernel) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return r_upfirdn2d(x, self.kernel, pad=self.pad)


class RUpsample(nn.Module):
    def __init__(self, kernel: list[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", r_make_kernel(kernel) * factor**2)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return r_upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class RModulatedConv2d(nn.Module):
    """The fused (grouped, per-sample weights) path of rosinality's ``ModulatedConv2d``."""

    def __init__(self, in_ch: int, out_ch: int, k: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, blur_kernel: list[float] | None = None):  # fmt: skip
        super().__init__()
        blur_kernel = blur_kernel or [1, 3, 3, 1]
        self.in_ch, self.out_ch, self.k = in_ch, out_ch, k
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (k - 1)
            self.blur = RBlur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_ch * k**2)
        self.padding = k // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, k, k))
        self.modulation = REqualLinear(style_dim, in_ch, bias_init=1)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_ch, h, w = x.shape
        s = self.modulation(style).view(batch, 1, in_ch, 1, 1)
        weight = self.scale * self.weight * s
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(batch, self.out_ch, 1, 1, 1)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * in_ch, self.out_ch, self.k, self.k)
            out = F.conv_transpose2d(x.view(1, batch * in_ch, h, w), weight, padding=0, stride=2, groups=batch)
            out = out.view(batch, self.out_ch, out.shape[2], out.shape[3])
            return self.blur(out)
        weight = weight.view(batch * self.out_ch, in_ch, self.k, self.k)
        out = F.conv2d(x.view(1, batch * in_ch, h, w), weight, padding=self.padding, groups=batch)
        return out.view(batch, self.out_ch, out.shape[2], out.shape[3])


class RNoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class RFusedLeakyReLU(nn.Module):
    def __init__(self, channel: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return r_fused_leaky_relu(x, self.bias)


class RStyledConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, k: int, style_dim: int, upsample: bool = False,
                 blur_kernel: list[float] | None = None):  # fmt: skip
        super().__init__()
        self.conv = RModulatedConv2d(in_ch, out_ch, k, style_dim, upsample=upsample, blur_kernel=blur_kernel)
        self.noise = RNoiseInjection()
        self.activate = RFusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class RToRGB(nn.Module):
    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True, blur_kernel: list[float] | None = None):
        super().__init__()
        if upsample:
            self.upsample = RUpsample(blur_kernel or [1, 3, 3, 1])
        self.conv = RModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class RConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class RosinalityGenerator(nn.Module):
    """rosinality's ``Generator`` with a configurable channel table (the real one is 512 up to 32 px)."""

    def __init__(self, size: int, style_dim: int, n_mlp: int, channels: dict[int, int], lr_mlp: float = 0.01,
                 blur_kernel: list[float] | None = None):  # fmt: skip
        super().__init__()
        blur_kernel = blur_kernel or [1, 3, 3, 1]
        self.size, self.style_dim = size, style_dim
        self.style = nn.Sequential(
            RPixelNorm(), *[REqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)]
        )
        self.input = RConstantInput(channels[4])
        self.conv1 = RStyledConv(channels[4], channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = RToRGB(channels[4], style_dim, upsample=False)
        self.log_size = int(math.log(size, 2))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2**res, 2**res))
        in_ch = channels[4]
        for i in range(3, self.log_size + 1):
            out_ch = channels[2**i]
            self.convs.append(RStyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(RStyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(RToRGB(out_ch, style_dim, blur_kernel=blur_kernel))
            in_ch = out_ch
        self.n_latent = self.log_size * 2 - 2

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``g_ema([z], randomize_noise=False)``: no truncation, the stored noise buffers."""
        latent = self.style(z).unsqueeze(1).repeat(1, self.n_latent, 1)
        noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        out = self.input(z.shape[0])
        out = self.conv1(out, latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        convs = list(self.convs)
        for conv1, conv2, n1, n2, to_rgb in zip(
            convs[::2], convs[1::2], noise[1::2], noise[2::2], self.to_rgbs, strict=True
        ):
            out = conv1(out, latent[:, i], n1)
            out = conv2(out, latent[:, i + 1], n2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip


def write_rosinality_pt(
    path: Path,
    g_ema: RosinalityGenerator,
    *,
    latent_avg: torch.Tensor | None,
    legacy: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """What rosinality's ``train.py`` (plus ``convert_weight.py``'s ``latent_avg``) saves."""
    g = randomize_(RosinalityGenerator(g_ema.size, g_ema.style_dim, len(g_ema.style) - 1,
                                       {4 * 2**i: c for i, c in enumerate(_channels(g_ema))}), seed=99)  # fmt: skip
    g.requires_grad_(True)
    d = {"convs.0.0.weight": torch.randn(8, 3, 1, 1), "convs.0.1.bias": torch.zeros(8),
         "final_linear.1.weight": torch.randn(1, 8), "final_linear.1.bias": torch.zeros(1)}  # fmt: skip
    g_optim = torch.optim.Adam(g.parameters(), lr=0.002, betas=(0.0, 0.99))
    for p in g.parameters():
        p.grad = torch.randn_like(p)
    g_optim.step()
    d_params = [nn.Parameter(t.clone()) for t in d.values()]
    d_optim = torch.optim.Adam(d_params, lr=0.002, betas=(0.0, 0.99))
    args = argparse.Namespace(
        path="/data/lmdb", iter=800000, batch=16, n_sample=64, size=g_ema.size, r1=10.0, path_regularize=2.0,
        path_batch_shrink=2, d_reg_every=16, g_reg_every=4, mixing=0.9, ckpt=None, lr=0.002, channel_multiplier=2,
        wandb=False, local_rank=0, augment=False, augment_p=0.0, ada_target=0.6, ada_length=500000, ada_every=256,
        distributed=False, latent=g_ema.style_dim, n_mlp=len(g_ema.style) - 1, start_iter=0,
    )  # fmt: skip
    ckpt: dict[str, Any] = {
        "g": g.state_dict(),
        "d": d,
        "g_ema": g_ema.state_dict(),
        "g_optim": g_optim.state_dict(),
        "d_optim": d_optim.state_dict(),
        "args": args,
        "ada_aug_p": 0.0,
    }
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg
    ckpt.update(extra or {})
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path


def _channels(g: RosinalityGenerator) -> list[int]:
    chans = [int(g.input.input.shape[1])]
    chans += [int(c.conv.weight.shape[1]) for c in list(g.convs)[::2]]
    return chans


# ----------------------------------------------------------------------------
# TensorFlow StyleGAN (v1) pickles: (G, D, Gs) of dnnlib.tflib.network.Network objects.


class TFNetwork:
    """Pickles like ``dnnlib.tflib.network.Network``: ``__getstate__`` is the official state layout.

    The official class pickles by the default object protocol (NEWOBJ of the class, then BUILD
    with the ``__getstate__`` dict): ``version``, ``name``, ``static_kwargs``, ``components``
    (Networks), ``build_module_src``, ``build_func_name`` and ``variables`` ((local name, numpy
    value) pairs of the network's own variables, sub-networks excluded).
    """

    def __init__(
        self,
        name: str,
        func: str,
        variables: dict[str, Any],
        *,
        static_kwargs: dict[str, Any] | None = None,
        components: dict[str, TFNetwork] | None = None,
        src: str = "",
        version: int = 3,
    ) -> None:
        self.state = dict(
            version=version,
            name=name,
            static_kwargs=dict(static_kwargs or {}),
            components=dict(components or {}),
            build_module_src=src,
            build_func_name=func,
            variables=list(variables.items()),
        )

    def __getstate__(self) -> dict[str, Any]:
        return self.state

    def __setstate__(self, state: dict[str, Any]) -> None:  # pragma: no cover - never unpickled by tests
        raise AssertionError("the stand-in TF Network must never be unpickled for real")


TFNetwork.__module__ = "dnnlib.tflib.network"
TFNetwork.__qualname__ = "Network"
TFNetwork.__name__ = "Network"


@contextlib.contextmanager
def tf_modules() -> Iterator[None]:
    """``dnnlib.tflib.network`` (and ``dnnlib.util.EasyDict``) stand-ins in ``sys.modules`` while pickling."""
    names = ["dnnlib", "dnnlib.util", "dnnlib.tflib", "dnnlib.tflib.network"]
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}
    mods["dnnlib"].util = mods["dnnlib.util"]  # type: ignore[attr-defined]
    mods["dnnlib"].tflib = mods["dnnlib.tflib"]  # type: ignore[attr-defined]
    mods["dnnlib"].EasyDict = EasyDict  # type: ignore[attr-defined]
    mods["dnnlib.util"].EasyDict = EasyDict  # type: ignore[attr-defined]
    mods["dnnlib.tflib"].network = mods["dnnlib.tflib.network"]  # type: ignore[attr-defined]
    mods["dnnlib.tflib.network"].Network = TFNetwork  # type: ignore[attr-defined]
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


TF_PAYLOAD_TEMPLATE = (
    "import os\n"
    "import pathlib\n"
    "pathlib.Path(r'{flag}').write_text('executed')\n"
    "os.system('touch {flag}')\n"
    "def G_style(*args, **kwargs):\n"
    "    raise RuntimeError('executed')\n"
)


def tf_stylegan_pickle(
    mapping_vars: dict[str, np.ndarray],
    synthesis_vars: dict[str, np.ndarray],
    dlatent_avg: np.ndarray | None,
    *,
    src: str,
    g_kwargs: dict[str, Any] | None = None,
    mapping_kwargs: dict[str, Any] | None = None,
    synthesis_kwargs: dict[str, Any] | None = None,
    prefix_names: bool = False,
    gs_func: str = "G_style",
    lod: float = 0.0,
) -> tuple[TFNetwork, TFNetwork, TFNetwork]:
    """``(G, D, Gs)`` as ``training_loop.py`` pickles them. ``prefix_names`` writes component
    variables as ``G_synthesis/4x4/...`` instead of the official relative names."""
    gk = dict(g_kwargs or {})

    def comps(tag: str) -> dict[str, TFNetwork]:
        def names(vs: dict[str, np.ndarray], net: str) -> dict[str, np.ndarray]:
            return {(f"{net}/{k}" if prefix_names else k): v for k, v in vs.items()}

        sv = dict(synthesis_vars)
        sv["lod"] = np.float32(lod)
        return {
            "synthesis": TFNetwork(
                "G_synthesis", "G_synthesis", names(sv, "G_synthesis"),
                static_kwargs={**gk, **(synthesis_kwargs or {})}, src=src + f"# {tag}\n",
            ),
            "mapping": TFNetwork(
                "G_mapping", "G_mapping", names(mapping_vars, "G_mapping"),
                static_kwargs={**gk, **(mapping_kwargs or {}), "dlatent_broadcast": None}, src=src,
            ),
        }  # fmt: skip

    own: dict[str, Any] = {"lod": np.float32(lod)}
    if dlatent_avg is not None:
        own["dlatent_avg"] = dlatent_avg
    G = TFNetwork("G", gs_func, own, static_kwargs=gk, components=comps("G"), src=src)
    Gs = TFNetwork("Gs", gs_func, dict(own), static_kwargs=gk, components=comps("Gs"), src=src)
    rng = np.random.RandomState(0)
    d_vars = {
        "lod": np.float32(lod),
        "FromRGB_lod0/weight": rng.randn(1, 1, 3, 8).astype(np.float32),
        "4x4/Dense1/bias": np.zeros(1, np.float32),
    }
    D = TFNetwork("D", "D_basic", d_vars, static_kwargs=dict(num_channels=3, resolution=32), src=src)
    return G, D, Gs


TF2_PAYLOAD_TEMPLATE = (
    "import os\n"
    "import pathlib\n"
    "pathlib.Path(r'{flag}').write_text('executed')\n"
    "os.system('touch {flag}')\n"
    "def G_main(*args, **kwargs):\n"
    "    raise RuntimeError('executed')\n"
)


def tf_stylegan2_pickle(
    mapping_vars: dict[str, np.ndarray],
    synthesis_vars: dict[str, np.ndarray],
    dlatent_avg: np.ndarray | None,
    *,
    src: str,
    g_kwargs: dict[str, Any] | None = None,
    synthesis_func: str = "G_synthesis_stylegan2",
    prefix_names: bool = False,
) -> tuple[TFNetwork, TFNetwork, TFNetwork]:
    """``(G, D, Gs)`` as NVlabs/stylegan2 ``training_loop.py`` pickles them (``tflib.Network`` version 4).

    ``G_main`` passes its kwargs to both components (``G_mapping`` also gets ``dlatent_broadcast``);
    the component variables are relative to their network (``Dense0/weight``, ``4x4/Const/const``,
    ``noise0``), ``Gs`` owns ``dlatent_avg``. ``prefix_names`` writes ``G_synthesis/4x4/...`` instead.
    """
    gk = dict(g_kwargs or {})
    num_layers = len([k for k in synthesis_vars if k.startswith("noise")]) + 1

    def comps(tag: str) -> dict[str, TFNetwork]:
        def names(vs: dict[str, np.ndarray], net: str) -> dict[str, np.ndarray]:
            return {(f"{net}/{k}" if prefix_names else k): v for k, v in vs.items()}

        return {
            "synthesis": TFNetwork(
                "G_synthesis", synthesis_func, names(dict(synthesis_vars), "G_synthesis"),
                static_kwargs=gk, src=src + f"# {tag}\n", version=4,
            ),
            "mapping": TFNetwork(
                "G_mapping", "G_mapping", names(dict(mapping_vars), "G_mapping"),
                static_kwargs={**gk, "dlatent_broadcast": num_layers}, src=src, version=4,
            ),
        }  # fmt: skip

    own: dict[str, Any] = {}
    if dlatent_avg is not None:
        own["dlatent_avg"] = dlatent_avg
    G = TFNetwork("G", "G_main", own, static_kwargs=gk, components=comps("G"), src=src, version=4)
    Gs = TFNetwork("Gs", "G_main", dict(own), static_kwargs=gk, components=comps("Gs"), src=src, version=4)
    rng = np.random.RandomState(0)
    d_vars = {
        "4x4/Conv/weight": rng.randn(3, 3, 8, 8).astype(np.float32),
        "Output/bias": np.zeros(1, np.float32),
    }
    D = TFNetwork("D", "D_stylegan2", d_vars, static_kwargs=dict(num_channels=3), src=src, version=4)
    return G, D, Gs


def dump_tf_pickle(obj: Any, path: Path, *, protocol: int = 4, numpy1: bool = False) -> Path:
    """``pickle.dump((G, D, Gs), f, protocol=pickle.HIGHEST_PROTOCOL)`` as the official ``misc.save_pkl``."""
    with tf_modules(), path.open("wb") as f:
        if numpy1:
            Numpy1Pickler(f, protocol=protocol).dump(obj)
        else:
            pickle.dump(obj, f, protocol=protocol)
    return path


# ----------------------------------------------------------------------------
# rosinality/style-based-gan-pytorch (StyleGAN v1): the StyledGenerator's state-dict layout and an
# independent forward pass written from its model.py (runtime-scaled weight_orig, F.instance_norm
# eps 1e-5, explicit nearest up-sampling / padded-averaged transposed conv, bias before the blur).


def _rv1_scale(w: torch.Tensor) -> float:
    return math.sqrt(2 / (w.size(1) * w[0][0].numel()))  # EqualLR.compute_weight


class _RV1Lin(nn.Module):
    def __init__(self, i: int, o: int) -> None:
        super().__init__()
        self.weight_orig = nn.Parameter(torch.randn(o, i))
        self.bias = nn.Parameter(torch.zeros(o))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_orig * _rv1_scale(self.weight_orig), self.bias)


class RV1EqualLinear(nn.Module):
    def __init__(self, i: int, o: int) -> None:
        super().__init__()
        self.linear = _RV1Lin(i, o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class _RV1Conv(nn.Module):
    def __init__(self, i: int, o: int, k: int, padding: int) -> None:
        super().__init__()
        self.weight_orig = nn.Parameter(torch.randn(o, i, k, k))
        self.bias = nn.Parameter(torch.zeros(o))
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight_orig * _rv1_scale(self.weight_orig), self.bias, padding=self.padding)


class RV1EqualConv2d(nn.Module):
    def __init__(self, i: int, o: int, k: int, padding: int = 0) -> None:
        super().__init__()
        self.conv = _RV1Conv(i, o, k, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class RV1FusedUpsample(nn.Module):
    def __init__(self, i: int, o: int, k: int, padding: int = 0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(i, o, k, k))
        self.bias = nn.Parameter(torch.zeros(o))
        self.multiplier = math.sqrt(2 / (i * k * k))
        self.pad = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.pad(self.weight * self.multiplier, [1, 1, 1, 1])
        w = (w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]) / 4
        return F.conv_transpose2d(x, w, self.bias, stride=2, padding=self.pad)


class RV1Blur(nn.Module):
    weight: torch.Tensor

    def __init__(self, channel: int) -> None:
        super().__init__()
        w = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float32).view(1, 1, 3, 3)
        w = w / w.sum()
        self.register_buffer("weight", w.repeat(channel, 1, 1, 1))
        self.register_buffer("weight_flip", torch.flip(w, [2, 3]).repeat(channel, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, padding=1, groups=x.shape[1])


class RV1Upsample(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest")


class RV1Noise(nn.Module):
    def __init__(self, channel: int) -> None:
        super().__init__()
        self.weight_orig = nn.Parameter(torch.zeros(1, channel, 1, 1))  # equal_lr(NoiseInjection)

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight_orig * _rv1_scale(self.weight_orig) * noise


class RV1AdaIN(nn.Module):
    def __init__(self, channel: int, style_dim: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channel)
        self.style = RV1EqualLinear(style_dim, channel * 2)
        self.style.linear.bias.data[:channel] = 1
        self.style.linear.bias.data[channel:] = 0

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(style).unsqueeze(2).unsqueeze(3).chunk(2, 1)
        return gamma * self.norm(x) + beta


class RV1Constant(nn.Module):
    def __init__(self, channel: int) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, 4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.input.repeat(x.shape[0], 1, 1, 1)


class RV1StyledConvBlock(nn.Module):
    def __init__(self, i: int, o: int, style_dim: int, initial: bool = False, fused: bool = False) -> None:
        super().__init__()
        self.conv1: nn.Module
        if initial:
            self.conv1 = RV1Constant(i)
        elif fused:
            self.conv1 = nn.Sequential(RV1FusedUpsample(i, o, 3, padding=1), RV1Blur(o))
        else:
            self.conv1 = nn.Sequential(RV1Upsample(), RV1EqualConv2d(i, o, 3, padding=1), RV1Blur(o))
        self.noise1, self.adain1, self.lrelu1 = RV1Noise(o), RV1AdaIN(o, style_dim), nn.LeakyReLU(0.2)
        self.conv2 = RV1EqualConv2d(o, o, 3, padding=1)
        self.noise2, self.adain2, self.lrelu2 = RV1Noise(o), RV1AdaIN(o, style_dim), nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.adain1(self.lrelu1(self.noise1(self.conv1(x), noise)), style)
        return self.adain2(self.lrelu2(self.noise2(self.conv2(out), noise)), style)


class RV1Generator(nn.Module):
    def __init__(self, channels: list[int], style_dim: int, img_channels: int, fused_from: int) -> None:
        super().__init__()
        blocks = [RV1StyledConvBlock(channels[0], channels[0], style_dim, initial=True)]
        for i in range(1, len(channels)):
            blocks.append(RV1StyledConvBlock(channels[i - 1], channels[i], style_dim, fused=4 * 2**i >= fused_from))
        self.progression = nn.ModuleList(blocks)
        self.to_rgb = nn.ModuleList([RV1EqualConv2d(c, img_channels, 1) for c in channels])

    def forward(
        self, styles: list[torch.Tensor], noise: list[torch.Tensor], step: int, mixing_range: tuple[int, int]
    ) -> torch.Tensor:
        """``Generator.forward`` at ``alpha=1`` with an explicit ``mixing_range`` (no random crossover)."""
        out = noise[0]
        for i, (conv, to_rgb) in enumerate(zip(self.progression, self.to_rgb, strict=True)):
            style_step = styles[1] if len(styles) > 1 and mixing_range[0] <= i <= mixing_range[1] else styles[0]
            out = conv(out, style_step, noise[i])
            if i == step:
                return to_rgb(out)  # type: ignore[no-any-return]
        raise AssertionError("step beyond the progression")


class RosinalityV1StyledGenerator(nn.Module):
    """``StyledGenerator`` with small channels: ``channels[i]`` at ``4 * 2**i`` px; ``fused_from`` px and
    up use ``FusedUpsample`` (rosinality: 128)."""

    def __init__(
        self, z_dim: int, n_mlp: int, channels: list[int], img_channels: int = 3, fused_from: int = 128
    ) -> None:
        super().__init__()
        self.generator = RV1Generator(channels, z_dim, img_channels, fused_from)
        layers: list[nn.Module] = [PixelNormV1()]
        for _ in range(n_mlp):
            layers += [RV1EqualLinear(z_dim, z_dim), nn.LeakyReLU(0.2)]
        self.style = nn.Sequential(*layers)
        self.z_dim = z_dim

    def forward(
        self,
        z: list[torch.Tensor],
        noise: list[torch.Tensor],
        step: int,
        mean_style: torch.Tensor | None = None,
        style_weight: float = 0.0,
        mixing_range: tuple[int, int] = (-1, -1),
    ) -> torch.Tensor:
        styles = [self.style(i) for i in z]
        if mean_style is not None:
            styles = [mean_style + style_weight * (s - mean_style) for s in styles]
        return self.generator(styles, noise, step, mixing_range)  # type: ignore[no-any-return]

    def mean_style(self, z: torch.Tensor) -> torch.Tensor:
        return self.style(z).mean(0, keepdim=True)  # type: ignore[no-any-return]


class PixelNormV1(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


def make_rosinality_v1(
    seed: int, *, z_dim: int = 16, n_mlp: int = 3, channels: list[int] | None = None, step: int = 3,
    fused_from: int = 128,
) -> RosinalityV1StyledGenerator:  # fmt: skip
    """Blocks ``0..step`` trained (random weights, biases, noise strengths); later blocks as initialised
    (noise weights zero), like a run stopped at ``4 * 2**step`` px."""
    channels = channels or [16, 16, 8, 8, 4]
    G = RosinalityV1StyledGenerator(z_dim, n_mlp, channels, fused_from=fused_from)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            m = re.match(r"generator\.(?:progression|to_rgb)\.(\d+)\.", name)
            if m and int(m.group(1)) > step:
                continue
            if name.endswith(("weight_orig", "weight", "input")) and "noise" not in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif "noise" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            else:  # Biases: AdaIN gamma around 1, the rest around 0; large enough to show the border blur.
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
        # A small constant and first noise: block 0's variance ~1e-5, where InstanceNorm's eps 1e-5 matters.
        G.generator.progression[0].conv1.input.mul_(3e-3)  # type: ignore[union-attr, operator]
        G.generator.progression[0].noise1.weight_orig.mul_(3e-3)  # type: ignore[union-attr, operator]
        for rgb in G.generator.to_rgb:
            rgb.conv.weight_orig.mul_(0.1)  # type: ignore[union-attr, operator]  # Images of order 1.
    return G.eval().requires_grad_(False)


def rosinality_v1_noise(G: RosinalityV1StyledGenerator, planes: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-block noise ``[1, 1, r, r]`` for the reference: the given planes, zeros for the rest."""
    out = list(planes)
    for i in range(len(planes), len(G.generator.progression)):
        out.append(torch.zeros(1, 1, 4 * 2**i, 4 * 2**i))
    return out


def write_rosinality_v1(
    path: Path,
    g_running: RosinalityV1StyledGenerator,
    *,
    layout: str = "phase",
    legacy: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """``layout``: ``"phase"`` (``train.py`` at the end of a phase: generator, discriminator, optimisers,
    g_running), ``"bare"`` (the periodic ``g_running.state_dict()``), ``"generator-only"``."""
    sd = g_running.state_dict()
    if layout == "bare":
        obj: Any = sd
    else:
        g = copy.deepcopy(g_running).requires_grad_(True)
        with torch.no_grad():
            for p in g.parameters():
                p.add_(0.01)
        g_optim = torch.optim.Adam(g.generator.parameters(), lr=0.001, betas=(0.0, 0.99))
        g_optim.add_param_group({"params": g.style.parameters(), "lr": 0.001 * 0.01, "mult": 0.01})
        for p in g.parameters():
            p.grad = torch.randn_like(p)
        g_optim.step()
        d = {"progression.0.conv1.0.conv.weight_orig": torch.randn(4, 3, 3, 3), "linear.linear.bias": torch.zeros(1)}
        obj = {"generator": g.state_dict(), "discriminator": d, "g_optimizer": g_optim.state_dict(), "d_optimizer": {}}
        if layout == "phase":
            obj["g_running"] = sd
        else:  # "generator-only": the raw weights are the ones compared.
            obj["generator"] = sd
    if extra:
        obj = dict(obj)
        obj.update(extra)
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path
