"""A newcomer's habits: the README's Python example, official-script flags, exit codes, --version, pipes, the
token variable, default port, client splitting and stream deadlines, and ``styleserve-render``'s validation.

Real server processes (``server`` / ``start_server`` fixtures), the real client, the CLI as subprocesses.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from harness import ServerProcess
from hypothesis import given, settings
from hypothesis import strategies as st
from styleserve.clients import Client, DeadlineExceededError, GeneratedImage, Source
from styleserve.clients._requests import DEFAULT_PORT, parse_targets, with_default_port
from styleserve.clients.batch import parse_spans as batch_spans
from styleserve.clients.cli import parse_range as cli_range

from styleserve.latent import SEED_MAX
from styleserve.seeds import merge_spans, parse_range, parse_spans

COND, UNCOND = "tiny-cond", "tiny-uncond"  # 32 px RGB, 10 classes, num_ws 8 | 16 px gray, num_ws 6
README = Path(__file__).resolve().parents[2] / "README.md"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "styleserve.cli", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})}, cwd=cwd,
    )  # fmt: skip


def usage_error(r: subprocess.CompletedProcess[str], message: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and message in r.stderr, r.stderr


# ---------------------------------------------------------------------------- README


def test_readme_python_example_runs(server: ServerProcess, tmp_path: Path) -> None:
    """The README's Python block, run as a script; only the address, model name and stream length differ."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    code = blocks[0]
    for old, new in [
        ("127.0.0.1:50051", server.target),
        ('"demo"', f'"{UNCOND}"'),
        ("range(0, 10_000)", "range(0, 20)"),
    ]:
        assert old in code, old
        code = code.replace(old, new)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("GeneratedImage(png 16x16x1, ") and len(r.stdout) < 80, r.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["seed0000.png", *(f"{s}.png" for s in range(20))]
    )


def test_readme_lists_every_subcommand() -> None:
    from styleserve.cli import CLIENT_COMMANDS

    text = README.read_text(encoding="utf-8")
    for cmd in ("serve", "export", *CLIENT_COMMANDS):
        assert f"| `{cmd}` |" in text, cmd
    assert "9090" not in text.replace("Prometheus's own 9090", "")


# ---------------------------------------------------------------------------- official-script flags


def test_gen_images_flags(server: ServerProcess, tmp_path: Path) -> None:
    ours = run("generate", "--model", COND, "--seeds", "0-2,5", "--psi", "0.7", "--class", "3", "--out",
               str(tmp_path / "a"), "--target", server.target)  # fmt: skip
    theirs = run("generate", "--model", COND, "--seeds", "0-2,5", "--trunc", "0.7", "--class", "3",
                 "--noise-mode", "const", "--outdir", str(tmp_path / "b"), "--target", server.target)  # fmt: skip
    assert ours.returncode == 0 and theirs.returncode == 0, (ours.stderr, theirs.stderr)
    names = ["seed0000.png", "seed0001.png", "seed0002.png", "seed0005.png"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == names
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes()


def test_style_mixing_flags_write_cells_and_grid(server: ServerProcess, tmp_path: Path) -> None:
    r = run("grid", "--model", UNCOND, "--rows", "85,100", "--cols", "55,821,7", "--styles", "0-3", "--trunc",
            "0.7", "--outdir", str(tmp_path), "--target", server.target)  # fmt: skip
    assert r.returncode == 0, r.stderr
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"grid.png", *(f"{s}-{s}.png" for s in (85, 100, 55, 821, 7)),
                     *(f"{a}-{b}.png" for a in (85, 100) for b in (55, 821, 7))}  # fmt: skip
    with Client(server.target) as c:  # the cells are the server's grid cells, the sources its seed images
        rows = [Source.from_seed(s, None, 0.7) for s in (85, 100)]
        cols = [Source.from_seed(s, None, 0.7) for s in (55, 821, 7)]
        grid = c.style_mix_grid(UNCOND, rows, cols, col_styles=range(4), compose=False)
        src = c.generate(UNCOND, [100], psi=0.7)[0]
    assert (tmp_path / "100-821.png").read_bytes() == grid.cells[4].data
    assert (tmp_path / "100-100.png").read_bytes() == src.data


# ---------------------------------------------------------------------------- exit codes, --version, pipes


def test_version_and_serve_help() -> None:
    from styleserve import __version__

    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"styleserve {__version__}"
    h = run("serve", "--help")
    assert h.returncode == 0
    options = re.findall(r"^  (--[a-z0-9-]+)", h.stdout, re.M)
    assert len(options) > 25 and "--metrics-port" in options
    entries = re.split(r"\n  (?=--)", h.stdout.split("options:", 1)[1])[1:]  # one per option, after -h
    for entry in (" ".join(e.split()) for e in entries):
        assert "(default " in entry and "[env STYLESERVE_" in entry, entry
    usage_error(run("serve", "/nonexistent", env={"STYLESERVE_PORT": "x"}), "bad STYLESERVE_PORT='x'")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["walk", "--model", "m", "--seeds", "1,2", "--out", "WALK.mp4"], "unknown animation type '.mp4'"),
        (["generate", "--model", "m", "--seeds", "1", "--psi", "nan"], "must be a finite number"),
        (["generate", "--model", "m", "--seeds", "1", "--jpeg-quality", "80"], "needs --format jpeg"),
        (["generate", "--model", "m", "--seeds", "5-1"], "descending range '5-1'"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, tmp_path: Path) -> None:
    usage_error(run(*argv, "--target", "127.0.0.1:1", cwd=tmp_path), message)
    assert list(tmp_path.iterdir()) == []  # no WALK.mp4/ directory, no out/


def test_generate_into_a_closed_pipe_ends_quietly(server: ServerProcess, tmp_path: Path) -> None:
    cmd = (f"{sys.executable} -m styleserve.cli generate --model {UNCOND} --seeds 0-99 --out {tmp_path} "
           f"--target {server.target} | head -1")  # fmt: skip
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().endswith("seed0000.png") and r.stderr == "", r.stderr
    assert r.returncode == 141  # the generator's status, as a shell reports SIGPIPE
    assert len(list(tmp_path.iterdir())) < 100  # it stopped drawing


def test_export_into_an_existing_directory_answers_before_torch(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any 'import torch' fails
        "from styleserve.cli import main\n"
        f"sys.exit(main(['export', '--demo', {str(tmp_path)!r}, '--fp16']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    usage_error(r, "exists; pass --overwrite")


# ---------------------------------------------------------------------------- token and target


def test_one_token_variable_and_the_deprecated_alias(start_server: object, repo: Path, tmp_path: Path) -> None:
    s: ServerProcess = start_server(repo, env={"STYLESERVE_AUTH_TOKEN": "s3cret"})  # type: ignore[operator]
    args = ("models", "--target", s.target)
    env = {k: v for k, v in os.environ.items() if k not in ("STYLESERVE_AUTH_TOKEN", "STYLESERVE_TOKEN")}
    ok = subprocess.run([sys.executable, "-m", "styleserve.cli", *args], capture_output=True, text=True,
                        env={**env, "STYLESERVE_AUTH_TOKEN": "s3cret"}, timeout=60)  # fmt: skip
    assert ok.returncode == 0 and UNCOND in ok.stdout and "deprecated" not in ok.stderr, ok.stderr
    old = subprocess.run([sys.executable, "-m", "styleserve.cli", *args], capture_output=True, text=True,
                         env={**env, "STYLESERVE_TOKEN": "s3cret"}, timeout=60)  # fmt: skip
    assert old.returncode == 0 and UNCOND in old.stdout, old.stderr
    assert "STYLESERVE_TOKEN is deprecated; set STYLESERVE_AUTH_TOKEN" in old.stderr
    none = subprocess.run([sys.executable, "-m", "styleserve.cli", *args], capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip
    assert none.returncode == 1 and "UNAUTHENTICATED" in none.stderr


@settings(max_examples=60, deadline=None)
@given(st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True), st.integers(1, 65535))
def test_a_target_without_a_port_means_the_default_port(host: str, port: int) -> None:
    assert with_default_port(host) == f"{host}:{DEFAULT_PORT}"
    assert with_default_port(f"{host}:{port}") == f"{host}:{port}"
    assert with_default_port(f"dns:///{host}") == f"dns:///{host}:{DEFAULT_PORT}"
    assert with_default_port(f"[::1]:{port}") == f"[::1]:{port}"
    assert parse_targets(f"{host}, ::1 ,unix:/tmp/s") == (
        f"{host}:{DEFAULT_PORT}",
        f"[::1]:{DEFAULT_PORT}",
        "unix:/tmp/s",
    )


def test_cli_target_without_port_is_not_443() -> None:
    r = run("health", "--target", "127.0.0.1", "--timeout", "1")
    assert r.returncode == 1 and r.stdout.strip() == "UNREACHABLE"  # nothing listens on 50051 in the tests
    c = Client("localhost")
    try:
        assert c.targets == (f"localhost:{DEFAULT_PORT}",)
    finally:
        c.close()


# ---------------------------------------------------------------------------- client library


def test_generate_splits_past_the_per_request_limit(start_server: object, repo: Path) -> None:
    s: ServerProcess = start_server(repo, "--max-images-per-request", "16")  # type: ignore[operator]
    with Client(s.target) as c:
        images = c.generate(UNCOND, range(40), psi=0.7, format="raw_uint8")
        assert len(images) == 40
        one = c.generate(UNCOND, [33], psi=0.7, format="raw_uint8")[0]
        assert np.array_equal(images[33].to_array(), one.to_array())
        assert repr(images[0]) == "GeneratedImage(raw_uint8 16x16x1, 256 bytes)"
        with pytest.raises(ValueError):  # every seed is checked before the first request
            c.generate(UNCOND, [*range(20), -1])


def test_a_long_stream_outlives_the_per_call_deadline(server: ServerProcess) -> None:
    """Client timeout 0.5 s; the consumer takes >= 1.5 s over the stream (generous: only a lower bound)."""
    with Client(server.target, timeout=0.5) as c:
        t0 = time.monotonic()
        seeds = []
        for item in c.stream_generate(UNCOND, range(30), format="raw_uint8"):
            seeds.append(item.seed)
            time.sleep(0.05)  # the caller's time with an item does not count toward the idle deadline
        assert seeds == list(range(30)) and time.monotonic() - t0 >= 1.5
        with pytest.raises(DeadlineExceededError, match="idle_timeout"):  # no item within 1 ms: cancelled
            list(c.stream_generate(UNCOND, range(10_000), idle_timeout=0.001))
        with pytest.raises(ValueError, match="idle_timeout"):
            c.stream_generate(UNCOND, range(3), idle_timeout=0)


def test_generated_image_repr_is_short() -> None:
    img = GeneratedImage(b"\x89PNG" + bytes(10_000), "png", 1024, 1024, 3, np.zeros((18, 512), np.float32))
    assert repr(img) == "GeneratedImage(png 1024x1024x3, 10004 bytes, ws [18, 512])"


# ---------------------------------------------------------------------------- one seed parser, no import circle


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 50)), min_size=1, max_size=8))
def test_one_seed_parser_for_cli_batch_and_render(items: list[tuple[int, int]]) -> None:
    text = ",".join(str(a) if n == 0 else f"{a}-{a + n}" for a, n in items)
    expanded = [s for a, n in items for s in range(a, a + n + 1)]
    assert parse_range(text) == cli_range(text) == expanded
    assert parse_spans(text) == [(a, a + n + 1) for a, n in items]
    assert batch_spans(text) == merge_spans(parse_spans(text))
    covered = {s for a, b in batch_spans(text) for s in range(a, b)}
    assert covered == set(expanded)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="0123456789-, x.", max_size=12))
def test_hostile_seed_lists_fail_alike(text: str) -> None:
    try:
        want = parse_spans(text, maximum=SEED_MAX)
    except ValueError as exc:
        above = "above the largest value" in str(exc)  # a seed > 2**32 - 1: only seed lists bound their values
        for parse in (batch_spans,) if above else (cli_range, batch_spans):
            with pytest.raises(ValueError) as info:
                parse(text)
            if not above:
                assert str(info.value).split(" e.g.")[0] == str(exc).split(" e.g.")[0]
        return
    assert batch_spans(text) == merge_spans(want)


def test_cli_and_batch_import_without_each_other() -> None:
    code = (
        "import sys; sys.modules['styleserve.clients.cli'] = None\n"
        "import styleserve.clients.batch\n"
        "sys.modules.pop('styleserve.clients.cli'); sys.modules['styleserve.clients.batch'] = None\n"
        "import styleserve.clients.cli\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


# ---------------------------------------------------------------------------- styleserve-render


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "5-1"], "descending range '5-1'"),
        (["--psi", "nan"], "must be finite"),
        (["--class", "1"], "--class 1: this model is unconditional"),
        (["--styles", "0-9"], "ws index 6 out of range"),
        (["--rows", "x"], "bad item 'x'"),
    ],
)
def test_render_validates_like_the_client(
    tiny_uncond_model: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "styleserve.server.render", str(tiny_uncond_model), str(out), *args],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    usage_error(r, message)
    assert not out.exists() or not any(out.iterdir())


def test_render_needs_a_class_on_a_conditional_model(tiny_cond_model: Path, tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "styleserve.server.render", str(tiny_cond_model), str(tmp_path / "o")]
    usage_error(subprocess.run([*exe, "--seeds", "1"], capture_output=True, text=True, timeout=120), "no --class")
    r = subprocess.run([*exe, "--seeds", "1-2", "--trunc", "0.5", "--class", "3", "--rows", "1", "--cols", "2"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["seed0001.png", "seed0002.png", "stylemix_grid.png"]
