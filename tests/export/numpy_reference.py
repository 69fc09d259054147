"""An independent pure-numpy (float64) reference of the official NVlabs StyleGAN2 generator.

Written from the official sources (stylegan3 ``training/networks_stylegan2.py`` and
``torch_utils/ops/{upfirdn2d,conv2d_resample,bias_act}.py``; stylegan2-ada-pytorch
``training/networks.py`` computes the same function), *not* from ``styleserve.export.networks``.
Wherever the official code offers two routes, this module takes the one our torch code does not:

* ``upfirdn2d`` is the official ``_upfirdn2d_ref`` definition done by hand: zero insertion,
  zero padding / cropping, then an explicit loop over the filter taps (a true convolution, the
  official ``flip_filter=False``), with the 2-D gain ``gain ** (ndim / 2)`` on the taps.
* ``conv2d_resample`` always takes the official *generic fallback*: ``upfirdn2d(x, f, up, padding,
  gain=up**2)`` followed by a plain convolution over sliding windows, the weight flipped when
  ``flip_weight=False`` (true convolution). Our torch code uses the transposed-conv fast path.
* ``modulated_conv2d`` is the official fused form: per-sample weights ``weight * styles``,
  demodulated by ``(sum w^2 + 1e-8) ** -0.5`` over ``[I, kh, kw]``, then a per-sample convolution.
  Our torch code (by default) scales activations instead.
* Which ``w`` feeds which layer is a closed-form index here (see :func:`layer_w_index`), while
  :func:`official_ws_table` simulates the official ``ws.narrow`` bookkeeping; a test checks both.

Only the parts the official ``Generator`` uses are implemented (activations linear / relu / lrelu).
The config is a plain dict of the official constructor keyword arguments, see :data:`DEFAULTS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

DEFAULTS: dict[str, Any] = {
    # Generator(...)
    "z_dim": 512,
    "c_dim": 0,
    "w_dim": 512,
    "img_resolution": 1024,
    "img_channels": 3,
    # mapping_kwargs
    "mapping_layers": 8,  # MappingNetwork(num_layers=...)
    "lr_multiplier": 0.01,
    "embed_features": None,
    "layer_features": None,
    "mapping_activation": "lrelu",
    # synthesis_kwargs
    "channel_base": 32768,
    "channel_max": 512,
    "architecture": "skip",
    "conv_clamp": None,
    "resample_filter": (1, 3, 3, 1),
    "kernel_size": 3,
    "activation": "lrelu",
}

# The official bias_act table, restricted to what the generator uses: name -> (def_gain, def_alpha).
ACT_TABLE: dict[str, tuple[float, float]] = {
    "linear": (1.0, 0.0),
    "relu": (math.sqrt(2.0), 0.0),
    "lrelu": (math.sqrt(2.0), 0.2),
}

Array = np.ndarray


def full_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise KeyError(f"unknown config keys {sorted(unknown)}")
    out = dict(DEFAULTS)
    out.update(cfg)
    return out


def block_resolutions(cfg: Mapping[str, Any]) -> list[int]:
    log2 = round(math.log2(cfg["img_resolution"]))
    assert 2**log2 == cfg["img_resolution"] and log2 >= 2
    return [2**i for i in range(2, log2 + 1)]


def channels_dict(cfg: Mapping[str, Any]) -> dict[int, int]:
    """The official ``{res: min(channel_base // res, channel_max)}``."""
    cfg = full_config(cfg)
    return {res: min(cfg["channel_base"] // res, cfg["channel_max"]) for res in block_resolutions(cfg)}


def num_ws(cfg: Mapping[str, Any]) -> int:
    """Official count: the sum of every block's ``num_conv`` plus the last block's ``num_torgb``."""
    n = 0
    for res in block_resolutions(cfg):
        n += 1 if res == 4 else 2
    return n + 1


def _to_f64(v: Any) -> Array:
    if hasattr(v, "detach"):  # a torch tensor; keep this module importable without torch
        v = v.detach().cpu().numpy()
    return np.array(v, dtype=np.float64)


# ----------------------------------------------------------------------------
# The structure of an official G_ema.state_dict().


def official_state_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer name of the official ``Generator`` with its shape."""
    cfg = full_config(cfg)
    shapes: dict[str, tuple[int, ...]] = {}
    k = cfg["kernel_size"]
    taps = len(cfg["resample_filter"])
    fshape = (taps,) if taps >= 8 else (taps, taps)  # official setup_filter: separable iff >= 8 taps
    ch = channels_dict(cfg)
    for res in block_resolutions(cfg):
        pre = f"synthesis.b{res}."
        in_ch = ch[res // 2] if res > 4 else 0
        out_ch = ch[res]
        shapes[pre + "resample_filter"] = fshape
        if in_ch == 0:
            shapes[pre + "const"] = (out_ch, res, res)
        convs = [("conv1", out_ch)] if in_ch == 0 else [("conv0", in_ch), ("conv1", out_ch)]
        for name, cin in convs:
            lp = pre + name + "."
            shapes[lp + "weight"] = (out_ch, cin, k, k)
            shapes[lp + "noise_strength"] = ()
            shapes[lp + "bias"] = (out_ch,)
            shapes[lp + "resample_filter"] = fshape
            shapes[lp + "noise_const"] = (res, res)
            shapes[lp + "affine.weight"] = (cin, cfg["w_dim"])
            shapes[lp + "affine.bias"] = (cin,)
        if res == cfg["img_resolution"] or cfg["architecture"] == "skip":
            shapes[pre + "torgb.weight"] = (cfg["img_channels"], out_ch, 1, 1)
            shapes[pre + "torgb.bias"] = (cfg["img_channels"],)
            shapes[pre + "torgb.affine.weight"] = (out_ch, cfg["w_dim"])
            shapes[pre + "torgb.affine.bias"] = (out_ch,)
        if in_ch != 0 and cfg["architecture"] == "resnet":
            shapes[pre + "skip.weight"] = (out_ch, in_ch, 1, 1)
            shapes[pre + "skip.resample_filter"] = fshape
    embed = (cfg["embed_features"] or cfg["w_dim"]) if cfg["c_dim"] > 0 else 0
    hidden = cfg["layer_features"] or cfg["w_dim"]
    feats = [cfg["z_dim"] + embed] + [hidden] * (cfg["mapping_layers"] - 1) + [cfg["w_dim"]]
    if cfg["c_dim"] > 0:
        shapes["mapping.embed.weight"] = (embed, cfg["c_dim"])
        shapes["mapping.embed.bias"] = (embed,)
    for i in range(cfg["mapping_layers"]):
        shapes[f"mapping.fc{i}.weight"] = (feats[i + 1], feats[i])
        shapes[f"mapping.fc{i}.bias"] = (feats[i + 1],)
    shapes["mapping.w_avg"] = (cfg["w_dim"],)
    return shapes


def official_ws_table(cfg: Mapping[str, Any]) -> list[list[str]]:
    """Which layers each ws index feeds, by simulating the official ``SynthesisNetwork.forward``:
    ``block_ws = ws.narrow(1, w_idx, num_conv + num_torgb); w_idx += num_conv`` and the block
    consuming its ws in order conv0, conv1, torgb."""
    cfg = full_config(cfg)
    table: list[list[str]] = [[] for _ in range(num_ws(cfg))]
    w_idx = 0
    for res in block_resolutions(cfg):
        layers = ["conv1"] if res == 4 else ["conv0", "conv1"]
        num_conv = len(layers)
        if res == cfg["img_resolution"] or cfg["architecture"] == "skip":
            layers.append("torgb")
        for j, name in enumerate(layers):
            table[w_idx + j].append(f"b{res}.{name}")
        w_idx += num_conv
    return table


def layer_w_index(res: int, layer: str) -> int:
    """Closed form of the official ws bookkeeping: block ``2**k`` starts at ws index ``2k - 5``
    (the 4x4 block at 0) and its torgb shares the index after its last conv."""
    if res == 4:
        return {"conv1": 0, "torgb": 1}[layer]
    k = round(math.log2(res))
    return 2 * k - 5 + {"conv0": 0, "conv1": 1, "torgb": 2}[layer]


def noise_layer_names(cfg: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The conv (noise) layers in forward order with their resolutions."""
    out: list[tuple[str, int]] = []
    for res in block_resolutions(cfg):
        for name in ["conv1"] if res == 4 else ["conv0", "conv1"]:
            out.append((f"b{res}.{name}", res))
    return out


# ----------------------------------------------------------------------------
# Ops.


def setup_filter(taps: Sequence[float]) -> Array:
    """Official ``setup_filter`` for a short 1-D filter: outer product, normalised to sum 1."""
    t = np.asarray(taps, dtype=np.float64)
    f = t[:, None] * t[None, :] if t.ndim == 1 else t
    return f / f.sum()


def bias_act(
    x: Array, b: Array | None, act: str = "linear", gain: float | None = None, clamp: float | None = None
) -> Array:
    """Official ``_bias_act_ref``: + bias (dim 1) -> activation -> * gain -> clamp."""
    def_gain, alpha = ACT_TABLE[act]
    if b is not None:
        x = x + b.reshape((1, -1) + (1,) * (x.ndim - 2))
    if act == "lrelu":
        x = np.where(x > 0, x, alpha * x)
    elif act == "relu":
        x = np.maximum(x, 0.0)
    g = def_gain if gain is None else float(gain)
    x = x * g
    if clamp is not None:
        assert clamp >= 0
        x = np.clip(x, -clamp, clamp)
    return x


def upfirdn2d(
    x: Array, f: Array | None, up: int = 1, padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0
) -> Array:
    """Official ``_upfirdn2d_ref`` with ``down=1, flip_filter=False``; padding ``[x0, x1, y0, y1]``.

    1. insert ``up - 1`` zeros after every pixel, 2. pad with zeros (negative = crop),
    3. convolve (true convolution) with ``f * gain ** (f.ndim / 2)``, valid part only.
    """
    if f is None:
        f = np.ones((1, 1))
    N, C, H, W = x.shape
    fh, fw = f.shape
    px0, px1, py0, py1 = (int(p) for p in padding)
    u = np.zeros((N, C, H * up, W * up), dtype=np.float64)
    u[:, :, ::up, ::up] = x
    u = np.pad(u, ((0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
    u = u[:, :, max(-py0, 0) : u.shape[2] - max(-py1, 0), max(-px0, 0) : u.shape[3] - max(-px1, 0)]
    taps = np.asarray(f, dtype=np.float64) * gain ** (f.ndim / 2)
    Ho, Wo = u.shape[2] - fh + 1, u.shape[3] - fw + 1
    assert Ho >= 1 and Wo >= 1
    out = np.zeros((N, C, Ho, Wo), dtype=np.float64)
    # out[i, j] = sum_{a, b} taps[a, b] * u[i + fh - 1 - a, j + fw - 1 - b]   (convolution)
    for a in range(fh):
        for b in range(fw):
            ya, xb = fh - 1 - a, fw - 1 - b
            out += taps[a, b] * u[:, :, ya : ya + Ho, xb : xb + Wo]
    return out


def upsample2d(x: Array, f: Array, up: int = 2) -> Array:
    """Official ``upsample2d``: padding ``(fw + up - 1) // 2, (fw - up) // 2`` and gain ``up ** 2``."""
    fh, fw = f.shape
    p = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=up * up)


def _conv_valid(x: Array, w: Array, flip_weight: bool) -> Array:
    """Unpadded convolution over sliding windows. ``w`` is ``[O, I, kh, kw]`` (shared) or
    ``[N, O, I, kh, kw]`` (per sample). flip_weight=True: correlation (torch conv2d);
    False: true convolution, i.e. the kernel flipped in both spatial axes."""
    kh, kw = w.shape[-2:]
    if not flip_weight:
        w = w[..., ::-1, ::-1]
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))  # [N, I, Ho, Wo, kh, kw]
    if w.ndim == 4:
        return np.einsum("nihwab,oiab->nohw", win, w, optimize=True)
    return np.einsum("nihwab,noiab->nohw", win, w, optimize=True)


def conv2d_resample(
    x: Array, w: Array, f: Array | None, up: int = 1, padding: int = 0, flip_weight: bool = True
) -> Array:
    """Official ``conv2d_resample`` through its generic fallback route (``down = 1``)."""
    if up > 1:
        assert f is not None
        fh, fw = f.shape
        p = [
            padding + (fw + up - 1) // 2,
            padding + (fw - up) // 2,
            padding + (fh + up - 1) // 2,
            padding + (fh - up) // 2,
        ]
        x = upfirdn2d(x, f, up=up, padding=p, gain=up**2)
    else:
        x = upfirdn2d(x, None, padding=[padding] * 4)
    return _conv_valid(x, w, flip_weight)


def modulated_conv2d(
    x: Array,
    weight: Array,
    styles: Array,
    demodulate: bool = True,
    up: int = 1,
    padding: int = 0,
    resample_filter: Array | None = None,
    flip_weight: bool = True,
) -> Array:
    """Official ``modulated_conv2d`` in its fused form: per-sample (de)modulated weights."""
    wn = weight[None] * styles[:, None, :, None, None]  # [N, O, I, kh, kw]
    if demodulate:
        dcoefs = 1.0 / np.sqrt(np.sum(wn * wn, axis=(2, 3, 4)) + 1e-8)  # [N, O]
        wn = wn * dcoefs[:, :, None, None, None]
    return conv2d_resample(x, wn, resample_filter, up=up, padding=padding, flip_weight=flip_weight)


def normalize_2nd_moment(x: Array, eps: float = 1e-8) -> Array:
    return x / np.sqrt(np.mean(x * x, axis=1, keepdims=True) + eps)


def fully_connected(
    x: Array, weight: Array, bias: Array | None, lr_multiplier: float = 1.0, act: str = "linear"
) -> Array:
    """Official ``FullyConnectedLayer``: weight * lr / sqrt(in), bias * lr, then bias_act."""
    w = weight * (lr_multiplier / np.sqrt(weight.shape[1]))
    b = None if bias is None else bias * lr_multiplier
    return bias_act(x @ w.T, b, act=act)


# ----------------------------------------------------------------------------
# Networks.


def reference_mapping(state: Mapping[str, Any], cfg: Mapping[str, Any], z: Any, c: Any = None) -> Array:
    """Official ``MappingNetwork`` up to (not including) broadcast and truncation. ``# [N, w_dim]``"""
    cfg = full_config(cfg)

    def p(name: str) -> Array:
        return _to_f64(state[f"mapping.{name}"])

    parts = []
    if cfg["z_dim"] > 0:
        parts.append(normalize_2nd_moment(_to_f64(z).astype(np.float32).astype(np.float64)))
    if cfg["c_dim"] > 0:
        assert c is not None, "conditional mapping needs c"
        y = fully_connected(_to_f64(c), p("embed.weight"), p("embed.bias"))
        parts.append(normalize_2nd_moment(y))
    x = np.concatenate(parts, axis=1)
    for i in range(cfg["mapping_layers"]):
        x = fully_connected(
            x, p(f"fc{i}.weight"), p(f"fc{i}.bias"), lr_multiplier=cfg["lr_multiplier"], act=cfg["mapping_activation"]
        )
    return x


def reference_truncate(ws: Array, w_avg: Array, psi: float, cutoff: int | None = None) -> Array:
    """``w_avg.lerp(ws, psi)`` on all ws (cutoff None) or on ``ws[:, :cutoff]``."""
    ws = np.array(ws, dtype=np.float64, copy=True)
    if psi == 1:
        return ws
    stop = ws.shape[1] if cutoff is None else cutoff
    ws[:, :stop] = w_avg + psi * (ws[:, :stop] - w_avg)
    return ws


def reference_ws(
    state: Mapping[str, Any],
    cfg: Mapping[str, Any],
    z: Any,
    c: Any = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
) -> Array:
    """Official mapping output: broadcast to ``[N, num_ws, w_dim]`` and truncated."""
    w = reference_mapping(state, cfg, z, c)
    ws = np.repeat(w[:, None, :], num_ws(cfg), axis=1)
    return reference_truncate(ws, _to_f64(state["mapping.w_avg"]), truncation_psi, truncation_cutoff)


def reference_synthesis(
    state: Mapping[str, Any],
    cfg: Mapping[str, Any],
    ws: Any,
    noise_mode: str = "const",
    noises: Sequence[Any] | None = None,
) -> Array:
    """Official ``SynthesisNetwork`` (fp32 semantics, no fp16). ``# [N, img_channels, R, R]``

    ``noise_mode``: 'const' (the ``noise_const`` buffers), 'none', or 'random' with ``noises``
    given: one raw standard-normal array per conv layer (forward order, see
    :func:`noise_layer_names`), broadcastable to ``[N, 1, res, res]`` or None; it stands for the
    official ``torch.randn([N, 1, res, res])`` draw and gets scaled by ``noise_strength``.
    """
    cfg = full_config(cfg)
    if noises is not None:
        noise_mode = "random"
    assert noise_mode in ("const", "none", "random")
    if noise_mode == "random":
        assert noises is not None and len(noises) == len(noise_layer_names(cfg))
    ws = _to_f64(ws)
    N = ws.shape[0]
    assert ws.shape == (N, num_ws(cfg), cfg["w_dim"]), ws.shape
    f = setup_filter(cfg["resample_filter"])
    k = cfg["kernel_size"]
    clamp = cfg["conv_clamp"]
    act = cfg["activation"]
    act_gain = ACT_TABLE[act][0]

    def p(name: str) -> Array:
        return _to_f64(state[f"synthesis.{name}"])

    def noise_for(res: int, layer: str) -> Array | None:
        pre = f"b{res}.{layer}."
        if f"synthesis.{pre}noise_const" not in state or noise_mode == "none":
            return None
        if noise_mode == "const":
            raw = p(pre + "noise_const")  # [res, res], broadcast over batch and channels
        else:
            n = noises[layer_w_index(res, layer)]  # type: ignore[index]  # noise index == w index
            if n is None:
                return None
            raw = _to_f64(n)
        return raw * p(pre + "noise_strength")

    def synthesis_layer(res: int, layer: str, x: Array, up: int, gain: float = 1.0) -> Array:
        pre = f"b{res}.{layer}."
        w = ws[:, layer_w_index(res, layer)]
        styles = fully_connected(w, p(pre + "affine.weight"), p(pre + "affine.bias"))
        x = modulated_conv2d(
            x,
            p(pre + "weight"),
            styles,
            demodulate=True,
            up=up,
            padding=k // 2,
            resample_filter=f,
            flip_weight=(up == 1),
        )
        noise = noise_for(res, layer)
        if noise is not None:
            x = x + noise
        return bias_act(
            x, p(pre + "bias"), act=act, gain=act_gain * gain, clamp=None if clamp is None else clamp * gain
        )

    def torgb(res: int, x: Array) -> Array:
        pre = f"b{res}.torgb."
        weight = p(pre + "weight")
        w = ws[:, layer_w_index(res, "torgb")]
        styles = fully_connected(w, p(pre + "affine.weight"), p(pre + "affine.bias"))
        styles = styles / np.sqrt(weight.shape[1] * weight.shape[2] * weight.shape[3])
        y = modulated_conv2d(x, weight, styles, demodulate=False)
        return bias_act(y, p(pre + "bias"), act="linear", clamp=clamp)

    def skip(res: int, x: Array, gain: float) -> Array:
        weight = p(f"b{res}.skip.weight")
        weight = weight / np.sqrt(weight.shape[1] * weight.shape[2] * weight.shape[3])
        y = conv2d_resample(x, weight, f, up=2, padding=weight.shape[2] // 2, flip_weight=False)
        return bias_act(y, None, act="linear", gain=gain)  # the skip layer has no conv_clamp

    x: Array | None = None
    img: Array | None = None
    for res in block_resolutions(cfg):
        is_last = res == cfg["img_resolution"]
        if res == 4:
            const = p("b4.const")
            x = np.broadcast_to(const[None], (N, *const.shape)).copy()
            x = synthesis_layer(4, "conv1", x, up=1)
        elif cfg["architecture"] == "resnet":
            assert x is not None
            y = skip(res, x, gain=np.sqrt(0.5))
            x = synthesis_layer(res, "conv0", x, up=2)
            x = synthesis_layer(res, "conv1", x, up=1, gain=np.sqrt(0.5))
            x = y + x
        else:
            assert x is not None
            x = synthesis_layer(res, "conv0", x, up=2)
            x = synthesis_layer(res, "conv1", x, up=1)
        if img is not None:
            img = upsample2d(img, f)
        if is_last or cfg["architecture"] == "skip":
            y = torgb(res, x)
            img = y if img is None else img + y
    assert img is not None
    return img


def reference_generator(
    state: Mapping[str, Any],
    cfg: Mapping[str, Any],
    z: Any,
    c: Any = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    noises: Sequence[Any] | None = None,
) -> Array:
    """Official ``Generator.forward(z, c, truncation_psi, truncation_cutoff, noise_mode=...)``."""
    ws = reference_ws(state, cfg, z, c, truncation_psi, truncation_cutoff)
    return reference_synthesis(state, cfg, ws, noise_mode=noise_mode, noises=noises)
