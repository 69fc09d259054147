"""The wire format of tensors, shared by the server and the clients: numpy <-> ``styleserve.v1.Tensor``
(float32, little-endian, row-major). Needs protobuf; ``import styleserve`` does not load it."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from styleserve.v1 import styleserve_pb2 as pb

F32 = npt.NDArray[np.float32]

_WIRE_DTYPE = np.dtype("<f4")
_UINT32_MAX = 2**32 - 1


def tensor_to_proto(arr: npt.ArrayLike) -> pb.Tensor:
    """A real-valued array -> ``Tensor`` (cast to float32; shape kept)."""
    a = np.asarray(arr)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"tensor must hold real numbers, got dtype {a.dtype}")
    if any(d > _UINT32_MAX for d in a.shape):
        raise ValueError(f"tensor dimension too large for the wire format: shape {a.shape}")
    data = np.ascontiguousarray(a, dtype=_WIRE_DTYPE).tobytes()
    return pb.Tensor(shape=list(a.shape), data=data)


def tensor_from_proto(t: pb.Tensor) -> F32:
    """``Tensor`` -> a new, writable float32 array of its shape; ValueError if the byte length does not match."""
    shape = tuple(int(d) for d in t.shape)
    expected = math.prod(shape) * _WIRE_DTYPE.itemsize
    if len(t.data) != expected:
        raise ValueError(
            f"malformed Tensor: shape {list(shape)} needs {expected} bytes of float32, got {len(t.data)} bytes"
        )
    return np.frombuffer(t.data, dtype=_WIRE_DTYPE).astype(np.float32).reshape(shape)
