"""StyleGAN (v1, AdaIN) generator networks, written for export.

These compute the generator of NVlabs stylegan (``training/networks_stylegan.py``): ``G_mapping``
and ``G_synthesis`` at the final resolution (``lod = 0``), and the truncation of ``G_style``.

* Mapping: optional label embedding (``LabelConcat``: ``c @ E``, concatenated to ``z``), pixel
  norm of the concatenation, dense layers with equalised learning rate (runtime coefficient
  ``gain / sqrt(fan_in) * lrmul``, gain ``sqrt(2)``; bias ``* lrmul``) and leaky ReLU 0.2 (no gain
  after the activation: it is folded into the weight coefficient).
* Synthesis: a learned constant ``[1, nf(1), 4, 4]``; every layer ends in the *epilogue*: noise
  (a ``[N or 1, 1, res, res]`` input times a learned per-channel weight), bias, activation,
  instance norm (eps 1e-8; ``instance_norm_eps``), and style modulation ``x * (s0 + 1) + s1`` where ``[s0, s1]`` is an
  equalised-lr dense layer (gain 1) of that layer's ``w``. Up-sampling layers are
  ``blur(upscale2d_conv2d(x))``: nearest up-sampling then a 3x3 conv, or (``fused_scale``, by
  default from 128 px output) one transposed stride-2 conv with the padded, 4-tap summed weight.
  The image is the 1x1 ``ToRGB_lod0`` conv (gain 1) plus bias, at the final resolution.
  rosinality/style-based-gan-pytorch generators are the same function up to two knobs
  (``instance_norm_eps=1e-5``, ``up_bias_before_blur=True``: its up-sampling conv adds its bias
  before the zero-padded blur, which scales the bias down at the image border); the rest of its
  differences (gains, the ``/4`` of its fused weight, AdaIN bias ``+1``) fold into the weights
  (see :mod:`styleserve.export.checkpoints_v1`).

The layout is torch's: conv weights ``[out, in, kh, kw]``, dense weights ``[out, in]``. The names
are our own (``synthesis.b8.conv0.weight`` ...); :data:`TF_NAMES` / :func:`tf_to_state` map the
TensorFlow variable names onto them. Every layer has a ``w`` (``num_ws = 2 log2(res) - 2``) and a
noise input, so the exporter's ``noise_layers()`` / ``ws_table()`` contract holds unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .networks import (
    MAX_C_DIM,
    MAX_CHANNELS,
    MAX_FILTER_TAPS,
    MAX_IMG_RESOLUTION,
    MAX_LATENT_DIM,
    MAX_MAPPING_LAYERS,
    GeneratorDims,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_sequence,
    noise_inputs,
    truncate_ws,
)

ARCHITECTURE = "stylegan"
ACTIVATIONS_V1: dict[str, float] = {"lrelu": math.sqrt(2), "relu": math.sqrt(2)}  # name -> weight gain
TRUNCATION_CUTOFF = 8  # The official G_style default.
TRUNCATION_PSI = 0.7  # The official G_style default.


# ----------------------------------------------------------------------------
# Configs.


@dataclass(frozen=True)
class MappingConfigV1:
    z_dim: int  # latent_size
    c_dim: int  # label_size
    w_dim: int  # dlatent_size
    num_ws: int  # dlatent_broadcast
    num_layers: int = 8  # mapping_layers
    layer_features: int = 512  # mapping_fmaps
    lr_multiplier: float = 0.01  # mapping_lrmul
    activation: str = "lrelu"  # mapping_nonlinearity
    normalize_latents: bool = True

    def __post_init__(self) -> None:
        check_int("z_dim", self.z_dim, 1, MAX_LATENT_DIM)
        check_int("c_dim", self.c_dim, 0, MAX_C_DIM)
        check_int("w_dim", self.w_dim, 1, MAX_LATENT_DIM)
        check_int("num_ws", self.num_ws, 1, 64)
        check_int("num_layers", self.num_layers, 1, MAX_MAPPING_LAYERS)
        check_int("layer_features", self.layer_features, 1, MAX_LATENT_DIM)
        check_float("lr_multiplier", self.lr_multiplier, 1e-8, 1e8)
        check_choice("activation", self.activation, list(ACTIVATIONS_V1))
        check_bool("normalize_latents", self.normalize_latents)
        if self.z_dim < 1 or self.c_dim < 0 or self.w_dim < 1 or self.num_ws < 1 or self.num_layers < 1:
            raise ValueError("z_dim, w_dim, num_ws and num_layers must be positive, c_dim >= 0")
        if self.activation not in ACTIVATIONS_V1:
            raise ValueError(f"unknown activation {self.activation!r}")

    @property
    def features(self) -> list[int]:
        first = self.z_dim * 2 if self.c_dim else self.z_dim  # LabelConcat embeds into latent_size.
        return [first] + [self.layer_features] * (self.num_layers - 1) + [self.w_dim]


@dataclass(frozen=True)
class SynthesisConfigV1:
    w_dim: int
    img_resolution: int
    img_channels: int
    channels: tuple[int, ...]  # Channels at resolutions 4, 8, ..., img_resolution (nf(1), nf(2), ...).
    fused_scale: bool | str = "auto"  # True, False or "auto" (fused when the output is >= 128 px).
    blur_filter: tuple[float, ...] = (1.0, 2.0, 1.0)  # () = no blur.
    use_noise: bool = True
    activation: str = "lrelu"
    use_pixel_norm: bool = False
    use_instance_norm: bool = True
    instance_norm_eps: float = 1e-8  # Official; rosinality's nn.InstanceNorm2d uses 1e-5.
    up_bias_before_blur: bool = False  # rosinality: the up-sampling conv's bias is added before the blur.

    def __post_init__(self) -> None:
        check_int("w_dim", self.w_dim, 1, MAX_LATENT_DIM)
        r = check_int("img_resolution", self.img_resolution, 4, MAX_IMG_RESOLUTION)
        check_int("img_channels", self.img_channels, 1, MAX_CHANNELS)
        for c in check_sequence("channels", self.channels, 16):
            check_int("channels", c, 1, MAX_CHANNELS)
        for t in check_sequence("blur_filter", self.blur_filter, MAX_FILTER_TAPS):
            check_float("blur_filter", t, -1e30, 1e30)
        if not isinstance(self.fused_scale, (bool, str)):
            raise ValueError(f"fused_scale must be True, False or 'auto', got a {type(self.fused_scale).__name__}")
        check_choice("activation", self.activation, list(ACTIVATIONS_V1))
        for name in ("use_noise", "use_pixel_norm", "use_instance_norm", "up_bias_before_blur"):
            check_bool(name, getattr(self, name))
        check_float("instance_norm_eps", self.instance_norm_eps, 0.0, 1.0)
        if r < 4 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {r}")
        if len(self.channels) != len(self.resolutions):
            raise ValueError(f"need {len(self.resolutions)} channel counts, got {len(self.channels)}")
        if self.fused_scale not in (True, False, "auto"):
            raise ValueError(f"fused_scale must be True, False or 'auto', got {self.fused_scale!r}")
        if self.activation not in ACTIVATIONS_V1:
            raise ValueError(f"unknown activation {self.activation!r}")

    @staticmethod
    def channels_from_base(
        img_resolution: int, fmap_base: int = 8192, fmap_decay: float = 1.0, fmap_max: int = 512
    ) -> tuple[int, ...]:
        """The official ``nf(res_log2 - 1)`` for resolutions 4, 8, ..., img_resolution."""
        log2 = int(np.log2(img_resolution))
        return tuple(min(int(fmap_base / (2.0 ** (s * fmap_decay))), fmap_max) for s in range(1, log2))

    @property
    def resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(np.log2(self.img_resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        return 2 * len(self.resolutions)

    def fused_at(self, res: int) -> bool:
        """Whether the up-sampling conv producing ``res`` is fused (official ``fused_scale='auto'``)."""
        return res >= 128 if self.fused_scale == "auto" else bool(self.fused_scale)


@dataclass(frozen=True)
class GeneratorConfigV1(GeneratorDims):
    mapping: MappingConfigV1
    synthesis: SynthesisConfigV1
    truncation_psi: float = TRUNCATION_PSI  # Recommended (official G_style defaults), informational.
    truncation_cutoff: int | None = TRUNCATION_CUTOFF
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    architecture = ARCHITECTURE

    def __post_init__(self) -> None:
        check_float("truncation_psi", self.truncation_psi, -100.0, 100.0)
        if self.truncation_cutoff is not None:
            check_int("truncation_cutoff", self.truncation_cutoff, 0, 64)
        self.check_dims()

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("extra")
        d["architecture"] = ARCHITECTURE
        return d


def make_config_v1(
    *,
    z_dim: int = 512,
    c_dim: int = 0,
    w_dim: int = 512,
    img_resolution: int = 1024,
    img_channels: int = 3,
    mapping_layers: int = 8,
    mapping_fmaps: int = 512,
    mapping_lrmul: float = 0.01,
    fmap_base: int = 8192,
    fmap_decay: float = 1.0,
    fmap_max: int = 512,
    fused_scale: bool | str = "auto",
    blur_filter: Sequence[float] = (1, 2, 1),
    nonlinearity: str = "lrelu",
    truncation_cutoff: int | None = TRUNCATION_CUTOFF,
) -> GeneratorConfigV1:
    """A config from the official ``G_style`` / ``G_mapping`` / ``G_synthesis`` keyword arguments."""
    synthesis = SynthesisConfigV1(
        w_dim=w_dim,
        img_resolution=img_resolution,
        img_channels=img_channels,
        channels=SynthesisConfigV1.channels_from_base(img_resolution, fmap_base, fmap_decay, fmap_max),
        fused_scale=fused_scale,
        blur_filter=tuple(float(t) for t in blur_filter),
        activation=nonlinearity,
    )
    mapping = MappingConfigV1(
        z_dim=z_dim,
        c_dim=c_dim,
        w_dim=w_dim,
        num_ws=synthesis.num_ws,
        num_layers=mapping_layers,
        layer_features=mapping_fmaps,
        lr_multiplier=mapping_lrmul,
        activation=nonlinearity,
    )
    return GeneratorConfigV1(mapping=mapping, synthesis=synthesis, truncation_cutoff=truncation_cutoff)


# ----------------------------------------------------------------------------
# Free functions.


def pixel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """``x * rsqrt(mean(x^2 over dim 1) + eps)``."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def instance_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Per-sample, per-channel normalisation over H, W (biased variance). ``# [N, C, H, W]``"""
    x = x - x.mean(dim=[2, 3], keepdim=True)
    return x * (x.square().mean(dim=[2, 3], keepdim=True) + eps).rsqrt()


def activate_v1(x: Tensor, name: str) -> Tensor:
    if name == "lrelu":
        return F.leaky_relu(x, 0.2)
    if name == "relu":
        return F.relu(x)
    raise ValueError(f"unknown activation {name!r}")


def blur_kernel(taps: Sequence[float]) -> Tensor:
    """The normalised 2-D blur filter of ``_blur2d`` (outer product / sum). ``# [k, k]``"""
    t = torch.as_tensor([float(v) for v in taps], dtype=torch.float32)
    f = torch.outer(t, t)
    return f / f.sum()


def blur2d(x: Tensor, f: Tensor) -> Tensor:
    """Depthwise correlation with ``f``, ``SAME`` padding (``tf.nn.depthwise_conv2d``)."""
    k = int(f.shape[0])
    lo, hi = (k - 1) // 2, k - 1 - (k - 1) // 2
    C = int(x.shape[1])
    x = F.pad(x, [lo, hi, lo, hi])
    return F.conv2d(x, f.to(x.dtype)[None, None].repeat(C, 1, 1, 1), groups=C)


def upscale2d(x: Tensor, factor: int = 2) -> Tensor:
    """Nearest-neighbour up-sampling (``_upscale2d``: tile each pixel ``factor`` x ``factor``)."""
    _, C, H, W = x.shape
    x = x.reshape(-1, C, H, 1, W, 1).expand(-1, -1, -1, factor, -1, factor)
    return x.reshape(-1, C, H * factor, W * factor)


def fused_upscale_weight(w: Tensor) -> Tensor:
    """The official fused weight: pad the kernel by 1 and add its four 1-pixel shifts.

    ``w`` is ``[out, in, k, k]`` (already scaled); returns the ``conv_transpose2d`` weight
    ``[in, out, k+1, k+1]``.
    """
    # Zero padding by concatenation (keeps the weight's shape static in the traced ONNX graph).
    O, I, kh, kw = (int(s) for s in w.shape)
    zr = w.new_zeros([O, I, 1, kw])
    w = torch.cat([zr, w, zr], dim=2)
    zc = w.new_zeros([O, I, kh + 2, 1])
    w = torch.cat([zc, w, zc], dim=3)
    w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]
    return w.transpose(0, 1)


def upscale2d_conv2d(x: Tensor, w: Tensor, fused: bool) -> Tensor:
    """``upscale2d_conv2d``: 2x up-sampling and a ``k x k`` conv (``SAME``), fused or not."""
    k = int(w.shape[-1])
    if not fused:
        return F.conv2d(upscale2d(x), w, padding=k // 2)
    # tf.nn.conv2d_transpose(stride 2, SAME) with a (k+1)-tap kernel: padding (k+1-2)/2 each side.
    return F.conv_transpose2d(x, fused_upscale_weight(w), stride=2, padding=(k - 1) // 2)


# ----------------------------------------------------------------------------
# Layers.


class DenseV1(nn.Module):
    """Equalised-lr dense layer: ``x @ (W * gain/sqrt(in) * lrmul).T + b * lrmul``, then activation."""

    def __init__(
        self, in_features: int, out_features: int, gain: float, lr_multiplier: float = 1.0, activation: str = "linear"
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros([out_features]))
        self.weight_gain = gain / np.sqrt(in_features) * lr_multiplier
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        b = self.bias * self.bias_gain if self.bias_gain != 1 else self.bias
        x = torch.addmm(b.unsqueeze(0), x, (self.weight * self.weight_gain).t())
        return x if self.activation == "linear" else activate_v1(x, self.activation)


class MappingNetworkV1(nn.Module):
    """z (+ one-hot c) -> w, the official ``G_mapping`` without the broadcast."""

    w_avg: Tensor

    def __init__(self, cfg: MappingConfigV1) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.c_dim:
            self.embed = nn.Parameter(torch.randn([cfg.c_dim, cfg.z_dim]))  # LabelConcat/weight, no gain.
        feats = cfg.features
        gain = ACTIVATIONS_V1[cfg.activation]
        for i in range(cfg.num_layers):
            layer = DenseV1(feats[i], feats[i + 1], gain, cfg.lr_multiplier, activation=cfg.activation)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        x = z.to(torch.float32)
        if self.cfg.c_dim:
            assert c is not None, "conditional mapping needs c"
            x = torch.cat([x, c.to(torch.float32) @ self.embed], dim=1)
        if self.cfg.normalize_latents:
            x = pixel_norm(x)
        for i in range(self.cfg.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x  # [N, w_dim]


class StyleLayerV1(nn.Module):
    """One synthesis layer: [conv | up-conv + blur | nothing], then the epilogue with its own w.

    ``kind``: ``"input"`` (the constant's epilogue), ``"conv"`` (3x3) or ``"up"`` (up-sampling).
    """

    noise_const: Tensor
    blur_filter: Tensor

    def __init__(self, cfg: SynthesisConfigV1, kind: str, in_channels: int, out_channels: int, resolution: int) -> None:
        super().__init__()
        self.kind = kind
        self.resolution = resolution
        self.use_noise = cfg.use_noise
        self.activation = cfg.activation
        self.use_pixel_norm = cfg.use_pixel_norm
        self.use_instance_norm = cfg.use_instance_norm
        self.instance_norm_eps = cfg.instance_norm_eps
        self.bias_before_blur = kind == "up" and cfg.up_bias_before_blur
        self.fused = kind == "up" and cfg.fused_at(resolution)
        self.conv_dtype = torch.float32
        if kind != "input":
            self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
            self.weight_gain = ACTIVATIONS_V1[cfg.activation] / np.sqrt(in_channels * 9)
        self.use_blur = kind == "up" and len(cfg.blur_filter) > 0
        if self.use_blur:
            self.register_buffer("blur_filter", blur_kernel(cfg.blur_filter))
        if cfg.use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([out_channels]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.style = DenseV1(cfg.w_dim, 2 * out_channels, gain=1.0)
        self.channels = out_channels

    def forward(self, x: Tensor, w: Tensor, noise: Tensor | None) -> Tensor:
        if self.kind != "input":
            wt = self.weight * self.weight_gain
            xin = x
            if self.conv_dtype != torch.float32:
                xin, wt = x.to(self.conv_dtype), wt.to(self.conv_dtype)
            if self.kind == "up":
                x = upscale2d_conv2d(xin, wt, self.fused)
            else:
                x = F.conv2d(xin, wt, padding=1)
            x = x.to(torch.float32)
            if self.bias_before_blur:
                x = x + self.bias.reshape(1, -1, 1, 1)
            if self.use_blur:
                x = blur2d(x, self.blur_filter)
        if self.use_noise and noise is not None:
            x = x + noise * self.noise_strength.reshape(1, -1, 1, 1)  # noise: [N or 1, 1, res, res]
        if not self.bias_before_blur:
            x = x + self.bias.reshape(1, -1, 1, 1)
        x = activate_v1(x, self.activation)
        if self.use_pixel_norm:
            x = pixel_norm(x)
        if self.use_instance_norm:
            x = instance_norm(x, self.instance_norm_eps)
        style = self.style(w)  # [N, 2C]
        C = self.channels
        return x * (style[:, :C, None, None] + 1) + style[:, C:, None, None]


class ToRGBV1(nn.Module):
    """``ToRGB_lod0``: 1x1 equalised-lr conv (gain 1) plus bias."""

    def __init__(self, in_channels: int, img_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn([img_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([img_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.weight_gain) + self.bias.reshape(1, -1, 1, 1)


class SynthesisBlockV1(nn.Module):
    """One resolution: ``b4`` = const -> input epilogue -> conv; others = conv0 (up) -> conv1."""

    def __init__(self, cfg: SynthesisConfigV1, in_channels: int, out_channels: int, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        if resolution == 4:
            self.const = nn.Parameter(torch.ones([out_channels, 4, 4]))
            self.input = StyleLayerV1(cfg, "input", out_channels, out_channels, 4)
            self.conv = StyleLayerV1(cfg, "conv", out_channels, out_channels, 4)
            self.layer_names = ["input", "conv"]
        else:
            self.conv0 = StyleLayerV1(cfg, "up", in_channels, out_channels, resolution)
            self.conv1 = StyleLayerV1(cfg, "conv", out_channels, out_channels, resolution)
            self.layer_names = ["conv0", "conv1"]

    def layers(self) -> list[tuple[str, StyleLayerV1]]:
        return [(n, getattr(self, n)) for n in self.layer_names]


class SynthesisNetworkV1(nn.Module):
    """ws ``[N, num_ws, w_dim]`` + one noise tensor per layer -> image ``[N, C, H, W]``."""

    def __init__(self, cfg: SynthesisConfigV1) -> None:
        super().__init__()
        self.cfg = cfg
        self.resolutions = cfg.resolutions
        ch = dict(zip(self.resolutions, cfg.channels, strict=True))
        for res in self.resolutions:
            setattr(self, f"b{res}", SynthesisBlockV1(cfg, ch.get(res // 2, 0), ch[res], res))
        self.torgb = ToRGBV1(cfg.channels[-1], cfg.img_channels)
        self.num_ws = cfg.num_ws

    def blocks(self) -> list[SynthesisBlockV1]:
        return [getattr(self, f"b{res}") for res in self.resolutions]

    def noise_layers(self) -> list[tuple[str, StyleLayerV1]]:
        """Every layer in forward order (``b4.input``, ``b4.conv``, ``b8.conv0`` ...): one noise input, one w."""
        return [(f"b{b.resolution}.{n}", layer) for b in self.blocks() for n, layer in b.layers()]

    def ws_table(self) -> list[list[str]]:
        """ws index i feeds layer i (the official ``dlatents_in[:, layer_idx]``)."""
        return [[name] for name, _ in self.noise_layers()]

    def set_mode(self, fused: bool = False, conv_dtype: torch.dtype = torch.float32) -> None:
        """``conv_dtype`` runs the 3x3 convolutions in that dtype (``fused`` has no meaning here)."""
        for m in self.modules():
            if isinstance(m, StyleLayerV1):
                m.conv_dtype = conv_dtype

    def forward(self, ws: Tensor, noises: Sequence[Tensor | None]) -> Tensor:
        ws = ws.to(torch.float32)
        layers = self.noise_layers()
        first = self.blocks()[0]
        x = first.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        for i, (_, layer) in enumerate(layers):
            x = layer(x, ws[:, i], noises[i])
        return self.torgb(x)

    def make_noise(self, mode: str, batch: int = 1, seed: int = 0) -> list[Tensor | None]:
        """Noise inputs for a mode: 'const' (the buffers), 'none' (nothing) or 'random' (seeded)."""
        return noise_inputs([layer for _, layer in self.noise_layers()], mode, batch, seed)


class GeneratorV1(nn.Module):
    """The official ``G_style`` at ``lod = 0``: mapping, broadcast, truncation, synthesis."""

    architecture = ARCHITECTURE

    def __init__(self, cfg: GeneratorConfigV1) -> None:
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetworkV1(cfg.mapping)
        self.synthesis = SynthesisNetworkV1(cfg.synthesis)

    @property
    def num_ws(self) -> int:
        return self.cfg.num_ws

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = TRUNCATION_CUTOFF,
        noise_mode: str = "const",
    ) -> Tensor:
        """``G(z, c, psi, cutoff, noise_mode)``: layers below ``cutoff`` (None = all) are truncated.

        The official default cutoff is 8 (``G_style(truncation_cutoff=8)``).
        """
        ws = truncate_ws(self.mapping(z, c), self.mapping.w_avg, self.num_ws, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, self.synthesis.make_noise(noise_mode, batch=z.shape[0]))


# ----------------------------------------------------------------------------
# Loading, and the TensorFlow variable names.


def expected_shapes_v1(cfg: GeneratorConfigV1) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in GeneratorV1(cfg).state_dict().items()}


def load_generator_v1(cfg: GeneratorConfigV1, state: Mapping[str, Tensor]) -> GeneratorV1:
    """Build a :class:`GeneratorV1` and load ``state``, checking keys, shapes and finiteness."""
    from styleserve.errors import CheckpointError

    expected = expected_shapes_v1(cfg)
    for key, shape in expected.items():
        if key not in state:
            raise CheckpointError(f"checkpoint is missing key {key!r}")
        got = state[key]
        if not isinstance(got, Tensor) or tuple(got.shape) != shape:
            raise CheckpointError(f"checkpoint: {key!r} has shape {tuple(getattr(got, 'shape', ()))}, need {shape}")
        if not torch.isfinite(got.float()).all():
            raise CheckpointError(f"{key!r} holds NaN or Inf")
    extra = [k for k in state if k not in expected]
    if extra:
        raise CheckpointError(f"checkpoint has unexpected key {extra[0]!r}")
    G = GeneratorV1(cfg)
    G.load_state_dict({k: v.detach().to(torch.float32) for k, v in state.items()}, strict=True)
    return G.eval().requires_grad_(False)


def tf_layer_names(cfg: SynthesisConfigV1) -> list[tuple[str, str, int]]:
    """``(our layer, TF scope, layer_idx)`` for each synthesis layer, in order."""
    out: list[tuple[str, str, int]] = [("b4.input", "4x4/Const", 0), ("b4.conv", "4x4/Conv", 1)]
    for res in cfg.resolutions[1:]:
        k = int(np.log2(res))
        out.append((f"b{res}.conv0", f"{res}x{res}/Conv0_up", 2 * k - 4))
        out.append((f"b{res}.conv1", f"{res}x{res}/Conv1", 2 * k - 3))
    return out


def tf_to_state(
    cfg: GeneratorConfigV1,
    mapping_vars: Mapping[str, np.ndarray[Any, Any]],
    synthesis_vars: Mapping[str, np.ndarray[Any, Any]],
    dlatent_avg: np.ndarray[Any, Any] | None,
) -> dict[str, Tensor]:
    """Map official TF variables (names relative to ``G_mapping`` / ``G_synthesis``) onto our state dict.

    TF layouts: dense ``[in, out]`` -> ``[out, in]``; conv ``[kh, kw, in, out]`` -> ``[out, in, kh, kw]``;
    ``noise{i} [1, 1, r, r]`` -> ``noise_const [r, r]``; ``4x4/Const/const [1, C, 4, 4]`` -> ``[C, 4, 4]``.
    Raises ``KeyError`` naming a missing variable. ``dlatent_avg`` None leaves ``w_avg`` out.
    """

    def t(a: np.ndarray[Any, Any]) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def get(vars_: Mapping[str, np.ndarray[Any, Any]], name: str, where: str) -> np.ndarray[Any, Any]:
        if name not in vars_:
            raise KeyError(f"{where}/{name}")
        return vars_[name]

    M, S = "G_mapping", "G_synthesis"
    state: dict[str, Tensor] = {}
    if cfg.c_dim:
        state["mapping.embed"] = t(get(mapping_vars, "LabelConcat/weight", M))
    for i in range(cfg.mapping.num_layers):
        state[f"mapping.fc{i}.weight"] = t(get(mapping_vars, f"Dense{i}/weight", M).T)
        state[f"mapping.fc{i}.bias"] = t(get(mapping_vars, f"Dense{i}/bias", M))
    if dlatent_avg is not None:
        state["mapping.w_avg"] = t(dlatent_avg)
    scfg = cfg.synthesis
    state["synthesis.b4.const"] = t(get(synthesis_vars, "4x4/Const/const", S)[0])
    for ours, scope, idx in tf_layer_names(scfg):
        p = f"synthesis.{ours}"
        if not ours.endswith(".input"):
            state[f"{p}.weight"] = t(get(synthesis_vars, f"{scope}/weight", S).transpose(3, 2, 0, 1))
        if scfg.use_noise:
            state[f"{p}.noise_const"] = t(get(synthesis_vars, f"noise{idx}", S)[0, 0])
            state[f"{p}.noise_strength"] = t(get(synthesis_vars, f"{scope}/Noise/weight", S))
        state[f"{p}.bias"] = t(get(synthesis_vars, f"{scope}/bias", S))
        state[f"{p}.style.weight"] = t(get(synthesis_vars, f"{scope}/StyleMod/weight", S).T)
        state[f"{p}.style.bias"] = t(get(synthesis_vars, f"{scope}/StyleMod/bias", S))
        if ours.endswith(".conv0") and scfg.blur_filter:
            state[f"{p}.blur_filter"] = blur_kernel(scfg.blur_filter)
    state["synthesis.torgb.weight"] = t(get(synthesis_vars, "ToRGB_lod0/weight", S).transpose(3, 2, 0, 1))
    state["synthesis.torgb.bias"] = t(get(synthesis_vars, "ToRGB_lod0/bias", S))
    return state
