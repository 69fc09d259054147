"""Every command line of the README's ```bash blocks, run as written: the ``styleserve`` CLI lines against a real
server serving the exported demo model (name ``demo``) over loopback, and the main job ``bash scripts/demo.sh``.

The lines are read from the README at test time, so a new example is run (or must be listed in ``SKIPS``)
without touching this file. What cannot run as written is changed only through ``SUBSTITUTIONS`` and ``SETUP``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from harness import ServerProcess
from PIL import Image
from styleserve.clients.batch import SeedSpans, parse_shard
from styleserve.clients.batch import parse_spans as batch_spans

from styleserve import __version__
from styleserve.manifest import ModelManifest
from styleserve.seeds import parse_range

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent  # the .venv's console scripts: styleserve, styleserve-export, styleserve-render
TIMEOUT = 120  # seconds per command line
COMMAND = re.compile(r"^(?:\.venv/bin/)?(?=styleserve(?:-export|-render)? )")  # a CLI line, .venv/bin/ optional

# Lines of the bash blocks that are not CLI lines: the test that runs them, or why none does.
OTHER_LINES = {
    "bash scripts/demo.sh": "run: test_demo_sh_main_job",
    "bash scripts/test.sh": "not run: the test runner itself (CI runs it; it runs this module)",
}
OFFICIAL = "an official .pkl through the export CLI: "
OFFICIAL += "tests/export/test_official_e2e.py::test_official_pkl_to_onnx_reproduces_official_images"
# CLI lines not run here (matched by prefix, after .venv/bin/), with the reason and the test that covers them.
SKIPS = {
    "styleserve export stylegan2-ffhq-1024x1024.pkl": f"needs NVlabs' FFHQ checkpoint (not shipped); {OFFICIAL}",
    "styleserve-export network-snapshot-001000.pkl": f"needs a training snapshot (not shipped); {OFFICIAL}",
    "styleserve serve models &": "binds the fixed port 50051 (shared machine); this module's server is "
    "`styleserve serve REPO --host 127.0.0.1 --port 0 --metrics-port FREE` (harness.ServerProcess)",
    "styleserve serve models/ --host 0.0.0.0 --port 50051 --metrics-port 9464": "fixed ports on every interface; "
    "this module's server passes --host (loopback) and --metrics-port (a free port; /metrics read in "
    "test_readme_cli_lines_run)",
}
# (old, new, why): applied to every CLI line that runs; each must still match some line. {target}: the server's
# address, {demo}: the demo model directory.
SUBSTITUTIONS = [
    ("HOST[:PORT]", "{target}", "placeholder: the test server's loopback address"),
    ("--model ffhq", "--model demo", "the three-command example's ffhq model (skipped export) is the demo model"),
    ("styleserve-render models/ffhq", "styleserve-render {demo}", "the renderer's model directory: the demo"),
    ("--seeds 0-999999", "--seeds 0-63", "a million images: 64 seeds, of which shard 3/16 draws 4"),
    ("--out /data/demo-psi07", "--out data/demo-psi07", "an absolute path outside the temporary directory"),
    ("[--shard 3/16]", "--shard 3/16", "an optional part in brackets, made concrete"),
]
# Input files a line reads that no earlier line writes: file -> (made from, how).
SETUP = {"w.npy": ("ws/seed0001_projected_w.npz", "the map example's w+ of seed 1, key 'w' [0], saved as .npy")}


def bash_lines() -> list[str]:
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def cli_lines() -> list[str]:
    """The README's CLI lines in order, ``.venv/bin/`` removed."""
    return [COMMAND.sub("", ln) for ln in bash_lines() if COMMAND.match(ln)]


def skip_reason(line: str) -> str | None:
    return next((why for key, why in SKIPS.items() if line.startswith(key)), None)


def substitute(line: str, values: dict[str, str], used: set[str]) -> str:
    for old, new, _ in SUBSTITUTIONS:
        if old in line:
            line = line.replace(old, new.format(**values))
            used.add(old)
    return line


def test_every_readme_line_is_run_or_skipped_with_a_reason() -> None:
    lines = bash_lines()
    cli = cli_lines()
    assert len(cli) >= 15, cli  # the README's examples: health, models, generate, map, synthesize, grid, ...
    for ln in lines:
        assert COMMAND.match(ln) or any(ln.startswith(k) for k in OTHER_LINES), f"no test runs README line: {ln}"
    for key in OTHER_LINES:
        assert any(ln.startswith(key) for ln in lines), f"stale OTHER_LINES entry: {key}"
    for key in SKIPS:
        assert any(ln.startswith(key) for ln in cli), f"stale SKIPS entry: {key}"
    for ln in cli:  # every line that runs has a check for what it writes or prints
        if skip_reason(ln) is None:
            assert check_key(shlex.split(ln, comments=True)) in CHECKS, f"no check for README line: {ln}"


# ------------------------------------------------------------------------------------ the server and the lines


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding the demo model, exported by the project (as ``styleserve export --demo`` does)."""
    from styleserve.export.demo import make_demo_generator
    from styleserve.export.onnx_export import export_model

    root = tmp_path_factory.mktemp("demo-repo")
    export_model(make_demo_generator(), root / "demo", verify_batches=(1,))
    return root


@pytest.fixture(scope="module")
def demo_server(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(demo_repo, "--host", "127.0.0.1", log_dir=tmp_path_factory.mktemp("log")).wait_serving()
    yield s
    assert s.stop() == 0, s.log()


def option(argv: list[str], *names: str) -> str | None:
    """The value of the last of ``names`` in ``argv``."""
    found = None
    for i, a in enumerate(argv[:-1]):
        if a in names:
            found = argv[i + 1]
    return found


def image(path: Path, fmt: str) -> Image.Image:
    assert path.is_file(), f"{path} not written"
    im = Image.open(path)
    assert im.format == fmt, (path, im.format)
    im.load()  # decodes the (first) frame: a truncated file fails here
    return im


class Ctx:
    def __init__(self, cwd: Path, manifest: ModelManifest, target: str) -> None:
        self.cwd, self.m, self.target = cwd, manifest, target
        self.res = manifest.img_resolution


def check_version(argv: list[str], out: str, ctx: Ctx) -> None:
    assert out.strip() == f"styleserve {__version__}", out


def check_health(argv: list[str], out: str, ctx: Ctx) -> None:
    assert out.strip() == "SERVING", out


def check_models(argv: list[str], out: str, ctx: Ctx) -> None:
    assert re.search(r"^demo\b", out, re.M), out


def check_generate(argv: list[str], out: str, ctx: Ctx) -> None:
    outdir = ctx.cwd / (option(argv, "--out", "--outdir") or ".")
    seeds = parse_range(option(argv, "--seeds") or "")
    assert len(seeds) > 1, argv
    for s in seeds:
        assert image(outdir / f"seed{s:04d}.png", "PNG").size == (ctx.res, ctx.res)


def check_map(argv: list[str], out: str, ctx: Ctx) -> None:
    outdir = ctx.cwd / (option(argv, "--out") or ".")
    assert option(argv, "--format") == "npz", argv
    for s in parse_range(option(argv, "--seeds") or ""):
        with np.load(outdir / f"seed{s:04d}_projected_w.npz") as f:
            w = f["w"]  # [1, num_ws, w_dim], as projector.py writes it
        assert w.shape == (1, ctx.m.num_ws, ctx.m.w_dim) and w.dtype == np.float32 and np.isfinite(w).all()


def check_one_image(argv: list[str], out: str, ctx: Ctx) -> None:
    assert image(ctx.cwd / (option(argv, "--out") or ""), "PNG").size == (ctx.res, ctx.res)


def check_grid(argv: list[str], out: str, ctx: Ctx) -> None:
    rows, cols = (parse_range(option(argv, k) or "") for k in ("--rows", "--cols"))
    size = ((len(cols) + 1) * ctx.res, (len(rows) + 1) * ctx.res)  # sources along the top and left edges
    assert image(ctx.cwd / (option(argv, "--out") or ""), "PNG").size == size


def check_walk(argv: list[str], out: str, ctx: Ctx) -> None:
    gif = image(ctx.cwd / (option(argv, "--out") or ""), "GIF")
    assert gif.size == (ctx.res, ctx.res)
    if option(argv, "--direction") is None:  # keyframes: the seeds; --loop walks back to the first
        keys = len(parse_range(option(argv, "--seeds") or ""))
    else:  # keyframes: each seed edited by each alpha
        keys = len(parse_range(option(argv, "--seeds") or "")) * len((option(argv, "--alphas") or "").split(","))
    per = int(option(argv, "--frames-per-seed") or 16)
    frames = int(getattr(gif, "n_frames", 1))  # an animated GIF: every frame of the walk
    assert "--loop" in argv and frames == keys * per, (frames, keys, per)


def check_edit(argv: list[str], out: str, ctx: Ctx) -> None:
    directions = parse_range(option(argv, "--direction") or "")
    alphas = (option(argv, "--alphas") or "-3,0,3").split(",")  # the documented default
    size = (len(alphas) * ctx.res, len(directions) * ctx.res)  # a row per direction, a column per alpha
    assert image(ctx.cwd / (option(argv, "--out") or ""), "PNG").size == size


def check_cache_put(argv: list[str], out: str, ctx: Ctx) -> None:
    assert re.fullmatch(r"w_[0-9a-f]{32}\n", out), out
    got = ctx.cwd / "cache-get.npy"
    r = run([str(BIN / "styleserve"), "cache", "get", "--model", "demo", out.strip(), "--out", str(got)], ctx)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(got), np.load(ctx.cwd / argv[-1]))  # the id holds what was put


def check_batch(argv: list[str], out: str, ctx: Ctx) -> None:
    job = ctx.cwd / (option(argv, "--out") or "")
    want = SeedSpans(batch_spans(option(argv, "--seeds") or "")).shard(*parse_shard(option(argv, "--shard") or "0/1"))
    entries = [json.loads(ln) for ln in (job / "manifest.jsonl").read_text().splitlines()]
    assert sorted(e["seed"] for e in entries) == [s for a, b in want.spans for s in range(a, b)]
    assert 0 < len(entries) < 64, entries
    for e in entries:
        data = (job / e["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e["sha256"] and e["psi"] == float(option(argv, "--psi") or 1)
        assert image(job / e["file"], "PNG").size == (ctx.res, ctx.res)


def check_render(argv: list[str], out: str, ctx: Ctx) -> None:
    outdir = ctx.cwd / argv[2]
    for s in parse_range(option(argv, "--seeds") or ""):
        assert image(outdir / f"seed{s:04d}.png", "PNG").size == (ctx.res, ctx.res)
    rows, cols = (parse_range(option(argv, k) or "") for k in ("--rows", "--cols"))
    grid = image(outdir / "stylemix_grid.png", "PNG")
    assert grid.size == ((len(cols) + 1) * ctx.res, (len(rows) + 1) * ctx.res)


CHECKS: dict[str, Callable[[list[str], str, Ctx], None]] = {
    "styleserve --version": check_version,
    "styleserve health": check_health,
    "styleserve models": check_models,
    "styleserve generate": check_generate,
    "styleserve map": check_map,
    "styleserve synthesize": check_one_image,
    "styleserve grid": check_grid,
    "styleserve walk": check_walk,
    "styleserve edit": check_edit,
    "styleserve cache put": check_cache_put,
    "styleserve batch": check_batch,
    "styleserve-render": check_render,
}


def check_key(argv: list[str]) -> str:
    """``styleserve cache put``, ``styleserve generate``, ``styleserve-render``: what decides the check."""
    if argv[0] != "styleserve":
        return argv[0]
    return " ".join(argv[:3] if argv[1] == "cache" else argv[:2])


def run(argv: list[str], ctx: Ctx) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STYLESERVE_AUTH_TOKEN", "STYLESERVE_TOKEN")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, cwd=ctx.cwd,
                          env={**env, "STYLESERVE_TARGET": ctx.target})  # fmt: skip


def test_readme_cli_lines_run(demo_server: ServerProcess, demo_repo: Path, tmp_path: Path) -> None:
    """In README order, in one working directory (synthesize reads what map wrote), each line exits 0 and its
    check finds what it writes or prints."""
    ctx = Ctx(tmp_path, ModelManifest.load(demo_repo / "demo"), demo_server.target)
    values = {"target": demo_server.target, "demo": str(demo_repo / "demo")}
    used: set[str] = set()
    ran = []
    for line in cli_lines():
        if skip_reason(line) is not None:
            continue
        argv = shlex.split(substitute(line, values, used), comments=True)
        for name, (source, _) in SETUP.items():
            if name in argv and not (tmp_path / name).exists():
                with np.load(tmp_path / source) as f:
                    np.save(tmp_path / name, f["w"][0])
        r = run([str(BIN / argv[0]), *argv[1:]], ctx)
        assert r.returncode == 0, f"README line failed ({r.returncode}): {line}\n{r.stdout}\n{r.stderr}"
        CHECKS[check_key(argv)](argv, r.stdout, ctx)
        ran.append(check_key(argv))
    assert used == {old for old, _, _ in SUBSTITUTIONS}, "a substitution matches no README line any more"
    assert {"styleserve health", "styleserve models", "styleserve generate", "styleserve cache put"} <= set(ran)
    assert demo_server.metrics()["styleserve_images_total"] > 0  # --metrics-port serves /metrics


# ------------------------------------------------------------------------------------ the main job


def mirror_root(root: Path, venv: Path) -> None:
    """A repository root for the scripts: scripts/, pyproject.toml and constraints.txt of this checkout and the
    given .venv, linked, so that the script's models/ and out/ land in ``root`` and not in the checkout."""
    for name in ("scripts", "pyproject.toml", "constraints.txt"):
        (root / name).symlink_to(ROOT / name)
    (root / ".venv").symlink_to(venv)


def test_demo_sh_main_job(tmp_path: Path) -> None:
    """``bash scripts/demo.sh OUT``: export, serve, draw; without installing anything (STYLESERVE_VENV_OFFLINE=1
    makes _venv.sh fail instead: .venv must hold a stamp with demo.sh's extras or a superset, e.g. test.sh's)."""
    root = tmp_path / "root"
    root.mkdir()
    mirror_root(root, ROOT / ".venv")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLESERVE_")}
    r = subprocess.run(["bash", "scripts/demo.sh", str(out)], capture_output=True, text=True, timeout=300, cwd=root,
                       env={**env, "STYLESERVE_VENV_OFFLINE": "1"})  # fmt: skip
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    names = {p.name for p in out.iterdir()}
    assert names == {*(f"seed{s:04d}.png" for s in range(8)), "stylemix_grid.png", "server.log"}, names
    for n in names - {"server.log"}:
        image(out / n, "PNG")
    assert sorted(p.name for p in (root / "models").iterdir()) == ["demo"]  # under the mirror, not the checkout
    assert "demo" in r.stdout and f"images: {out}/" in r.stdout


def fake_venv(root: Path, *extras: str, pyproject: bytes | None = None) -> None:
    """A .venv whose python is this one, stamped as installed with each of ``extras``."""
    venv = root / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    digest = hashlib.sha256(pyproject or (ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    for e in extras:
        (venv / f".installed-{digest}-{e}").touch()


@pytest.mark.parametrize(
    ("stamps", "wanted", "installs"),
    [
        (["export,server,openvino,client,dev"], "export,server,client", False),  # demo.sh after test.sh
        (["export,server,client"], "export,server,client", False),
        (["export,server,client"], "export,server,openvino,client,dev", True),
        (["export,server,clientx"], "export,server,client", True),  # names, not prefixes
    ],
)
def test_venv_sh_installs_only_what_is_missing(tmp_path: Path, stamps: list[str], wanted: str, installs: bool) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for name in ("scripts", "pyproject.toml", "constraints.txt"):
        (root / name).symlink_to(ROOT / name)
    fake_venv(root, *stamps)
    r = subprocess.run(["bash", "-c", f"source scripts/_venv.sh {wanted} && echo ready"], capture_output=True,
                       text=True, timeout=60, cwd=root, env={**os.environ, "STYLESERVE_VENV_OFFLINE": "1"})  # fmt: skip
    if installs:
        assert r.returncode == 1 and f"lacks styleserve[{wanted}]" in r.stderr and r.stdout == "", r
    else:
        assert r.returncode == 0 and r.stdout == "ready\n", r


def test_venv_sh_stamps_are_per_pyproject(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for name in ("scripts", "pyproject.toml", "constraints.txt"):
        (root / name).symlink_to(ROOT / name)
    fake_venv(root, "export,server,openvino,client,dev", pyproject=b"[project]\nname = 'older'\n")
    r = subprocess.run(["bash", "-c", "source scripts/_venv.sh client"], capture_output=True, text=True, timeout=60,
                       cwd=root, env={**os.environ, "STYLESERVE_VENV_OFFLINE": "1"})  # fmt: skip
    assert r.returncode == 1 and "lacks styleserve[client]" in r.stderr, r
