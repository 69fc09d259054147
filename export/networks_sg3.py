"""StyleGAN3 (alias-free, configs T and R) generator networks, written for export.

These compute the function of the official ``Generator`` of NVlabs stylegan3
(``training/networks_stylegan3.py`` with the ``_filtered_lrelu_ref`` route of
``torch_utils/ops/filtered_lrelu.py``) in fp32, and carry the same parameter and buffer names, so an
official ``G_ema`` state dict loads key for key (see :func:`generator_from_official`).

Structure (paper names): the mapping network is StyleGAN2's (:class:`.networks.MappingNetwork`, SG3
defaults: 2 layers, embedding width ``w_dim``); the synthesis network is a :class:`SynthesisInput`
(Fourier features, rotated and translated by the first w and by the user transform) followed by
``num_layers`` :class:`SynthesisLayer` s (modulated conv with demodulation and magnitude-EMA input gain,
then the filtered leaky ReLU: up-sample, bias, lrelu with gain, clamp, down-sample) and the final
ToRGB layer (a :class:`SynthesisLayer` with ``is_torgb``), then ``output_scale``.
``num_ws = num_layers + 2``: ws[0] feeds the input, ws[1 + i] layer i (the ToRGB is the last).

Differences in *how* it is computed, chosen for ONNX and onnxruntime:

* The modulated convolution scales the activations (styles and input gain), convolves with the
  static weight and scales by the demodulation coefficients, as :mod:`.networks` does. The
  official pre-normalisation divides the styles by their RMS over the *whole batch*
  (``s.square().mean()``); here it is per image, so an image never depends on its batch mates.
  Demodulation cancels that scalar exactly except inside ``+ 1e-8``: the two agree to float32
  rounding (the tests compare with a reference that takes the official batch-wide route).
* The user transform (``synthesis.input.transform``, the *inverse* of gen_images.py's
  ``make_transform``) is a per-image input ``[N, 3, 3]``; the checkpoint's buffer is the default.
* The Fourier sampling grid is a constant built with plain ops (no ``AffineGrid``).
* ``upfirdn2d`` with separable filters is two depthwise 1-D convolutions (the down-sampling as
  their stride); radially symmetric (R) filters are one 2-D depthwise convolution.
* fp32 semantics: the official layers with ``use_fp16`` run in fp16 only on CUDA; this module
  always computes in fp32, which is the official CPU / ``force_fp32=True`` result.

Filter design (``scipy.signal.firwin`` Kaiser low-pass, and the jinc-based radial filter) is
re-implemented with torch (scipy is not a dependency); a checkpoint's stored filters are loaded as they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from styleserve.errors import CheckpointError

from .networks import (
    MAX_CHANNELS,
    MAX_IMG_RESOLUTION,
    MAX_LATENT_DIM,
    FullyConnectedLayer,
    GeneratorDims,
    MappingConfig,
    MappingNetwork,
    check_bool,
    check_float,
    check_int,
    check_parameter_count,
    truncate_ws,
)

# ----------------------------------------------------------------------------
# Config.

MAX_SG3_LAYERS = 64
MAX_MARGIN = 256
MAX_FILTER_SIZE = 32
SG3_CONFIGS = ("T", "R")


@dataclass(frozen=True)
class LayerSpec:
    """One synthesis layer as the official ``SynthesisNetwork.__init__`` lays it out (square sizes)."""

    name: str  # Official attribute name, e.g. "L0_36_512".
    is_torgb: bool
    is_critically_sampled: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    tmp_sampling_rate: int
    up_factor: int
    down_factor: int
    up_taps: int  # 1 = no filter (the official buffer is None).
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]  # [x0, x1, y0, y1] w.r.t. the up-sampled image.


@dataclass(frozen=True)
class InputSpec:
    channels: int
    size: int
    sampling_rate: int
    bandwidth: float


@dataclass(frozen=True)
class SynthesisConfigSG3:
    """The official ``SynthesisNetwork`` / ``SynthesisLayer`` keyword arguments that change the function."""

    w_dim: int
    img_resolution: int
    img_channels: int
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14  # Excluding the input and the ToRGB layer.
    num_critical: int = 2  # Critically sampled layers at the end.
    first_cutoff: float = 2.0  # f_{c,0}
    first_stopband: float = 2**2.1  # f_{t,0}
    last_stopband_rel: float = 2**0.3  # f_{t,N} / f_{c,N}
    margin_size: int = 10
    output_scale: float = 0.25
    conv_kernel: int = 3  # 1 for config R.
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False  # True for config R.
    conv_clamp: float | None = 256.0

    def __post_init__(self) -> None:
        check_int("w_dim", self.w_dim, 1, MAX_LATENT_DIM)
        r = check_int("img_resolution", self.img_resolution, 4, MAX_IMG_RESOLUTION)
        if r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {r}")
        check_int("img_channels", self.img_channels, 1, MAX_CHANNELS)
        check_int("channel_base", self.channel_base, 1, 2**24)
        check_int("channel_max", self.channel_max, 1, MAX_CHANNELS)
        check_int("num_layers", self.num_layers, 1, MAX_SG3_LAYERS)
        check_int("num_critical", self.num_critical, 0, self.num_layers - 1)
        check_float("first_cutoff", self.first_cutoff, 1e-3, MAX_IMG_RESOLUTION)
        check_float("first_stopband", self.first_stopband, 1e-3, MAX_IMG_RESOLUTION)
        check_float("last_stopband_rel", self.last_stopband_rel, 1e-3, 1e3)
        check_int("margin_size", self.margin_size, 0, MAX_MARGIN)
        check_float("output_scale", self.output_scale, -1e6, 1e6)
        check_int("conv_kernel", self.conv_kernel, 1, 15)
        check_int("filter_size", self.filter_size, 1, MAX_FILTER_SIZE)
        check_int("lrelu_upsampling", self.lrelu_upsampling, 1, 8)
        check_bool("use_radial_filters", self.use_radial_filters)
        if self.conv_clamp is not None:
            check_float("conv_clamp", self.conv_clamp, 0.0, 1e30)
        self.layer_specs()  # Every derived size must be consistent (integer resampling factors, sizes >= 1).

    @property
    def num_ws(self) -> int:
        return self.num_layers + 2

    def _progression(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The official geometric progression: cutoffs, sampling rates, half widths, sizes, channels (float64)."""
        last_cutoff = self.img_resolution / 2  # f_{c,N}
        last_stopband = last_cutoff * self.last_stopband_rel  # f_{t,N}
        exponents = np.minimum(np.arange(self.num_layers + 1) / (self.num_layers - self.num_critical), 1)
        cutoffs = self.first_cutoff * (last_cutoff / self.first_cutoff) ** exponents  # f_c[i]
        stopbands = self.first_stopband * (last_stopband / self.first_stopband) ** exponents  # f_t[i]
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, self.img_resolution))))  # s[i]
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs  # f_h[i]
        sizes = sampling_rates + self.margin_size * 2
        sizes[-2:] = self.img_resolution
        channels = np.rint(np.minimum((self.channel_base / 2) / cutoffs, self.channel_max))
        channels[-1] = self.img_channels
        return cutoffs, sampling_rates, half_widths, sizes, channels

    def input_spec(self) -> InputSpec:
        cutoffs, rates, _, sizes, channels = self._progression()
        return InputSpec(int(channels[0]), int(sizes[0]), int(rates[0]), float(cutoffs[0]))

    def layer_specs(self) -> list[LayerSpec]:
        cutoffs, rates, half_widths, sizes, channels = self._progression()
        if channels.min() < 1:
            raise ValueError("channel_base is too small: a layer would have no channels")
        specs = []
        for idx in range(self.num_layers + 1):
            prev = max(idx - 1, 0)
            is_torgb = idx == self.num_layers
            in_rate, out_rate = int(rates[prev]), int(rates[idx])
            tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else self.lrelu_upsampling)
            up, down = tmp_rate // in_rate, tmp_rate // out_rate
            if in_rate * up != tmp_rate or out_rate * down != tmp_rate:
                raise ValueError(f"layer {idx}: sampling rates {in_rate}, {out_rate} give a non-integer resampling")
            k = 1 if is_torgb else self.conv_kernel
            up_taps = self.filter_size * up if up > 1 and not is_torgb else 1
            down_taps = self.filter_size * down if down > 1 and not is_torgb else 1
            critical = idx >= self.num_layers - self.num_critical
            in_size, out_size = int(sizes[prev]), int(sizes[idx])
            pad_total = (out_size - 1) * down + 1  # Output size before down-sampling.
            pad_total -= (in_size + k - 1) * up  # Input size after up-sampling.
            pad_total += up_taps + down_taps - 2  # Size reduction caused by the filters.
            pad_lo = (pad_total + up) // 2  # Symmetric interpretation (paper, Appendix C.3).
            pad_hi = pad_total - pad_lo
            out_ch = int(channels[idx])
            specs.append(
                LayerSpec(
                    name=f"L{idx}_{out_size}_{out_ch}",
                    is_torgb=is_torgb,
                    is_critically_sampled=critical,
                    in_channels=int(channels[prev]),
                    out_channels=out_ch,
                    in_size=in_size,
                    out_size=out_size,
                    in_sampling_rate=in_rate,
                    out_sampling_rate=out_rate,
                    in_cutoff=float(cutoffs[prev]),
                    out_cutoff=float(cutoffs[idx]),
                    in_half_width=float(half_widths[prev]),
                    out_half_width=float(half_widths[idx]),
                    conv_kernel=k,
                    tmp_sampling_rate=tmp_rate,
                    up_factor=up,
                    down_factor=down,
                    up_taps=up_taps,
                    down_taps=down_taps,
                    down_radial=self.use_radial_filters and not critical,
                    padding=(pad_lo, pad_hi, pad_lo, pad_hi),
                )
            )
        return specs


@dataclass(frozen=True)
class GeneratorConfigSG3(GeneratorDims):
    mapping: MappingConfig
    synthesis: SynthesisConfigSG3
    extra: dict[str, object] = field(default_factory=dict, compare=False)  # Informational only.

    def __post_init__(self) -> None:
        self.check_dims()

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("extra")
        return d

    @staticmethod
    def from_dict(d: Mapping[str, object]) -> GeneratorConfigSG3:
        """The inverse of :meth:`to_dict`; ValueError for anything that is not a valid config."""
        m, s = d.get("mapping"), d.get("synthesis")
        if not isinstance(m, dict) or not isinstance(s, dict) or set(d) - {"mapping", "synthesis"}:
            raise ValueError("a StyleGAN3 generator config is an object with 'mapping' and 'synthesis' objects")
        for name, part, cls in (("mapping", m, MappingConfig), ("synthesis", s, SynthesisConfigSG3)):
            unknown = [k for k in part if k not in cls.__dataclass_fields__]
            if unknown:
                raise ValueError(f"unknown {name} key {str(unknown[0])[:40]!r}")
        return GeneratorConfigSG3(mapping=MappingConfig(**m), synthesis=SynthesisConfigSG3(**s))


def make_config_sg3(
    config: str = "T",
    *,
    z_dim: int = 512,
    c_dim: int = 0,
    w_dim: int = 512,
    img_resolution: int = 1024,
    img_channels: int = 3,
    mapping_layers: int = 2,
    channel_base: int = 32768,
    channel_max: int = 512,
    **synthesis: Any,
) -> GeneratorConfigSG3:
    """A config as the official ``train.py --cfg stylegan3-t|r`` builds it.

    ``channel_base`` / ``channel_max`` are train.py's ``--cbase`` / ``--cmax``: config R doubles
    them and uses 1x1 convolutions and radially symmetric down-sampling filters. ``synthesis``
    takes any other :class:`SynthesisConfigSG3` field (e.g. ``num_layers``, ``conv_clamp``).
    """
    if config not in SG3_CONFIGS:
        raise ValueError(f"config must be one of {', '.join(SG3_CONFIGS)}, got {config!r}")
    if config == "R":
        synthesis = {"conv_kernel": 1, "use_radial_filters": True, **synthesis}
        channel_base, channel_max = channel_base * 2, channel_max * 2
    syn = SynthesisConfigSG3(
        w_dim=w_dim,
        img_resolution=img_resolution,
        img_channels=img_channels,
        channel_base=channel_base,
        channel_max=channel_max,
        **synthesis,
    )
    mapping = MappingConfig(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=syn.num_ws, num_layers=mapping_layers)
    return GeneratorConfigSG3(mapping=mapping, synthesis=syn, extra={"config": config})


# ----------------------------------------------------------------------------
# Free functions: the math.


def kaiser_beta(atten: float) -> float:
    """Kaiser's beta for a stop-band attenuation in dB (``scipy.signal.kaiser_beta``)."""
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def kaiser_atten(numtaps: int, width: float) -> float:
    """Attenuation in dB of a Kaiser FIR filter (``scipy.signal.kaiser_atten``; width relative to Nyquist)."""
    return 2.285 * (numtaps - 1) * math.pi * width + 7.95


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> Tensor | None:
    """The official ``SynthesisLayer.design_lowpass_filter``: None for 1 tap, else a Kaiser-windowed
    separable sinc (``scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)``) ``# [numtaps]``, or the
    radially symmetric jinc filter ``# [numtaps, numtaps]``. Computed in float64, returned as float32."""
    if numtaps < 1:
        raise ValueError("numtaps must be >= 1")
    if numtaps == 1:
        return None
    nyq = fs / 2
    beta = kaiser_beta(kaiser_atten(numtaps, width / nyq))
    window = torch.kaiser_window(numtaps, periodic=False, beta=beta, dtype=torch.float64)  # [T]
    if not radial:
        m = torch.arange(numtaps, dtype=torch.float64) - (numtaps - 1) / 2
        h = (cutoff / nyq) * torch.sinc((cutoff / nyq) * m) * window
        return (h / h.sum()).to(torch.float32)
    x = (torch.arange(numtaps, dtype=torch.float64) - (numtaps - 1) / 2) / fs
    r = torch.hypot(x[None, :], x[:, None])  # [T, T]
    f = torch.special.bessel_j1(2 * cutoff * (math.pi * r)) / (math.pi * r)
    f = f * torch.outer(window, window)
    return (f / f.sum()).to(torch.float32)


def upfirdn2d_sg3(
    x: Tensor,
    f: Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> Tensor:
    """Up-sample (zero insertion), pad (negative = crop), convolve with ``f`` (true convolution) and
    keep every ``down``-th pixel, as the official ``upfirdn2d``. ``f``: ``[T]`` (separable),
    ``[fh, fw]`` or None (identity). ``# [N, C, H, W] -> [N, C, H', W']``"""
    C, H, W = int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    px0, px1, py0, py1 = padding
    if up > 1:
        x = x.reshape(-1, C, H, 1, W, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(-1, C, H * up, W * up)
    if max(px0, px1, py0, py1) > 0:
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    if min(px0, px1, py0, py1) < 0:
        x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    if f is None:
        f = torch.ones([1], dtype=x.dtype)
    if f.ndim == 1:
        taps = (f * gain**0.5).to(x.dtype).flip([0])  # convolution = correlation with the flipped taps
        x = F.conv2d(x, taps.reshape(1, 1, 1, -1).repeat(C, 1, 1, 1), stride=(1, down), groups=C)  # along x
        return F.conv2d(x, taps.reshape(1, 1, -1, 1).repeat(C, 1, 1, 1), stride=(down, 1), groups=C)  # along y
    taps = (f * gain).to(x.dtype).flip([0, 1])
    return F.conv2d(x, taps[None, None].repeat(C, 1, 1, 1), stride=down, groups=C)


def filtered_lrelu(
    x: Tensor,  # [N, C, H, W]
    fu: Tensor | None,
    fd: Tensor | None,
    b: Tensor,  # [C]
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    gain: float,
    slope: float,
    clamp: float | None,
) -> Tensor:
    """The official ``_filtered_lrelu_ref``: bias, up-sample (FIR ``fu``, gain ``up**2``), leaky ReLU
    times ``gain``, clamp, down-sample (FIR ``fd``). ``# [N, C, H', W']``"""
    x = x + b.reshape(1, -1, 1, 1)
    x = upfirdn2d_sg3(x, fu, up=up, padding=padding, gain=up**2)
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d_sg3(x, fd, down=down)


def modulated_conv2d_sg3(
    x: Tensor,  # [N, I, H, W]
    weight: Tensor,  # [O, I, k, k]
    styles: Tensor,  # [N, I]
    input_gain: Tensor,  # [] (1 / sqrt(magnitude_ema))
    demodulate: bool = True,
    padding: int = 0,
    conv_dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The official SG3 ``modulated_conv2d`` (pre-normalised weight and styles, demodulation, input
    gain) by activation scaling; styles normalised per image (see the module doc). ``# [N, O, H', W']``"""
    N = x.shape[0]
    if demodulate:
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()  # RMS 1 per output channel
        styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()  # RMS 1 per image
    x = x * (styles * input_gain).reshape(N, -1, 1, 1)
    if conv_dtype != torch.float32:
        x = F.conv2d(x.to(conv_dtype), weight.to(conv_dtype), padding=padding).to(torch.float32)
    else:
        x = F.conv2d(x, weight, padding=padding)
    if demodulate:
        # sum_{i,k} (w_oik * s_ni)^2 = s^2 @ (sum_k w_oik^2)^T, without the [N, O, I, k, k] tensor.
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]
        x = x * dcoefs.reshape(N, -1, 1, 1)
    return x


def make_transform(translate: tuple[float, float], angle: float) -> np.ndarray:
    """gen_images.py's ``make_transform``: rotation by ``angle`` degrees and translation. ``# [3, 3] float64``"""
    s, c = math.sin(angle / 360.0 * math.pi * 2), math.cos(angle / 360.0 * math.pi * 2)
    return np.array([[c, s, translate[0]], [-s, c, translate[1]], [0.0, 0.0, 1.0]])


def input_transform(translate: tuple[float, float] = (0.0, 0.0), angle: float = 0.0) -> np.ndarray:
    """The ``transform`` input for ``--translate X,Y --rotate DEG``: ``inv(make_transform(...))`` as
    gen_images.py copies it into ``synthesis.input.transform``. ``# [3, 3] float32``"""
    return np.linalg.inv(make_transform(translate, angle)).astype(np.float32)


# ----------------------------------------------------------------------------
# Layers.


class SynthesisInput(nn.Module):
    """Fourier features: w -> rotation and translation of fixed frequencies, sampled on a grid. ``# [N, C, S, S]``"""

    transform: Tensor
    freqs: Tensor
    phases: Tensor
    grid_x: Tensor
    grid_y: Tensor

    def __init__(self, w_dim: int, spec: InputSpec) -> None:
        super().__init__()
        self.channels = spec.channels
        self.size = spec.size
        self.sampling_rate = spec.sampling_rate
        self.bandwidth = spec.bandwidth
        # Official initialisation: frequencies uniform in a disc of radius `bandwidth`, phases in [-0.5, 0.5).
        freqs = torch.randn([spec.channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * spec.bandwidth
        self.weight = nn.Parameter(torch.randn([spec.channels, spec.channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, bias_init=0)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))  # type: ignore[union-attr]
        self.register_buffer("transform", torch.eye(3))  # User inverse transform w.r.t. the image.
        self.register_buffer("freqs", freqs)  # [C, 2]
        self.register_buffer("phases", torch.rand([spec.channels]) - 0.5)  # [C]
        # The official affine_grid(align_corners=False) sample positions, scaled by size / (2 * sampling_rate).
        centres = (2 * torch.arange(spec.size, dtype=torch.float64) + 1) / spec.size - 1  # [S]
        pos = (0.5 * spec.size / spec.sampling_rate * centres).to(torch.float32)
        self.register_buffer("grid_x", pos, persistent=False)  # [S] along the width
        self.register_buffer("grid_y", pos.clone(), persistent=False)  # [S] along the height

    def forward(self, w: Tensor, transform: Tensor) -> Tensor:
        # w: [N, w_dim]; transform: [N, 3, 3] user inverse transform (gen_images.py: inv(make_transform)).
        t = self.affine(w)  # [N, 4] = (r_c, r_s, t_x, t_y)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        rc, rs, tx, ty = t.unbind(dim=1)  # [N] each
        zero, one = torch.zeros_like(rc), torch.ones_like(rc)
        # Inverse rotation times inverse translation w.r.t. the image, in closed form: [N, 3, 3].
        m = torch.stack(
            [
                torch.stack([rc, -rs, -rc * tx + rs * ty], dim=1),
                torch.stack([rs, rc, -rs * tx - rc * ty], dim=1),
                torch.stack([zero, zero, one], dim=1),
            ],
            dim=1,
        )
        m = m @ transform.to(torch.float32)  # [N, 3, 3]
        phases = self.phases[None] + torch.einsum("cx,nx->nc", self.freqs, m[:, :2, 2])  # [N, C]
        freqs = torch.einsum("cx,nxy->ncy", self.freqs, m[:, :2, :2])  # [N, C, 2]
        # Dampen frequencies the user transform pushed out of band.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        fx, fy = freqs[:, None, None, :, 0], freqs[:, None, None, :, 1]  # [N, 1, 1, C]
        x = self.grid_x[None, None, :, None] * fx + self.grid_y[None, :, None, None] * fy  # [N, S, S, C]
        x = x + phases[:, None, None, :]
        x = torch.sin(x * (2 * math.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.channels)).t()  # trainable channel mixing
        return x.permute(0, 3, 1, 2)  # [N, C, S, S]


class SynthesisLayer(nn.Module):
    """Modulated conv (demodulated except for ToRGB) with input gain, then the filtered leaky ReLU."""

    magnitude_ema: Tensor
    up_filter: Tensor | None
    down_filter: Tensor | None

    def __init__(self, w_dim: int, spec: LayerSpec, conv_clamp: float | None) -> None:
        super().__init__()
        self.spec = spec
        self.is_torgb = spec.is_torgb
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, spec.in_channels, bias_init=1)
        k = spec.conv_kernel
        self.weight = nn.Parameter(torch.randn([spec.out_channels, spec.in_channels, k, k]))
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        up_f = design_lowpass_filter(spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, spec.tmp_sampling_rate)
        down_f = design_lowpass_filter(
            spec.down_taps, spec.out_cutoff, spec.out_half_width * 2, spec.tmp_sampling_rate, radial=spec.down_radial
        )
        self.register_buffer("up_filter", up_f)  # None (no state key) for 1 tap, as the official layer.
        self.register_buffer("down_filter", down_f)
        self.conv_dtype = torch.float32

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        # x: [N, in_channels, in_size, in_size]; w: [N, w_dim] -> [N, out_channels, out_size, out_size]
        s = self.spec
        styles = self.affine(w)  # [N, I]
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(s.in_channels * s.conv_kernel**2))
        x = modulated_conv2d_sg3(
            x,
            self.weight,
            styles,
            self.magnitude_ema.rsqrt(),
            demodulate=not self.is_torgb,
            padding=s.conv_kernel - 1,
            conv_dtype=self.conv_dtype,
        )
        return filtered_lrelu(
            x,
            self.up_filter,
            self.down_filter,
            self.bias,
            up=s.up_factor,
            down=s.down_factor,
            padding=s.padding,
            gain=1.0 if self.is_torgb else math.sqrt(2),
            slope=1.0 if self.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )


class SynthesisNetworkSG3(nn.Module):
    """ws ``[N, num_ws, w_dim]`` (+ transform ``[N, 3, 3]``) -> image ``[N, C, H, W]``. No noise inputs."""

    def __init__(self, cfg: SynthesisConfigSG3) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_ws = cfg.num_ws
        self.input = SynthesisInput(cfg.w_dim, cfg.input_spec())
        self.layer_names: list[str] = []
        for spec in cfg.layer_specs():
            setattr(self, spec.name, SynthesisLayer(cfg.w_dim, spec, cfg.conv_clamp))
            self.layer_names.append(spec.name)

    def layers(self) -> list[SynthesisLayer]:
        return [getattr(self, name) for name in self.layer_names]

    def noise_layers(self) -> list[tuple[str, Any]]:
        """StyleGAN3 has no noise inputs."""
        return []

    def ws_table(self) -> list[list[str]]:
        """For each ws index, the layer it feeds: ws[0] the input, ws[1 + i] layer i."""
        return [["input"]] + [[name] for name in self.layer_names]

    def ws_resolutions(self) -> list[int]:
        """Per ws index, the sampling rate of what it feeds (the output rate of a layer)."""
        return [self.input.sampling_rate] + [layer.spec.out_sampling_rate for layer in self.layers()]

    def set_mode(self, conv_dtype: torch.dtype = torch.float32) -> None:
        for layer in self.layers():
            layer.conv_dtype = conv_dtype

    def forward(self, ws: Tensor, transform: Tensor | None = None) -> Tensor:
        ws = ws.to(torch.float32)
        if transform is None:  # The checkpoint's buffer for every image.
            transform = self.input.transform.unsqueeze(0).repeat([ws.shape[0], 1, 1])
        x = self.input(ws[:, 0], transform)
        for i, layer in enumerate(self.layers()):
            x = layer(x, ws[:, i + 1])
        if self.cfg.output_scale != 1:
            x = x * self.cfg.output_scale
        return x  # [N, img_channels, img_resolution, img_resolution]


class GeneratorSG3(nn.Module):
    def __init__(self, cfg: GeneratorConfigSG3) -> None:
        super().__init__()
        self.cfg = cfg
        self.synthesis = SynthesisNetworkSG3(cfg.synthesis)
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
        transform: Tensor | None = None,
    ) -> Tensor:
        """The official ``G(z, c, truncation_psi, truncation_cutoff)`` with ``synthesis.input.transform``
        set to ``transform`` (``[N, 3, 3]`` or ``[3, 3]``; None = the buffer)."""
        ws = truncate_ws(self.mapping(z, c), self.mapping.w_avg, self.num_ws, truncation_psi, truncation_cutoff)
        if transform is not None and transform.ndim == 2:
            transform = transform.unsqueeze(0).repeat([z.shape[0], 1, 1])
        return self.synthesis(ws, transform)


# ----------------------------------------------------------------------------
# Loading (official names).

# Official Generator / MappingNetwork / SynthesisNetwork / SynthesisLayer keyword arguments that do not
# change the inference function (training-time EMA rates, fp16 placement - this module is fp32 -, freezing).
IGNORED_KWARGS = frozenset({"magnitude_ema_beta", "num_fp16_res", "w_avg_beta", "freeze_layers", "freeze_embed"})
_GENERATOR_KWARGS = frozenset({"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs"})
_MAPPING_KWARGS = {"num_layers": "num_layers", "lr_multiplier": "lr_multiplier"}
_SYNTHESIS_KWARGS = frozenset(SynthesisConfigSG3.__dataclass_fields__) - {"w_dim", "img_resolution", "img_channels"}


def _plain(v: Any) -> Any:
    """numpy scalars (pickled ``_init_kwargs`` hold them) as Python bool / int / float; anything else as is."""
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def config_from_official(init_kwargs: Mapping[str, Any]) -> GeneratorConfigSG3:
    """A config from the official stylegan3 ``Generator`` keyword arguments (``_init_kwargs``): ``z_dim``,
    ``c_dim``, ``w_dim``, ``img_resolution``, ``img_channels``, ``mapping_kwargs`` and the flat synthesis /
    layer kwargs. Unknown keys raise CheckpointError; :data:`IGNORED_KWARGS` are dropped."""
    kw = dict(init_kwargs)
    unknown = sorted(k for k in kw if k not in _GENERATOR_KWARGS | _SYNTHESIS_KWARGS | IGNORED_KWARGS)
    if unknown:
        raise CheckpointError(f"unknown StyleGAN3 Generator argument {str(unknown[0])[:40]!r}")
    mkw = dict(kw.get("mapping_kwargs") or {})
    bad = sorted(k for k in mkw if k not in _MAPPING_KWARGS and k not in IGNORED_KWARGS)
    if bad:
        raise CheckpointError(f"unknown StyleGAN3 mapping_kwargs argument {str(bad[0])[:40]!r}")
    try:
        syn = SynthesisConfigSG3(
            w_dim=kw["w_dim"],
            img_resolution=kw["img_resolution"],
            img_channels=kw["img_channels"],
            **{k: _plain(v) for k, v in kw.items() if k in _SYNTHESIS_KWARGS},
        )
        mapping = MappingConfig(
            z_dim=kw["z_dim"],
            c_dim=kw["c_dim"],
            w_dim=kw["w_dim"],
            num_ws=syn.num_ws,
            num_layers=mkw.get("num_layers", 2),
            lr_multiplier=mkw.get("lr_multiplier", 0.01),
        )
        return GeneratorConfigSG3(mapping=mapping, synthesis=syn)
    except KeyError as exc:
        raise CheckpointError(f"StyleGAN3 Generator arguments lack {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid StyleGAN3 Generator arguments: {exc}") from exc


def expected_shapes_sg3(cfg: GeneratorConfigSG3) -> dict[str, tuple[int, ...]]:
    """``GeneratorSG3(cfg).state_dict()`` key -> shape (official names), built on the meta device."""
    with torch.device("meta"):
        G = GeneratorSG3(cfg)
    return {k: tuple(v.shape) for k, v in G.state_dict().items()}


def check_state_dict_sg3(cfg: GeneratorConfigSG3, state: Mapping[str, Any], source: str = "checkpoint") -> None:
    """``state`` must have exactly the keys and shapes of ``GeneratorSG3(cfg)``; CheckpointError naming the key."""
    expected = expected_shapes_sg3(cfg)
    check_parameter_count(expected, source)
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{source} is missing key {missing[0]!r}{more}")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"{source} has unexpected key {str(unexpected[0])[:80]!r}{more}")
    for key, shape in expected.items():
        got = state[key]
        if not isinstance(got, Tensor):
            raise CheckpointError(f"{source}: {key!r} is a {type(got).__name__}, not a tensor")
        if tuple(got.shape) != shape:
            raise CheckpointError(f"{source}: {key!r} has shape {tuple(got.shape)}, the config needs {shape}")
        if not got.is_floating_point():
            raise CheckpointError(f"{source}: {key!r} has dtype {got.dtype}, not floating point")


def load_generator_sg3(
    cfg: GeneratorConfigSG3, state: Mapping[str, Tensor], source: str = "checkpoint"
) -> GeneratorSG3:
    """Build a :class:`GeneratorSG3` and load ``state`` (official key names), checking every key and shape.

    Raises CheckpointError naming the first missing, unexpected, mis-shaped or non-finite key, or a
    ``magnitude_ema`` that is not positive (its inverse square root is the input gain)."""
    check_state_dict_sg3(cfg, state, source)
    for key, got in state.items():
        if not torch.isfinite(got.float()).all():
            raise CheckpointError(f"{source}: {key!r} holds NaN or Inf")
        if key.endswith(".magnitude_ema") and not float(got) > 0:
            raise CheckpointError(f"{source}: {key!r} is {float(got)!r}, must be > 0")
    G = GeneratorSG3(cfg)
    G.load_state_dict({k: v.detach().to(torch.float32) for k, v in state.items()}, strict=True)
    return G.eval().requires_grad_(False)


def generator_from_official(
    init_kwargs: Mapping[str, Any], state: Mapping[str, Tensor], source: str = "checkpoint"
) -> GeneratorSG3:
    """The official ``G_ema``'s ``_init_kwargs`` and ``state_dict()`` -> a checked :class:`GeneratorSG3`."""
    return load_generator_sg3(config_from_official(init_kwargs), state, source)
