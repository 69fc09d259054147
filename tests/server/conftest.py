"""Server fixtures: a model repository of two exported models and real server processes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ServerProcess  # noqa: E402


@pytest.fixture(scope="session")
def repo(tiny_cond_model: Path, tiny_uncond_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository: one subdirectory per model (symlinks to the session's exports)."""
    root = tmp_path_factory.mktemp("repo")
    (root / "tiny-cond").symlink_to(tiny_cond_model, target_is_directory=True)
    (root / "tiny-uncond").symlink_to(tiny_uncond_model, target_is_directory=True)
    return root


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``start_server(repo, *flags)`` -> a SERVING server process, stopped after the test."""
    started: list[ServerProcess] = []

    def start(repo: Path, *args: str, wait: bool = True) -> ServerProcess:
        s = ServerProcess(repo, *args, log_dir=tmp_path)
        started.append(s)
        return s.wait_serving() if wait else s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One shared server over ``repo`` for a test module."""
    s = ServerProcess(repo, "--max-queue-delay-ms", "5", log_dir=tmp_path_factory.mktemp("log")).wait_serving()
    yield s
    assert s.stop() == 0, s.log()
