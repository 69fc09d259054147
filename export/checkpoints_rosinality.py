"""rosinality/stylegan2-pytorch reader: ``torch.save`` files with ``g_ema`` (format ``"rosinality-pt"``).

A zip or legacy ``torch.save`` file, already unpickled by :mod:`styleserve.export.checkpoints` through the
allow-list unpickler :mod:`styleserve.export._pickle`: a dict with ``g_ema`` (a state dict), and possibly
``g``, ``d``, optimiser states, ``args`` (an ``argparse.Namespace``), ``latent_avg``, ``ada_aug_p``; or a
bare generator state dict. Its weights are mapped onto ours by :func:`rosinality_to_official` (which lists
the exact equivalences); without ``latent_avg``, ``w_avg`` is estimated. The StyleGAN (v1) rosinality
format lives in :mod:`styleserve.export.checkpoints_v1`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from styleserve.errors import CheckpointError

from . import networks
from ._pickle import Namespace, WalkBudget, describe
from .networks import GeneratorConfig, MappingConfig, SynthesisConfig, expected_shapes, setup_filter
from .readers import Read, Reader, _describe_top, _jsonable, _py, _taps_from_filter
from .readers import finish_stylegan2 as _finish

__all__ = ["looks_rosinality", "read_rosinality", "rosinality_to_official"]

_ROSINALITY_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def looks_rosinality(obj: Any) -> bool:
    if not isinstance(obj, Mapping):
        return False
    if isinstance(obj.get("g_ema"), Mapping):
        return True
    return "style.1.weight" in obj and "input.input" in obj


def read_rosinality(obj: Any, resolution: int | None) -> Read:
    notes: list[str] = []
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"not a rosinality checkpoint: {_describe_top(obj)}")
    if isinstance(obj.get("g_ema"), Mapping):
        sd = obj["g_ema"]
        notes.append("read g_ema from a rosinality stylegan2-pytorch checkpoint")
        ignored = sorted(str(k) for k in obj if k not in ("g_ema", "latent_avg"))
        if ignored:
            notes.append(f"ignored entries: {', '.join(ignored)}")
    elif "style.1.weight" in obj:
        sd = obj
        notes.append("read a bare rosinality generator state dict")
    else:
        raise CheckpointError(f"not a rosinality checkpoint: {_describe_top(obj)}")
    args = obj.get("args") if isinstance(obj.get("args"), (Mapping, Namespace)) else None
    latent_avg = obj.get("latent_avg") if sd is not obj else None
    try:
        cfg, state, more_notes, init_kwargs = rosinality_to_official(sd, args=args, latent_avg=latent_avg)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError) as e:
        raise CheckpointError(f"cannot map the rosinality generator: {describe(str(e), 200)}") from e
    notes += more_notes
    state = _finish(cfg, state, "rosinality checkpoint", notes)
    return Read(cfg, state, "rosinality.Generator", notes, init_kwargs)


def rosinality_to_official(
    sd: Mapping[str, Any], *, args: Mapping[str, Any] | None = None, latent_avg: Any = None
) -> tuple[GeneratorConfig, dict[str, Tensor], list[str], dict[str, Any]]:
    """Map a rosinality ``Generator`` state dict onto our (official) names; infer the config.

    Equivalences (rosinality ``model.py`` -> official ``training/networks.py``):

    * ``style.{i+1}`` (``EqualLinear(lr_mul=lr_mlp, activation="fused_lrelu")``; ``style.0`` is
      ``PixelNorm`` = our ``normalize_2nd_moment``) -> ``mapping.fc{i}``, unchanged: both compute
      ``lrelu(x @ (W * lr/sqrt(in)).T + b * lr, 0.2) * sqrt(2)``. ``lr_mlp`` is not stored; 0.01
      (the default) unless ``args.lr_mlp`` exists.
    * ``input.input [1,C,4,4]`` -> ``synthesis.b4.const [C,4,4]``.
    * ``ModulatedConv2d.weight [1,O,I,k,k]`` is scaled by ``1/sqrt(I*k*k)`` in forward *before*
      modulation and demodulation; our ``SynthesisLayer.weight`` has no gain, and demodulation only
      cancels it up to its ``1e-8`` epsilon, so the scale is folded in: ``conv.weight = W[0] /
      sqrt(I*k*k)`` (exactly rosinality's ``self.scale * self.weight``).
    * ``conv.modulation`` (``EqualLinear(style_dim, I, bias_init=1)``, lr_mul 1) -> ``affine``.
    * ``noise.weight [1]`` -> ``noise_strength []``; ``activate.bias`` (``FusedLeakyReLU``:
      ``lrelu(x + b, 0.2) * sqrt(2)``) -> ``bias``; ``noises.noise_{j} [1,1,r,r]`` -> the
      ``noise_const [r,r]`` of the j-th conv layer (b4.conv1, b8.conv0, b8.conv1, ...).
    * ``convs.{2k}`` (upsample) / ``convs.{2k+1}`` -> ``b{8*2**k}.conv0`` / ``.conv1``. The
      upsampling conv is ``conv_transpose2d(stride 2, unflipped weight)`` then ``Blur(kernel*4,
      pad=(1,1))``: exactly the official ``conv2d_resample(up=2, flip_weight=False)`` for 3x3
      kernels and 4 taps, so ``blur.kernel / 4`` must equal our ``resample_filter``.
    * ``to_rgb1`` / ``to_rgbs.{k}`` -> ``b4.torgb`` / ``b{8*2**k}.torgb``: rosinality's scale
      ``1/sqrt(I)`` equals our ``ToRGBLayer.weight_gain`` (applied to the styles, no
      demodulation), so ``weight = W[0]`` unchanged; ``bias [1,3,1,1]`` -> ``[3]``. ``Upsample``
      (``kernel*4``, pad ``(2,1)``) is the official ``upsample2d`` of the skip image.
    * ws: ``latent[:, i]`` indexing matches the official ws table; ``n_latent`` = ``num_ws``.
    * ``channel_multiplier`` only sets channel counts, which are read from the shapes.
    """
    notes: list[str] = []
    R: dict[str, Any] = {str(k): v for k, v in sd.items()}
    if R and all(k.startswith("module.") for k in R):
        R = {k[len("module.") :]: v for k, v in R.items()}
    used: set[str] = set()

    def take(name: str, shape: tuple[int, ...] | None = None, ndim: int | None = None) -> Tensor:
        # With only ``ndim`` the tensor is returned as stored (for its shape); with ``shape`` as float32.
        t = R.get(name)
        if t is None:
            raise CheckpointError(f"rosinality checkpoint is missing key {name!r}")
        if not isinstance(t, Tensor):
            raise CheckpointError(f"rosinality checkpoint: {name!r} is a {type(t).__name__}, not a tensor")
        if shape is not None and tuple(t.shape) != tuple(shape):
            raise CheckpointError(
                f"rosinality checkpoint: {name!r} has shape {tuple(t.shape)}, expected {tuple(shape)}"
            )
        if ndim is not None and t.ndim != ndim:
            raise CheckpointError(f"rosinality checkpoint: {name!r} has shape {tuple(t.shape)}, expected {ndim} dims")
        used.add(name)
        return t.detach().to(torch.float32) if shape is not None else t

    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in R:
        n_mlp += 1
    style_w = take("style.1.weight", ndim=2)
    style_dim = int(style_w.shape[1])
    n_up = 0
    while f"to_rgbs.{n_up}.conv.weight" in R or f"convs.{2 * n_up}.conv.weight" in R:
        n_up += 1
    if 4 * 2**n_up > networks.MAX_IMG_RESOLUTION:
        raise CheckpointError(
            f"rosinality checkpoint has {n_up} up-sampling blocks (limit {networks.MAX_IMG_RESOLUTION} px)"
        )
    size = 4 * 2**n_up
    const = take("input.input", ndim=4)
    channels = [int(const.shape[1])]
    for k in range(n_up):
        channels.append(int(take(f"convs.{2 * k}.conv.weight", ndim=5).shape[1]))
    kernel = int(take("conv1.conv.weight", ndim=5).shape[-1])
    img_channels = int(take("to_rgb1.conv.weight", ndim=5).shape[1])

    taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)
    blur_name = "convs.0.conv.blur.kernel" if "convs.0.conv.blur.kernel" in R else "to_rgbs.0.upsample.kernel"
    if n_up > 0 and blur_name in R:
        taps = _taps_from_filter(take(blur_name, ndim=2), blur_name)
    elif n_up > 0:
        take(blur_name)  # Raises naming the key.

    lr_mlp = 0.01
    if args is not None and "lr_mlp" in args:
        raw_lr = _py(args["lr_mlp"])
        if not isinstance(raw_lr, (int, float)) or isinstance(raw_lr, bool) or not math.isfinite(raw_lr):
            raise CheckpointError(f"rosinality checkpoint: args.lr_mlp is {describe(raw_lr)}")
        lr_mlp = float(raw_lr)
    else:
        notes.append("lr_mlp=0.01 assumed (rosinality's default; checkpoints do not store it)")

    synthesis = SynthesisConfig(
        w_dim=style_dim,
        img_resolution=size,
        img_channels=img_channels,
        channels=tuple(channels),
        architecture="skip",
        conv_clamp=None,
        resample_filter=taps,
        use_noise=True,
        activation="lrelu",
        kernel_size=kernel,
    )
    mapping = MappingConfig(
        z_dim=style_dim, c_dim=0, w_dim=style_dim, num_ws=synthesis.num_ws, num_layers=n_mlp, lr_multiplier=lr_mlp
    )
    cfg = GeneratorConfig(mapping=mapping, synthesis=synthesis)
    networks.check_parameter_count(expected_shapes(cfg), "rosinality checkpoint")

    state: dict[str, Tensor] = {}
    filt = setup_filter(taps)
    noise_names = [f"noises.noise_{j}" for j in range(2 * n_up + 1)]
    have_noise = [n in R for n in noise_names]
    if not any(have_noise):
        gen = torch.Generator().manual_seed(0)
        noise_planes = [
            torch.randn([1, 1, r, r], generator=gen) for r in [4] + [4 * 2 ** (j // 2 + 1) for j in range(2 * n_up)]
        ]
        notes.append("no noises.noise_* buffers: noise_const drawn from torch.Generator().manual_seed(0)")
    else:
        noise_planes = []
    noise_idx = [0]

    def noise_plane(res: int) -> Tensor:
        j = noise_idx[0]
        noise_idx[0] += 1
        if noise_planes:
            return noise_planes[j][0, 0]
        return take(noise_names[j], (1, 1, res, res))[0, 0]

    def styled(src: str, dst: str, in_ch: int, out_ch: int, res: int, up: bool) -> None:
        w = take(f"{src}.conv.weight", (1, out_ch, in_ch, kernel, kernel))
        state[f"{dst}.weight"] = w[0] * (1 / math.sqrt(in_ch * kernel**2))
        state[f"{dst}.noise_strength"] = take(f"{src}.noise.weight", (1,)).reshape([])
        state[f"{dst}.bias"] = take(f"{src}.activate.bias", (out_ch,))
        state[f"{dst}.resample_filter"] = filt.clone()
        state[f"{dst}.noise_const"] = noise_plane(res)
        state[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight", (in_ch, style_dim))
        state[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias", (in_ch,))
        if up:
            blur = take(f"{src}.conv.blur.kernel", tuple(filt.shape))
            if not torch.allclose(blur, filt * 4, atol=1e-6):
                raise CheckpointError(
                    f"rosinality checkpoint: {src}.conv.blur.kernel differs from the other blur kernels"
                )

    def torgb(src: str, dst: str, in_ch: int, up: bool) -> None:
        state[f"{dst}.weight"] = take(f"{src}.conv.weight", (1, img_channels, in_ch, 1, 1))[0]
        state[f"{dst}.bias"] = take(f"{src}.bias", (1, img_channels, 1, 1)).reshape([img_channels])
        state[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight", (in_ch, style_dim))
        state[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias", (in_ch,))
        if up:
            kern = take(f"{src}.upsample.kernel", tuple(filt.shape))
            if not torch.allclose(kern, filt * 4, atol=1e-6):
                raise CheckpointError(f"rosinality checkpoint: {src}.upsample.kernel differs from the blur kernels")

    c4 = channels[0]
    state["synthesis.b4.const"] = take("input.input", (1, c4, 4, 4))[0]
    state["synthesis.b4.resample_filter"] = filt.clone()
    styled("conv1", "synthesis.b4.conv1", c4, c4, 4, up=False)
    torgb("to_rgb1", "synthesis.b4.torgb", c4, up=False)
    for k in range(n_up):
        res = 8 * 2**k
        cin, cout = channels[k], channels[k + 1]
        state[f"synthesis.b{res}.resample_filter"] = filt.clone()
        styled(f"convs.{2 * k}", f"synthesis.b{res}.conv0", cin, cout, res, up=True)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", cout, cout, res, up=False)
        torgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb", cout, up=True)
    for i in range(n_mlp):
        state[f"mapping.fc{i}.weight"] = take(f"style.{i + 1}.weight", (style_dim, style_dim))
        state[f"mapping.fc{i}.bias"] = take(f"style.{i + 1}.bias", (style_dim,))
    if latent_avg is not None:
        if not isinstance(latent_avg, Tensor) or latent_avg.numel() != style_dim:
            raise CheckpointError(
                f"rosinality checkpoint: latent_avg has shape {tuple(getattr(latent_avg, 'shape', ()))}"
            )
        state["mapping.w_avg"] = latent_avg.detach().to(torch.float32).reshape([style_dim])
        notes.append("w_avg from the stored latent_avg")

    unexpected = sorted(k for k in R if k not in used)
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"rosinality checkpoint has unexpected key {unexpected[0]!r}{more}")

    cm: int | None = None
    if size >= 64 and channels[4] % 256 == 0:
        guess = channels[4] // 256
        expected = [512 if r <= 32 else _ROSINALITY_CHANNELS[r] * guess for r in synthesis.block_resolutions]
        cm = guess if expected == channels else None
    init_kwargs: dict[str, Any] = {
        "size": size,
        "style_dim": style_dim,
        "n_mlp": n_mlp,
        "channel_multiplier": cm,
        "blur_kernel": list(taps),
        "lr_mlp": lr_mlp,
    }
    if args is not None:
        init_kwargs["args"] = _jsonable(args, WalkBudget("rosinality args"))
        for key, mine in (("size", size), ("latent", style_dim), ("n_mlp", n_mlp)):
            theirs = _py(args[key]) if key in args else mine
            if not isinstance(theirs, (int, float, str)) or theirs != mine:
                notes.append(f"args.{key}={describe(theirs)} disagrees with the weights ({mine}); the weights win")
    return cfg, state, notes, init_kwargs


ROSINALITY_READER = Reader(
    name="rosinality-pt",
    summary="rosinality stylegan2-pytorch .pt (g_ema)",
    detect=looks_rosinality,
    read=read_rosinality,
    containers=("zip", "legacy"),
    container_text="a torch.save file as rosinality writes",
)
