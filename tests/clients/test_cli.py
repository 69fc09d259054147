"""The ``styleserve`` client CLI (map, synthesize, walk, cache, errors, --help) against a real server process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness import ServerProcess
from PIL import Image, features
from styleserve.clients import Client, Noise, Plan, Source, Style, cli
from styleserve.clients._walk import frame_count, interpolate_path, interpolate_ws

COND, UNCOND = "tiny-cond", "tiny-uncond"  # 32 px RGB, 10 classes, num_ws 8 | 16 px gray; w_dim 32


def run(*args: str, target: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "styleserve.cli", *args]
    if target is not None:
        cmd += ["--target", target]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def ok(r: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    return r


def failed(r: subprocess.CompletedProcess[str], message: str, code: int = 1) -> None:
    """A failed command: exit 1, or 2 for a usage error (a command line that cannot work as given)."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: "), r.stderr
    assert message in r.stderr, r.stderr


def decode(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


# ---------------------------------------------------------------------------- interpolation (no server)


def test_interpolate_ws_endpoints_midpoints_and_loop() -> None:
    rng = np.random.default_rng(0)
    ws = rng.standard_normal((3, 4, 5)).astype(np.float32)  # 3 keyframes of w+ [4, 5]

    frames = interpolate_ws(ws, 4)
    assert frames.shape == (9, 4, 5) and frames.dtype == np.float32
    assert frame_count(3, 4) == 9 and frame_count(3, 4, loop=True) == 12
    for i in range(3):  # keyframes exactly, bit for bit
        assert np.array_equal(frames[4 * i], ws[i])
    assert np.array_equal(frames[-1], ws[-1])
    np.testing.assert_allclose(frames[2], (ws[0] + ws[1]) / 2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(frames[5], 0.75 * ws[1] + 0.25 * ws[2], rtol=1e-6, atol=1e-6)

    looped = interpolate_ws(ws, 4, loop=True)
    assert looped.shape == (12, 4, 5)
    assert np.array_equal(looped[:9], frames)  # same path, then back toward the first keyframe
    np.testing.assert_allclose(looped[10], (ws[2] + ws[0]) / 2, rtol=1e-6, atol=1e-6)
    assert not np.array_equal(looped[-1], ws[0])  # stops one frame short: the animation wraps to ws[0]

    w = rng.standard_normal((2, 7)).astype(np.float32)  # plain w vectors
    assert np.array_equal(interpolate_ws(w, 1), w)
    assert interpolate_ws(w[:1], 5).shape == (1, 7) and interpolate_ws(w[:1], 5, loop=True).shape == (5, 7)

    path = interpolate_path(ws, 5)  # total frames, evenly spaced over 2 segments
    assert path.shape == (5, 4, 5)
    assert np.array_equal(path[0], ws[0]) and np.array_equal(path[2], ws[1]) and np.array_equal(path[4], ws[2])
    np.testing.assert_allclose(path[1], (ws[0] + ws[1]) / 2, rtol=1e-6, atol=1e-6)
    assert np.array_equal(interpolate_path(ws, 6, loop=True), interpolate_ws(ws, 2, loop=True))

    with pytest.raises(ValueError, match="positive integer"):
        interpolate_ws(ws, 0)
    with pytest.raises(ValueError, match="at least one keyframe"):
        interpolate_ws(np.zeros((0, 3)), 2)


# ---------------------------------------------------------------------------- map / synthesize


def test_map_to_npy_and_npz(server: ServerProcess, tmp_path: Path) -> None:
    with Client(server.target) as c:
        want = [m.w for m in c.map(COND, seeds=[1, 2], class_index=3)]
        want_plus = c.map(COND, seeds=[1], class_index=3, psi=0.5, cutoff=4)[0].w
    assert want_plus is not None and want_plus.shape == (8, 32)

    r = ok(run("map", "--model", COND, "--seeds", "1-2", "--class", "3", "--out", str(tmp_path / "w"),
               target=server.target))  # fmt: skip
    assert r.stdout.split() == [str(tmp_path / "w" / "seed0001.npy"), str(tmp_path / "w" / "seed0002.npy")]
    for seed, w in zip([1, 2], want, strict=True):
        got = np.load(tmp_path / "w" / f"seed{seed:04d}.npy")
        assert got.shape == (32,) and got.dtype == np.float32 and np.array_equal(got, w)

    out = tmp_path / "z"
    ok(run("map", "--model", COND, "--seeds", "1,2", "--class", "3", "--format", "npz", "--out", str(out),
           target=server.target))  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["seed0001_projected_w.npz", "seed0002_projected_w.npz"]
    for seed, w in zip([1, 2], want, strict=True):
        with np.load(out / f"seed{seed:04d}_projected_w.npz") as z:
            assert z.files == ["w"]
            ws = z["w"]
        assert ws.shape == (1, 8, 32) and ws.dtype == np.float32
        assert np.array_equal(ws[0], np.broadcast_to(w, (8, 32)))

    # psi with a cutoff: the server answers a w+, saved as is / as the npz's rows.
    ok(run("map", "--model", COND, "--seeds", "1", "--class", "3", "--psi", "0.5", "--cutoff", "4",
           "--out", str(tmp_path / "p"), target=server.target))  # fmt: skip
    assert np.array_equal(np.load(tmp_path / "p" / "seed0001.npy"), want_plus)
    ok(run("map", "--model", COND, "--seeds", "1", "--class", "3", "--psi", "0.5", "--cutoff", "4",
           "--format", "npz", "--out", str(tmp_path / "p"), target=server.target))  # fmt: skip
    with np.load(tmp_path / "p" / "seed0001_projected_w.npz") as z:
        assert np.array_equal(z["w"], want_plus[None])

    # --cache: ids next to the paths, and the cache holds the same vectors.
    r = ok(run("map", "--model", UNCOND, "--seeds", "4,5", "--cache", "--out", str(tmp_path / "u"),
               target=server.target))  # fmt: skip
    lines = [line.split("\t") for line in r.stdout.splitlines()]
    assert [Path(p).name for p, _ in lines] == ["seed0004.npy", "seed0005.npy"]
    with Client(server.target) as c:
        for path, w_id in lines:
            assert w_id.startswith("w_")
            assert np.array_equal(c.get_w(UNCOND, w_id), np.load(path))
    assert not list(tmp_path.rglob(".*.tmp"))  # atomic writes leave no temp files


def test_synthesize_from_saved_files_with_a_layer_plan(server: ServerProcess, tmp_path: Path) -> None:
    ok(run("map", "--model", COND, "--seeds", "1", "--class", "3", "--out", str(tmp_path), target=server.target))
    ok(run("map", "--model", COND, "--seeds", "2", "--class", "5", "--psi", "0.6", "--cutoff", "6",
           "--format", "npz", "--out", str(tmp_path), target=server.target))  # fmt: skip
    a, b = tmp_path / "seed0001.npy", tmp_path / "seed0002_projected_w.npz"
    with Client(server.target) as c:
        w_a = c.map(COND, seeds=[1], class_index=3)[0].w
        w_b = c.map(COND, seeds=[2], class_index=5, psi=0.6, cutoff=6)[0].w
        plan = Plan(
            [
                Style(Source.from_w(w_a)),
                Style(Source.from_w_plus(w_b), layers=[0, 1, 2, 3]),
                Style(Source.from_seed(7, 4, 0.5), layers=[6, 7]),
            ],
            noise=Noise("random", 3),
        )
        (want,) = c.synthesize(COND, [plan])

    out1 = tmp_path / "one.png"
    ok(run("synthesize", "--model", COND, "--w", str(a), "--style", f"0-3={b}", "--style", "6,7=seed:7",
           "--class", "4", "--psi", "0.5", "--noise-mode", "random", "--noise-seed", "3", "--out", str(out1),
           target=server.target))  # fmt: skip
    assert np.array_equal(decode(out1), want.to_array())
    assert out1.read_bytes() == want.data

    out2 = tmp_path / "two.png"  # the same plan as one --plan string
    ok(run("synthesize", "--model", COND, "--plan", f"all:{a};0-3:{b},6,7:seed:7", "--class", "4", "--psi", "0.5",
           "--noise-mode", "random", "--noise-seed", "3", "--out", str(out2), target=server.target))  # fmt: skip
    assert out2.read_bytes() == want.data

    # Later entries override earlier ones; a cached id works as a source.
    with Client(server.target) as c:
        w_id = c.put_w(COND, np.zeros(32, np.float32))
        plan3 = Plan([Style(Source.from_w_plus(w_b)), Style(Source.from_w_id(w_id), layers=[5])])
        (want3,) = c.synthesize(COND, [plan3])
    out3 = tmp_path / "three.png"
    ok(run("synthesize", "--model", COND, "--w", str(b), "--style", "5=seed:9", "--class", "1",
           "--style", f"5=w_id:{w_id}", "--out", str(out3), target=server.target))  # fmt: skip
    assert out3.read_bytes() == want3.data


# ---------------------------------------------------------------------------- walk


def test_walk_to_gif_webp_and_frames(server: ServerProcess, tmp_path: Path) -> None:
    gif = tmp_path / "walk.gif"
    r = ok(run("walk", "--model", COND, "--seeds", "1,5,9", "--class", "2", "--frames-per-seed", "3",
               "--out", str(gif), "--fps", "10", target=server.target))  # fmt: skip
    assert "7 frames" in r.stdout
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.size == (32, 32) and im.n_frames == 7
        assert im.info["duration"] == 100

    looped = tmp_path / "loop.gif"
    ok(run("walk", "--model", COND, "--seeds", "1,5,9", "--class", "2", "--frames-per-seed", "3", "--loop",
           "--out", str(looped), target=server.target))  # fmt: skip
    with Image.open(looped) as im:
        assert im.n_frames == 9

    frames = tmp_path / "frames"
    r = ok(run("walk", "--model", COND, "--seeds", "1,5", "--class", "2", "--frames-per-seed", "18",
               "--out", str(frames), target=server.target))  # fmt: skip
    names = sorted(p.name for p in frames.iterdir())
    assert names == [f"frame{i:04d}.png" for i in range(19)]  # 19 frames: two Synthesize calls (16 + 3)
    assert len(r.stdout.splitlines()) == 19
    with Client(server.target) as c:
        first, last = c.generate(COND, [1, 5], class_index=2)
        ws = np.stack([m.w for m in c.map(COND, seeds=[1, 5], class_index=2)])
        (mid,) = c.synthesize(COND, [Plan([Style(Source.from_w(interpolate_ws(ws, 18)[7]))])])
    assert np.array_equal(decode(frames / "frame0000.png"), first.to_array())
    assert np.array_equal(decode(frames / "frame0018.png"), last.to_array())
    assert np.array_equal(decode(frames / "frame0007.png"), mid.to_array())

    if features.check("webp"):
        webp = tmp_path / "walk.webp"
        ok(run("walk", "--model", UNCOND, "--seeds", "3,4", "--steps", "5", "--out", str(webp), target=server.target))
        with Image.open(webp) as im:
            assert im.format == "WEBP" and im.size == (16, 16) and im.n_frames == 5


# ---------------------------------------------------------------------------- cache


def test_cache_put_get_delete(server: ServerProcess, tmp_path: Path) -> None:
    w = np.random.default_rng(1).standard_normal(32).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    r = ok(run("cache", "put", "--model", COND, str(tmp_path / "w.npy"), target=server.target))
    w_id = r.stdout.strip()
    assert w_id.startswith("w_")
    with Client(server.target) as c:
        assert np.array_equal(c.get_w(COND, w_id), w)

    ok(run("cache", "get", "--model", COND, w_id, "--out", str(tmp_path / "back.npy"), target=server.target))
    assert np.array_equal(np.load(tmp_path / "back.npy"), w)
    ok(run("cache", "get", "--model", COND, w_id, "--out", str(tmp_path / "back.npz"), target=server.target))
    with np.load(tmp_path / "back.npz") as z:
        assert z["w"].shape == (1, 8, 32) and np.array_equal(z["w"][0, 5], w)

    # A projected_w.npz goes up as a w+ [num_ws, w_dim].
    plus = np.random.default_rng(2).standard_normal((1, 8, 32)).astype(np.float32)
    np.savez(tmp_path / "p.npz", w=plus)
    plus_id = ok(run("cache", "put", "--model", COND, str(tmp_path / "p.npz"), target=server.target)).stdout.strip()
    with Client(server.target) as c:
        assert np.array_equal(c.get_w(COND, plus_id), plus[0])

    r = ok(run("cache", "delete", "--model", COND, w_id, target=server.target))
    assert r.stdout.strip() == f"deleted {w_id}"
    failed(run("cache", "delete", "--model", COND, w_id, target=server.target), "was not cached")
    failed(run("cache", "get", "--model", COND, w_id, "--out", str(tmp_path / "x.npy"), target=server.target),
           "error: NOT_FOUND:")  # fmt: skip
    assert not (tmp_path / "x.npy").exists()


# ---------------------------------------------------------------------------- errors and help


def test_expected_failures_exit_1_without_a_traceback(server: ServerProcess, tmp_path: Path) -> None:
    np.savez(tmp_path / "badkey.npz", latent=np.zeros((1, 8, 32), np.float32))
    np.save(tmp_path / "short.npy", np.zeros(5, np.float32))
    np.save(tmp_path / "wide.npy", np.zeros((9, 32), np.float32))
    np.save(tmp_path / "good.npy", np.zeros(32, np.float32))
    (tmp_path / "junk.npy").write_text("not numpy")
    good = str(tmp_path / "good.npy")

    def synth(*args: str) -> subprocess.CompletedProcess[str]:
        return run("synthesize", "--model", COND, *args, "--out", str(tmp_path / "o.png"), target=server.target)

    failed(synth("--w", str(tmp_path / "missing.npy")), f"{tmp_path / 'missing.npy'}: no such file")
    failed(synth("--w", str(tmp_path / "badkey.npz")), "no array 'w' (found 'latent')")
    failed(synth("--w", str(tmp_path / "short.npy")), "short.npy: shape [5]; expected w [w_dim] = [32]")
    failed(synth("--w", str(tmp_path / "wide.npy")), "[num_ws, w_dim] = [8, 32]")
    failed(synth("--w", str(tmp_path / "junk.npy")), "junk.npy: not a .npy or .npz file")
    failed(synth("--w", good, "--style", "5-2=seed:1"), "descending range '5-2'", code=2)
    failed(synth("--w", good, "--style", "x=seed:1"), "bad item 'x'", code=2)
    failed(synth("--w", good, "--style", "9=seed:1"), "ws index 9 out of range", code=2)
    failed(synth("--w", good, "--style", "0-3"), "expected LAYERS=SOURCE", code=2)
    failed(synth("--w", good, "--style", "0=seed:x"), "bad seed 'x'", code=2)
    failed(synth("--style", "0-3=seed:1"), "ws layers 4-7 of model 'tiny-cond' have no source", code=2)
    failed(synth("--w", "seed:1"), "error: INVALID_ARGUMENT:")  # conditional model without a class
    failed(run("cache", "put", "--model", COND, str(tmp_path / "badkey.npz"), target=server.target), "no array 'w'")
    failed(run("map", "--model", "nope", "--seeds", "1", "--out", str(tmp_path), target=server.target),
           "error: NOT_FOUND:")  # fmt: skip
    failed(run("walk", "--model", COND, "--seeds", "3", "--out", str(tmp_path / "w.gif"), target=server.target),
           "at least two seeds", code=2)  # fmt: skip
    assert not (tmp_path / "o.png").exists()

    down = run("map", "--model", COND, "--seeds", "1", "--out", str(tmp_path), "--target", "127.0.0.1:1",
               "--timeout", "2")  # fmt: skip
    failed(down, "error: ")
    assert "UNAVAILABLE" in down.stderr or "DEADLINE_EXCEEDED" in down.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["walk", "--model", "m", "--seeds", "1,2", "--frames-per-seed", "0"], "must be >= 1"),
        (["walk", "--model", "m", "--seeds", "1,2", "--steps", "4", "--frames-per-seed", "2"], "not allowed with"),
        (["walk", "--model", "m", "--seeds", "1,2", "--fps", "0"], "must be > 0"),
        (["map", "--model", "m", "--seeds", "2-1"], "descending range"),
        (["map", "--model", "m", "--seeds", "1", "--format", "pt"], "invalid choice"),
        (["cache", "get", "--model", "m"], "required: ID"),
        (["cache"], "required: ACTION"),
        (["synthesize", "--model", "m", "--noise-seed", "2"], "--noise-mode random"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    ["", "health", "models", "generate", "map", "synthesize", "grid", "walk", "cache", "cache put", "cache get",
     "cache delete"],
)  # fmt: skip
def test_help(command: str) -> None:
    r = ok(run(*command.split(), "--help"))
    assert r.stdout.startswith("usage: styleserve")
    if command in ("map", "synthesize", "walk", "cache"):
        assert "examples:" in r.stdout
    if command == "":
        for name in ("map", "synthesize", "walk", "cache", "batch"):
            assert f"\n  {name} " in r.stdout
    if command == "synthesize":
        assert "connection:" in r.stdout and "output:" in r.stdout and "seed:N" in r.stdout


def test_batch_is_dispatched(capsys: pytest.CaptureFixture[str]) -> None:
    """``styleserve batch ARGS`` runs the real batch job's parser with ARGS (here its usage error: exit 2)."""
    with pytest.raises(SystemExit) as info:
        cli.main(["batch", "--seeds", "0-9"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("usage: styleserve batch") and "--model" in err
