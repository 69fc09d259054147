"""An independent pure-numpy (float64) reference of the official NVlabs StyleGAN2 TensorFlow generator.

Written from NVlabs/stylegan2 ``training/networks_stylegan2.py`` (``G_main``, ``G_mapping``,
``G_synthesis_stylegan2``, ``modulated_conv2d_layer``, ``conv2d_layer``, ``dense_layer``,
``apply_bias_act``, ``get_weight``) and ``dnnlib/tflib/ops/upfirdn_2d.py`` (``upsample_2d``,
``upsample_conv_2d``, ``_upfirdn_2d_ref``), *not* from ``styleserve.export``. It reads the TF
variables by their TF names and layouts (dense ``[in, out]``, conv ``[kh, kw, in, out]``) and follows
the TF computational route:

* ``get_weight(use_wscale=True)``: the runtime coefficient ``gain * lrmul / sqrt(fan_in)`` applied to
  every weight, including the demodulated ones (where ours drops it);
* the label: ``[z, c @ LabelConcat/weight]`` normalised jointly;
* ``fused_modconv=True`` (the default): per-sample modulated, demodulated weights, convolved sample by
  sample (the grouped convolution); ``False``: scale the activations, convolve, scale the output;
* ``upsample_conv_2d``: the flipped kernel through ``conv2d_transpose(stride 2, 'VALID')`` written as
  a scatter-add, then ``_upfirdn_2d_ref`` (pad, true convolution with the FIR kernel);
* ``mod_bias`` + 1 at run time; noise ``noise{i}`` times the scalar ``noise_strength``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Array = np.ndarray

DEFAULTS: dict[str, Any] = {
    "latent_size": 512,
    "label_size": 0,
    "dlatent_size": 512,
    "mapping_layers": 8,
    "mapping_fmaps": 512,
    "mapping_lrmul": 0.01,
    "mapping_nonlinearity": "lrelu",
    "num_channels": 3,
    "resolution": 1024,
    "fmap_base": 16 << 10,
    "fmap_decay": 1.0,
    "fmap_min": 1,
    "fmap_max": 512,
    "architecture": "skip",
    "nonlinearity": "lrelu",
    "resample_kernel": [1, 3, 3, 1],
    "fused_modconv": True,
}


def full_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise KeyError(f"unknown config keys {sorted(unknown)}")
    return {**DEFAULTS, **cfg}


def nf(cfg: Mapping[str, Any], stage: int) -> int:
    return int(np.clip(int(cfg["fmap_base"] / (2.0 ** (stage * cfg["fmap_decay"]))), cfg["fmap_min"], cfg["fmap_max"]))


def num_layers(cfg: Mapping[str, Any]) -> int:
    return 2 * int(np.log2(cfg["resolution"])) - 2


def act(x: Array, name: str) -> Array:
    """``fused_bias_act``'s activation and its default gain."""
    if name == "lrelu":
        return np.where(x >= 0, x, x * 0.2) * math.sqrt(2)
    if name == "relu":
        return np.maximum(x, 0.0) * math.sqrt(2)
    assert name == "linear"
    return x


def get_weight(w: Array, gain: float = 1.0, lrmul: float = 1.0) -> Array:
    fan_in = int(np.prod(w.shape[:-1]))
    return w.astype(np.float64) * (gain / math.sqrt(fan_in) * lrmul)


def dense(x: Array, w: Array, lrmul: float = 1.0) -> Array:
    return x @ get_weight(w, lrmul=lrmul)


def conv2d_same(x: Array, w: Array) -> Array:
    """``tf.nn.conv2d(x, w, 'SAME', NCHW)``, ``w`` ``[kh, kw, in, out]``: a correlation with zero padding."""
    kh, kw = w.shape[:2]
    N, _, H, W = x.shape
    xp = np.pad(x, [(0, 0), (0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)])
    out = np.zeros((N, w.shape[3], H, W))
    for dy in range(kh):
        for dx in range(kw):
            out += np.einsum("nchw,co->nohw", xp[:, :, dy : dy + H, dx : dx + W], w[dy, dx])
    return out


def upfirdn_ref(x: Array, k: Array, pad0: int, pad1: int) -> Array:
    """``_upfirdn_2d_ref`` with up = down = 1: pad (negative crops), then a true convolution with ``k``."""
    N, C = x.shape[:2]
    p0, p1 = max(pad0, 0), max(pad1, 0)
    x = np.pad(x, [(0, 0), (0, 0), (p0, p1), (p0, p1)])
    x = x[:, :, max(-pad0, 0) : x.shape[2] - max(-pad1, 0), max(-pad0, 0) : x.shape[3] - max(-pad1, 0)]
    kf = k[::-1, ::-1]
    kh, kw = k.shape
    oh, ow = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    out = np.zeros((N, C, oh, ow))
    for dy in range(kh):
        for dx in range(kw):
            out += kf[dy, dx] * x[:, :, dy : dy + oh, dx : dx + ow]
    return out


def setup_kernel(k: Sequence[float]) -> Array:
    k1 = np.asarray(k, np.float64)
    k2 = np.outer(k1, k1) if k1.ndim == 1 else k1
    return k2 / k2.sum()


def upsample_2d(x: Array, k: Sequence[float]) -> Array:
    """``upsample_2d(factor=2)``: zero insertion, then ``upfirdn`` with ``k * 4``."""
    kk = setup_kernel(k) * 4
    p = kk.shape[0] - 2
    N, C, H, W = x.shape
    up = np.zeros((N, C, 2 * H, 2 * W))
    up[:, :, ::2, ::2] = x
    # _upfirdn_2d_ref inserts up-1 zeros after every pixel, so the padded size is as here.
    return upfirdn_ref(up, kk, (p + 1) // 2 + 1, p // 2)


def upsample_conv_2d(x: Array, w: Array, k: Sequence[float]) -> Array:
    """``upsample_conv_2d(x, w, k, factor=2)``, ``w`` ``[kh, kw, in, out]``, one group."""
    kh, kw = w.shape[:2]
    kk = setup_kernel(k) * 4
    p = (kk.shape[0] - 2) - (kw - 1)
    wt = w[::-1, ::-1]  # [kh, kw, in, out], flipped as the official code does before conv2d_transpose.
    N, _, H, W = x.shape
    out = np.zeros((N, w.shape[3], (H - 1) * 2 + kh, (W - 1) * 2 + kw))
    for ky in range(kh):  # conv2d_transpose, strides 2, VALID: every input pixel scattered times the kernel.
        for kx in range(kw):
            out[:, :, ky : ky + 2 * H - 1 : 2, kx : kx + 2 * W - 1 : 2] += np.einsum("nchw,co->nohw", x, wt[ky, kx])
    return upfirdn_ref(out, kk, (p + 1) // 2 + 1, p // 2 + 1)


def modulated_conv2d_layer(
    x: Array, y: Array, svars: Mapping[str, Array], scope: str, cfg: Mapping[str, Any], demodulate: bool = True,
    up: bool = False,
) -> Array:  # fmt: skip
    w = get_weight(svars[f"{scope}/weight"])  # [k, k, I, O]
    s = dense(y, svars[f"{scope}/mod_weight"]) + svars[f"{scope}/mod_bias"] + 1  # [N, I]
    ww = w[None] * s[:, None, None, :, None]  # [N, k, k, I, O]
    if demodulate:
        d = 1 / np.sqrt(np.sum(ww**2, axis=(1, 2, 3)) + 1e-8)  # [N, O]
        ww = ww * d[:, None, None, None, :]
    conv = (lambda a, b: upsample_conv_2d(a, b, cfg["resample_kernel"])) if up else conv2d_same
    if cfg["fused_modconv"]:  # The grouped convolution: sample n with its own weights.
        return np.concatenate([conv(x[n : n + 1], ww[n]) for n in range(x.shape[0])], axis=0)
    x = conv(x * s[:, :, None, None], w)
    if demodulate:
        x = x * d[:, :, None, None]
    return x


def reference_mapping(mvars: Mapping[str, Array], cfg: Mapping[str, Any], z: Array, c: Array | None) -> Array:
    """``G_mapping`` without the broadcast. ``# [N, dlatent_size]``"""
    cfg = full_config(cfg)
    x = np.asarray(z, np.float64)
    if cfg["label_size"]:
        assert c is not None
        x = np.concatenate([x, np.asarray(c, np.float64) @ mvars["LabelConcat/weight"].astype(np.float64)], axis=1)
    x = x / np.sqrt(np.mean(x * x, axis=1, keepdims=True) + 1e-8)
    lrmul = cfg["mapping_lrmul"]
    for i in range(cfg["mapping_layers"]):
        x = dense(x, mvars[f"Dense{i}/weight"], lrmul) + mvars[f"Dense{i}/bias"] * lrmul
        x = act(x, cfg["mapping_nonlinearity"])
    return x


def reference_synthesis(
    svars: Mapping[str, Array], cfg: Mapping[str, Any], dlatents: Array, noises: str = "const"
) -> Array:
    """``G_synthesis_stylegan2`` with ``randomize_noise=False`` ('const') or without noise ('none')."""
    cfg = full_config(cfg)
    rlog2 = int(np.log2(cfg["resolution"]))
    dl = np.asarray(dlatents, np.float64)
    assert dl.shape[1] == num_layers(cfg)
    arch = cfg["architecture"]

    def layer(x: Array, idx: int, scope: str, up: bool = False) -> Array:
        x = modulated_conv2d_layer(x, dl[:, idx], svars, scope, cfg, up=up)
        if noises == "const":
            x = x + svars[f"noise{idx}"].astype(np.float64) * float(svars[f"{scope}/noise_strength"])
        return act(x + svars[f"{scope}/bias"].reshape(1, -1, 1, 1), cfg["nonlinearity"])

    def torgb(x: Array, y: Array | None, res: int) -> Array:
        s = f"{2**res}x{2**res}/ToRGB"
        t = modulated_conv2d_layer(x, dl[:, res * 2 - 3], svars, s, cfg, demodulate=False)
        t = t + svars[f"{s}/bias"].reshape(1, -1, 1, 1)
        return t if y is None else y + t

    N = dl.shape[0]
    x = np.tile(svars["4x4/Const/const"].astype(np.float64), [N, 1, 1, 1])
    x = layer(x, 0, "4x4/Conv")
    y = torgb(x, None, 2) if arch == "skip" else None
    for res in range(3, rlog2 + 1):
        s = f"{2**res}x{2**res}"
        t = x
        x = layer(x, res * 2 - 5, f"{s}/Conv0_up", up=True)
        x = layer(x, res * 2 - 4, f"{s}/Conv1")
        if arch == "resnet":
            t = upsample_conv_2d(t, get_weight(svars[f"{s}/Skip/weight"]), cfg["resample_kernel"])
            x = (x + t) * (1 / np.sqrt(2))
        if arch == "skip":
            assert y is not None
            y = upsample_2d(y, cfg["resample_kernel"])
        if arch == "skip" or res == rlog2:
            y = torgb(x, y, res)
    assert y is not None
    return y


def reference_generator(
    mvars: Mapping[str, Array],
    svars: Mapping[str, Array],
    dlatent_avg: Array,
    cfg: Mapping[str, Any],
    z: Array,
    c: Array | None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    noises: str = "const",
) -> Array:
    """``Gs.run(z, c, truncation_psi=..., truncation_cutoff=..., randomize_noise=False)`` (``G_main``)."""
    cfg = full_config(cfg)
    L = num_layers(cfg)
    dl = np.tile(reference_mapping(mvars, cfg, z, c)[:, None], [1, L, 1])
    layer_idx = np.arange(L)[None, :, None]
    psi = np.where(layer_idx < (L if truncation_cutoff is None else truncation_cutoff), truncation_psi, 1.0)
    avg = dlatent_avg.astype(np.float64)
    dl = avg + (dl - avg) * psi  # tflib.lerp
    return reference_synthesis(svars, cfg, dl, noises)


def random_tf2_vars(cfg: Mapping[str, Any], seed: int) -> tuple[dict[str, Array], dict[str, Array], Array]:
    """Random float32 variables of ``G_mapping``, ``G_synthesis_stylegan2`` and ``dlatent_avg``.

    Names and shapes as the official build functions create them (relative to their network); every
    value random (biases, ``mod_bias`` and noise strengths non-zero) so no term hides behind a 0 or 1.
    """
    cfg = full_config(cfg)
    rng = np.random.RandomState(seed)

    def r(*shape: int, scale: float = 1.0) -> Array:
        return (rng.randn(*shape) * scale).astype(np.float32)

    L, Z, D, F = cfg["label_size"], cfg["latent_size"], cfg["dlatent_size"], cfg["mapping_fmaps"]
    m: dict[str, Array] = {}
    if L:
        m["LabelConcat/weight"] = r(L, Z)
    feats = [2 * Z if L else Z] + [F] * (cfg["mapping_layers"] - 1) + [D]
    lrmul = cfg["mapping_lrmul"]
    for i in range(cfg["mapping_layers"]):
        m[f"Dense{i}/weight"] = r(feats[i], feats[i + 1], scale=1 / lrmul)
        m[f"Dense{i}/bias"] = r(feats[i + 1], scale=0.5 / lrmul)
    rlog2 = int(np.log2(cfg["resolution"]))
    s: dict[str, Array] = {}
    for i in range(num_layers(cfg) - 1):
        res = 2 ** ((i + 5) // 2)
        s[f"noise{i}"] = r(1, 1, res, res)

    def modconv(scope: str, k: int, cin: int, cout: int, noise: bool = True) -> None:
        s[f"{scope}/weight"] = r(k, k, cin, cout)
        s[f"{scope}/mod_weight"] = r(D, cin)
        s[f"{scope}/mod_bias"] = r(cin, scale=0.3)
        if noise:
            s[f"{scope}/noise_strength"] = np.float32(rng.randn() * 0.5)  # type: ignore[assignment]
        s[f"{scope}/bias"] = r(cout, scale=0.5)

    arch = cfg["architecture"]
    s["4x4/Const/const"] = r(1, nf(cfg, 1), 4, 4)
    modconv("4x4/Conv", 3, nf(cfg, 1), nf(cfg, 1))
    if arch == "skip":
        modconv("4x4/ToRGB", 1, nf(cfg, 1), cfg["num_channels"], noise=False)
    for res in range(3, rlog2 + 1):
        sc = f"{2**res}x{2**res}"
        modconv(f"{sc}/Conv0_up", 3, nf(cfg, res - 2), nf(cfg, res - 1))
        modconv(f"{sc}/Conv1", 3, nf(cfg, res - 1), nf(cfg, res - 1))
        if arch == "resnet":
            s[f"{sc}/Skip/weight"] = r(1, 1, nf(cfg, res - 2), nf(cfg, res - 1))
        if arch == "skip" or res == rlog2:
            modconv(f"{sc}/ToRGB", 1, nf(cfg, res - 1), cfg["num_channels"], noise=False)
    return m, s, r(D, scale=0.5)
