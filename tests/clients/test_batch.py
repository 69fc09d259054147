"""``styleserve batch`` against real server processes: clean runs, crashes, restarts, shards and resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import ServerProcess
from styleserve.clients.batch import SeedSpans, main, parse_shard, parse_spans

MODEL = "tiny-uncond"
SEEDS = "0-1999"
N_SEEDS = 2000


def batch_cmd(out: Path, target: str, *args: str, seeds: str = SEEDS) -> list[str]:
    return [
        sys.executable, "-m", "styleserve.cli", "batch", "--target", target, "--model", MODEL, "--seeds", seeds,
        "--psi", "0.7", "--out", str(out), "--no-fsync", *args,
    ]  # fmt: skip


def run_batch(out: Path, target: str, *args: str, seeds: str = SEEDS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batch_cmd(out, target, *args, seeds=seeds), capture_output=True, text=True, timeout=120)


def start_batch(out: Path, target: str, *args: str) -> subprocess.Popen[str]:
    cmd = batch_cmd(out, target, *args)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def manifest_lines(out: Path) -> int:
    try:
        return (out / "manifest.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for_lines(out: Path, proc: subprocess.Popen[str], n: int, timeout: float = 60.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (got := manifest_lines(out)) >= n:
            return got
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    raise TimeoutError(f"fewer than {n} manifest lines after {timeout} s")


def read_dir(out: Path) -> dict[int, bytes]:
    """A finished directory -> {seed: image bytes}, asserting exactly-once and consistency on the way."""
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    seeds = [e["seed"] for e in entries]
    assert len(seeds) == len(set(seeds)), "a seed has two manifest lines"
    files = sorted(p.name for p in (out / "images").iterdir())
    assert files == sorted(f"seed{s:08d}.png" for s in seeds), "files and manifest lines differ"
    images: dict[int, bytes] = {}
    for e in entries:
        data = (out / e["file"]).read_bytes()
        assert e["file"] == f"images/seed{e['seed']:08d}.png"
        assert (e["bytes"], e["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        assert (e["model"], e["psi"], e["cutoff"], e["class"], e["noise_mode"]) == (MODEL, 0.7, None, None, "const")
        images[e["seed"]] = data
    return images


@pytest.fixture(scope="module")
def clean(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[int, bytes]:
    """A clean in-process run over all the seeds: the reference every other run must equal byte for byte."""
    out = tmp_path_factory.mktemp("clean")
    args = batch_cmd(out, server.target)[4:]
    assert main(args) == 0
    images = read_dir(out)
    assert sorted(images) == list(range(N_SEEDS))
    assert json.loads((out / "job.json").read_text())["params"] == {
        "model": MODEL, "format": "png", "jpeg_quality": None, "psi": 0.7, "cutoff": None, "class": None,
        "noise_mode": "const", "noise_seed": None,
    }  # fmt: skip
    return images


def assert_equals_clean(out: Path, clean: dict[int, bytes], seeds: range = range(N_SEEDS)) -> None:
    got = read_dir(out)
    assert sorted(got) == list(seeds)
    assert all(got[s] == clean[s] for s in seeds), "an image differs from the clean run"
    assert not [p for p in (out / "images").iterdir() if p.name.startswith(".")], "temp files left"


# ---------------------------------------------------------------------------- pure parts


def test_parse_spans_and_shards() -> None:
    assert parse_spans("7, 0-3,2-5,9,10") == [(0, 6), (7, 8), (9, 11)]
    assert parse_spans("0-4294967295") == [(0, 2**32)]
    for bad in ("", "1-", "a", "5-3", "0-4294967296", "1,,2"):
        with pytest.raises(ValueError):
            parse_spans(bad)
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "1/0", "-1/3", "x"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    for text in ("0-9", "0-299", "5,7-20,100-104,1000-1999", "0"):
        seeds = SeedSpans(parse_spans(text))
        every = [s for a, b in seeds.spans for s in range(a, b)]
        for n in (1, 2, 3, 7, 16):
            shards = [[s for a, b in seeds.shard(i, n).spans for s in range(a, b)] for i in range(n)]
            assert sorted(s for sh in shards for s in sh) == every  # disjoint and covering
            assert max(map(len, shards)) - min(map(len, shards)) <= 1
            assert [s for sh in shards for s in sh] == every  # contiguous blocks, in order
    chunks = list(SeedSpans(parse_spans("0-9,20-24")).chunks(4))
    assert chunks == [(0, 4), (4, 8), (8, 10), (20, 24), (24, 25)]


def test_usage_errors(tmp_path: Path) -> None:
    r = run_batch(tmp_path, "127.0.0.1:1", "--shard", "3/3")
    assert r.returncode == 2 and "--shard" in r.stderr
    r = run_batch(tmp_path, "127.0.0.1:1", "--noise-seed", "3")
    assert r.returncode == 2 and "--noise-mode random" in r.stderr
    r = run_batch(tmp_path, "127.0.0.1:1", seeds="5-2")
    assert r.returncode == 2 and "descending" in r.stderr


def test_no_server_fails_with_exit_1(tmp_path: Path) -> None:
    from harness import free_port

    target = f"127.0.0.1:{free_port()}"
    r = run_batch(tmp_path, target, "--retries", "1", "--retry-backoff", "0.01", "--chunk", "4", seeds="0-9,20-21")
    assert r.returncode == 1, r.stderr
    assert "failed: 12 seeds in 4 chunks" in r.stderr
    for span in ("0-3", "4-7", "8-9", "20-21"):
        assert f"  seeds {span}: UNAVAILABLE: " in r.stderr
    assert "batch incomplete: 0/12 done (0 written, 0 skipped), 12 failed, 0 left" in r.stdout
    assert manifest_lines(tmp_path) == 0 and not list((tmp_path / "images").iterdir())


# ---------------------------------------------------------------------------- against a server


def test_clean_run_and_rerun(server: ServerProcess, clean: dict[int, bytes], tmp_path: Path) -> None:
    r = run_batch(tmp_path, server.target, "--streams", "3", "--chunk", "50", seeds="0-299")
    assert r.returncode == 0, r.stderr
    assert "batch complete: 300/300 done (300 written, 0 skipped), 0 failed, 0 left" in r.stdout
    assert_equals_clean(tmp_path, clean, range(300))
    before = (tmp_path / "manifest.jsonl").read_bytes()
    # Complete: nothing to do, so not even the server is needed.
    r = run_batch(tmp_path, "127.0.0.1:1", seeds="0-299")
    assert r.returncode == 0, r.stderr
    assert "batch complete: 300/300 done (0 written, 300 skipped)" in r.stdout
    assert (tmp_path / "manifest.jsonl").read_bytes() == before


def test_sigkill_of_the_client_then_resume(server: ServerProcess, clean: dict[int, bytes], tmp_path: Path) -> None:
    proc = start_batch(tmp_path, server.target, "--streams", "2", "--chunk", "16")
    wait_for_lines(tmp_path, proc, 60)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    partial = manifest_lines(tmp_path)
    assert 0 < partial < N_SEEDS, partial
    r = run_batch(tmp_path, server.target, "--streams", "2", "--chunk", "16", "--progress")
    assert r.returncode == 0, r.stderr
    assert "progress: [" in r.stderr and " img/s ETA " in r.stderr  # --progress without a terminal: lines
    skipped = int(r.stdout.split(" skipped")[0].rsplit("(", 1)[1].split(" written, ")[1])
    assert skipped >= partial, (partial, r.stdout)  # plus the files renamed just before the kill, adopted
    assert_equals_clean(tmp_path, clean)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_finishes_writes_then_resume(
    server: ServerProcess, clean: dict[int, bytes], tmp_path: Path, sig: int, code: int
) -> None:
    proc = start_batch(tmp_path, server.target, "--streams", "2", "--chunk", "16")
    wait_for_lines(tmp_path, proc, 60)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert "interrupted" in stderr and "batch interrupted" in stdout
    partial = manifest_lines(tmp_path)
    assert 0 < partial < N_SEEDS
    assert not [p for p in (tmp_path / "images").iterdir() if p.name.startswith(".")], "temp files left"
    assert len(list((tmp_path / "images").iterdir())) == partial  # every file has its line: a clean stop
    r = run_batch(tmp_path, server.target)
    assert r.returncode == 0, r.stderr
    assert f"({N_SEEDS - partial} written, {partial} skipped)" in r.stdout
    assert_equals_clean(tmp_path, clean)


def test_server_restart_then_resume(
    start_server: Callable[..., ServerProcess], repo: Path, clean: dict[int, bytes], tmp_path: Path
) -> None:
    x = start_server(repo)
    args = ("--streams", "2", "--chunk", "16", "--retries", "1", "--retry-backoff", "0.05", "--max-failed-chunks", "4")
    proc = start_batch(tmp_path, x.target, *args)
    wait_for_lines(tmp_path, proc, 60)
    x.stop(signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert "failed:" in stderr and "UNAVAILABLE" in stderr and "batch incomplete" in stdout, stderr
    assert "gave up after 4 failed chunks" in stderr
    partial = manifest_lines(tmp_path)
    assert 0 < partial < N_SEEDS
    y = start_server(repo)  # Another port: only --target changes, which a resumed job allows.
    r = run_batch(tmp_path, y.target, *args)
    assert r.returncode == 0, r.stderr
    assert_equals_clean(tmp_path, clean)


def test_shards_share_a_directory(server: ServerProcess, clean: dict[int, bytes], tmp_path: Path) -> None:
    for i in range(3):
        r = run_batch(tmp_path, server.target, "--shard", f"{i}/3", "--chunk", "32", seeds="0-299")
        assert r.returncode == 0, r.stderr
        assert "batch complete: 100/100 done (100 written, 0 skipped)" in r.stdout
        assert manifest_lines(tmp_path) == 100 * (i + 1)
    assert_equals_clean(tmp_path, clean, range(300))
    r = run_batch(tmp_path, server.target, seeds="0-299")
    assert r.returncode == 0 and "(0 written, 300 skipped)" in r.stdout
    # Concurrently, as the workers of an indexed job sharing a volume would.
    out = tmp_path / "concurrent"
    cmds = [batch_cmd(out, server.target, "--shard", f"{i}/3", "--chunk", "8", seeds="0-599") for i in range(3)]
    procs = [subprocess.Popen(c, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in cmds]
    for p in procs:
        stdout, stderr = p.communicate(timeout=60)
        assert p.returncode == 0 and "(200 written, 0 skipped)" in stdout, stderr
    assert_equals_clean(out, clean, range(600))


def test_parameter_mismatch_is_refused(server: ServerProcess, tmp_path: Path) -> None:
    r = run_batch(tmp_path, server.target, seeds="0-9")
    assert r.returncode == 0, r.stderr
    before = (tmp_path / "manifest.jsonl").read_bytes()
    cmd = batch_cmd(tmp_path, server.target, seeds="0-19")
    cmd[cmd.index("--psi") + 1] = "0.5"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "other parameters (psi 0.7 there, 0.5 now)" in r.stderr and "another --out" in r.stderr
    r = run_batch(tmp_path, server.target, "--noise-mode", "random", seeds="0-9")
    assert r.returncode == 2 and "noise_mode 'const' there, 'random' now" in r.stderr
    assert (tmp_path / "manifest.jsonl").read_bytes() == before
    (tmp_path / "job.json").rename(tmp_path / "job.json.bak")  # Without job.json the manifest lines still tell.
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "manifest.jsonl line 1 was drawn with other parameters (psi 0.7 there" in r.stderr
    assert not (tmp_path / "job.json").exists()
    (tmp_path / "job.json.bak").replace(tmp_path / "job.json")
    assert (tmp_path / "manifest.jsonl").read_bytes() == before
    # Seeds, streams, chunk and target may change.
    r = run_batch(tmp_path, server.target, "--streams", "1", "--chunk", "3", seeds="0-19")
    assert r.returncode == 0 and "(10 written, 10 skipped)" in r.stdout, r.stderr


def test_bad_parameters_stop_the_job(server: ServerProcess, tmp_path: Path) -> None:
    r = run_batch(tmp_path, server.target, "--class", "3", seeds="0-99")
    assert r.returncode == 2 and "INVALID_ARGUMENT" in r.stderr and "batch stopped" in r.stdout, r.stderr
    # Nothing was written, so the fixed command may take the directory over.
    r = run_batch(tmp_path, server.target, seeds="0-9")
    assert r.returncode == 0, r.stderr


def test_torn_manifest_orphans_and_temp_files(server: ServerProcess, clean: dict[int, bytes], tmp_path: Path) -> None:
    r = run_batch(tmp_path, server.target, seeds="0-49")
    assert r.returncode == 0, r.stderr
    manifest = tmp_path / "manifest.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    by_seed = {json.loads(line)["seed"]: line for line in lines}
    kept = [line for line in lines if json.loads(line)["seed"] not in (7, 8)]
    kept.append(by_seed[11])  # a repeated line
    kept.append(by_seed[12][:25])  # a torn last line (no newline)
    manifest.write_text("".join(kept))  # seeds 7 and 8 lost their lines: crash between rename and append
    images = tmp_path / "images"
    (images / "seed00000008.png").write_bytes(clean[8][:30])  # a damaged orphan: drawn again
    (images / "seed00000009.png").unlink()  # a line without its file: drawn again
    (images / "seed00000010.png").write_bytes(clean[10] + b"x")  # a file that does not fit its line
    (images / ".seed00000003.png.abc123.tmp").write_bytes(b"half an image")  # a stray temp file
    r = run_batch(tmp_path, server.target, seeds="0-49")
    assert r.returncode == 0, r.stderr
    # Dropped: the torn line, the repeat of 11, the lines of 9 (no file) and 10 (wrong size); removed: the
    # temp file, the damaged orphan 8 and the wrong file 10.
    assert "1 adopted, 4 manifest lines dropped, 3 files removed, 3 to go" in r.stderr, r.stderr
    assert "(3 written, 47 skipped)" in r.stdout  # 8, 9 and 10 drawn again; 7 adopted
    assert_equals_clean(tmp_path, clean, range(50))
    assert not os.path.exists(images / ".seed00000003.png.abc123.tmp")


def test_one_png_encoder_per_job(
    server: ServerProcess,
    start_server: Callable[..., ServerProcess],
    repo: Path,
    clean: dict[int, bytes],
    tmp_path: Path,
) -> None:
    """job.json records the server's PNG encoder; a resume on a server that encodes otherwise is refused (its pixels
    would match, its bytes not), and the same encoder resumes byte-exactly."""
    r = run_batch(tmp_path, server.target, seeds="0-49")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "job.json").read_text())["png_encoder"] == "fpng"
    other = start_server(repo, "--png-encoder", "pillow")
    r = run_batch(tmp_path, other.target, seeds="0-99")
    assert r.returncode == 2, r.stderr
    assert "PNG encoder 'fpng'" in r.stderr and "--png-encoder fpng" in r.stderr
    assert manifest_lines(tmp_path) == 50
    r = run_batch(tmp_path, server.target, seeds="0-99")
    assert r.returncode == 0, r.stderr
    assert_equals_clean(tmp_path, clean, range(100))
    # A JPEG job records nothing: its bytes come from one encoder everywhere.
    jpeg = tmp_path / "jpeg"
    r = run_batch(jpeg, other.target, "--format", "jpeg", seeds="0-3")
    assert r.returncode == 0, r.stderr
    assert "png_encoder" not in json.loads((jpeg / "job.json").read_text())
