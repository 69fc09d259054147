"""The model directory contract between ``styleserve.export`` and ``styleserve.server``.

A model directory holds::

    model.json           this manifest
    mapping.onnx         z [N, z_dim] (+ c [N, c_dim] when conditional) -> w [N, w_dim]
    synthesis.onnx       ws [N, num_ws, w_dim] + one noise input per noise layer
                         -> image [N, C, H, W] float32 in [-1, 1] (unclamped)
                         -> image_uint8 [N, H, W, C] uint8 = clamp(image * 127.5 + 128, 0, 255)
    synthesis_fp16.onnx  optional: the same graph with fp16 convolutions (``--fp16``)
    noise_const.npz      the checkpoint's constant noise planes, one [res, res] array per input
    directions.npy       optional: semantic edit directions [ranges, count, w_dim] (``directions``; export/sefa.py)

Noise. Each noise layer has a graph input ``noise_<layer>`` of shape ``[N or 1, 1, res, res]``
(float32) that the graph scales by the layer's learned noise strength and adds after the
convolution. A batch of 1 broadcasts over the images. The modes are what the caller feeds:

* ``const`` - the arrays of ``noise_const.npz`` (official ``noise_mode='const'``, the default);
* ``none`` - zeros;
* ``random`` - ``styleserve.latent.noise_from_seed(noise_seed, resolutions)``: one
  ``RandomState(noise_seed)`` stream, ``randn(res, res)`` per input in manifest order.

Per-layer noise strength scaling is the caller multiplying a layer's input by a factor.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import stat
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NoReturn

from styleserve.errors import ManifestError

FORMAT_VERSION = 1
MANIFEST_NAME = "model.json"
NOISE_MODES = ("const", "none", "random")
ARCHITECTURES = ("stylegan2", "stylegan", "stylegan3")


@dataclass(frozen=True)
class NoiseInput:
    name: str  # Graph input name, e.g. "noise_b8_conv0".
    layer: str  # Layer it feeds, e.g. "b8.conv0".
    resolution: int  # The input is [N or 1, 1, resolution, resolution].


@dataclass(frozen=True)
class WsSlot:
    index: int  # Index into ws [N, num_ws, w_dim].
    layers: list[str]  # Layers this w feeds, e.g. ["b4.torgb", "b8.conv0"].
    resolution: int  # Lowest resolution among the layers it feeds (coarse = small; export/onnx_export.ws_slots).


@dataclass(frozen=True)
class GraphFile:
    file: str
    inputs: list[str]
    outputs: list[str]


DIRECTION_RANGES = ("all", "coarse", "middle", "fine")  # Layer sets of the edit directions (styleserve.export.sefa).


@dataclass(frozen=True)
class DirectionRange:
    name: str  # One of DIRECTION_RANGES.
    layers: list[int]  # ws indices whose style affines the directions were computed from (and edits default to).
    eigenvalues: list[float]  # [count], largest first: how strongly each direction moves these layers' styles.


@dataclass(frozen=True)
class Directions:
    """Semantic edit directions: ``file`` holds float32 ``[len(ranges), count, w_dim]``, unit rows in W space."""

    file: str
    method: str  # "sefa": top eigenvectors of A^T A over the ranges' row-normalised style affine weights.
    count: int  # Directions per range.
    ranges: list[DirectionRange]


@dataclass(frozen=True)
class ModelManifest:
    name: str
    architecture: str  # "stylegan2", or "stylegan" (v1, AdaIN; see styleserve.export.networks_v1)
    z_dim: int
    c_dim: int  # Number of classes (one-hot labels); 0 = unconditional.
    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int
    w_avg: list[float]
    mapping: GraphFile
    synthesis: GraphFile
    ws_layers: list[WsSlot]
    noise_inputs: list[NoiseInput]
    noise_const_file: str = "noise_const.npz"
    noise_modes: list[str] = field(default_factory=lambda: list(NOISE_MODES))
    default_noise_mode: str = "const"
    synthesis_fp16: GraphFile | None = None
    truncation: dict[str, Any] = field(default_factory=dict)  # Recommended psi / cutoff, informational.
    source: dict[str, Any] = field(default_factory=dict)  # checkpoint sha256, format, class, notes.
    versions: dict[str, Any] = field(default_factory=dict)  # styleserve, torch, onnx, onnxruntime, opset.
    verification: dict[str, Any] = field(default_factory=dict)  # measured errors of the self-check.
    format_version: int = FORMAT_VERSION
    transform_input: str | None = None  # stylegan3: the synthesis input [N, 3, 3] (inverse of make_transform).
    directions: Directions | None = None  # Semantic edit directions; None for exports before them.

    @property
    def num_classes(self) -> int:
        return self.c_dim

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    def save(self, model_dir: Path | str) -> Path:
        path = Path(model_dir) / MANIFEST_NAME
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @staticmethod
    def from_dict(d: dict[str, Any], where: str = MANIFEST_NAME) -> ModelManifest:
        """Validate every field (type and range) in one place; errors read ``<where>: <field>: <problem>``."""
        return _Validator(where).manifest(d)

    @staticmethod
    def load(model_dir: Path | str) -> ModelManifest:
        """Read and validate ``<model_dir>/model.json`` (size and nesting capped before and while parsing)."""
        path = manifest_file(model_dir)
        where = str(path)
        if not path.exists() and not path.is_symlink():
            raise ManifestError(f"{where}: no manifest")
        path = resolve_inside(model_dir, MANIFEST_NAME, where, "model.json")
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_MANIFEST_BYTES + 1)
        except OSError as exc:
            raise ManifestError(f"{where}: cannot read: {exc}") from exc
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{where}: larger than {MAX_MANIFEST_BYTES} bytes; refused before parsing")
        return ModelManifest.from_dict(parse_manifest(raw, where), where=where)

    def opened_files(self, fp16: bool = False) -> dict[str, str]:
        """Field -> relative path of every file the server opens for this manifest (``fp16``: the fp16 graph)."""
        graph, key = (
            (self.synthesis_fp16, "synthesis_fp16") if fp16 and self.synthesis_fp16 else (self.synthesis, "synthesis")
        )
        files = {"mapping.file": self.mapping.file, f"{key}.file": graph.file}
        files["noise_const_file"] = self.noise_const_file
        if self.directions is not None:
            files["directions.file"] = self.directions.file
        return files

    @property
    def files_sha256(self) -> dict[str, str]:
        """``source.files_sha256``: file name -> sha256 hex digest, as the exporter wrote it (validated)."""
        hashes = self.source.get("files_sha256", {})
        return dict(hashes) if isinstance(hashes, dict) else {}


# ------------------------------------------------------------------------------------------ bounds

MAX_MANIFEST_BYTES = 1 << 20  # A 1024 px model's model.json is ~30 KB (w_avg: 512 floats).
MAX_JSON_DEPTH = 16  # The deepest the exporter writes is 4 (source.config.<dict>).
MAX_DIM = 4096  # z_dim, w_dim (StyleGAN: 512).
MAX_CLASSES = 65536  # c_dim.
MAX_NUM_WS = 64  # A 1024 px StyleGAN2 has 18.
MAX_RESOLUTION = 4096  # img_resolution, a power of two.
MAX_NOISE_INPUTS = 128  # A 1024 px StyleGAN2 has 17.
MAX_NOISE_BYTES = 256 << 20  # All constant noise planes as float32 (1024 px StyleGAN2: 11 MiB).
MAX_NAME_CHARS = 128
MAX_LIST = 256  # Any other list (graph inputs, ws layer names, files_sha256 entries).
MAX_PSI = 100.0
MAX_DIRECTIONS = 64  # Directions per range (the exporter writes 16).
_HEX64 = re.compile(r"[0-9a-f]{64}")


def manifest_file(model_dir: Path | str) -> Path:
    return Path(model_dir) / MANIFEST_NAME


def one_line(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_manifest(raw: bytes, where: str) -> dict[str, Any]:
    """JSON object from bytes: no NaN/Infinity, no huge numbers, at most MAX_JSON_DEPTH levels, no RecursionError."""

    def no_constant(text: str) -> float:
        raise ValueError(f"{text} is not a JSON number")

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"{text} overflows a float")
        return value

    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=no_constant, parse_float=finite)
    except RecursionError as exc:
        raise ManifestError(f"{where}: nested too deep (more than {MAX_JSON_DEPTH} levels)") from exc
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError and int/float conversion errors
        raise ManifestError(f"{where}: cannot parse: {one_line(exc)}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: not a JSON object")
    todo: list[tuple[Any, int]] = [(data, 1)]  # iterative: depth is checked without recursing
    while todo:
        node, depth = todo.pop()
        if depth > MAX_JSON_DEPTH:
            raise ManifestError(f"{where}: nested too deep (more than {MAX_JSON_DEPTH} levels)")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        todo.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return data


def check_relative_path(text: str, where: str, field: str) -> str:
    """A file name the manifest gives must be relative and stay in the model directory (lexically)."""
    problem = None
    if not text:
        problem = "is empty"
    elif "\x00" in text or "\\" in text or not text.isprintable():
        problem = f"{text!r} holds a NUL, a backslash or a control character"
    elif PurePosixPath(text).is_absolute() or PureWindowsPath(text).drive or PureWindowsPath(text).root:
        problem = f"{text!r} is an absolute path; files must be inside the model directory"
    elif ".." in PurePosixPath(text).parts:
        problem = f"{text!r} leads out of the model directory ('..')"
    elif PurePosixPath(text).parts in ((), (".",)):
        problem = f"{text!r} names no file"
    if problem is not None:
        raise ManifestError(f"{where}: {field}: {problem}")
    return text


def resolve_inside(model_dir: Path | str, rel: str, where: str, field: str) -> Path:
    """``model_dir / rel`` after following every symlink; refused unless a regular file inside the (real) model dir."""
    check_relative_path(rel, where, field)
    try:
        root = Path(model_dir).resolve(strict=True)
        path = (root / rel).resolve(strict=True)
    except FileNotFoundError as exc:
        raise ManifestError(f"{where}: {field}: {Path(model_dir) / rel}: missing") from exc
    except (OSError, RuntimeError) as exc:  # symlink loops: RuntimeError before 3.13, OSError after
        raise ManifestError(f"{where}: {field}: {Path(model_dir) / rel}: cannot resolve: {one_line(exc)}") from exc
    if not path.is_relative_to(root):
        raise ManifestError(
            f"{where}: {field}: {Path(model_dir) / rel} resolves to {path}, outside the model directory"
        )
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ManifestError(f"{where}: {field}: {path}: cannot stat: {one_line(exc)}") from exc
    if not stat.S_ISREG(mode):
        raise ManifestError(f"{where}: {field}: {Path(model_dir) / rel} is not a regular file")
    return path


def sha256_file(path: Path | str, chunk_bytes: int = 1 << 20) -> str:
    """sha256 hex digest, streamed in 1 MiB chunks (bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_bytes), b""):
            h.update(chunk)
    return h.hexdigest()


class _Validator:
    """Every field's type and range, with messages ``<where>: <field>: <problem>``."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, problem: str) -> NoReturn:
        raise ManifestError(f"{self.where}: {field}: {problem}")

    def get(self, d: dict[str, Any], key: str, prefix: str = "", default: Any = MISSING) -> Any:
        field = f"{prefix}.{key}" if prefix else key
        if key in d:
            return d[key]
        if default is MISSING:
            self.fail(field, "missing")
        return default

    def int_(self, v: Any, field: str, lo: int, hi: int) -> int:
        if not isinstance(v, int) or isinstance(v, bool):
            self.fail(field, f"must be an integer, got {type(v).__name__}")
        if not lo <= v <= hi:
            self.fail(field, f"{v} is out of range [{lo}, {hi}]")
        return v

    def float_(self, v: Any, field: str, lo: float, hi: float) -> float:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            self.fail(field, f"must be a number, got {type(v).__name__}")
        if not math.isfinite(v) or not lo <= v <= hi:
            self.fail(field, f"{v} is not a finite number in [{lo}, {hi}]")
        return float(v)

    def str_(self, v: Any, field: str, max_chars: int = MAX_NAME_CHARS) -> str:
        if not isinstance(v, str):
            self.fail(field, f"must be a string, got {type(v).__name__}")
        if not v or len(v) > max_chars or not v.isprintable() or v != v.strip():
            self.fail(field, f"{v[:40]!r} must be 1..{max_chars} printable characters without surrounding blanks")
        return v

    def list_(self, v: Any, field: str, max_len: int = MAX_LIST) -> list[Any]:
        if not isinstance(v, list):
            self.fail(field, f"must be a list, got {type(v).__name__}")
        if len(v) > max_len:
            self.fail(field, f"has {len(v)} entries, at most {max_len} allowed")
        return v

    def dict_(self, v: Any, field: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            self.fail(field, f"must be an object, got {type(v).__name__}")
        return v

    def names(self, v: Any, field: str, max_len: int = MAX_LIST) -> list[str]:
        out = [self.str_(x, f"{field}[{i}]") for i, x in enumerate(self.list_(v, field, max_len))]
        if len(set(out)) != len(out):
            self.fail(field, "holds duplicates")
        return out

    def graph(self, d: dict[str, Any], key: str, inputs: list[str], outputs: list[str]) -> GraphFile:
        g = self.dict_(self.get(d, key), key)
        file = check_relative_path(self.str_(self.get(g, "file", key), f"{key}.file"), self.where, f"{key}.file")
        got_in = self.names(self.get(g, "inputs", key), f"{key}.inputs", MAX_NOISE_INPUTS + 2)
        got_out = self.names(self.get(g, "outputs", key), f"{key}.outputs", 4)
        if got_in != inputs:
            self.fail(f"{key}.inputs", f"{got_in} disagrees with the manifest, which needs {inputs}")
        if sorted(got_out) != sorted(outputs):
            self.fail(f"{key}.outputs", f"{got_out} must be {outputs}")
        return GraphFile(file=file, inputs=got_in, outputs=got_out)

    def manifest(self, d: dict[str, Any]) -> ModelManifest:
        version = self.int_(self.get(d, "format_version"), "format_version", 0, 2**31)
        if version != FORMAT_VERSION:
            self.fail("format_version", f"{version} is not supported (need {FORMAT_VERSION})")
        name = self.str_(self.get(d, "name"), "name")
        architecture = self.str_(self.get(d, "architecture"), "architecture")
        if architecture not in ARCHITECTURES:
            self.fail("architecture", f"{architecture!r} is not one of {', '.join(ARCHITECTURES)}")
        z_dim = self.int_(self.get(d, "z_dim"), "z_dim", 1, MAX_DIM)
        c_dim = self.int_(self.get(d, "c_dim"), "c_dim", 0, MAX_CLASSES)
        w_dim = self.int_(self.get(d, "w_dim"), "w_dim", 1, MAX_DIM)
        num_ws = self.int_(self.get(d, "num_ws"), "num_ws", 1, MAX_NUM_WS)
        res = self.int_(self.get(d, "img_resolution"), "img_resolution", 4, MAX_RESOLUTION)
        if res & (res - 1):
            self.fail("img_resolution", f"{res} is not a power of two")
        channels = self.int_(self.get(d, "img_channels"), "img_channels", 1, 4)
        w_avg = self.list_(self.get(d, "w_avg"), "w_avg", MAX_DIM)
        if len(w_avg) != w_dim:
            self.fail("w_avg", f"has {len(w_avg)} values, w_dim is {w_dim}")
        w_avg = [self.float_(x, f"w_avg[{i}]", -1e6, 1e6) for i, x in enumerate(w_avg)]

        ws_layers: list[WsSlot] = []
        for i, s in enumerate(self.list_(self.get(d, "ws_layers"), "ws_layers", MAX_NUM_WS)):
            f = f"ws_layers[{i}]"
            s = self.dict_(s, f)
            index = self.int_(self.get(s, "index", f), f"{f}.index", 0, MAX_NUM_WS)
            if index != i:
                self.fail(f"{f}.index", f"is {index}, must be {i} (entries in ws order)")
            layers = self.names(self.get(s, "layers", f), f"{f}.layers", 16)
            ws_res = self.int_(self.get(s, "resolution", f), f"{f}.resolution", 1, res)
            ws_layers.append(WsSlot(index, layers, ws_res))
        if len(ws_layers) != num_ws:
            self.fail("ws_layers", f"has {len(ws_layers)} entries, num_ws is {num_ws}")

        noise_inputs: list[NoiseInput] = []
        noise_bytes = 0
        for i, n in enumerate(self.list_(self.get(d, "noise_inputs"), "noise_inputs", MAX_NOISE_INPUTS)):
            f = f"noise_inputs[{i}]"
            n = self.dict_(n, f)
            nres = self.int_(self.get(n, "resolution", f), f"{f}.resolution", 1, res)
            noise_inputs.append(
                NoiseInput(
                    self.str_(self.get(n, "name", f), f"{f}.name"),
                    self.str_(self.get(n, "layer", f), f"{f}.layer"),
                    nres,
                )
            )
            noise_bytes += 4 * nres * nres
        if noise_bytes > MAX_NOISE_BYTES:
            self.fail("noise_inputs", f"{noise_bytes} bytes of float32 noise planes, at most {MAX_NOISE_BYTES}")
        noise_names = [n.name for n in noise_inputs]
        if len(set(noise_names)) != len(noise_names) or "ws" in noise_names:
            self.fail("noise_inputs", "input names must be distinct and not 'ws'")

        transform_input = d.get("transform_input")
        if transform_input is not None:
            transform_input = self.str_(transform_input, "transform_input")
            if transform_input == "ws" or transform_input in noise_names:
                self.fail("transform_input", f"{transform_input!r} collides with another synthesis input")
        s_inputs = ["ws", *noise_names, *([transform_input] if transform_input else [])]
        mapping = self.graph(d, "mapping", ["z", "c"] if c_dim else ["z"], ["w"])
        graph_out = ["image", "image_uint8"]
        synthesis = self.graph(d, "synthesis", s_inputs, graph_out)
        fp16 = None if d.get("synthesis_fp16") is None else self.graph(d, "synthesis_fp16", s_inputs, graph_out)
        noise_file = self.str_(self.get(d, "noise_const_file", "", "noise_const.npz"), "noise_const_file")
        check_relative_path(noise_file, self.where, "noise_const_file")
        modes = self.names(self.get(d, "noise_modes", "", list(NOISE_MODES)), "noise_modes", len(NOISE_MODES))
        if not modes or any(x not in NOISE_MODES for x in modes):
            self.fail("noise_modes", f"{modes} must be a non-empty subset of {list(NOISE_MODES)}")
        default_mode = self.str_(self.get(d, "default_noise_mode", "", "const"), "default_noise_mode")
        if default_mode not in modes:
            self.fail("default_noise_mode", f"{default_mode!r} is not one of noise_modes {modes}")

        truncation = self.dict_(self.get(d, "truncation", "", {}), "truncation")
        if truncation.get("psi") is not None:
            self.float_(truncation["psi"], "truncation.psi", -MAX_PSI, MAX_PSI)
        if truncation.get("cutoff") is not None:
            self.int_(truncation["cutoff"], "truncation.cutoff", 0, MAX_NUM_WS)  # v1: 8 whatever num_ws.
        source = self.dict_(self.get(d, "source", "", {}), "source")
        if "files_sha256" in source:
            hashes = self.dict_(source["files_sha256"], "source.files_sha256")
            self.list_(list(hashes), "source.files_sha256", MAX_LIST)
            for file, digest in hashes.items():
                check_relative_path(file, self.where, "source.files_sha256")
                if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
                    self.fail(f"source.files_sha256[{file!r}]", "must be 64 lowercase hex digits (sha256)")
        directions = None if d.get("directions") is None else self.directions(d["directions"], w_dim, num_ws)
        return ModelManifest(
            name=name,
            architecture=architecture,
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            num_ws=num_ws,
            img_resolution=res,
            img_channels=channels,
            w_avg=w_avg,
            mapping=mapping,
            synthesis=synthesis,
            ws_layers=ws_layers,
            noise_inputs=noise_inputs,
            noise_const_file=noise_file,
            noise_modes=modes,
            default_noise_mode=default_mode,
            synthesis_fp16=fp16,
            truncation=truncation,
            source=source,
            versions=self.dict_(self.get(d, "versions", "", {}), "versions"),
            verification=self.dict_(self.get(d, "verification", "", {}), "verification"),
            format_version=version,
            transform_input=transform_input,
            directions=directions,
        )

    def directions(self, v: Any, w_dim: int, num_ws: int) -> Directions:
        """``directions``: the file, at most one entry per known range, bounded counts, valid ws indices."""
        d = self.dict_(v, "directions")
        file = check_relative_path(
            self.str_(self.get(d, "file", "directions"), "directions.file"), self.where, "directions.file"
        )
        method = self.str_(self.get(d, "method", "directions"), "directions.method")
        if method != "sefa":
            self.fail("directions.method", f"{method!r} is not supported (need 'sefa')")
        count = self.int_(self.get(d, "count", "directions"), "directions.count", 1, min(MAX_DIRECTIONS, w_dim))
        ranges: list[DirectionRange] = []
        for i, r in enumerate(self.list_(self.get(d, "ranges", "directions"), "directions.ranges", 4)):
            f = f"directions.ranges[{i}]"
            r = self.dict_(r, f)
            name = self.str_(self.get(r, "name", f), f"{f}.name")
            if name not in DIRECTION_RANGES or any(x.name == name for x in ranges):
                self.fail(f"{f}.name", f"{name!r} must be one of {', '.join(DIRECTION_RANGES)}, each at most once")
            raw = self.list_(self.get(r, "layers", f), f"{f}.layers", MAX_NUM_WS)
            layers = [self.int_(x, f"{f}.layers[{j}]", 0, MAX_NUM_WS - 1) for j, x in enumerate(raw)]
            if not layers or len(set(layers)) != len(layers):
                self.fail(f"{f}.layers", "must be distinct ws indices, at least one")
            if max(layers) >= num_ws:
                self.fail("num_ws", f"{num_ws} disagrees with {f}.layers, which names ws index {max(layers)}")
            values = self.list_(self.get(r, "eigenvalues", f), f"{f}.eigenvalues", count)
            if len(values) != count:
                self.fail(f"{f}.eigenvalues", f"has {len(values)} values, directions.count is {count}")
            eig = [self.float_(x, f"{f}.eigenvalues[{j}]", 0.0, 1e9) for j, x in enumerate(values)]
            ranges.append(DirectionRange(name, layers, eig))
        if not ranges:
            self.fail("directions.ranges", "is empty")
        return Directions(file=file, method=method, count=count, ranges=ranges)
