"""``styleserve edit`` and ``styleserve walk --direction`` (semantic edits) and the client library's edits, against a
real server process (the session's tiny exports, which carry SeFa directions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from harness import ServerProcess
from PIL import Image
from styleserve.clients import Client, Edit, Plan, Source, Style

MODEL = "tiny-uncond"  # 16 px grayscale, num_ws 6, w_dim 32


def run(*args: str, target: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "styleserve.cli", *args, "--target", target]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def decode(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def test_edit_strip(server: ServerProcess, tmp_path: Path) -> None:
    strip, cells = tmp_path / "strip.png", tmp_path / "cells"
    r = run("edit", "--model", MODEL, "--seed", "42", "--direction", "0", "--alphas", "-3,0,3", "--layers", "0-2",
            "--psi", "0.7", "--out", str(strip), "--outdir", str(cells), target=server.target)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "1 direction(s) x 3 strength(s)" in r.stdout
    got = decode(strip)
    assert got.shape == (16, 48)
    assert sorted(p.name for p in cells.iterdir()) == ["dir0_alpha-3.png", "dir0_alpha0.png", "dir0_alpha3.png"]
    with Client(server.target) as c:
        (plain,) = c.generate(MODEL, [42], psi=0.7)
        edit = Edit(0, -3.0, layers=(0, 1, 2))
        (edited,) = c.synthesize(MODEL, [Plan([Style(Source.from_seed(42, psi=0.7).edited(edit))])])
        (ws,) = c.map(MODEL, seeds=[42], psi=0.7, edits=[edit])  # the edited w+, drawn inline
        assert ws.w is not None and ws.w.shape == (6, 32)
        (inline,) = c.synthesize(MODEL, [Plan([Style(Source.from_w_plus(ws.w))])])
        info = c.get_model(MODEL)
    assert np.array_equal(got[:, 16:32], plain.to_array()[..., 0])  # alpha 0: the seed itself
    assert np.array_equal(got[:, :16], edited.to_array()[..., 0])
    assert np.array_equal(inline.to_array(), edited.to_array())
    assert not np.array_equal(got[:, :16], got[:, 16:32])  # the edit moves the image
    assert np.array_equal(decode(cells / "dir0_alpha3.png"), got[:, 32:])
    assert [d.layer_range for d in info.directions] == ["all", "coarse", "middle"]
    assert info.directions[0].count == 16 and info.directions[1].layers == [0, 1, 2, 3]  # ws 3 feeds b8.torgb

    rows = tmp_path / "rows.png"
    r = run("edit", "--model", MODEL, "--seed", "42", "--direction", "0-2", "--range", "coarse", "--alphas", "-1,1",
            "--out", str(rows), target=server.target)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert decode(rows).shape == (48, 32)  # 3 directions x 2 strengths


def test_edit_errors_name_the_field(server: ServerProcess, tmp_path: Path) -> None:
    r = run("edit", "--model", MODEL, "--seed", "1", "--direction", "99", "--out", str(tmp_path / "x.png"),
            target=server.target)  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "error: INVALID_ARGUMENT: plans[0].styles[0].source.edits[0].direction: direction 99" in r.stderr
    r = run("edit", "--model", MODEL, "--seed", "1", "--direction", "0", "--alphas", "nan", target=server.target)
    assert r.returncode == 2 and "must be a finite number" in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_walk_along_a_direction_and_models_json(server: ServerProcess, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    r = run("walk", "--model", MODEL, "--seeds", "42", "--direction", "1", "--range", "coarse", "--alphas", "-2,2",
            "--frames-per-seed", "4", "--out", str(frames), target=server.target)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in frames.iterdir()) == [f"frame{i:04d}.png" for i in range(5)]
    with Client(server.target) as c:
        ends = [c.map(MODEL, seeds=[42], edits=[Edit(1, a, "coarse")])[0].w for a in (-2.0, 2.0)]
        images = c.synthesize(MODEL, [Plan([Style(Source.from_w_plus(w))]) for w in ends if w is not None])
    assert np.array_equal(decode(frames / "frame0000.png"), images[0].to_array()[..., 0])
    assert np.array_equal(decode(frames / "frame0004.png"), images[1].to_array()[..., 0])

    r = run("models", "--json", target=server.target)
    assert r.returncode == 0, r.stderr
    row = next(m for m in json.loads(r.stdout) if m["name"] == MODEL)
    assert [d["range"] for d in row["directions"]] == ["all", "coarse", "middle"]
