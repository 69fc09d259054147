"""Safe checkpoint import: official StyleGAN pickles, rosinality ``.pt`` files, our native format.

Nothing here executes code from a checkpoint: pickles (including the ``data.pkl`` inside
``torch.save`` zips) are read by the restricted unpickler of :mod:`styleserve.export._pickle`, which
builds data from an allow-list and refuses everything else with
:class:`~styleserve.errors.UnsafePickleError`. ``torch.load`` is never called.

This module is the entry point: it opens a file, tells its container apart (:func:`_container`),
unpickles it once, and hands the object to the readers; it also holds :func:`load_checkpoint`,
:func:`load_generator_from`, :func:`save_native` and the native-format reader. Each format is one
:class:`~styleserve.export.readers.Reader` (detect, then read into a config plus a state dict) in the
registry :data:`READERS` at the end of this module, tried in that order; ``--kind`` lists
:data:`FORMATS`. Each reader lives in its own module, ``checkpoints_<format>.py``
(:mod:`~styleserve.export.checkpoints_official`, :mod:`~styleserve.export.checkpoints_rosinality`,
:mod:`~styleserve.export.checkpoints_tf2`, :mod:`~styleserve.export.checkpoints_v1`, with
:mod:`~styleserve.export.checkpoints_sg3` behind the official reader); helpers several readers share are
in :mod:`styleserve.export.readers`. A new format is a new module whose ``Reader`` is added to
:data:`READERS`; it imports from ``readers``, never from this module (which imports it). Formats
(``Checkpoint.format``) and how :func:`load_checkpoint` recognises them:

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
    is estimated as described below. See :mod:`styleserve.export.checkpoints_official`.
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
    (see :func:`~styleserve.export.checkpoints_rosinality.rosinality_to_official`, also importable from
    here, for the exact equivalences). Without ``latent_avg``, ``w_avg`` is estimated. See
    :mod:`styleserve.export.checkpoints_rosinality`.
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
    ``.safetensors`` file. Read in this module (:func:`_load_native`): no pickle, so no ``Reader``.

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
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from styleserve.export import networks
from styleserve.export._pickle import (
    LEGACY_PREFIX,
    check_zip_directory,
    describe,
    load_budget,
    load_torch_legacy,
    load_torch_zip,
    restricted_load,
)
from styleserve.export.checkpoints_official import OFFICIAL_READER, SG3_PKL_READER
from styleserve.export.checkpoints_rosinality import ROSINALITY_READER
from styleserve.export.checkpoints_rosinality import rosinality_to_official as rosinality_to_official
from styleserve.export.checkpoints_tf2 import READER as TF2_READER
from styleserve.export.checkpoints_v1 import ROSINALITY_V1_READER, TF_READER
from styleserve.export.networks import (
    Generator,
    GeneratorConfig,
    check_parameter_count,
    check_state_dict,
    expected_shapes,
)
from styleserve.export.networks_sg3 import GeneratorConfigSG3, GeneratorSG3, load_generator_sg3
from styleserve.export.networks_v1 import GeneratorConfigV1, GeneratorV1, load_generator_v1
from styleserve.export.readers import CONTAINERS, Reader, _describe_top, estimate_w_avg
from styleserve.export.readers import _jsonable as _jsonable  # Re-exported: tests/export/test_hostile_checkpoints.py.
from styleserve.export.readers import finish_stylegan2 as _finish
from torch import Tensor

from styleserve.errors import CheckpointError

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

READERS: tuple[Reader, ...] = (
    ROSINALITY_V1_READER,  # checkpoints_v1
    ROSINALITY_READER,  # checkpoints_rosinality
    TF2_READER,  # checkpoints_tf2
    TF_READER,  # checkpoints_v1
    OFFICIAL_READER,  # checkpoints_official
    SG3_PKL_READER,  # checkpoints_official, the same reader recorded under this name
)
NATIVE_SUMMARY = "the styleserve format: a directory with config.json + weights.safetensors (or the file)"
FORMATS: tuple[str, ...] = (*(r.name for r in READERS), "styleserve")
FORMAT_SUMMARIES: dict[str, str] = {**{r.name: r.summary for r in READERS}, "styleserve": NATIVE_SUMMARY}
