"""Hostile model directories: each is a copy of a real export, tampered with one way.

Every one must stop the start with exit 2 and one line naming the model directory and the field,
never a traceback; in-process, the loader (and the warm-up) raise ManifestError. The e2e cases
run real ``styleserve serve`` processes.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness import ServerProcess
from styleserve.server.config import ServerConfig
from styleserve.server.repository import load_repository

from styleserve.errors import ManifestError
from styleserve.manifest import MANIFEST_NAME, ModelManifest, sha256_file

Tamper = Callable[[Path, Path], None]  # (model dir inside the repository, the pristine export) -> None


def edit(model_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = model_dir / MANIFEST_NAME
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


def rehash(model_dir: Path, *names: str) -> None:
    """Record the current sha256 of ``names`` (a tampering that also rewrites model.json's hashes)."""

    def change(d: dict[str, Any]) -> None:
        d["source"]["files_sha256"].update({n: sha256_file(model_dir / n) for n in names})

    edit(model_dir, change)


def flip_middle(path: Path, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n] = bytes(b ^ 0xFF for b in data[mid : mid + n])
    path.write_bytes(bytes(data))


def hostile_synthesis(model_dir: Path, kind: str) -> None:
    """Replace synthesis.onnx by a graph with the promised inputs/outputs that fails or asks for terabytes."""
    import onnx
    from onnx import TensorProto, helper

    m = ModelManifest.load(model_dir)
    r, ch = m.img_resolution, m.img_channels
    inputs = [helper.make_tensor_value_info("ws", TensorProto.FLOAT, ["N", m.num_ws, m.w_dim])]
    inputs += [
        helper.make_tensor_value_info(n.name, TensorProto.FLOAT, ["B", 1, n.resolution, n.resolution])
        for n in m.noise_inputs
    ]
    outputs = [
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", ch, r, r]),
        helper.make_tensor_value_info("image_uint8", TensorProto.UINT8, ["N", r, r, ch]),
    ]
    if kind == "fails":  # ws [N, num_ws, w_dim] cannot be reshaped to [-1, C, R, R]: fails at run time
        shape = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, ch, r, r])
        nodes = [helper.make_node("Reshape", ["ws", "shape"], ["image"])]
    else:  # an image batch of 2**30: 12 TiB of float32
        shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1 << 30, ch, r, r])
        nodes = [helper.make_node("ConstantOfShape", ["shape"], ["image"])]
    nodes += [
        helper.make_node("Transpose", ["image"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Cast", ["nhwc"], ["image_uint8"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, initializer=[shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model_dir / "synthesis.onnx")
    rehash(model_dir, "synthesis.onnx")


def npz_bomb(model_dir: Path) -> None:
    """A deflated member declaring 16 MiB of zeros where a small plane belongs (a 1 GiB one took 13 s to load)."""
    m = ModelManifest.load(model_dir)
    with np.load(model_dir / "noise_const.npz") as npz:
        planes = {k: npz[k] for k in npz.files}
    path = model_dir / "noise_const.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i, n in enumerate(m.noise_inputs):
            with zf.open(f"{n.name}.npy", "w", force_zip64=True) as f:
                if i == 0:
                    np.lib.format.write_array_header_1_0(
                        f, {"descr": "<f4", "fortran_order": False, "shape": (2048, 2048)}
                    )
                    for _ in range(16):
                        f.write(bytes(1 << 20))
                else:
                    np.lib.format.write_array(f, planes[n.name])
    rehash(model_dir, "noise_const.npz")


def outside(tmp: Path, export: Path, name: str) -> Path:
    """A copy of one of the export's files outside the repository (a file the server must never open)."""
    target = tmp / "elsewhere" / name
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(export / name, target)
    return target


def _set(path: str, value: Any) -> Callable[[Path, Path], None]:
    def tamper(d_: Path, _: Path) -> None:
        def change(d: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            node: Any = d
            for p in parents:
                node = node[int(p)] if p.isdigit() else node[p]
            node[int(last) if last.isdigit() else last] = value

        edit(d_, change)

    return tamper


def _num_ws_7(d_: Path, _: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["num_ws"] = 7
        d["ws_layers"] = d["ws_layers"][:7]

    edit(d_, change)


def _w_dim_31(d_: Path, _: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["w_dim"] = 31
        d["w_avg"] = d["w_avg"][:31]

    edit(d_, change)


def _noise_res(d_: Path, _: Path) -> None:
    edit(d_, lambda d: d["noise_inputs"][1].update(resolution=16))


def _abs_mapping(d_: Path, export: Path) -> None:
    target = outside(d_.parent.parent, export, "mapping.onnx")
    edit(d_, lambda d: d["mapping"].update(file=str(target)))


def _dotdot_synthesis(d_: Path, export: Path) -> None:
    outside(d_.parent.parent, export, "synthesis.onnx")
    edit(d_, lambda d: d["synthesis"].update(file="../../elsewhere/synthesis.onnx"))


def _symlinked_onnx(d_: Path, export: Path) -> None:
    (d_ / "synthesis.onnx").unlink()
    (d_ / "synthesis.onnx").symlink_to(outside(d_.parent.parent, export, "synthesis.onnx"))


def _symlinked_npz(d_: Path, export: Path) -> None:
    (d_ / "noise_const.npz").unlink()
    (d_ / "noise_const.npz").symlink_to(outside(d_.parent.parent, export, "noise_const.npz"))


def _symlinked_manifest(d_: Path, export: Path) -> None:
    (d_ / MANIFEST_NAME).unlink()
    (d_ / MANIFEST_NAME).symlink_to(outside(d_.parent.parent, export, MANIFEST_NAME))


def _symlinked_dir(d_: Path, export: Path) -> None:
    shutil.rmtree(d_)
    d_.symlink_to(export, target_is_directory=True)


def _fifo_onnx(d_: Path, _: Path) -> None:
    (d_ / "mapping.onnx").unlink()
    os.mkfifo(d_ / "mapping.onnx")  # opening it would block the start for ever


def _deep_json(d_: Path, _: Path) -> None:
    text = (d_ / MANIFEST_NAME).read_text()
    (d_ / MANIFEST_NAME).write_text(text[:-1].rstrip().rstrip("}") + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}")


def _huge_json(d_: Path, _: Path) -> None:
    edit(d_, lambda d: d["source"].update(notes="x" * (2 << 20)))


def _flipped(d_: Path, _: Path) -> None:
    flip_middle(d_ / "synthesis.onnx")


def _sparse_graph(d_: Path, _: Path) -> None:
    os.truncate(d_ / "synthesis.onnx", 3 << 30)  # sparse: 3 GiB that hashing would have to read


def _no_hash(d_: Path, _: Path) -> None:
    edit(d_, lambda d: d["source"]["files_sha256"].pop("mapping.onnx"))


# id -> (tamper, what the one error line must name besides the model directory)
CASES: dict[str, tuple[Tamper, str]] = {
    "absolute-mapping-file": (_abs_mapping, "mapping.file: "),
    "dotdot-synthesis-file": (_dotdot_synthesis, "synthesis.file: "),
    "symlinked-onnx": (_symlinked_onnx, "synthesis.file: "),
    "symlinked-npz": (_symlinked_npz, "noise_const_file: "),
    "symlinked-manifest": (_symlinked_manifest, "model.json: "),
    "symlinked-model-dir": (_symlinked_dir, "not a directory inside the repository"),
    "fifo-onnx": (_fifo_onnx, "mapping.file: "),
    "flipped-bytes": (_flipped, "synthesis.file: "),
    "missing-hash": (_no_hash, "source.files_sha256: "),
    "sparse-3GiB-graph": (_sparse_graph, "synthesis.file: synthesis.onnx holds 3221225472 bytes"),
    "w_avg-strings": (_set("w_avg.0", "0.5"), "w_avg[0]: "),
    "truncation-5": (_set("truncation", 5), "truncation: "),
    "num_ws-disagrees": (_num_ws_7, "num_ws: "),
    "w_dim-disagrees": (_w_dim_31, "w_dim: "),
    "noise-res-disagrees": (_noise_res, "noise_inputs[1].resolution: "),
    "empty-name": (_set("name", ""), "name: "),
    "deep-json": (_deep_json, "nested too deep"),
    "huge-json": (_huge_json, "refused before parsing"),
    "npz-bomb": (lambda d_, _: npz_bomb(d_), "noise_const_file: "),
    "graph-fails-at-warmup": (lambda d_, _: hostile_synthesis(d_, "fails"), "synthesis.file: warm-up"),
}
E2E = [
    "absolute-mapping-file",
    "symlinked-model-dir",
    "flipped-bytes",
    "deep-json",
    "npz-bomb",
    "graph-fails-at-warmup",
]


def hostile_repo(tmp_path: Path, export: Path, case: str) -> tuple[Path, Path]:
    root = tmp_path / "repo"
    model = root / "victim"
    shutil.copytree(export, model)
    CASES[case][0](model, export)
    return root, model


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_model_dir_is_a_manifest_error(case: str, tmp_path: Path, tiny_cond_model: Path) -> None:
    root, model = hostile_repo(tmp_path, tiny_cond_model, case)
    with pytest.raises(ManifestError) as e:
        for rt in load_repository(ServerConfig(root, intra_op_threads=1)).values():
            rt.warmup((1, 2))
    msg = str(e.value)
    assert "\n" not in msg and str(model) in msg and CASES[case][1] in msg, msg


def run_serve(repo: Path, *args: str, limit_as: int | None = None) -> subprocess.CompletedProcess[str]:
    def cap() -> None:
        if limit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    cmd = [sys.executable, "-m", "styleserve.cli", "serve", str(repo), "--port", "0", "--intra-op-threads", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=cap)


def assert_refused(r: subprocess.CompletedProcess[str], model: Path, field: str) -> None:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "[E:onnxruntime" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and str(model) in errors[0] and field in errors[0], r.stderr


@pytest.mark.parametrize("case", E2E)
def test_serve_refuses_hostile_model_dir(case: str, tmp_path: Path, tiny_cond_model: Path) -> None:
    root, model = hostile_repo(tmp_path, tiny_cond_model, case)
    assert_refused(run_serve(root), model, CASES[case][1])


def test_graph_asking_for_terabytes_at_warmup_is_refused(tmp_path: Path, tiny_cond_model: Path) -> None:
    """Run under an 8 GiB address-space limit, so the test itself can never take the machine's memory."""
    root = tmp_path / "repo"
    model = root / "victim"
    shutil.copytree(tiny_cond_model, model)
    hostile_synthesis(model, "huge")
    assert_refused(run_serve(root, limit_as=8 << 30), model, "synthesis.file: ")


def test_flipped_bytes_serve_only_without_verification(
    tmp_path: Path, tiny_cond_model: Path, start_server: Callable[..., ServerProcess]
) -> None:
    root, _ = hostile_repo(tmp_path, tiny_cond_model, "flipped-bytes")
    assert "sha256" in run_serve(root).stderr
    s = start_server(root, "--verify-files", "false")
    from styleserve.v1 import styleserve_pb2 as pb

    assert [m.name for m in s.stub().ListModels(pb.ListModelsRequest()).models] == ["tiny-cond"]


def test_model_dir_symlink_inside_the_repository_is_served(tmp_path: Path, tiny_cond_model: Path) -> None:
    """The documented rule: a model directory linking inside the repository, or a file linking inside its model
    directory, is fine."""
    root = tmp_path / "repo"
    shutil.copytree(tiny_cond_model, root / ".store" / "tiny")
    (root / "tiny").symlink_to(root / ".store" / "tiny", target_is_directory=True)
    (root / ".store" / "tiny" / "graphs").mkdir()
    (root / ".store" / "tiny" / "synthesis.onnx").rename(root / ".store" / "tiny" / "graphs" / "synthesis.onnx")
    (root / ".store" / "tiny" / "synthesis.onnx").symlink_to(Path("graphs") / "synthesis.onnx")
    models = load_repository(ServerConfig(root, intra_op_threads=1))
    assert list(models) == ["tiny-cond"] and models["tiny-cond"].dir == root / "tiny"


def test_older_model_dir_without_a_noise_hash_loads_with_a_warning(
    tmp_path: Path, tiny_cond_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = tmp_path / "old"
    shutil.copytree(tiny_cond_model, model)
    edit(model, lambda d: d["source"]["files_sha256"].pop("noise_const.npz"))
    load_repository(ServerConfig(model, intra_op_threads=1))
    assert "no sha256 for noise_const.npz" in caplog.text


@pytest.mark.parametrize("case", ["symlinked-onnx", "flipped-bytes", "graph-fails-at-warmup"])
def test_render_goes_through_the_same_checks(case: str, tmp_path: Path, tiny_cond_model: Path) -> None:
    _, model = hostile_repo(tmp_path, tiny_cond_model, case)
    cmd = [sys.executable, "-m", "styleserve.server.render", str(model), str(tmp_path / "out"), "--class", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert str(model) in r.stderr and CASES[case][1] in r.stderr and not (tmp_path / "out").exists(), r.stderr
