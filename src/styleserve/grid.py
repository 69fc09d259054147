"""Style-mixing grids as the official ``style_mixing.py`` draws them (numpy only).

Rows take every layer from their row source, except the ``col_styles`` layers, which come from the
column source. The composed image has the column sources' own images along the top, the row
sources' own images down the left, and a black top-left corner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from styleserve.errors import InvalidArgument

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

DEFAULT_COL_STYLES = tuple(range(7))
"""The official default ``--styles=0-6``: coarse and middle layers from the columns."""


def mix_grid_ws(row_ws: F32, col_ws: F32, col_styles: Sequence[int]) -> F32:
    """``[R, num_ws, w_dim]`` x ``[C, num_ws, w_dim]`` -> ``[R * C, num_ws, w_dim]`` (row-major)."""
    num_ws = row_ws.shape[1]
    for i, layer in enumerate(col_styles):
        if not 0 <= layer < num_ws:
            raise InvalidArgument(f"col_styles[{i}]", f"layer {layer} out of range 0..{num_ws - 1}")
    out = np.repeat(row_ws[:, None], col_ws.shape[0], axis=1).copy()  # [R, C, num_ws, w_dim]
    idx = list(col_styles)
    out[:, :, idx] = col_ws[None, :, idx]
    return out.reshape(-1, *row_ws.shape[1:])


def compose_grid(row_imgs: npt.NDArray[Any], col_imgs: npt.NDArray[Any], cell_imgs: npt.NDArray[Any]) -> U8:
    """NHWC uint8 images -> one ``[(R+1) H, (C+1) W, ch]`` canvas with the sources along the edges."""
    R, C = row_imgs.shape[0], col_imgs.shape[0]
    H, W, ch = row_imgs.shape[1:]
    canvas = np.zeros(((R + 1) * H, (C + 1) * W, ch), dtype=np.uint8)
    for c in range(C):
        canvas[:H, (c + 1) * W : (c + 2) * W] = col_imgs[c]
    for r in range(R):
        canvas[(r + 1) * H : (r + 2) * H, :W] = row_imgs[r]
        for c in range(C):
            canvas[(r + 1) * H : (r + 2) * H, (c + 1) * W : (c + 2) * W] = cell_imgs[r * C + c]
    return canvas
