"""The serving engine: served models, their batchers, the w cache, style assembly and encoding.

No gRPC here: the engine takes domain values (:mod:`.convert`) and raises domain errors
(:mod:`styleserve.errors`); the servicer translates both ways. Inference runs in a thread pool
(one run at a time per network, through :class:`~.batcher.Batcher`), image encoding in another,
so the event loop only assembles small numpy arrays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from styleserve.errors import InvalidArgument, NotFound, Unavailable
from styleserve.latent import broadcast_ws, class_labels, truncate_rows
from styleserve.manifest import ModelManifest
from styleserve.transform import identity_transforms
from styleserve.v1 import styleserve_pb2 as pb

from .batcher import Batcher
from .config import ServerConfig
from .convert import MAX_MODEL_NAME_CHARS, Edit, Latent, Output, Plan, Source, Truncation, model_info, text
from .imaging import encode, resolve_png_encoder
from .metrics import Metrics
from .runtime import ModelRuntime, NoiseSpec
from .status import quote
from .wcache import WCache, content_key

log = logging.getLogger("styleserve.server")

F32 = npt.NDArray[np.float32]
Images = dict[str, npt.NDArray[np.generic]]
MapPayload = tuple[F32, F32 | None]  # z [n, z_dim], c [n, c_dim] or None
# ws [n, num_ws, w_dim], noise, outputs, input transforms [n, 3, 3] (None = identity; StyleGAN3)
SynthPayload = tuple[F32, tuple[NoiseSpec, ...], tuple[str, ...], F32 | None]
P = TypeVar("P")
R = TypeVar("R")


def _run_mapping(rt: ModelRuntime, payloads: list[MapPayload]) -> list[F32]:
    z = np.concatenate([p[0] for p in payloads])
    c = None if payloads[0][1] is None else np.concatenate([p[1] for p in payloads if p[1] is not None])
    w = rt.map(z, c)
    return np.split(w, np.cumsum([len(p[0]) for p in payloads])[:-1])


def _run_synthesis(rt: ModelRuntime, payloads: list[SynthPayload]) -> list[Images]:
    ws = np.concatenate([p[0] for p in payloads])
    noise = [spec for p in payloads for spec in p[1]]
    outputs = tuple(dict.fromkeys(name for p in payloads for name in p[2]))
    transforms = None
    if any(p[3] is not None for p in payloads):
        transforms = np.concatenate([identity_transforms(len(p[0])) if p[3] is None else p[3] for p in payloads])
    images = rt.run_synthesis(ws, noise, outputs, transforms)
    bounds = np.cumsum([0] + [len(p[0]) for p in payloads])
    return [{k: images[k][a:b] for k in p[2]} for p, a, b in zip(payloads, bounds[:-1], bounds[1:], strict=True)]


def apply_edits(ws: F32, edits: Sequence[Edit], directions: Mapping[str, F32]) -> F32:
    """ws ``[..., num_ws, w_dim]`` + sum of ``alpha * d`` on each edit's layers (a new array; checked edits)."""
    out = np.array(ws, dtype=np.float32, copy=True)
    for e in edits:
        d = directions[e.layer_range][e.direction]  # [w_dim], unit
        idx = list(e.layers)
        out[..., idx, :] += np.float32(e.alpha) * d
    return out


@dataclass
class ServedModel:
    name: str
    runtime: ModelRuntime
    info: pb.ModelInfo
    mapping: Batcher[MapPayload, F32]
    synthesis: Batcher[SynthPayload, Images]
    active: int = 0  # Requests working on this model now (the batchers' ``company``).

    @property
    def manifest(self) -> ModelManifest:
        return self.runtime.manifest

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Count a request as in flight, so the batchers wait for it rather than run without it."""
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self.mapping.poke()
            self.synthesis.poke()


class Engine:
    """Owns the served models. ``state`` goes warming -> serving -> draining."""

    def __init__(self, runtimes: Mapping[str, ModelRuntime], config: ServerConfig, metrics: Metrics) -> None:
        self.config = config
        self.png_encoder = resolve_png_encoder(config.png_encoder)  # ConfigError (exit 2) if fpng is asked but missing.
        self.metrics = metrics
        self.runtimes = dict(runtimes)
        cores = os.cpu_count() or 1
        self.infer_pool = ThreadPoolExecutor(max_workers=2 * max(1, len(runtimes)), thread_name_prefix="infer")
        self.encode_pool = ThreadPoolExecutor(max_workers=config.encode_workers or cores, thread_name_prefix="encode")
        self.cache = WCache(config.w_cache_bytes, config.w_cache_ttl_s, metrics=metrics)
        self.models: dict[str, ServedModel] = {}
        self.state = "warming"

    # ----------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Create the batchers and start the w cache's TTL sweep (needs the running loop)."""
        c = self.config
        self.cache.start()
        for name, rt in self.runtimes.items():
            common: dict[str, Any] = dict(
                max_batch_rows=c.max_batch_size,
                max_delay_s=c.max_queue_delay_ms / 1000,
                max_queue_rows=c.max_queue_images,
                executor=self.infer_pool,
                metrics=self.metrics,
                company=partial(self._active, name),
            )
            mapping: Batcher[MapPayload, F32] = Batcher(name, "mapping", partial(_run_mapping, rt), **common)
            synthesis: Batcher[SynthPayload, Images] = Batcher(name, "synthesis", partial(_run_synthesis, rt), **common)
            mapping.start()
            synthesis.start()
            self.models[name] = ServedModel(name, rt, self._info(rt), mapping, synthesis)
            m = rt.manifest
            self.metrics.add_model(name, m.architecture, m.img_resolution, m.img_channels, m.num_ws, rt.provider)

    def _info(self, rt: ModelRuntime) -> pb.ModelInfo:
        fp16 = rt.manifest.synthesis_fp16
        precision = "fp16" if fp16 is not None and rt.synthesis_file == fp16.file else "fp32"
        return model_info(rt.manifest, rt.provider, png_encoder=self.png_encoder, precision=precision)

    def _active(self, name: str) -> int:
        sm = self.models.get(name)
        return sm.active if sm is not None else 0

    async def warmup(self) -> None:
        """Run every model at batch 1 and at its largest graph run (see ModelRuntime.warmup_batches), then serve."""
        loop = asyncio.get_running_loop()
        sizes = sorted({1, self.config.max_batch_size})
        for name, rt in self.runtimes.items():
            t0 = time.perf_counter()
            await loop.run_in_executor(self.infer_pool, rt.warmup, sizes)
            log.info(  # The graph runs made, not the sizes asked for: runs are capped by --max-run-pixels.
                "warmed up model %s on %s in %.2f s (batch sizes run: %s; batches up to %d)",
                name,
                rt.provider,
                time.perf_counter() - t0,
                rt.warmed_batches,
                self.config.max_batch_size,
            )
        self.state = "serving"
        self.metrics.ready.set(1)

    async def drain(self) -> None:
        """Refuse new work; queued work still runs."""
        self.state = "draining"
        self.metrics.ready.set(0)

    async def close(self) -> None:
        for sm in self.models.values():
            await sm.mapping.close()
            await sm.synthesis.close()
        await self.cache.close()
        self.infer_pool.shutdown(wait=True)
        self.encode_pool.shutdown(wait=True)

    def check_serving(self) -> None:
        if self.state == "warming":
            raise Unavailable("the server is warming up; retry shortly")
        if self.state == "draining":
            raise Unavailable("the server is shutting down")

    def model(self, name: str, field: str = "model") -> ServedModel:
        if not name:
            raise InvalidArgument(field, "is required")
        sm = self.models.get(text(name, field, MAX_MODEL_NAME_CHARS))
        if sm is None:
            raise NotFound(f"{field}: unknown model {quote(name)}; serving {sorted(self.models)}")
        return sm

    async def offload(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` in a worker thread: work proportional to a request's size stays off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.encode_pool, partial(fn, *args))

    # ------------------------------------------------------------------------------- mapping

    async def _chunked(self, batcher: Batcher[P, R], n: int, payload: Any, deadline: float | None) -> list[R]:
        """Submit rows [0, n) as one request, in chunks of at most the max batch size."""
        step = batcher.max_batch_rows
        parts = [(payload(a, min(n, a + step)), min(n, a + step) - a) for a in range(0, n, step)]
        return await batcher.submit_all(parts, deadline)

    @staticmethod
    def latent_key(sm: ServedModel, lat: Latent) -> str:
        """The w cache key of a mapped latent: model + seed (or z bytes) + class."""
        if lat.seed is not None:
            return content_key(sm.name, "seed", lat.seed, lat.class_index)
        assert lat.z is not None
        return content_key(sm.name, "z", lat.z.tobytes(), lat.class_index)

    async def map_latents(
        self, sm: ServedModel, latents: Sequence[Latent], deadline: float | None
    ) -> tuple[F32, list[str]]:
        """Latents -> w ``[N, w_dim]`` and their cache keys; cached ones skip z and the mapping network."""
        m = sm.manifest
        keys = [self.latent_key(sm, lat) for lat in latents]
        w = np.empty((len(latents), m.w_dim), np.float32)
        miss: list[int] = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key, sm.name)
            if hit is None:
                miss.append(i)
            else:
                w[i] = hit
        if miss:
            todo = [latents[i] for i in miss]
            z = np.stack([lat.z_value(m.z_dim) for lat in todo])
            c = class_labels([lat.class_index for lat in todo], m.c_dim) if m.c_dim else None
            parts = await self._chunked(
                sm.mapping, len(miss), lambda a, b: (z[a:b], None if c is None else c[a:b]), deadline
            )
            mapped = np.concatenate(parts)
            w[miss] = mapped
            for j, i in enumerate(miss):
                self.cache.put(keys[i], sm.name, mapped[j])
        return w, keys

    def truncate(self, sm: ServedModel, w: F32, truncations: Sequence[Truncation]) -> F32:
        """w ``[N, w_dim]`` -> ws ``[N, num_ws, w_dim]`` with each row's psi and cutoff."""
        m = sm.manifest
        psi = np.array([t.psi for t in truncations], np.float32)
        cutoff = np.array([t.cutoff_or(m.num_ws) for t in truncations], np.int64)
        return truncate_rows(broadcast_ws(w, m.num_ws), sm.runtime.w_avg, psi, cutoff)

    # ------------------------------------------------------------------------------ sources

    def cached_w(self, sm: ServedModel, w_id: str, field: str) -> F32:
        hit = self.cache.get(w_id, sm.name)
        if hit is None:
            raise NotFound(
                f"{field}: unknown w id {quote(w_id)} for model {sm.name!r} (never stored, evicted or expired)"
            )
        return hit

    async def resolve(self, sm: ServedModel, sources: Sequence[Source], deadline: float | None) -> F32:
        """Each source as a full ws ``[num_ws, w_dim]``. ``# [S, num_ws, w_dim]``"""
        m = sm.manifest
        out = np.empty((len(sources), m.num_ws, m.w_dim), np.float32)
        seeded = [i for i, s in enumerate(sources) if s.seed is not None]
        for i, s in enumerate(sources):
            if s.w is not None:
                out[i] = s.w
            elif s.w_id is not None:
                hit = self.cached_w(sm, s.w_id, f"{s.field}.w_id")
                out[i] = hit if hit.ndim == 2 else hit[None]
        if seeded:
            src = [sources[i] for i in seeded]
            w, _ = await self.map_latents(sm, [Latent(seed=s.seed, class_index=s.class_index) for s in src], deadline)
            out[seeded] = self.truncate(sm, w, [s.truncation for s in src])
        for i, s in enumerate(sources):
            if s.edits:  # Semantic edits, after truncation (convert.edits checked them against the manifest).
                out[i] = apply_edits(out[i], s.edits, sm.runtime.directions)
        return out

    async def assemble(self, sm: ServedModel, plans: Sequence[Plan], deadline: float | None) -> F32:
        """Per-layer style plans -> ws ``[N, num_ws, w_dim]``; later styles override earlier ones."""
        m = sm.manifest
        resolved = await self.resolve(sm, [ls.source for p in plans for ls in p.styles], deadline)
        ws = np.empty((len(plans), m.num_ws, m.w_dim), np.float32)
        k = 0
        for i, p in enumerate(plans):
            for ls in p.styles:
                idx = list(ls.layers)
                ws[i, idx] = resolved[k, idx]
                k += 1
        return ws

    # ---------------------------------------------------------------------------- synthesis

    async def synthesize(
        self,
        sm: ServedModel,
        ws: F32,
        noise: Sequence[NoiseSpec],
        outputs: Sequence[str],
        deadline: float | None,
        transforms: F32 | None = None,
    ) -> Images:
        """ws ``[N, num_ws, w_dim]`` (+ input transforms ``[N, 3, 3]``, None = identity) -> the requested graph
        outputs (``image_uint8`` NHWC, ``image`` NCHW float)."""
        specs, names, tf = tuple(noise), tuple(outputs), transforms
        parts = await self._chunked(
            sm.synthesis, len(ws), lambda a, b: (ws[a:b], specs[a:b], names, None if tf is None else tf[a:b]), deadline
        )
        return {name: np.concatenate([p[name] for p in parts]) for name in names}

    async def encode(self, images: npt.NDArray[np.generic], out: Output) -> list[pb.Image]:
        """Encode each image in the encoding pool, in parallel."""
        loop = asyncio.get_running_loop()
        level, png_encoder = self.config.png_compress_level, self.png_encoder
        hist = self.metrics.encode_seconds.labels(out.format)

        def one(img: npt.NDArray[np.generic]) -> pb.Image:
            t0 = time.perf_counter()
            res = encode(img, out, level, png_encoder)
            hist.observe(time.perf_counter() - t0)
            return res

        return list(await asyncio.gather(*(loop.run_in_executor(self.encode_pool, one, img) for img in images)))
