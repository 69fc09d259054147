"""The ``styleserve.v1.StyleServe`` servicer: thin methods over :mod:`.convert` and :class:`~.engine.Engine`.

Every method is wrapped by :func:`_rpc` or :func:`_rpc_stream`. Their :func:`_handling` refuses work
while warming or draining, counts the call in flight for its model, records metrics, and translates
errors to status codes through :func:`.status.status_for` (the only place that does).

:func:`add_to_server` registers the methods without a request deserializer: each parses its own body
(off the event loop when large), so a body that does not parse answers INVALID_ARGUMENT with one
rate-limited log line, not UNKNOWN with a traceback. Work proportional to a request's size (decoding
tensors, checking plans, composing grids, encoding images) runs in worker threads; streams build their
work chunk by chunk as they go.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from functools import partial, wraps
from typing import Any, TypeAlias, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from styleserve.errors import InvalidArgument, Overloaded
from styleserve.grid import DEFAULT_COL_STYLES, compose_grid, mix_grid_ws
from styleserve.latent import SEED_MAX
from styleserve.transform import IDENTITY, Move
from styleserve.v1 import styleserve_pb2 as pb
from styleserve.v1 import styleserve_pb2_grpc as pb_grpc
from styleserve.wire import tensor_to_proto

from . import convert
from .bodies import BodyParser
from .convert import Output, Source, tensor_from_proto
from .engine import Engine, ServedModel, apply_edits
from .metrics import NO_MODEL
from .runtime import IMAGE_UINT8, NoiseSpec
from .status import status_for
from .wcache import content_key

F32 = npt.NDArray[np.float32]
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context: TypeAlias = Any  # grpc.aio.ServicerContext; grpc ships no type hints.

STREAM_DEPTH = 2  # Chunks of a stream in flight at once (backpressure: the next starts as one is sent).

SERVICE = pb.DESCRIPTOR.services_by_name["StyleServe"]
REQUEST_TYPES: dict[str, type[Message]] = {m.name: getattr(pb, m.input_type.name) for m in SERVICE.methods}
RESPONSE_TYPES: dict[str, type[Message]] = {m.name: getattr(pb, m.output_type.name) for m in SERVICE.methods}



def add_to_server(servicer: StyleServeServicer, server: grpc.aio.Server) -> None:
    """Register ``servicer`` as the generated ``add_StyleServeServicer_to_server`` does, but with raw-bytes
    requests: the servicer parses each body itself (:meth:`StyleServeServicer._parse`)."""
    handlers = {
        m.name: (grpc.unary_stream_rpc_method_handler if m.server_streaming else grpc.unary_unary_rpc_method_handler)(
            getattr(servicer, m.name), response_serializer=RESPONSE_TYPES[m.name].SerializeToString
        )
        for m in SERVICE.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(SERVICE.full_name, handlers)


def _deadline(context: Context) -> float | None:
    left = context.time_remaining()
    return None if left is None else time.monotonic() + left


@contextlib.asynccontextmanager
async def handling(
    engine: Engine, method: str, sm: ServedModel | None, context: Context, *, needs_serving: bool = True
) -> AsyncIterator[None]:
    """One RPC's bookkeeping, for every servicer (``styleserve.v1`` and the Open Inference Protocol): refuse while
    warming or draining (``needs_serving``), count it in flight for its model's batchers, record metrics, and
    answer errors with the status code :func:`.status.status_for` gives.

    The metrics' ``model`` label is ``sm``'s name (a served model the caller looked up), else ``NO_MODEL``: a
    client cannot create series. gRPC ends an expired call by cancelling its handler; that counts as
    DEADLINE_EXCEEDED (the call's deadline has passed), any other cancellation as CANCELLED."""
    m = engine.metrics
    t0 = time.perf_counter()
    deadline = _deadline(context)
    code = grpc.StatusCode.OK
    model = sm.name if sm is not None else NO_MODEL
    m.inflight.inc()
    details: str | None = None
    try:
        if needs_serving:
            engine.check_serving()
        with sm.busy() if sm is not None else contextlib.nullcontext():
            yield
    except (asyncio.CancelledError, GeneratorExit):
        left = context.time_remaining()
        expired = (left is not None and left <= 0) or (deadline is not None and time.monotonic() >= deadline)
        code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
        raise
    except Exception as exc:
        code, details = status_for(exc, method)
        # The traceback holds the handler's frames, and so the parsed request: drop it here, so that the request
        # is freed when its body is released (server/bodies.py), not whenever the cycle collector runs.
        exc.__traceback__ = None
    finally:
        m.inflight.dec()
        m.requests.labels(model, method, code.name).inc()
        m.request_seconds.labels(model, method).observe(time.perf_counter() - t0)
    if details is not None:
        await context.abort(code, details)  # Raises, outside the except clause: no reference to the error.


def _parsed(method: str, request: Req | Exception | None) -> Req:
    if isinstance(request, Exception):
        raise request
    if request is None:
        raise InvalidArgument("request", f"the body does not parse as {REQUEST_TYPES[method].DESCRIPTOR.full_name}")
    return request


def _rpc(
    fn: Callable[[StyleServeServicer, Req, Context], Awaitable[Resp]],
) -> Callable[[StyleServeServicer, Req, Context], Awaitable[Resp]]:
    @wraps(fn)
    async def wrapper(self: StyleServeServicer, request: Req | bytes, context: Context) -> Resp:
        method = fn.__name__
        async with self.bodies.parsed(method, REQUEST_TYPES[method], request) as box:
            del request
            async with handling(self.engine, method, self.engine.models.get(getattr(box[0], "model", "")), context):
                return await fn(self, _parsed(method, box[0]), context)
        raise AssertionError("unreachable: errors abort the call")

    return wrapper


def _rpc_stream(
    fn: Callable[[StyleServeServicer, Req, Context], AsyncIterator[Resp]],
) -> Callable[[StyleServeServicer, Req, Context], AsyncIterator[Resp]]:
    @wraps(fn)
    async def wrapper(self: StyleServeServicer, request: Req | bytes, context: Context) -> AsyncIterator[Resp]:
        method = fn.__name__
        async with self.bodies.parsed(method, REQUEST_TYPES[method], request) as box:
            del request
            async with handling(self.engine, method, self.engine.models.get(getattr(box[0], "model", "")), context):
                async for item in fn(self, _parsed(method, box[0]), context):
                    yield item

    return wrapper


class StyleServeServicer(pb_grpc.StyleServeServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.limit = engine.config.max_images_per_request
        self.bodies = BodyParser(engine.offload, engine.config.max_message_bytes)

    # ----------------------------------------------------------------------------------- helpers

    async def _images(self, sm: ServedModel, imgs: npt.NDArray[np.generic], ws: F32, out: Output) -> list[pb.Image]:
        encoded = await self.engine.encode(imgs, out)
        if out.return_ws:
            for image, row in zip(encoded, ws, strict=True):
                image.ws.CopyFrom(tensor_to_proto(row))
        self.engine.metrics.images.labels(sm.name).inc(len(encoded))
        return encoded

    async def _draw(
        self,
        sm: ServedModel,
        ws: F32,
        noise: Sequence[NoiseSpec],
        out: Output,
        deadline: float | None,
        moves: Sequence[Move] = (),
    ) -> list[pb.Image]:
        """ws ``[N, num_ws, w_dim]`` (+ one input-transform move per image, none = identity) -> encoded images
        (with their ws when asked for)."""
        transforms = convert.transform_array(moves)
        imgs = await self.engine.synthesize(sm, ws, noise, [out.graph_output], deadline, transforms)
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
        edits = convert.edits(m, request.edits, "edits")
        latents = await self.engine.offload(convert.latents, m, request.latents, "latents")
        w, keys = await self.engine.map_latents(sm, latents, _deadline(context))
        if edits:  # An edited w+ [num_ws, w_dim] per latent, edits after truncation.
            rows: F32 = apply_edits(self.engine.truncate(sm, w, [trunc] * n), edits, sm.runtime.directions)
            ids = [content_key(sm.name, "edited", k, trunc.psi, trunc.cutoff, repr(edits)) for k in keys]
        elif trunc.is_identity:
            rows = w
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
        plans = await self.engine.offload(convert.plans, sm.manifest, request.plans, "plans")
        deadline = _deadline(context)
        ws = await self.engine.assemble(sm, plans, deadline)
        moves = [p.transform for p in plans]
        return pb.SynthesizeResponse(images=await self._draw(sm, ws, [p.noise for p in plans], out, deadline, moves))

    @_rpc
    async def Generate(self, request: pb.GenerateRequest, context: Context) -> pb.SynthesizeResponse:
        sm = self.engine.model(request.model)
        convert.count(len(request.seeds), self.limit, "seeds")
        out = convert.output(request.output)
        noise = convert.noise(sm.manifest, request.noise, "noise")
        moves = convert.transforms(sm.manifest, request.transforms, len(request.seeds), "transforms")
        sources = self._seed_sources(list(request.seeds), *self._seed_params(sm, request))
        deadline = _deadline(context)
        ws = await self.engine.resolve(sm, sources, deadline)
        return pb.SynthesizeResponse(images=await self._draw(sm, ws, [noise] * len(ws), out, deadline, moves))

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
        move = convert.transform(m, request.transform, "transform") if request.HasField("transform") else IDENTITY
        col_styles = convert.layer_indices(request.col_styles, m.num_ws, "col_styles") or tuple(
            i for i in DEFAULT_COL_STYLES if i < m.num_ws
        )
        rows = await self.engine.offload(convert.sources, m, request.rows, "rows")
        cols = await self.engine.offload(convert.sources, m, request.cols, "cols")
        deadline = _deadline(context)
        src = await self.engine.resolve(sm, rows + cols, deadline)
        cells_ws = mix_grid_ws(src[:R], src[R:], col_styles)
        all_ws = np.concatenate([cells_ws, src]) if request.compose else cells_ws
        names = {out.graph_output, IMAGE_UINT8} if request.compose else {out.graph_output}
        transforms = convert.transform_array([move] * len(all_ws))
        images = await self.engine.synthesize(
            sm, all_ws, [noise] * len(all_ws), sorted(names), deadline, transforms
        )
        imgs = images[out.graph_output]
        resp = pb.StyleMixGridResponse(cells=await self._images(sm, imgs[: R * C], cells_ws, out))
        if request.compose:
            u8 = images[IMAGE_UINT8]
            canvas = await self.engine.offload(compose_grid, u8[R * C : R * C + R], u8[R * C + R :], u8[: R * C])
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
        w = await self.engine.offload(tensor_from_proto, request.w, "w", [(m.w_dim,), (m.num_ws, m.w_dim)])
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
        convert.text(request.w_id, "w_id", convert.MAX_W_ID_CHARS)
        return pb.GetWResponse(w=tensor_to_proto(self.engine.cached_w(sm, request.w_id, "w_id")))

    @_rpc
    async def DeleteW(self, request: pb.DeleteWRequest, context: Context) -> pb.DeleteWResponse:
        sm = self.engine.model(request.model)
        if not request.w_id:
            raise InvalidArgument("w_id", "is required")
        convert.text(request.w_id, "w_id", convert.MAX_W_ID_CHARS)
        return pb.DeleteWResponse(deleted=self.engine.cache.delete(request.w_id, sm.name))

    # ----------------------------------------------------------------------------------- streaming

    @_rpc_stream
    async def StreamGenerate(self, request: pb.StreamGenerateRequest, context: Context) -> AsyncIterator[pb.StreamItem]:
        """Chunks of at most max_batch_size images, made lazily: memory follows what is in flight, not the range.
        A seed range is checked whole before anything streams; plans are checked chunk by chunk."""
        sm = self.engine.model(request.model)
        m = sm.manifest
        out = convert.output(request.output)
        limit = self.engine.config.max_stream_images
        step = self.engine.config.max_batch_size
        work = request.WhichOneof("work")
        chunks: Iterator[Callable[[], Awaitable[list[pb.StreamItem]]]]
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
            move = convert.transform(m, request.transform, "transform") if request.HasField("transform") else IDENTITY
            seed_chunk = partial(self._stream_seeds, sm, first_seed=start, cls=cls, trunc=trunc, noise=noise, out=out,
                                 context=context, move=move)  # fmt: skip
            chunks = (partial(seed_chunk, range(a, min(stop, a + step))) for a in range(start, stop, step))
        elif work == "plans":
            plans_pb = request.plans.plans
            n = len(plans_pb)
            if not 0 < n <= limit:
                raise InvalidArgument("plans.plans", f"needs 1..{limit} plans, got {n}")
            chunks = (
                partial(self._stream_plans, sm, plans_pb, a, min(n, a + step), out, context) for a in range(0, n, step)
            )
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
        self, sm: ServedModel, seeds: range, first_seed: int, cls: int | None, trunc: convert.Truncation,
        noise: NoiseSpec, out: Output, context: Context, move: Move = IDENTITY,
    ) -> list[pb.StreamItem]:  # fmt: skip
        first = seeds.start - first_seed
        deadline = _deadline(context)
        ws = await self.engine.resolve(sm, self._seed_sources(seeds, cls, trunc, first), deadline)
        images = await self._draw(sm, ws, [noise] * len(ws), out, deadline, [move] * len(ws))
        return [pb.StreamItem(index=first + i, seed=seeds.start + i, image=img) for i, img in enumerate(images)]

    async def _stream_plans(
        self, sm: ServedModel, plans_pb: Sequence[pb.StylePlan], a: int, b: int, out: Output, context: Context
    ) -> list[pb.StreamItem]:
        """Plans ``[a, b)``, checked here (in a worker thread), so a long list costs nothing before it streams."""
        plans = await self.engine.offload(convert.plans, sm.manifest, plans_pb, "plans.plans", a, b)
        deadline = _deadline(context)
        ws = await self.engine.assemble(sm, plans, deadline)
        images = await self._draw(sm, ws, [p.noise for p in plans], out, deadline, [p.transform for p in plans])
        return [pb.StreamItem(index=a + i, image=img) for i, img in enumerate(images)]
