"""An independent pure-numpy (float64) reference of the official NVlabs StyleGAN (v1) generator.

Written from ``training/networks_stylegan.py`` (``G_style``, ``G_mapping``, ``G_synthesis``,
``upscale2d_conv2d``, ``blur2d``, ``apply_noise``, ``instance_norm``, ``style_mod``), *not* from
``styleserve.export.networks_v1``. It reads the TensorFlow variables by their TF names and layouts
(dense ``[in, out]``, conv ``[kh, kw, in, out]``), so the name map of the importer is tested too.
Where the official code is a TF op this module writes the op's definition out by hand:

* ``conv2d(padding='SAME')``: zero padding and an explicit sum over the kernel taps;
* ``conv2d_transpose(strides 2, 'SAME')``: the adjoint of the strided SAME conv, as a scatter-add
  of every input pixel times the kernel, then the SAME crop (1 pixel before);
* ``depthwise_conv2d`` for the blur: an explicit sum over the filter taps;
* ``_upscale2d``: ``np.repeat`` on both axes.

The config is a dict of the official keyword arguments (see :data:`DEFAULTS`); the synthesis is
evaluated with the ``'fixed'`` structure at ``lod = 0`` (what the recursive one computes there).
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
    "normalize_latents": True,
    "num_channels": 3,
    "resolution": 1024,
    "fmap_base": 8192,
    "fmap_decay": 1.0,
    "fmap_max": 512,
    "use_noise": True,
    "nonlinearity": "lrelu",
    "use_pixel_norm": False,
    "use_instance_norm": True,
    "fused_scale": "auto",
    "blur_filter": [1, 2, 1],
}


def full_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise KeyError(f"unknown config keys {sorted(unknown)}")
    return {**DEFAULTS, **cfg}


def nf(cfg: Mapping[str, Any], stage: int) -> int:
    return min(int(cfg["fmap_base"] / (2.0 ** (stage * cfg["fmap_decay"]))), cfg["fmap_max"])


def act(x: Array, name: str) -> Array:
    if name == "lrelu":
        return np.maximum(x, x * 0.2)
    assert name == "relu"
    return np.maximum(x, 0.0)


def weight(w: Array, gain: float, lrmul: float = 1.0) -> Array:
    """``get_weight(use_wscale=True)``: ``w * gain / sqrt(prod(shape[:-1])) * lrmul``."""
    fan_in = int(np.prod(w.shape[:-1]))
    return w.astype(np.float64) * (gain / math.sqrt(fan_in) * lrmul)


def pixel_norm(x: Array, eps: float = 1e-8) -> Array:
    return x / np.sqrt(np.mean(x * x, axis=1, keepdims=True) + eps)


def instance_norm(x: Array, eps: float = 1e-8) -> Array:
    x = x - x.mean(axis=(2, 3), keepdims=True)
    return x / np.sqrt(np.mean(x * x, axis=(2, 3), keepdims=True) + eps)


def conv2d_same(x: Array, w: Array) -> Array:
    """``tf.nn.conv2d(x, w, stride 1, 'SAME', NCHW)`` with ``w`` ``[kh, kw, in, out]`` (a correlation)."""
    kh, kw = w.shape[:2]
    N, C, H, W = x.shape
    ph, pw = kh - 1, kw - 1
    xp = np.zeros((N, C, H + ph, W + pw))
    xp[:, :, ph // 2 : ph // 2 + H, pw // 2 : pw // 2 + W] = x
    out = np.zeros((N, w.shape[3], H, W))
    for dy in range(kh):
        for dx in range(kw):
            out += np.einsum("nchw,co->nohw", xp[:, :, dy : dy + H, dx : dx + W], w[dy, dx])
    return out


def conv2d_transpose_s2_same(x: Array, w: Array) -> Array:
    """``tf.nn.conv2d_transpose(x, w, [N, out, 2H, 2W], strides 2, 'SAME')``, ``w`` ``[k, k, out, in]``.

    The adjoint of ``conv2d(y, w, stride 2, SAME)`` on a ``2H x 2W`` input, whose padding is
    ``(H-1)*2 + k - 2H`` in total, ``floor`` of half before.
    """
    k = w.shape[0]
    N, _, H, W = x.shape
    pad_before = ((H - 1) * 2 + k - 2 * H) // 2
    full = np.zeros((N, w.shape[2], 2 * H + k, 2 * W + k))
    for ky in range(k):
        for kx in range(k):
            full[:, :, ky : ky + 2 * H : 2, kx : kx + 2 * W : 2] += np.einsum("nchw,oc->nohw", x, w[ky, kx])
    return full[:, :, pad_before : pad_before + 2 * H, pad_before : pad_before + 2 * W]


def blur2d(x: Array, taps: Sequence[float]) -> Array:
    """``_blur2d``: normalised outer-product filter, depthwise, SAME, a correlation."""
    f = np.asarray(taps, np.float64)
    f = f[:, None] * f[None, :]
    f = f / f.sum()
    k = f.shape[0]
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + k - 1, W + k - 1))
    xp[:, :, (k - 1) // 2 : (k - 1) // 2 + H, (k - 1) // 2 : (k - 1) // 2 + W] = x
    out = np.zeros_like(x)
    for dy in range(k):
        for dx in range(k):
            out += f[dy, dx] * xp[:, :, dy : dy + H, dx : dx + W]
    return out


def upscale2d_conv2d(x: Array, w_var: Array, gain: float, fused: bool) -> Array:
    w = weight(w_var, gain)  # [k, k, in, out]
    if not fused:
        return conv2d_same(np.repeat(np.repeat(x, 2, axis=2), 2, axis=3), w)
    w = np.transpose(w, (0, 1, 3, 2))  # [k, k, out, in]
    w = np.pad(w, [(1, 1), (1, 1), (0, 0), (0, 0)])
    w = w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]
    return conv2d_transpose_s2_same(x, w)


def reference_mapping(mvars: Mapping[str, Array], cfg: Mapping[str, Any], z: Array, c: Array | None) -> Array:
    """``G_mapping`` without the broadcast. ``# [N, dlatent_size]``"""
    cfg = full_config(cfg)
    x = np.asarray(z, np.float64)
    if cfg["label_size"]:
        assert c is not None
        x = np.concatenate([x, np.asarray(c, np.float64) @ mvars["LabelConcat/weight"].astype(np.float64)], axis=1)
    if cfg["normalize_latents"]:
        x = pixel_norm(x)
    lrmul = cfg["mapping_lrmul"]
    for i in range(cfg["mapping_layers"]):
        x = x @ weight(mvars[f"Dense{i}/weight"], math.sqrt(2), lrmul) + mvars[f"Dense{i}/bias"] * lrmul
        x = act(x, cfg["mapping_nonlinearity"])
    return x


def reference_synthesis(
    svars: Mapping[str, Array], cfg: Mapping[str, Any], dlatents: Array, noises: Sequence[Array | None] | str = "const"
) -> Array:
    """``G_synthesis`` at lod 0. ``noises``: 'const' (the ``noise{i}`` variables), 'none', or one
    ``[N or 1, 1, r, r]`` array (or None) per layer."""
    cfg = full_config(cfg)
    rlog2 = int(np.log2(cfg["resolution"]))
    num_layers = 2 * rlog2 - 2
    dl = np.asarray(dlatents, np.float64)
    assert dl.shape[1] == num_layers
    if isinstance(noises, str):
        if noises == "const":
            noises = [svars[f"noise{i}"] for i in range(num_layers)]
        else:
            assert noises == "none"
            noises = [None] * num_layers
    gain = math.sqrt(2)

    def epilogue(x: Array, scope: str, idx: int) -> Array:
        if cfg["use_noise"] and noises[idx] is not None:
            x = x + np.asarray(noises[idx], np.float64) * svars[f"{scope}/Noise/weight"].reshape(1, -1, 1, 1)
        x = x + svars[f"{scope}/bias"].reshape(1, -1, 1, 1)
        x = act(x, cfg["nonlinearity"])
        if cfg["use_pixel_norm"]:
            x = pixel_norm(x)
        if cfg["use_instance_norm"]:
            x = instance_norm(x)
        style = dl[:, idx] @ weight(svars[f"{scope}/StyleMod/weight"], 1.0) + svars[f"{scope}/StyleMod/bias"]
        style = style.reshape(-1, 2, x.shape[1], 1, 1)
        return x * (style[:, 0] + 1) + style[:, 1]

    N = dl.shape[0]
    x = np.tile(svars["4x4/Const/const"].astype(np.float64), [N, 1, 1, 1])
    x = epilogue(x, "4x4/Const", 0)
    x = epilogue(conv2d_same(x, weight(svars["4x4/Conv/weight"], gain)), "4x4/Conv", 1)
    for res in range(3, rlog2 + 1):
        s = f"{2**res}x{2**res}"
        fused = cfg["fused_scale"]
        if fused == "auto":
            fused = min(x.shape[2:]) * 2 >= 128
        y = upscale2d_conv2d(x, svars[f"{s}/Conv0_up/weight"], gain, bool(fused))
        if cfg["blur_filter"]:
            y = blur2d(y, cfg["blur_filter"])
        x = epilogue(y, f"{s}/Conv0_up", res * 2 - 4)
        x = epilogue(conv2d_same(x, weight(svars[f"{s}/Conv1/weight"], gain)), f"{s}/Conv1", res * 2 - 3)
    return conv2d_same(x, weight(svars["ToRGB_lod0/weight"], 1.0)) + svars["ToRGB_lod0/bias"].reshape(1, -1, 1, 1)


def reference_generator(
    mvars: Mapping[str, Array],
    svars: Mapping[str, Array],
    dlatent_avg: Array,
    cfg: Mapping[str, Any],
    z: Array,
    c: Array | None,
    truncation_psi: float | None = 0.7,
    truncation_cutoff: int | None = 8,
    noises: Sequence[Array | None] | str = "const",
) -> Array:
    """``G_style(z, c, truncation_psi, truncation_cutoff)`` (``Gs.run(..., randomize_noise=False)``)."""
    cfg = full_config(cfg)
    num_layers = 2 * int(np.log2(cfg["resolution"])) - 2
    w = reference_mapping(mvars, cfg, z, c)
    dl = np.tile(w[:, None], [1, num_layers, 1])
    if truncation_psi is not None and truncation_cutoff is not None and truncation_psi != 1:
        layer_idx = np.arange(num_layers)[None, :, None]
        coefs = np.where(layer_idx < truncation_cutoff, truncation_psi, 1.0)
        avg = dlatent_avg.astype(np.float64)
        dl = avg + (dl - avg) * coefs
    return reference_synthesis(svars, cfg, dl, noises)


def random_tf_vars(cfg: Mapping[str, Any], seed: int) -> tuple[dict[str, Array], dict[str, Array], Array]:
    """Random float32 variables of ``G_mapping``, ``G_synthesis`` (with every ``ToRGB_lod*``) and ``dlatent_avg``.

    Names and shapes as the official build functions create them; every value random (biases and
    noise weights non-zero) so that no term can hide behind an initial 0 or 1.
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
    s: dict[str, Array] = {"lod": np.float32(0.0)}  # type: ignore[dict-item]
    for i in range(2 * rlog2 - 2):
        res = 2 ** (i // 2 + 2)
        s[f"noise{i}"] = r(1, 1, res, res)

    def epi(scope: str, ch: int) -> None:
        s[f"{scope}/Noise/weight"] = r(ch, scale=0.5)
        s[f"{scope}/bias"] = r(ch, scale=0.5)
        s[f"{scope}/StyleMod/weight"] = r(D, 2 * ch)
        s[f"{scope}/StyleMod/bias"] = r(2 * ch, scale=0.5)

    c1 = nf(cfg, 1)
    s["4x4/Const/const"] = r(1, c1, 4, 4)
    epi("4x4/Const", c1)
    s["4x4/Conv/weight"] = r(3, 3, c1, c1)
    epi("4x4/Conv", c1)
    for res in range(3, rlog2 + 1):
        sc = f"{2**res}x{2**res}"
        cin, cout = nf(cfg, res - 2), nf(cfg, res - 1)
        s[f"{sc}/Conv0_up/weight"] = r(3, 3, cin, cout)
        epi(f"{sc}/Conv0_up", cout)
        s[f"{sc}/Conv1/weight"] = r(3, 3, cout, cout)
        epi(f"{sc}/Conv1", cout)
    for res in range(2, rlog2 + 1):
        s[f"ToRGB_lod{rlog2 - res}/weight"] = r(1, 1, nf(cfg, res - 1), cfg["num_channels"])
        s[f"ToRGB_lod{rlog2 - res}/bias"] = r(cfg["num_channels"], scale=0.5)
    return m, s, r(D, scale=0.5)
