"""Image encoding for responses (called from worker threads).

Lossless PNG goes through ``fpng`` (py-fpng-nb, a binding of Rich Geldreich's fpng: one fast deflate pass,
pixel-identical to any other PNG encoder's output, ~10-30x faster than zlib level 1) for RGB and RGBA images
where it is installed, and through Pillow (zlib at ``png_compress_level``) otherwise: grayscale images, hosts
without the wheel, or ``--png-encoder pillow``. The bytes differ between the two, the pixels never do.
JPEG is Pillow's libjpeg-turbo path.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from styleserve.errors import ConfigError
from styleserve.v1 import styleserve_pb2 as pb

from .convert import FORMAT_ENUM, Output

PNG_ENCODERS = ("auto", "fpng", "pillow")

_fpng_encode: Callable[[Any, int, int, int], bytes] | None
try:  # Optional: the server extra installs it; the Pillow path is the fallback.
    from fpng import fpng_ext as _fpng_ext

    _fpng_encode = _fpng_ext.encode_image_to_memory
except ImportError:  # pragma: no cover - depends on the host
    _fpng_encode = None


def fpng_available() -> bool:
    return _fpng_encode is not None


def resolve_png_encoder(name: str) -> str:
    """``auto`` -> ``fpng`` where installed, else ``pillow``; ``fpng`` without the wheel is a configuration error."""
    if name not in PNG_ENCODERS:
        raise ConfigError(f"png_encoder must be one of {', '.join(PNG_ENCODERS)}, got {name!r}")
    if name == "auto":
        return "fpng" if fpng_available() else "pillow"
    if name == "fpng" and not fpng_available():
        raise ConfigError("png_encoder fpng: the fpng package is not installed (pip install fpng)")
    return name


def png_encoder_for(channels: int, encoder: str) -> str:
    """The encoder that really writes an image of ``channels`` channels (fpng takes RGB and RGBA only)."""
    return "fpng" if encoder == "fpng" and channels in (3, 4) else "pillow"


def encode_png(img: npt.NDArray[np.uint8], encoder: str = "auto", compress_level: int = 1) -> bytes:
    """uint8 ``[H, W, C]`` -> PNG bytes."""
    h, w, c = img.shape
    if _fpng_encode is not None and png_encoder_for(c, resolve_png_encoder(encoder)) == "fpng":
        return _fpng_encode(np.ascontiguousarray(img, dtype=np.uint8).tobytes(), w, h, c)
    buf = io.BytesIO()
    _pil(img).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def _pil(img: npt.NDArray[np.generic]) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(img[..., 0] if img.shape[-1] == 1 else img, dtype=np.uint8))


def encode(
    img: npt.NDArray[np.generic], out: Output, png_compress_level: int = 1, png_encoder: str = "auto"
) -> pb.Image:
    """One image -> ``pb.Image``: uint8 ``[H, W, C]`` for png/jpeg/raw_uint8, float32 ``[C, H, W]`` for raw_float32."""
    if out.format == "raw_float32":
        c, h, w = img.shape
        data = np.ascontiguousarray(img, dtype="<f4").tobytes()
    else:
        h, w, c = img.shape
        if out.format == "raw_uint8":
            data = np.ascontiguousarray(img, dtype=np.uint8).tobytes()
        elif out.format == "jpeg":
            buf = io.BytesIO()
            _pil(img).save(buf, format="JPEG", quality=out.jpeg_quality)
            data = buf.getvalue()
        else:
            data = encode_png(img.astype(np.uint8, copy=False), png_encoder, png_compress_level)
    return pb.Image(data=data, format=FORMAT_ENUM[out.format], width=w, height=h, channels=c)
