"""OpenVINO as a second CPU engine for the synthesis network (``--engine openvino``; never imports torch).

The same ``synthesis.onnx`` the onnxruntime engine serves is compiled by OpenVINO with **static shapes**,
one compiled graph per batch bucket (powers of two up to ``--max-batch-size``, plus the max itself): on this
project's 256 px graph static shapes are what make OpenVINO faster than onnxruntime (docs/BENCHMARKS.md).
A run of ``n`` rows is cut into bucket-sized runs by a plan chosen from the buckets' run times measured at
warm-up (e.g. 3 rows: one run of the 4-bucket with a padded row, or 2 + 1, whichever measured faster);
padded rows are zeros and are dropped.

The mapping network stays on onnxruntime (a few small dense layers; not worth a second engine). Noise is
fed exactly as onnxruntime is fed (:meth:`~.runtime.ModelRuntime.noise_feeds`): ``[1, 1, r, r]`` planes
(all-const batches) are broadcast to the bucket, once per bucket, and per-image planes are sliced and padded.

At warm-up every bucket is compiled and checked against onnxruntime on the same inputs (random z through
the mapping network, a mix of const, random and none noise): fp32 must agree within :data:`FP32_MAX_ABS`,
bf16 (``--precision bf16``, opt-in, only on CPUs with AVX-512 BF16 or AMX) within :data:`BF16_MAX_ABS`. A
model that fails is refused (ManifestError naming the model file, the engine and the error: exit 2).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from styleserve.errors import ConfigError, ManifestError
from styleserve.manifest import one_line, resolve_inside

from .ov_passes import DEFAULT_RULE, RewriteRule, rewrite_synthesis
from .runtime import F32, IMAGE_FLOAT, IMAGE_UINT8, ModelRuntime, NoiseSpec

log = logging.getLogger("styleserve.server")

ENGINES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16")
FP32_MAX_ABS = 1e-4  # OpenVINO fp32 vs onnxruntime, float image in [-1, 1] (measured: up to 2.2e-5 at 256 px).
BF16_MAX_ABS = 0.4  # OpenVINO bf16 vs onnxruntime fp32: measured up to 0.165 at 256 px (docs/BENCHMARKS.md).
VERIFY_SEED = 20261125  # z of the verification rows: RandomState(VERIFY_SEED).randn(rows, z_dim).
OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}  # OpenVINO's INFERENCE_PRECISION_HINT (its CPU default is bf16!)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def provider_name(precision: str) -> str:
    """What ModelInfo.execution_provider and the model_info metric's ``provider`` label say."""
    return f"OpenVINO:CPU:{precision}"


def buckets_for(max_batch_size: int) -> list[int]:
    """Powers of two below ``max_batch_size``, and ``max_batch_size`` itself: ``16 -> [1, 2, 4, 8, 16]``."""
    out = {1 << k for k in range(max_batch_size.bit_length()) if 1 << k < max_batch_size}
    return sorted(out | {max_batch_size})


def plan_runs(n: int, seconds: dict[int, float]) -> list[int]:
    """The bucket sizes to run ``n`` rows with, in run order: least total measured time (ties: fewer runs).

    ``seconds[b]`` is one run of bucket b. Every run but the last is full; the last may be padded
    (e.g. 3 rows: ``[4]``, or ``[2, 1]`` when two small runs measured faster than one padded run).
    """
    if n < 1 or not seconds:
        raise ValueError(f"need n >= 1 and at least one bucket, got n={n}, buckets {sorted(seconds)}")
    best: list[tuple[float, int, list[int]]] = [(0.0, 0, [])]  # best[k]: seconds, runs, chain for k rows
    for k in range(1, n + 1):
        # b <= k: a full run of b after the best plan for k - b rows; b > k: one padded run.
        cands = [
            (best[k - b][0] + t, best[k - b][1] + 1, [*best[k - b][2], b]) if b <= k else (t, 1, [b])
            for b, t in seconds.items()
        ]
        best.append(min(cands, key=lambda c: (c[0], c[1])))
    return best[n][2][::-1]  # A padded bucket can only start a chain: it runs last.


def time_runs(fn: Callable[[], object], min_runs: int = 1, max_runs: int = 3, enough_s: float = 0.3) -> float:
    """The fastest of a few timed calls: ``max_runs``, or fewer once ``enough_s`` seconds are spent."""
    best, spent, runs = float("inf"), 0.0, 0
    while runs < min_runs or (runs < max_runs and spent < enough_s):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, runs = min(best, dt), spent + dt, runs + 1
    return best


def cpu_has_bf16() -> bool:
    """The CPU has native bf16 arithmetic (AVX-512 BF16 or AMX), from /proc/cpuinfo's flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return any(f in flags for f in BF16_CPU_FLAGS)
    return False


@functools.cache
def _core() -> Any:
    """The process's one ``openvino.Core`` (ConfigError when the package is missing)."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise ConfigError(
            f"--engine openvino needs the openvino package ({one_line(exc)}): pip install 'styleserve[openvino]'"
        ) from exc
    return ov.Core()


def check_engine_options(engine: str, precision: str, *, device: str, fp16: bool) -> None:
    """Combinations of --engine, --precision, --device and --fp16 this host can serve, else ConfigError."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if engine == "onnxruntime":
        if precision != "fp32":
            raise ConfigError(f"--precision {precision} needs --engine openvino (onnxruntime serves fp32, or --fp16)")
        return
    if fp16:
        raise ConfigError(
            "--fp16 selects onnxruntime's synthesis_fp16.onnx; with --engine openvino use --precision bf16"
        )
    if device == "cuda":
        raise ConfigError("--engine openvino runs on the CPU; it cannot be combined with --device cuda")
    core = _core()
    if precision == "bf16":
        caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if not cpu_has_bf16() or "BF16" not in caps:
            raise ConfigError(
                f"--precision bf16 needs a CPU with native bf16 ({' or '.join(BF16_CPU_FLAGS)} in /proc/cpuinfo, "
                f"BF16 in OpenVINO's capabilities {list(caps)}); this one has neither: serve fp32"
            )


def runtime_factory(
    engine: str,
    precision: str,
    max_batch_size: int,
    *,
    device: str = "auto",
    fp16: bool = False,
    graph_rewrites: bool = True,
) -> Callable[..., ModelRuntime]:
    """``ModelRuntime`` for onnxruntime, else an :class:`OpenVINORuntime` maker taking ModelRuntime's arguments."""
    check_engine_options(engine, precision, device=device, fp16=fp16)
    if engine == "onnxruntime":
        return ModelRuntime
    rule = DEFAULT_RULE if graph_rewrites else None
    return functools.partial(OpenVINORuntime, precision=precision, max_batch_size=max_batch_size, rewrite_rule=rule)


class _Bucket:
    """One compiled static-shape synthesis graph and its infer request."""

    def __init__(self, rows: int, compiled: Any) -> None:
        self.rows = rows
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.const: dict[str, tuple[F32, F32]] = {}  # name -> (source [1, 1, r, r], broadcast [rows, 1, r, r])

    def feed(self, name: str, value: F32, a: int, b: int) -> F32:
        """Rows [a, b) of one input, padded with zero rows to the bucket; ``[1, ...]`` planes are broadcast."""
        if value.shape[0] == 1 and name != "ws":
            cached = self.const.get(name)
            if cached is None or cached[0] is not value:
                cached = (value, np.ascontiguousarray(np.broadcast_to(value, (self.rows, *value.shape[1:]))))
                self.const[name] = cached
            return cached[1]
        part = value[a:b]
        if b - a == self.rows:
            return np.ascontiguousarray(part)
        out = np.zeros((self.rows, *value.shape[1:]), np.float32)
        out[: b - a] = part
        return out

    def run(self, inputs: dict[str, F32], names: Sequence[str], k: int) -> dict[str, npt.NDArray[np.generic]]:
        self.request.infer(inputs, share_inputs=True)
        return {n: np.array(self.request.get_tensor(self.compiled.output(n)).data[:k]) for n in names}


class OpenVINORuntime(ModelRuntime):
    """A :class:`ModelRuntime` whose synthesis runs on OpenVINO (mapping stays on onnxruntime).

    The onnxruntime synthesis session is opened as usual (checks, warm-up, the verification reference) and
    serves until :meth:`warmup` has compiled and verified every bucket.
    """

    def __init__(
        self,
        model_dir: Path | str,
        *,
        precision: str = "fp32",
        max_batch_size: int = 16,
        rewrite_rule: RewriteRule | None = DEFAULT_RULE,
        **kwargs: Any,
    ) -> None:
        device = kwargs.get("device", "auto")
        check_engine_options("openvino", precision, device=device, fp16=bool(kwargs.get("fp16")))
        kwargs["device"] = "cpu"  # The mapping session too: an OpenVINO server is a CPU server.
        threads = kwargs.get("intra_op_threads") or 0
        super().__init__(model_dir, **kwargs)
        self.engine = "openvino"
        self.precision = precision
        self.buckets = buckets_for(max_batch_size)
        self.max_abs = FP32_MAX_ABS if precision == "fp32" else BF16_MAX_ABS
        self.provider = provider_name(precision)
        self.ov_config = {
            "INFERENCE_PRECISION_HINT": OV_PRECISION[precision],
            "PERFORMANCE_HINT": "LATENCY",  # One stream: the batcher runs one synthesis at a time.
            "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(threads),  # 0 = one per core, like --intra-op-threads 0.
        }
        self.ov_field = f"{self.synthesis_field}.file"
        if self.transform_name is not None:  # StyleGAN3: its per-image transform input is not fed here yet.
            raise self._refuse("models with an input transform (StyleGAN3) are served by --engine onnxruntime only")
        path = resolve_inside(self.dir, self.synthesis_file, self.where, self.ov_field)
        try:
            self._ov_model = _core().read_model(str(path))
        except Exception as exc:  # OpenVINO raises its own untyped errors
            raise self._refuse(f"OpenVINO cannot read {path.name}: {one_line(exc)}") from exc
        # fp32 only: bf16 is already 3-6x onnxruntime, and its error budget is spent by the precision itself.
        self.rewrites: dict[str, int] = {}
        if precision == "fp32" and rewrite_rule is not None:
            try:
                self.rewrites = rewrite_synthesis(self._ov_model, rewrite_rule)
            except Exception as exc:  # A rewrite is an optimisation: serve the graph as read rather than refuse.
                log.warning("%s: OpenVINO graph rewrites skipped (%s); the graph runs as read",
                            self.where, one_line(exc))  # fmt: skip
                self._ov_model = _core().read_model(str(path))
        self._compiled: dict[int, _Bucket] = {}
        self.run_seconds: dict[int, float] = {}  # Measured at warm-up; plan_runs() splits batches with them.
        self.compile_seconds: dict[int, float] = {}
        self.verify_error: float | None = None  # Max abs difference to onnxruntime over every bucket.
        self._lock = threading.Lock()

    def _refuse(self, what: str) -> ManifestError:
        return ManifestError(f"{self.where}: {self.ov_field}: --engine openvino --precision {self.precision}: {what}")

    def _compile(self, rows: int) -> _Bucket:
        """The synthesis graph with every input's batch dimension fixed to ``rows``, compiled for the CPU."""
        model = self._ov_model.clone()
        shapes = {i.get_any_name(): [rows, *(d.get_length() for d in list(i.get_partial_shape())[1:])]
                  for i in model.inputs}  # fmt: skip
        model.reshape(shapes)
        return _Bucket(rows, _core().compile_model(model, "CPU", self.ov_config))

    # ------------------------------------------------------------------ synthesis

    def _run_graph(self, ws: F32, feeds: dict[str, F32], names: list[str]) -> dict[str, npt.NDArray[np.generic]]:
        if not self._compiled:  # Before warm-up: onnxruntime.
            return super()._run_graph(ws, feeds, names)
        return self._run_ov(ws, feeds, names)

    def _run_ov(self, ws: F32, feeds: dict[str, F32], names: Sequence[str]) -> dict[str, npt.NDArray[np.generic]]:
        n = ws.shape[0]
        parts: list[dict[str, npt.NDArray[np.generic]]] = []
        a = 0
        with self._lock:
            for rows in plan_runs(n, self.run_seconds):
                b = min(n, a + rows)
                bucket = self._compiled[rows]
                inputs = {"ws": bucket.feed("ws", ws, a, b), **{k: bucket.feed(k, v, a, b) for k, v in feeds.items()}}
                parts.append(bucket.run(inputs, names, b - a))
                a = b
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in names}

    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """onnxruntime's warm-up at batch 1, then compile, verify and time every bucket (ManifestError on failure)."""
        super().warmup((1,))
        m = self.manifest
        top = self.buckets[-1]
        rng = np.random.RandomState(VERIFY_SEED)
        try:
            w = self.map(
                rng.randn(top, m.z_dim).astype(np.float32),
                np.eye(m.c_dim, dtype=np.float32)[rng.randint(m.c_dim, size=top)] if m.c_dim else None,
            )
        except Exception as exc:
            raise ManifestError(f"{self.where}: mapping.file: warm-up at batch {top} failed: {one_line(exc)}") from exc
        ws = np.ascontiguousarray(np.repeat(w[:, None], m.num_ws, axis=1))  # [top, num_ws, w_dim]
        modes = ("const", "random", "none")
        specs = [NoiseSpec(modes[i % 3], seed=i) for i in range(top)]
        names = [IMAGE_FLOAT, IMAGE_UINT8]
        try:
            ref = np.asarray(super()._run_graph(ws, self.noise_feeds(specs), names)[IMAGE_FLOAT], np.float64)
        except Exception as exc:
            raise ManifestError(
                f"{self.where}: {self.ov_field}: warm-up at batch {top} failed: {one_line(exc)}"
            ) from exc
        worst = 0.0
        for rows in self.buckets:
            feeds = self.noise_feeds(specs[:rows])
            t0 = time.perf_counter()
            try:
                bucket = self._compile(rows)
                compile_s = self.compile_seconds[rows] = time.perf_counter() - t0
                inputs = {
                    "ws": bucket.feed("ws", ws, 0, rows),
                    **{k: bucket.feed(k, v, 0, rows) for k, v in feeds.items()},
                }
                got = bucket.run(inputs, names, rows)
                self.run_seconds[rows] = time_runs(functools.partial(bucket.run, inputs, names, rows))
            except Exception as exc:  # OpenVINO's untyped errors, MemoryError
                raise self._refuse(f"batch {rows} failed: {one_line(exc)}") from exc
            image = got[IMAGE_FLOAT]
            if image.shape != ref[:rows].shape:
                raise self._refuse(
                    f"image has shape {list(image.shape)} at batch {rows}, need {list(ref[:rows].shape)}"
                )
            err = float(np.max(np.abs(image.astype(np.float64) - ref[:rows])))
            if not err <= self.max_abs:  # NaN fails too
                raise self._refuse(
                    f"at batch {rows} the image differs from onnxruntime fp32 by {err:.3g} (max abs), "
                    f"more than the {self.max_abs:g} allowed"
                )
            worst = max(worst, err)
            self._compiled[rows] = bucket
            log.info("%s: OpenVINO %s batch %d: compiled in %.2f s, %.1f ms per run, max abs diff %.2g to onnxruntime",
                     m.name, self.precision, rows, compile_s, 1000 * self.run_seconds[rows], err)  # fmt: skip
        self.verify_error = worst
        if any(self.rewrites.values()):
            log.info("%s: OpenVINO graph rewrites: %s (server/ov_passes.py)", m.name,
                     ", ".join(f"{n} {kind}" for kind, n in self.rewrites.items()))  # fmt: skip
        self.warmed_batches = list(self._compiled)
