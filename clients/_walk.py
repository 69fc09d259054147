"""Latent walks: linear interpolation in W between keyframes (pure numpy, no I/O).

A walk over ``K`` keyframes ``ws[0..K-1]`` is a path of ``K - 1`` segments (``ws[i] -> ws[i+1]``), plus a
closing segment ``ws[K-1] -> ws[0]`` when it loops. A frame sits at a *position* ``p`` on that path: segment
``floor(p)``, fraction ``p - floor(p)``. Frames at whole positions are the keyframes themselves, bit for bit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

__all__ = ["frame_count", "interpolate_at", "interpolate_path", "interpolate_ws"]


def _keys(ws: npt.ArrayLike) -> F32:
    arr = np.asarray(ws, dtype=np.float32)
    if arr.ndim < 1 or arr.shape[0] < 1:
        raise ValueError(f"need at least one keyframe, got shape {arr.shape}")
    return arr


def _positive(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def frame_count(num_keys: int, frames_per_segment: int, loop: bool = False) -> int:
    """Frames :func:`interpolate_ws` yields: ``(K - 1) * F + 1`` (the last keyframe ends it), or ``K * F`` looping
    (the closing segment stops one frame short of the first keyframe, so the animation repeats seamlessly)."""
    k, f = _positive(num_keys, "num_keys"), _positive(frames_per_segment, "frames_per_segment")
    return k * f if loop else (k - 1) * f + 1


def interpolate_at(ws: npt.ArrayLike, positions: npt.ArrayLike, loop: bool = False) -> F32:
    """``ws`` ``[K, ...]`` at path ``positions`` ``[F]`` (in ``[0, K - 1]``, or ``[0, K)`` looping) -> ``[F, ...]``.

    Linear: ``a + t * (b - a)`` in float64, so ``t == 0`` gives ``a`` exactly.
    """
    keys = _keys(ws)
    k = keys.shape[0]
    pos = np.asarray(positions, dtype=np.float64).reshape(-1)
    span = k if loop else k - 1
    if pos.size and (not np.all(np.isfinite(pos)) or pos.min() < 0 or pos.max() > span or (loop and pos.max() >= k)):
        raise ValueError(f"positions must lie in [0, {span}{')' if loop else ']'}")
    seg = np.floor(pos).astype(np.int64)
    t = pos - seg
    if loop:
        seg, nxt = seg % k, (seg + 1) % k
    else:  # p == K - 1 is the last keyframe itself (t = 0 there)
        seg = np.minimum(seg, k - 1)
        nxt = np.minimum(seg + 1, k - 1)
    a = keys[seg].astype(np.float64)
    b = keys[nxt].astype(np.float64)
    t = t.reshape((-1,) + (1,) * (keys.ndim - 1))
    return (a + t * (b - a)).astype(np.float32)


def interpolate_ws(ws: npt.ArrayLike, frames_per_segment: int, loop: bool = False) -> F32:
    """``ws`` ``[K, ...]`` -> ``[frame_count(K, F, loop), ...]``: ``F`` evenly spaced frames per segment.

    Frame ``i * F`` is keyframe ``i`` exactly; without ``loop`` the last frame is ``ws[-1]``.
    """
    keys = _keys(ws)
    f = _positive(frames_per_segment, "frames_per_segment")
    n = frame_count(keys.shape[0], f, loop)
    return interpolate_at(keys, np.arange(n, dtype=np.float64) / f, loop)


def interpolate_path(ws: npt.ArrayLike, num_frames: int, loop: bool = False) -> F32:
    """``ws`` ``[K, ...]`` -> ``[num_frames, ...]`` evenly spaced along the whole path.

    Without ``loop`` the first and last frames are ``ws[0]`` and ``ws[-1]``; looping, the frames cover
    ``[0, K)`` and the animation wraps around to ``ws[0]``.
    """
    keys = _keys(ws)
    n = _positive(num_frames, "num_frames")
    k = keys.shape[0]
    if loop:
        pos: F64 = np.arange(n, dtype=np.float64) * k / n
    else:
        pos = np.linspace(0.0, float(k - 1), n) if n > 1 else np.zeros(1)
    return interpolate_at(keys, pos, loop)
