"""An independent pure-numpy (float64) reference of the official NVlabs StyleGAN3 generator (configs T, R).

Written from the official sources (stylegan3 ``training/networks_stylegan3.py``, ``gen_images.py`` and
``torch_utils/ops/{filtered_lrelu,upfirdn2d,bias_act}.py``), *not* from
``styleserve.export.networks_sg3``. Wherever the official code offers two routes, this module takes
the one the torch code does not:

* ``modulated_conv2d`` is the official fused form: per-sample weights, pre-normalised with the
  styles' RMS over the *whole batch* (``s.square().mean()``, as the official code does), demodulated,
  times the input gain, then a per-sample convolution over explicit sliding windows.
* ``filtered_lrelu`` is the official ``_filtered_lrelu_ref``: bias, ``upfirdn2d`` with the 2-D filter
  (the outer product of a separable one, explicit tap loop from ``numpy_reference``), ``bias_act``
  (lrelu, gain, clamp), ``upfirdn2d`` at full rate and then every ``down``-th pixel.
* ``SynthesisInput`` builds ``m_r @ m_t @ transform`` as explicit matrices and the sampling grid
  with the ``affine_grid(align_corners=False)`` formula ``linspace(-1, 1, n) * (n - 1) / n`` and theta.
* Filter design: ``scipy.signal.firwin``'s formula with ``np.kaiser``, and the Bessel function
  ``J1`` of the radial filter from its integral (Bessel's integral, trapezoid rule over a period).
* Layer sizes are computed as the official code does, with ``[width, height]`` arrays.

The config is a plain dict of the official ``Generator`` keyword arguments (see :data:`DEFAULTS`).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _load_sg2_reference() -> Any:
    name = "styleserve_tests_numpy_reference"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("numpy_reference.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sg2 = _load_sg2_reference()  # upfirdn2d, bias_act, fully_connected, mapping, truncation, _conv_valid
Array = np.ndarray

DEFAULTS: dict[str, Any] = {
    # Generator(...)
    "z_dim": 512,
    "c_dim": 0,
    "w_dim": 512,
    "img_resolution": 1024,
    "img_channels": 3,
    "mapping_layers": 2,  # mapping_kwargs.num_layers (train.py --map, 2 for stylegan3)
    # SynthesisNetwork(...)
    "channel_base": 32768,
    "channel_max": 512,
    "num_layers": 14,
    "num_critical": 2,
    "first_cutoff": 2,
    "first_stopband": 2**2.1,
    "last_stopband_rel": 2**0.3,
    "margin_size": 10,
    "output_scale": 0.25,
    # SynthesisLayer(...)
    "conv_kernel": 3,
    "filter_size": 6,
    "lrelu_upsampling": 2,
    "use_radial_filters": False,
    "conv_clamp": 256,
}


def full_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise KeyError(f"unknown config keys {sorted(unknown)}")
    out = dict(DEFAULTS)
    out.update(cfg)
    return out


def train_config(cfg_name: str, **kwargs: Any) -> dict[str, Any]:
    """The kwargs of official ``train.py --cfg stylegan3-t|r`` (R: 1x1 convs, doubled channels, radial filters)."""
    cfg = full_config(kwargs)
    if cfg_name == "R":
        cfg.update(conv_kernel=1, use_radial_filters=True)
        cfg["channel_base"] *= 2
        cfg["channel_max"] *= 2
    return cfg


def num_ws(cfg: Mapping[str, Any]) -> int:
    return int(full_config(cfg)["num_layers"]) + 2


# ----------------------------------------------------------------------------
# Filter design.


def bessel_j1(x: Array, points: int = 512) -> Array:
    """J1 by Bessel's integral ``(1 / 2pi) int_{-pi}^{pi} cos(x sin t - t) dt`` (trapezoid over a period)."""
    t = np.arange(points) * (2 * np.pi / points) - np.pi
    return np.mean(np.cos(np.multiply.outer(x, np.sin(t)) - t), axis=-1)


def firwin_kaiser(numtaps: int, cutoff: float, width: float, fs: float) -> Array:
    """``scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)`` (Kaiser window, unit DC gain)."""
    nyq = fs / 2
    atten = 2.285 * (numtaps - 1) * np.pi * (width / nyq) + 7.95  # kaiser_atten
    beta = (
        0.1102 * (atten - 8.7)
        if atten > 50
        else (0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21) if atten > 21 else 0.0)
    )
    m = np.arange(numtaps) - 0.5 * (numtaps - 1)
    h = (cutoff / nyq) * np.sinc((cutoff / nyq) * m) * np.kaiser(numtaps, beta)
    return h / np.sum(h)


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> Array | None:
    """The official ``SynthesisLayer.design_lowpass_filter`` (float32 values, as the buffers hold)."""
    if numtaps == 1:
        return None
    if not radial:
        return firwin_kaiser(numtaps, cutoff, width, fs).astype(np.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = bessel_j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    atten = 2.285 * (numtaps - 1) * np.pi * (width / (fs / 2)) + 7.95
    beta = (
        0.1102 * (atten - 8.7)
        if atten > 50
        else (0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21) if atten > 21 else 0.0)
    )
    w = np.kaiser(numtaps, beta)
    f = f * np.outer(w, w)
    return (f / np.sum(f)).astype(np.float32)


# ----------------------------------------------------------------------------
# Layout.


def layout(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The official ``SynthesisNetwork.__init__`` / ``SynthesisLayer.__init__`` bookkeeping: the input's
    and every layer's attributes (names, sizes as ``[w, h]`` arrays, rates, factors, taps, padding, filters)."""
    cfg = full_config(cfg)
    res, nl, ncrit = cfg["img_resolution"], cfg["num_layers"], cfg["num_critical"]
    last_cutoff = res / 2
    last_stopband = last_cutoff * cfg["last_stopband_rel"]
    exponents = np.minimum(np.arange(nl + 1) / (nl - ncrit), 1)
    cutoffs = cfg["first_cutoff"] * (last_cutoff / cfg["first_cutoff"]) ** exponents
    stopbands = cfg["first_stopband"] * (last_stopband / cfg["first_stopband"]) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + cfg["margin_size"] * 2
    sizes[-2:] = res
    channels = np.rint(np.minimum((cfg["channel_base"] / 2) / cutoffs, cfg["channel_max"]))
    channels[-1] = cfg["img_channels"]
    inp = dict(channels=int(channels[0]), size=np.broadcast_to(np.asarray(int(sizes[0])), [2]),
               sampling_rate=sampling_rates[0], bandwidth=cutoffs[0])  # fmt: skip
    layers = []
    for idx in range(nl + 1):
        prev = max(idx - 1, 0)
        is_torgb = idx == nl
        critical = idx >= nl - ncrit
        in_size = np.broadcast_to(np.asarray(int(sizes[prev])), [2])
        out_size = np.broadcast_to(np.asarray(int(sizes[idx])), [2])
        in_rate, out_rate = int(sampling_rates[prev]), int(sampling_rates[idx])
        tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else cfg["lrelu_upsampling"])
        k = 1 if is_torgb else cfg["conv_kernel"]
        up = int(np.rint(tmp_rate / in_rate))
        assert in_rate * up == tmp_rate
        up_taps = cfg["filter_size"] * up if up > 1 and not is_torgb else 1
        down = int(np.rint(tmp_rate / out_rate))
        assert out_rate * down == tmp_rate
        down_taps = cfg["filter_size"] * down if down > 1 and not is_torgb else 1
        down_radial = cfg["use_radial_filters"] and not critical
        pad_total = (out_size - 1) * down + 1
        pad_total = pad_total - (in_size + k - 1) * up
        pad_total = pad_total + up_taps + down_taps - 2
        pad_lo = (pad_total + up) // 2
        pad_hi = pad_total - pad_lo
        layers.append(dict(
            name=f"L{idx}_{out_size[0]}_{int(channels[idx])}", is_torgb=is_torgb,
            in_channels=int(channels[prev]), out_channels=int(channels[idx]), in_size=in_size, out_size=out_size,
            conv_kernel=k, up=up, down=down,
            padding=[int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])],
            up_filter=design_lowpass_filter(up_taps, cutoffs[prev], half_widths[prev] * 2, tmp_rate),
            down_filter=design_lowpass_filter(down_taps, cutoffs[idx], half_widths[idx] * 2, tmp_rate, down_radial),
        ))  # fmt: skip
    return inp, layers


def official_state_shapes(cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the official ``Generator(...).state_dict()`` (None buffers have no key)."""
    cfg = full_config(cfg)
    inp, layers = layout(cfg)
    w, c = cfg["w_dim"], inp["channels"]
    shapes: dict[str, tuple[int, ...]] = {
        "synthesis.input.weight": (c, c),
        "synthesis.input.transform": (3, 3),
        "synthesis.input.freqs": (c, 2),
        "synthesis.input.phases": (c,),
        "synthesis.input.affine.weight": (4, w),
        "synthesis.input.affine.bias": (4,),
    }
    for L in layers:
        p = f"synthesis.{L['name']}"
        k = L["conv_kernel"]
        shapes[f"{p}.weight"] = (L["out_channels"], L["in_channels"], k, k)
        shapes[f"{p}.bias"] = (L["out_channels"],)
        shapes[f"{p}.magnitude_ema"] = ()
        for f in ("up_filter", "down_filter"):
            if L[f] is not None:
                shapes[f"{p}.{f}"] = tuple(L[f].shape)
        shapes[f"{p}.affine.weight"] = (L["in_channels"], w)
        shapes[f"{p}.affine.bias"] = (L["in_channels"],)
    if cfg["c_dim"]:
        shapes["mapping.embed.weight"] = (w, cfg["c_dim"])
        shapes["mapping.embed.bias"] = (w,)
    feats = [cfg["z_dim"] + (w if cfg["c_dim"] else 0)] + [w] * cfg["mapping_layers"]
    for i in range(cfg["mapping_layers"]):
        shapes[f"mapping.fc{i}.weight"] = (feats[i + 1], feats[i])
        shapes[f"mapping.fc{i}.bias"] = (feats[i + 1],)
    shapes["mapping.w_avg"] = (w,)
    return shapes


# ----------------------------------------------------------------------------
# Ops.


def make_transform(translate: tuple[float, float], angle: float) -> Array:
    """gen_images.py ``make_transform`` (its ``inv`` is copied into ``synthesis.input.transform``)."""
    m = np.eye(3)
    s = np.sin(angle / 360.0 * np.pi * 2)
    c = np.cos(angle / 360.0 * np.pi * 2)
    m[0][0] = c
    m[0][1] = s
    m[0][2] = translate[0]
    m[1][0] = -s
    m[1][1] = c
    m[1][2] = translate[1]
    return m


def _f64(v: Any) -> Array:
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=np.float64)


def filter_2d(f: Any) -> Array | None:
    """A stored filter as 2-D taps: separable ``[T]`` -> ``outer(f, f)``; ``[T, T]`` as is; None stays."""
    if f is None:
        return None
    f = _f64(f)
    return np.outer(f, f) if f.ndim == 1 else f


def filtered_lrelu(x: Array, fu: Any, fd: Any, b: Array, up: int, down: int, padding: list[int],
                   gain: float, slope: float, clamp: float | None) -> Array:  # fmt: skip
    """Official ``_filtered_lrelu_ref``."""
    x = x + b.reshape(1, -1, 1, 1)
    x = sg2.upfirdn2d(x, filter_2d(fu), up=up, padding=padding, gain=up**2)
    x = np.where(x > 0, x, slope * x) * gain
    if clamp is not None:
        x = np.clip(x, -clamp, clamp)
    x = sg2.upfirdn2d(x, filter_2d(fd))
    return x[:, :, ::down, ::down]


def modulated_conv2d(x: Array, w: Array, s: Array, demodulate: bool, padding: int, input_gain: float) -> Array:
    """Official SG3 ``modulated_conv2d`` (fused, batch-wide style RMS)."""
    if demodulate:
        w = w / np.sqrt(np.mean(w * w, axis=(1, 2, 3), keepdims=True))
        s = s / np.sqrt(np.mean(s * s))
    wn = w[None] * s[:, None, :, None, None]  # [N, O, I, k, k]
    if demodulate:
        wn = wn / np.sqrt(np.sum(wn * wn, axis=(2, 3, 4)) + 1e-8)[:, :, None, None, None]
    wn = wn * input_gain
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return sg2._conv_valid(xp, wn, flip_weight=True)


def synthesis_input(state: Mapping[str, Any], inp: Mapping[str, Any], w: Array, transform: Array) -> Array:
    """Official ``SynthesisInput.forward`` with ``transform`` ``[N, 3, 3]`` (the buffer, per image)."""
    P = "synthesis.input."
    N = w.shape[0]
    t = sg2.fully_connected(w, _f64(state[P + "affine.weight"]), _f64(state[P + "affine.bias"]))  # [N, 4]
    t = t / np.linalg.norm(t[:, :2], axis=1, keepdims=True)
    m_r = np.repeat(np.eye(3)[None], N, axis=0)
    m_r[:, 0, 0] = t[:, 0]
    m_r[:, 0, 1] = -t[:, 1]
    m_r[:, 1, 0] = t[:, 1]
    m_r[:, 1, 1] = t[:, 0]
    m_t = np.repeat(np.eye(3)[None], N, axis=0)
    m_t[:, 0, 2] = -t[:, 2]
    m_t[:, 1, 2] = -t[:, 3]
    transforms = m_r @ m_t @ transform.astype(np.float32).astype(np.float64)
    freqs = _f64(state[P + "freqs"])[None]  # [1, C, 2]
    phases = _f64(state[P + "phases"])[None] + (freqs @ transforms[:, :2, 2:])[:, :, 0]  # [N, C]
    freqs = freqs @ transforms[:, :2, :2]  # [N, C, 2]
    bw, sr = inp["bandwidth"], inp["sampling_rate"]
    amplitudes = np.clip(1 - (np.linalg.norm(freqs, axis=2) - bw) / (sr / 2 - bw), 0, 1)  # [N, C]
    W, H = int(inp["size"][0]), int(inp["size"][1])
    theta = np.eye(2, 3)
    theta[0, 0] = 0.5 * inp["size"][0] / sr
    theta[1, 1] = 0.5 * inp["size"][1] / sr
    bx = np.linspace(-1, 1, W) * (W - 1) / W
    by = np.linspace(-1, 1, H) * (H - 1) / H
    base = np.stack(np.broadcast_arrays(bx[None, :], by[:, None], np.ones((1, 1))), axis=-1)  # [H, W, 3]
    grid = base @ theta.T  # [H, W, 2] (x, y)
    x = np.einsum("hwj,ncj->nhwc", grid, freqs) + phases[:, None, None, :]
    x = np.sin(x * (np.pi * 2)) * amplitudes[:, None, None, :]
    weight = _f64(state[P + "weight"])
    x = x @ (weight / np.sqrt(inp["channels"])).T
    return x.transpose(0, 3, 1, 2)  # [N, C, H, W]


def reference_synthesis(state: Mapping[str, Any], cfg: Mapping[str, Any], ws: Any, transform: Any = None) -> Array:
    """Official ``SynthesisNetwork.forward`` (fp32 semantics) on ``ws`` ``[N, num_ws, w_dim]``; ``transform``
    ``[3, 3]`` or ``[N, 3, 3]`` replaces the buffer (gen_images.py's ``inv(make_transform)``). ``# [N, C, H, W]``"""
    cfg = full_config(cfg)
    inp, layers = layout(cfg)
    ws = _f64(ws).astype(np.float32).astype(np.float64)
    N = ws.shape[0]
    assert ws.shape[1] == num_ws(cfg), (ws.shape, num_ws(cfg))
    tr = _f64(state["synthesis.input.transform"]) if transform is None else _f64(transform)
    tr = np.broadcast_to(tr, (N, 3, 3))
    x = synthesis_input(state, inp, ws[:, 0], tr)
    for L, w in zip(layers, [ws[:, i] for i in range(1, ws.shape[1])], strict=True):
        p = f"synthesis.{L['name']}."
        input_gain = 1 / np.sqrt(_f64(state[p + "magnitude_ema"]))
        styles = sg2.fully_connected(w, _f64(state[p + "affine.weight"]), _f64(state[p + "affine.bias"]))
        if L["is_torgb"]:
            styles = styles * (1 / np.sqrt(L["in_channels"] * L["conv_kernel"] ** 2))
        x = modulated_conv2d(x, _f64(state[p + "weight"]), styles, not L["is_torgb"], L["conv_kernel"] - 1,
                             float(input_gain))  # fmt: skip
        x = filtered_lrelu(
            x, state.get(p + "up_filter"), state.get(p + "down_filter"), _f64(state[p + "bias"]),
            L["up"], L["down"], L["padding"], 1.0 if L["is_torgb"] else np.sqrt(2), 1.0 if L["is_torgb"] else 0.2,
            cfg["conv_clamp"],
        )  # fmt: skip
        assert x.shape == (N, L["out_channels"], L["out_size"][1], L["out_size"][0]), (L["name"], x.shape)
    if cfg["output_scale"] != 1:
        x = x * cfg["output_scale"]
    return x


def _sg2_mapping_cfg(cfg: Mapping[str, Any]) -> dict[str, Any]:
    cfg = full_config(cfg)
    return {k: cfg[k] for k in ("z_dim", "c_dim", "w_dim", "mapping_layers")}


def reference_ws(state: Mapping[str, Any], cfg: Mapping[str, Any], z: Any, c: Any = None,
                 truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> Array:  # fmt: skip
    """Official SG3 ``MappingNetwork.forward`` (its layers are the SG2 ones, 2 by default). ``# [N, num_ws, w_dim]``"""
    w = sg2.reference_mapping(state, _sg2_mapping_cfg(cfg), z, c)
    ws = np.repeat(w[:, None, :], num_ws(cfg), axis=1)
    return sg2.reference_truncate(ws, _f64(state["mapping.w_avg"]), truncation_psi, truncation_cutoff)


def reference_generator(state: Mapping[str, Any], cfg: Mapping[str, Any], z: Any, c: Any = None,
                        truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                        translate: tuple[float, float] = (0.0, 0.0), rotate: float = 0.0) -> Array:  # fmt: skip
    """gen_images.py: ``input.transform = inv(make_transform(translate, rotate))``, then ``G(z, c, psi)``."""
    transform = np.linalg.inv(make_transform(translate, rotate))
    ws = reference_ws(state, cfg, z, c, truncation_psi, truncation_cutoff)
    return reference_synthesis(state, cfg, ws, transform)


__all__ = ["DEFAULTS", "layout", "official_state_shapes", "reference_generator", "reference_synthesis",
           "reference_ws", "train_config"]  # fmt: skip
