"""StyleGAN2 generator networks, written for export.

These compute the same function as the official ``Generator`` of NVlabs stylegan2-ada-pytorch
(``training/networks.py``) and stylegan3 (``training/networks_stylegan2.py``) in fp32, and carry
the same parameter and buffer names, so an official ``G_ema`` state dict loads key for key.

Differences in *how* it is computed, chosen for ONNX and onnxruntime:

* The modulated convolution scales the activations by the styles, convolves with the static
  weight and multiplies by the demodulation coefficients afterwards (the official
  ``fused_modconv=False`` path). Conv weights stay constant initializers and the batch axis stays
  dynamic; the official fused grouped convolution (kept here as ``fused=True`` for reference and
  benchmarks) bakes the batch size into the graph.
* Noise is an explicit input per noise layer (``[N or 1, 1, res, res]``) that the network scales
  by its learned ``noise_strength``; ``const``/``none``/``random`` are chosen by what is fed.
* FIR resampling (``upfirdn2d``), bias, activation gain and clamp are plain torch ops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleserve.errors import CheckpointError

# ----------------------------------------------------------------------------
# Configs (one frozen dataclass per network).

ACTIVATIONS: dict[str, tuple[float, float]] = {
    # name: (default gain, alpha) - the table of the official bias_act op.
    "linear": (1.0, 0.0),
    "relu": (math.sqrt(2), 0.0),
    "lrelu": (math.sqrt(2), 0.2),
    "tanh": (1.0, 0.0),
    "sigmoid": (1.0, 0.0),
    "elu": (1.0, 0.0),
    "selu": (1.0, 0.0),
    "softplus": (1.0, 0.0),
    "swish": (math.sqrt(2), 0.0),
}

ARCHITECTURES = ("orig", "skip", "resnet")

# Config bounds: every config (from a checkpoint, config.json or code) is checked against them before any
# tensor is allocated. Real StyleGAN2 models: 1024 px, 512 channels, z/w 512, <= 8 mapping layers.
MAX_IMG_RESOLUTION = 8192
MAX_CHANNELS = 4096  # Per block, and img_channels.
MAX_LATENT_DIM = 4096  # z_dim, w_dim, mapping widths (w_avg estimation draws 10000 x z_dim).
MAX_C_DIM = 100_000
MAX_MAPPING_LAYERS = 64
MAX_KERNEL_SIZE = 15
MAX_FILTER_TAPS = 64


def check_int(name: str, value: object, lo: int, hi: int) -> int:
    """``value`` must be an ``int`` (not a bool) in ``[lo, hi]``; ValueError naming ``name`` otherwise."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be an int, got {_short_type(value)}")
    value = int(value)
    if not lo <= value <= hi:
        shown = value if value.bit_length() <= 64 else f"an int of {value.bit_length()} bits"
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {shown}")
    return value


def check_float(name: str, value: object, lo: float, hi: float) -> float:
    """``value`` must be a finite real number (not a bool) in ``[lo, hi]``."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a number, got {_short_type(value)}")
    if isinstance(value, int) and value.bit_length() > 1024:
        raise ValueError(f"{name} is too large")
    value = float(value)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name} must be finite and in [{lo}, {hi}], got {float(value)!r}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {_short_type(value)}")
    return value


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if not isinstance(value, str) or value not in choices:
        shown = repr(value[:40]) if isinstance(value, str) else _short_type(value)
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {shown}")


def check_sequence(name: str, value: object, max_len: int) -> tuple[object, ...]:
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"{name} must be a list, got {_short_type(value)}")
    if len(value) > max_len:
        raise ValueError(f"{name} has {len(value)} entries (limit {max_len})")
    return tuple(value)


def _short_type(value: object) -> str:
    if isinstance(value, (bool, float)) or value is None:
        return repr(value)
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"a {type(value).__name__}"


@dataclass(frozen=True)
class MappingConfig:
    z_dim: int  # Input latent (Z) dimensionality, 0 = no latent.
    c_dim: int  # Conditioning label (C) dimensionality, 0 = no label.
    w_dim: int  # Intermediate latent (W) dimensionality.
    num_ws: int  # Number of ws the synthesis network consumes.
    num_layers: int = 8  # Number of fully-connected mapping layers.
    embed_features: int = 0  # Label embedding width (0 when c_dim == 0).
    layer_features: int = 0  # Hidden width of the mapping layers (0 = w_dim).
    activation: str = "lrelu"
    lr_multiplier: float = 0.01
    # TF StyleGAN2 (NVlabs/stylegan2 G_mapping): z concatenated with ``c @ embed`` (``LabelConcat/weight``; no
    # bias, width z_dim) and normalised *jointly*, instead of stylegan2-ada's separately normalised embedding.
    label_concat: bool = False

    def __post_init__(self) -> None:
        check_int("z_dim", self.z_dim, 0, MAX_LATENT_DIM)
        check_int("c_dim", self.c_dim, 0, MAX_C_DIM)
        check_int("w_dim", self.w_dim, 1, MAX_LATENT_DIM)
        check_int("num_ws", self.num_ws, 1, 64)
        check_int("num_layers", self.num_layers, 1, MAX_MAPPING_LAYERS)
        check_int("embed_features", self.embed_features, 0, MAX_LATENT_DIM)
        check_int("layer_features", self.layer_features, 0, MAX_LATENT_DIM)
        check_choice("activation", self.activation, list(ACTIVATIONS))
        check_float("lr_multiplier", self.lr_multiplier, 1e-8, 1e8)
        if self.z_dim < 0 or self.c_dim < 0 or self.z_dim + self.c_dim == 0:
            raise ValueError(f"need z_dim > 0 or c_dim > 0, got z_dim={self.z_dim}, c_dim={self.c_dim}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}")
        if self.num_layers < 1 or self.w_dim < 1 or self.num_ws < 1:
            raise ValueError("num_layers, w_dim and num_ws must be positive")
        check_bool("label_concat", self.label_concat)
        if self.label_concat and (self.c_dim == 0 or self.z_dim == 0 or self.embed_features not in (0, self.z_dim)):
            raise ValueError("label_concat needs c_dim > 0, z_dim > 0 and embed_features 0 or z_dim")

    @property
    def embed_dim(self) -> int:
        if self.label_concat:
            return self.z_dim
        return (self.embed_features or self.w_dim) if self.c_dim > 0 else 0

    @property
    def features(self) -> list[int]:
        hidden = self.layer_features or self.w_dim
        return [self.z_dim + self.embed_dim] + [hidden] * (self.num_layers - 1) + [self.w_dim]


@dataclass(frozen=True)
class SynthesisConfig:
    w_dim: int
    img_resolution: int
    img_channels: int
    channels: tuple[int, ...]  # Output channels of each block, resolutions 4, 8, ..., img_resolution.
    architecture: str = "skip"
    conv_clamp: float | None = None
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    use_noise: bool = True
    activation: str = "lrelu"
    kernel_size: int = 3

    def __post_init__(self) -> None:
        check_int("w_dim", self.w_dim, 1, MAX_LATENT_DIM)
        r = check_int("img_resolution", self.img_resolution, 4, MAX_IMG_RESOLUTION)
        if r < 4 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {r}")
        check_int("img_channels", self.img_channels, 1, MAX_CHANNELS)
        for c in check_sequence("channels", self.channels, 16):
            check_int("channels", c, 1, MAX_CHANNELS)
        check_choice("architecture", self.architecture, ARCHITECTURES)
        check_choice("activation", self.activation, list(ACTIVATIONS))
        if self.conv_clamp is not None:
            check_float("conv_clamp", self.conv_clamp, 0.0, 1e30)
        for t in check_sequence("resample_filter", self.resample_filter, MAX_FILTER_TAPS):
            check_float("resample_filter", t, -1e30, 1e30)
        check_bool("use_noise", self.use_noise)
        check_int("kernel_size", self.kernel_size, 1, MAX_KERNEL_SIZE)
        if len(self.channels) != len(self.block_resolutions):
            raise ValueError(f"need {len(self.block_resolutions)} channel counts, got {len(self.channels)}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}")

    @staticmethod
    def channels_from_base(img_resolution: int, channel_base: int = 32768, channel_max: int = 512) -> tuple[int, ...]:
        """The official ``min(channel_base // res, channel_max)`` per block resolution."""
        log2 = int(np.log2(img_resolution))
        return tuple(min(channel_base // 2**i, channel_max) for i in range(2, log2 + 1))

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(np.log2(self.img_resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        # Every block has one conv per w (the 4x4 block one, the rest two); the last torgb adds one.
        return 1 + 2 * (len(self.block_resolutions) - 1) + 1


class _MappingDims(Protocol):
    @property
    def z_dim(self) -> int: ...
    @property
    def c_dim(self) -> int: ...
    @property
    def w_dim(self) -> int: ...
    @property
    def num_ws(self) -> int: ...


class _SynthesisDims(Protocol):
    @property
    def w_dim(self) -> int: ...
    @property
    def num_ws(self) -> int: ...
    @property
    def img_resolution(self) -> int: ...
    @property
    def img_channels(self) -> int: ...


class GeneratorDims:
    """The dims of a generator config, read from its mapping and synthesis configs (StyleGAN2 and v1)."""

    mapping: _MappingDims
    synthesis: _SynthesisDims

    def check_dims(self) -> None:
        if self.mapping.w_dim != self.synthesis.w_dim:
            raise ValueError("mapping and synthesis w_dim differ")
        if self.mapping.num_ws != self.synthesis.num_ws:
            raise ValueError(f"mapping num_ws {self.mapping.num_ws} != synthesis num_ws {self.synthesis.num_ws}")

    @property
    def z_dim(self) -> int:
        return self.mapping.z_dim

    @property
    def c_dim(self) -> int:
        return self.mapping.c_dim

    @property
    def w_dim(self) -> int:
        return self.mapping.w_dim

    @property
    def num_ws(self) -> int:
        return self.synthesis.num_ws

    @property
    def img_resolution(self) -> int:
        return self.synthesis.img_resolution

    @property
    def img_channels(self) -> int:
        return self.synthesis.img_channels


@dataclass(frozen=True)
class GeneratorConfig(GeneratorDims):
    mapping: MappingConfig
    synthesis: SynthesisConfig
    extra: dict[str, object] = field(default_factory=dict, compare=False)  # Informational only.

    def __post_init__(self) -> None:
        self.check_dims()

    def to_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        d = asdict(self)
        d.pop("extra")
        return d

    @staticmethod
    def from_dict(d: dict[str, object]) -> GeneratorConfig:
        """The inverse of :meth:`to_dict`; ValueError for anything that is not a valid config."""
        if (
            not isinstance(d, dict)
            or not isinstance(d.get("mapping"), dict)
            or not isinstance(d.get("synthesis"), dict)
        ):
            raise ValueError("a generator config is an object with 'mapping' and 'synthesis' objects")
        m = dict(d["mapping"])  # type: ignore[call-overload]
        s = dict(d["synthesis"])  # type: ignore[call-overload]
        for name, part, cls in (("mapping", m, MappingConfig), ("synthesis", s, SynthesisConfig)):
            fields = set(cls.__dataclass_fields__)
            unknown = [k for k in part if k not in fields]
            if unknown:
                raise ValueError(f"unknown {name} key {str(unknown[0])[:40]!r}")
        s["channels"] = check_sequence("channels", s.get("channels"), 16)
        s["resample_filter"] = check_sequence("resample_filter", s.get("resample_filter"), MAX_FILTER_TAPS)
        return GeneratorConfig(mapping=MappingConfig(**m), synthesis=SynthesisConfig(**s))


def make_config(
    *,
    z_dim: int = 512,
    c_dim: int = 0,
    w_dim: int = 512,
    img_resolution: int = 1024,
    img_channels: int = 3,
    mapping_layers: int = 8,
    lr_multiplier: float = 0.01,
    channel_base: int = 32768,
    channel_max: int = 512,
    architecture: str = "skip",
    conv_clamp: float | None = None,
) -> GeneratorConfig:
    """A config from the official ``Generator`` keyword arguments."""
    synthesis = SynthesisConfig(
        w_dim=w_dim,
        img_resolution=img_resolution,
        img_channels=img_channels,
        channels=SynthesisConfig.channels_from_base(img_resolution, channel_base, channel_max),
        architecture=architecture,
        conv_clamp=conv_clamp,
    )
    mapping = MappingConfig(
        z_dim=z_dim,
        c_dim=c_dim,
        w_dim=w_dim,
        num_ws=synthesis.num_ws,
        num_layers=mapping_layers,
        lr_multiplier=lr_multiplier,
    )
    return GeneratorConfig(mapping=mapping, synthesis=synthesis)


# ----------------------------------------------------------------------------
# Free functions: the math.


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def activate(x: Tensor, name: str) -> Tensor:
    """The activation function of the official ``bias_act`` table, without gain."""
    if name == "linear":
        return x
    if name == "relu":
        return F.relu(x)
    if name == "lrelu":
        return F.leaky_relu(x, ACTIVATIONS["lrelu"][1])
    if name == "tanh":
        return torch.tanh(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "elu":
        return F.elu(x)
    if name == "selu":
        return F.selu(x)
    if name == "softplus":
        return F.softplus(x)
    if name == "swish":
        return torch.sigmoid(x) * x
    raise ValueError(f"unknown activation {name!r}")


def bias_act(
    x: Tensor, b: Tensor | None, act: str = "linear", gain: float | None = None, clamp: float | None = None
) -> Tensor:
    """Bias, activation, gain and clamp; ``b`` is added along dim 1."""
    if b is not None:
        x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
    x = activate(x, act)
    gain = ACTIVATIONS[act][0] if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def setup_filter(f: Sequence[float]) -> Tensor:
    """A normalised 2-D FIR filter from separable taps: outer product / sum. ``# [fh, fw]``"""
    t = torch.as_tensor(list(f), dtype=torch.float32)
    if t.ndim == 1:
        t = torch.outer(t, t)
    return t / t.sum()


def upfirdn2d(x: Tensor, f: Tensor, up: int = 1, padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> Tensor:
    """Upsample by zero insertion, pad (negative = crop), convolve with the 2-D FIR ``f``.

    ``padding`` is ``[x0, x1, y0, y1]`` in upsampled pixels. Convolution (not correlation) as the
    official op with ``flip_filter=False``. ``# [N, C, H, W] -> [N, C, H', W']``
    """
    C, H, W = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    px0, px1, py0, py1 = (int(p) for p in padding)
    if up > 1:
        x = x.reshape(-1, C, H, 1, W, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(-1, C, H * up, W * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    if min(px0, px1, py0, py1) < 0:
        x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    fk = (f * (gain ** (f.ndim / 2))).to(x.dtype).flip([0, 1])
    fk = fk[None, None].repeat(C, 1, 1, 1)
    return F.conv2d(x, fk, groups=C)


def upsample2d(x: Tensor, f: Tensor, up: int = 2) -> Tensor:
    """The official ``upsample2d``: output is ``up`` times the input size."""
    fh, fw = int(f.shape[0]), int(f.shape[1])
    p = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=up * up)


def conv2d_resample(
    x: Tensor, w: Tensor, f: Tensor | None, up: int = 1, padding: int = 0, groups: int = 1, flip_weight: bool = True
) -> Tensor:
    """2-D convolution with optional FIR up-sampling (the generator never down-samples).

    ``padding`` is with respect to the up-sampled image, as the official ``conv2d_resample``.
    """
    _, _, kh, kw = (int(s) for s in w.shape)
    if up == 1:
        wk = w if flip_weight or (kh == 1 and kw == 1) else w.flip([2, 3])
        return F.conv2d(x, wk, padding=padding, groups=groups)
    assert f is not None
    fh, fw = int(f.shape[0]), int(f.shape[1])
    px0 = padding + (fw + up - 1) // 2
    px1 = padding + (fw - up) // 2
    py0 = padding + (fh + up - 1) // 2
    py1 = padding + (fh - up) // 2
    if kh == 1 and kw == 1:  # Convolve first, then up-sample.
        x = F.conv2d(x, w, groups=groups)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up * up)
    # Transposed strided convolution, then the FIR filter.
    out_channels, in_per_group = int(w.shape[0]), int(w.shape[1])
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_channels // groups, kh, kw)
    px0 -= kw - 1
    px1 -= kw - up
    py0 -= kh - 1
    py1 -= kh - up
    pxt = max(min(-px0, -px1), 0)
    pyt = max(min(-py0, -py1), 0)
    if flip_weight:  # conv_transpose2d is a convolution; flip to get a correlation.
        wt = wt.flip([2, 3])
    x = F.conv_transpose2d(x, wt, stride=up, padding=[pyt, pxt], groups=groups)
    return upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up * up)


def modulated_conv2d(
    x: Tensor,  # [N, I, H, W]
    weight: Tensor,  # [O, I, kh, kw]
    styles: Tensor,  # [N, I]
    demodulate: bool = True,
    up: int = 1,
    padding: int = 0,
    resample_filter: Tensor | None = None,
    flip_weight: bool = True,
    fused: bool = False,
    conv_dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Modulated (and demodulated) convolution. ``# [N, O, H*up, W*up]``

    ``fused=False`` (the default, exported): scale activations by the styles, convolve with the
    static weight, scale by the demodulation coefficients. ``fused=True``: the official grouped
    convolution with per-sample weights. ``conv_dtype`` runs the convolution itself in fp16.
    """
    N = x.shape[0]
    if fused:
        wn = weight.unsqueeze(0) * styles.reshape(N, 1, -1, 1, 1)  # [N, O, I, kh, kw]
        if demodulate:
            dcoefs = (wn.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
            wn = wn * dcoefs.reshape(N, -1, 1, 1, 1)
        _, I, kh, kw = (int(s) for s in weight.shape)
        xg = x.reshape(1, -1, *x.shape[2:])
        y = conv2d_resample(
            xg,
            wn.reshape(-1, I, kh, kw),
            resample_filter,
            up=up,
            padding=padding,
            groups=int(N),
            flip_weight=flip_weight,
        )
        return y.reshape(N, -1, *y.shape[2:])

    x = x * styles.reshape(N, -1, 1, 1)
    if conv_dtype != torch.float32:
        x = conv2d_resample(x.to(conv_dtype), weight.to(conv_dtype), resample_filter, up, padding, 1, flip_weight)
        x = x.to(torch.float32)
    else:
        x = conv2d_resample(x, weight, resample_filter, up=up, padding=padding, flip_weight=flip_weight)
    if demodulate:
        # sum_{i,k} (w_oik * s_ni)^2 = s^2 @ (sum_k w_oik^2)^T, without the [N, O, I, k, k] tensor.
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]
        x = x * dcoefs.reshape(N, -1, 1, 1)
    return x


# ----------------------------------------------------------------------------
# Layers.


class FullyConnectedLayer(nn.Module):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight * self.weight_gain
        b: Tensor | None = self.bias
        if b is not None and self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Plain equalised-lr convolution; the generator uses it for the resnet skip connections."""

    resample_filter: Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.up = up
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size**2)
        self.act_gain = ACTIVATIONS[activation][0]
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, padding=self.padding, flip_weight=self.up == 1)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class MappingNetwork(nn.Module):
    """z (and a class label) -> w. Truncation is not part of the graph: see ``styleserve.latent``."""

    w_avg: Tensor

    def __init__(self, cfg: MappingConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.c_dim > 0:
            self.embed = FullyConnectedLayer(cfg.c_dim, cfg.embed_dim, bias=not cfg.label_concat)
        feats = cfg.features
        for idx in range(cfg.num_layers):
            layer = FullyConnectedLayer(
                feats[idx], feats[idx + 1], activation=cfg.activation, lr_multiplier=cfg.lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        if self.cfg.label_concat:  # TF StyleGAN2: [z, c @ embed] normalised jointly.
            assert c is not None, "conditional mapping needs c"
            h = normalize_2nd_moment(torch.cat([z.to(torch.float32), self.embed(c.to(torch.float32))], dim=1))
            for idx in range(self.cfg.num_layers):
                h = getattr(self, f"fc{idx}")(h)
            return h  # [N, w_dim]
        x = normalize_2nd_moment(z.to(torch.float32)) if self.cfg.z_dim > 0 else None  # [N, z_dim]
        if self.cfg.c_dim > 0:
            assert c is not None, "conditional mapping needs c"
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))  # [N, embed_dim]
            x = torch.cat([x, y], dim=1) if x is not None else y
        assert x is not None
        for idx in range(self.cfg.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        return x  # [N, w_dim]


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally up-sampling), noise, bias, activation."""

    resample_filter: Tensor
    noise_const: Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation][0]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.fused = False
        self.conv_dtype = torch.float32

    def forward(self, x: Tensor, w: Tensor, noise: Tensor | None, gain: float = 1.0) -> Tensor:
        styles = self.affine(w)  # [N, I]
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=self.up == 1,
            fused=self.fused,
            conv_dtype=self.conv_dtype,
        )
        if self.use_noise and noise is not None:
            x = x + noise * self.noise_strength  # noise: [N or 1, 1, res, res]
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution without demodulation, to image channels."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1, conv_clamp: float | None = None
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size**2)
        self.fused = False

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=self.fused)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: [const | conv0 (up)] -> conv1 -> [torgb]; 'orig', 'skip' or 'resnet'."""

    resample_filter: Tensor

    def __init__(
        self, cfg: SynthesisConfig, in_channels: int, out_channels: int, resolution: int, is_last: bool
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.is_last = is_last
        self.architecture = cfg.architecture
        self.register_buffer("resample_filter", setup_filter(cfg.resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        layer_kw = dict(
            w_dim=cfg.w_dim,
            resolution=resolution,
            kernel_size=cfg.kernel_size,
            use_noise=cfg.use_noise,
            activation=cfg.activation,
            resample_filter=cfg.resample_filter,
            conv_clamp=cfg.conv_clamp,
        )
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **layer_kw)  # type: ignore[arg-type]
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kw)  # type: ignore[arg-type]
        self.num_conv += 1
        if is_last or cfg.architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, cfg.img_channels, w_dim=cfg.w_dim, conv_clamp=cfg.conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and cfg.architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels, out_channels, kernel_size=1, bias=False, up=2, resample_filter=cfg.resample_filter
            )

    def conv_layers(self) -> list[tuple[str, SynthesisLayer]]:
        names = ["conv0", "conv1"] if self.in_channels != 0 else ["conv1"]
        return [(n, getattr(self, n)) for n in names]

    def forward(
        self, x: Tensor | None, img: Tensor | None, ws: Tensor, noises: Sequence[Tensor | None]
    ) -> tuple[Tensor, Tensor | None]:
        # ws: [N, num_conv + num_torgb, w_dim]; noises: one per conv layer.
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, ws[:, 0], noises[0])
        else:
            assert x is not None
            if self.architecture == "resnet":
                y = self.skip(x, gain=np.sqrt(0.5))
                x = self.conv0(x, ws[:, 0], noises[0])
                x = self.conv1(x, ws[:, 1], noises[1], gain=np.sqrt(0.5))
                x = y + x
            else:
                x = self.conv0(x, ws[:, 0], noises[0])
                x = self.conv1(x, ws[:, 1], noises[1])
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, ws[:, self.num_conv])
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws ``[N, num_ws, w_dim]`` + one noise tensor per noise layer -> image ``[N, C, H, W]``."""

    def __init__(self, cfg: SynthesisConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.block_resolutions = cfg.block_resolutions
        ch = dict(zip(self.block_resolutions, cfg.channels, strict=True))
        for res in self.block_resolutions:
            in_channels = ch[res // 2] if res > 4 else 0
            block = SynthesisBlock(cfg, in_channels, ch[res], res, is_last=res == cfg.img_resolution)
            setattr(self, f"b{res}", block)
        self.num_ws = cfg.num_ws

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def noise_layers(self) -> list[tuple[str, SynthesisLayer]]:
        """The conv layers in forward order, named like ``b8.conv0``: one noise input each."""
        return [(f"b{b.resolution}.{n}", layer) for b in self.blocks() for n, layer in b.conv_layers()]

    def ws_table(self) -> list[list[str]]:
        """For each ws index, the layers it feeds (a torgb shares its w with the next block's conv0)."""
        table: list[list[str]] = [[] for _ in range(self.num_ws)]
        w_idx = 0
        for b in self.blocks():
            names = [f"b{b.resolution}.{n}" for n, _ in b.conv_layers()]
            if b.num_torgb:
                names.append(f"b{b.resolution}.torgb")
            for k, name in enumerate(names):
                table[w_idx + k].append(name)
            w_idx += b.num_conv
        return table

    def set_mode(self, fused: bool = False, conv_dtype: torch.dtype = torch.float32) -> None:
        for m in self.modules():
            if isinstance(m, (SynthesisLayer, ToRGBLayer)):
                m.fused = fused
            if isinstance(m, SynthesisLayer):
                m.conv_dtype = conv_dtype

    def forward(self, ws: Tensor, noises: Sequence[Tensor | None]) -> Tensor:
        ws = ws.to(torch.float32)
        x: Tensor | None = None
        img: Tensor | None = None
        w_idx = 0
        n_idx = 0
        for block in self.blocks():
            cur_ws = ws[:, w_idx : w_idx + block.num_conv + block.num_torgb]
            x, img = block(x, img, cur_ws, noises[n_idx : n_idx + block.num_conv])
            w_idx += block.num_conv
            n_idx += block.num_conv
        assert img is not None
        return img

    def make_noise(self, mode: str, batch: int = 1, seed: int = 0) -> list[Tensor | None]:
        """Noise inputs for a mode: 'const' (the buffers), 'none' (nothing) or 'random' (seeded)."""
        return noise_inputs([layer for _, layer in self.noise_layers()], mode, batch, seed)


def noise_inputs(layers: Sequence[Any], mode: str, batch: int = 1, seed: int = 0) -> list[Tensor | None]:
    """One noise input per noise layer (with ``noise_const``, ``use_noise``, ``resolution``) for a mode:
    'const' (the buffers), 'none' (nothing) or 'random' (``styleserve.latent.noise_from_seed``)."""
    from styleserve.latent import noise_from_seed

    if mode == "const":
        return [layer.noise_const[None, None] if layer.use_noise else None for layer in layers]
    if mode == "none":
        return [None for _ in layers]
    if mode == "random":
        planes = noise_from_seed(seed, [layer.resolution for layer in layers])
        return [torch.from_numpy(p).repeat(batch, 1, 1, 1) for p in planes]
    raise ValueError(f"unknown noise mode {mode!r}")


def truncate_ws(w: Tensor, w_avg: Tensor, num_ws: int, psi: float, cutoff: int | None) -> Tensor:
    """Broadcast w ``[N, w_dim]`` to ws ``[N, num_ws, w_dim]`` and truncate layers ``< cutoff`` (None = all)
    toward ``w_avg`` as the official generators do: ``w_avg.lerp(w, psi)``, skipped at psi == 1."""
    ws = w.unsqueeze(1).repeat([1, num_ws, 1])
    if psi == 1:
        return ws
    stop = num_ws if cutoff is None else min(cutoff, num_ws)
    return torch.cat([w_avg.lerp(ws[:, :stop], psi), ws[:, stop:]], dim=1)


W_AVG_SAMPLES = 10000
W_AVG_SEED = 0
MAX_PARAMETERS = 2**28
"""Refuse generators with more elements than this (1 GiB in float32); StyleGAN2 1024 px has ~30M. Checked by
every reader on the config alone, before any tensor of the checkpoint is materialised."""


def check_parameter_count(shapes: Mapping[str, tuple[int, ...]], source: str) -> None:
    """Refuse a config whose tensors would not fit in memory (forged shapes, stride-0 views)."""
    total = sum(math.prod(shape) for shape in shapes.values())
    if total > MAX_PARAMETERS:
        raise CheckpointError(f"{source}: implausibly large generator: {total} parameters (limit {MAX_PARAMETERS})")


def load_mapping(mapping: nn.Module, state: Mapping[str, Tensor], w_dim: int) -> nn.Module:
    """``mapping`` (StyleGAN2 or v1) with the ``mapping.*`` weights of a generator state dict; ``w_avg`` zeroed."""
    msd = {k[len("mapping.") :]: v for k, v in state.items() if k.startswith("mapping.") and k != "mapping.w_avg"}
    msd["w_avg"] = torch.zeros([w_dim])
    mapping.load_state_dict({k: v.to(torch.float32) for k, v in msd.items()}, strict=True)
    return mapping


def mean_w(
    mapping: nn.Module, z_dim: int, c_dim: int, num_samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED
) -> Tensor:
    """Mean mapping output over ``RandomState(seed).randn(num_samples, z_dim)``, class ``i % c_dim`` for sample
    ``i`` in conditional models: how ``w_avg`` is estimated when a checkpoint has none. ``# [w_dim]``"""
    z_all = np.random.RandomState(seed).randn(num_samples, z_dim).astype(np.float32)
    total: Tensor | None = None
    with torch.no_grad():
        for start in range(0, num_samples, 2000):
            stop = min(start + 2000, num_samples)
            c = None
            if c_dim > 0:
                c = torch.nn.functional.one_hot(torch.arange(start, stop) % c_dim, c_dim).to(torch.float32)
            part = mapping(torch.from_numpy(z_all[start:stop]), c).to(torch.float64).sum(dim=0)
            total = part if total is None else total + part
    assert total is not None
    return (total / num_samples).to(torch.float32)


class Generator(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.synthesis = SynthesisNetwork(cfg.synthesis)
        self.mapping = MappingNetwork(cfg.mapping)

    @property
    def num_ws(self) -> int:
        return self.cfg.num_ws

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
    ) -> Tensor:
        """The official ``G(z, c, truncation_psi, truncation_cutoff, noise_mode)``."""
        ws = truncate_ws(self.mapping(z, c), self.mapping.w_avg, self.num_ws, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, self.synthesis.make_noise(noise_mode, batch=z.shape[0]))


# ----------------------------------------------------------------------------
# Loading.


def expected_shapes(cfg: GeneratorConfig) -> dict[str, tuple[int, ...]]:
    """``Generator(cfg).state_dict()`` key -> shape, in state-dict order, built on the meta device."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in Generator(cfg).state_dict().items()}


def check_state_dict(cfg: GeneratorConfig, state: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Check ``state`` has exactly the keys and shapes of ``Generator(cfg)``; CheckpointError naming the key.

    Works on shapes only (the reference network lives on the meta device), so it allocates nothing.
    """
    from styleserve.errors import CheckpointError

    expected = expected_shapes(cfg)
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{source} is missing key {missing[0]!r}{more}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{source} has unexpected key {unexpected[0]!r}{more}")
    for key, shape in expected.items():
        got = state[key]
        if not isinstance(got, Tensor):
            raise CheckpointError(f"{source}: {key!r} is a {type(got).__name__}, not a tensor")
        if tuple(got.shape) != shape:
            raise CheckpointError(f"{source}: {key!r} has shape {tuple(got.shape)}, the config needs {shape}")


def load_generator(cfg: GeneratorConfig, state: Mapping[str, Tensor]) -> Generator:
    """Build a :class:`Generator` and load ``state`` (official key names), checking every key and shape.

    Raises :class:`styleserve.errors.CheckpointError` naming the first missing, unexpected,
    mis-shaped or non-finite key. Tensors are converted to float32.
    """
    from styleserve.errors import CheckpointError

    check_state_dict(cfg, state)
    for key, got in state.items():
        if not torch.isfinite(got.float()).all():
            raise CheckpointError(f"{key!r} holds NaN or Inf")
    G = Generator(cfg)
    G.load_state_dict({k: v.detach().to(torch.float32) for k, v in state.items()}, strict=True)
    return G.eval().requires_grad_(False)
