"""Each side imports with the other sides' heavy packages absent (blocked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest

BLOCK = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # makes 'import name' raise ImportError
{code}
for name in {blocked!r}:
    assert sys.modules.get(name) is None, name + ' was imported'
print('ok')
"""


@pytest.mark.parametrize(
    ("code", "blocked"),
    [
        (
            "import styleserve, styleserve.latent, styleserve.manifest, styleserve.grid",
            ["torch", "onnxruntime", "grpc", "onnx"],
        ),
        (
            "import styleserve.server, styleserve.server.runtime, styleserve.server.render, styleserve.server.app, "
            "styleserve.server.service, styleserve.server.engine",
            ["torch", "onnx"],
        ),
        (
            "import styleserve.clients, styleserve.clients.cli, styleserve.cli; "
            "styleserve.clients.Client('127.0.0.1:1').close()",
            ["torch", "onnxruntime", "onnx", "prometheus_client"],
        ),
        (
            "import styleserve.export.networks, styleserve.export.onnx_export, styleserve.export.cli, "
            "styleserve.export.checkpoints",
            ["grpc", "prometheus_client"],
        ),
    ],
)
def test_side_imports_without_the_others(code: str, blocked: list[str]) -> None:
    r = subprocess.run([sys.executable, "-c", BLOCK.format(blocked=blocked, code=code)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
