"""The one small interface every checkpoint reader implements, and what the StyleGAN2 readers share.

A checkpoint format is one :class:`Reader`: a ``name`` (what ``styleserve-export --kind`` lists and
``Checkpoint.format`` records), the containers it comes in, ``detect`` (is this unpickled object
mine?) and ``read`` (object -> :class:`Read`: a config plus a state dict with our key names). The
registry, in detection order, is :data:`styleserve.export.checkpoints.READERS`; a new format is a new
``Reader`` there. Files are opened and unpickled once, before any reader runs, by
:mod:`styleserve.export.checkpoints` through the allow-list unpickler :mod:`styleserve.export._pickle`
(the only unpickler any reader sees); the native format (a directory, no pickle) is read there too.

Each reader has its own module, ``checkpoints_<format>.py``, which imports what it shares with the
other readers from here (``finish_stylegan2``, ``estimate_w_avg``, ``_describe_top``, ``_py``,
``_jsonable``, ``_taps_from_filter``) and never from :mod:`styleserve.export.checkpoints`, which imports
the readers: that keeps the imports free of cycles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from styleserve.errors import CheckpointError, UnsupportedArchitecture

from ._pickle import NumpyArray, PersistentObject, WalkBudget, describe
from .networks import (
    W_AVG_SAMPLES,
    W_AVG_SEED,
    GeneratorConfig,
    MappingNetwork,
    check_parameter_count,
    check_state_dict,
    expected_shapes,
    load_mapping,
    mean_w,
    setup_filter,
)
from .networks_sg3 import GeneratorConfigSG3
from .networks_v1 import GeneratorConfigV1

__all__ = ["CONTAINERS", "Read", "Reader", "estimate_w_avg", "finish_stylegan2"]

CONTAINERS = {"pickle": "plain pickle", "zip": "torch.save zip file", "legacy": "legacy torch.save file"}
"""File containers (see ``checkpoints._container``) and how messages name them."""


class Read(NamedTuple):
    """What a reader makes of a checkpoint."""

    config: GeneratorConfig | GeneratorConfigV1 | GeneratorConfigSG3
    state_dict: dict[str, Tensor]  # Our key names, float32, checked against ``config``.
    source_class: str  # "G_main", "rosinality.Generator", ...
    notes: list[str]
    init_kwargs: dict[str, Any]  # Informational, JSON-able.
    format: str | None = None  # When one reader serves several names (stylegan2-ada-pkl / stylegan3-pkl).


@dataclass(frozen=True)
class Reader:
    """One checkpoint format."""

    name: str  # The format: --kind value and Checkpoint.format.
    summary: str  # One line for --kind's help.
    detect: Callable[[Any], bool]  # On the unpickled object; tried in registry order.
    read: Callable[[Any, int | None], Read]  # (object, resolution) -> Read; CheckpointError when malformed.
    containers: tuple[str, ...] = ("pickle", "zip", "legacy")  # Keys of CONTAINERS it comes in.
    container_text: str = "a pickle"  # "... is a plain pickle, not <container_text>" for a forced --kind.
    accepts: Callable[[Any], bool] | None = None  # With a forced --kind, the object must pass this first.
    what: str = ""  # "a TensorFlow StyleGAN pickle": "... is not <what>: <what it is>".
    takes_resolution: bool = False  # Whether --resolution applies.


def estimate_w_avg(
    cfg: GeneratorConfig, state: Mapping[str, Tensor], num_samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED
) -> Tensor:
    """Mean mapping output over ``RandomState(seed).randn(num_samples, z_dim)``. ``# [w_dim]``

    Conditional models use class ``i % c_dim`` for sample ``i``. ``state`` needs the ``mapping.*``
    weights (``mapping.w_avg`` is ignored).
    """
    return mean_w(load_mapping(MappingNetwork(cfg.mapping), state, cfg.w_dim), cfg.z_dim, cfg.c_dim, num_samples, seed)


def finish_stylegan2(
    cfg: GeneratorConfig, state: dict[str, Tensor], source: str, notes: list[str]
) -> dict[str, Tensor]:
    """Check keys and shapes, convert to float32, fill a missing ``mapping.w_avg`` (StyleGAN2 readers).

    Shapes are checked before any tensor is materialised, so a forged view cannot allocate more
    than the config's parameters.
    """
    check_parameter_count(expected_shapes(cfg), source)
    estimate = "mapping.w_avg" not in state
    probe = dict(state)
    if estimate:
        probe["mapping.w_avg"] = torch.zeros([cfg.w_dim])
    check_state_dict(cfg, probe, source)
    out = {k: v.detach().to(torch.float32).contiguous() for k, v in state.items()}
    for key, t in out.items():  # Before the estimate below runs the mapping on them.
        if not torch.isfinite(t).all():
            raise CheckpointError(f"{source}: {key!r} holds NaN or Inf")
    if estimate:
        out["mapping.w_avg"] = estimate_w_avg(cfg, out)
        cond = f", class i % {cfg.c_dim} for sample i" if cfg.c_dim > 0 else ""
        notes.append(
            f"w_avg estimated from {W_AVG_SAMPLES} mapping samples (numpy seed {W_AVG_SEED}: "
            f"RandomState({W_AVG_SEED}).randn({W_AVG_SAMPLES}, {cfg.z_dim}){cond})"
        )
    for key, t in out.items():
        if not torch.isfinite(t).all():
            raise CheckpointError(f"{source}: {key!r} holds NaN or Inf")
    return {k: out[k] for k in expected_shapes(cfg)}  # The official state-dict order.


# ----------------------------------------------------------------------------
# Helpers shared by several readers (checkpoints, checkpoints_official, checkpoints_rosinality).


def _describe_top(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = ", ".join(describe(k, 40) for k in list(obj)[:8])
        return f"a dict with keys {keys} (expected G_ema for official pickles, g_ema for rosinality files)"
    return f"a {type(obj).__name__}"


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
