"""Export a :class:`Generator` to a model directory (see :mod:`styleserve.manifest`).

The export verifies itself before anything is written: onnxruntime runs both graphs against the
PyTorch networks at several batch sizes on fresh random inputs, for every noise mode, and the
model directory appears (atomically, by rename) only if every error is within bounds:

* mapping: max abs error <= ``MAPPING_TOL`` (1e-5)
* synthesis fp32: max abs image error <= ``IMAGE_TOL`` (1e-4); uint8 images differ by <= 1 level
* synthesis fp16 (optional): max abs image error <= ``FP16_IMAGE_TOL`` against fp32 PyTorch.

Memory (a 1024 px FFHQ config F generator exports within a few GB, see docs/BENCHMARKS.md): graphs are traced
at batch 1 with a dynamic batch axis, one graph at a time, and each ONNX proto is dropped once it is checked;
the verification sessions run without onnxruntime's CPU memory arena and memory pattern (buffers go back to
the system after every run instead of staying at the largest run's size); one case is run at a time, the
PyTorch reference first, and nothing of a finished case is kept; the verification batch sizes are clipped to
a pixel budget (:func:`verify_batches_for`), so a 1024 px model is verified at batch 1 and 2 instead of 8.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

import styleserve
from styleserve.errors import VerificationError
from styleserve.latent import noise_from_seed
from styleserve.manifest import GraphFile, ModelManifest, NoiseInput, WsSlot, sha256_file

from .networks import Generator, SynthesisLayer, SynthesisNetwork
from .networks_sg3 import GeneratorSG3, SynthesisNetworkSG3, input_transform
from .networks_v1 import GeneratorV1, StyleLayerV1, SynthesisNetworkV1
from .sefa import DIRECTIONS_FILE, write_directions

AnyGenerator = Generator | GeneratorV1
"""StyleGAN2 (:mod:`.networks`) or StyleGAN v1 (:mod:`.networks_v1`): the same export contract."""
AnySynthesis = SynthesisNetwork | SynthesisNetworkV1

OPSET = 18
MAPPING_TOL = 1e-5
IMAGE_TOL = 1e-4
FP16_IMAGE_TOL = 0.05  # ~6/255 of the [-1, 1] range: fp16 has ~3 significant digits per conv.
VERIFY_BATCHES = (1, 3, 8)
VERIFY_PIXELS = 8 * 256 * 256
"""Largest verification run, in images x pixels: the default batches in full up to 256 px (see verify_batches_for)."""
TRACE_BATCH = 1  # Graphs are traced at batch 1; the batch axis is dynamic and verified at another batch size.


def verify_batches_for(resolution: int, batches: Sequence[int], pixels: int = VERIFY_PIXELS) -> tuple[int, ...]:
    """Each requested batch size clipped to ``pixels // resolution**2`` images, but never below 2 (a batch
    other than the trace batch must run, to check the dynamic batch axis and that rows stay independent);
    duplicates dropped, order kept. ``(1, 3, 8)`` stays ``(1, 3, 8)`` up to 256 px; 512 and 1024 px -> ``(1, 2)``."""
    cap = max(2, pixels // resolution**2)
    return tuple(dict.fromkeys(min(int(b), cap) for b in batches))


class MappingGraph(nn.Module):
    """z [N, z_dim] (+ c [N, c_dim]) -> w [N, w_dim]."""

    def __init__(self, G: AnyGenerator) -> None:
        super().__init__()
        self.mapping = G.mapping

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        return self.mapping(z, c)


class SynthesisGraph(nn.Module):
    """ws + noise inputs -> (image float32 NCHW, image uint8 NHWC)."""

    def __init__(self, synthesis: AnySynthesis) -> None:
        super().__init__()
        self.synthesis = synthesis
        self.noise_mask = [layer.use_noise for _, layer in synthesis.noise_layers()]

    def forward(self, ws: Tensor, *noises: Tensor) -> tuple[Tensor, Tensor]:
        it = iter(noises)
        full = [next(it) if used else None for used in self.noise_mask]
        img = self.synthesis(ws, full)  # [N, C, H, W]
        u8 = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # [N, H, W, C]
        return img, u8


def noise_inputs(synthesis: AnySynthesis) -> list[NoiseInput]:
    return [
        NoiseInput(name="noise_" + name.replace(".", "_"), layer=name, resolution=layer.resolution)
        for name, layer in synthesis.noise_layers()
        if layer.use_noise
    ]


def ws_slots(synthesis: AnySynthesis) -> list[WsSlot]:
    """One slot per ws index: the layers it feeds and the lowest of their resolutions (conv layers by their own,
    a to-RGB ``b{res}.torgb`` by its block's). A StyleGAN2 index shared by the 8 px to-RGB and the 16 px
    up-sampling conv is an 8 px index, coarse, as that index is in StyleGAN v1 (two per resolution) and in the
    paper's style-mixing figure: a 1024 px generator's ws 0-3 are 4-8 px, 4-7 16-32 px, 8-17 64 px and up."""
    res_of = {name: layer.resolution for name, layer in synthesis.noise_layers()}
    return [
        WsSlot(index=i, layers=layers, resolution=min(res_of.get(n, int(n.split(".")[0][1:])) for n in layers))
        for i, layers in enumerate(synthesis.ws_table())
    ]


def _export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    path: Path,
    inputs: list[str],
    outputs: list[str],
    dynamic: dict[str, dict[int, str]],
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    del model
    gc.collect()  # the traced graph and the proto (weights included) go before the next graph is traced


def _session(path: Path) -> ort.InferenceSession:
    """A verification session: no CPU memory arena and no memory pattern, so that each run's buffers go back to
    the system when it ends (with the arena, every session keeps its largest run's peak for its lifetime)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.enable_cpu_mem_arena = False
    so.enable_mem_pattern = False
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@dataclass
class _Case:
    ws: np.ndarray
    noises: list[np.ndarray]
    mode: str


def _cases(G: AnyGenerator, rng: np.random.RandomState, batch: int) -> list[_Case]:
    """Random ws with independent rows per layer, for every noise mode."""
    syn = G.synthesis
    z = torch.from_numpy(rng.randn(batch * G.num_ws, G.cfg.z_dim).astype(np.float32))
    c = None
    if G.cfg.c_dim:
        c = torch.from_numpy(np.eye(G.cfg.c_dim, dtype=np.float32)[rng.randint(0, G.cfg.c_dim, batch * G.num_ws)])
    with torch.no_grad():
        w = G.mapping(z, c).numpy()
    ws = w.reshape(batch, G.num_ws, -1)
    w_avg = G.mapping.w_avg.numpy()
    ws = w_avg + rng.uniform(0.5, 1.0, size=(batch, G.num_ws, 1)).astype(np.float32) * (ws - w_avg)
    inputs = noise_inputs(syn)
    res = [n.resolution for n in inputs]
    layer_of: dict[str, SynthesisLayer | StyleLayerV1] = dict(syn.noise_layers())
    const = [layer_of[n.layer].noise_const.numpy()[None, None] for n in inputs]
    zeros = [np.zeros((1, 1, r, r), np.float32) for r in res]
    random = (
        [
            np.concatenate(p)
            for p in zip(*(noise_from_seed(int(s), res) for s in rng.randint(0, 2**31, batch)), strict=True)
        ]
        if res
        else []
    )
    return [_Case(ws, const, "const"), _Case(ws, zeros, "none"), _Case(ws, random, "random")]


def verify(
    G: AnyGenerator,
    mapping_path: Path,
    synthesis_path: Path,
    *,
    fp16_path: Path | None = None,
    batches: Sequence[int] = VERIFY_BATCHES,
    seed: int = 0,
) -> dict[str, Any]:
    """Run onnxruntime against PyTorch; raise :class:`VerificationError` past the bounds."""
    rng = np.random.RandomState(seed)
    m_sess = _session(mapping_path)
    s_sess = _session(synthesis_path)
    f_sess = _session(fp16_path) if fp16_path else None
    names = [n.name for n in noise_inputs(G.synthesis)]
    errors = _Errors(m_sess, s_sess, f_sess)
    for batch in batches:
        errors.mapping(G, rng, batch)
        for case in _cases(G, rng, batch):
            with torch.no_grad():
                full = iter(torch.from_numpy(n) for n in case.noises)
                tnoise = [next(full) if layer.use_noise else None for _, layer in G.synthesis.noise_layers()]
                ref_img = G.synthesis(torch.from_numpy(case.ws), tnoise).numpy()
            errors.synthesis({"ws": case.ws, **dict(zip(names, case.noises, strict=True))}, ref_img)
            del ref_img
    return errors.judge({"batches": list(batches), "noise_modes": ["const", "none", "random"]})


@dataclass
class _Errors:
    """The largest errors of the exported graphs (onnxruntime) against the PyTorch networks, over every case."""

    m_sess: ort.InferenceSession
    s_sess: ort.InferenceSession
    f_sess: ort.InferenceSession | None
    map_err: float = 0.0
    img_err: float = 0.0
    u8_err: int = 0
    fp16_err: float = 0.0

    def mapping(self, G: AnyGenerator | GeneratorSG3, rng: np.random.RandomState, rows: int) -> np.ndarray:
        """Random z (and one-hot c) rows through both mappings; returns PyTorch's w ``# [rows, w_dim]``."""
        cfg = G.cfg
        feeds: dict[str, np.ndarray] = {"z": rng.randn(rows, cfg.z_dim).astype(np.float32)}
        if cfg.c_dim:
            feeds["c"] = np.eye(cfg.c_dim, dtype=np.float32)[rng.randint(0, cfg.c_dim, rows)]
        with torch.no_grad():
            c_t = torch.from_numpy(feeds["c"]) if cfg.c_dim else None
            ref_w = G.mapping(torch.from_numpy(feeds["z"]), c_t).numpy()
        (got_w,) = self.m_sess.run(["w"], feeds)
        self.map_err = max(self.map_err, float(np.abs(got_w - ref_w).max()))
        return ref_w  # type: ignore[no-any-return]

    def synthesis(self, feeds: dict[str, np.ndarray], ref_img: np.ndarray) -> None:
        """The synthesis graph (and its fp16 variant) on ``feeds`` against PyTorch's ``ref_img`` ``# [N, C, H, W]``."""
        ref_u8 = np.clip(np.transpose(ref_img, (0, 2, 3, 1)) * 127.5 + 128, 0, 255).astype(np.uint8)
        img, u8 = self.s_sess.run(["image", "image_uint8"], feeds)
        self.img_err = max(self.img_err, float(np.abs(img - ref_img).max()))
        self.u8_err = max(self.u8_err, int(np.abs(u8.astype(np.int16) - ref_u8.astype(np.int16)).max()))
        del img, u8, ref_u8
        if self.f_sess is not None:
            (img16,) = self.f_sess.run(["image"], feeds)
            self.fp16_err = max(self.fp16_err, float(np.abs(img16 - ref_img).max()))

    def judge(self, report: dict[str, Any]) -> dict[str, Any]:
        """Record the errors and their bounds in ``report``; VerificationError when one exceeds its bound."""
        fp16_err = self.fp16_err if self.f_sess is not None else None
        return _judge(report, self.map_err, self.img_err, self.u8_err, fp16_err)


def _judge(
    report: dict[str, Any], map_err: float, img_err: float, u8_err: int, fp16_err: float | None
) -> dict[str, Any]:
    report.update(
        mapping_max_abs_err=map_err,
        image_max_abs_err=img_err,
        uint8_max_abs_err=u8_err,
        mapping_tol=MAPPING_TOL,
        image_tol=IMAGE_TOL,
    )
    if fp16_err is not None:
        report.update(fp16_image_max_abs_err=fp16_err, fp16_image_tol=FP16_IMAGE_TOL)
    failures = []
    if not map_err <= MAPPING_TOL:
        failures.append(f"mapping max abs error {map_err:.3g} > {MAPPING_TOL:g}")
    if not img_err <= IMAGE_TOL:
        failures.append(f"synthesis max abs image error {img_err:.3g} > {IMAGE_TOL:g}")
    if u8_err > 1:
        failures.append(f"uint8 image differs by {u8_err} levels")
    if fp16_err is not None and not fp16_err <= FP16_IMAGE_TOL:
        failures.append(f"fp16 synthesis max abs image error {fp16_err:.3g} > {FP16_IMAGE_TOL:g}")
    if failures:
        raise VerificationError("export verification failed: " + "; ".join(failures))
    return report


def _architecture(G: AnyGenerator) -> tuple[str, dict[str, Any]]:
    """The manifest's ``architecture`` and recommended truncation (official defaults, informational)."""
    if isinstance(G, GeneratorV1):
        return "stylegan", {"psi": G.cfg.truncation_psi, "cutoff": G.cfg.truncation_cutoff}
    return "stylegan2", {"psi": 1.0, "cutoff": None}


def export_model(
    G: AnyGenerator | GeneratorSG3,
    out_dir: Path | str,
    *,
    name: str | None = None,
    fp16: bool = False,
    source: dict[str, Any] | None = None,
    overwrite: bool = False,
    verify_batches: Sequence[int] = VERIFY_BATCHES,
) -> ModelManifest:
    """Write a verified model directory; nothing appears at ``out_dir`` if verification fails."""
    if isinstance(G, GeneratorSG3):
        return export_model_sg3(
            G, out_dir, name=name, fp16=fp16, source=source, overwrite=overwrite, verify_batches=verify_batches
        )
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (use overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    G = G.eval().requires_grad_(False)
    cfg = G.cfg
    syn = G.synthesis
    noise = noise_inputs(syn)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    try:
        # Mapping.
        m_inputs = ["z"] + (["c"] if cfg.c_dim else [])
        z = torch.randn(2, cfg.z_dim)
        m_args: tuple[Tensor, ...] = (z, torch.eye(cfg.c_dim)[[0, 1 % cfg.c_dim]]) if cfg.c_dim else (z,)
        _export(MappingGraph(G), m_args, tmp / "mapping.onnx", m_inputs, ["w"], {k: {0: "N"} for k in [*m_inputs, "w"]})
        del m_args
        # Synthesis (fp32, and optionally fp16 convolutions).
        s_inputs = ["ws"] + [n.name for n in noise]
        ws = G.mapping.w_avg.reshape(1, 1, -1).repeat(TRACE_BATCH, G.num_ws, 1)  # [1, num_ws, w_dim]
        s_args = (ws, *[torch.zeros(TRACE_BATCH, 1, n.resolution, n.resolution) for n in noise])
        dyn = {"ws": {0: "N"}, "image": {0: "N"}, "image_uint8": {0: "N"}}
        dyn.update({n.name: {0: "noise_batch"} for n in noise})
        _export(SynthesisGraph(syn), s_args, tmp / "synthesis.onnx", s_inputs, ["image", "image_uint8"], dyn)
        fp16_path = None
        if fp16:
            syn.set_mode(conv_dtype=torch.float16)
            try:
                _export(
                    SynthesisGraph(syn), s_args, tmp / "synthesis_fp16.onnx", s_inputs, ["image", "image_uint8"], dyn
                )
            finally:
                syn.set_mode(conv_dtype=torch.float32)
            fp16_path = tmp / "synthesis_fp16.onnx"
        del s_args, ws
        gc.collect()
        batches = verify_batches_for(cfg.img_resolution, verify_batches)
        report = verify(G, tmp / "mapping.onnx", tmp / "synthesis.onnx", fp16_path=fp16_path, batches=batches)
        if tuple(verify_batches) != batches:
            report["requested_batches"] = list(verify_batches)

        layer_of: dict[str, SynthesisLayer | StyleLayerV1] = dict(syn.noise_layers())
        planes = {n.name: layer_of[n.layer].noise_const.numpy() for n in noise}
        architecture, truncation = _architecture(G)
        np.savez(tmp / "noise_const.npz", **planes)  # type: ignore[arg-type]
        graph_out = ["image", "image_uint8"]
        manifest = ModelManifest(
            name=name or out.name,
            architecture=architecture,
            z_dim=cfg.z_dim,
            c_dim=cfg.c_dim,
            w_dim=cfg.w_dim,
            num_ws=cfg.num_ws,
            img_resolution=cfg.img_resolution,
            img_channels=cfg.img_channels,
            w_avg=[float(x) for x in G.mapping.w_avg.tolist()],
            mapping=GraphFile("mapping.onnx", m_inputs, ["w"]),
            synthesis=GraphFile("synthesis.onnx", s_inputs, graph_out),
            synthesis_fp16=GraphFile("synthesis_fp16.onnx", s_inputs, graph_out) if fp16 else None,
            ws_layers=ws_slots(syn),
            noise_inputs=noise,
            truncation=truncation,
            source=dict(source or {}),
            versions={
                "styleserve": styleserve.__version__,
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": ort.__version__,
                "opset": OPSET,
            },
            verification=report,
            directions=write_directions(syn, ws_slots(syn), tmp),  # directions.npy (semantic edits, export/sefa.py)
        )
        manifest.source.setdefault("config", cfg.to_dict())
        hashed = sorted([*tmp.glob("*.onnx"), tmp / "noise_const.npz", tmp / DIRECTIONS_FILE])  # every file served
        manifest.source["files_sha256"] = {p.name: sha256_file(p) for p in hashed}
        manifest.save(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        return manifest
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------
# StyleGAN3 (networks_sg3): no noise inputs; the user transform is a per-image graph input.

TRANSFORM_INPUT = "transform"
"""The SG3 synthesis graph's input ``[N, 3, 3]`` float32: ``synthesis.input.transform`` per image, i.e.
``inv(make_transform(translate, angle))`` as gen_images.py sets it (identity = no translation or rotation;
``networks_sg3.input_transform`` computes it)."""


class SynthesisGraphSG3(nn.Module):
    """ws [N, num_ws, w_dim] + transform [N, 3, 3] -> (image float32 NCHW, image uint8 NHWC)."""

    def __init__(self, synthesis: SynthesisNetworkSG3) -> None:
        super().__init__()
        self.synthesis = synthesis

    def forward(self, ws: Tensor, transform: Tensor) -> tuple[Tensor, Tensor]:
        img = self.synthesis(ws, transform)  # [N, C, H, W]
        u8 = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # [N, H, W, C]
        return img, u8


def ws_slots_sg3(synthesis: SynthesisNetworkSG3) -> list[WsSlot]:
    """ws[0] -> "input", ws[1 + i] -> layer i; resolution = the sampling rate of what it feeds."""
    table, rates = synthesis.ws_table(), synthesis.ws_resolutions()
    return [WsSlot(index=i, layers=names, resolution=r) for i, (names, r) in enumerate(zip(table, rates, strict=True))]


def _transforms(rng: np.random.RandomState, batch: int) -> list[np.ndarray]:
    """Identity, and per-image random gen_images.py translations / rotations. ``# [N, 3, 3] each``"""
    eye = np.repeat(np.eye(3, dtype=np.float32)[None], batch, axis=0)
    tx, ty, angle = rng.uniform(-0.5, 0.5, batch), rng.uniform(-0.5, 0.5, batch), rng.uniform(-180, 180, batch)
    moved = [input_transform((float(tx[i]), float(ty[i])), float(angle[i])) for i in range(batch)]
    return [eye, np.stack(moved)]


def verify_sg3(
    G: GeneratorSG3,
    mapping_path: Path,
    synthesis_path: Path,
    *,
    fp16_path: Path | None = None,
    batches: Sequence[int] = VERIFY_BATCHES,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`verify` for StyleGAN3: random ws rows per layer, identity and random transforms."""
    rng = np.random.RandomState(seed)
    m_sess, s_sess = _session(mapping_path), _session(synthesis_path)
    f_sess = _session(fp16_path) if fp16_path else None
    w_avg = G.mapping.w_avg.numpy()
    errors = _Errors(m_sess, s_sess, f_sess)
    for batch in batches:
        ws = errors.mapping(G, rng, batch * G.num_ws).reshape(batch, G.num_ws, -1)
        ws = w_avg + rng.uniform(0.5, 1.0, size=(batch, G.num_ws, 1)).astype(np.float32) * (ws - w_avg)
        for transform in _transforms(rng, batch):
            with torch.no_grad():
                ref_img = G.synthesis(torch.from_numpy(ws), torch.from_numpy(transform)).numpy()
            errors.synthesis({"ws": ws, TRANSFORM_INPUT: transform}, ref_img)
            del ref_img
    return errors.judge({"batches": list(batches), "transforms": ["identity", "random translate/rotate"]})


def export_model_sg3(
    G: GeneratorSG3,
    out_dir: Path | str,
    *,
    name: str | None = None,
    fp16: bool = False,
    source: dict[str, Any] | None = None,
    overwrite: bool = False,
    verify_batches: Sequence[int] = VERIFY_BATCHES,
) -> ModelManifest:
    """:func:`export_model` for StyleGAN3: synthesis inputs ``ws`` and ``transform``, no noise inputs
    (``noise_const.npz`` is written empty), architecture ``stylegan3``, ``transform_input`` in the manifest."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (use overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    G = G.eval().requires_grad_(False)
    cfg = G.cfg
    syn = G.synthesis
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    try:
        m_inputs = ["z"] + (["c"] if cfg.c_dim else [])
        z = torch.randn(2, cfg.z_dim)
        m_args: tuple[Tensor, ...] = (z, torch.eye(cfg.c_dim)[[0, 1 % cfg.c_dim]]) if cfg.c_dim else (z,)
        m_dyn = {k: {0: "N"} for k in [*m_inputs, "w"]}
        _export(MappingGraph(G), m_args, tmp / "mapping.onnx", m_inputs, ["w"], m_dyn)  # type: ignore[arg-type]
        s_inputs = ["ws", TRANSFORM_INPUT]
        s_args = (G.mapping.w_avg.reshape(1, 1, -1).repeat(2, G.num_ws, 1), torch.eye(3).repeat(2, 1, 1))
        dyn = {k: {0: "N"} for k in ["ws", TRANSFORM_INPUT, "image", "image_uint8"]}
        graph_out = ["image", "image_uint8"]
        _export(SynthesisGraphSG3(syn), s_args, tmp / "synthesis.onnx", s_inputs, graph_out, dyn)
        fp16_path = None
        if fp16:
            syn.set_mode(conv_dtype=torch.float16)
            try:
                _export(SynthesisGraphSG3(syn), s_args, tmp / "synthesis_fp16.onnx", s_inputs, graph_out, dyn)
            finally:
                syn.set_mode(conv_dtype=torch.float32)
            fp16_path = tmp / "synthesis_fp16.onnx"
        del s_args
        gc.collect()
        batches = verify_batches_for(cfg.img_resolution, verify_batches)
        report = verify_sg3(G, tmp / "mapping.onnx", tmp / "synthesis.onnx", fp16_path=fp16_path, batches=batches)
        if tuple(verify_batches) != batches:
            report["requested_batches"] = list(verify_batches)
        np.savez(tmp / "noise_const.npz")
        manifest = ModelManifest(
            name=name or out.name,
            architecture="stylegan3",
            z_dim=cfg.z_dim,
            c_dim=cfg.c_dim,
            w_dim=cfg.w_dim,
            num_ws=cfg.num_ws,
            img_resolution=cfg.img_resolution,
            img_channels=cfg.img_channels,
            w_avg=[float(x) for x in G.mapping.w_avg.tolist()],
            mapping=GraphFile("mapping.onnx", m_inputs, ["w"]),
            synthesis=GraphFile("synthesis.onnx", s_inputs, graph_out),
            synthesis_fp16=GraphFile("synthesis_fp16.onnx", s_inputs, graph_out) if fp16 else None,
            ws_layers=ws_slots_sg3(syn),
            noise_inputs=[],
            noise_modes=["const"],  # No noise inputs: the default control only (the server refuses others).
            truncation={"psi": 1.0, "cutoff": None},  # gen_images.py's defaults.
            source=dict(source or {}),
            versions={
                "styleserve": styleserve.__version__,
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": ort.__version__,
                "opset": OPSET,
            },
            verification=report,
            transform_input=TRANSFORM_INPUT,
        )
        manifest.source.setdefault("config", cfg.to_dict())
        hashed = sorted([*tmp.glob("*.onnx"), tmp / "noise_const.npz"])  # every file the server opens
        manifest.source["files_sha256"] = {p.name: sha256_file(p) for p in hashed}
        manifest.save(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        return manifest
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
