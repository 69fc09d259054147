"""Protobuf messages <-> domain values, with every check that names the offending field.

Pure functions: no I/O, no onnxruntime. Each raises :class:`~styleserve.errors.InvalidArgument`
whose ``field`` is the dotted path of the bad field in the request (``plans[2].styles[0].source.w``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from styleserve import wire
from styleserve.errors import InvalidArgument
from styleserve.latent import SEED_MAX, check_psi, z_from_seed
from styleserve.manifest import ModelManifest
from styleserve.v1 import styleserve_pb2 as pb

from .runtime import IMAGE_FLOAT, IMAGE_UINT8, NoiseSpec

F32 = npt.NDArray[np.float32]

IMAGE_FORMATS = {
    pb.IMAGE_FORMAT_UNSPECIFIED: "png",
    pb.PNG: "png",
    pb.JPEG: "jpeg",
    pb.RAW_UINT8: "raw_uint8",
    pb.RAW_FLOAT32: "raw_float32",
}
FORMAT_ENUM = {"png": pb.PNG, "jpeg": pb.JPEG, "raw_uint8": pb.RAW_UINT8, "raw_float32": pb.RAW_FLOAT32}
DEFAULT_JPEG_QUALITY = 90


@dataclass(frozen=True)
class Truncation:
    psi: float = 1.0
    cutoff: int | None = None  # Truncate ws indices < cutoff; None = every layer.

    def cutoff_or(self, num_ws: int) -> int:
        return num_ws if self.cutoff is None else self.cutoff

    @property
    def is_identity(self) -> bool:
        return self.psi == 1.0 or self.cutoff == 0


@dataclass(frozen=True)
class Latent:
    """One latent to map: a seed (the official rule) or an explicit z, with its class."""

    seed: int | None = None
    z: F32 | None = None  # [z_dim]
    class_index: int | None = None

    def z_value(self, z_dim: int) -> F32:
        """The z itself, or the official z of the seed. ``# [z_dim]``"""
        if self.z is not None:
            return self.z
        assert self.seed is not None
        return z_from_seed(self.seed, z_dim)


@dataclass(frozen=True)
class Source:
    """Where some layers take their w from: exactly one of ``w_id``, ``w`` or ``seed``."""

    field: str
    w_id: str | None = None
    w: F32 | None = None  # [num_ws, w_dim] (an inline w is broadcast).
    seed: int | None = None
    class_index: int | None = None
    truncation: Truncation = Truncation()


@dataclass(frozen=True)
class LayerStyle:
    layers: tuple[int, ...]
    source: Source


@dataclass(frozen=True)
class Plan:
    field: str
    styles: tuple[LayerStyle, ...]
    noise: NoiseSpec


@dataclass(frozen=True)
class Output:
    format: str  # png | jpeg | raw_uint8 | raw_float32
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    return_ws: bool = False

    @property
    def graph_output(self) -> str:
        """The synthesis output it is encoded from: float NCHW for raw_float32, uint8 NHWC otherwise."""
        return IMAGE_FLOAT if self.format == "raw_float32" else IMAGE_UINT8


# ------------------------------------------------------------------------------------------ tensors


def tensor_from_proto(t: pb.Tensor, field: str, shapes: list[tuple[int, ...]]) -> F32:
    """A finite float32 array of one of ``shapes``."""
    shape = tuple(int(d) for d in t.shape)
    if shape not in shapes:
        want = " or ".join(str(list(s)) for s in shapes)
        raise InvalidArgument(f"{field}.shape", f"must be {want}, got {list(shape)}")
    try:
        arr = wire.tensor_from_proto(t)
    except ValueError as exc:
        raise InvalidArgument(f"{field}.data", str(exc)) from exc
    if not np.isfinite(arr).all():
        raise InvalidArgument(f"{field}.data", "contains NaN or Inf")
    return arr


# ------------------------------------------------------------------------------------------ scalars


def seed_value(seed: int, field: str) -> int:
    if not 0 <= seed <= SEED_MAX:
        raise InvalidArgument(field, f"must be in [0, {SEED_MAX}], got {seed}")
    return int(seed)


def class_value(m: ModelManifest, has: bool, value: int, field: str) -> int | None:
    """The class index of a conditional model, None for an unconditional one."""
    if m.c_dim == 0:
        if has:
            raise InvalidArgument(field, f"model {m.name!r} is unconditional; leave it unset")
        return None
    if not has:
        raise InvalidArgument(field, f"model {m.name!r} is conditional on {m.c_dim} classes; set 0..{m.c_dim - 1}")
    if value >= m.c_dim:
        raise InvalidArgument(field, f"unknown class {value}; valid are 0..{m.c_dim - 1}")
    return int(value)


def truncation(m: ModelManifest, t: pb.Truncation, field: str) -> Truncation:
    psi = check_psi(t.psi, f"{field}.psi") if t.HasField("psi") else 1.0
    cutoff = None
    if t.HasField("cutoff"):
        if t.cutoff > m.num_ws:
            raise InvalidArgument(f"{field}.cutoff", f"must be <= num_ws ({m.num_ws}), got {t.cutoff}")
        cutoff = int(t.cutoff)
    return Truncation(psi, cutoff)


def noise(m: ModelManifest, n: pb.NoiseControl, field: str) -> NoiseSpec:
    mode = n.mode or m.default_noise_mode
    if mode not in m.noise_modes:
        raise InvalidArgument(f"{field}.mode", f"must be one of {', '.join(m.noise_modes)}, got {n.mode!r}")
    seed = seed_value(n.noise_seed, f"{field}.noise_seed")
    strength = None
    if len(n.strength):
        if len(n.strength) != len(m.noise_inputs):
            raise InvalidArgument(
                f"{field}.strength", f"needs one value per noise layer ({len(m.noise_inputs)}), got {len(n.strength)}"
            )
        strength = tuple(float(s) for s in n.strength)
        if not all(math.isfinite(s) and abs(s) <= 1e3 for s in strength):
            raise InvalidArgument(f"{field}.strength", "values must be finite with |strength| <= 1000")
    return NoiseSpec(mode, seed, strength)


def output(o: pb.OutputOptions, field: str = "output") -> Output:
    if o.format not in IMAGE_FORMATS:
        raise InvalidArgument(f"{field}.format", f"unknown image format {o.format}")
    quality = DEFAULT_JPEG_QUALITY
    if o.HasField("jpeg_quality"):
        if not 1 <= o.jpeg_quality <= 100:
            raise InvalidArgument(f"{field}.jpeg_quality", f"must be in 1..100, got {o.jpeg_quality}")
        quality = int(o.jpeg_quality)
    return Output(IMAGE_FORMATS[o.format], quality, bool(o.return_ws))


def count(n: int, limit: int, field: str) -> int:
    if n == 0:
        raise InvalidArgument(field, "is empty")
    if n > limit:
        raise InvalidArgument(field, f"has {n} entries; the limit per request is {limit}")
    return n


# ------------------------------------------------------------------------------------- latents / styles / plans


def latent(m: ModelManifest, lat: pb.Latent, field: str) -> Latent:
    cls = class_value(m, lat.HasField("class_index"), lat.class_index, f"{field}.class_index")
    kind = lat.WhichOneof("source")
    if kind == "seed":
        return Latent(seed=seed_value(lat.seed, f"{field}.seed"), class_index=cls)
    if kind == "z":
        return Latent(z=tensor_from_proto(lat.z, f"{field}.z", [(m.z_dim,)]), class_index=cls)
    raise InvalidArgument(field, "needs a seed or z")


def source(m: ModelManifest, s: pb.StyleSource, field: str) -> Source:
    kind = s.WhichOneof("source")
    if kind is None:
        raise InvalidArgument(field, "needs one of w_id, w, w_plus or seed")
    if kind == "w_id":
        if not s.w_id:
            raise InvalidArgument(f"{field}.w_id", "is empty")
        return Source(field, w_id=s.w_id)
    if kind == "w":
        w = tensor_from_proto(s.w, f"{field}.w", [(m.w_dim,)])
        return Source(field, w=np.repeat(w[None], m.num_ws, axis=0))
    if kind == "w_plus":
        return Source(field, w=tensor_from_proto(s.w_plus, f"{field}.w_plus", [(m.num_ws, m.w_dim)]))
    sd = s.seed
    return Source(
        field,
        seed=seed_value(sd.seed, f"{field}.seed.seed"),
        class_index=class_value(m, sd.HasField("class_index"), sd.class_index, f"{field}.seed.class_index"),
        truncation=truncation(m, sd.truncation, f"{field}.seed.truncation"),
    )


def layer_style(m: ModelManifest, ls: pb.LayerStyle, field: str) -> LayerStyle:
    has_range = ls.HasField("start") or ls.HasField("stop")
    if len(ls.layers) and has_range:
        raise InvalidArgument(field, "give either layers or start/stop, not both")
    if has_range:
        start = ls.start if ls.HasField("start") else 0
        stop = ls.stop if ls.HasField("stop") else m.num_ws
        if not start < stop <= m.num_ws:
            raise InvalidArgument(
                f"{field}.stop", f"need 0 <= start < stop <= num_ws ({m.num_ws}), got {start}..{stop}"
            )
        layers = tuple(range(start, stop))
    elif len(ls.layers):
        for i, layer in enumerate(ls.layers):
            if layer >= m.num_ws:
                raise InvalidArgument(f"{field}.layers[{i}]", f"layer {layer} out of range 0..{m.num_ws - 1}")
        layers = tuple(int(x) for x in ls.layers)
    else:
        layers = tuple(range(m.num_ws))
    if not ls.HasField("source"):
        raise InvalidArgument(f"{field}.source", "is required")
    return LayerStyle(layers, source(m, ls.source, f"{field}.source"))


def plan(m: ModelManifest, p: pb.StylePlan, field: str) -> Plan:
    if not len(p.styles):
        raise InvalidArgument(f"{field}.styles", "is empty")
    styles = tuple(layer_style(m, ls, f"{field}.styles[{i}]") for i, ls in enumerate(p.styles))
    covered = set().union(*(s.layers for s in styles))
    missing = sorted(set(range(m.num_ws)) - covered)
    if missing:
        raise InvalidArgument(f"{field}.styles", f"ws layers {missing} have no source")
    return Plan(field, styles, noise(m, p.noise, f"{field}.noise"))


# ------------------------------------------------------------------------------------------- models


def model_info(m: ModelManifest, provider: str) -> pb.ModelInfo:
    return pb.ModelInfo(
        name=m.name,
        architecture=m.architecture,
        z_dim=m.z_dim,
        num_classes=m.c_dim,
        w_dim=m.w_dim,
        num_ws=m.num_ws,
        img_resolution=m.img_resolution,
        img_channels=m.img_channels,
        ws_layers=[pb.WsLayer(index=s.index, layers=s.layers, resolution=s.resolution) for s in m.ws_layers],
        noise_layers=[pb.NoiseLayer(layer=n.layer, resolution=n.resolution) for n in m.noise_inputs],
        noise_modes=m.noise_modes,
        execution_provider=provider,
    )
