"""Protobuf messages <-> domain values, with every check that names the offending field.

Pure functions: no I/O, no onnxruntime. Each raises :class:`~styleserve.errors.InvalidArgument`
whose ``field`` is the dotted path of the bad field in the request (``plans[2].styles[0].source.w``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

import styleserve
from styleserve import wire
from styleserve.errors import InvalidArgument
from styleserve.latent import SEED_MAX, check_psi, z_from_seed
from styleserve.manifest import ModelManifest
from styleserve.transform import IDENTITY, Move, check_move, input_transforms
from styleserve.v1 import styleserve_pb2 as pb

from .runtime import IMAGE_FLOAT, IMAGE_UINT8, NoiseSpec
from .status import quote

F32 = npt.NDArray[np.float32]

IMAGE_FORMATS = {
    pb.IMAGE_FORMAT_UNSPECIFIED: "png",
    pb.IMAGE_FORMAT_PNG: "png",
    pb.IMAGE_FORMAT_JPEG: "jpeg",
    pb.IMAGE_FORMAT_RAW_UINT8: "raw_uint8",
    pb.IMAGE_FORMAT_RAW_FLOAT32: "raw_float32",
}
FORMAT_ENUM = {
    "png": pb.IMAGE_FORMAT_PNG,
    "jpeg": pb.IMAGE_FORMAT_JPEG,
    "raw_uint8": pb.IMAGE_FORMAT_RAW_UINT8,
    "raw_float32": pb.IMAGE_FORMAT_RAW_FLOAT32,
}
DEFAULT_JPEG_QUALITY = 90

# ------------------------------------------------------------------------------------------ caps
# Every repeated, string and bytes field of a request has a cap, checked on its len() before any work
# proportional to it (docs/SECURITY.md "Requests" lists them). Counts of images are server flags
# (max_images_per_request, max_stream_images, max_message_bytes); the rest are here or follow the model:
#   layers, col_styles       <= num_ws entries, no repeats
#   styles per plan          <= num_ws (a plan with more has a style every later one overrides)
#   noise.strength           == one per noise input
#   Tensor.shape             <= the rank of the shapes the field takes; Tensor.data == product(shape) * 4 bytes
MAX_MODEL_NAME_CHARS = 256
MAX_W_ID_CHARS = 64  # Ids the server hands out are "w_" + 32 hex digits.
MAX_NOISE_MODE_CHARS = 16
MAX_STRENGTH = 1e3
MAX_EDITS = 16  # StyleEdits per source (and per Map request).
MAX_ALPHA = 100.0  # |StyleEdit.alpha|; a unit direction times 100 is far outside W (|w - w_avg| is ~10-30).
MAX_RANGE_CHARS = 16


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
class Edit:
    """``ws[layers] += alpha * d``, d = direction ``direction`` of range ``layer_range`` (unit, [w_dim])."""

    layer_range: str
    direction: int
    alpha: float
    layers: tuple[int, ...]


@dataclass(frozen=True)
class Source:
    """Where some layers take their w from: exactly one of ``w_id``, ``w`` or ``seed``; then its edits."""

    field: str
    w_id: str | None = None
    w: F32 | None = None  # [num_ws, w_dim] (an inline w is broadcast).
    seed: int | None = None
    class_index: int | None = None
    truncation: Truncation = Truncation()
    edits: tuple[Edit, ...] = ()


@dataclass(frozen=True)
class LayerStyle:
    layers: tuple[int, ...]
    source: Source


@dataclass(frozen=True)
class Plan:
    field: str
    styles: tuple[LayerStyle, ...]
    noise: NoiseSpec
    transform: Move = IDENTITY  # (translate_x, translate_y, rotate_deg), gen_images.py's --translate / --rotate.


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
    want = " or ".join(str(list(s)) for s in shapes)
    rank = len(t.shape)
    if rank > max(len(s) for s in shapes):
        raise InvalidArgument(f"{field}.shape", f"must be {want}, got {rank} dimensions")
    shape = tuple(int(d) for d in t.shape)
    if shape not in shapes:
        raise InvalidArgument(f"{field}.shape", f"must be {want}, got {list(shape)}")
    try:
        arr = wire.tensor_from_proto(t)
    except ValueError as exc:
        raise InvalidArgument(f"{field}.data", str(exc)) from exc
    if not np.isfinite(arr).all():
        raise InvalidArgument(f"{field}.data", "contains NaN or Inf")
    return arr


# ------------------------------------------------------------------------------------------ scalars


def text(value: str, field: str, cap: int) -> str:
    """A string field no longer than ``cap`` characters."""
    if len(value) > cap:
        raise InvalidArgument(field, f"is {len(value)} characters long; the limit is {cap}")
    return value


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
    if m.architecture == "stylegan3":  # No noise inputs: only the default control is meaningful.
        for name, given in (("mode", n.mode not in ("", m.default_noise_mode)), ("noise_seed", n.noise_seed != 0),
                            ("strength", len(n.strength) > 0)):  # fmt: skip
            if given:
                raise InvalidArgument(
                    f"{field}.{name}", f"model {m.name!r} ({m.architecture}) has no noise inputs; leave it unset"
                )
    mode = text(n.mode, f"{field}.mode", MAX_NOISE_MODE_CHARS) or m.default_noise_mode
    if mode not in m.noise_modes:
        raise InvalidArgument(f"{field}.mode", f"must be one of {', '.join(m.noise_modes)}, got {quote(n.mode)}")
    seed = seed_value(n.noise_seed, f"{field}.noise_seed")
    strength = None
    if len(n.strength):
        if len(n.strength) != len(m.noise_inputs):
            raise InvalidArgument(
                f"{field}.strength", f"needs one value per noise layer ({len(m.noise_inputs)}), got {len(n.strength)}"
            )
        strength = tuple(float(s) for s in n.strength)
        if not all(math.isfinite(s) and abs(s) <= MAX_STRENGTH for s in strength):
            raise InvalidArgument(f"{field}.strength", f"values must be finite with |strength| <= {MAX_STRENGTH:g}")
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


def layer_indices(values: Sequence[int], num_ws: int, field: str) -> tuple[int, ...]:
    """Distinct ws indices ``< num_ws``: at most ``num_ws`` of them, checked on ``len`` before anything else."""
    n = len(values)
    if n > num_ws:
        raise InvalidArgument(field, f"has {n} entries; the model has {num_ws} ws layers, each at most once")
    layers = tuple(int(x) for x in values)
    seen: set[int] = set()
    for i, layer in enumerate(layers):
        if layer >= num_ws:
            raise InvalidArgument(f"{field}[{i}]", f"layer {layer} out of range 0..{num_ws - 1}")
        if layer in seen:
            raise InvalidArgument(f"{field}[{i}]", f"layer {layer} is given twice")
        seen.add(layer)
    return layers


def edits(m: ModelManifest, es: Sequence[pb.StyleEdit], field: str) -> tuple[Edit, ...]:
    """At most MAX_EDITS edits, each naming a stored range and direction, a finite bounded alpha, valid layers."""
    n = len(es)
    if n == 0:
        return ()
    if n > MAX_EDITS:
        raise InvalidArgument(field, f"has {n} entries; at most {MAX_EDITS} edits per source")
    if m.directions is None:
        raise InvalidArgument(
            field, f"model {m.name!r} has no edit directions (exported before they existed); re-export it"
        )
    ranges = {r.name: r for r in m.directions.ranges}
    out = []
    for i, e in enumerate(es):
        f = f"{field}[{i}]"
        name = text(e.layer_range, f"{f}.layer_range", MAX_RANGE_CHARS) or "all"
        r = ranges.get(name)
        if r is None:
            raise InvalidArgument(f"{f}.layer_range", f"unknown range {quote(name)}; model has {', '.join(ranges)}")
        if e.direction >= m.directions.count:
            raise InvalidArgument(f"{f}.direction", f"direction {e.direction} out of range 0..{m.directions.count - 1}")
        alpha = float(e.alpha)
        if not math.isfinite(alpha) or abs(alpha) > MAX_ALPHA:
            raise InvalidArgument(f"{f}.alpha", f"must be finite with |alpha| <= {MAX_ALPHA:g}, got {alpha}")
        layers = layer_indices(e.layers, m.num_ws, f"{f}.layers") or tuple(r.layers)
        out.append(Edit(name, int(e.direction), alpha, layers))
    return tuple(out)


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
    eds = edits(m, s.edits, f"{field}.edits")
    if kind == "w_id":
        if not s.w_id:
            raise InvalidArgument(f"{field}.w_id", "is empty")
        return Source(field, w_id=text(s.w_id, f"{field}.w_id", MAX_W_ID_CHARS), edits=eds)
    if kind == "w":
        w = tensor_from_proto(s.w, f"{field}.w", [(m.w_dim,)])
        return Source(field, w=np.repeat(w[None], m.num_ws, axis=0), edits=eds)
    if kind == "w_plus":
        return Source(field, w=tensor_from_proto(s.w_plus, f"{field}.w_plus", [(m.num_ws, m.w_dim)]), edits=eds)
    sd = s.seed
    return Source(
        field,
        seed=seed_value(sd.seed, f"{field}.seed.seed"),
        class_index=class_value(m, sd.HasField("class_index"), sd.class_index, f"{field}.seed.class_index"),
        truncation=truncation(m, sd.truncation, f"{field}.seed.truncation"),
        edits=eds,
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
        layers = layer_indices(ls.layers, m.num_ws, f"{field}.layers")
    else:
        layers = tuple(range(m.num_ws))
    if not ls.HasField("source"):
        raise InvalidArgument(f"{field}.source", "is required")
    return LayerStyle(layers, source(m, ls.source, f"{field}.source"))


def plan(m: ModelManifest, p: pb.StylePlan, field: str) -> Plan:
    n = len(p.styles)
    if not n:
        raise InvalidArgument(f"{field}.styles", "is empty")
    if n > m.num_ws:
        raise InvalidArgument(
            f"{field}.styles", f"has {n} entries; at most num_ws ({m.num_ws}), more would only be overridden"
        )
    styles = tuple(layer_style(m, ls, f"{field}.styles[{i}]") for i, ls in enumerate(p.styles))
    covered = set().union(*(s.layers for s in styles))
    missing = sorted(set(range(m.num_ws)) - covered)
    if missing:
        raise InvalidArgument(f"{field}.styles", f"ws layers {missing} have no source")
    move = transform(m, p.transform, f"{field}.transform") if p.HasField("transform") else IDENTITY
    return Plan(field, styles, noise(m, p.noise, f"{field}.noise"), move)


def plans(
    m: ModelManifest, ps: Sequence[pb.StylePlan], field: str, start: int = 0, stop: int | None = None
) -> list[Plan]:
    """Plans ``ps[start:stop]``, each named by its index in ``ps``."""
    return [plan(m, ps[i], f"{field}[{i}]") for i in range(start, len(ps) if stop is None else stop)]


def sources(m: ModelManifest, ss: Sequence[pb.StyleSource], field: str) -> list[Source]:
    return [source(m, s, f"{field}[{i}]") for i, s in enumerate(ss)]


def latents(m: ModelManifest, ls: Sequence[pb.Latent], field: str) -> list[Latent]:
    return [latent(m, lat, f"{field}[{i}]") for i, lat in enumerate(ls)]


# ------------------------------------------------------------------------------------------- models


def model_info(
    m: ModelManifest, provider: str, *, png_encoder: str, engine: str = "onnxruntime", precision: str = "fp32"
) -> pb.ModelInfo:
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
        server_version=styleserve.__version__,
        png_encoder=png_encoder,
        engine=engine,
        precision=precision,
        takes_transform=m.transform_input is not None,
        directions=[
            pb.DirectionSet(layer_range=r.name, layers=r.layers, count=len(r.eigenvalues), eigenvalues=r.eigenvalues)
            for r in (m.directions.ranges if m.directions is not None else [])
        ],
    )


# ------------------------------------------------------------------------------------------- transforms


def transform(m: ModelManifest, t: pb.InputTransform, field: str) -> Move:
    """gen_images.py's --translate / --rotate of one image: finite and bounded; anything but the identity only for
    models whose synthesis takes a transform input (``transform_input``, StyleGAN3)."""
    move = check_move((t.translate_x, t.translate_y, t.rotate_deg), field)
    if move != IDENTITY and m.transform_input is None:
        raise InvalidArgument(
            field, f"model {m.name!r} ({m.architecture}) takes no input transform (ModelInfo.takes_transform is false)"
        )
    return move


def transforms(m: ModelManifest, ts: Sequence[pb.InputTransform], n: int, field: str) -> list[Move]:
    """Per-image moves for ``n`` images: none (identity), one for every image, or exactly ``n``."""
    if len(ts) not in (0, 1, n):
        raise InvalidArgument(field, f"needs none, one, or one per image ({n}), got {len(ts)}")
    moves = [transform(m, t, f"{field}[{i}]") for i, t in enumerate(ts)]
    return moves * n if len(moves) == 1 else moves or [IDENTITY] * n


def transform_array(moves: Sequence[Move]) -> F32 | None:
    """The synthesis input ``[N, 3, 3]`` for these moves; None when every one is the identity (the default)."""
    if all(mv == IDENTITY for mv in moves):
        return None
    return input_transforms(moves)
