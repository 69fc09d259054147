"""onnxruntime sessions over one model directory (never imports torch).

:class:`ModelRuntime` loads ``model.json``, ``mapping.onnx``, ``synthesis.onnx`` and the constant
noise planes, checks that the graphs' inputs and outputs are the ones the manifest promises, and
runs the two networks on numpy arrays. Noise feeds are assembled per image so that images with
different noise modes, seeds and per-layer strengths can share one synthesis run.
"""

from __future__ import annotations

import logging
import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from styleserve.errors import InvalidArgument, ManifestError
from styleserve.latent import noise_from_seed
from styleserve.manifest import (
    NOISE_MODES,
    GraphFile,
    ModelManifest,
    manifest_file,
    one_line,
    resolve_inside,
    sha256_file,
)
from styleserve.transform import identity_transforms

F32 = npt.NDArray[np.float32]
log = logging.getLogger("styleserve.server")

IMAGE_FLOAT = "image"  # float32 [N, C, H, W] in [-1, 1], unclamped.
IMAGE_UINT8 = "image_uint8"  # uint8 [N, H, W, C].


@dataclass(frozen=True)
class NoiseSpec:
    """How one image's noise inputs are made."""

    mode: str = "const"  # const | none | random
    seed: int = 0  # For mode 'random'.
    strength: Sequence[float] | None = None  # Per noise input multiplier (None = 1 everywhere).


def select_providers(device: str = "auto", device_id: int = 0) -> list[str | tuple[str, dict[str, object]]]:
    """CUDA when asked for or available (``auto``), else CPU."""
    available = ort.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    if device == "cuda":
        raise RuntimeError(f"CUDA execution provider not available (have {available})")
    return ["CPUExecutionProvider"]


def session_options(intra_op_threads: int | None = None, *, cpu_mem_arena: bool = True) -> ort.SessionOptions:
    """The server's session options: onnxruntime's memory pattern always off; its CPU memory arena on by default.

    Measured (docs/BENCHMARKS.md, "Memory"): the memory pattern adds a whole-plan block per batch size on top of
    the arena (one 256 px FFHQ-like session after runs at batch 1/4/16: 2.86 GiB with it, 1.58 GiB without) and
    made no measurable difference in speed. The arena keeps the largest run's peak for good, but without it
    every run page-faults fresh buffers: a 1024 px batch-4 run took 17-52 s instead of 12-16 s on the same
    (loaded) machine. ``--cpu-mem-arena false`` trades that time for an RSS that falls back between runs.
    The largest run is bounded by ``max_run_pixels`` (:class:`ModelRuntime`), so the arena is too.
    CUDA sessions keep their device arena (this only concerns host buffers).
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = intra_op_threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_cpu_mem_arena = cpu_mem_arena
    so.enable_mem_pattern = False
    return so


MAX_RUN_PIXELS = 4 * 1024 * 1024
"""Default image pixels (rows x H x W) per synthesis run (``--max-run-pixels``): 4 rows of 1024 px, 16 of 512 px,
64 of 256 px; a run's live tensors grow with it (docs/BENCHMARKS.md, "Memory")."""
NPY_HEADER_MAX = 4096  # An .npy header of a 2-d float32 array is 128 bytes; numpy itself refuses > 10000.
ZIP_ENTRY_MAX = 512  # Local header + central directory entry of one member (names are short).
MAX_GRAPH_BYTES = 2**31  # protobuf's limit: an .onnx file without external data cannot be larger.


def noise_file_budget(m: ModelManifest) -> int:
    """The most bytes ``noise_const.npz`` may hold: the float32 planes, a header and zip entry per plane, 64 KiB."""
    return sum(4 * n.resolution**2 + NPY_HEADER_MAX + ZIP_ENTRY_MAX for n in m.noise_inputs) + 65536


def directions_shape(m: ModelManifest) -> tuple[int, int, int]:
    """``directions.file``'s array: ``[ranges, count, w_dim]`` (the manifest bounds each)."""
    assert m.directions is not None
    return (len(m.directions.ranges), m.directions.count, m.w_dim)


def check_file_sizes(m: ModelManifest, files: dict[str, Path], where: str) -> None:
    """Before anything is hashed or read: graphs within protobuf's 2 GiB, the noise and directions files within
    their budgets."""
    for field, path in files.items():
        cap = noise_file_budget(m) if field == "noise_const_file" else MAX_GRAPH_BYTES
        if field == "directions.file":
            cap = 4 * int(np.prod(directions_shape(m))) + NPY_HEADER_MAX
        size = path.stat().st_size
        if size > cap:
            raise ManifestError(f"{where}: {field}: {path.name} holds {size} bytes, at most {cap} allowed")


def check_files_sha256(m: ModelManifest, fp16: bool, files: dict[str, Path], where: str) -> None:
    """Every file the server opens against ``source.files_sha256`` (streamed, 1 MiB at a time).

    A graph without a hash is refused; ``noise_const_file`` without one (exports before the noise planes
    were hashed) loads with a warning.
    """
    hashes = m.files_sha256
    for field, rel in m.opened_files(fp16).items():
        want = hashes.get(rel)
        if want is None:
            if field == "noise_const_file":
                log.warning("%s: source.files_sha256: no sha256 for %s; loading it unverified", where, rel)
                continue
            raise ManifestError(
                f"{where}: source.files_sha256: no sha256 for {rel} ({field}); re-export the model, "
                "or serve with --verify-files false"
            )
        got = sha256_file(files[field])
        if got != want:
            raise ManifestError(
                f"{where}: {field}: {Path(where).parent / rel} has sha256 {got[:16]}..., "
                f"source.files_sha256 says {want[:16]}...: "
                "the file changed after export"
            )


def _expected_shapes(m: ModelManifest) -> dict[str, dict[str, list[tuple[int | None, str]]]]:
    """Graph -> tensor -> expected dims, each with the manifest field that fixes it (None: any size)."""
    n: tuple[int | None, str] = (None, "")
    res = (m.img_resolution, "img_resolution")
    ch = (m.img_channels, "img_channels")
    mapping = {"z": [n, (m.z_dim, "z_dim")], "w": [n, (m.w_dim, "w_dim")]}
    if m.c_dim:
        mapping["c"] = [n, (m.c_dim, "c_dim")]
    synthesis = {"ws": [n, (m.num_ws, "num_ws"), (m.w_dim, "w_dim")], "image": [n, ch, res, res]}
    synthesis["image_uint8"] = [n, res, res, ch]
    for i, ni in enumerate(m.noise_inputs):
        r = (ni.resolution, f"noise_inputs[{i}].resolution")
        synthesis[ni.name] = [n, (1, f"noise_inputs[{i}]"), r, r]
    if m.transform_input:  # StyleGAN3: inv(make_transform) per image.
        synthesis[m.transform_input] = [n, (3, "transform_input"), (3, "transform_input")]
    return {"mapping": mapping, "synthesis": synthesis}


def check_graph_shapes(
    m: ModelManifest,
    mapping: ort.InferenceSession,
    synthesis: ort.InferenceSession,
    where: str,
    synthesis_field: str = "synthesis",
) -> None:
    """The graphs' declared input/output shapes and types must agree with the manifest's dimensions."""
    uint8 = {"image_uint8"}
    expected = _expected_shapes(m)
    for graph, file_field, sess in (("mapping", "mapping", mapping), ("synthesis", synthesis_field, synthesis)):
        want = expected[graph]
        for arg in [*sess.get_inputs(), *sess.get_outputs()]:
            dims = want.get(arg.name)
            if dims is None:
                continue
            typ = "tensor(uint8)" if arg.name in uint8 else "tensor(float)"
            if arg.type != typ:
                raise ManifestError(
                    f"{where}: {file_field}.file: {arg.name} is {arg.type}, the server feeds/reads {typ}"
                )
            shape = list(arg.shape) if arg.shape is not None else None
            if shape is None:
                continue
            if len(shape) != len(dims):
                raise ManifestError(
                    f"{where}: {file_field}.file: {arg.name} has shape {shape}, need {len(dims)} dimensions"
                )
            for got, (need, dim_field) in zip(shape, dims, strict=True):
                if need is not None and isinstance(got, int) and got != need:
                    raise ManifestError(
                        f"{where}: {dim_field}: {need} disagrees with the {graph} graph, whose {arg.name} is {shape}"
                    )


def load_noise_const(path: Path, m: ModelManifest, where: str) -> dict[str, F32]:
    """The constant noise planes ``[1, 1, r, r]``; every member's size, shape and dtype is checked before it is read."""
    field = "noise_const_file"
    budget = noise_file_budget(m)
    out: dict[str, F32] = {}
    try:
        size = path.stat().st_size
        if size > budget:
            raise ManifestError(
                f"{where}: {field}: {path.name} holds {size} bytes, the planes of noise_inputs need at most {budget}"
            )
        with zipfile.ZipFile(path) as zf:
            members = {info.filename: info for info in zf.infolist()}
            for i, n in enumerate(m.noise_inputs):
                info = members.get(f"{n.name}.npy")
                if info is None:
                    raise ManifestError(f"{where}: noise_inputs[{i}].name: {n.name!r} is not in {path.name}")
                need = 4 * n.resolution**2
                if info.file_size > need + NPY_HEADER_MAX:
                    raise ManifestError(
                        f"{where}: {field}: {path.name} member {info.filename} declares {info.file_size} bytes, "
                        f"a [{n.resolution}, {n.resolution}] float32 plane needs {need}; refused before inflating"
                    )
                with zf.open(info) as fp:
                    shape, fortran, dtype = read_npy_header(fp, info.filename)
                    if shape != (n.resolution, n.resolution) or dtype.kind != "f" or dtype.itemsize != 4:
                        raise ManifestError(
                            f"{where}: noise_inputs[{i}].resolution: {n.resolution} disagrees with {path.name} "
                            f"member {info.filename}: {dtype} {shape}, need float32 {(n.resolution, n.resolution)}"
                        )
                    data = fp.read(need)
                if len(data) != need:
                    raise ValueError(f"{info.filename} is truncated")
                plane = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C").astype(np.float32)
                if not np.isfinite(plane).all():
                    raise ManifestError(f"{where}: {field}: {path.name} member {info.filename} holds NaN or inf")
                out[n.name] = plane[None, None]
    except ManifestError:
        raise
    except (OSError, ValueError, EOFError, NotImplementedError, zipfile.BadZipFile, zlib.error) as exc:
        raise ManifestError(f"{where}: {field}: {path}: cannot read constant noise: {one_line(exc)}") from exc
    return out


def read_npy_header(fp: IO[bytes], name: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """An ``.npy`` header (format 1.0 or 2.0) as (shape, fortran order, dtype), read before any data so that the
    caller can check it against the manifest; ValueError for another version."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fp)  # type: ignore[no-any-return]
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fp)  # type: ignore[no-any-return]
    raise ValueError(f"{name}: .npy format version {version} is not supported")


def load_directions(path: Path, m: ModelManifest, where: str) -> dict[str, F32]:
    """Range name -> its unit directions ``[count, w_dim]``, from ``directions.file``: the header is checked
    against the manifest before the (size-capped, see :func:`check_file_sizes`) data is read."""
    field = "directions.file"
    assert m.directions is not None
    want = directions_shape(m)
    try:
        with open(path, "rb") as fp:
            shape, fortran, dtype = read_npy_header(fp, path.name)
            if shape != want or dtype.kind != "f" or dtype.itemsize != 4:
                raise ManifestError(
                    f"{where}: {field}: {path.name} holds {dtype} {list(shape)}, directions need float32 {list(want)}"
                )
            need = 4 * int(np.prod(want))
            data = fp.read(need)
        if len(data) != need:
            raise ValueError("truncated")
    except ManifestError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise ManifestError(f"{where}: {field}: {path}: cannot read directions: {one_line(exc)}") from exc
    arr = np.frombuffer(data, dtype).reshape(want, order="F" if fortran else "C").astype(np.float32)
    norms = np.linalg.norm(arr, axis=2) if np.isfinite(arr).all() else None
    if norms is None or not np.allclose(norms, 1.0, atol=1e-3):
        raise ManifestError(f"{where}: {field}: {path.name}: directions must be finite unit vectors")
    return {r.name: arr[i] for i, r in enumerate(m.directions.ranges)}


class ModelRuntime:
    """One model directory, checked before anything runs (every failure is a ManifestError naming the field).

    Every file opened (``model.json``, both graphs, the noise planes, the edit directions) must resolve, after following
    symlinks, to a regular file inside the model directory; with ``verify_files`` (the default) its
    sha256 must match ``source.files_sha256``. The graphs' input and output shapes must agree with the
    manifest, and the noise planes are size-checked before they are read.
    """

    def __init__(
        self,
        model_dir: Path | str,
        *,
        device: str = "auto",
        device_id: int = 0,
        intra_op_threads: int | None = None,
        fp16: bool = False,
        io_binding: bool | None = None,
        verify_files: bool = True,
        cpu_mem_arena: bool = True,
        max_run_pixels: int = MAX_RUN_PIXELS,
    ) -> None:
        self.dir = Path(model_dir)
        self.where = where = str(manifest_file(self.dir))
        self.manifest = m = ModelManifest.load(self.dir)
        files = {field: resolve_inside(self.dir, rel, where, field) for field, rel in m.opened_files(fp16).items()}
        check_file_sizes(m, files, where)
        if verify_files:
            check_files_sha256(m, fp16, files, where)
        self.noise_const = load_noise_const(files["noise_const_file"], m, where)  # cheap checks before the graphs
        providers = select_providers(device, device_id)
        self.cpu_mem_arena = cpu_mem_arena
        # Rows per synthesis run: larger batches run in pieces, so one run's buffers stay within max_run_pixels.
        self.max_run_rows = max(1, max_run_pixels // m.img_resolution**2)
        so = session_options(intra_op_threads, cpu_mem_arena=cpu_mem_arena)
        graph = m.synthesis_fp16 if fp16 and m.synthesis_fp16 else m.synthesis
        graph_field = "synthesis_fp16" if graph is m.synthesis_fp16 else "synthesis"
        # The mapping network is a few small dense layers (~2 MMAC per row for z/w dim 512): it runs on the
        # calling thread. A second intra-op pool would keep spinning after each mapping run and take the cores
        # from the synthesis run that follows (measured: map + synthesis of one 64 px FFHQ-like image took
        # 71 ms with a 2-thread mapping pool on 2 cores, 40 ms with this; see docs/BENCHMARKS.md).
        map_so = session_options(1, cpu_mem_arena=cpu_mem_arena)
        self.mapping = self._open("mapping", files["mapping.file"], map_so, providers, m.mapping)
        self.synthesis = self._open(graph_field, files[f"{graph_field}.file"], so, providers, graph)
        check_graph_shapes(m, self.mapping, self.synthesis, where, graph_field)
        # Semantic edit directions, range -> [count, w_dim] (none for exports before them); after the graphs, which
        # name a disagreeing w_dim first.
        self.directions = load_directions(files["directions.file"], m, where) if m.directions is not None else {}
        self.synthesis_file = graph.file
        self.synthesis_field = graph_field
        self.provider = self.synthesis.get_providers()[0]
        if device == "cuda" and self.provider != "CUDAExecutionProvider":
            # onnxruntime-gpu lists the CUDA provider even when CUDA cannot start, then falls back to the CPU.
            raise RuntimeError(f"{self.dir}: --device cuda asked for, but onnxruntime runs it on {self.provider}")
        self.device_id = device_id
        self.on_cuda = self.provider == "CUDAExecutionProvider"
        # IO binding (default on CUDA): the constant noise planes live on the device for good, outputs are
        # written to device memory and only the requested output is copied to the host at the end.
        self.io_binding = self.on_cuda if io_binding is None else io_binding
        self.w_avg = np.asarray(m.w_avg, dtype=np.float32)
        self.noise_names = [n.name for n in m.noise_inputs]
        self.noise_res = [n.resolution for n in m.noise_inputs]
        self.transform_name = m.transform_input  # None: the graph takes no transform (only the identity is valid).
        self._device = ("cuda", device_id) if self.on_cuda else ("cpu", 0)
        self._run_options: ort.RunOptions | None = None  # Warm-up: quiet, its failures are raised as one line.
        self.warmed_batches: list[int] = []  # The batch sizes the last warmup() ran (warmup_batches()).
        self._const_values = (
            {k: ort.OrtValue.ortvalue_from_numpy(v, *self._device) for k, v in self.noise_const.items()}
            if self.io_binding
            else {}
        )

    def _open(
        self, field: str, path: Path, so: ort.SessionOptions, providers: list[Any], graph: GraphFile
    ) -> ort.InferenceSession:
        try:
            sess = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ManifestError(
                f"{self.where}: {field}.file: {path}: onnxruntime cannot load it: {one_line(exc)}"
            ) from exc
        got_in = [i.name for i in sess.get_inputs()]
        got_out = [o.name for o in sess.get_outputs()]
        if got_in != graph.inputs or sorted(got_out) != sorted(graph.outputs):
            raise ManifestError(
                f"{self.where}: {field}: {path.name} has inputs {got_in} / outputs {got_out}, "
                f"model.json says {graph.inputs} / {graph.outputs}"
            )
        return sess

    # ------------------------------------------------------------------ mapping

    def map(self, z: F32, c: F32 | None = None) -> F32:
        """z ``[N, z_dim]`` (+ one-hot c ``[N, c_dim]``) -> w ``[N, w_dim]``."""
        m = self.manifest
        feeds = {"z": np.ascontiguousarray(z, dtype=np.float32)}
        if m.c_dim:
            if c is None:
                raise InvalidArgument("class_index", f"model {m.name!r} is conditional on {m.c_dim} classes")
            feeds["c"] = np.ascontiguousarray(c, dtype=np.float32)
        (w,) = self.mapping.run(["w"], feeds, self._run_options)
        return np.asarray(w, dtype=np.float32)

    # ---------------------------------------------------------------- synthesis

    def noise_feeds(self, specs: Sequence[NoiseSpec]) -> dict[str, F32]:
        """One noise array per noise input: ``[1, 1, r, r]`` when every image uses plain const noise."""
        n = len(specs)
        for i, s in enumerate(specs):
            if s.mode not in NOISE_MODES:
                raise InvalidArgument(f"noise[{i}].mode", f"must be one of {', '.join(NOISE_MODES)}")
            if s.strength is not None and len(s.strength) != len(self.noise_names):
                raise InvalidArgument(
                    f"noise[{i}].strength", f"needs {len(self.noise_names)} values, got {len(s.strength)}"
                )
        if all(s.mode == "const" and s.strength is None for s in specs):
            return dict(self.noise_const)
        feeds = {k: np.empty((n, 1, r, r), np.float32) for k, r in zip(self.noise_names, self.noise_res, strict=True)}
        for i, s in enumerate(specs):
            if s.mode == "const":
                planes = [self.noise_const[k][0] for k in self.noise_names]
            elif s.mode == "none":
                planes = [np.zeros((1, r, r), np.float32) for r in self.noise_res]
            else:
                planes = [p[0] for p in noise_from_seed(s.seed, self.noise_res)]
            for j, (k, plane) in enumerate(zip(self.noise_names, planes, strict=True)):
                scale = 1.0 if s.strength is None else float(s.strength[j])
                feeds[k][i] = plane * scale if scale != 1.0 else plane
        return feeds

    def synthesize(
        self, ws: F32, noise: Sequence[NoiseSpec] | None = None, output: str = "uint8", transforms: F32 | None = None
    ) -> npt.NDArray[np.generic]:
        """ws ``[N, num_ws, w_dim]`` -> uint8 ``[N, H, W, C]`` or float32 ``[N, C, H, W]``."""
        name = {"uint8": IMAGE_UINT8, "float": IMAGE_FLOAT}[output]
        return self.run_synthesis(ws, noise, (name,), transforms)[name]

    def transform_feeds(self, n: int, transforms: F32 | None) -> dict[str, F32]:
        """The transform input ``[n, 3, 3]`` (identity when None) of a model that takes one; ``{}`` otherwise,
        where anything but the identity is refused (InvalidArgument naming ``transform``)."""
        if transforms is not None:
            transforms = np.ascontiguousarray(transforms, dtype=np.float32)
            if transforms.shape != (n, 3, 3):
                raise InvalidArgument("transform", f"must be [{n}, 3, 3], got {list(transforms.shape)}")
            if not np.isfinite(transforms).all():
                raise InvalidArgument("transform", "contains NaN or Inf")
        if self.transform_name is None:
            if transforms is not None and not np.array_equal(transforms, identity_transforms(n)):
                raise InvalidArgument(
                    "transform", f"model {self.manifest.name!r} takes no input transform (translate / rotate)"
                )
            return {}
        return {self.transform_name: identity_transforms(n) if transforms is None else transforms}

    def run_synthesis(
        self,
        ws: F32,
        noise: Sequence[NoiseSpec] | None = None,
        outputs: Sequence[str] = (IMAGE_UINT8,),
        transforms: F32 | None = None,
    ) -> dict[str, npt.NDArray[np.generic]]:
        """One synthesis run; ``outputs`` is a subset of ``image`` (float NCHW) and ``image_uint8`` (NHWC);
        ``transforms`` ``[N, 3, 3]`` (models with a transform input; None = identity)."""
        m = self.manifest
        ws = np.ascontiguousarray(ws, dtype=np.float32)
        if ws.ndim != 3 or ws.shape[1:] != (m.num_ws, m.w_dim):
            raise InvalidArgument("ws", f"must be [N, {m.num_ws}, {m.w_dim}], got {list(ws.shape)}")
        specs = list(noise) if noise is not None else [NoiseSpec()] * ws.shape[0]
        if len(specs) != ws.shape[0]:
            raise InvalidArgument("noise", f"needs {ws.shape[0]} entries, got {len(specs)}")
        names = list(dict.fromkeys(outputs))
        if not names or any(n not in (IMAGE_FLOAT, IMAGE_UINT8) for n in names):
            raise ValueError(f"outputs must be a subset of {[IMAGE_FLOAT, IMAGE_UINT8]}, got {names}")
        feeds = self.noise_feeds(specs)
        feeds.update(self.transform_feeds(ws.shape[0], transforms))
        return self._run_rows(ws, feeds, names)

    def _run_rows(self, ws: F32, feeds: dict[str, F32], names: list[str]) -> dict[str, npt.NDArray[np.generic]]:
        """At most ``max_run_rows`` rows per graph run (the memory of one run is bounded by ``max_run_pixels``);
        per-row feeds are sliced, batch-1 (broadcast) feeds such as the constant noise planes are passed as they are."""
        n, step = ws.shape[0], self.max_run_rows
        if n <= step:
            return self._run_graph(ws, feeds, names)
        parts = []
        for a in range(0, n, step):
            b = min(n, a + step)
            part = {k: (v[a:b] if v.shape[0] == n else v) for k, v in feeds.items()}
            parts.append(self._run_graph(ws[a:b], part, names))
        return {k: np.concatenate([p[k] for p in parts]) for k in names}

    def _run_graph(self, ws: F32, feeds: dict[str, F32], names: list[str]) -> dict[str, npt.NDArray[np.generic]]:
        """The synthesis graph on checked inputs (an engine subclass overrides this: server/engine_openvino.py)."""
        if not self.io_binding:
            return dict(zip(names, self.synthesis.run(names, {"ws": ws, **feeds}, self._run_options), strict=True))
        binding = self.synthesis.io_binding()
        binding.bind_cpu_input("ws", ws)
        for k, v in feeds.items():
            if v is self.noise_const.get(k):
                binding.bind_ortvalue_input(k, self._const_values[k])
            else:
                binding.bind_cpu_input(k, v)
        for name in names:
            binding.bind_output(name, *self._device)
        self.synthesis.run_with_iobinding(binding, self._run_options)
        return dict(zip(names, binding.copy_outputs_to_cpu(), strict=True))

    def warmup_batches(self, batch_sizes: Sequence[int]) -> list[int]:
        """The graph-run sizes a warm-up needs, given the batch sizes the batcher may form (up to the largest):
        runs never exceed ``max_run_rows``, so neither does the warm-up (a 1024 px model at ``--max-batch-size 16``
        runs, and warms up at, 4 rows).

        * CPU: batch 1 and the largest run: the largest run's memory is taken once at start (a machine that
          cannot hold it fails there, not under load) and, with ``cpu_mem_arena``, kept by the arena;
        * CUDA: every size from 1 to the largest run, since cuDNN picks its convolution algorithms per shape.
        """
        top = min(max(batch_sizes, default=1), self.max_run_rows)
        if self.on_cuda:
            return list(range(1, top + 1))
        return sorted({1, top})

    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Run both networks once per batch size of :meth:`warmup_batches` (CUDA kernels, arenas) before serving.

        Any failure - a graph that errors, asks for more memory than there is, or returns the wrong
        shapes - is a ManifestError naming the model directory and the graph.
        """
        m = self.manifest
        field = "mapping.file"
        n = 0
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4  # onnxruntime would also print a multi-line error of its own
        self.warmed_batches = []
        try:
            for n in self.warmup_batches(batch_sizes):
                field = "mapping.file"
                c = np.eye(max(1, m.c_dim), dtype=np.float32)[np.zeros(n, np.int64)][:, : m.c_dim]
                w = self.map(np.zeros((n, m.z_dim), np.float32), c if m.c_dim else None)
                if w.shape != (n, m.w_dim):
                    raise ValueError(f"w has shape {list(w.shape)}, need {[n, m.w_dim]}")
                field = f"{self.synthesis_field}.file"
                ws = np.repeat(w[:, None], m.num_ws, axis=1)
                images = self.run_synthesis(ws, [NoiseSpec()] * n, (IMAGE_UINT8, IMAGE_FLOAT))
                r, ch = m.img_resolution, m.img_channels
                for name, want in ((IMAGE_UINT8, (n, r, r, ch)), (IMAGE_FLOAT, (n, ch, r, r))):
                    if images[name].shape != want:
                        raise ValueError(f"{name} has shape {list(images[name].shape)}, need {list(want)}")
                self.warmed_batches.append(n)
        except Exception as exc:  # onnxruntime's untyped errors, MemoryError, wrong shapes: all the graph's fault
            raise ManifestError(f"{self.where}: {field}: warm-up at batch {n} failed: {one_line(exc)}") from exc
        finally:
            self._run_options = None
