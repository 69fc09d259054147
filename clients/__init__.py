"""The client side of styleserve: gRPC client libraries (sync and asyncio) and the ``styleserve`` client CLI.

Imports neither torch nor onnxruntime (only grpc, protobuf, numpy and, for decoding, Pillow)::

    from styleserve.clients import Client, Plan, Source, Style

    with Client("127.0.0.1:50051") as client:
        images = client.generate("ffhq", range(8), psi=0.7)
        images[0].save("seed0000.png")
        mixed = client.synthesize("ffhq", [Plan([Style(Source.from_seed(85)), Style(Source.from_seed(55), stop=7)])])
"""

from styleserve.wire import tensor_from_proto, tensor_to_proto

from ._async import AsyncClient
from ._client import Client
from ._errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    StyleServeRpcError,
    UnauthenticatedError,
    UnavailableError,
)
from ._retry import RetryPolicy
from ._types import (
    DirectionSet,
    Edit,
    GeneratedImage,
    GridResult,
    MappedW,
    ModelInfo,
    Noise,
    NoiseLayer,
    Plan,
    Source,
    StreamResult,
    Style,
    Transform,
    WsLayer,
)

__all__ = [
    "AsyncClient",
    "Client",
    "DeadlineExceededError",
    "DirectionSet",
    "Edit",
    "GeneratedImage",
    "GridResult",
    "InvalidArgumentError",
    "MappedW",
    "ModelInfo",
    "Noise",
    "NoiseLayer",
    "NotFoundError",
    "Plan",
    "ResourceExhaustedError",
    "RetryPolicy",
    "Source",
    "StreamResult",
    "Style",
    "StyleServeRpcError",
    "Transform",
    "UnauthenticatedError",
    "UnavailableError",
    "WsLayer",
    "tensor_from_proto",
    "tensor_to_proto",
]
