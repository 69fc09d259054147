"""onnxruntime sessions over one model directory (never imports torch).

:class:`ModelRuntime` loads ``model.json``, ``mapping.onnx``, ``synthesis.onnx`` and the constant
noise planes, checks that the graphs' inputs and outputs are the ones the manifest promises, and
runs the two networks on numpy arrays. Noise feeds are assembled per image so that images with
different noise modes, seeds and per-layer strengths can share one synthesis run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from styleserve.errors import InvalidArgument, ManifestError
from styleserve.latent import noise_from_seed
from styleserve.manifest import NOISE_MODES, ModelManifest

F32 = npt.NDArray[np.float32]

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


def session_options(intra_op_threads: int | None = None) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = intra_op_threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


class ModelRuntime:
    def __init__(
        self,
        model_dir: Path | str,
        *,
        device: str = "auto",
        device_id: int = 0,
        intra_op_threads: int | None = None,
        fp16: bool = False,
        io_binding: bool | None = None,
    ) -> None:
        self.dir = Path(model_dir)
        self.manifest = m = ModelManifest.load(self.dir)
        providers = select_providers(device, device_id)
        so = session_options(intra_op_threads)
        graph = m.synthesis_fp16 if fp16 and m.synthesis_fp16 else m.synthesis
        # The mapping network is a few small dense layers (~2 MMAC per row for z/w dim 512): it runs on the
        # calling thread. A second intra-op pool would keep spinning after each mapping run and take the cores
        # from the synthesis run that follows (measured: map + synthesis of one 64 px FFHQ-like image took
        # 71 ms with a 2-thread mapping pool on 2 cores, 40 ms with this; see docs/BENCHMARKS.md).
        map_so = session_options(1)
        self.mapping = self._open(m.mapping.file, map_so, providers, m.mapping.inputs, m.mapping.outputs)
        self.synthesis = self._open(graph.file, so, providers, graph.inputs, graph.outputs)
        self.synthesis_file = graph.file
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
        const_path = self.dir / m.noise_const_file
        try:
            with np.load(const_path, allow_pickle=False) as npz:
                self.noise_const = {k: np.asarray(npz[k], dtype=np.float32)[None, None] for k in self.noise_names}
        except (OSError, KeyError, ValueError) as exc:
            raise ManifestError(f"{const_path}: cannot read constant noise: {exc}") from exc
        for name, res in zip(self.noise_names, self.noise_res, strict=True):
            if self.noise_const[name].shape != (1, 1, res, res):
                raise ManifestError(
                    f"{const_path}: {name} has shape {self.noise_const[name].shape[2:]}, need {(res, res)}"
                )
        self._device = ("cuda", device_id) if self.on_cuda else ("cpu", 0)
        self._const_values = (
            {k: ort.OrtValue.ortvalue_from_numpy(v, *self._device) for k, v in self.noise_const.items()}
            if self.io_binding
            else {}
        )

    def _open(
        self, file: str, so: ort.SessionOptions, providers: list[Any], inputs: list[str], outputs: list[str]
    ) -> ort.InferenceSession:
        path = self.dir / file
        if not path.is_file():
            raise ManifestError(f"{path}: missing graph file")
        try:
            sess = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ManifestError(f"{path}: onnxruntime cannot load it: {exc}") from exc
        got_in = [i.name for i in sess.get_inputs()]
        got_out = [o.name for o in sess.get_outputs()]
        if got_in != inputs or got_out != outputs:
            raise ManifestError(
                f"{path}: graph has inputs {got_in} / outputs {got_out}, model.json says {inputs} / {outputs}"
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
        (w,) = self.mapping.run(["w"], feeds)
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
        self, ws: F32, noise: Sequence[NoiseSpec] | None = None, output: str = "uint8"
    ) -> npt.NDArray[np.generic]:
        """ws ``[N, num_ws, w_dim]`` -> uint8 ``[N, H, W, C]`` or float32 ``[N, C, H, W]``."""
        name = {"uint8": IMAGE_UINT8, "float": IMAGE_FLOAT}[output]
        return self.run_synthesis(ws, noise, (name,))[name]

    def run_synthesis(
        self, ws: F32, noise: Sequence[NoiseSpec] | None = None, outputs: Sequence[str] = (IMAGE_UINT8,)
    ) -> dict[str, npt.NDArray[np.generic]]:
        """One synthesis run; ``outputs`` is a subset of ``image`` (float NCHW) and ``image_uint8`` (NHWC)."""
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
        if not self.io_binding:
            return dict(zip(names, self.synthesis.run(names, {"ws": ws, **feeds}), strict=True))
        binding = self.synthesis.io_binding()
        binding.bind_cpu_input("ws", ws)
        for k, v in feeds.items():
            if v is self.noise_const[k]:
                binding.bind_ortvalue_input(k, self._const_values[k])
            else:
                binding.bind_cpu_input(k, v)
        for name in names:
            binding.bind_output(name, *self._device)
        self.synthesis.run_with_iobinding(binding)
        return dict(zip(names, binding.copy_outputs_to_cpu(), strict=True))

    def warmup(self, batch_sizes: Sequence[int] = (1,)) -> None:
        """Run both networks once per batch size (allocates arenas and CUDA kernels before serving)."""
        m = self.manifest
        for n in batch_sizes:
            c = np.eye(max(1, m.c_dim), dtype=np.float32)[np.zeros(n, np.int64)][:, : m.c_dim]
            w = self.map(np.zeros((n, m.z_dim), np.float32), c if m.c_dim else None)
            ws = np.repeat(w[:, None], m.num_ws, axis=1)
            self.run_synthesis(ws, [NoiseSpec()] * n, (IMAGE_UINT8, IMAGE_FLOAT))
