"""The model directory contract between ``styleserve.export`` and ``styleserve.server``.

A model directory holds::

    model.json           this manifest
    mapping.onnx         z [N, z_dim] (+ c [N, c_dim] when conditional) -> w [N, w_dim]
    synthesis.onnx       ws [N, num_ws, w_dim] + one noise input per noise layer
                         -> image [N, C, H, W] float32 in [-1, 1] (unclamped)
                         -> image_uint8 [N, H, W, C] uint8 = clamp(image * 127.5 + 128, 0, 255)
    synthesis_fp16.onnx  optional: the same graph with fp16 convolutions (``--fp16``)
    noise_const.npz      the checkpoint's constant noise planes, one [res, res] array per input

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

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from styleserve.errors import ManifestError

FORMAT_VERSION = 1
MANIFEST_NAME = "model.json"
NOISE_MODES = ("const", "none", "random")


@dataclass(frozen=True)
class NoiseInput:
    name: str  # Graph input name, e.g. "noise_b8_conv0".
    layer: str  # Layer it feeds, e.g. "b8.conv0".
    resolution: int  # The input is [N or 1, 1, resolution, resolution].


@dataclass(frozen=True)
class WsSlot:
    index: int  # Index into ws [N, num_ws, w_dim].
    layers: list[str]  # Layers this w feeds, e.g. ["b4.torgb", "b8.conv0"].
    resolution: int  # Resolution of the first conv layer it feeds (coarse = small).


@dataclass(frozen=True)
class GraphFile:
    file: str
    inputs: list[str]
    outputs: list[str]


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
        def need(key: str, typ: type | tuple[type, ...]) -> Any:
            if key not in d:
                raise ManifestError(f"{where}: missing field {key!r}")
            val = d[key]
            if not isinstance(val, typ) or (isinstance(val, bool) and typ is int):
                raise ManifestError(f"{where}: field {key!r} has the wrong type ({type(val).__name__})")
            return val

        version = need("format_version", int)
        if version != FORMAT_VERSION:
            raise ManifestError(f"{where}: format_version {version} is not supported (need {FORMAT_VERSION})")

        def graph(key: str, optional: bool = False) -> GraphFile | None:
            if optional and d.get(key) is None:
                return None
            g = need(key, dict)
            try:
                return GraphFile(file=str(g["file"]), inputs=list(g["inputs"]), outputs=list(g["outputs"]))
            except (KeyError, TypeError) as exc:
                raise ManifestError(f"{where}: field {key!r} is malformed: {exc}") from exc

        try:
            ws_layers = [
                WsSlot(int(s["index"]), list(s["layers"]), int(s["resolution"])) for s in need("ws_layers", list)
            ]
            noise_inputs = [
                NoiseInput(str(n["name"]), str(n["layer"]), int(n["resolution"])) for n in need("noise_inputs", list)
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: ws_layers/noise_inputs are malformed: {exc}") from exc
        mapping = graph("mapping")
        synthesis = graph("synthesis")
        assert mapping is not None and synthesis is not None
        m = ModelManifest(
            name=need("name", str),
            architecture=need("architecture", str),
            z_dim=need("z_dim", int),
            c_dim=need("c_dim", int),
            w_dim=need("w_dim", int),
            num_ws=need("num_ws", int),
            img_resolution=need("img_resolution", int),
            img_channels=need("img_channels", int),
            w_avg=[float(x) for x in need("w_avg", list)],
            mapping=mapping,
            synthesis=synthesis,
            ws_layers=ws_layers,
            noise_inputs=noise_inputs,
            noise_const_file=str(d.get("noise_const_file", "noise_const.npz")),
            noise_modes=list(d.get("noise_modes", NOISE_MODES)),
            default_noise_mode=str(d.get("default_noise_mode", "const")),
            synthesis_fp16=graph("synthesis_fp16", optional=True),
            truncation=dict(d.get("truncation", {})),
            source=dict(d.get("source", {})),
            versions=dict(d.get("versions", {})),
            verification=dict(d.get("verification", {})),
            format_version=version,
        )
        if len(m.w_avg) != m.w_dim:
            raise ManifestError(f"{where}: w_avg has {len(m.w_avg)} values, w_dim is {m.w_dim}")
        if len(m.ws_layers) != m.num_ws:
            raise ManifestError(f"{where}: ws_layers has {len(m.ws_layers)} entries, num_ws is {m.num_ws}")
        return m

    @staticmethod
    def load(model_dir: Path | str) -> ModelManifest:
        path = Path(model_dir) / MANIFEST_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ManifestError(f"{path}: no manifest") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{path}: cannot read: {exc}") from exc
        if not isinstance(data, dict):
            raise ManifestError(f"{path}: not a JSON object")
        return ModelManifest.from_dict(data, where=str(path))
