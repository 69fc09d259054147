"""Official NVlabs stylegan3 ``.pkl`` snapshots (``networks_stylegan3.Generator``, configs T and R), read as data.

:func:`looks_sg3` tells a StyleGAN3 generator record from a StyleGAN2 one (a ``SynthesisNetwork`` with an
``input`` ``SynthesisInput`` and ``L<idx>_<size>_<channels>`` layers); :func:`from_official_sg3` reads it.
The pickle has already been read by the allow-list unpickler (:mod:`styleserve.export._pickle`): every
network is a :class:`~styleserve.export._pickle.PersistentObject` whose embedded class source was never
executed. From it:

* the config comes from the ``Generator``'s ``_init_kwargs`` (what ``train.py`` passed: ``channel_base``,
  ``num_layers``, ``margin_size``, ``conv_kernel``, ``use_radial_filters``, ``mapping_kwargs``, ...) through
  :func:`~styleserve.export.networks_sg3.config_from_official`, so other layer counts, margins, kernel and
  filter sizes work as the official code builds them;
* that config is checked against the pickled module *state*: the layer names (``L0_36_512`` ...), each
  layer's sizes, sampling rates, up/down factors, taps, padding and kernel, the input's size and sampling
  rate, ``num_ws``: anything that differs is refused with
  :class:`~styleserve.errors.UnsupportedArchitecture` naming the attribute, both values and the module;
* the module classes must be the official ones (``Generator`` -> ``SynthesisNetwork`` (``SynthesisInput``,
  ``SynthesisLayer`` s) and ``MappingNetwork``, each with ``FullyConnectedLayer`` children); another class
  is refused naming it and its path;
* parameters and persistent buffers are collected under their official names (a walk bounded by a
  :class:`~styleserve.export._pickle.WalkBudget`), then every key, shape and dtype is checked before any
  tensor is converted (:func:`~styleserve.export.networks_sg3.check_state_dict_sg3`).

A missing ``mapping.w_avg`` (``w_avg_beta=None``) is estimated as for StyleGAN2 (mean mapping output of
``RandomState(0).randn(10000, z_dim)``) and said so in the notes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from styleserve.errors import CheckpointError, UnsupportedArchitecture

from ._pickle import NumpyArray, PersistentObject, WalkBudget, describe
from .networks import W_AVG_SAMPLES, W_AVG_SEED, MappingNetwork, load_mapping, mean_w
from .networks_sg3 import GeneratorConfigSG3, check_state_dict_sg3, config_from_official, expected_shapes_sg3

__all__ = ["from_official_sg3", "looks_sg3"]

SG3_LAYER_RE = re.compile(r"^L(\d+)_(\d+)_(\d+)$")
_FC_RE = re.compile(r"^(embed|fc\d+)$")
# Official class of each child module, by parent class and child name (layer names are matched by pattern).
_CHILDREN: dict[str, dict[str, str]] = {
    "Generator": {"synthesis": "SynthesisNetwork", "mapping": "MappingNetwork"},
    "SynthesisInput": {"affine": "FullyConnectedLayer"},
    "SynthesisLayer": {"affine": "FullyConnectedLayer"},
    "FullyConnectedLayer": {},
}


def looks_sg3(G: Any) -> bool:
    """True for a persistent ``Generator`` record whose synthesis network is StyleGAN3's."""
    if not isinstance(G, PersistentObject):
        return False
    mods = G.state.get("_modules")
    syn = mods.get("synthesis") if isinstance(mods, Mapping) else None
    if not isinstance(syn, PersistentObject):
        return False
    children = syn.state.get("_modules")
    if not isinstance(children, Mapping):
        return False
    return any(
        (name == "input" and isinstance(c, PersistentObject) and c.class_name == "SynthesisInput")
        or (isinstance(name, str) and SG3_LAYER_RE.match(name) is not None)
        for name, c in children.items()
    )


def _value(v: Any) -> Any:
    """numpy scalars / arrays from a pickle as Python values (small arrays as lists)."""
    if isinstance(v, NumpyArray):
        v = v.value
    if isinstance(v, np.ndarray):
        return v.tolist() if v.size <= 16 else v
    if isinstance(v, np.generic):
        return v.item()
    return v


def _state_map(rec: PersistentObject, name: str, path: str) -> dict[str, Any]:
    m = rec.state.get(name)
    if m is None:
        return {}
    if not isinstance(m, Mapping):
        raise CheckpointError(f"malformed {path} ({describe(rec.class_name)}): {name} is a {type(m).__name__}")
    return {str(k): v for k, v in m.items() if v is not None}


def _check_tree(rec: PersistentObject, path: str, walk: WalkBudget, depth: int = 0) -> None:
    """Every module is the official class for its place; anything else is refused naming class and path."""
    walk.visit(depth)
    children = _state_map(rec, "_modules", path)
    if rec.class_name == "SynthesisNetwork":
        expected = {n: "SynthesisLayer" for n in children if SG3_LAYER_RE.match(n)}
        expected["input"] = "SynthesisInput"
    elif rec.class_name == "MappingNetwork":
        expected = {n: "FullyConnectedLayer" for n in children if _FC_RE.match(n)}
    elif rec.class_name in _CHILDREN:
        expected = _CHILDREN[rec.class_name]
    else:
        raise UnsupportedArchitecture(f"unsupported architecture: class {describe(rec.class_name)} at {path}")
    for name, child in children.items():
        child_path = f"{path}.{name}"
        if not isinstance(child, PersistentObject):
            raise UnsupportedArchitecture(
                f"unsupported architecture: {describe(child_path)} is a {type(child).__name__}, not a StyleGAN3 module"
            )
        if name not in expected or child.class_name != expected[name]:
            raise UnsupportedArchitecture(
                f"unsupported architecture: unexpected {describe(child.class_name)} module {describe(child_path)} "
                f"in StyleGAN3 {rec.class_name}"
            )
        _check_tree(child, child_path, walk, depth + 1)


def _collect(rec: PersistentObject, prefix: str, out: dict[str, Any], walk: WalkBudget, depth: int = 0) -> None:
    """Parameters, persistent buffers, then submodules, under their ``state_dict`` names."""
    walk.visit(depth)
    non_persistent = rec.state.get("_non_persistent_buffers_set")
    if not isinstance(non_persistent, (set, frozenset, list, tuple)):
        non_persistent = set()
    for where in ("_parameters", "_buffers"):
        for name, t in _state_map(rec, where, prefix.rstrip(".") or "G").items():
            walk.visit(depth + 1)
            if where == "_buffers" and name in non_persistent:
                continue
            out[walk.text(prefix + name)] = t
    for name, child in _state_map(rec, "_modules", prefix.rstrip(".") or "G").items():
        _collect(child, f"{prefix}{name}.", out, walk, depth + 1)


def _attr_differs(path: str, name: str, got: Any, want: Any) -> UnsupportedArchitecture:
    return UnsupportedArchitecture(
        f"unsupported architecture: {path}.{name} is {describe(got)} in the checkpoint, but its Generator "
        f"arguments give {describe(want)}"
    )


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, (list, tuple)):
        return isinstance(got, (list, tuple)) and len(got) == len(want) and all(
            _same(g, w) for g, w in zip(got, want, strict=True)
        )
    if isinstance(got, bool) or isinstance(want, bool):
        return isinstance(got, bool) and isinstance(want, bool) and got == want
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-9)
    return bool(got == want)


def _check_against_state(cfg: GeneratorConfigSG3, G: PersistentObject, which: str) -> None:
    """The config from the init kwargs must describe the pickled modules: names, sizes, rates, factors."""
    mods = _state_map(G, "_modules", which)
    syn = mods["synthesis"]
    sc = cfg.synthesis
    specs = sc.layer_specs()
    got_names = [n for n in _state_map(syn, "_modules", f"{which}.synthesis") if SG3_LAYER_RE.match(n)]
    want_names = [s.name for s in specs]
    if got_names != want_names:
        shown = ", ".join(got_names[:4]) + (", ..." if len(got_names) > 4 else "")
        need = ", ".join(want_names[:4]) + (", ..." if len(want_names) > 4 else "")
        raise UnsupportedArchitecture(
            f"unsupported architecture: {which}.synthesis has {len(got_names)} layers ({shown}), but its Generator "
            f"arguments (num_layers={sc.num_layers}, margin_size={sc.margin_size}, ...) give {len(want_names)} "
            f"({need})"
        )
    checks: list[tuple[PersistentObject, str, dict[str, Any]]] = []
    for rec, path in ((G, which), (syn, f"{which}.synthesis"), (mods["mapping"], f"{which}.mapping")):
        checks.append((rec, path, {"num_ws": cfg.num_ws, "w_dim": cfg.w_dim}))
    checks.append((syn, f"{which}.synthesis", {
        "num_layers": sc.num_layers, "num_critical": sc.num_critical, "margin_size": sc.margin_size,
        "img_resolution": sc.img_resolution, "img_channels": sc.img_channels, "output_scale": sc.output_scale,
    }))  # fmt: skip
    inp = _state_map(syn, "_modules", f"{which}.synthesis")["input"]
    ispec = sc.input_spec()
    checks.append((inp, f"{which}.synthesis.input", {
        "channels": ispec.channels, "size": [ispec.size, ispec.size], "sampling_rate": ispec.sampling_rate,
        "bandwidth": ispec.bandwidth,
    }))  # fmt: skip
    layers = _state_map(syn, "_modules", f"{which}.synthesis")
    for s in specs:
        checks.append((layers[s.name], f"{which}.synthesis.{s.name}", {
            "is_torgb": s.is_torgb, "is_critically_sampled": s.is_critically_sampled,
            "in_channels": s.in_channels, "out_channels": s.out_channels,
            "in_size": [s.in_size, s.in_size], "out_size": [s.out_size, s.out_size],
            "in_sampling_rate": s.in_sampling_rate, "out_sampling_rate": s.out_sampling_rate,
            "tmp_sampling_rate": s.tmp_sampling_rate, "in_cutoff": s.in_cutoff, "out_cutoff": s.out_cutoff,
            "in_half_width": s.in_half_width, "out_half_width": s.out_half_width, "conv_kernel": s.conv_kernel,
            "up_factor": s.up_factor, "down_factor": s.down_factor, "up_taps": s.up_taps, "down_taps": s.down_taps,
            "down_radial": s.down_radial, "padding": list(s.padding), "conv_clamp": sc.conv_clamp,
        }))  # fmt: skip
    for rec, path, attrs in checks:
        for name, want in attrs.items():
            if name not in rec.state:  # Attributes are informational; the kwargs and shapes decide.
                continue
            got = _value(rec.state[name])
            if not _same(got, want):
                raise _attr_differs(path, name, got, want)


def _init_kwargs(G: PersistentObject, which: str) -> dict[str, Any]:
    raw = G.state.get("_init_kwargs")
    if not isinstance(raw, Mapping) or not raw:
        raise CheckpointError(
            f"{which} has no _init_kwargs: a stylegan3 Generator pickle records the arguments it was built with"
        )
    if len(raw) > 64:
        raise CheckpointError(f"{which}._init_kwargs has {len(raw)} entries; at most 64 are read")
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if not isinstance(k, str):
            raise CheckpointError(f"{which}._init_kwargs has a non-string key {describe(k)}")
        v = _value(v)
        if k == "mapping_kwargs":
            if v is None:
                v = {}
            if not isinstance(v, Mapping) or len(v) > 16:
                raise CheckpointError(f"{which}._init_kwargs: mapping_kwargs is {describe(v)}")
            v = {str(mk): _value(mv) for mk, mv in v.items()}
            bad = [mk for mk, mv in v.items() if not (mv is None or isinstance(mv, (bool, int, float)))]
        else:
            bad = [k] if not (v is None or isinstance(v, (bool, int, float))) else []
        if bad:
            raise CheckpointError(f"{which}._init_kwargs: {bad[0]!r} is {describe(raw[k])}, not a number")
        out[k] = v
    return out


def from_official_sg3(
    G: PersistentObject, which: str, notes: list[str]
) -> tuple[GeneratorConfigSG3, dict[str, Tensor], dict[str, Any]]:
    """A stylegan3 ``Generator`` record -> (config, float32 state dict with official names, init kwargs).

    ``which`` names the record in messages (``G_ema``); ``notes`` gets what was estimated or assumed.
    Raises :class:`UnsupportedArchitecture` naming a class or an attribute that differs from what the
    init kwargs build, :class:`CheckpointError` naming a missing, unexpected, mis-shaped or non-finite key.
    """
    if G.class_name != "Generator":
        raise UnsupportedArchitecture(
            f"unsupported architecture: {which} is a {describe(G.class_name)}, not a stylegan3 Generator"
        )
    _check_tree(G, which, WalkBudget(f"{which} modules"))
    mods = _state_map(G, "_modules", which)
    if "synthesis" not in mods or "mapping" not in mods:
        raise UnsupportedArchitecture("unsupported architecture: Generator without synthesis and mapping networks")
    kwargs = _init_kwargs(G, which)
    cfg = config_from_official(kwargs)
    _check_against_state(cfg, G, which)

    raw: dict[str, Any] = {}
    _collect(G, "", raw, WalkBudget(f"{which} state"))
    estimate = "mapping.w_avg" not in raw
    probe = dict(raw)
    if estimate:
        probe["mapping.w_avg"] = torch.zeros([cfg.w_dim])
    check_state_dict_sg3(cfg, probe, "checkpoint")  # Keys, shapes, dtypes: before anything is converted.
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in raw.items()}
    for key, t in state.items():
        if not torch.isfinite(t).all():
            raise CheckpointError(f"checkpoint: {key!r} holds NaN or Inf")
    if estimate:
        mapping = load_mapping(MappingNetwork(cfg.mapping), state, cfg.w_dim)
        state["mapping.w_avg"] = mean_w(mapping, cfg.z_dim, cfg.c_dim, W_AVG_SAMPLES, W_AVG_SEED)
        notes.append(
            f"w_avg estimated from {W_AVG_SAMPLES} mapping samples (numpy seed {W_AVG_SEED}: "
            f"RandomState({W_AVG_SEED}).randn({W_AVG_SAMPLES}, {cfg.z_dim}))"
        )
    return cfg, {k: state[k] for k in expected_shapes_sg3(cfg)}, kwargs
