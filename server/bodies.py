"""Request bodies: every servicer (``styleserve.v1`` and the Open Inference Protocol) registers its methods with
raw-bytes requests and parses them here, so that a body's cost is bounded before and after it is parsed.

* **A size cap per method**, checked on ``len(body)`` before anything is parsed: methods whose valid requests are
  small (ListModels, GetModel, GetW, DeleteW, Generate, StyleMixGrid: every repeated field is capped at a few dozen
  entries) refuse a body over :data:`SMALL_METHOD_BYTES` with INVALID_ARGUMENT naming ``request``; the others (which
  may carry w tensors or long plan lists) take up to the server's ``max_message_bytes``.
* **Small bodies** (≤ :data:`INLINE_PARSE_BYTES`) are parsed on the event loop: cheap and bounded.
* **Large bodies are pre-scanned in a separate process** before this one parses them: protobuf's parser holds the
  GIL (a 32 MB body of 6.4 million 5-byte submessages takes ~1.8 s to parse and ~640 MB of memory), so parsing it
  in a thread would stall the event loop. The pre-scan process parses the body and counts its nested messages
  (map entries included); a body holding more than :data:`MAX_SUBMESSAGES` is refused with INVALID_ARGUMENT
  naming ``request``, and only a body within that bound is parsed here (in a worker thread), at a cost bounded by
  it. One pre-scan runs at a time; its process is started on the first large body.
* Parsed large bodies can still be large (w tensors), so the bytes of large bodies held at once (parsed, in flight)
  are bounded by :data:`LARGE_BODY_BUDGET` (a request waits for room, within its deadline), and each is released
  in a worker thread when its call ends (freeing millions of submessages takes time that must not stall the event
  loop), followed by ``malloc_trim`` so that its memory goes back to the operating system.
* A body that does not parse gives ``None`` (INVALID_ARGUMENT to the caller) and one rate-limited log line.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import gc
import importlib
import multiprocessing
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from google.protobuf.message import DecodeError, Message

from styleserve.errors import InvalidArgument

from .status import RateLimitedLog, log

INLINE_PARSE_BYTES = 64 * 1024  # Larger bodies are parsed in a worker thread.
SMALL_METHOD_BYTES = 1024 * 1024  # Cap of the bodies of methods whose valid requests are small.
LARGE_BODY_BUDGET = 64 * 1024 * 1024  # Bytes of large bodies held at once (one maximal message).
SMALL_METHODS = frozenset({"ListModels", "GetModel", "GetW", "DeleteW", "Generate", "StyleMixGrid"})
MAX_SUBMESSAGES = 100_000  # Nested messages a body may hold (valid requests: a few thousand at most).

malformed_log = RateLimitedLog(log)

Offload = Callable[..., Awaitable[Any]]


def _malloc_trim() -> Callable[[], None]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # Not glibc: nothing to trim.
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]

    def call() -> None:
        trim(0)

    return call


_trim = _malloc_trim()


def _release(box: list[Any]) -> None:
    box.clear()  # Drops our reference: the message is freed here, in a worker thread, ...
    gc.collect()  # ... or with the reference cycles an error's traceback leaves (asyncio futures keep one).
    _trim()


def prescan(module: str, name: str, body: bytes, limit: int) -> bool | None:
    """In the pre-scan process: whether ``body`` parses as ``module.name`` (None: it does not) holding at most
    ``limit`` nested messages (False: more)."""
    cls = getattr(importlib.import_module(module), name)
    try:
        msg = cls.FromString(body)
    except DecodeError:
        return None
    count, stack = 0, [msg]
    while stack:
        for fd, value in stack.pop().ListFields():
            if fd.message_type is None:
                continue
            if fd.message_type.GetOptions().map_entry:  # A map: count its entries, walk message values.
                count += len(value)
                if fd.message_type.fields_by_name["value"].message_type is not None:
                    stack.extend(value.values())
            elif fd.is_repeated:
                count += len(value)
                stack.extend(value)
            else:
                count += 1
                stack.append(value)
            if count > limit:
                return False
    return True


_prescan_pool: concurrent.futures.ProcessPoolExecutor | None = None


def _pool() -> concurrent.futures.ProcessPoolExecutor:
    global _prescan_pool
    if _prescan_pool is None:  # spawn: never fork a process that runs gRPC's threads.
        _prescan_pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    return _prescan_pool


class BodyParser:
    """Parses raw request bodies under the caps above. ``limits`` overrides the cap of a method."""

    def __init__(self, offload: Offload, max_message_bytes: int, limits: Mapping[str, int] | None = None) -> None:
        self._offload = offload
        self._max = max_message_bytes
        self._limits = dict(limits or {})
        self._budget = min(LARGE_BODY_BUDGET, max(max_message_bytes, INLINE_PARSE_BYTES))
        self._held = 0
        self._room = asyncio.Condition()
        self._releasing: set[asyncio.Future[None]] = set()

    def limit(self, method: str) -> int:
        return self._limits.get(method, SMALL_METHOD_BYTES if method in SMALL_METHODS else self._max)

    @contextlib.asynccontextmanager
    async def parsed(self, method: str, cls: type[Message], body: Any) -> AsyncIterator[list[Any]]:
        """``box[0]``: the message, ``None`` when the body does not parse, or an exception to raise (an
        :class:`InvalidArgument` over its method's cap or nesting bound). The caller must not keep other
        references past the ``async with``."""
        if not isinstance(body, bytes):  # Already a message (a caller that deserializes itself).
            yield [body]
            return
        size = len(body)
        if size > self.limit(method):
            yield [InvalidArgument("request", f"a {size}-byte {method} body exceeds its {self.limit(method)}-byte cap")]
            return
        if size <= INLINE_PARSE_BYTES:
            yield [self._parse(method, cls, body)]
            return
        need = min(size, self._budget)
        async with self._room:
            await self._room.wait_for(lambda: self._held + need <= self._budget)
            self._held += need
        box: list[Any] = []
        try:
            try:
                fits = await asyncio.get_running_loop().run_in_executor(
                    _pool(), prescan, cls.__module__, cls.__name__, body, MAX_SUBMESSAGES
                )
            except Exception as exc:  # A broken pre-scan process: the call fails (INTERNAL, logged once).
                box.append(exc)
                yield box
                return
            if fits is None:
                malformed_log.warning("%s: a %d-byte body does not parse", method, size)
                box.append(None)
            elif not fits:
                box.append(InvalidArgument("request", f"holds more than {MAX_SUBMESSAGES} nested messages"))
            else:
                box.append(await self._offload(self._parse, method, cls, body))
            del body
            yield box
        finally:
            # Released once the call has unwound (an error's traceback still holds the request while it
            # propagates), in a worker thread; the room is given back after that.
            task = asyncio.ensure_future(self._release_later(box, need))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _release_later(self, box: list[Any], need: int) -> None:
        try:
            await asyncio.sleep(0.05)
            await self._offload(_release, box)
        finally:
            async with self._room:
                self._held -= need
                self._room.notify_all()

    @staticmethod
    def _parse(method: str, cls: type[Message], body: bytes) -> Message | None:
        try:
            return cls.FromString(body)
        except DecodeError as exc:
            malformed_log.warning("%s: a %d-byte body does not parse (%s)", method, len(body), exc)
            return None
