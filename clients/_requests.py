"""Request building and response decoding shared by the sync and the asyncio client.

Each ``*_request`` function checks its arguments (``ValueError`` for what the client can reject without the
server) and returns the request message; each :class:`Unary` names an RPC and decodes its response.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
import numpy as np
import numpy.typing as npt

from styleserve.v1 import styleserve_pb2 as pb
from styleserve.wire import F32, tensor_from_proto, tensor_to_proto

from ._errors import DeadlineExceededError
from ._types import (
    Edit,
    GeneratedImage,
    GridResult,
    MappedW,
    ModelInfo,
    Noise,
    Plan,
    Source,
    Transform,
    as_source,
    check_seed,
    check_uint,
    output_proto,
    truncation_proto,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Unary(Generic[T]):
    """A unary RPC: the stub's method name and the decoder of its response."""

    method: str
    decode: Callable[[Any], T]


def _images(resp: pb.SynthesizeResponse) -> list[GeneratedImage]:
    return [GeneratedImage.from_proto(img) for img in resp.images]


def _grid(resp: pb.StyleMixGridResponse) -> GridResult:
    grid = GeneratedImage.from_proto(resp.grid) if resp.HasField("grid") else None
    return GridResult([GeneratedImage.from_proto(c) for c in resp.cells], grid)


LIST_MODELS = Unary[list[ModelInfo]]("ListModels", lambda r: [ModelInfo.from_proto(m) for m in r.models])
GET_MODEL = Unary[ModelInfo]("GetModel", ModelInfo.from_proto)
MAP = Unary[list[MappedW]]("Map", lambda r: [MappedW.from_proto(m) for m in r.results])
GENERATE = Unary[list[GeneratedImage]]("Generate", _images)
SYNTHESIZE = Unary[list[GeneratedImage]]("Synthesize", _images)
STYLE_MIX_GRID = Unary[GridResult]("StyleMixGrid", _grid)
PUT_W = Unary[str]("PutW", lambda r: str(r.w_id))
GET_W = Unary[F32]("GetW", lambda r: tensor_from_proto(r.w))
DELETE_W = Unary[bool]("DeleteW", lambda r: bool(r.deleted))


# ---------------------------------------------------------------------------- argument checks


def seeds_list(seeds: Iterable[int], what: str = "seeds") -> list[int]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise ValueError(f"{what} must be a sequence of integers, got {type(seeds).__name__}")
    return [check_seed(s, f"{what}[{i}]") for i, s in enumerate(seeds)]


def plans_list(plans: Sequence[Plan]) -> list[pb.StylePlan]:
    out = []
    for i, p in enumerate(plans):
        if not isinstance(p, Plan):
            raise ValueError(f"plans[{i}] must be a Plan, got {type(p).__name__}")
        out.append(p.to_proto())
    return out


def noise_proto(noise: Noise | None) -> pb.NoiseControl | None:
    if noise is None:
        return None
    if not isinstance(noise, Noise):
        raise ValueError(f"noise must be a Noise, got {type(noise).__name__}")
    return noise.to_proto()


# ---------------------------------------------------------------------------- requests


def map_request(
    model: str,
    seeds: Iterable[int] | None,
    zs: npt.ArrayLike | None,
    class_index: int | Sequence[int | None] | None,
    psi: float | None,
    cutoff: int | None,
    return_w: bool,
    cache: bool,
    edits: Sequence[Edit] = (),
) -> pb.MapRequest:
    if (seeds is None) == (zs is None):
        raise ValueError("give exactly one of seeds or zs")
    if not (return_w or cache):
        raise ValueError("nothing to return: set return_w and/or cache")
    latents: list[pb.Latent] = []
    if seeds is not None:
        latents = [pb.Latent(seed=s) for s in seeds_list(seeds)]
    else:
        z = np.asarray(zs, dtype=np.float32)
        if z.ndim != 2:
            raise ValueError(f"zs must be [N, z_dim], got shape {z.shape}")
        latents = [pb.Latent(z=tensor_to_proto(row)) for row in z]  # row: [z_dim]
    if class_index is not None:
        if isinstance(class_index, Sequence):
            if len(class_index) != len(latents):
                raise ValueError(f"class_index has {len(class_index)} entries for {len(latents)} latents")
            classes: Sequence[int | None] = class_index
        else:
            classes = [class_index] * len(latents)
        for i, (lat, c) in enumerate(zip(latents, classes, strict=True)):
            if c is not None:
                lat.class_index = check_uint(c, f"class_index[{i}]")
    if not all(isinstance(e, Edit) for e in edits):
        raise ValueError("edits must be Edit values")
    return pb.MapRequest(
        model=model,
        latents=latents,
        truncation=truncation_proto(psi, cutoff),
        return_w=return_w,
        cache=cache,
        edits=[e.to_proto() for e in edits],
    )


def generate_request(
    model: str,
    seeds: Iterable[int],
    class_index: int | None,
    psi: float | None,
    cutoff: int | None,
    noise: Noise | None,
    format: str,
    jpeg_quality: int | None,
    return_ws: bool,
    transform: Transform | Sequence[Transform] | None = None,
) -> pb.GenerateRequest:
    """``transform``: one for every seed, or one per seed (ModelInfo.takes_transform); None = identity."""
    request = pb.GenerateRequest(
        model=model,
        seeds=seeds_list(seeds),
        truncation=truncation_proto(psi, cutoff),
        output=output_proto(format, jpeg_quality, return_ws),
    )
    if class_index is not None:
        request.class_index = check_uint(class_index, "class_index")
    if (n := noise_proto(noise)) is not None:
        request.noise.CopyFrom(n)
    request.transforms.extend(transform_protos(transform, len(request.seeds)))
    return request


def transform_protos(transform: Transform | Sequence[Transform] | None, n: int) -> list[pb.InputTransform]:
    """None -> [] (identity); one Transform -> [it]; a sequence -> one per image (``n`` of them)."""
    if transform is None:
        return []
    if isinstance(transform, Transform):
        return [transform.to_proto()]
    moves = list(transform)
    if len(moves) != n or not all(isinstance(t, Transform) for t in moves):
        raise ValueError(f"transform must be a Transform or one Transform per image ({n}), got {len(moves)} values")
    return [t.to_proto() for t in moves]


def synthesize_request(
    model: str, plans: Sequence[Plan], format: str, jpeg_quality: int | None, return_ws: bool
) -> pb.SynthesizeRequest:
    return pb.SynthesizeRequest(
        model=model, plans=plans_list(plans), output=output_proto(format, jpeg_quality, return_ws)
    )


def grid_request(
    model: str,
    rows: Sequence[Source | int],
    cols: Sequence[Source | int],
    col_styles: Iterable[int],
    noise: Noise | None,
    format: str,
    compose: bool,
    transform: Transform | None = None,
) -> pb.StyleMixGridRequest:
    request = pb.StyleMixGridRequest(
        model=model,
        rows=[as_source(r).to_proto() for r in rows],
        cols=[as_source(c).to_proto() for c in cols],
        col_styles=[check_uint(x, f"col_styles[{i}]") for i, x in enumerate(col_styles)],
        output=output_proto(format, None, False),
        compose=compose,
    )
    if (n := noise_proto(noise)) is not None:
        request.noise.CopyFrom(n)
    if transform is not None:
        request.transform.CopyFrom(transform_protos(transform, 1)[0])
    return request


def put_w_request(model: str, w: npt.ArrayLike) -> pb.PutWRequest:
    arr = np.asarray(w, dtype=np.float32)
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise ValueError(f"w must be [w_dim] or [num_ws, w_dim], got shape {arr.shape}")
    return pb.PutWRequest(model=model, w=tensor_to_proto(arr))


def stream_request(
    model: str,
    seeds: range | None,
    plans: Sequence[Plan] | None,
    class_index: int | None,
    psi: float | None,
    cutoff: int | None,
    noise: Noise | None,
    format: str,
    jpeg_quality: int | None,
    return_ws: bool,
    transform: Transform | None = None,
) -> pb.StreamGenerateRequest:
    if (seeds is None) == (plans is None):
        raise ValueError("give exactly one of seeds or plans")
    request = pb.StreamGenerateRequest(model=model, output=output_proto(format, jpeg_quality, return_ws))
    if seeds is not None:
        if not isinstance(seeds, range) or seeds.step != 1:
            raise ValueError(f"seeds must be a range with step 1, got {seeds!r}")
        if len(seeds) > 0:
            check_seed(seeds.start, "seeds.start")
            check_seed(seeds.stop - 1, "seeds.stop - 1")
        request.seeds.CopyFrom(pb.SeedRange(start=max(seeds.start, 0), stop=max(seeds.stop, seeds.start, 0)))
        request.truncation.CopyFrom(truncation_proto(psi, cutoff))
        if class_index is not None:
            request.class_index = check_uint(class_index, "class_index")
        if (n := noise_proto(noise)) is not None:
            request.noise.CopyFrom(n)
        if transform is not None:
            request.transform.CopyFrom(transform_protos(transform, 1)[0])
    else:
        assert plans is not None
        if any(v is not None for v in (class_index, psi, cutoff, noise, transform)):
            raise ValueError("class_index, psi, cutoff, noise, transform apply to seed ranges; put them in the plans")
        request.plans.CopyFrom(pb.PlanList(plans=plans_list(plans)))
    return request


# ---------------------------------------------------------------------------- targets and health


REQUEST_CHUNK = 16
"""Seeds per ``Generate`` request when a call has more (the CLI and :meth:`Client.generate` split alike); the
server's default ``--max-images-per-request`` is 64 and its default batch 16."""


def chunks(items: Sequence[T], size: int = REQUEST_CHUNK) -> list[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size`` (one empty slice for no items)."""
    return [items[i : i + size] for i in range(0, len(items), size)] or [items[:0]]


def check_idle_timeout(idle: float | None) -> float | None:
    """A stream's per-item deadline: positive seconds, or None (none)."""
    if idle is not None and not (isinstance(idle, (int, float)) and 0 < idle < float("inf")):
        raise ValueError(f"idle_timeout must be positive seconds or None, got {idle!r}")
    return None if idle is None else float(idle)


def idle_deadline_error(idle: float | None) -> DeadlineExceededError:
    """What a stream raises when no item came within ``idle`` seconds."""
    return DeadlineExceededError(
        grpc.StatusCode.DEADLINE_EXCEEDED, f"no stream item within {idle:g} s (idle_timeout); the stream was cancelled"
    )


DEFAULT_PORT = 50051
"""The server's default port (``styleserve serve --port``): a target without a port means this one."""


_OTHER_SCHEMES = ("unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:", "xds:", "google-c2p:")


def with_default_port(target: str) -> str:
    """``"host"`` -> ``"host:50051"``, ``"[::1]"`` or ``"::1"`` -> ``"[::1]:50051"``, ``"dns:///svc"`` ->
    ``"dns:///svc:50051"``; a target with a port or another gRPC scheme (``unix:``, ``ipv4:``...) is kept as is.

    Without this, gRPC reads a bare ``host`` as ``host:443``.
    """
    if target.startswith(_OTHER_SCHEMES):
        return target
    prefix, rest = "", target
    m = re.match(r"^(dns:(?://[^/]*/)?)(.*)$", target)
    if m is not None:
        prefix, rest = m.group(1), m.group(2)
    if rest.startswith("["):
        return target if "]:" in rest else f"{prefix}{rest}:{DEFAULT_PORT}"
    if rest.count(":") >= 2:  # a bare IPv6 address
        return f"{prefix}[{rest}]:{DEFAULT_PORT}"
    if ":" not in rest and rest:
        return f"{prefix}{rest}:{DEFAULT_PORT}"
    return target


def parse_targets(target: str | Sequence[str]) -> tuple[str, ...]:
    """``"h:p"``, ``"h1:p,h2:p"`` or a sequence of targets -> a non-empty tuple of targets (a missing port is
    :data:`DEFAULT_PORT`)."""
    parts = target.split(",") if isinstance(target, str) else list(target)
    targets = []
    for t in parts:
        if not isinstance(t, str):
            raise ValueError(f"targets must be strings, got {type(t).__name__}")
        if t.strip():
            targets.append(with_default_port(t.strip()))
    if not targets:
        raise ValueError(f"no target in {target!r}")
    return tuple(targets)


HEALTH_RANK = {"SERVING": 0, "NOT_SERVING": 1, "SERVICE_UNKNOWN": 2, "UNKNOWN": 3, "UNREACHABLE": 4}


def best_status(statuses: Iterable[str]) -> str:
    """The health of several replicas: the best one's (``SERVING`` if any serves)."""
    return min(statuses, key=lambda s: HEALTH_RANK.get(s, len(HEALTH_RANK)), default="UNREACHABLE")
