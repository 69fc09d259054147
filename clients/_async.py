"""The asyncio client: :class:`Client`'s methods as coroutines over ``grpc.aio`` channels.

::

    async with AsyncClient(["10.0.0.1:50051", "10.0.0.2:50051"]) as client:
        images = await client.generate("ffhq", range(8), psi=0.7)
        async for item in client.stream_generate("ffhq", range(1000)):
            item.image.save(f"out/{item.seed}.png")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc
import grpc.aio
import numpy.typing as npt

from styleserve.v1 import styleserve_pb2 as pb
from styleserve.wire import F32

from . import _requests as rq
from ._client import ClientBase, health_check, health_status
from ._retry import Attempts
from ._types import (
    Edit,
    GeneratedImage,
    GridResult,
    MappedW,
    ModelInfo,
    Noise,
    Plan,
    Source,
    StreamResult,
    Transform,
)

T = TypeVar("T")


class AsyncClient(ClientBase[grpc.aio.Channel]):
    """An asyncio styleserve client; options, round-robin, retries and errors as :class:`Client`.

    The ``grpc.aio`` channels are opened at the first call, on the running event loop, so the client can be
    built outside it; use it on one loop only. A ready-made ``channel`` must be a ``grpc.aio.Channel``.
    """

    def _channels_open(self) -> list[grpc.aio.Channel]:
        self._check_open()
        self._open_stubs(grpc.aio.insecure_channel, grpc.aio.secure_channel)
        return self._channels

    def _stub(self, index: int) -> Any:
        return self._open_stubs(grpc.aio.insecure_channel, grpc.aio.secure_channel)[index]

    # ------------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Close the channels (if this client created them). Idempotent."""
        if not self._closed:
            self._closed = True
            if self._owns_channel:
                await asyncio.gather(*(ch.close() for ch in self._channels))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _unary(self, rpc: rq.Unary[T], request: Any, timeout: float | None) -> T:
        for attempt in self._attempts(timeout):
            await asyncio.sleep(attempt.delay)
            with attempt.guard():
                call = getattr(self._stub(attempt.target), rpc.method)
                return rpc.decode(await call(request, timeout=attempt.timeout(), metadata=self._metadata))
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------------ health

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """grpc.health.v1 status, the best of the targets' (see :meth:`Client.health`)."""

        async def check(channel: grpc.aio.Channel) -> str:
            try:
                return health_status(await health_check(channel, service, timeout))
            except grpc.RpcError:
                return "UNREACHABLE"

        return rq.best_status(await asyncio.gather(*(check(ch) for ch in self._channels_open())))

    async def wait_until_serving(self, timeout: float = 60.0, *, poll_s: float = 0.1) -> str:
        """Poll health until ``SERVING``; returns the last status seen (``SERVING`` unless ``timeout`` ran out)."""
        end = time.monotonic() + timeout
        status = await self.health(timeout=min(5.0, timeout))
        while status != "SERVING" and time.monotonic() < end:
            await asyncio.sleep(poll_s)
            status = await self.health(timeout=min(5.0, max(0.1, end - time.monotonic())))
        return status

    # ------------------------------------------------------------------------ RPCs (see Client for the details)

    async def list_models(self, *, timeout: float | None = None) -> list[ModelInfo]:
        """Models this server serves."""
        return await self._unary(rq.LIST_MODELS, pb.ListModelsRequest(), timeout)

    async def get_model(self, name: str, *, timeout: float | None = None) -> ModelInfo:
        """One model's metadata."""
        return await self._unary(rq.GET_MODEL, pb.GetModelRequest(model=name), timeout)

    async def map(
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
        edits: Sequence[Edit] = (),
        timeout: float | None = None,
    ) -> list[MappedW]:
        """Seeds or explicit ``zs`` ``[N, z_dim]`` -> one :class:`MappedW` each (see :meth:`Client.map`)."""
        request = rq.map_request(model, seeds, zs, class_index, psi, cutoff, return_w, cache, edits)
        return await self._unary(rq.MAP, request, timeout)

    async def generate(
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
        transform: Transform | Sequence[Transform] | None = None,
    ) -> list[GeneratedImage]:
        """Seeds -> images, in seed order; split into requests of ``REQUEST_CHUNK`` seeds as :meth:`Client.generate`."""
        seeds = list(seeds)
        options = (class_index, psi, cutoff, noise, format, jpeg_quality, return_ws)
        rq.generate_request(model, seeds, *options, transform)  # checks every seed before the first request
        per_seed = None if transform is None or isinstance(transform, Transform) else list(transform)
        images: list[GeneratedImage] = []
        for k, chunk in enumerate(rq.chunks(seeds)):
            a = k * rq.REQUEST_CHUNK
            moves = transform if per_seed is None else per_seed[a : a + len(chunk)]
            request = rq.generate_request(model, chunk, *options, moves)
            got: list[GeneratedImage] = await self._unary(rq.GENERATE, request, timeout)
            images += got
        return images

    async def synthesize(
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
        request = rq.synthesize_request(model, plans, format, jpeg_quality, return_ws)
        return await self._unary(rq.SYNTHESIZE, request, timeout)

    async def style_mix_grid(
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
        transform: Transform | None = None,
    ) -> GridResult:
        """Rows x columns, the ``col_styles`` ws indices from the columns (ints are seed sources)."""
        request = rq.grid_request(model, rows, cols, col_styles, noise, format, compose, transform)
        return await self._unary(rq.STYLE_MIX_GRID, request, timeout)

    async def put_w(self, model: str, w: npt.ArrayLike, *, timeout: float | None = None) -> str:
        """Cache a w ``[w_dim]`` or w+ ``[num_ws, w_dim]``; returns its content-derived id."""
        return await self._unary(rq.PUT_W, rq.put_w_request(model, w), timeout)

    async def get_w(self, model: str, w_id: str, *, timeout: float | None = None) -> F32:
        """A cached w or w+ by id."""
        return await self._unary(rq.GET_W, pb.GetWRequest(model=model, w_id=w_id), timeout)

    async def delete_w(self, model: str, w_id: str, *, timeout: float | None = None) -> bool:
        """Drop a cached w; False when the id was not cached."""
        return await self._unary(rq.DELETE_W, pb.DeleteWRequest(model=model, w_id=w_id), timeout)

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
        idle_timeout: float | None = None,
        transform: Transform | None = None,
    ) -> AsyncIterator[StreamResult]:
        """An async iterator of images as the server finishes them (see :meth:`Client.stream_generate`).

        Arguments are checked now; the call starts at the first ``__anext__`` and is cancelled when the
        iterator is closed (``aclose()``) early. Each item must arrive within ``idle_timeout`` seconds (default:
        the client's ``timeout``); ``timeout`` (default None = none) bounds the whole stream.
        """
        request = rq.stream_request(
            model, seeds, plans, class_index, psi, cutoff, noise, format, jpeg_quality, return_ws, transform
        )
        self._check_open()
        idle = rq.check_idle_timeout(self.timeout if idle_timeout is None else idle_timeout)
        return self._stream(request, timeout, idle)

    async def _stream(
        self, request: pb.StreamGenerateRequest, timeout: float | None, idle: float | None
    ) -> AsyncIterator[StreamResult]:
        self._check_open()
        for attempt in Attempts(self.retry, timeout, next(self._round_robin), len(self.targets)):
            await asyncio.sleep(attempt.delay)
            with attempt.guard():
                stub = self._stub(attempt.target)
                call = stub.StreamGenerate(request, timeout=attempt.timeout(), metadata=self._metadata)
                try:
                    while True:
                        try:
                            item = await asyncio.wait_for(call.read(), idle)
                        except asyncio.TimeoutError:
                            raise rq.idle_deadline_error(idle) from None
                        if item is grpc.aio.EOF:
                            break
                        attempt.received = True
                        yield StreamResult.from_proto(item)
                finally:
                    call.cancel()
                return
