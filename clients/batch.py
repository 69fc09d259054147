"""``styleserve batch``: a resumable batch job drawing millions of seeds into a directory.

::

    styleserve batch --model ffhq --seeds 0-999999 --psi 0.7 --out /data/ffhq-psi07 [--streams 4] [--shard 3/16]

The job runs ``--streams`` concurrent ``StreamGenerate`` calls, each over a contiguous chunk of ``--chunk`` seeds
taken from a shared queue. The output directory holds:

* ``images/seed{seed:08d}.png`` (``.jpg`` with ``--format jpeg``): one file per seed, written atomically (a temp
  file ``.seedNNNNNNNN.png.*.tmp`` in the same directory, fsync, ``os.replace``);
* ``manifest.jsonl``: one JSON line per finished image, appended *after* its file is in place (``seed``,
  ``model``, ``psi``, ``cutoff``, ``class``, ``noise_mode``, ``noise_seed``, ``file`` relative to the directory,
  ``sha256``, ``bytes``). Lines are appended with one ``write`` under an exclusive ``flock``, so shards may share
  a directory; the file is append-only except for the compaction described below;
* ``job.json``: the parameters that decide the bytes (model, format, jpeg quality, psi, cutoff, class, noise).

**Resume.** Re-running the same command skips what is complete and writes nothing twice. On start (holding the
manifest's lock) the job reads ``manifest.jsonl`` and, for each seed of this run, counts it done only if its line
parses, names the expected file, and that file exists with the recorded size (with ``--verify`` also the recorded
sha256). Lines that do not parse (a torn last line), repeat a seed, or point at a missing or mismatching file are
dropped by rewriting the manifest atomically (the mismatching file is deleted and drawn again). Image files
without a manifest line (a crash between rename and append) are adopted: a file with a valid PNG/JPEG start and
end gets its sha256 computed and its line appended instead of being drawn again. Leftover temp files of this run's
seeds are deleted. So every finished seed has exactly one line and one file, and resumed runs equal clean runs
byte for byte (the server's PNG/JPEG encoding is deterministic). ``job.json`` guards the parameters: when it
differs from this command (anything but seeds, shard, streams, chunk, target and connection flags) and the
directory already holds output, the job refuses with exit code 2 instead of mixing outputs; so it does when a
manifest line records other parameters (a lost or replaced ``job.json``).

**Shards.** ``--shard i/N`` (0-based) takes the i-th of N contiguous, near-equal blocks of the sorted,
de-duplicated seed list: positions ``[i*T//N, (i+1)*T//N)`` of the T seeds. Blocks are disjoint and cover every
seed for any T and N; they depend only on ``--seeds`` and N (not on ``--chunk`` or ``--streams``), so every
worker of e.g. a Kubernetes Indexed Job (``--shard $JOB_COMPLETION_INDEX/N``) must get the same ``--seeds``.

**Failures.** A chunk's stream failing with UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ABORTED or
CANCELLED (a server restart, a dropped connection, an overloaded server) is retried ``--retries`` times with
exponential backoff on a fresh channel, starting from the first seed not yet written; a retry that made progress
resets the count. Other server errors fail the chunk at once. INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED,
PERMISSION_DENIED and UNIMPLEMENTED (wrong model, class, psi, token, ...) stop the job (exit 2), as does a local
write error (exit 1). After ``--max-failed-chunks`` failed chunks (a server gone for good) the job stops: no new
chunks, and the streams in flight end at their next image. ``--timeout`` bounds each chunk's stream.

**Exit codes.** 0: every seed of the shard is done; 1: some seeds failed or were left (the summary counts them,
stderr names the first failed seed spans with their errors; re-running retries them), or a write error; 2: usage
or configuration errors (bad arguments, a ``job.json`` or manifest mismatch, the server rejecting the job's
parameters); 130 on Ctrl-C (SIGINT) and 143 on SIGTERM, after the streams stopped and in-flight writes finished (a
second Ctrl-C quits at once; files stay whole because of the atomic rename, and the next run resumes).

Progress goes to stderr: a one-line bar (done/total, rate, ETA) on a terminal, or with ``--progress`` a line every
10 s when stderr is not a terminal. The summary line goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import grpc

from styleserve.latent import SEED_MAX
from styleserve.seeds import merge_spans
from styleserve.seeds import parse_spans as seed_spans

from ._args import add_connection_args, int_at_least, resolve_token
from ._client import Client
from ._errors import StyleServeRpcError
from ._types import GeneratedImage, Noise

__all__ = ["SeedSpans", "main", "parse_shard", "parse_spans"]

MANIFEST = "manifest.jsonl"
JOB_FILE = "job.json"
IMAGES = "images"
JOB_VERSION = 1
SUFFIXES = {"png": ".png", "jpeg": ".jpg"}
FAILED_SHOWN = 5
"""Failed seed spans named on stderr (the count is always complete)."""

RETRY_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)
"""Codes a chunk is retried on: the server is restarting, overloaded or unreachable."""
CONFIG_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
"""Codes that stop the whole job with exit code 2: every chunk would fail the same way."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143

_IMAGE_RE = re.compile(r"^seed([0-9]+)(\.png|\.jpg)$")
_TEMP_RE = re.compile(r"^\.seed([0-9]+)(?:\.png|\.jpg)\..*\.tmp$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


# ---------------------------------------------------------------------------- seeds


def parse_spans(text: str) -> list[tuple[int, int]]:
    """``'0-999,5000'`` -> sorted, merged half-open spans ``[(0, 1000), (5000, 5001)]``; ValueError otherwise.

    Repeats and overlaps collapse (one file per seed); nothing is expanded, so ``0-4294967295`` costs nothing.
    The items are read by :func:`styleserve.seeds.parse_spans`, as every seed list of the CLI.
    """
    return merge_spans(seed_spans(text, example="0-999999,5000", maximum=SEED_MAX))


def parse_shard(text: str) -> tuple[int, int]:
    """``'3/16'`` -> ``(3, 16)``: shard index (0-based) and shard count."""
    m = re.match(r"^\s*([0-9]+)\s*/\s*([0-9]+)\s*$", text)
    if m is None:
        raise ValueError(f"bad shard {text!r}; expected i/N with 0 <= i < N, e.g. 0/4")
    i, n = int(m.group(1)), int(m.group(2))
    if not 0 <= i < n:
        raise ValueError(f"bad shard {text!r}; the index must be in [0, N) (0-based), e.g. 0/{max(n, 1)}")
    return i, n


class SeedSpans:
    """Sorted, disjoint half-open seed spans; a seed's *position* is its index in the ascending seed list."""

    def __init__(self, spans: Sequence[tuple[int, int]]) -> None:
        self.spans = [(a, b) for a, b in spans if b > a]
        self._starts = [a for a, _ in self.spans]
        self._offsets: list[int] = []
        total = 0
        for a, b in self.spans:
            self._offsets.append(total)
            total += b - a
        self.total = total

    def position(self, seed: int) -> int | None:
        """The seed's position, or None when it is not in the spans."""
        k = bisect_right(self._starts, seed) - 1
        if k >= 0 and seed < self.spans[k][1]:
            return self._offsets[k] + seed - self._starts[k]
        return None

    def take(self, first: int, stop: int) -> SeedSpans:
        """The seeds at positions ``[first, stop)``."""
        out: list[tuple[int, int]] = []
        for (a, b), off in zip(self.spans, self._offsets, strict=True):
            lo, hi = max(first, off), min(stop, off + b - a)
            if lo < hi:
                out.append((a + lo - off, a + hi - off))
        return SeedSpans(out)

    def shard(self, index: int, count: int) -> SeedSpans:
        """Shard ``index`` of ``count``: positions ``[index*T//count, (index+1)*T//count)``."""
        return self.take(index * self.total // count, (index + 1) * self.total // count)

    def chunks(self, size: int) -> Iterator[tuple[int, int]]:
        """Contiguous seed ranges ``[a, b)`` of at most ``size`` seeds, in order, never crossing a span."""
        for a, b in self.spans:
            for x in range(a, b, size):
                yield x, min(b, x + size)

    def describe(self) -> str:
        parts = [f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in self.spans[:3]]
        return ",".join(parts) + (f",... ({len(self.spans)} spans)" if len(self.spans) > 3 else "") or "none"


class _Bits:
    """A fixed-size bit set over positions ``[0, n)``: the seeds done (1 bit per seed)."""

    def __init__(self, n: int) -> None:
        self._b = bytearray((n + 7) // 8)
        self.count = 0

    def __contains__(self, i: int) -> bool:
        return bool(self._b[i >> 3] & (1 << (i & 7)))

    def add(self, i: int) -> bool:
        """Set bit ``i``; False when it was set already."""
        mask = 1 << (i & 7)
        if self._b[i >> 3] & mask:
            return False
        self._b[i >> 3] |= mask
        self.count += 1
        return True


def _spans_text(spans: Sequence[tuple[int, int]]) -> str:
    return ",".join(f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in spans)


# ---------------------------------------------------------------------------- files


def _flock(fd: int, exclusive: bool) -> None:
    if sys.platform != "win32":
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_UN)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _file_mode() -> int:
    mask = os.umask(0o022)  # Read the umask (main thread, before any worker starts).
    os.umask(mask)
    return 0o666 & ~mask


def _looks_complete(data: bytes, fmt: str) -> bool:
    """A cheap check that a file holds one whole PNG or JPEG (its signature and its end marker)."""
    if fmt == "png":
        return data.startswith(b"\x89PNG\r\n\x1a\n") and data[-12:-4] == b"\x00\x00\x00\x00IEND"
    return data.startswith(b"\xff\xd8") and data.rstrip(b"\x00").endswith(b"\xff\xd9")


class Manifest:
    """``manifest.jsonl``, appended line by line under an exclusive ``flock``.

    Each line goes out in one ``write`` on an ``O_APPEND`` descriptor while holding the lock, after checking that
    the descriptor still is the file at the path (another process may have compacted the manifest, which replaces
    it): then it reopens. Safe across threads and across processes that share the directory.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the manifest's lock (threads and processes) on the file currently at the path."""
        with self._lock:
            while True:
                fd = self._fd
                _flock(fd, True)
                try:
                    cur = os.stat(self.path)
                    st = os.fstat(fd)
                    current = (cur.st_dev, cur.st_ino) == (st.st_dev, st.st_ino)
                except FileNotFoundError:
                    current = False
                if current:
                    try:
                        yield
                    finally:
                        _flock(self._fd, False)  # reopen_locked() may have replaced the descriptor.
                    return
                _flock(fd, False)
                os.close(fd)
                self._fd = self._open()

    def append_locked(self, line: str) -> None:
        """Append one line; the caller holds :meth:`locked`."""
        _write_all(self._fd, line.encode())

    def append(self, line: str) -> None:
        with self.locked():
            self.append_locked(line)

    def reopen_locked(self) -> None:
        """After this process replaced the file at the path (compaction): write to the new one."""
        old, self._fd = self._fd, self._open()
        _flock(old, False)
        os.close(old)
        _flock(self._fd, True)

    def sync(self) -> None:
        with self._lock:
            self.sync_locked()

    def sync_locked(self) -> None:
        with contextlib.suppress(OSError):
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            os.fsync(self._fd)
            os.close(self._fd)


# ---------------------------------------------------------------------------- job parameters


@dataclass(frozen=True)
class Params:
    """What decides an image's bytes besides its seed; stored in ``job.json`` and on every manifest line."""

    model: str
    format: str
    jpeg_quality: int | None
    psi: float
    cutoff: int | None
    class_index: int | None
    noise_mode: str
    noise_seed: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "format": self.format,
            "jpeg_quality": self.jpeg_quality,
            "psi": self.psi,
            "cutoff": self.cutoff,
            "class": self.class_index,
            "noise_mode": self.noise_mode,
            "noise_seed": self.noise_seed,
        }

    @property
    def suffix(self) -> str:
        return SUFFIXES[self.format]

    def noise(self) -> Noise:
        return Noise(self.noise_mode, self.noise_seed or 0)


def _check_job_file(out: Path, params: Params, has_output: bool) -> tuple[str | None, bool]:
    """Compare ``job.json`` with this command: (an error when the directory belongs to another job, whether
    ``job.json`` is to be written). Without output yet, a different or broken ``job.json`` is simply replaced.
    """
    path = out / JOB_FILE
    want = params.to_json()
    if not path.exists():
        return None, True
    try:
        old = json.loads(path.read_text())["params"]
        if not isinstance(old, dict):
            raise TypeError("params is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        if has_output:
            return f"{path} is not a styleserve batch job file ({exc}); use another --out", False
        return None, True
    if old == want:
        return None, False
    if not has_output:
        return None, True
    diffs = [f"{k} {old.get(k)!r} there, {want.get(k)!r} now" for k in want if old.get(k) != want.get(k)]
    diffs += [f"{k} {old[k]!r} there" for k in old if k not in want]
    problem = (
        f"{out} holds a job with other parameters ({'; '.join(diffs)}); re-run with the same parameters "
        "to resume it, or use another --out"
    )
    return problem, False


def _write_job_file(out: Path, params: Params) -> None:
    doc = {
        "styleserve_batch": JOB_VERSION,
        "params": params.to_json(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_json_atomic(out, doc)


def _write_json_atomic(out: Path, doc: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{JOB_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(doc, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, out / JOB_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _check_encoder(out: Path, params: Params, client: Client) -> str | None:
    """One PNG encoder per job: record the server's in ``job.json`` on the first run, refuse a resume on a server
    whose encoder differs (its pixels would be identical, its bytes not, and a job's files are byte-exact)."""
    if params.format != "png":
        return None
    try:
        encoder = client.get_model(params.model).png_encoder
    except StyleServeRpcError:
        return None  # The streams report an unreachable server or an unknown model as usual.
    if not encoder:
        return None  # An older server that does not say.
    path = out / JOB_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    recorded = doc.get("png_encoder")
    if recorded is None:
        doc["png_encoder"] = encoder
        _write_json_atomic(out, doc)
        return None
    if recorded != encoder:
        return (
            f"{path} was written with PNG encoder {recorded!r}, the server now encodes with {encoder!r}: a resumed job "
            f"would mix encodings; serve with --png-encoder {recorded} to resume it, or use another --out"
        )
    return None


# ---------------------------------------------------------------------------- resume


@dataclass
class ScanResult:
    done: int = 0  # seeds of this run already finished (adopted ones included)
    dropped: int = 0  # manifest lines dropped: torn, unparsable, duplicate, stale
    adopted: int = 0  # files without a manifest line that were kept and given one
    removed: int = 0  # temp files and stale or broken images deleted


def _entry_seed(line: bytes) -> tuple[int, dict[str, Any]] | None:
    """A manifest line -> (seed, entry), or None when it is torn or lacks fields."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    seed, file, sha, size = entry.get("seed"), entry.get("file"), entry.get("sha256"), entry.get("bytes")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= SEED_MAX):
        return None
    if not (isinstance(file, str) and isinstance(sha, str) and _SHA_RE.match(sha)):
        return None
    if not (isinstance(size, int) and not isinstance(size, bool) and size >= 0):
        return None
    return seed, entry


def _image_name(seed: int, suffix: str) -> str:
    return f"seed{seed:08d}{suffix}"


def _manifest_line(seed: int, params: Params, sha: str, size: int) -> str:
    entry = {
        "seed": seed,
        "model": params.model,
        "psi": params.psi,
        "cutoff": params.cutoff,
        "class": params.class_index,
        "noise_mode": params.noise_mode,
        "noise_seed": params.noise_seed,
        "file": f"{IMAGES}/{_image_name(seed, params.suffix)}",
        "sha256": sha,
        "bytes": size,
    }
    return json.dumps(entry, separators=(",", ":")) + "\n"


def _check_entry(seed: int, entry: dict[str, Any], images: Path, params: Params, verify: bool) -> bool:
    """Whether a manifest line's image is in place: the expected name, the recorded size (and sha256)."""
    name = _image_name(seed, params.suffix)
    if entry["file"] != f"{IMAGES}/{name}":
        return False
    path = images / name
    try:
        if path.stat().st_size != entry["bytes"]:
            return False
        return not verify or hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    except OSError:
        return False


def _compact(manifest: Manifest, drop: set[int]) -> None:
    """Rewrite the manifest without the lines numbered in ``drop`` (and unparsable ones), atomically."""
    out = manifest.path.parent
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{MANIFEST}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f, manifest.path.open("rb") as src:
            for i, line in enumerate(src):
                if i not in drop and line.endswith(b"\n") and _entry_seed(line) is not None:
                    f.write(line)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, manifest.path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    manifest.reopen_locked()


_LINE_PARAMS = ("model", "psi", "cutoff", "class", "noise_mode", "noise_seed")


def _check_line_params(entry: dict[str, Any], params: Params, want: dict[str, Any], path: Path, index: int) -> None:
    """A manifest line drawn with other parameters means a mixed directory (job.json lost or replaced): refuse."""
    diffs = [f"{k} {entry[k]!r} there, {want[k]!r} now" for k in _LINE_PARAMS if k in entry and entry[k] != want[k]]
    suffix = Path(str(entry["file"])).suffix
    if suffix and suffix != params.suffix:
        diffs.append(f"{suffix} files there, {params.suffix} now")
    if diffs:
        raise _Fatal(
            f"{path} line {index + 1} was drawn with other parameters ({'; '.join(diffs)}); re-run with the same "
            "parameters to resume that job, or use another --out",
            EXIT_USAGE,
        )


def scan(out: Path, manifest: Manifest, work: SeedSpans, done: _Bits, params: Params, verify: bool) -> ScanResult:
    """Bring the directory into a consistent state for ``work`` and mark its finished seeds in ``done``.

    Holds the manifest's lock throughout, so that shards sharing the directory take turns.
    """
    res = ScanResult()
    images = out / IMAGES
    with manifest.locked():
        for tmp in out.glob(f".{MANIFEST}.*.tmp"):  # A compaction that was killed (we hold the lock now).
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                res.removed += 1
        drop: set[int] = set()
        stale: set[int] = set()
        want = params.to_json()
        with manifest.path.open("rb") as f:
            for i, line in enumerate(f):
                parsed = _entry_seed(line) if line.endswith(b"\n") else None  # No newline: a torn last line.
                if parsed is None:
                    drop.add(i)
                    continue
                seed, entry = parsed
                _check_line_params(entry, params, want, manifest.path, i)
                pos = work.position(seed)
                if pos is None:
                    continue  # Another run's seed: kept as it is.
                if pos not in done and _check_entry(seed, entry, images, params, verify):
                    done.add(pos)
                    continue
                drop.add(i)  # A repeated seed, or a line whose file is missing or wrong.
                if pos not in done:
                    stale.add(seed)
        for seed in stale:  # Files that fit none of their lines are wrong: draw those seeds again.
            pos = work.position(seed)
            if pos is not None and pos not in done:
                with contextlib.suppress(FileNotFoundError):
                    (images / _image_name(seed, params.suffix)).unlink()
                    res.removed += 1
        res.dropped = len(drop)
        if drop:
            _compact(manifest, drop)
        # Files without a line (a crash between rename and append), and leftover temp files.
        with os.scandir(images) as it:
            for ent in it:
                m = _IMAGE_RE.match(ent.name) or _TEMP_RE.match(ent.name)
                if m is None:
                    continue
                seed = int(m.group(1))
                pos = work.position(seed)
                if pos is None or (pos in done and m.re is _IMAGE_RE):
                    continue
                path = images / ent.name
                if m.re is _IMAGE_RE and ent.name == _image_name(seed, params.suffix):
                    data = path.read_bytes()
                    if _looks_complete(data, params.format):
                        manifest.append_locked(
                            _manifest_line(seed, params, hashlib.sha256(data).hexdigest(), len(data))
                        )
                        done.add(pos)
                        res.adopted += 1
                        continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    res.removed += 1
        manifest.sync_locked()
    res.done = done.count
    return res


# ---------------------------------------------------------------------------- the job


@dataclass
class Failure:
    spans: list[tuple[int, int]]
    error: str


@dataclass
class Options:
    target: str
    token: str | None
    tls: bool
    root_certificates: bytes | None
    timeout: float | None
    streams: int
    chunk: int
    retries: int
    retry_backoff: float
    max_failed_chunks: int
    fsync: bool


class _Fatal(Exception):
    """A failure that stops the whole job."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _rpc_message(exc: BaseException) -> str:
    if isinstance(exc, StyleServeRpcError):
        return f"{exc.code.name}: {exc.details}"
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        return f"{getattr(code, 'name', 'UNKNOWN')}: {details}"
    return f"{type(exc).__name__}: {exc}"


def _rpc_code(exc: BaseException) -> grpc.StatusCode | None:
    if isinstance(exc, StyleServeRpcError):
        return exc.code
    code = getattr(exc, "code", None)
    value = code() if callable(code) else None
    return value if isinstance(value, grpc.StatusCode) else None


@dataclass
class Job:
    out: Path
    params: Params
    opts: Options
    work: SeedSpans
    done: _Bits
    manifest: Manifest
    file_mode: int
    stop: threading.Event = field(default_factory=threading.Event)
    written: int = 0
    failed: int = 0
    failures: list[Failure] = field(default_factory=list)
    failed_chunks: int = 0
    fatal: _Fatal | None = None
    gave_up: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _chunks: Iterator[tuple[int, int]] | None = None

    # -------------------------------------------------------------- chunks

    def _pending(self) -> Iterator[tuple[int, int]]:
        for a, b in self.work.chunks(self.opts.chunk):
            if self._first_run(a, b) is not None:
                yield a, b

    def _next_chunk(self) -> tuple[int, int] | None:
        with self._lock:
            if self.stop.is_set():
                return None
            if self._chunks is None:
                self._chunks = self._pending()
            return next(self._chunks, None)

    def _first_run(self, a: int, b: int) -> tuple[int, int] | None:
        """The first run of seeds in ``[a, b)`` (inside one span) not done yet, or None."""
        if a >= b:
            return None
        pos = self.work.position(a)
        assert pos is not None
        s = a
        while s < b and (pos + s - a) in self.done:
            s += 1
        if s == b:
            return None
        e = s + 1
        while e < b and (pos + e - a) not in self.done:
            e += 1
        return s, e

    def _runs(self, a: int, b: int) -> list[tuple[int, int]]:
        runs = []
        while (run := self._first_run(a, b)) is not None:
            runs.append(run)
            a = run[1]
        return runs

    # -------------------------------------------------------------- writing

    def write(self, seed: int, image: GeneratedImage) -> None:
        """One image: temp file, fsync, rename, then its manifest line. Writes each seed at most once."""
        pos = self.work.position(seed)
        if pos is None:
            raise ValueError(f"the server sent seed {seed}, which is not in this job")
        if pos in self.done:
            return
        if image.format != self.params.format:
            raise ValueError(f"the server sent a {image.format} image for seed {seed}, expected {self.params.format}")
        data = image.data
        name = _image_name(seed, self.params.suffix)
        images = self.out / IMAGES
        try:
            fd, tmp = tempfile.mkstemp(dir=images, prefix=f".{name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    if self.opts.fsync:
                        os.fsync(f.fileno())
                os.chmod(tmp, self.file_mode)
                os.replace(tmp, images / name)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self.manifest.append(_manifest_line(seed, self.params, hashlib.sha256(data).hexdigest(), len(data)))
        except OSError as exc:
            raise _Fatal(f"writing {images / name}: {exc}", EXIT_FAILED) from exc
        with self._lock:
            self.done.add(pos)
            self.written += 1

    # -------------------------------------------------------------- streams

    def _client(self) -> Client:
        o = self.opts
        return Client(o.target, token=o.token, tls=o.tls, root_certificates=o.root_certificates, timeout=o.timeout)

    def _stream(self, client: Client, a: int, b: int) -> int:
        """Stream seeds ``[a, b)`` into files; returns how many arrived. Stops early when the job stops."""
        p = self.params
        n = 0
        items = client.stream_generate(
            p.model, range(a, b), class_index=p.class_index, psi=p.psi, cutoff=p.cutoff, noise=p.noise(),
            format=p.format, jpeg_quality=p.jpeg_quality, timeout=self.opts.timeout,
        )  # fmt: skip
        try:
            for item in items:
                seed = item.seed if item.seed is not None else a + item.index
                if not a <= seed < b:
                    raise ValueError(f"the server sent seed {seed} for the range {a}-{b - 1}")
                self.write(seed, item.image)
                n += 1
                if self.stop.is_set():
                    break
        finally:
            close = getattr(items, "close", None)
            if callable(close):
                close()  # Cancels the call when it stopped early.
        return n

    def _backoff(self, attempt: int) -> float:
        base = min(30.0, self.opts.retry_backoff * 2.0 ** min(attempt - 1, 30))
        return base * (0.8 + 0.4 * random.random())

    def _fail(self, a: int, b: int, error: str) -> None:
        runs = self._runs(a, b)
        with self._lock:
            self.failed += sum(e - s for s, e in runs)
            self.failures.append(Failure(runs, error))
            self.failed_chunks += 1
            if self.opts.max_failed_chunks and self.failed_chunks >= self.opts.max_failed_chunks:
                self.gave_up = True
                self.stop.set()

    def _chunk(self, a: int, b: int, client: Client | None) -> Client | None:
        attempt = 0
        while (run := self._first_run(a, b)) is not None and not self.stop.is_set():
            s, e = run
            got = 0
            error: BaseException
            try:
                if client is None:
                    client = self._client()
                got = self._stream(client, s, e)
                if self.stop.is_set() or self._first_run(s, e) is None:
                    continue
                error = ValueError(f"the stream for seeds {s}-{e - 1} ended early")
                retry = True
            except _Fatal:
                raise
            except (StyleServeRpcError, grpc.RpcError) as exc:
                code = _rpc_code(exc)
                if code in CONFIG_CODES:
                    raise _Fatal(_rpc_message(exc), EXIT_USAGE) from exc
                error, retry = exc, code in RETRY_CODES
            except ValueError as exc:  # A response the client cannot use.
                error, retry = exc, True
            if got:
                attempt = 0
            attempt += 1
            if client is not None:
                client.close()
                client = None  # A fresh channel: no reconnect backoff left over from a dead server.
            if not retry or attempt > self.opts.retries:
                self._fail(a, b, _rpc_message(error))
                return client
            self.stop.wait(self._backoff(attempt))
        return client

    def _worker(self) -> None:
        client: Client | None = None
        try:
            while (chunk := self._next_chunk()) is not None:
                client = self._chunk(chunk[0], chunk[1], client)
        except _Fatal as exc:
            self._set_fatal(exc)
        except Exception as exc:  # A bug: stop the job, say what happened.
            self._set_fatal(_Fatal(f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILED))
        finally:
            if client is not None:
                client.close()

    def _set_fatal(self, exc: _Fatal) -> None:
        with self._lock:
            if self.fatal is None:
                self.fatal = exc
        self.stop.set()

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._worker, name=f"batch-stream-{i}", daemon=True)
            for i in range(self.opts.streams)
        ]
        for t in threads:
            t.start()
        return threads


# ---------------------------------------------------------------------------- progress


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--"
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """done/total, rate (images written per second, over the last ~10 s) and ETA on one stderr line."""

    def __init__(self, stream: TextIO, total: int, skipped: int, mode: str) -> None:
        self.stream, self.total, self.skipped, self.mode = stream, total, skipped, mode
        self.t0 = time.monotonic()
        self._samples: list[tuple[float, int]] = [(self.t0, 0)]
        self._last_line = 0.0
        self._width = 0

    def rate(self, written: int) -> float:
        now = time.monotonic()
        self._samples.append((now, written))
        while len(self._samples) > 2 and now - self._samples[1][0] > 10.0:
            self._samples.pop(0)
        t, w = self._samples[0]
        return (written - w) / (now - t) if now > t else 0.0

    def text(self, written: int, failed: int) -> str:
        done = self.skipped + written
        rate = self.rate(written)
        left = self.total - done - failed
        eta = left / rate if rate > 0 else math.inf
        pct = 100.0 * done / self.total if self.total else 100.0
        filled = int(24 * done / self.total) if self.total else 24
        bar = "#" * filled + "." * (24 - filled)
        extra = f" failed {failed}" if failed else ""
        return f"[{bar}] {done}/{self.total} {pct:5.1f}% {rate:7.1f} img/s ETA {_duration(eta)}{extra}"

    def update(self, written: int, failed: int) -> None:
        if self.mode == "tty":
            line = self.text(written, failed)
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
            self.stream.flush()
        elif self.mode == "lines" and time.monotonic() - self._last_line >= 10.0:
            self._last_line = time.monotonic()
            self.stream.write("progress: " + self.text(written, failed) + "\n")
            self.stream.flush()

    def finish(self, written: int, failed: int) -> None:
        if self.mode == "tty":
            self.update(written, failed)
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------- command line


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text!r}")
    return value


def _spans_arg(text: str) -> list[tuple[int, int]]:
    try:
        return parse_spans(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shard_arg(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="styleserve batch",
        description="Draw a seed range into a directory with concurrent streams; re-run the same command to resume.",
        epilog="exit codes: 0 all done, 1 some seeds failed, 2 usage or configuration error, 130 Ctrl-C, 143 SIGTERM",
    )
    add_connection_args(
        p.add_argument_group("connection (may change between runs)"),
        timeout_default=600.0,
        timeout_help="deadline per chunk's stream",
    )

    job = p.add_argument_group("images (recorded in job.json; a resumed job must use the same values)")
    job.add_argument("--model", required=True, help="model name (see 'styleserve models')")
    job.add_argument("--seeds", type=_spans_arg, required=True, help="seeds, e.g. 0-999999 or 0-99,500-599")
    job.add_argument("--psi", type=float, default=None, help="truncation psi (default 1 = none)")
    job.add_argument("--cutoff", type=int_at_least(0), default=None, help="truncate only ws indices below this")
    job.add_argument(
        "--class", dest="class_index", type=int_at_least(0), default=None, help="class (conditional models)"
    )
    job.add_argument("--noise-mode", choices=["const", "none", "random"], default="const", help="default const")
    job.add_argument(
        "--noise-seed", type=int_at_least(0), default=None, help="seed for --noise-mode random (default 0)"
    )
    job.add_argument("--format", choices=["png", "jpeg"], default="png", help="image encoding (default png)")
    job.add_argument("--jpeg-quality", type=int_at_least(1), default=None, help="1..100 with --format jpeg")

    run = p.add_argument_group("running")
    run.add_argument("--out", required=True, metavar="DIR", help="output directory (images/, manifest.jsonl, job.json)")
    run.add_argument("--streams", type=int_at_least(1), default=4, help="concurrent streams (default %(default)s)")
    run.add_argument("--chunk", type=int_at_least(1), default=256, help="seeds per stream call (default %(default)s)")
    run.add_argument(
        "--shard", type=_shard_arg, default=(0, 1), metavar="I/N",
        help="do only the I-th (0-based) of N contiguous blocks of the seeds (default 0/1)",
    )  # fmt: skip
    run.add_argument(
        "--retries", type=int_at_least(0), default=6, help="retries per chunk on transient errors (default %(default)s)"
    )
    run.add_argument(
        "--retry-backoff", type=_seconds, default=0.5, metavar="SECONDS",
        help="first retry's wait, doubling up to 30 s (default %(default)s)",
    )  # fmt: skip
    run.add_argument(
        "--max-failed-chunks", type=int_at_least(0), default=16,
        help="start no new chunks after this many failed, 0 = never give up (default %(default)s)",
    )  # fmt: skip
    run.add_argument(
        "--verify", action="store_true", help="on resume, check every finished file's sha256 (default: its size)"
    )
    run.add_argument(
        "--no-fsync", dest="fsync", action="store_false",
        help="do not fsync each image before its rename (faster; a power loss may then leave damaged files)",
    )  # fmt: skip
    prog = run.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_const", const=True, default=None,
                      help="show progress even when stderr is not a terminal (a line every 10 s)")  # fmt: skip
    prog.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress")
    return p


class _Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals() -> Iterator[None]:
    """SIGTERM raises :class:`_Interrupted` in the main thread (SIGINT already raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise _Interrupted(signum)

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _has_output(out: Path) -> bool:
    manifest = out / MANIFEST
    if manifest.exists() and manifest.stat().st_size > 0:
        return True
    images = out / IMAGES
    if images.is_dir():
        with os.scandir(images) as it:
            return any(_IMAGE_RE.match(e.name) for e in it)
    return False


def _params(args: argparse.Namespace) -> Params:
    psi = 1.0 if args.psi is None else float(args.psi)
    if not math.isfinite(psi):
        raise ValueError(f"--psi must be finite, got {args.psi}")
    noise_seed = (args.noise_seed or 0) if args.noise_mode == "random" else None
    return Params(
        model=args.model, format=args.format, jpeg_quality=args.jpeg_quality, psi=psi, cutoff=args.cutoff,
        class_index=args.class_index, noise_mode=args.noise_mode, noise_seed=noise_seed,
    )  # fmt: skip


def _summary(job: Job, scanned: ScanResult, total: int, elapsed: float, status: str) -> str:
    done = scanned.done + job.written
    rate = job.written / elapsed if elapsed > 0 else 0.0
    missing = total - done - job.failed
    return (
        f"batch {status}: {done}/{total} done ({job.written} written, {scanned.done} skipped), {job.failed} failed, "
        f"{missing} left in {_duration(elapsed)} ({rate:.1f} img/s) -> {job.out}"
    )


def _report_failures(job: Job, err: TextIO) -> None:
    if not job.failures:
        return
    spans = sorted((s, e, f.error) for f in job.failures for s, e in f.spans)
    print(f"failed: {job.failed} seeds in {len(job.failures)} chunks; re-run the same command to retry them", file=err)
    for s, e, error in spans[:FAILED_SHOWN]:
        print(f"  seeds {_spans_text([(s, e)])}: {error}", file=err)
    if len(spans) > FAILED_SHOWN:
        print(f"  ... and {len(spans) - FAILED_SHOWN} more spans", file=err)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``styleserve batch`` (argv after the word ``batch``); returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    err = sys.stderr
    if args.noise_seed is not None and args.noise_mode != "random":
        parser.error("--noise-seed needs --noise-mode random")
    if args.jpeg_quality is not None and (args.format != "jpeg" or args.jpeg_quality > 100):
        parser.error("--jpeg-quality takes 1..100 and needs --format jpeg")
    try:
        params = _params(args)
        root = Path(args.ca_cert).read_bytes() if args.ca_cert else None
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    token = resolve_token(args.token, err=err)
    opts = Options(
        target=args.target, token=token, tls=args.tls or root is not None, root_certificates=root,
        timeout=args.timeout, streams=args.streams, chunk=args.chunk, retries=args.retries,
        retry_backoff=args.retry_backoff, max_failed_chunks=args.max_failed_chunks, fsync=args.fsync,
    )  # fmt: skip
    if opts.token is not None and (not opts.token or any(ch.isspace() for ch in opts.token)):
        print("error: --token must be non-empty and contain no whitespace", file=err)
        return EXIT_USAGE
    shard_i, shard_n = args.shard
    work = SeedSpans(args.seeds).shard(shard_i, shard_n)
    out = Path(args.out)
    with _signals():
        try:
            return _run(out, params, opts, work, args, err)
        except (KeyboardInterrupt, _Interrupted) as exc:  # Before or after the streams ran: nothing half-written.
            print(f"interrupted ({'SIGINT' if isinstance(exc, KeyboardInterrupt) else exc})", file=err)
            return EXIT_SIGTERM if isinstance(exc, _Interrupted) else EXIT_SIGINT


def _run(out: Path, params: Params, opts: Options, work: SeedSpans, args: argparse.Namespace, err: TextIO) -> int:
    file_mode = _file_mode()
    try:
        (out / IMAGES).mkdir(parents=True, exist_ok=True)
        problem, write_job = _check_job_file(out, params, _has_output(out))
        if problem is not None:
            print(f"error: {problem}", file=err)
            return EXIT_USAGE
        manifest = Manifest(out / MANIFEST)
    except OSError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    try:
        done = _Bits(work.total)
        try:
            scanned = scan(out, manifest, work, done, params, args.verify)
        except OSError as exc:
            print(f"error: reading {out}: {exc}", file=err)
            return EXIT_FAILED
        except _Fatal as exc:
            print(f"error: {exc}", file=err)
            return exc.code
        if write_job:  # Only now: the manifest agrees with these parameters.
            try:
                _write_job_file(out, params)
            except OSError as exc:
                print(f"error: {exc}", file=err)
                return EXIT_FAILED
        job = Job(out, params, opts, work, done, manifest, file_mode)
        shard = f" (shard {args.shard[0]}/{args.shard[1]}: {work.describe()})" if args.shard[1] > 1 else ""
        notes = [f"{scanned.done} done"]
        notes += [f"{scanned.adopted} adopted"] if scanned.adopted else []
        notes += [f"{scanned.dropped} manifest lines dropped"] if scanned.dropped else []
        notes += [f"{scanned.removed} files removed"] if scanned.removed else []
        print(
            f"batch: {params.model}, {work.total} seeds{shard}, {', '.join(notes)}, "
            f"{work.total - scanned.done} to go; {opts.streams} streams x {opts.chunk} seeds -> {out}",
            file=err,
        )
        t0 = time.monotonic()
        if scanned.done == work.total:
            print(_summary(job, scanned, work.total, 0.0, "complete"), flush=True)
            return EXIT_OK
        try:
            client = job._client()  # Checks the target and TLS options before any stream starts.
        except ValueError as exc:
            print(f"error: {exc}", file=err)
            return EXIT_USAGE
        with client:
            problem = _check_encoder(out, params, client)
        if problem is not None:
            print(f"error: {problem}", file=err)
            return EXIT_USAGE
        mode = "off"
        if args.progress is None:
            mode = "tty" if err.isatty() else "off"
        elif args.progress:
            mode = "tty" if err.isatty() else "lines"
        progress = Progress(err, work.total, scanned.done, mode)
        threads = job.start()
        interrupted: BaseException | None = None
        last_sync = time.monotonic()
        try:
            while any(t.is_alive() for t in threads):
                time.sleep(0.1)
                progress.update(job.written, job.failed)
                if time.monotonic() - last_sync >= 1.0:
                    last_sync = time.monotonic()
                    manifest.sync()
        except (KeyboardInterrupt, _Interrupted) as exc:
            interrupted = exc
            job.stop.set()
            if mode == "tty":
                err.write("\n")
            print("interrupted: finishing the writes in flight (Ctrl-C again to quit at once)", file=err, flush=True)
            try:
                while any(t.is_alive() for t in threads):
                    time.sleep(0.05)
            except (KeyboardInterrupt, _Interrupted):
                print("quit; the next run resumes", file=err)
                return EXIT_SIGTERM if isinstance(exc, _Interrupted) else EXIT_SIGINT
        progress.finish(job.written, job.failed)
        elapsed = time.monotonic() - t0
        complete = scanned.done + job.written == work.total
        if job.fatal is not None:
            print(f"error: {job.fatal}", file=err)
        _report_failures(job, err)
        if job.gave_up:
            print(f"gave up after {job.failed_chunks} failed chunks (--max-failed-chunks)", file=err)
        if complete:
            status = "complete"
        elif interrupted is not None:
            status = "interrupted"
        elif job.fatal is not None:
            status = "stopped"
        else:
            status = "incomplete"
        print(_summary(job, scanned, work.total, elapsed, status), flush=True)
        if complete:
            return EXIT_OK
        if interrupted is not None:
            return EXIT_SIGTERM if isinstance(interrupted, _Interrupted) else EXIT_SIGINT
        if job.fatal is not None:
            return job.fatal.code
        return EXIT_FAILED
    finally:
        manifest.close()


if __name__ == "__main__":
    sys.exit(main())
