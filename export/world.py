"""A toy-face world with known factors of variation, grouped by scale: what the demo model is trained on.

A deterministic procedural renderer (torch, batched, no downloads) of 64 px RGB images in ``[-1, 1]``. Each
image is a head on a plain background, drawn from soft-edged (anti-aliased) shapes in the head's own frame
(translated and rotated). The factors, each in ``[0, 1]``, are grouped as StyleGAN's layers group them:

========  ======================  ==============================================================
group     factor                  what it changes
========  ======================  ==============================================================
coarse    ``pos_x``, ``pos_y``    head position (centre within +-0.22 / +-0.12 of the half-width)
coarse    ``tilt``                head rotation, -0.45 .. 0.45 rad
coarse    ``face_w``, ``face_h``  face ellipse half-axes (face shape)
coarse    ``hair_len``            hair shape: short crop (0) .. long hair down to the shoulders (1)
middle    ``eyes``                eyes closed (0) .. open (1)
middle    ``glasses``             glasses off (< 0.5) / on (> 0.5), a steep soft step
middle    ``mouth``               frown (0) .. smile (1)
fine      ``skin``                skin tone along a light .. dark palette
fine      ``hair_col``            hair colour along a black/brown/blond/red/blue palette
fine      ``bg_r``, ``bg_g``,     background colour
          ``bg_b``
fine      ``tint``                lighting tint: cool (0) .. warm (1), a global colour multiplier
========  ======================  ==============================================================

Stochastic detail: background grain, ``GRAIN * noise`` on the background only, where ``noise`` is a
``[N, 1, 64, 64]`` standard normal plane. The demo generator is trained with the plane it gets at its
``b64.conv1`` noise input, so that input drives the grain (see :mod:`styleserve.export.train_demo`).

The map from a latent ``z`` (``[N, z_dim]``, standard normal) to the factors is fixed: factor ``i`` is
``Phi(z[:, i])`` (the standard normal CDF), so every factor is uniform on ``[0, 1]``; the other ``z``
coordinates are unused. The mapping network is left to find this out.

:func:`estimate` reads factor *estimates* back from any image (rendered or generated) with the world's
own knowledge (the background is the border's median colour, the head is what differs from it): coarse
estimates (head centroid, orientation, size, elongation) and colour estimates (background colour, mean
head colour). The demo's measurements (:mod:`styleserve.export.demo_metrics`) are stated in them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

RESOLUTION = 64
COARSE = ("pos_x", "pos_y", "tilt", "face_w", "face_h", "hair_len")
MIDDLE = ("eyes", "glasses", "mouth")
FINE = ("skin", "hair_col", "bg_r", "bg_g", "bg_b", "tint")
FACTORS = COARSE + MIDDLE + FINE
GROUPS: dict[str, tuple[str, ...]] = {"coarse": COARSE, "middle": MIDDLE, "fine": FINE}
GRAIN = 0.08  # Amplitude of the background grain, in image units ([-1, 1] range).
SOFT = 1.0 / RESOLUTION  # Edge softness (about half a pixel in the [-1, 1] frame): anti-aliasing.

_SKIN = torch.tensor([[0.98, 0.86, 0.74], [0.90, 0.70, 0.55], [0.70, 0.50, 0.35], [0.45, 0.30, 0.20]])
_HAIR = torch.tensor(
    [[0.08, 0.07, 0.07], [0.40, 0.24, 0.12], [0.92, 0.80, 0.45], [0.80, 0.30, 0.10], [0.20, 0.35, 0.85]]
)
_DARK = torch.tensor([0.10, 0.08, 0.10])
_LIPS = torch.tensor([0.60, 0.12, 0.18])
_WHITE = torch.tensor([0.97, 0.97, 0.97])


def factors_from_z(z: Tensor) -> dict[str, Tensor]:
    """The fixed map ``z`` ``[N, z_dim]`` -> factors ``{name: [N]}`` in ``[0, 1]``: ``Phi(z[:, i])``."""
    if z.ndim != 2 or z.shape[1] < len(FACTORS):
        raise ValueError(f"z must be [N, >= {len(FACTORS)}], got {tuple(z.shape)}")
    u = 0.5 * (1.0 + torch.erf(z[:, : len(FACTORS)].to(torch.float32) / math.sqrt(2.0)))
    return {name: u[:, i] for i, name in enumerate(FACTORS)}


def mix_factors(a: Mapping[str, Tensor], b: Mapping[str, Tensor], groups_from_a: tuple[str, ...]) -> dict[str, Tensor]:
    """Factors whose groups in ``groups_from_a`` come from ``a`` and the rest from ``b``."""
    from_a = {n for g in groups_from_a for n in GROUPS[g]}
    return {n: (a[n] if n in from_a else b[n]) for n in FACTORS}


def _palette(pal: Tensor, t: Tensor) -> Tensor:
    """Piecewise-linear colour along ``pal`` ``[K, 3]`` at ``t`` ``[N]`` in [0, 1]. ``# [N, 3]``"""
    x = t.clamp(0, 1) * (pal.shape[0] - 1)
    i0 = x.floor().long().clamp(max=pal.shape[0] - 2)
    f = (x - i0.to(x.dtype)).unsqueeze(1)
    return pal[i0] * (1 - f) + pal[i0 + 1] * f


def _ellipse(x: Tensor, y: Tensor, cx: Tensor | float, cy: Tensor | float, rx: Tensor, ry: Tensor) -> Tensor:
    """Approximate signed distance to an axis-aligned ellipse (scaled radial distance)."""
    d = torch.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + 1e-12)
    return (d - 1.0) * torch.minimum(rx, ry)


def render(f: Mapping[str, Tensor], noise: Tensor | None = None, res: int = RESOLUTION) -> Tensor:
    """Images ``[N, 3, res, res]`` in ``[-1, 1]`` of factors ``{name: [N]}``; ``noise`` ``[N or 1, 1, res, res]``
    is the grain plane (``None``: no grain). ``res`` below 64 draws the same picture with edges softened to
    its pixel size (the training schedule's low-resolution phases)."""
    return render_with_masks(f, noise, res)[0]


def render_with_masks(
    f: Mapping[str, Tensor], noise: Tensor | None = None, res: int = RESOLUTION
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`render`'s image plus two soft coverage masks ``[N, 1, res, res]`` in ``[0, 1]``: the head (hair,
    face and everything on it) and the face's features (eyes, glasses, mouth). The training loss weighs
    pixels by them (:mod:`styleserve.export.train_demo`)."""
    n = f["pos_x"].shape[0]
    r = res
    soft = SOFT * RESOLUTION / r

    def _cover(sdf: Tensor) -> Tensor:  # soft coverage of a signed distance (negative inside)
        return torch.sigmoid(-sdf / soft * 2.0)

    coords = (torch.arange(r, dtype=torch.float32) + 0.5) / r * 2 - 1
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")  # [H, W]
    gx, gy = gx[None], gy[None]  # [1, H, W]

    def col(v: Tensor) -> Tensor:  # [N] -> [N, 1, 1]
        return v.view(n, 1, 1)

    px = col((f["pos_x"] - 0.5) * 0.44)
    py = col((f["pos_y"] - 0.5) * 0.24 + 0.04)
    ang = col((f["tilt"] - 0.5) * 0.9)
    fw = col(0.34 + 0.12 * f["face_w"])
    fh = col(0.42 + 0.12 * f["face_h"])
    hl = col(f["hair_len"])
    # Head frame: u to the head's right, v down.
    dx, dy = gx - px, gy - py
    c, s = torch.cos(ang), torch.sin(ang)
    u = c * dx + s * dy
    v = -s * dx + c * dy

    skin = _palette(_SKIN, f["skin"])  # [N, 3]
    hair = _palette(_HAIR, f["hair_col"])
    bg = torch.stack([f["bg_r"], f["bg_g"], f["bg_b"]], 1) * 0.7 + 0.15

    img = bg[:, :, None, None].expand(n, 3, r, r).clone()
    if noise is not None:
        img = img + (GRAIN / 2) * noise.to(torch.float32)  # the background only: covered by the head below

    bare = torch.ones(n, 1, r, r)  # what is left uncovered by the head
    plain = torch.ones(n, 1, r, r)  # what is left uncovered by the features

    def paint(cov: Tensor, rgb: Tensor, feature: bool = False) -> None:
        nonlocal img, bare, plain
        a = cov.unsqueeze(1)  # [N, 1, H, W]
        img = img * (1 - a) + rgb.view(-1, 3, 1, 1) * a
        bare = bare * (1 - a)
        if feature:
            plain = plain * (1 - a)

    # Hair behind the head: a crop (hl = 0) to long hair down to the shoulders (hl = 1).
    hair_top = _ellipse(u, v, 0.0, -0.12 * fh, fw * 1.18, fh * 1.0)
    long_h = torch.maximum(torch.abs(u) - fw * (1.05 + 0.2 * hl), v - fh * (0.1 + 1.3 * hl))
    long_h = torch.maximum(long_h, -v - 0.0)
    paint(_cover(torch.minimum(hair_top, torch.where(hl > 0.15, long_h, torch.full_like(long_h, 1.0)))), hair)
    # Face.
    paint(_cover(_ellipse(u, v, 0.0, 0.0, fw, fh)), skin)
    # Fringe: hair over the top of the face, deeper for longer hair.
    fringe = torch.maximum(_ellipse(u, v, 0.0, -0.12 * fh, fw * 1.18, fh * 1.0), v + fh * (0.62 - 0.22 * hl))
    paint(_cover(fringe), hair)
    # Eyes: white, then a dark iris whose height follows "eyes" (a closed eye is a thin dark line).
    open_ = col(f["eyes"])
    ex, ey = fw * 0.42, -fh * 0.12
    er = fw * 0.22
    for side in (-1.0, 1.0):
        paint(
            _cover(_ellipse(u, v, side * ex, ey, er, er * (0.08 + 0.72 * open_))) * (open_ > 0.0),
            _WHITE.expand(n, 3),
            feature=True,
        )
        iris = _ellipse(u, v, side * ex, ey, er * 0.55, torch.clamp(er * 0.7 * open_, min=0.012))
        paint(_cover(iris), _DARK.expand(n, 3), feature=True)
    # Glasses: two rings and a bridge, on above 0.5 (a steep soft step).
    g = torch.clamp((f["glasses"] - 0.5) * 12 + 0.5, 0, 1).view(n, 1, 1)
    gr = er * 1.45
    for side in (-1.0, 1.0):
        ring = torch.abs(_ellipse(u, v, side * ex, ey, gr, gr)) - 0.022
        paint(_cover(ring) * g, _DARK.expand(n, 3), feature=True)
    bridge = torch.maximum(torch.abs(v - ey) - 0.02, torch.abs(u) - (ex - gr))
    paint(_cover(bridge) * g, _DARK.expand(n, 3), feature=True)
    # Mouth: a parabola arc, smile (mouth = 1) or frown (mouth = 0).
    mw = fw * 0.45
    curv = col(f["mouth"] - 0.5) * 0.5
    my = fh * 0.55
    arc = torch.maximum(torch.abs(v - (my - curv * mw * (1 - (u / mw) ** 2))) - 0.035, torch.abs(u) - mw)
    paint(_cover(arc), _LIPS.expand(n, 3), feature=True)
    # Lighting tint: a global warm/cool colour multiplier.
    t = (f["tint"] - 0.5).view(n, 1, 1, 1)
    img = img * (1 + t * torch.tensor([0.36, 0.0, -0.36]).view(1, 3, 1, 1))
    return (img * 2 - 1).clamp(-1, 1), 1 - bare, 1 - plain


def border_mask(r: int = RESOLUTION, width: int = 2) -> Tensor:
    """The ``width``-pixel image border. ``# [r, r]`` bool"""
    m = torch.ones(r, r, dtype=torch.bool)
    m[width:-width, width:-width] = False
    return m


def estimate(img: Tensor, threshold: float = 0.25) -> dict[str, Tensor]:
    """The world's factor estimates from images ``[N, 3, H, W]`` in ``[-1, 1]`` (rendered or generated).

    Background colour = the median of the border; head = pixels whose distance from it (max over channels)
    exceeds half its 95th percentile and at least ``threshold``. Returns ``{name: [N]}``: coarse
    ``cen_x``, ``cen_y`` (head centroid, [-1, 1] frame), ``orient_c``, ``orient_s`` (the head's
    second-moment orientation as ``cos``/``sin`` of twice the angle, scaled by eccentricity), ``size``
    (sqrt of the head's area fraction); colour ``bg_r``, ``bg_g``, ``bg_b`` and ``head_r``, ``head_g``,
    ``head_b`` (mean head colour), in [-1, 1].
    """
    img = img.to(torch.float32)
    n, _, h, _ = img.shape
    bmask = border_mask(h)
    bg = img[:, :, bmask].median(dim=2).values  # [N, 3]
    diff = (img - bg[:, :, None, None]).abs().amax(1)  # [N, H, W]
    # Half-maximum contour (not below ``threshold``, which the grain stays under): the head's outline does
    # not depend on its contrast with the background, also where edges are soft.
    level = torch.clamp(0.5 * torch.quantile(diff.flatten(1), 0.95, dim=1), min=threshold)
    fg = (diff > level.view(n, 1, 1)).to(torch.float32)
    coords = (torch.arange(h, dtype=torch.float32) + 0.5) / h * 2 - 1
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    area = fg.sum((1, 2)).clamp(min=1.0)
    cx = (fg * gx).sum((1, 2)) / area
    cy = (fg * gy).sum((1, 2)) / area
    dx, dy = gx[None] - cx.view(n, 1, 1), gy[None] - cy.view(n, 1, 1)
    sxx = (fg * dx * dx).sum((1, 2)) / area
    syy = (fg * dy * dy).sum((1, 2)) / area
    sxy = (fg * dx * dy).sum((1, 2)) / area
    tr = (sxx + syy).clamp(min=1e-6)
    head = (img * fg[:, None]).sum((2, 3)) / area[:, None]  # [N, 3]
    return {
        "cen_x": cx,
        "cen_y": cy,
        "orient_c": (sxx - syy) / tr,
        "orient_s": 2 * sxy / tr,
        "size": torch.sqrt(fg.mean((1, 2))),
        "bg_r": bg[:, 0],
        "bg_g": bg[:, 1],
        "bg_b": bg[:, 2],
        "head_r": head[:, 0],
        "head_g": head[:, 1],
        "head_b": head[:, 2],
    }


EST_COARSE = ("cen_x", "cen_y", "orient_c", "orient_s", "size")
EST_COLOUR = ("bg_r", "bg_g", "bg_b", "head_r", "head_g", "head_b")


def estimate_groups(img: Tensor) -> dict[str, Tensor]:
    """:func:`estimate` stacked per group: ``{"coarse": [N, 5], "colour": [N, 6]}``."""
    e = estimate(img)
    return {
        "coarse": torch.stack([e[k] for k in EST_COARSE], 1),
        "colour": torch.stack([e[k] for k in EST_COLOUR], 1),
    }
