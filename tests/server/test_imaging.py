"""PNG/JPEG encoding: fpng and Pillow write different bytes but identical pixels, for every shape and channel count."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from styleserve.server import imaging
from styleserve.server.convert import Output

from styleserve.errors import ConfigError


def _decode(data: bytes) -> np.ndarray:
    arr = np.asarray(Image.open(io.BytesIO(data)))
    return arr[..., None] if arr.ndim == 2 else arr


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    c=st.sampled_from([1, 3, 4]),
    seed=st.integers(0, 2**32 - 1),
    smooth=st.booleans(),
)
def test_png_encoders_are_pixel_identical(h: int, w: int, c: int, seed: int, smooth: bool) -> None:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    if smooth:  # Long runs, as in real images, exercise the encoders' match paths.
        img = np.repeat(img[:, :1], w, axis=1)
    for encoder in ("auto", "pillow", "fpng"):
        data = imaging.encode_png(img, encoder)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        np.testing.assert_array_equal(_decode(data), img)


def test_fpng_is_used_for_rgb_and_rgba_and_pillow_for_gray() -> None:
    assert imaging.fpng_available()
    assert imaging.resolve_png_encoder("auto") == "fpng"
    assert imaging.png_encoder_for(3, "fpng") == "fpng"
    assert imaging.png_encoder_for(4, "fpng") == "fpng"
    assert imaging.png_encoder_for(1, "fpng") == "pillow"
    img = np.zeros((8, 8, 3), np.uint8)
    # The two encoders really differ in bytes (so the pixel test above compares two implementations).
    assert imaging.encode_png(img, "fpng") != imaging.encode_png(img, "pillow")


def test_unknown_encoder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="png_encoder"):
        imaging.resolve_png_encoder("zopfli")


def test_encode_formats_carry_shape() -> None:
    img = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    for fmt in ("png", "jpeg", "raw_uint8"):
        pb_img = imaging.encode(img, Output(fmt, 90))
        assert (pb_img.width, pb_img.height, pb_img.channels) == (24, 16, 3)
    png = imaging.encode(img, Output("png", 90))
    np.testing.assert_array_equal(_decode(png.data), img)
    jpg = _decode(imaging.encode(img, Output("jpeg", 95)).data)
    assert jpg.shape == img.shape
