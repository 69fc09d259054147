"""Image encoding for responses (Pillow; called from worker threads)."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from PIL import Image

from styleserve.v1 import styleserve_pb2 as pb

from .convert import FORMAT_ENUM, Output


def encode(img: npt.NDArray[np.generic], out: Output, png_compress_level: int = 1) -> pb.Image:
    """One image -> ``pb.Image``: uint8 ``[H, W, C]`` for png/jpeg/raw_uint8, float32 ``[C, H, W]`` for raw_float32."""
    if out.format == "raw_float32":
        c, h, w = img.shape
        data = np.ascontiguousarray(img, dtype="<f4").tobytes()
    else:
        h, w, c = img.shape
        if out.format == "raw_uint8":
            data = np.ascontiguousarray(img, dtype=np.uint8).tobytes()
        else:
            pil = Image.fromarray(np.ascontiguousarray(img[..., 0] if c == 1 else img, dtype=np.uint8))
            buf = io.BytesIO()
            if out.format == "jpeg":
                pil.save(buf, format="JPEG", quality=out.jpeg_quality)
            else:
                pil.save(buf, format="PNG", compress_level=png_compress_level)
            data = buf.getvalue()
    return pb.Image(data=data, format=FORMAT_ENUM[out.format], width=w, height=h, channels=c)
