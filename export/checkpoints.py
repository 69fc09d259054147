"""Safe checkpoint import: official StyleGAN pickles, rosinality ``.pt`` files, our native format.

Nothing here executes code from a checkpoint: pickles (including the ``data.pkl`` inside
``torch.save`` zips) are read by the restricted unpickler of :mod:`styleserve.export._pickle`, which
builds data from an allow-list and refuses everything else with
:class:`~styleserve.errors.UnsafePickleError`. ``torch.load`` is never called.

Each format is one :class:`~styleserve.export.readers.Reader` (detect, then read into a config plus a
state dict) in the registry :data:`READERS` at the end of this module, tried in that order; ``--kind``
lists :data:`FORMATS`. Formats (``Checkpoint.format``) and how :func:`load_checkpoint` recognises them:

``"stylegan2-ada-pkl"`` / ``"stylegan3-pkl"``
    A plain pickle (first byte ``0x80``) as ``training_loop.py`` writes it: a dict with ``G``,
    ``D``, ``G_ema``, ``augment_pipe``, ``training_set_kwargs``, whose networks are
    ``torch_utils.persistence`` objects. Only ``G_ema`` is read, as a
    :class:`~styleserve.export._pickle.PersistentObject` tree (its embedded class source is never
    executed); ``D``, ``G``, ``augment_pipe`` etc. are only unpickled as inert data. The
    :class:`GeneratorConfig` comes from the module *state* (attributes such as ``architecture``,
    ``conv_clamp``, ``activation``, ``use_noise``, ``bias_gain``) and weight shapes, not from init
    kwargs, whose defaults differ between the two repositories. The format says which repository
    wrote it (stylegan3's ``networks_stylegan2`` has e.g. ``fused_modconv_default``). StyleGAN3
    generators (``SynthesisInput``, layers ``L0_36_512`` ...; configs T and R) are read by
    :mod:`styleserve.export.checkpoints_sg3` into a :class:`~styleserve.export.networks_sg3.GeneratorSG3`
    (format ``"stylegan3-pkl"``); anything else that is not a StyleGAN2 or StyleGAN3 generator raises
    :class:`~styleserve.errors.UnsupportedArchitecture` naming the class.
    A pickle whose top level is a bare persistent ``Generator`` is accepted too. **A dict without
    ``G_ema`` but with ``G`` falls back to ``G``** (the raw training weights, usually worse than the
    EMA ones) and says so in ``Checkpoint.notes``. A missing ``mapping.w_avg`` (``w_avg_beta=None``)
    is estimated as described below.
``"stylegan2-tf-pkl"``
    TensorFlow StyleGAN2 pickles of NVlabs/stylegan2 (``Gs`` built by ``G_main`` with ``G_mapping`` and
    ``G_synthesis_stylegan2``; skip, resnet and orig; conditional ones with their ``LabelConcat``
    mapping), read as data into a StyleGAN2 :class:`GeneratorConfig`. See
    :mod:`styleserve.export.checkpoints_tf2`.
``"stylegan-tf-pkl"``
    TensorFlow StyleGAN (v1) pickles ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects,
    read as data (their ``build_module_src`` is never executed); ``Gs`` becomes a
    :class:`~styleserve.export.networks_v1.GeneratorV1` (``Checkpoint.config`` is then a
    :class:`~styleserve.export.networks_v1.GeneratorConfigV1`). See
    :mod:`styleserve.export.checkpoints_v1`.
``"rosinality-pt"``
    rosinality/stylegan2-pytorch ``torch.save`` files (zip, or the legacy stream of torch < 1.6):
    a dict with ``g_ema`` (a state dict), and possibly ``g``, ``d``, optimiser states, ``args``
    (an ``argparse.Namespace``), ``latent_avg``, ``ada_aug_p``. Its weights are mapped onto ours
    (see :func:`rosinality_to_official` for the exact equivalences). Without ``latent_avg``,
    ``w_avg`` is estimated.
``"rosinality-v1-pt"``
    rosinality/style-based-gan-pytorch ``torch.save`` files (StyleGAN v1): the dict ``train.py`` writes
    at the end of a phase (``g_running`` read, else ``generator``) or a bare ``g_running`` state dict
    (``generator.progression.*``, ``style.*``), read as a
    :class:`~styleserve.export.networks_v1.GeneratorV1` at the highest trained block (or the
    ``resolution`` asked for); a missing mean style is estimated as its ``generate.py`` does. See
    :func:`styleserve.export.checkpoints_v1.from_rosinality_v1`.
``"styleserve"``
    Our own format written by :func:`save_native`: a directory with ``config.json``
    (``GeneratorConfig.to_dict()``) and ``weights.safetensors`` (official key names, float32; the
    config is also stored in the safetensors metadata). Accepted as the directory or the
    ``.safetensors`` file.

``w_avg`` estimation: the mean of the mapping output over 10000 ``z`` drawn by
``np.random.RandomState(0).randn(10000, z_dim)`` (conditional models: class ``i % c_dim`` one-hot
for sample ``i``), recorded in ``Checkpoint.notes``.

Every reader checks the keys and shapes of the state dict it produces against the network its
config describes and raises :class:`~styleserve.errors.CheckpointError` naming the first bad key;
:func:`load_generator_from` then loads it with :func:`styleserve.export.networks.load_generator`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from styleserve.export import networks
from styleserve.export._pickle import (
    LEGACY_PREFIX,
    Namespace,
    NumpyArray,
    PersistentObject,
    WalkBudget,
    check_zip_directory,
    describe,
    load_budget,
    load_torch_legacy,
    load_torch_zip,
    restricted_load,
)
from styleserve.export.checkpoints_sg3 import from_official_sg3, looks_sg3
from styleserve.export.checkpoints_tf2 import READER as TF2_READER
from styleserve.export.checkpoints_v1 import ROSINALITY_V1_READER, TF_READER
from styleserve.export.networks import (
    ACTIVATIONS,
    Generator,
    GeneratorConfig,
    MappingConfig,
    SynthesisConfig,
    check_parameter_count,
    check_state_dict,
    expected_shapes,
    setup_filter,
)
from styleserve.export.networks_sg3 import GeneratorConfigSG3, GeneratorSG3, load_generator_sg3
from styleserve.export.networks_v1 import GeneratorConfigV1, GeneratorV1, load_generator_v1
from styleserve.export.readers import CONTAINERS, Read, Reader, estimate_w_avg
from styleserve.export.readers import finish_stylegan2 as _finish
from torch import Tensor

from styleserve.errors import CheckpointError, UnsupportedArchitecture

__all__ = [
    "FORMATS",
    "READERS",
    "Checkpoint",
    "check_state_dict",
    "estimate_w_avg",
    "load_checkpoint",
    "load_generator_from",
    "rosinality_to_official",
    "save_native",
]


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A checkpoint read into our terms. ``eq=False``: tensors do not compare as booleans."""

    config: GeneratorConfig | GeneratorConfigV1 | GeneratorConfigSG3  # V1: networks_v1; SG3: networks_sg3.
    state_dict: dict[str, Tensor]  # Our key names, float32, ready for load_generator / load_generator_v1.
    format: str  # One of FORMATS.
    source_class: str  # "Generator" (official class name), "rosinality.Generator", ...
    sha256: str  # Of the checkpoint file (of weights.safetensors for the native format).
    notes: tuple[str, ...] = ()
    init_kwargs: dict[str, Any] = field(default_factory=dict)  # Informational, JSON-able.


# ----------------------------------------------------------------------------
# Public entry points.


def load_checkpoint(
    path: str | os.PathLike[str], *, kind: str | None = None, resolution: int | None = None
) -> Checkpoint:
    """Read a checkpoint without executing anything in it; see the module docstring.

    ``kind`` (one of :data:`FORMATS`) overrides the detection of the format. ``resolution`` is only
    for ``rosinality-v1-pt`` files, which do not record how far they were trained.
    """
    if kind is not None and kind not in FORMATS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; expected one of {', '.join(FORMATS)}")
    p = Path(path)
    if resolution is not None and (
        not isinstance(resolution, int)
        or isinstance(resolution, bool)
        or not 4 <= resolution <= networks.MAX_IMG_RESOLUTION
    ):
        raise CheckpointError(
            f"resolution must be an int in [4, {networks.MAX_IMG_RESOLUTION}], got {describe(resolution)}"
        )
    try:
        if kind == "styleserve" or (kind is None and (p.is_dir() or p.suffix == ".safetensors")):
            return _load_native(p)
        if not p.is_file():
            raise CheckpointError(f"no such checkpoint file: {p}")
        with load_budget(p.stat().st_size):
            return _load_file(p, kind, resolution)
    except CheckpointError:
        raise
    except RecursionError as e:
        raise CheckpointError(f"malformed checkpoint {p.name}: nested too deeply") from e
    except MemoryError as e:
        raise CheckpointError(f"malformed checkpoint {p.name}: out of memory") from e
    except (TypeError, KeyError, IndexError, AttributeError, ArithmeticError, UnicodeError) as e:
        msg = " ".join(str(e).split())[:120]
        raise CheckpointError(f"malformed checkpoint {p.name}: {type(e).__name__}: {msg}") from e


def _load_file(p: Path, kind: str | None, resolution: int | None) -> Checkpoint:
    container = _container(p)
    obj = _read_container(p, container)
    sha = _sha256(p)

    if kind is None:
        reader = next((r for r in READERS if container in r.containers and r.detect(obj)), None)
        if reader is None:
            raise CheckpointError(f"unrecognised checkpoint {p.name}: {_describe_top(obj)}")
    else:
        reader = next(r for r in READERS if r.name == kind)
    if resolution is not None and not reader.takes_resolution:
        takers = ", ".join(r.name for r in READERS if r.takes_resolution)
        raise ValueError(f"resolution applies to {takers} checkpoints only, not {reader.name}")
    if container not in reader.containers:
        raise CheckpointError(f"{p.name} is a {CONTAINERS[container]}, not {reader.container_text}")
    if kind is not None and reader.accepts is not None and not reader.accepts(obj):
        raise CheckpointError(f"{p.name} is not {reader.what}: {_describe_top(obj)}")
    r = reader.read(obj, resolution)
    fmt = kind or r.format or reader.name
    return Checkpoint(r.config, r.state_dict, fmt, r.source_class, sha, tuple(r.notes), r.init_kwargs)


def load_generator_from(
    path: str | os.PathLike[str], *, kind: str | None = None, resolution: int | None = None
) -> tuple[Generator | GeneratorV1 | GeneratorSG3, Checkpoint]:
    """:func:`load_checkpoint` + :func:`styleserve.export.networks.load_generator` (eval, no grad);
    StyleGAN (v1) checkpoints give a :class:`~styleserve.export.networks_v1.GeneratorV1`."""
    ckpt = load_checkpoint(path, kind=kind, resolution=resolution)
    if isinstance(ckpt.config, GeneratorConfigV1):
        return load_generator_v1(ckpt.config, ckpt.state_dict), ckpt
    if isinstance(ckpt.config, GeneratorConfigSG3):
        return load_generator_sg3(ckpt.config, ckpt.state_dict), ckpt
    return networks.load_generator(ckpt.config, ckpt.state_dict), ckpt


def save_native(G: Generator, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``G`` in the ``styleserve`` format: ``config.json`` + ``weights.safetensors``."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_dict = G.cfg.to_dict()
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in G.state_dict().items()}
    tmp = out / "weights.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "styleserve", "config": json.dumps(cfg_dict)})
    os.replace(tmp, out / "weights.safetensors")
    (out / "config.json").write_text(json.dumps(cfg_dict, indent=2) + "\n")
    return out


# ----------------------------------------------------------------------------
# Containers.


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _container(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(len(LEGACY_PREFIX))
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(LEGACY_PREFIX):
        return "legacy"
    if head[:1] == b"\x80" or head[:1] in (b"(", b"}", b"]", b"c"):  # Protocol 2+, or 0/1.
        return "pickle"
    raise CheckpointError(f"{path.name} is not a pickle, a torch.save file or a safetensors file")


def _read_container(path: Path, container: str) -> Any:
    if container == "zip":
        try:
            with path.open("rb") as fp:
                check_zip_directory(fp, path.stat().st_size)
                with zipfile.ZipFile(fp) as zf:
                    return load_torch_zip(zf, size_limit=path.stat().st_size)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
            raise CheckpointError(f"{path.name} is a broken zip file: {describe(str(e), 80)}") from e
    with path.open("rb") as f:
        if container == "legacy":
            return load_torch_legacy(f, size_limit=path.stat().st_size)
        return restricted_load(f)


def _describe_top(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = ", ".join(describe(k, 40) for k in list(obj)[:8])
        return f"a dict with keys {keys} (expected G_ema for official pickles, g_ema for rosinality files)"
    return f"a {type(obj).__name__}"


# ----------------------------------------------------------------------------
# Helpers shared by the readers.


def _py(v: Any) -> Any:
    """numpy scalars and arrays from a pickle as Python values."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, NumpyArray):
        return v.value
    return v


def _jsonable(x: Any, walk: WalkBudget | None = None, depth: int = 0) -> Any:
    """``x`` (untrusted, informational) as JSON-able data; counts nodes/depth/characters against ``walk``."""
    if walk is None:
        walk = WalkBudget("init kwargs")
    walk.visit(depth)
    x = _py(x)
    if x is None or isinstance(x, bool):
        return x
    if isinstance(x, int):
        return x if x.bit_length() <= 64 else walk.str_of(x)
    if isinstance(x, str):
        return walk.text(x)
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, np.ndarray):
        if x.size <= 64 and x.dtype != object:
            return _jsonable(x.tolist(), walk, depth + 1)
        return walk.text(f"ndarray{list(x.shape)}")
    if isinstance(x, Mapping):
        return {walk.str_of(k): _jsonable(v, walk, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_jsonable(v, walk, depth + 1) for v in x]
    if isinstance(x, Tensor):
        return walk.text(f"tensor{list(x.shape)}")
    if isinstance(x, PersistentObject):
        return walk.text(f"<persistent {x.class_name}>")
    return walk.str_of(x)


def _taps_from_filter(f: Tensor, where: str) -> tuple[float, ...]:
    """The 1-D taps (first tap 1) of a normalised separable FIR filter buffer (1-D or 2-D)."""
    if f.ndim not in (1, 2) or max(f.shape, default=0) > 64:
        raise UnsupportedArchitecture(f"unsupported architecture: resample filter of shape {tuple(f.shape)} at {where}")
    f = f.detach().to(torch.float64)
    if f.ndim == 1:
        t, full = f, torch.outer(f, f)
    elif f.ndim == 2 and f.shape[0] == f.shape[1]:
        t, full = f.sum(dim=1), f
    else:
        raise UnsupportedArchitecture(f"unsupported architecture: resample filter of shape {tuple(f.shape)} at {where}")
    if t.numel() == 0 or not torch.isfinite(t).all() or float(t.abs().max()) == 0.0 or float(full.sum()) == 0.0:
        raise CheckpointError(f"degenerate resample filter at {where}")
    ref = t[0] if float(t[0]) != 0.0 else t.abs().max()
    taps = tuple(round(float(v), 9) for v in t / ref)
    if not torch.allclose(setup_filter(taps).to(torch.float64), full / full.sum(), atol=1e-6):
        raise UnsupportedArchitecture(f"unsupported architecture: non-separable resample filter at {where}")
    return taps


# ----------------------------------------------------------------------------
# Official pickles.

_BLOCK_RE = re.compile(r"^b(\d+)$")
_FC_RE = re.compile(r"^(embed|fc\d+)$")
_SG3_LAYER_RE = re.compile(r"^L\d+_\d+_\d+$")
_CHILD_CLASSES: dict[str, dict[str, str]] = {
    "Generator": {"synthesis": "SynthesisNetwork", "mapping": "MappingNetwork"},
    "SynthesisBlock": {
        "conv0": "SynthesisLayer",
        "conv1": "SynthesisLayer",
        "torgb": "ToRGBLayer",
        "skip": "Conv2dLayer",
    },
    "SynthesisLayer": {"affine": "FullyConnectedLayer"},
    "ToRGBLayer": {"affine": "FullyConnectedLayer"},
    "Conv2dLayer": {},
    "FullyConnectedLayer": {},
}


def _state_map(rec: PersistentObject, name: str) -> dict[str, Any]:
    m = rec.state.get(name)
    if m is None:
        return {}
    if not isinstance(m, Mapping):
        raise CheckpointError(f"malformed {rec.class_name}: {name} is a {type(m).__name__}")
    return {str(k): v for k, v in m.items() if v is not None}


def _modules(rec: PersistentObject) -> dict[str, Any]:
    return _state_map(rec, "_modules")


def _tensor(rec: PersistentObject, name: str) -> Tensor | None:
    for where in ("_parameters", "_buffers"):
        t = _state_map(rec, where).get(name)
        if t is not None:
            if not isinstance(t, Tensor):
                raise CheckpointError(f"malformed {rec.class_name}: {name} is a {type(t).__name__}")
            return t
    return None


def _need_tensor(rec: PersistentObject, name: str, path: str) -> Tensor:
    t = _tensor(rec, name)
    if t is None:
        raise CheckpointError(f"checkpoint is missing key {f'{path}.{name}'!r}")
    return t


def _attr(rec: PersistentObject, name: str, default: Any = None) -> Any:
    """A plain attribute of a module's state: None, a bool, an int, a float or a short str, else CheckpointError."""
    v = _py(rec.state.get(name, default))
    if not (v is None or isinstance(v, (bool, int, float, str))) or (isinstance(v, str) and len(v) > 64):
        raise CheckpointError(f"malformed {describe(rec.class_name)}: attribute {name} is {describe(v)}")
    return v


def _attr_int(rec: PersistentObject, name: str, default: Any = None) -> int:
    v = _attr(rec, name, default)
    if not isinstance(v, int) or isinstance(v, bool) or v.bit_length() > 62:
        raise CheckpointError(f"malformed {describe(rec.class_name)}: {name} must be an int, got {describe(v)}")
    return v


def _attr_float(rec: PersistentObject, name: str, default: Any = None) -> float:
    v = _attr(rec, name, default)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise CheckpointError(
            f"malformed {describe(rec.class_name)}: {name} must be a finite number, got {describe(v)}"
        )
    return float(v)


def _attr_opt_float(rec: PersistentObject, name: str) -> float | None:
    return None if _attr(rec, name) is None else _attr_float(rec, name)


def _attr_str(rec: PersistentObject, name: str, default: str) -> str:
    v = _attr(rec, name, default)
    if not isinstance(v, str):
        raise CheckpointError(f"malformed {describe(rec.class_name)}: {name} must be a string, got {describe(v)}")
    return v


def _attr_bool(rec: PersistentObject, name: str, default: bool) -> bool:
    v = _attr(rec, name, default)
    if not isinstance(v, bool):
        raise CheckpointError(f"malformed {describe(rec.class_name)}: {name} must be a bool, got {describe(v)}")
    return v


def _check_classes(rec: PersistentObject, path: str) -> None:
    """Refuse anything that is not the StyleGAN2 generator, naming the offending class."""
    children = _modules(rec)
    if rec.class_name == "SynthesisNetwork":
        sg3 = [n for n, c in children.items() if n == "input" or _SG3_LAYER_RE.match(n)
               or (isinstance(c, PersistentObject) and c.class_name == "SynthesisInput")]  # fmt: skip
        if sg3:
            layers = [n for n in children if _SG3_LAYER_RE.match(n)]
            shown = ", ".join(layers[:3]) + (", ..." if len(layers) > 3 else "")
            raise UnsupportedArchitecture(
                f"unsupported architecture: StyleGAN3 (SynthesisNetwork with SynthesisInput; layers {shown}) "
                f"at {path}; only StyleGAN2 generators are supported"
            )
        expected = {n: "SynthesisBlock" for n in children if _BLOCK_RE.match(n)}
    elif rec.class_name == "MappingNetwork":
        expected = {n: "FullyConnectedLayer" for n in children if _FC_RE.match(n)}
    elif rec.class_name in _CHILD_CLASSES:
        expected = _CHILD_CLASSES[rec.class_name]
    else:
        raise UnsupportedArchitecture(f"unsupported architecture: class {rec.class_name!r} at {path}")
    for name, child in children.items():
        child_path = f"{path}.{name}"
        if not isinstance(child, PersistentObject):
            raise UnsupportedArchitecture(
                f"unsupported architecture: {child_path} is a {type(child).__name__}, not a StyleGAN2 module"
            )
        if name not in expected or child.class_name != expected[name]:
            raise UnsupportedArchitecture(
                f"unsupported architecture: unexpected {child.class_name!r} module {child_path!r} in {rec.class_name}"
            )
        _check_classes(child, child_path)


def _flatten(rec: PersistentObject, prefix: str, out: dict[str, Tensor]) -> None:
    """Parameters, persistent buffers, then submodules, as ``nn.Module.state_dict`` orders them."""
    non_persistent = rec.state.get("_non_persistent_buffers_set")
    if not isinstance(non_persistent, (set, frozenset, list, tuple)):
        non_persistent = set()
    for where in ("_parameters", "_buffers"):
        for name, t in _state_map(rec, where).items():
            if where == "_buffers" and name in non_persistent:
                continue
            if not isinstance(t, Tensor):
                raise CheckpointError(f"{prefix}{name!s} is a {type(t).__name__}, not a tensor")
            out[prefix + name] = t
    for name, child in _modules(rec).items():
        _flatten(child, f"{prefix}{name}.", out)


def _one(values: list[Any], what: str) -> Any:
    distinct: list[Any] = []
    for v in values:
        if v not in distinct:
            distinct.append(v)
    if len(distinct) != 1:
        shown = ", ".join(describe(v, 30) for v in distinct[:4]) + (", ..." if len(distinct) > 4 else "")
        raise UnsupportedArchitecture(f"unsupported architecture: {what} differs between layers ({shown})")
    return distinct[0]


def _official_config(G: PersistentObject) -> GeneratorConfig:
    syn, mapping = _modules(G)["synthesis"], _modules(G)["mapping"]
    blocks = sorted(((int(m.group(1)), c) for n, c in _modules(syn).items() if (m := _BLOCK_RE.match(n))),
                    key=lambda rc: rc[0])  # fmt: skip
    if not blocks:
        raise CheckpointError("G_ema.synthesis has no blocks")
    img_resolution = _attr_int(G, "img_resolution", blocks[-1][0])
    if not 4 <= img_resolution <= networks.MAX_IMG_RESOLUTION:
        raise CheckpointError(f"img_resolution {img_resolution} is out of range [4, {networks.MAX_IMG_RESOLUTION}]")
    expected_res = [2**i for i in range(2, int(np.log2(max(img_resolution, 4))) + 1)]
    if [r for r, _ in blocks] != expected_res:
        raise CheckpointError(f"synthesis blocks {[r for r, _ in blocks]} do not match img_resolution {img_resolution}")

    channels: list[int] = []
    kernels: list[int] = []
    archs: list[str] = []
    clamps: list[Any] = []
    acts: list[str] = []
    noise: list[bool] = []
    filters: list[tuple[float, ...]] = []
    prev = 0
    for res, block in blocks:
        path = f"synthesis.b{res}"
        layers = {n: c for n, c in _modules(block).items() if n in ("conv0", "conv1")}
        if "conv1" not in layers or (res > 4) != ("conv0" in layers):
            raise CheckpointError(f"checkpoint is missing key {f'{path}.conv{0 if res > 4 else 1}.weight'!r}")
        w1 = _need_tensor(layers["conv1"], "weight", f"{path}.conv1")
        if w1.ndim != 4:
            raise CheckpointError(f"{path}.conv1.weight has shape {tuple(w1.shape)}")
        out_ch = int(w1.shape[0])
        in_ch = _attr_int(block, "in_channels", prev if res > 4 else 0)
        if in_ch != (prev if res > 4 else 0):
            raise UnsupportedArchitecture(
                f"unsupported architecture: {path} takes {in_ch} channels but the previous block gives {prev}"
            )
        channels.append(out_ch)
        prev = out_ch
        modules = _modules(block)
        default_arch = (
            "resnet" if "skip" in modules else ("skip" if "torgb" in modules and res < img_resolution else "orig")
        )
        archs.append(_attr_str(block, "architecture", default_arch))
        f = _tensor(block, "resample_filter")
        if f is not None:
            filters.append(_taps_from_filter(f, f"{path}.resample_filter"))
        for name, layer in layers.items():
            w = _need_tensor(layer, "weight", f"{path}.{name}")
            kernels.append(int(w.shape[-1]))
            clamps.append(_attr_opt_float(layer, "conv_clamp"))
            acts.append(_attr_str(layer, "activation", "lrelu"))
            has_noise = _tensor(layer, "noise_const") is not None
            noise.append(_attr_bool(layer, "use_noise", has_noise))
            up = _attr_int(layer, "up", 2 if name == "conv0" else 1)
            if up != (2 if name == "conv0" else 1):
                raise UnsupportedArchitecture(f"unsupported architecture: {path}.{name} has up={up}")
            lf = _tensor(layer, "resample_filter")
            if lf is not None:
                filters.append(_taps_from_filter(lf, f"{path}.{name}.resample_filter"))
        if "torgb" in modules:
            torgb = modules["torgb"]
            clamps.append(_attr_opt_float(torgb, "conv_clamp"))
            tw = _need_tensor(torgb, "weight", f"{path}.torgb")
            if tw.ndim != 4 or tw.shape[-1] != 1 or tw.shape[-2] != 1:
                raise UnsupportedArchitecture(f"unsupported architecture: {path}.torgb kernel {tuple(tw.shape)}")
    last_torgb = _modules(blocks[-1][1]).get("torgb")
    if last_torgb is None:
        raise CheckpointError(f"checkpoint is missing key {f'synthesis.b{img_resolution}.torgb.weight'!r}")
    img_channels = int(_need_tensor(last_torgb, "weight", f"synthesis.b{img_resolution}.torgb").shape[0])

    clamp = _one(clamps, "conv_clamp")
    activation = _one(acts, "activation")
    if activation not in ACTIVATIONS:
        raise UnsupportedArchitecture(f"unsupported architecture: activation {activation!r}")
    synthesis = SynthesisConfig(
        w_dim=_attr_int(G, "w_dim", _attr(syn, "w_dim")),
        img_resolution=img_resolution,
        img_channels=img_channels,
        channels=tuple(channels),
        architecture=_one(archs, "architecture"),
        conv_clamp=None if clamp is None else float(clamp),
        resample_filter=_one(filters, "resample filter") if filters else (1.0, 3.0, 3.0, 1.0),
        use_noise=_one(noise, "use_noise"),
        activation=activation,
        kernel_size=_one(kernels, "kernel size"),
    )

    fcs = {n: c for n, c in _modules(mapping).items() if n.startswith("fc")}
    num_layers = _attr_int(mapping, "num_layers", len(fcs))
    if sorted(fcs) != sorted(f"fc{i}" for i in range(num_layers)):
        raise CheckpointError(f"mapping has layers {sorted(fcs)}, expected fc0..fc{num_layers - 1}")
    z_dim = _attr_int(G, "z_dim", _attr(mapping, "z_dim"))
    c_dim = _attr_int(G, "c_dim", _attr(mapping, "c_dim", 0))
    w_dim = synthesis.w_dim
    embed_features = 0
    if c_dim > 0:
        embed = _modules(mapping).get("embed")
        if embed is None:
            raise CheckpointError("checkpoint is missing key 'mapping.embed.weight'")
        embed_features = int(_need_tensor(embed, "weight", "mapping.embed").shape[0])
    layer_features = int(_need_tensor(fcs["fc0"], "weight", "mapping.fc0").shape[0]) if num_layers > 1 else 0
    lr = _one([_attr_float(fc, "bias_gain", 1.0) for fc in fcs.values()], "mapping lr_multiplier")
    for name, fc in fcs.items():
        w = _need_tensor(fc, "weight", f"mapping.{name}")
        gain = _attr_opt_float(fc, "weight_gain")
        if gain is not None and w.ndim == 2 and not math.isclose(float(gain), lr / math.sqrt(w.shape[1]), rel_tol=1e-5):
            raise UnsupportedArchitecture(f"unsupported architecture: mapping.{name} weight_gain {gain} != lr/sqrt(in)")
    mapping_cfg = MappingConfig(
        z_dim=z_dim,
        c_dim=c_dim,
        w_dim=w_dim,
        num_ws=synthesis.num_ws,
        num_layers=num_layers,
        embed_features=0 if embed_features == w_dim else embed_features,
        layer_features=0 if layer_features in (0, w_dim) else layer_features,
        activation=_one([_attr_str(fc, "activation", "lrelu") for fc in fcs.values()], "mapping activation"),
        lr_multiplier=lr,
    )
    for rec, what in ((G, "G_ema"), (mapping, "G_ema.mapping"), (syn, "G_ema.synthesis")):
        num_ws = None if _attr(rec, "num_ws") is None else _attr_int(rec, "num_ws")
        if num_ws is not None and num_ws != synthesis.num_ws:
            raise CheckpointError(f"{what}.num_ws is {num_ws}, the synthesis network has {synthesis.num_ws} ws")
    return GeneratorConfig(mapping=mapping_cfg, synthesis=synthesis)


def _from_official(
    obj: Any,
) -> tuple[GeneratorConfig | GeneratorConfigSG3, dict[str, Tensor], str, str, list[str], dict[str, Any]]:
    notes: list[str] = []
    if isinstance(obj, PersistentObject):
        G, which = obj, "a bare persistent generator"
    elif isinstance(obj, Mapping) and isinstance(obj.get("G_ema"), PersistentObject):
        G, which = obj["G_ema"], "G_ema"
    elif isinstance(obj, Mapping) and isinstance(obj.get("G"), PersistentObject):
        G, which = obj["G"], "G"
        notes.append("the pickle has no G_ema: using G, the raw training generator (not the EMA weights)")
    else:
        raise CheckpointError(f"not an official StyleGAN pickle: {_describe_top(obj)}")
    if G.class_name != "Generator":
        raise UnsupportedArchitecture(
            f"unsupported architecture: {which} is a {G.class_name!r}, not a StyleGAN2 Generator"
        )
    if looks_sg3(G):  # networks_stylegan3.Generator: see checkpoints_sg3.
        name = "G_ema" if which != "G" else "G"
        cfg3, state3, kwargs3 = from_official_sg3(G, name, notes)
        notes.insert(0, f"read {which} (Generator) from a stylegan3 pickle; embedded class source was not executed")
        ignored3 = sorted(str(k) for k in obj if k != which) if isinstance(obj, Mapping) else []
        if ignored3:
            notes.append(f"ignored entries: {', '.join(ignored3)}")
        kwargs3 = _jsonable(kwargs3, WalkBudget(f"{which} init kwargs"))
        return cfg3, state3, "stylegan3-pkl", G.class_name, notes, kwargs3
    _check_classes(G, "G_ema" if which != "G" else "G")
    mods = _modules(G)
    if "synthesis" not in mods or "mapping" not in mods:
        raise UnsupportedArchitecture("unsupported architecture: Generator without synthesis and mapping networks")
    try:
        cfg = _official_config(G)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError) as e:
        raise CheckpointError(f"cannot derive the generator config from {which}: {describe(str(e), 200)}") from e
    check_parameter_count(expected_shapes(cfg), f"official pickle ({which})")

    syn = mods["synthesis"]
    blocks = [c for n, c in _modules(syn).items() if _BLOCK_RE.match(n)]
    raw_kwargs = G.state.get("_init_kwargs")
    init_kwargs: dict[str, Any] = dict(raw_kwargs) if isinstance(raw_kwargs, Mapping) else {}
    sg3_repo = (
        any("fused_modconv_default" in b.state for b in blocks)
        or "num_fp16_res" in syn.state
        or ("synthesis_kwargs" not in init_kwargs and "channel_base" in init_kwargs)
    )
    fmt = "stylegan3-pkl" if sg3_repo else "stylegan2-ada-pkl"

    raw: dict[str, Tensor] = {}
    _flatten(G, "", raw)
    state: dict[str, Tensor] = {}
    for key, t in raw.items():
        if key.endswith("resample_filter") and t.ndim == 1:  # Separable filters (>= 8 taps) stay 1-D.
            t = torch.outer(t, t)
        state[key] = t
    repo = "stylegan3" if sg3_repo else "stylegan2-ada-pytorch"
    ignored = sorted(str(k) for k in obj if k != which) if isinstance(obj, Mapping) else []
    notes.insert(0, f"read {which} ({G.class_name}) from a {repo} pickle; embedded class source code was not executed")
    if ignored:
        notes.append(f"ignored entries: {', '.join(ignored)}")
    state = _finish(cfg, state, "checkpoint", notes)
    walk = WalkBudget(f"{which} init kwargs")
    kwargs = _jsonable(init_kwargs, walk)
    init_args = G.state.get("_init_args")
    if isinstance(init_args, (tuple, list)) and init_args:
        kwargs["_init_args"] = _jsonable(init_args, walk)
    return cfg, state, fmt, G.class_name, notes, kwargs


# ----------------------------------------------------------------------------
# rosinality/stylegan2-pytorch.

_ROSINALITY_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def _looks_rosinality(obj: Any) -> bool:
    if not isinstance(obj, Mapping):
        return False
    if isinstance(obj.get("g_ema"), Mapping):
        return True
    return "style.1.weight" in obj and "input.input" in obj


def _from_rosinality(obj: Any) -> tuple[GeneratorConfig, dict[str, Tensor], list[str], dict[str, Any]]:
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
    return cfg, state, notes, init_kwargs


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
    check_parameter_count(expected_shapes(cfg), "rosinality checkpoint")

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


# ----------------------------------------------------------------------------
# The native format.


MAX_CONFIG_BYTES = 1 << 20
"""A ``config.json`` (or the config in the safetensors metadata) larger than this is refused unread."""


def _native_config(text: str, where: str) -> GeneratorConfig:
    if len(text) > MAX_CONFIG_BYTES:
        raise CheckpointError(f"bad generator config in {where}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return GeneratorConfig.from_dict(json.loads(text))
    except RecursionError as e:
        raise CheckpointError(f"bad generator config in {where}: nested too deeply") from e
    except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as e:
        raise CheckpointError(f"bad generator config in {where}: {describe(str(e), 200)}") from e


def _load_native(p: Path) -> Checkpoint:
    """config.json first (validated, parameter count checked), then the tensors' shapes, then the data."""
    from safetensors import safe_open

    weights = p / "weights.safetensors" if p.is_dir() else p
    cfg_path = weights.with_name("config.json")
    if not weights.is_file():
        raise CheckpointError(f"no weights.safetensors at {p}")
    try:
        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
            if cfg_path.is_file():
                if cfg_path.stat().st_size > MAX_CONFIG_BYTES:
                    raise CheckpointError(
                        f"bad generator config in {cfg_path.name}: larger than {MAX_CONFIG_BYTES} bytes"
                    )
                cfg = _native_config(cfg_path.read_text(), str(cfg_path.name))
            elif "config" in meta:
                cfg = _native_config(meta["config"], f"{weights.name} metadata")
            else:
                raise CheckpointError(f"no config.json next to {weights.name} and none in its metadata")
            check_parameter_count(expected_shapes(cfg), weights.name)
            expected = expected_shapes(cfg)
            keys = list(f.keys())
            for k in keys:
                if k not in expected and k != "mapping.w_avg":
                    raise CheckpointError(f"{weights.name} has unexpected key {describe(k)}")
                shape = tuple(f.get_slice(k).get_shape())
                if k in expected and shape != expected[k]:
                    raise CheckpointError(f"{weights.name}: {k!r} has shape {shape}, the config needs {expected[k]}")
            state = {k: f.get_tensor(k) for k in keys}
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"cannot read {weights.name}: {describe(str(e), 200)}") from e
    notes: list[str] = []
    state = _finish(cfg, state, weights.name, notes)
    return Checkpoint(cfg, state, "styleserve", "styleserve.Generator", _sha256(weights), tuple(notes), {})


# ----------------------------------------------------------------------------
# The registry: one Reader per checkpoint format (see styleserve.export.readers), in detection order. A new
# format is a new Reader here; --kind lists FORMATS.


def _looks_official(obj: Any) -> bool:
    return isinstance(obj, PersistentObject) or (
        isinstance(obj, Mapping) and any(isinstance(obj.get(k), PersistentObject) for k in ("G_ema", "G"))
    )


def _read_official(obj: Any, resolution: int | None) -> Read:
    cfg, state, fmt, source_class, notes, init_kwargs = _from_official(obj)
    return Read(cfg, state, source_class, notes, init_kwargs, format=fmt)  # stylegan2-ada-pkl or stylegan3-pkl.


def _read_rosinality(obj: Any, resolution: int | None) -> Read:
    cfg, state, notes, init_kwargs = _from_rosinality(obj)
    return Read(cfg, state, "rosinality.Generator", notes, init_kwargs)


READERS: tuple[Reader, ...] = (
    ROSINALITY_V1_READER,  # checkpoints_v1
    Reader(
        name="rosinality-pt",
        summary="rosinality stylegan2-pytorch .pt (g_ema)",
        detect=_looks_rosinality,
        read=_read_rosinality,
        containers=("zip", "legacy"),
        container_text="a torch.save file as rosinality writes",
    ),
    TF2_READER,  # checkpoints_tf2
    TF_READER,  # checkpoints_v1
    Reader(
        name="stylegan2-ada-pkl",
        summary="official NVlabs stylegan2-ada-pytorch / stylegan3 .pkl (G_ema; StyleGAN2 or StyleGAN3 by content)",
        detect=_looks_official,
        read=_read_official,
    ),
    Reader(
        name="stylegan3-pkl",
        summary="official NVlabs stylegan3 .pkl (read as stylegan2-ada-pkl; recorded under this name)",
        detect=_looks_official,
        read=_read_official,
    ),
)
NATIVE_SUMMARY = "the styleserve format: a directory with config.json + weights.safetensors (or the file)"
FORMATS: tuple[str, ...] = (*(r.name for r in READERS), "styleserve")
FORMAT_SUMMARIES: dict[str, str] = {**{r.name: r.summary for r in READERS}, "styleserve": NATIVE_SUMMARY}
