"""The StyleGAN3 input transform (numpy only, no torch): gen_images.py's ``--translate X,Y --rotate DEG``.

NVlabs stylegan3 ``gen_images.py`` builds ``m = make_transform(translate, rotate)``, inverts it and copies
it into ``G.synthesis.input.transform`` before drawing. A model directory with a ``transform_input``
(``styleserve.manifest``) takes that inverse as a per-image synthesis input ``[N, 3, 3]`` float32;
:func:`input_transform` computes it exactly as gen_images.py does (float64, then float32), and the identity
(no translation, no rotation) is the checkpoint's default buffer.

Bounds: translations and angles must be finite with ``|translate| <= MAX_TRANSLATE`` and
``|rotate| <= MAX_ROTATE_DEG`` (a float32 angle beyond that loses its fraction of a degree).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from styleserve.errors import InvalidArgument

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

MAX_TRANSLATE = 1000.0
MAX_ROTATE_DEG = 36000.0

Move = tuple[float, float, float]
"""(translate_x, translate_y, rotate_deg): one image's transform as the API and the CLI give it."""
IDENTITY: Move = (0.0, 0.0, 0.0)


def make_transform(translate: tuple[float, float], angle: float) -> F64:
    """gen_images.py's ``make_transform``: rotation by ``angle`` degrees and translation. ``# [3, 3] float64``"""
    s = math.sin(angle / 360.0 * math.pi * 2)
    c = math.cos(angle / 360.0 * math.pi * 2)
    return np.array([[c, s, translate[0]], [-s, c, translate[1]], [0.0, 0.0, 1.0]])


def input_transform(translate: tuple[float, float] = (0.0, 0.0), angle: float = 0.0) -> F32:
    """``inv(make_transform(translate, angle))`` as gen_images.py copies it into the synthesis input. ``# [3, 3]``"""
    return np.linalg.inv(make_transform(translate, angle)).astype(np.float32)


def check_move(move: Sequence[float], field: str = "transform") -> Move:
    """A finite, bounded (translate_x, translate_y, rotate_deg); InvalidArgument naming the component."""
    if len(move) != 3:
        raise InvalidArgument(field, f"needs translate_x, translate_y and rotate_deg, got {len(move)} values")
    tx, ty, deg = (float(v) for v in move)
    for name, v, cap in (("translate_x", tx, MAX_TRANSLATE), ("translate_y", ty, MAX_TRANSLATE),
                         ("rotate_deg", deg, MAX_ROTATE_DEG)):  # fmt: skip
        if not math.isfinite(v) or abs(v) > cap:
            raise InvalidArgument(f"{field}.{name}", f"must be finite with |{name}| <= {cap:g}, got {v!r}")
    return tx, ty, deg


def input_transforms(moves: Sequence[Move]) -> F32:
    """One ``input_transform`` per move (each checked). ``# [N, 3, 3]``"""
    out = np.empty((len(moves), 3, 3), np.float32)
    for i, move in enumerate(moves):
        tx, ty, deg = check_move(move, f"transforms[{i}]")
        out[i] = input_transform((tx, ty), deg)
    return out


def identity_transforms(n: int) -> F32:
    """``n`` identity transforms (the default: no translation, no rotation). ``# [n, 3, 3]``"""
    return np.repeat(np.eye(3, dtype=np.float32)[None], n, axis=0)
