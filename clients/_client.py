"""The synchronous gRPC client (one method per RPC of ``styleserve.v1.StyleServe``) and what it shares with
the asyncio client (:mod:`._async`): options, targets, round-robin and retries.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

import grpc
import numpy.typing as npt

from styleserve.v1 import styleserve_pb2 as pb
from styleserve.v1 import styleserve_pb2_grpc as pb_grpc
from styleserve.wire import F32

from . import _requests as rq
from ._retry import Attempts, RetryPolicy
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
C = TypeVar("C")  # the channel type: grpc.Channel or grpc.aio.Channel


def health_check(channel: Any, service: str, timeout: float | None) -> Any:
    """A grpc.health.v1 ``Check`` on ``channel``: the response (a ``grpc`` channel) or an awaitable (``grpc.aio``)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout or 5.0)


def health_status(resp: Any) -> str:
    """A ``HealthCheckResponse`` -> its status name."""
    from grpc_health.v1 import health_pb2

    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


class ClientBase(Generic[C]):
    """Options, targets, channels and the attempts of a call, shared by :class:`Client` and ``AsyncClient``."""

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        timeout: float | None = 60.0,
        max_message_bytes: int = 64 * 2**20,
        channel: C | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive or None, got {timeout}")
        if not isinstance(max_message_bytes, int) or max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be a positive integer, got {max_message_bytes!r}")
        if token is not None and (not token or any(ch.isspace() for ch in token)):
            raise ValueError("token must be non-empty and contain no whitespace")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ValueError(f"retry must be a RetryPolicy or None, got {type(retry).__name__}")
        self.targets = rq.parse_targets(target)
        self.target = target if isinstance(target, str) else ",".join(self.targets)
        self.timeout = timeout
        self.retry = RetryPolicy() if retry is None else retry
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            # A name that resolves to several addresses (e.g. dns:///svc-headless:50051 in Kubernetes) spreads
            # calls over all of them; the default pick_first would pin every call to one pod.
            ("grpc.lb_policy_name", "round_robin"),
            *self.retry.channel_options(),  # gRPC's own retries and retry budget (see _retry.py)
        ]
        self._credentials: grpc.ChannelCredentials | None = None
        if channel is not None:
            if tls or root_certificates is not None:
                raise ValueError("tls/root_certificates cannot be applied to a ready-made channel")
            if len(self.targets) != 1:
                raise ValueError("a ready-made channel goes with one target")
        elif tls or root_certificates is not None:
            self._credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        self._owns_channel = channel is None
        self._channels: list[C] = [] if channel is None else [channel]
        self._stubs: list[Any] = []
        self._round_robin = itertools.count()
        self._closed = False
        self._init_channels()

    def _init_channels(self) -> None:
        """Open the channels now (the sync client) or leave them to the first call (the asyncio client)."""

    def _open_stubs(self, insecure: Callable[..., C], secure: Callable[..., C]) -> list[Any]:
        """The stubs, opening one channel per target (from ``grpc`` or ``grpc.aio``) unless given one."""
        if not self._channels:
            if self._credentials is None:
                self._channels = [insecure(t, options=self._options) for t in self.targets]
            else:
                self._channels = [secure(t, self._credentials, options=self._options) for t in self.targets]
        if not self._stubs:
            self._stubs = [pb_grpc.StyleServeStub(ch) for ch in self._channels]  # type: ignore[no-untyped-call]
        return self._stubs

    def _attempts(self, timeout: float | None) -> Attempts:
        """The attempts of one call: the next target in round-robin order first, retries on the ones after it."""
        self._check_open()
        timeout = self.timeout if timeout is None else timeout
        return Attempts(self.retry, timeout, next(self._round_robin), len(self.targets))

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the client is closed")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"


class Client(ClientBase[grpc.Channel]):
    """A synchronous styleserve client over one gRPC channel per target.

    ``target`` is ``"host:port"``, several replicas as ``"h1:p1,h2:p2"`` or a sequence of them: calls go to them
    in turn (client-side round-robin), and a retried call goes to the next one. ``timeout`` (seconds, None = no
    deadline) bounds every call, retries included, unless a method's ``timeout`` overrides it; for
    :meth:`stream_generate` it bounds the whole stream. ``retry`` (None = ``RetryPolicy()``; ``RetryPolicy.none()``
    disables) retries UNAVAILABLE and RESOURCE_EXHAUSTED with backoff. With ``token``, every call sends
    ``authorization: Bearer <token>``. ``tls`` (implied by ``root_certificates``) uses
    ``grpc.ssl_channel_credentials(root_certificates)``. A ready-made ``channel`` (one target) is used as given
    (its own options apply) and is not closed by :meth:`close`.

    Raises :class:`StyleServeRpcError` subclasses for failed RPCs and ``ValueError`` for arguments the client
    can reject without asking the server. Thread-safe: one client may serve many threads.
    """

    def _init_channels(self) -> None:
        self._open_stubs(grpc.insecure_channel, grpc.secure_channel)

    # ------------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the channels (if this client created them). Idempotent."""
        if not self._closed:
            self._closed = True
            if self._owns_channel:
                for ch in self._channels:
                    ch.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _unary(self, rpc: rq.Unary[T], request: Any, timeout: float | None) -> T:
        for attempt in self._attempts(timeout):
            time.sleep(attempt.delay)
            with attempt.guard():
                call = getattr(self._stubs[attempt.target], rpc.method)
                return rpc.decode(call(request, timeout=attempt.timeout(), metadata=self._metadata))
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------------ health

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """grpc.health.v1 status: ``SERVING``, ``NOT_SERVING`` (warming up or draining), ``UNREACHABLE``.

        With several targets, the best of theirs (``SERVING`` when any target serves).
        """
        statuses = []
        for ch in self._channels:
            try:
                statuses.append(health_status(health_check(ch, service, timeout)))
            except grpc.RpcError:
                statuses.append("UNREACHABLE")
        return rq.best_status(statuses)

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
        return self._unary(rq.LIST_MODELS, pb.ListModelsRequest(), timeout)

    def get_model(self, name: str, *, timeout: float | None = None) -> ModelInfo:
        """One model's metadata."""
        return self._unary(rq.GET_MODEL, pb.GetModelRequest(model=name), timeout)

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
        edits: Sequence[Edit] = (),
        timeout: float | None = None,
    ) -> list[MappedW]:
        """Seeds or explicit ``zs`` ``[N, z_dim]`` -> one :class:`MappedW` each, in order.

        ``class_index`` is one class for all latents or one (or None) per latent; ``cache`` stores the ws
        on the server and returns their ids. ``edits`` (:class:`Edit`) move every w along semantic directions
        after truncation; each result is then an edited w+ ``[num_ws, w_dim]``.
        """
        request = rq.map_request(model, seeds, zs, class_index, psi, cutoff, return_w, cache, edits)
        return self._unary(rq.MAP, request, timeout)

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
        transform: Transform | Sequence[Transform] | None = None,
    ) -> list[GeneratedImage]:
        """Seeds -> images (mapping, truncation and synthesis on the server), in seed order.

        More than :data:`REQUEST_CHUNK` seeds are sent as consecutive requests of that many (as the CLI does),
        each with its own deadline, so any number of seeds stays within the server's per-request limit.
        """
        seeds = list(seeds)
        options = (class_index, psi, cutoff, noise, format, jpeg_quality, return_ws)
        rq.generate_request(model, seeds, *options, transform)  # checks every seed before the first request
        per_seed = None if transform is None or isinstance(transform, Transform) else list(transform)
        images: list[GeneratedImage] = []
        for k, chunk in enumerate(rq.chunks(seeds)):
            a = k * rq.REQUEST_CHUNK
            moves = transform if per_seed is None else per_seed[a : a + len(chunk)]
            request = rq.generate_request(model, chunk, *options, moves)
            got: list[GeneratedImage] = self._unary(rq.GENERATE, request, timeout)
            images += got
        return images

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
        request = rq.synthesize_request(model, plans, format, jpeg_quality, return_ws)
        return self._unary(rq.SYNTHESIZE, request, timeout)

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
        transform: Transform | None = None,
    ) -> GridResult:
        """Rows x columns, the ``col_styles`` ws indices from the columns (ints are seed sources)."""
        request = rq.grid_request(model, rows, cols, col_styles, noise, format, compose, transform)
        return self._unary(rq.STYLE_MIX_GRID, request, timeout)

    # ------------------------------------------------------------------------ w cache

    def put_w(self, model: str, w: npt.ArrayLike, *, timeout: float | None = None) -> str:
        """Cache a w ``[w_dim]`` or w+ ``[num_ws, w_dim]``; returns its content-derived id."""
        return self._unary(rq.PUT_W, rq.put_w_request(model, w), timeout)

    def get_w(self, model: str, w_id: str, *, timeout: float | None = None) -> F32:
        """A cached w or w+ by id."""
        return self._unary(rq.GET_W, pb.GetWRequest(model=model, w_id=w_id), timeout)

    def delete_w(self, model: str, w_id: str, *, timeout: float | None = None) -> bool:
        """Drop a cached w; False when the id was not cached."""
        return self._unary(rq.DELETE_W, pb.DeleteWRequest(model=model, w_id=w_id), timeout)

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
        idle_timeout: float | None = None,
        transform: Transform | None = None,
    ) -> Iterator[StreamResult]:
        """A seed range (step 1) or plans -> images as the server finishes them.

        Arguments are checked now; the call starts at the first ``next()`` and is cancelled if the iterator is
        closed early. ``class_index``, ``psi``, ``cutoff`` and ``noise`` apply to seed ranges only. A failed
        stream is retried (from the start) only while it has delivered nothing.

        Deadlines: a stream may run for hours, so the client's per-call ``timeout`` does not bound it. Instead
        each item must arrive within ``idle_timeout`` seconds (default: the client's ``timeout``; the time your
        loop spends on an item does not count), else the stream is cancelled with
        :class:`DeadlineExceededError`. ``timeout`` (default None = none) bounds the whole stream.
        """
        request = rq.stream_request(
            model, seeds, plans, class_index, psi, cutoff, noise, format, jpeg_quality, return_ws, transform
        )
        self._check_open()
        idle = rq.check_idle_timeout(self.timeout if idle_timeout is None else idle_timeout)
        return self._stream(request, timeout, idle)

    def _stream(
        self, request: pb.StreamGenerateRequest, timeout: float | None, idle: float | None
    ) -> Iterator[StreamResult]:
        self._check_open()
        for attempt in Attempts(self.retry, timeout, next(self._round_robin), len(self.targets)):
            time.sleep(attempt.delay)
            with attempt.guard():
                stub = self._stubs[attempt.target]
                call = stub.StreamGenerate(request, timeout=attempt.timeout(), metadata=self._metadata)
                watchdog = IdleWatchdog(idle, call.cancel) if idle is not None else None
                try:
                    for item in call:
                        attempt.received = True
                        if watchdog is not None:
                            watchdog.pause()  # the caller's time with the item does not count
                        yield StreamResult.from_proto(item)
                        if watchdog is not None:
                            watchdog.resume()
                except grpc.RpcError:
                    if watchdog is not None and watchdog.fired:
                        raise rq.idle_deadline_error(idle) from None
                    raise
                finally:
                    if watchdog is not None:
                        watchdog.stop()
                    call.cancel()
                return


class IdleWatchdog:
    """Calls ``cancel()`` once ``idle`` seconds pass without :meth:`resume` (from creation or the last resume);
    :meth:`pause` holds the clock. One daemon thread per stream."""

    def __init__(self, idle: float, cancel: Callable[[], Any]) -> None:
        self._idle = idle
        self._cancel = cancel
        self._cond = threading.Condition()
        self._deadline: float | None = time.monotonic() + idle
        self._done = False
        self.fired = False
        threading.Thread(target=self._run, name="styleserve-stream-idle", daemon=True).start()

    def pause(self) -> None:
        with self._cond:
            self._deadline = None

    def resume(self) -> None:
        with self._cond:
            self._deadline = time.monotonic() + self._idle
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._done:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left <= 0:
                    self.fired = True
                    break
                self._cond.wait(left)
        if self.fired:
            self._cancel()
