"""Closed-form semantic edit directions (SeFa; Shen & Zhou, "Closed-Form Factorization of Latent Semantics in
GANs", CVPR 2021), computed at export from the generator's own style affine weights: no data, no training.

Each ws index feeds its layers through an affine ``s = A w + b`` (StyleGAN2: ``affine.weight`` ``[in_channels,
w_dim]`` of a modulated conv or to-RGB layer; StyleGAN v1: ``style.weight`` ``[2C, w_dim]`` of the AdaIN layer).
A move ``w + alpha n`` changes the styles by ``alpha A n``; SeFa takes the unit ``n`` that maximise ``|A n|^2``,
the top eigenvectors of ``A^T A``. As in the official implementation (genforce/sefa ``factorize_weight``):

* one affine per ws index: the first conv layer the index feeds (``layer{idx}`` there), or its to-RGB layer when
  it feeds no conv (the last index of a StyleGAN2, ``output{idx // 2}`` there);
* every row of every chosen affine weight is scaled to unit norm (the equalised-lr gain is one scalar per layer,
  so it drops out), the rows of the chosen layers are stacked into ``A`` ``[sum of out channels, w_dim]``;
* the eigenvectors of ``A^T A`` ``[w_dim, w_dim]``, sorted by eigenvalue, largest first (the official code keeps
  ``np.linalg.eig``'s order; the paper ranks them). Each direction is a unit vector in W space. Its sign is
  arbitrary (``n`` and ``-n`` are both eigenvectors): it is fixed so that its largest-magnitude component is
  positive, so that two computations agree.

Ranges (layer sets), from the manifest's ``ws_layers`` resolutions (the lowest resolution each ws index feeds,
see ``onnx_export.ws_slots``) as in the StyleGAN paper's style-mixing figure (coarse 4-8 px, middle 16-32 px,
fine 64 px and up). ``all``; ``coarse`` = at most 8 px; ``middle`` 16-32 px; ``fine``
at least 64 px (a 1024 px StyleGAN2: ws 0-3, 4-7, 8-17; the 64 px demo: 0-3, 4-7, 8-9, the groups it was
trained on). An empty range is not stored (a 32 px model has no ``fine``). The top :data:`DEFAULT_COUNT` directions
(at most ``w_dim``) of each range go into ``directions.npy`` ``[ranges, count, w_dim]`` float32, in the order of
``model.json``'s ``directions.ranges``, which also records each range's ws indices and eigenvalues.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from torch import nn

from styleserve.manifest import DIRECTION_RANGES, DirectionRange, Directions, WsSlot

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

DEFAULT_COUNT = 16  # Directions stored per range (at most w_dim).
DIRECTIONS_FILE = "directions.npy"
COARSE_MAX_RES = 8  # coarse: ws_layers resolution <= 8 px; middle: 16..32 px; fine: >= 64 px.
FINE_MIN_RES = 64


def range_layers(ws_layers: Sequence[WsSlot]) -> dict[str, list[int]]:
    """Range name -> its ws indices (non-empty ranges only, in :data:`DIRECTION_RANGES` order)."""
    res = {s.index: s.resolution for s in ws_layers}
    groups = {
        "all": [s.index for s in ws_layers],
        "coarse": [i for i, r in res.items() if r <= COARSE_MAX_RES],
        "middle": [i for i, r in res.items() if COARSE_MAX_RES < r < FINE_MIN_RES],
        "fine": [i for i, r in res.items() if r >= FINE_MIN_RES],
    }
    return {name: groups[name] for name in DIRECTION_RANGES if groups[name]}


def _style_affine(synthesis: nn.Module, layer: str) -> npt.NDArray[np.float64]:
    """The style affine weight ``[out, w_dim]`` of a layer named like ``b8.conv0``."""
    module = synthesis
    for part in layer.split("."):
        module = getattr(module, part)
    affine = getattr(module, "affine", None) or getattr(module, "style", None)
    if affine is None or not isinstance(getattr(affine, "weight", None), nn.Parameter):
        raise ValueError(f"layer {layer} has no style affine (affine.weight or style.weight)")
    return np.asarray(affine.weight.detach().cpu().numpy(), dtype=np.float64)


def affine_weights(synthesis: nn.Module, ws_layers: Sequence[WsSlot]) -> list[F64]:
    """One affine weight ``[out, w_dim]`` per ws index: its first conv layer, else its to-RGB layer."""
    out = []
    for slot in ws_layers:
        convs = [name for name in slot.layers if not name.endswith("torgb")]
        out.append(_style_affine(synthesis, (convs or slot.layers)[0]))
    return out


def sefa(weights: Sequence[F64], count: int) -> tuple[F64, F64]:
    """Row-normalised, stacked affine weights -> (eigenvalues ``[count]``, unit directions ``[count, w_dim]``)."""
    A = np.concatenate(weights, axis=0)  # [sum out, w_dim]
    A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
    values, vectors = np.linalg.eigh(A.T @ A)  # ascending; vectors in columns
    order = np.argsort(values)[::-1][:count]
    values, dirs = np.maximum(values[order], 0.0), vectors[:, order].T  # [count], [count, w_dim] (PSD: no < 0)
    pick = np.abs(dirs).argmax(axis=1)
    dirs = dirs * np.sign(dirs[np.arange(len(dirs)), pick])[:, None]
    return values, dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def write_directions(
    synthesis: nn.Module, ws_layers: Sequence[WsSlot], out_dir: Path, count: int = DEFAULT_COUNT
) -> Directions:
    """Compute every range's directions, write ``directions.npy`` into ``out_dir``; the manifest entry."""
    weights = affine_weights(synthesis, ws_layers)
    w_dim = weights[0].shape[1]
    k = min(count, w_dim)
    ranges, arrays = [], []
    for name, layers in range_layers(ws_layers).items():
        values, dirs = sefa([weights[i] for i in layers], k)
        ranges.append(DirectionRange(name=name, layers=layers, eigenvalues=[float(v) for v in values]))
        arrays.append(dirs)
    np.save(out_dir / DIRECTIONS_FILE, np.stack(arrays).astype(np.float32))  # [ranges, count, w_dim]
    return Directions(file=DIRECTIONS_FILE, method="sefa", count=k, ranges=ranges)
