"""The ``styleserve.v1.StyleServe`` servicer: thin methods over :mod:`.convert` and :class:`~.engine.Engine`.

Every method is wrapped by :func:`_rpc` or :func:`_rpc_stream`. Their :func:`_handling` refuses work
while warming or draining, counts the call in flight for its model, records metrics, and translates
errors to status codes through :func:`.status.status_for` (the only place that does).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial, wraps
from typing import Any, TypeAlias, TypeVar

import grpc
import numpy as np
import numpy.typing as npt

from styleserve.errors import InvalidArgument, Overloaded
from styleserve.grid import DEFAULT_COL_STYLES, compose_grid, mix_grid_ws
from styleserve.latent import SEED_MAX
from styleserve.v1 import styleserve_pb2 as pb
from styleserve.v1 import styleserve_pb2_grpc as pb_grpc
from styleserve.wire import tensor_to_proto

from . import convert
from .convert import Output, Source, tensor_from_proto
from .engine import Engine, ServedModel
from .runtime import IMAGE_UINT8, NoiseSpec
from .status import status_for
from .wcache import content_key

F32 = npt.NDArray[np.float32]
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context: TypeAlias = Any  # grpc.aio.ServicerContext; grpc ships no type hints.

STREAM_DEPTH = 2  # Chunks of a stream in flight at once (backpressure: the next starts as one is sent).


def _deadline(context: Context) -> float | None:
    left = context.time_remaining()
    return None if left is None else time.monotonic() + left


@contextlib.asynccontextmanager
async def _handling(servicer: StyleServeServicer, method: str, request: Any, context: Context) -> AsyncIterator[None]:
    """One RPC's bookkeeping: refuse while warming or draining, count it in flight for its model's batchers,
    record metrics, and answer errors with the status code :func:`.status.status_for` gives."""
    engine = servicer.engine
    m = engine.metrics
    t0 = time.perf_counter()
    code = grpc.StatusCode.OK
    m.inflight.inc()
    try:
        engine.check_serving()
        sm = engine.models.get(getattr(request, "model", ""))
        with sm.busy() if sm is not None else contextlib.nullcontext():
            yield
    except (asyncio.CancelledError, GeneratorExit):
        code = grpc.StatusCode.CANCELLED
        raise
    except Exception as exc:
        code, details = status_for(exc, method)
        await context.abort(code, details)  # Raises.
    finally:
        m.inflight.dec()
        m.requests.labels(method, code.name).inc()
        m.request_seconds.labels(method).observe(time.perf_counter() - t0)


def _rpc(
    fn: Callable[[StyleServeServicer, Req, Context], Awaitable[Resp]],
) -> Callable[[StyleServeServicer, Req, Context], Awaitable[Resp]]:
    @wraps(fn)
    async def wrapper(self: StyleServeServicer, request: Req, context: Context) -> Resp:
        async with _handling(self, fn.__name__, request, context):
            return await fn(self, request, context)
        raise AssertionError("unreachable: errors abort the call")

    return wrapper


def _rpc_stream(
    fn: Callable[[StyleServeServicer, Req, Context], AsyncIterator[Resp]],
) -> Callable[[StyleServeServicer, Req, Context], AsyncIterator[Resp]]:
    @wraps(fn)
    async def wrapper(self: StyleServeServicer, request: Req, context: Context) -> AsyncIterator[Resp]:
        async with _handling(self, fn.__name__, request, context):
            async for item in fn(self, request, context):
                yield item

    return wrapper


class StyleServeServicer(pb_grpc.StyleServeServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.limit = engine.config.max_images_per_request

    # ----------------------------------------------------------------------------------- helpers

    async def _images(self, sm: ServedModel, imgs: npt.NDArray[np.generic], ws: F32, out: Output) -> list[pb.Image]:
        encoded = await self.engine.encode(imgs, out)
        if out.return_ws:
            for image, row in zip(encoded, ws, strict=True):
                image.ws.CopyFrom(tensor_to_proto(row))
        self.engine.metrics.images.labels(sm.name).inc(len(encoded))
        return encoded

    async def _draw(
        self, sm: ServedModel, ws: F32, noise: Sequence[NoiseSpec], out: Output, deadline: float | None
    ) -> list[pb.Image]:
        """ws ``[N, num_ws, w_dim]`` -> encoded images (with their ws when asked for)."""
        imgs = await self.engine.synthesize(sm, ws, noise, [out.graph_output], deadline)
        return await self._images(sm, imgs[out.graph_output], ws, out)

    @staticmethod
    def _seed_params(sm: ServedModel, request: Any) -> tuple[int | None, convert.Truncation]:
        """The class and truncation of a seed request (Generate, StreamGenerate over seeds)."""
        m = sm.manifest
        cls = convert.class_value(m, request.HasField("class_index"), request.class_index, "class_index")
        return cls, convert.truncation(m, request.truncation, "truncation")

    @staticmethod
    def _seed_sources(
        seeds: Sequence[int], cls: int | None, trunc: convert.Truncation, first_index: int = 0
    ) -> list[Source]:
        return [
            Source(f"seeds[{first_index + i}]", seed=convert.seed_value(s, f"seeds[{first_index + i}]"),
                   class_index=cls, truncation=trunc)
            for i, s in enumerate(seeds)
        ]  # fmt: skip

    # -------------------------------------------------------------------------------------- models

    @_rpc
    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[sm.info for sm in self.engine.models.values()])

    @_rpc
    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.ModelInfo:
        return self.engine.model(request.model).info

    # ------------------------------------------------------------------------------------- mapping

    @_rpc
    async def Map(self, request: pb.MapRequest, context: Context) -> pb.MapResponse:
        sm = self.engine.model(request.model)
        m = sm.manifest
        n = convert.count(len(request.latents), self.limit, "latents")
        trunc = convert.truncation(m, request.truncation, "truncation")
        if not (request.return_w or request.cache):
            raise InvalidArgument("return_w", "set return_w and/or cache, or nothing comes back")
        latents = [convert.latent(m, lat, f"latents[{i}]") for i, lat in enumerate(request.latents)]
        w, keys = await self.engine.map_latents(sm, latents, _deadline(context))
        if trunc.is_identity:
            rows: F32 = w
            ids = keys
        else:
            ws = self.engine.truncate(sm, w, [trunc] * n)
            rows = ws[:, 0] if trunc.cutoff_or(m.num_ws) >= m.num_ws else ws  # w [w_dim] or w+ [num_ws, w_dim]
            ids = [content_key(sm.name, "truncated", k, trunc.psi, trunc.cutoff) for k in keys]
        results = []
        for i in range(n):
            r = pb.MappedW()
            if request.return_w:
                r.w.CopyFrom(tensor_to_proto(rows[i]))
            if request.cache:
                key = ids[i]
                if not self.engine.cache.put(key, sm.name, rows[i]):
                    raise Overloaded(
                        f"cache: the w cache cannot hold a w (w_cache_bytes={self.engine.cache.max_bytes})"
                    )
                r.w_id = key
            results.append(r)
        return pb.MapResponse(results=results)

    # ----------------------------------------------------------------------------------- synthesis

    @_rpc
    async def Synthesize(self, request: pb.SynthesizeRequest, context: Context) -> pb.SynthesizeResponse:
        sm = self.engine.model(request.model)
        convert.count(len(request.plans), self.limit, "plans")
        out = convert.output(request.output)
        plans = [convert.plan(sm.manifest, p, f"plans[{i}]") for i, p in enumerate(request.plans)]
        deadline = _deadline(context)
        ws = await self.engine.assemble(sm, plans, deadline)
        return pb.SynthesizeResponse(images=await self._draw(sm, ws, [p.noise for p in plans], out, deadline))

    @_rpc
    async def Generate(self, request: pb.GenerateRequest, context: Context) -> pb.SynthesizeResponse:
        sm = self.engine.model(request.model)
        convert.count(len(request.seeds), self.limit, "seeds")
        out = convert.output(request.output)
        noise = convert.noise(sm.manifest, request.noise, "noise")
        sources = self._seed_sources(list(request.seeds), *self._seed_params(sm, request))
        deadline = _deadline(context)
        ws = await self.engine.resolve(sm, sources, deadline)
        return pb.SynthesizeResponse(images=await self._draw(sm, ws, [noise] * len(ws), out, deadline))

    @_rpc
    async def StyleMixGrid(self, request: pb.StyleMixGridRequest, context: Context) -> pb.StyleMixGridResponse:
        sm = self.engine.model(request.model)
        m = sm.manifest
        R = convert.count(len(request.rows), self.limit, "rows")
        C = convert.count(len(request.cols), self.limit, "cols")
        total = R * C + (R + C if request.compose else 0)
        if total > self.limit:
            raise InvalidArgument("cols", f"the grid needs {total} images; the limit per request is {self.limit}")
        out = convert.output(request.output)
        noise = convert.noise(m, request.noise, "noise")
        col_styles = list(request.col_styles) or [i for i in DEFAULT_COL_STYLES if i < m.num_ws]
        rows = [convert.source(m, s, f"rows[{i}]") for i, s in enumerate(request.rows)]
        cols = [convert.source(m, s, f"cols[{i}]") for i, s in enumerate(request.cols)]
        deadline = _deadline(context)
        src = await self.engine.resolve(sm, rows + cols, deadline)
        cells_ws = mix_grid_ws(src[:R], src[R:], col_styles)
        all_ws = np.concatenate([cells_ws, src]) if request.compose else cells_ws
        names = {out.graph_output, IMAGE_UINT8} if request.compose else {out.graph_output}
        images = await self.engine.synthesize(sm, all_ws, [noise] * len(all_ws), sorted(names), deadline)
        imgs = images[out.graph_output]
        resp = pb.StyleMixGridResponse(cells=await self._images(sm, imgs[: R * C], cells_ws, out))
        if request.compose:
            u8 = images[IMAGE_UINT8]
            canvas = compose_grid(u8[R * C : R * C + R], u8[R * C + R :], u8[: R * C])
            grid_out = Output("jpeg" if out.format == "jpeg" else "png", out.jpeg_quality)
            (grid,) = await self.engine.encode(canvas[None], grid_out)
            resp.grid.CopyFrom(grid)
        return resp

    # ------------------------------------------------------------------------------------- w cache

    @_rpc
    async def PutW(self, request: pb.PutWRequest, context: Context) -> pb.PutWResponse:
        sm = self.engine.model(request.model)
        m = sm.manifest
        if not request.HasField("w"):
            raise InvalidArgument("w", "is required")
        w = tensor_from_proto(request.w, "w", [(m.w_dim,), (m.num_ws, m.w_dim)])
        key = content_key(sm.name, "put", str(w.shape), w.tobytes())
        if not self.engine.cache.put(key, sm.name, w):
            raise Overloaded(
                f"w: the w cache cannot hold {w.nbytes} bytes (w_cache_bytes={self.engine.cache.max_bytes})"
            )
        return pb.PutWResponse(w_id=key)

    @_rpc
    async def GetW(self, request: pb.GetWRequest, context: Context) -> pb.GetWResponse:
        sm = self.engine.model(request.model)
        if not request.w_id:
            raise InvalidArgument("w_id", "is required")
        return pb.GetWResponse(w=tensor_to_proto(self.engine.cached_w(sm, request.w_id, "w_id")))

    @_rpc
    async def DeleteW(self, request: pb.DeleteWRequest, context: Context) -> pb.DeleteWResponse:
        sm = self.engine.model(request.model)
        if not request.w_id:
            raise InvalidArgument("w_id", "is required")
        return pb.DeleteWResponse(deleted=self.engine.cache.delete(request.w_id, sm.name))

    # ----------------------------------------------------------------------------------- streaming

    @_rpc_stream
    async def StreamGenerate(self, request: pb.StreamGenerateRequest, context: Context) -> AsyncIterator[pb.StreamItem]:
        sm = self.engine.model(request.model)
        m = sm.manifest
        out = convert.output(request.output)
        limit = self.engine.config.max_stream_images
        step = self.engine.config.max_batch_size
        work = request.WhichOneof("work")
        chunks: list[Callable[[], Awaitable[list[pb.StreamItem]]]] = []
        if work == "seeds":
            start, stop = request.seeds.start, request.seeds.stop
            if not start < stop:
                raise InvalidArgument("seeds.stop", f"must be greater than seeds.start ({start}), got {stop}")
            if stop - 1 > SEED_MAX:
                raise InvalidArgument("seeds.stop", f"seeds must be <= {SEED_MAX}")
            if stop - start > limit:
                raise InvalidArgument("seeds", f"{stop - start} seeds; the limit per stream is {limit}")
            noise = convert.noise(m, request.noise, "noise")
            cls, trunc = self._seed_params(sm, request)  # Checked once, before anything streams.
            for a in range(start, stop, step):
                sources = self._seed_sources(range(a, min(stop, a + step)), cls, trunc, a - start)
                chunks.append(partial(self._stream_seeds, sm, sources, a - start, a, noise, out, context))
        elif work == "plans":
            plans_pb = request.plans.plans
            n = len(plans_pb)
            if not 0 < n <= limit:
                raise InvalidArgument("plans.plans", f"needs 1..{limit} plans, got {n}")
            plans = [convert.plan(m, p, f"plans.plans[{i}]") for i, p in enumerate(plans_pb)]
            for a in range(0, n, step):
                chunks.append(partial(self._stream_plans, sm, plans[a : a + step], a, out, context))
        else:
            raise InvalidArgument("work", "needs seeds or plans")
        pending: deque[asyncio.Future[list[pb.StreamItem]]] = deque()
        try:
            for make in chunks:
                pending.append(asyncio.ensure_future(make()))
                if len(pending) >= STREAM_DEPTH:
                    for item in await pending.popleft():
                        yield item
            while pending:
                for item in await pending.popleft():
                    yield item
        finally:
            for fut in pending:
                fut.cancel()

    async def _stream_seeds(
        self, sm: ServedModel, sources: list[Source], first: int, first_seed: int, noise: NoiseSpec, out: Output,
        context: Context,
    ) -> list[pb.StreamItem]:  # fmt: skip
        deadline = _deadline(context)
        ws = await self.engine.resolve(sm, sources, deadline)
        images = await self._draw(sm, ws, [noise] * len(ws), out, deadline)
        return [pb.StreamItem(index=first + i, seed=first_seed + i, image=img) for i, img in enumerate(images)]

    async def _stream_plans(
        self, sm: ServedModel, plans: list[convert.Plan], first: int, out: Output, context: Context
    ) -> list[pb.StreamItem]:
        deadline = _deadline(context)
        ws = await self.engine.assemble(sm, plans, deadline)
        images = await self._draw(sm, ws, [p.noise for p in plans], out, deadline)
        return [pb.StreamItem(index=first + i, image=img) for i, img in enumerate(images)]
