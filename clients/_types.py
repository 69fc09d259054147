"""The client's value types: requests (Noise, Source, Style, Plan) and results (GeneratedImage, ...).

Request types validate on construction and raise ``ValueError`` for anything the client can see is
wrong; what needs the model (layer counts, class counts) is left to the server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import numpy.typing as npt

from styleserve.errors import InvalidArgument
from styleserve.latent import SEED_MAX
from styleserve.transform import check_move
from styleserve.v1 import styleserve_pb2 as pb
from styleserve.wire import tensor_from_proto, tensor_to_proto

if TYPE_CHECKING:
    from PIL import Image as PILImage

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

NOISE_MODES = ("const", "none", "random")
IMAGE_FORMATS = ("png", "jpeg", "raw_uint8", "raw_float32")

_FORMAT_TO_PROTO = {
    "png": pb.IMAGE_FORMAT_PNG,
    "jpeg": pb.IMAGE_FORMAT_JPEG,
    "raw_uint8": pb.IMAGE_FORMAT_RAW_UINT8,
    "raw_float32": pb.IMAGE_FORMAT_RAW_FLOAT32,
}
_FORMAT_FROM_PROTO = {v: k for k, v in _FORMAT_TO_PROTO.items()} | {pb.IMAGE_FORMAT_UNSPECIFIED: "png"}
_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "raw_uint8": ".npy", "raw_float32": ".npy"}
_UINT32_MAX = 2**32 - 1


# ---------------------------------------------------------------------------- validation


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_uint(value: object, what: str, maximum: int = _UINT32_MAX) -> int:
    """An integer in ``[0, maximum]``, else ValueError naming ``what``."""
    if not _is_int(value):
        raise ValueError(f"{what} must be an integer, got {type(value).__name__}")
    v = int(cast("int", value))
    if not 0 <= v <= maximum:
        raise ValueError(f"{what} must be in [0, {maximum}], got {v}")
    return v


def check_seed(seed: object, what: str = "seed") -> int:
    """A seed for ``np.random.RandomState``: an integer in ``[0, 2**32 - 1]``."""
    return check_uint(seed, what, SEED_MAX)


def check_psi(psi: object, what: str = "psi") -> float:
    if isinstance(psi, bool) or not isinstance(psi, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a number, got {type(psi).__name__}")
    if not math.isfinite(float(psi)):
        raise ValueError(f"{what} must be finite, got {psi}")
    return float(psi)


def truncation_proto(psi: float | None, cutoff: int | None) -> pb.Truncation:
    """``psi``/``cutoff`` (None = absent) -> ``Truncation``."""
    t = pb.Truncation()
    if psi is not None:
        t.psi = check_psi(psi)
    if cutoff is not None:
        t.cutoff = check_uint(cutoff, "cutoff")
    return t


def output_proto(format: str, jpeg_quality: int | None, return_ws: bool) -> pb.OutputOptions:
    """``format`` ("png", "jpeg"/"jpg", "raw_uint8", "raw_float32"), quality, return_ws -> ``OutputOptions``."""
    name = format.lower()
    name = "jpeg" if name == "jpg" else name
    if name not in _FORMAT_TO_PROTO:
        raise ValueError(f"format must be one of {', '.join(IMAGE_FORMATS)}; got {format!r}")
    out = pb.OutputOptions(format=_FORMAT_TO_PROTO[name], return_ws=bool(return_ws))
    if jpeg_quality is not None:
        if name != "jpeg":
            raise ValueError(f"jpeg_quality applies only to format 'jpeg', not {format!r}")
        q = check_uint(jpeg_quality, "jpeg_quality", 100)
        if q < 1:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {q}")
        out.jpeg_quality = q
    return out


def _frozen_array(value: npt.ArrayLike, ndim: int, what: str) -> F32:
    arr = np.array(value, dtype=np.float32, copy=True)
    if arr.ndim != ndim or arr.size == 0:
        want = "[w_dim]" if ndim == 1 else "[num_ws, w_dim]"
        raise ValueError(f"{what} must be a non-empty {want} array, got shape {arr.shape}")
    arr.setflags(write=False)
    return arr


# ---------------------------------------------------------------------------- request types


@dataclass(frozen=True)
class Transform:
    """gen_images.py's ``--translate X,Y --rotate DEG`` for one image, on models with ``ModelInfo.takes_transform``
    (StyleGAN3); the default (all zero) is the identity, which every model accepts."""

    translate_x: float = 0.0
    translate_y: float = 0.0
    rotate_deg: float = 0.0

    def __post_init__(self) -> None:
        try:
            tx, ty, deg = check_move((self.translate_x, self.translate_y, self.rotate_deg))
        except InvalidArgument as exc:
            raise ValueError(str(exc)) from None
        object.__setattr__(self, "translate_x", tx)
        object.__setattr__(self, "translate_y", ty)
        object.__setattr__(self, "rotate_deg", deg)

    def to_proto(self) -> pb.InputTransform:
        return pb.InputTransform(translate_x=self.translate_x, translate_y=self.translate_y, rotate_deg=self.rotate_deg)


@dataclass(frozen=True)
class Noise:
    """Noise control: ``"const"`` (checkpoint buffers, reproduces official images), ``"none"`` or ``"random"``.

    ``seed`` drives mode ``"random"``; ``strength`` is one multiplier per ``ModelInfo.noise_layers`` entry.
    """

    mode: str = "const"
    seed: int = 0
    strength: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.mode not in NOISE_MODES:
            raise ValueError(f"noise mode must be one of {', '.join(NOISE_MODES)}; got {self.mode!r}")
        object.__setattr__(self, "seed", check_seed(self.seed, "noise seed"))
        if self.strength is not None:
            strength = tuple(check_psi(s, f"noise strength[{i}]") for i, s in enumerate(self.strength))
            object.__setattr__(self, "strength", strength)

    def to_proto(self) -> pb.NoiseControl:
        return pb.NoiseControl(mode=self.mode, noise_seed=self.seed, strength=list(self.strength or ()))


@dataclass(frozen=True)
class Edit:
    """A semantic edit: ``ws[l] += alpha * d`` on ws indices ``layers`` (None = the range's own layers), ``d`` the
    unit direction ``direction`` (0 = largest eigenvalue) of range ``layer_range`` (``ModelInfo.directions``)."""

    direction: int
    alpha: float
    layer_range: str = "all"
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", check_uint(self.direction, "direction"))
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha):
            raise ValueError(f"alpha must be a finite number, got {self.alpha!r}")
        object.__setattr__(self, "alpha", float(self.alpha))
        if not isinstance(self.layer_range, str):
            raise ValueError(f"layer_range must be a string, got {type(self.layer_range).__name__}")
        if self.layers is not None:
            layers = tuple(check_uint(x, f"layers[{i}]") for i, x in enumerate(self.layers))
            if not layers:
                raise ValueError("layers must not be empty (omit it for the range's own layers)")
            object.__setattr__(self, "layers", layers)

    def to_proto(self) -> pb.StyleEdit:
        return pb.StyleEdit(
            direction=self.direction, alpha=self.alpha, layer_range=self.layer_range, layers=list(self.layers or ())
        )


SourceKind = Literal["seed", "w_id", "w", "w_plus"]


@dataclass(frozen=True, eq=False)
class Source:
    """Where a set of ws layers takes its w from. Build it with ``from_seed``, ``from_w_id``, ``from_w`` or
    ``from_w_plus``; arrays are copied and made read-only. Compares and hashes by value.
    """

    kind: SourceKind
    seed: int | None = None
    class_index: int | None = None
    psi: float | None = None
    cutoff: int | None = None
    w_id: str | None = None
    w: F32 | None = None  # [w_dim] for kind "w", [num_ws, w_dim] for kind "w_plus"
    edits: tuple[Edit, ...] = ()  # Semantic edits, applied in order on the server after truncation.

    def __post_init__(self) -> None:
        edits = tuple(self.edits)
        if not all(isinstance(e, Edit) for e in edits):
            raise ValueError("edits must be Edit values")
        object.__setattr__(self, "edits", edits)
        seed_fields = (self.seed, self.class_index, self.psi, self.cutoff)
        if self.kind == "seed":
            if self.w_id is not None or self.w is not None:
                raise ValueError("a seed source takes no w_id or w")
            object.__setattr__(self, "seed", check_seed(self.seed))
            if self.class_index is not None:
                object.__setattr__(self, "class_index", check_uint(self.class_index, "class_index"))
            if self.psi is not None:
                object.__setattr__(self, "psi", check_psi(self.psi))
            if self.cutoff is not None:
                object.__setattr__(self, "cutoff", check_uint(self.cutoff, "cutoff"))
            return
        if any(v is not None for v in seed_fields):
            raise ValueError(f"seed, class_index, psi and cutoff belong to seed sources, not {self.kind!r}")
        if self.kind == "w_id":
            if not isinstance(self.w_id, str) or not self.w_id or self.w is not None:
                raise ValueError("a w_id source needs a non-empty w_id string and no w")
        elif self.kind in ("w", "w_plus"):
            if self.w is None or self.w_id is not None:
                raise ValueError(f"a {self.kind} source needs an array w and no w_id")
            object.__setattr__(self, "w", _frozen_array(self.w, 1 if self.kind == "w" else 2, self.kind))
        else:
            raise ValueError(f"unknown source kind {self.kind!r}; expected seed, w_id, w or w_plus")

    @classmethod
    def from_seed(
        cls, seed: int, class_index: int | None = None, psi: float | None = None, cutoff: int | None = None
    ) -> Source:
        """A seed mapped on the server with its own class and truncation (psi absent = 1, cutoff absent = all)."""
        return cls("seed", seed=seed, class_index=class_index, psi=psi, cutoff=cutoff)

    @classmethod
    def from_w_id(cls, w_id: str) -> Source:
        """A w or w+ from the server's w cache."""
        return cls("w_id", w_id=w_id)

    @classmethod
    def from_w(cls, w: npt.ArrayLike) -> Source:
        """An inline w ``[w_dim]``, used for every layer it is selected for."""
        return cls("w", w=np.asarray(w, dtype=np.float32))

    @classmethod
    def from_w_plus(cls, ws: npt.ArrayLike) -> Source:
        """An inline w+ ``[num_ws, w_dim]``; selected layers take their own row."""
        return cls("w_plus", w=np.asarray(ws, dtype=np.float32))

    def edited(self, *edits: Edit) -> Source:
        """This source with ``edits`` appended (``Source.from_seed(42).edited(Edit(0, 3.0))``)."""
        return dataclasses.replace(self, edits=(*self.edits, *edits))

    def to_proto(self) -> pb.StyleSource:
        out = self._source_proto()
        out.edits.extend(e.to_proto() for e in self.edits)
        return out

    def _source_proto(self) -> pb.StyleSource:
        if self.kind == "seed":
            assert self.seed is not None
            seed = pb.SeedSource(seed=self.seed, truncation=truncation_proto(self.psi, self.cutoff))
            if self.class_index is not None:
                seed.class_index = self.class_index
            return pb.StyleSource(seed=seed)
        if self.kind == "w_id":
            return pb.StyleSource(w_id=self.w_id)
        assert self.w is not None
        if self.kind == "w":
            return pb.StyleSource(w=tensor_to_proto(self.w))
        return pb.StyleSource(w_plus=tensor_to_proto(self.w))

    def _key(self) -> tuple[Any, ...]:
        arr = None if self.w is None else (self.w.shape, self.w.tobytes())
        return (self.kind, self.seed, self.class_index, self.psi, self.cutoff, self.w_id, arr, self.edits)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Source) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        base = self._base_repr()
        return base + "".join(f".edited({e!r})" for e in self.edits)

    def _base_repr(self) -> str:
        if self.kind == "seed":
            opts = (("class_index", self.class_index), ("psi", self.psi), ("cutoff", self.cutoff))
            extra = "".join(f", {k}={v!r}" for k, v in opts if v is not None)
            return f"Source.from_seed({self.seed}{extra})"
        if self.kind == "w_id":
            return f"Source.from_w_id({self.w_id!r})"
        assert self.w is not None
        return f"Source.from_{self.kind}(<float32 array {list(self.w.shape)}>)"


def as_source(value: Source | int) -> Source:
    """A :class:`Source`, or a plain int taken as a seed source."""
    if isinstance(value, Source):
        return value
    if _is_int(value):
        return Source.from_seed(int(value))
    raise ValueError(f"expected a Source or an int seed, got {type(value).__name__}")


@dataclass(frozen=True)
class Style:
    """A source for some ws indices: ``layers``, or the half-open range ``[start, stop)``; neither = every layer."""

    source: Source
    layers: Sequence[int] | None = None
    start: int | None = None
    stop: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.source, Source):
            raise ValueError(f"Style.source must be a Source, got {type(self.source).__name__}")
        if self.layers is not None:
            if self.start is not None or self.stop is not None:
                raise ValueError("give either layers or a start/stop range, not both")
            layers = tuple(check_uint(x, f"layers[{i}]") for i, x in enumerate(self.layers))
            if not layers:
                raise ValueError("layers must not be empty (omit it to cover every layer)")
            object.__setattr__(self, "layers", layers)
        if self.start is not None:
            object.__setattr__(self, "start", check_uint(self.start, "start"))
        if self.stop is not None:
            object.__setattr__(self, "stop", check_uint(self.stop, "stop"))
        if self.start is not None and self.stop is not None and self.start >= self.stop:
            raise ValueError(f"empty layer range [{self.start}, {self.stop})")

    def to_proto(self) -> pb.LayerStyle:
        out = pb.LayerStyle(layers=list(self.layers or ()), source=self.source.to_proto())
        if self.start is not None:
            out.start = self.start
        if self.stop is not None:
            out.stop = self.stop
        return out


@dataclass(frozen=True)
class Plan:
    """One image: styles applied in order (later ones override earlier ones on shared layers), and its noise."""

    styles: Sequence[Style]
    noise: Noise | None = None
    transform: Transform | None = None  # Translation / rotation (ModelInfo.takes_transform); None = identity.

    def __post_init__(self) -> None:
        styles = tuple(self.styles)
        if not styles:
            raise ValueError("a plan needs at least one Style")
        for i, s in enumerate(styles):
            if not isinstance(s, Style):
                raise ValueError(f"styles[{i}] must be a Style, got {type(s).__name__}")
        object.__setattr__(self, "styles", styles)
        if self.noise is not None and not isinstance(self.noise, Noise):
            raise ValueError(f"noise must be a Noise, got {type(self.noise).__name__}")
        if self.transform is not None and not isinstance(self.transform, Transform):
            raise ValueError(f"transform must be a Transform, got {type(self.transform).__name__}")

    def to_proto(self) -> pb.StylePlan:
        out = pb.StylePlan(styles=[s.to_proto() for s in self.styles])
        if self.noise is not None:
            out.noise.CopyFrom(self.noise.to_proto())
        if self.transform is not None:
            out.transform.CopyFrom(self.transform.to_proto())
        return out


# ---------------------------------------------------------------------------- result types


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_umask_once = functools.cache(_umask)


def atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temp file next to ``path``, fsync, then ``os.replace`` it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask_once())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True, eq=False)
class GeneratedImage:
    """One image: encoded bytes (``"png"``, ``"jpeg"``) or raw tensor bytes (``"raw_uint8"``, ``"raw_float32"``)."""

    data: bytes
    format: str
    width: int
    height: int
    channels: int
    ws: F32 | None = None  # [num_ws, w_dim], when return_ws was set

    @classmethod
    def from_proto(cls, img: pb.Image) -> GeneratedImage:
        fmt = _FORMAT_FROM_PROTO.get(img.format)
        if fmt is None:
            raise ValueError(f"unknown image format {img.format} in the response")
        ws = tensor_from_proto(img.ws) if img.HasField("ws") else None
        return cls(bytes(img.data), fmt, int(img.width), int(img.height), int(img.channels), ws)

    def __repr__(self) -> str:
        """Short: ``GeneratedImage(png 32x32x3, 2113 bytes)`` (and the ws shape), never the bytes."""
        ws = "" if self.ws is None else f", ws {list(self.ws.shape)}"
        return f"GeneratedImage({self.format} {self.width}x{self.height}x{self.channels}, {len(self.data)} bytes{ws})"

    @property
    def suffix(self) -> str:
        """The file suffix :meth:`save` output conventionally takes: ``.png``, ``.jpg`` or ``.npy``."""
        return _SUFFIXES[self.format]

    def to_array(self) -> npt.NDArray[Any]:
        """PNG/JPEG and raw_uint8 -> uint8 ``[H, W, C]``; raw_float32 -> float32 ``[C, H, W]`` in [-1, 1]."""
        if self.format in ("png", "jpeg"):
            from PIL import Image  # Pillow only when decoding.

            with Image.open(io.BytesIO(self.data)) as img:
                mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(self.channels)
                arr = np.array(img.convert(mode) if mode and img.mode != mode else img, dtype=np.uint8)
            return arr[..., None] if arr.ndim == 2 else arr  # [H, W, C]
        if self.format == "raw_uint8":
            shape: tuple[int, ...] = (self.height, self.width, self.channels)
            dtype: np.dtype[Any] = np.dtype(np.uint8)
        elif self.format == "raw_float32":
            shape, dtype = (self.channels, self.height, self.width), np.dtype("<f4")
        else:
            raise ValueError(f"unknown image format {self.format!r}")
        expected = math.prod(shape) * dtype.itemsize
        if len(self.data) != expected:
            raise ValueError(f"{self.format} image {list(shape)} needs {expected} bytes, got {len(self.data)}")
        return np.frombuffer(self.data, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(shape)

    def to_pil(self) -> PILImage.Image:
        """A PIL image (mode ``L``, ``RGB`` or ``RGBA``): PNG/JPEG decoded, raw images from :meth:`to_array`,
        raw_float32 converted to uint8 as the server does (``clip(x * 127.5 + 128, 0, 255)``).
        """
        from PIL import Image  # Pillow only when decoding.

        if self.format in ("png", "jpeg"):
            with Image.open(io.BytesIO(self.data)) as img:
                img.load()
                return img.copy()
        arr = self.to_array()
        if self.format == "raw_float32":
            arr = np.clip(arr * 127.5 + 128, 0, 255).astype(np.uint8).transpose(1, 2, 0)  # [C, H, W] -> [H, W, C]
        return Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[-1] == 1 else arr))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically: encoded formats as their bytes, raw formats as a ``.npy`` array. Returns the path."""
        p = Path(path)
        if self.format in ("png", "jpeg"):
            payload = self.data
        else:
            buf = io.BytesIO()
            np.save(buf, self.to_array(), allow_pickle=False)
            payload = buf.getvalue()
        atomic_write(p, payload)
        return p


@dataclass(frozen=True, eq=False)
class MappedW:
    """One mapped latent: ``w`` ([w_dim], or [num_ws, w_dim] if the server says so) and/or its cache id."""

    w: F32 | None
    w_id: str | None

    @classmethod
    def from_proto(cls, m: pb.MappedW) -> MappedW:
        return cls(tensor_from_proto(m.w) if m.HasField("w") else None, m.w_id or None)


@dataclass(frozen=True, eq=False)
class GridResult:
    """A style-mixing grid: row-major cells (len(rows) * len(cols)) and the composed image, if asked for."""

    cells: list[GeneratedImage]
    grid: GeneratedImage | None


@dataclass(frozen=True, eq=False)
class StreamResult:
    """One streamed image: its position in the request and, for seed ranges, its seed."""

    index: int
    seed: int | None
    image: GeneratedImage

    @classmethod
    def from_proto(cls, item: pb.StreamItem) -> StreamResult:
        seed = int(item.seed) if item.HasField("seed") else None
        return cls(int(item.index), seed, GeneratedImage.from_proto(item.image))


@dataclass(frozen=True)
class WsLayer:
    """A ws index, the layers it feeds and the resolution of the first of them; unpacks as a 3-tuple."""

    index: int
    layers: list[str]
    resolution: int

    def __iter__(self) -> Iterator[Any]:
        return iter((self.index, self.layers, self.resolution))


@dataclass(frozen=True)
class NoiseLayer:
    """A noise input: its layer and the side of its square plane; unpacks as a 2-tuple."""

    layer: str
    resolution: int

    def __iter__(self) -> Iterator[Any]:
        return iter((self.layer, self.resolution))


@dataclass(frozen=True)
class DirectionSet:
    """A layer range's semantic edit directions: its ws indices, how many, and their eigenvalues (largest first)."""

    layer_range: str
    layers: list[int]
    count: int
    eigenvalues: list[float]


@dataclass(frozen=True)
class ModelInfo:
    """A served model's metadata (mirrors ``styleserve.v1.ModelInfo``)."""

    name: str
    architecture: str
    z_dim: int
    num_classes: int
    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int
    ws_layers: list[WsLayer]
    noise_layers: list[NoiseLayer]
    noise_modes: list[str]
    execution_provider: str
    server_version: str = ""
    png_encoder: str = ""  # "fpng" or "pillow": PNG bytes depend on it, pixels do not.
    engine: str = ""
    precision: str = ""
    directions: list[DirectionSet] = dataclasses.field(default_factory=list)  # Empty: the model has no edits.
    takes_transform: bool = False  # Accepts Transform (translate / rotate): StyleGAN3.

    @classmethod
    def from_proto(cls, m: pb.ModelInfo) -> ModelInfo:
        return cls(
            name=m.name,
            architecture=m.architecture,
            z_dim=int(m.z_dim),
            num_classes=int(m.num_classes),
            w_dim=int(m.w_dim),
            num_ws=int(m.num_ws),
            img_resolution=int(m.img_resolution),
            img_channels=int(m.img_channels),
            ws_layers=[WsLayer(int(x.index), list(x.layers), int(x.resolution)) for x in m.ws_layers],
            noise_layers=[NoiseLayer(x.layer, int(x.resolution)) for x in m.noise_layers],
            noise_modes=list(m.noise_modes),
            execution_provider=m.execution_provider,
            server_version=m.server_version,
            png_encoder=m.png_encoder,
            engine=m.engine,
            precision=m.precision,
            directions=[
                DirectionSet(d.layer_range, [int(x) for x in d.layers], int(d.count), [float(x) for x in d.eigenvalues])
                for d in m.directions
            ],
            takes_transform=bool(m.takes_transform),
        )
