"""The server's memory settings: onnxruntime arena / memory pattern as configured, warm-up at the batch sizes the
runs need, and identical images either way (the 1024 px figures themselves are in bench/scale_1024.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from styleserve.server.config import ServerConfig
from styleserve.server.repository import load_repository
from styleserve.server.runtime import IMAGE_FLOAT, IMAGE_UINT8, MAX_RUN_PIXELS, ModelRuntime, NoiseSpec, session_options

from styleserve.manifest import ModelManifest


def _arena(rt: ModelRuntime) -> list[tuple[bool, bool]]:
    out = []
    for sess in (rt.mapping, rt.synthesis):
        so = sess.get_session_options()
        out.append((so.enable_cpu_mem_arena, so.enable_mem_pattern))
    return out


def test_default_sessions_have_the_arena_and_no_memory_pattern(tiny_uncond_model: Path) -> None:
    rt = ModelRuntime(tiny_uncond_model, device="cpu", intra_op_threads=1)
    assert rt.cpu_mem_arena is True
    assert _arena(rt) == [(True, False), (True, False)]
    assert rt.max_run_rows == MAX_RUN_PIXELS // rt.manifest.img_resolution**2  # tiny: no split at any batch it sees
    rt.warmup((1, 16))
    assert rt.warmed_batches == [1, 16]


def test_arena_off_on_request(tiny_uncond_model: Path) -> None:
    rt = ModelRuntime(tiny_uncond_model, device="cpu", intra_op_threads=1, cpu_mem_arena=False)
    assert _arena(rt) == [(False, False), (False, False)]
    rt.warmup((5,))
    assert rt.warmed_batches == [1, 5]


def test_warm_up_runs_the_sizes_the_runs_have(tiny_uncond_model: Path) -> None:
    """The batcher may form batches up to --max-batch-size; runs are split at max_run_rows, and so is warm-up."""
    r = ModelManifest.load(tiny_uncond_model).img_resolution
    rt = ModelRuntime(tiny_uncond_model, device="cpu", intra_op_threads=1, max_run_pixels=3 * r * r + 5)
    assert rt.max_run_rows == 3
    rt.warmup((1, 16))
    assert rt.warmed_batches == [1, 3]
    assert rt.warmup_batches((2,)) == [1, 2] and rt.warmup_batches((1,)) == [1]
    tiny = ModelRuntime(tiny_uncond_model, device="cpu", intra_op_threads=1, max_run_pixels=1)
    assert tiny.max_run_rows == 1 and tiny.warmup_batches((16,)) == [1]


def test_config_flag_reaches_the_sessions(tiny_uncond_model: Path, tmp_path: Path) -> None:
    """``--cpu-mem-arena`` / STYLESERVE_CPU_MEM_ARENA through load_repository, the server's own loading path."""
    repo = tmp_path / "repo"
    shutil.copytree(tiny_uncond_model, repo / "m")
    assert ServerConfig.from_args([str(repo)], environ={}).cpu_mem_arena is True
    on = ServerConfig.from_args([str(repo), "--cpu-mem-arena"], environ={"STYLESERVE_CPU_MEM_ARENA": "0"})
    env_off = ServerConfig.from_args([str(repo)], environ={"STYLESERVE_CPU_MEM_ARENA": "false"})
    off = ServerConfig.from_args([str(repo), "--cpu-mem-arena", "false"], environ={"STYLESERVE_CPU_MEM_ARENA": "1"})
    assert (on.cpu_mem_arena, env_off.cpu_mem_arena, off.cpu_mem_arena) == (True, False, False)
    for cfg, want in ((on, (True, False)), (off, (False, False))):
        cfg = ServerConfig(**{**cfg.__dict__, "device": "cpu", "intra_op_threads": 1})
        (rt,) = load_repository(cfg).values()
        assert _arena(rt) == [want, want]
    r = ModelManifest.load(tiny_uncond_model).img_resolution
    split = ServerConfig.from_args([str(repo), "--max-run-pixels", str(2 * r * r), "--intra-op-threads", "1"], {})
    (rt,) = load_repository(split).values()
    assert rt.max_run_rows == 2
    with pytest.raises(SystemExit):
        ServerConfig.from_args([str(repo), "--max-run-pixels", "0"], environ={})


def test_session_options_function() -> None:
    so = session_options(2)
    assert (so.enable_cpu_mem_arena, so.enable_mem_pattern, so.intra_op_num_threads) == (True, False, 2)
    so = session_options(1, cpu_mem_arena=False)
    assert (so.enable_cpu_mem_arena, so.enable_mem_pattern) == (False, False)


@pytest.fixture(scope="module")
def both(tiny_cond_model: Path) -> tuple[ModelRuntime, ModelRuntime]:
    """No arena with whole batches, and the defaults (arena) with runs split every 2 rows."""
    r = ModelManifest.load(tiny_cond_model).img_resolution
    split = ModelRuntime(tiny_cond_model, device="cpu", intra_op_threads=1, max_run_pixels=2 * r * r)
    assert split.max_run_rows == 2
    return ModelRuntime(tiny_cond_model, device="cpu", intra_op_threads=1, cpu_mem_arena=False), split


@settings(max_examples=8, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    seed=st.integers(0, 2**31 - 1),
    mode=st.sampled_from(["const", "none", "random"]),
)
def test_arena_setting_never_changes_an_image(
    both: tuple[ModelRuntime, ModelRuntime], sizes: list[int], seed: int, mode: str
) -> None:
    """Runs of varying batch sizes one after the other (buffers freed, or reused from the arena; whole, or split
    into runs of 2 rows with per-row noise sliced and the constant planes broadcast): the same pixels."""
    plain, arena = both
    m = plain.manifest
    rng = np.random.RandomState(seed % 2**32)
    for n in sizes:
        ws = (rng.randn(n, m.num_ws, m.w_dim) * 0.7).astype(np.float32)
        noise = [NoiseSpec(mode, seed + i) for i in range(n)]
        a = plain.run_synthesis(ws, noise, (IMAGE_UINT8, IMAGE_FLOAT))
        b = arena.run_synthesis(ws, noise, (IMAGE_UINT8, IMAGE_FLOAT))
        assert np.array_equal(a[IMAGE_UINT8], b[IMAGE_UINT8])
        assert np.allclose(a[IMAGE_FLOAT], b[IMAGE_FLOAT], rtol=0, atol=1e-6)


def test_server_logs_the_warm_up_runs_it_made(tiny_uncond_model: Path, tmp_path: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    """The start-up log names the graph-run sizes warm-up really ran (capped by --max-run-pixels), beside the
    largest batch the batcher may form: an operator sizing memory reads the runs, not the flag."""
    repo = tmp_path / "repo"
    shutil.copytree(tiny_uncond_model, repo / "m")
    r = ModelManifest.load(tiny_uncond_model).img_resolution
    s = start_server(repo, "--max-batch-size", "16", "--max-run-pixels", str(4 * r * r), "--intra-op-threads", "1")
    line = next(ln for ln in s.log().splitlines() if "warmed up model tiny-uncond " in ln)
    assert "batch sizes run: [1, 4]; batches up to 16" in line, line
