"""Latent-space rules shared by the exporter and the server (numpy only, no torch).

These are the official conventions:

* seed -> z: ``np.random.RandomState(seed).randn(z_dim)`` as in NVlabs ``gen_images.py``
  (``randn(1, z_dim)`` draws the same stream), cast to float32.
* class label -> c: a one-hot row of length ``c_dim``.
* truncation: ``w_avg + psi * (w - w_avg)`` for the ws layers below ``cutoff`` (all if None),
  the ``w_avg.lerp(w, psi)`` of the official ``MappingNetwork``.
* noise seed -> noise: one ``RandomState(noise_seed)`` stream drawn layer by layer in the order
  of the model's noise inputs, each a ``[res, res]`` standard-normal plane.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from styleserve.errors import InvalidArgument

F32 = npt.NDArray[np.float32]

SEED_MAX = 2**32 - 1
"""Largest seed ``np.random.RandomState`` accepts."""

PSI_LIMIT = 100.0
"""|psi| beyond this is rejected as absurd (the official tools use -1..2)."""


def check_seed(seed: int, field: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidArgument(field, f"must be an integer, got {type(seed).__name__}")
    if not 0 <= int(seed) <= SEED_MAX:
        raise InvalidArgument(field, f"must be in [0, {SEED_MAX}], got {seed}")
    return int(seed)


def z_from_seed(seed: int, z_dim: int) -> F32:
    """The official seed -> z rule: ``RandomState(seed).randn(z_dim)`` as float32. ``# [z_dim]``"""
    seed = check_seed(seed)
    return np.random.RandomState(seed).randn(z_dim).astype(np.float32)


def z_from_seeds(seeds: Sequence[int], z_dim: int) -> F32:
    """Stack :func:`z_from_seed` for each seed. ``# [N, z_dim]``"""
    out = np.empty((len(seeds), z_dim), dtype=np.float32)
    for i, seed in enumerate(seeds):
        out[i] = z_from_seed(check_seed(seed, f"seeds[{i}]"), z_dim)
    return out


def class_labels(class_indices: Sequence[int | None], c_dim: int) -> F32:
    """One-hot labels for class-conditional models; ``None`` means no class. ``# [N, c_dim]``

    Unconditional models (``c_dim == 0``) accept only ``None`` entries.
    """
    c = np.zeros((len(class_indices), c_dim), dtype=np.float32)
    for i, idx in enumerate(class_indices):
        if idx is None:
            if c_dim > 0:
                raise InvalidArgument(f"class_index[{i}]", f"this model is conditional on {c_dim} classes")
            continue
        if c_dim == 0:
            raise InvalidArgument(f"class_index[{i}]", "this model is unconditional")
        if isinstance(idx, bool) or not 0 <= int(idx) < c_dim:
            raise InvalidArgument(f"class_index[{i}]", f"unknown class {idx}; valid are 0..{c_dim - 1}")
        c[i, int(idx)] = 1.0
    return c


def check_psi(psi: float, field: str = "truncation_psi") -> float:
    if not np.isfinite(psi) or abs(psi) > PSI_LIMIT:
        raise InvalidArgument(field, f"must be finite with |psi| <= {PSI_LIMIT:g}, got {psi}")
    return float(psi)


def broadcast_ws(w: F32, num_ws: int) -> F32:
    """``[N, w_dim]`` -> ``[N, num_ws, w_dim]``, the official mapping's broadcast."""
    return np.repeat(w[:, None, :], num_ws, axis=1)


def truncate(
    ws: F32,
    w_avg: F32,
    psi: float | F32,
    cutoff: int | None = None,
) -> F32:
    """Truncation toward ``w_avg``: ``w_avg + psi * (ws - w_avg)`` on layers ``< cutoff``.

    ``ws`` is ``[N, num_ws, w_dim]``; ``psi`` is a scalar or one value per row ``[N]``;
    ``cutoff=None`` truncates every layer (the official default). Returns a new array.
    """
    ws = np.asarray(ws, dtype=np.float32)
    if ws.ndim != 3:
        raise ValueError(f"ws must be [N, num_ws, w_dim], got shape {ws.shape}")
    return truncate_rows(ws, w_avg, psi, ws.shape[1] if cutoff is None else int(cutoff))


def truncate_rows(ws: F32, w_avg: F32, psi: npt.ArrayLike, cutoff: npt.ArrayLike) -> F32:
    """Per-row truncation, vectorised over a batch: row ``i`` uses ``psi[i]`` on its layers ``< cutoff[i]``.

    ``ws`` is ``[N, num_ws, w_dim]``, ``psi`` and ``cutoff`` are ``[N]`` (``cutoff >= num_ws`` = every
    layer). Rows with ``psi == 1`` are returned untouched, as the official code skips them.
    """
    ws = np.asarray(ws, dtype=np.float32)
    n, num_ws, _ = ws.shape
    psi_arr = np.broadcast_to(np.asarray(psi, dtype=np.float32), (n,))
    cut_arr = np.broadcast_to(np.asarray(cutoff, dtype=np.int64), (n,))
    mask = (np.arange(num_ws)[None, :] < cut_arr[:, None]) & (psi_arr[:, None] != 1.0)  # [N, num_ws]
    if not mask.any():
        return ws.copy()
    avg = np.asarray(w_avg, dtype=np.float32).reshape(1, 1, -1)
    truncated = avg + psi_arr.reshape(-1, 1, 1) * (ws - avg)
    return np.where(mask[:, :, None], truncated, ws).astype(np.float32, copy=False)


def mix_styles(base: F32, other: F32, layers: Sequence[int]) -> F32:
    """Style mixing: ``base`` with the ws rows ``layers`` taken from ``other``. ``# [N, num_ws, w_dim]``"""
    out = np.array(base, dtype=np.float32, copy=True)
    idx = list(layers)
    out[:, idx] = other[:, idx]
    return out


def noise_from_seed(seed: int, resolutions: Sequence[int]) -> list[F32]:
    """Per-layer noise planes from one seed: a ``[1, 1, res, res]`` array per noise input, in order."""
    rs = np.random.RandomState(check_seed(seed, "noise_seed"))
    return [rs.randn(res, res).astype(np.float32)[None, None] for res in resolutions]
