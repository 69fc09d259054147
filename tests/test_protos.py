"""The API in protos/ compiles with protoc and declares every RPC issue 3 needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTO = "styleserve/v1/styleserve.proto"


def test_proto_compiles_and_has_the_rpcs(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    r = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"--python_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", PROTO],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
        "from styleserve.v1 import styleserve_pb2 as pb; "
        "print(' '.join(m.name for m in pb.DESCRIPTOR.services_by_name['StyleServe'].methods))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) == {
        "ListModels", "GetModel", "Map", "Synthesize", "Generate", "StyleMixGrid",
        "PutW", "GetW", "DeleteW", "StreamGenerate",
    }  # fmt: skip


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    """src/styleserve/v1 is generated (scripts/gen_protos.sh); it must not drift from protos/."""
    pytest.importorskip("grpc_tools")
    r = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", PROTO],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    committed = ROOT / "src" / "styleserve" / "v1"
    for name in ("styleserve_pb2.py", "styleserve_pb2.pyi", "styleserve_pb2_grpc.py"):
        fresh = (tmp_path / "styleserve" / "v1" / name).read_text()
        assert (committed / name).read_text() == fresh, f"{name} is stale: run scripts/gen_protos.sh"
