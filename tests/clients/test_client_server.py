"""The client library and the client CLI against a real server process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from harness import ServerProcess
from PIL import Image
from styleserve.clients import (
    Client,
    InvalidArgumentError,
    Noise,
    NotFoundError,
    Plan,
    Source,
    Style,
    UnauthenticatedError,
)

COND, UNCOND = "tiny-cond", "tiny-uncond"


def test_client_round_trip(server: ServerProcess) -> None:
    with Client(server.target) as c:
        assert c.health() == "SERVING"
        assert [m.name for m in c.list_models()] == [COND, UNCOND]
        info = c.get_model(COND)
        assert (info.num_ws, info.w_dim, info.num_classes) == (8, 32, 10)

        imgs = c.generate(COND, [3, 4], class_index=2, psi=0.7, format="raw_float32", return_ws=True)
        assert imgs[0].to_array().shape == (3, 32, 32) and imgs[0].ws is not None
        png = c.generate(COND, [3], class_index=2, psi=0.7)[0]
        raw = c.generate(COND, [3], class_index=2, psi=0.7, format="raw_uint8")[0]
        assert np.array_equal(png.to_array(), raw.to_array())

        mapped = c.map(COND, seeds=[3], class_index=2, psi=0.7, cache=True)
        assert mapped[0].w_id and mapped[0].w is not None
        assert np.allclose(mapped[0].w, imgs[0].ws[0], atol=1e-6)

        other = c.put_w(COND, np.zeros(32, np.float32))
        plan = Plan([Style(Source.from_w_id(mapped[0].w_id)), Style(Source.from_w_id(other), start=0, stop=2)])
        (mixed,) = c.synthesize(COND, [plan], format="raw_float32", return_ws=True)
        assert mixed.ws is not None
        assert np.array_equal(mixed.ws[:2], np.zeros((2, 32))) and np.array_equal(mixed.ws[2:], imgs[0].ws[2:])
        assert np.array_equal(c.get_w(COND, other), np.zeros(32))
        assert c.delete_w(COND, other) and not c.delete_w(COND, other)

        grid = c.style_mix_grid(COND, [Source.from_seed(1, 0), Source.from_seed(2, 0)], [Source.from_seed(3, 1)],
                                col_styles=[0, 1])
        assert len(grid.cells) == 2 and grid.grid is not None and grid.grid.to_array().shape == (96, 64, 3)

        items = list(c.stream_generate(UNCOND, range(10, 30), noise=Noise("random", 5), format="raw_uint8"))
        assert [i.index for i in items] == list(range(20)) and [i.seed for i in items] == list(range(10, 30))

        with pytest.raises(InvalidArgumentError) as e:
            c.generate(COND, [1], class_index=99)
        assert e.value.field == "class_index"
        with pytest.raises(NotFoundError):
            c.get_w(COND, "w_does_not_exist")


def test_client_token_from_the_environment(start_server: Callable[..., ServerProcess], repo: Path) -> None:
    s = start_server(repo, env={"STYLESERVE_AUTH_TOKEN": "s3cret", "STYLESERVE_MAX_BATCH_SIZE": "4"})
    with Client(s.target) as anonymous, pytest.raises(UnauthenticatedError):
        anonymous.list_models()
    with Client(s.target, token="s3cret") as c:
        assert len(c.generate(UNCOND, range(10))) == 10
    assert '"max_batch_size": 4' in s.log() and "s3cret" not in s.log()  # Config logged, secret redacted.


def test_cli_generate_and_grid(server: ServerProcess, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "styleserve.cli", *args, "--target", server.target]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    r = cli("generate", "--model", COND, "--seeds", "0-2,9", "--class", "1", "--psi", "0.7", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0009.png"]
    assert Image.open(tmp_path / "seed0009.png").size == (32, 32)
    r = cli("grid", "--model", UNCOND, "--rows", "1,2", "--cols", "3,4,5", "--out", str(tmp_path / "grid.png"))
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "grid.png").size == (4 * 16, 3 * 16)
    r = cli("generate", "--model", COND, "--seeds", "1", "--out", str(tmp_path / "x"))
    assert r.returncode == 1 and "error: INVALID_ARGUMENT: class_index:" in r.stderr
    r = cli("health")
    assert r.returncode == 0 and r.stdout.strip() == "SERVING"
