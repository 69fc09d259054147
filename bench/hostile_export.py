"""Peak RSS and time of ``styleserve-export`` refusing each hostile checkpoint class.

    .venv/bin/python bench/hostile_export.py [--out /tmp/hostile]

Builds every class of tests/export/hostile_files.py (full size), runs the exporter on each in a child
process (``python -m styleserve.export.cli FILE OUT``), and prints a markdown table: file size, peak RSS of
the child (``ru_maxrss`` of its own ``os.wait4`` rusage), wall time (including the ~3-8 s import of torch and
onnx, shown by the baseline row), exit code and the one-line message. The stated bound (docs/SECURITY.md):
peak RSS <= 4 x file size + 300 MB over the baseline, time <= 10 s over the baseline, exit 1, one line.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "export"))
import hostile_files as hf


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="where to build the files (default: a temp dir)")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="hostile_"))
    root.mkdir(parents=True, exist_ok=True)
    print("| class | file size | peak RSS | time | exit | message |")
    print("|---|---:|---:|---:|---:|---|")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import styleserve.export.onnx_export, styleserve.export.checkpoints"]
    )
    _, status, ru = os.wait4(proc.pid, 0)
    print(
        f"| (baseline: interpreter + imports) | - | {ru.ru_maxrss / 1024:.0f} MiB | {time.perf_counter() - t0:.2f} s "
        f"| {os.waitstatus_to_exitcode(status)} | |"
    )
    for name, build in hf.CLASSES.items():
        path = build(root)
        pid_out = root / f"out_{abs(hash(name))}"
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "styleserve.export.cli", str(path), str(pid_out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        code = os.waitstatus_to_exitcode(status)
        lines = err.strip().splitlines()
        msg = lines[-1] if lines else ""
        msg = msg.replace("styleserve-export: error: ", "")
        one = "" if len(lines) == 1 and "Traceback" not in err else f" ({len(lines)} lines!)"
        print(
            f"| {name} | {_size(path) / 2**20:.2f} MiB | {ru.ru_maxrss / 1024:.0f} MiB | {wall:.2f} s | "
            f"{code} | {msg[:110].replace('|', '/')}{one} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
