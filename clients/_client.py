"""The synchronous gRPC client: one method per RPC of ``styleserve.v1.StyleServe``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from styleserve.v1 import styleserve_pb2 as pb
from styleserve.v1 import styleserve_pb2_grpc as pb_grpc

from ._errors import from_rpc_error
from ._tensor import F32, tensor_from_proto, tensor_to_proto
from ._types import (
    GeneratedImage,
    GridResult,
    MappedW,
    ModelInfo,
    Noise,
    Plan,
    Source,
    StreamResult,
    as_source,
    check_seed,
    check_uint,
    output_proto,
    truncation_proto,
)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """The one place a ``grpc.RpcError`` becomes a :class:`StyleServeRpcError`."""
    try:
        yield
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc


def _seeds(seeds: Iterable[int], what: str = "seeds") -> list[int]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise ValueError(f"{what} must be a sequence of integers, got {type(seeds).__name__}")
    return [check_seed(s, f"{what}[{i}]") for i, s in enumerate(seeds)]


def _plans(plans: Sequence[Plan]) -> list[pb.StylePlan]:
    out = []
    for i, p in enumerate(plans):
        if not isinstance(p, Plan):
            raise ValueError(f"plans[{i}] must be a Plan, got {type(p).__name__}")
        out.append(p.to_proto())
    return out


def _noise(noise: Noise | None) -> pb.NoiseControl | None:
    if noise is None:
        return None
    if not isinstance(noise, Noise):
        raise ValueError(f"noise must be a Noise, got {type(noise).__name__}")
    return noise.to_proto()


class Client:
    """A synchronous styleserve client over one gRPC channel.

    ``timeout`` (seconds, None = no deadline) applies to every call unless a method's ``timeout`` overrides it;
    for :meth:`stream_generate` it bounds the whole stream. With ``token``, every call sends
    ``authorization: Bearer <token>``. ``tls`` (implied by ``root_certificates``) uses
    ``grpc.ssl_channel_credentials(root_certificates)``. A ready-made ``channel`` is used as given (its own
    options apply) and is not closed by :meth:`close`.

    Raises :class:`StyleServeRpcError` subclasses for failed RPCs and ``ValueError`` for arguments the client
    can reject without asking the server.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        timeout: float | None = 60.0,
        max_message_bytes: int = 64 * 2**20,
        channel: grpc.Channel | None = None,
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive or None, got {timeout}")
        if not isinstance(max_message_bytes, int) or max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be a positive integer, got {max_message_bytes!r}")
        if token is not None and (not token or any(ch.isspace() for ch in token)):
            raise ValueError("token must be non-empty and contain no whitespace")
        self.target = target
        self.timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        if channel is not None:
            if tls or root_certificates is not None:
                raise ValueError("tls/root_certificates cannot be applied to a ready-made channel")
            self._channel = channel
            self._owns_channel = False
        else:
            options = [
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ]
            if tls or root_certificates is not None:
                creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
                self._channel = grpc.secure_channel(target, creds, options=options)
            else:
                self._channel = grpc.insecure_channel(target, options=options)
            self._owns_channel = True
        self._stub: Any = pb_grpc.StyleServeStub(self._channel)  # type: ignore[no-untyped-call]
        self._closed = False

    # ------------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the channel (if this client created it). Idempotent."""
        if not self._closed:
            self._closed = True
            if self._owns_channel:
                self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.target!r})"

    def _call(self, rpc: Any, request: Any, timeout: float | None) -> Any:
        if self._closed:
            raise ValueError("the client is closed")
        with _translated():
            return rpc(request, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata)

    # ------------------------------------------------------------------------ health

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """grpc.health.v1 status: ``SERVING``, ``NOT_SERVING`` (warming up or draining), ``UNREACHABLE``."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout or 5.0)
        except grpc.RpcError:
            return "UNREACHABLE"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))

    def wait_until_serving(self, timeout: float = 60.0, *, poll_s: float = 0.1) -> str:
        """Poll health until ``SERVING``; returns the last status seen (``SERVING`` unless ``timeout`` ran out)."""
        end = time.monotonic() + timeout
        status = self.health(timeout=min(5.0, timeout))
        while status != "SERVING" and time.monotonic() < end:
            time.sleep(poll_s)
            status = self.health(timeout=min(5.0, max(0.1, end - time.monotonic())))
        return status

    # ------------------------------------------------------------------------ models

    def list_models(self, *, timeout: float | None = None) -> list[ModelInfo]:
        """Models this server serves."""
        resp: pb.ListModelsResponse = self._call(self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return [ModelInfo.from_proto(m) for m in resp.models]

    def get_model(self, name: str, *, timeout: float | None = None) -> ModelInfo:
        """One model's metadata."""
        resp: pb.ModelInfo = self._call(self._stub.GetModel, pb.GetModelRequest(model=name), timeout)
        return ModelInfo.from_proto(resp)

    # ------------------------------------------------------------------------ latents

    def map(
        self,
        model: str,
        *,
        seeds: Iterable[int] | None = None,
        zs: npt.ArrayLike | None = None,
        class_index: int | Sequence[int | None] | None = None,
        psi: float | None = None,
        cutoff: int | None = None,
        return_w: bool = True,
        cache: bool = False,
        timeout: float | None = None,
    ) -> list[MappedW]:
        """Seeds or explicit ``zs`` ``[N, z_dim]`` -> one :class:`MappedW` each, in order.

        ``class_index`` is one class for all latents or one (or None) per latent; ``cache`` stores the ws
        on the server and returns their ids.
        """
        if (seeds is None) == (zs is None):
            raise ValueError("give exactly one of seeds or zs")
        if not (return_w or cache):
            raise ValueError("nothing to return: set return_w and/or cache")
        latents: list[pb.Latent] = []
        if seeds is not None:
            latents = [pb.Latent(seed=s) for s in _seeds(seeds)]
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
        request = pb.MapRequest(
            model=model, latents=latents, truncation=truncation_proto(psi, cutoff), return_w=return_w, cache=cache
        )
        resp: pb.MapResponse = self._call(self._stub.Map, request, timeout)
        return [MappedW.from_proto(r) for r in resp.results]

    # ------------------------------------------------------------------------ images

    def generate(
        self,
        model: str,
        seeds: Iterable[int],
        *,
        class_index: int | None = None,
        psi: float | None = None,
        cutoff: int | None = None,
        noise: Noise | None = None,
        format: str = "png",
        jpeg_quality: int | None = None,
        return_ws: bool = False,
        timeout: float | None = None,
    ) -> list[GeneratedImage]:
        """Seeds -> images (mapping, truncation and synthesis on the server), in seed order."""
        request = pb.GenerateRequest(
            model=model,
            seeds=_seeds(seeds),
            truncation=truncation_proto(psi, cutoff),
            output=output_proto(format, jpeg_quality, return_ws),
        )
        if class_index is not None:
            request.class_index = check_uint(class_index, "class_index")
        if (n := _noise(noise)) is not None:
            request.noise.CopyFrom(n)
        resp: pb.SynthesizeResponse = self._call(self._stub.Generate, request, timeout)
        return [GeneratedImage.from_proto(img) for img in resp.images]

    def synthesize(
        self,
        model: str,
        plans: Sequence[Plan],
        *,
        format: str = "png",
        jpeg_quality: int | None = None,
        return_ws: bool = False,
        timeout: float | None = None,
    ) -> list[GeneratedImage]:
        """One image per :class:`Plan`, in order."""
        request = pb.SynthesizeRequest(
            model=model, plans=_plans(plans), output=output_proto(format, jpeg_quality, return_ws)
        )
        resp: pb.SynthesizeResponse = self._call(self._stub.Synthesize, request, timeout)
        return [GeneratedImage.from_proto(img) for img in resp.images]

    def style_mix_grid(
        self,
        model: str,
        rows: Sequence[Source | int],
        cols: Sequence[Source | int],
        *,
        col_styles: Iterable[int] = range(7),
        noise: Noise | None = None,
        format: str = "png",
        compose: bool = True,
        timeout: float | None = None,
    ) -> GridResult:
        """Rows x columns, the ``col_styles`` ws indices from the columns (ints are seed sources)."""
        request = pb.StyleMixGridRequest(
            model=model,
            rows=[as_source(r).to_proto() for r in rows],
            cols=[as_source(c).to_proto() for c in cols],
            col_styles=[check_uint(x, f"col_styles[{i}]") for i, x in enumerate(col_styles)],
            output=output_proto(format, None, False),
            compose=compose,
        )
        if (n := _noise(noise)) is not None:
            request.noise.CopyFrom(n)
        resp: pb.StyleMixGridResponse = self._call(self._stub.StyleMixGrid, request, timeout)
        grid = GeneratedImage.from_proto(resp.grid) if resp.HasField("grid") else None
        return GridResult([GeneratedImage.from_proto(c) for c in resp.cells], grid)

    # ------------------------------------------------------------------------ w cache

    def put_w(self, model: str, w: npt.ArrayLike, *, timeout: float | None = None) -> str:
        """Cache a w ``[w_dim]`` or w+ ``[num_ws, w_dim]``; returns its content-derived id."""
        arr = np.asarray(w, dtype=np.float32)
        if arr.ndim not in (1, 2) or arr.size == 0:
            raise ValueError(f"w must be [w_dim] or [num_ws, w_dim], got shape {arr.shape}")
        request = pb.PutWRequest(model=model, w=tensor_to_proto(arr))
        resp: pb.PutWResponse = self._call(self._stub.PutW, request, timeout)
        return resp.w_id

    def get_w(self, model: str, w_id: str, *, timeout: float | None = None) -> F32:
        """A cached w or w+ by id."""
        resp: pb.GetWResponse = self._call(self._stub.GetW, pb.GetWRequest(model=model, w_id=w_id), timeout)
        return tensor_from_proto(resp.w)

    def delete_w(self, model: str, w_id: str, *, timeout: float | None = None) -> bool:
        """Drop a cached w; False when the id was not cached."""
        resp: pb.DeleteWResponse = self._call(self._stub.DeleteW, pb.DeleteWRequest(model=model, w_id=w_id), timeout)
        return bool(resp.deleted)

    # ------------------------------------------------------------------------ streaming

    def stream_generate(
        self,
        model: str,
        seeds: range | None = None,
        plans: Sequence[Plan] | None = None,
        *,
        class_index: int | None = None,
        psi: float | None = None,
        cutoff: int | None = None,
        noise: Noise | None = None,
        format: str = "png",
        jpeg_quality: int | None = None,
        return_ws: bool = False,
        timeout: float | None = None,
    ) -> Iterator[StreamResult]:
        """A seed range (step 1) or plans -> images as the server finishes them.

        Arguments are checked now; the call starts at the first ``next()`` and is cancelled if the iterator is
        closed early. ``class_index``, ``psi``, ``cutoff`` and ``noise`` apply to seed ranges only.
        """
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
            if (n := _noise(noise)) is not None:
                request.noise.CopyFrom(n)
        else:
            assert plans is not None
            if any(v is not None for v in (class_index, psi, cutoff, noise)):
                raise ValueError("class_index, psi, cutoff and noise apply to seed ranges; put them in the plans")
            request.plans.CopyFrom(pb.PlanList(plans=_plans(plans)))
        if self._closed:
            raise ValueError("the client is closed")
        return self._stream(request, self.timeout if timeout is None else timeout)

    def _stream(self, request: pb.StreamGenerateRequest, timeout: float | None) -> Iterator[StreamResult]:
        with _translated():
            call = self._stub.StreamGenerate(request, timeout=timeout, metadata=self._metadata)
            try:
                for item in call:
                    yield StreamResult.from_proto(item)
            finally:
                call.cancel()
