"""The model repository: a directory whose subdirectories are model directories.

Every model is loaded at start; one broken model fails the whole start with a message naming the
file, so there is never a half-up server. A directory holding ``model.json`` itself is served as a
repository of one. Hidden entries (``.export-tmp`` and the like) are skipped.

Containment: a model directory that is a symlink must lead to a directory inside the repository
(after following every link); one leading outside is refused. Inside a model directory, every file
the server opens must resolve inside that directory (see :class:`~.runtime.ModelRuntime`).
"""

from __future__ import annotations

from pathlib import Path

from styleserve.errors import ManifestError
from styleserve.manifest import MANIFEST_NAME

from .config import ServerConfig
from .engine_openvino import runtime_factory
from .runtime import ModelRuntime


def model_dirs(repository: Path) -> list[Path]:
    if not repository.is_dir():
        raise ManifestError(f"{repository}: model repository is not a directory")
    if (repository / MANIFEST_NAME).is_file():
        return [repository]
    root = repository.resolve(strict=True)
    dirs = sorted(p for p in repository.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise ManifestError(f"{repository}: model repository holds no model directories")
    for d in dirs:
        real = d.resolve(strict=True)
        if real == root or not real.is_relative_to(root):
            raise ManifestError(
                f"{d}: model directory is a symlink to {real}, which is not a directory inside the repository {root}"
            )
        if not (d / MANIFEST_NAME).is_file():
            raise ManifestError(f"{d / MANIFEST_NAME}: missing; every subdirectory must be a model directory")
    return dirs


def load_repository(config: ServerConfig) -> dict[str, ModelRuntime]:
    """Open every model of the repository (name from its model.json); raises ManifestError naming the file."""
    models: dict[str, ModelRuntime] = {}
    dirs = model_dirs(config.model_repository)
    # ModelRuntime, or OpenVINORuntime for --engine openvino; ConfigError for a combination this host cannot serve.
    runtime = runtime_factory(
        config.engine, config.precision, config.max_batch_size, device=config.device, fp16=config.fp16,
        graph_rewrites=config.graph_rewrites,
    )  # fmt: skip
    for d in dirs:
        rt = runtime(
            d,
            device=config.device,
            device_id=config.device_id,
            intra_op_threads=config.intra_op_threads or None,
            fp16=config.fp16,
            verify_files=config.verify_files,
            cpu_mem_arena=config.cpu_mem_arena,
            max_run_pixels=config.max_run_pixels,
        )
        name = rt.manifest.name
        if name in models:
            raise ManifestError(f"{d / MANIFEST_NAME}: model name {name!r} is also used by {models[name].dir}")
        models[name] = rt
    return models
