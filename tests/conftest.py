"""Shared fixtures: tiny generators with randomized weights, exported once per session."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from styleserve.export.networks import Generator, GeneratorConfig, make_config  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "server"))
from harness import ServerProcess  # noqa: E402


def randomized_generator(cfg: GeneratorConfig, seed: int = 0) -> Generator:
    """Official initialisation plus seeded perturbations of every parameter, nonzero noise and w_avg."""
    torch.manual_seed(seed)
    G = Generator(cfg).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed + 1)
    for name, p in G.named_parameters():
        if name.endswith("noise_strength"):
            p.fill_(0.1 + 0.3 * float(torch.rand((), generator=gen)))
        elif name.endswith("bias"):
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    G.mapping.w_avg.copy_(0.5 * torch.randn(G.mapping.w_avg.shape, generator=gen))
    return G


@pytest.fixture(scope="session")
def make_randomized() -> Callable[..., Generator]:
    """:func:`randomized_generator` for test modules (importlib import mode: conftest is not importable)."""
    return randomized_generator


TINY = dict(z_dim=32, w_dim=32, channel_base=256, channel_max=32, mapping_layers=3, conv_clamp=256)


@pytest.fixture(scope="session")
def tiny_cond_generator() -> Generator:
    return randomized_generator(make_config(img_resolution=32, img_channels=3, c_dim=10, **TINY), seed=3)


@pytest.fixture(scope="session")
def tiny_cond_model(tiny_cond_generator: Generator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from styleserve.export.onnx_export import export_model

    out = tmp_path_factory.mktemp("models") / "tiny-cond"
    export_model(tiny_cond_generator, out, fp16=True)
    return out


@pytest.fixture(scope="session")
def tiny_uncond_generator() -> Generator:
    return randomized_generator(make_config(img_resolution=16, img_channels=1, c_dim=0, **TINY), seed=11)


@pytest.fixture(scope="session")
def tiny_uncond_model(tiny_uncond_generator: Generator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16 px grayscale unconditional model."""
    from styleserve.export.onnx_export import export_model

    out = tmp_path_factory.mktemp("models") / "tiny-uncond"
    export_model(tiny_uncond_generator, out, verify_batches=(1, 3))
    return out


# ------------------------------------------------------------------ real server processes


@pytest.fixture(scope="session")
def repo(tiny_cond_model: Path, tiny_uncond_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository: one subdirectory per model (copies of the session's exports: the server refuses a
    model directory that is a symlink leading outside its repository)."""
    import shutil

    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(tiny_cond_model, root / "tiny-cond")
    shutil.copytree(tiny_uncond_model, root / "tiny-uncond")
    return root


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``start_server(repo, *flags)`` -> a SERVING server process, stopped after the test."""
    started: list[ServerProcess] = []

    def start(repo: Path, *args: str, wait: bool = True, env: dict[str, str] | None = None) -> ServerProcess:
        s = ServerProcess(repo, *args, log_dir=tmp_path, env=env)
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
