"""The KServe Open Inference Protocol (``inference.GRPCInferenceService``) on the server's port, through the real
``tritonclient[grpc]`` against a real server process: the same images as ``Generate``, the same w as ``Map``.

Requests tritonclient's API cannot make (typed ``contents``, wrong byte lengths, garbage bodies) go through the
generated stubs tritonclient ships (``tritonclient.grpc.service_pb2``: Triton's superset of the OIP messages,
same package, names and numbers) over a plain channel.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tc = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2 as tpb  # noqa: E402
from tritonclient.grpc import service_pb2_grpc as tpb_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from styleserve.latent import z_from_seed  # noqa: E402
from styleserve.v1 import styleserve_pb2 as pb  # noqa: E402
from styleserve.wire import tensor_from_proto  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
COND, UNCOND = "tiny-cond", "tiny-uncond"
SEEDS = [0, 7, 123, 2**32 - 1]


@pytest.fixture(scope="module")
def client(server: Any) -> Iterator[Any]:
    c = tc.InferenceServerClient(server.target)
    yield c
    c.close()


@pytest.fixture(scope="module")
def raw_stub(server: Any) -> Any:
    return tpb_grpc.GRPCInferenceServiceStub(server.channel())


@pytest.fixture(scope="module")
def infos(server: Any) -> dict[str, pb.ModelInfo]:
    return {m.name: m for m in server.stub().ListModels(pb.ListModelsRequest()).models}


def infer_input(name: str, arr: np.ndarray, datatype: str) -> Any:
    i = tc.InferInput(name, list(arr.shape), datatype)
    i.set_data_from_numpy(arr)
    return i


def code_of(exc: InferenceServerException) -> str:
    return str(exc.status())


def generate_raw(server: Any, model: str, seeds: list[int], psi: float, cls: int | None) -> list[pb.Image]:
    req = pb.GenerateRequest(model=model, seeds=seeds, truncation=pb.Truncation(psi=psi))
    req.output.format = pb.IMAGE_FORMAT_RAW_UINT8
    req.output.return_ws = True
    if cls is not None:
        req.class_index = cls
    return list(server.stub().Generate(req).images)


# ------------------------------------------------------------------------------------ health and metadata


def test_live_ready_and_server_metadata(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    for name in (COND, f"{COND}.mapping", f"{COND}.synthesis", UNCOND, f"{UNCOND}.mapping", f"{UNCOND}.synthesis"):
        assert client.is_model_ready(name), name
        assert client.is_model_ready(name, "1"), name
    assert not client.is_model_ready("nope")
    assert not client.is_model_ready(COND, "2")
    meta = client.get_server_metadata()
    assert meta.name == "styleserve" and meta.version


def test_model_metadata_names_dtypes_and_shapes(client: Any, infos: dict[str, pb.ModelInfo]) -> None:
    for name, info in infos.items():
        r, ch = info.img_resolution, info.img_channels

        def tensors(meta: Any, which: str) -> dict[str, tuple[str, list[int]]]:
            return {t.name: (t.datatype, list(t.shape)) for t in getattr(meta, which)}

        gen = client.get_model_metadata(name)
        assert list(gen.versions) == ["1"]
        want_in = {"seed": ("INT64", [-1]), "psi": ("FP32", [-1])}
        if info.num_classes:
            want_in["class_idx"] = ("INT64", [-1])
        assert tensors(gen, "inputs") == want_in
        assert tensors(gen, "outputs") == {"image": ("UINT8", [-1, r, r, ch])}
        mapping = client.get_model_metadata(f"{name}.mapping")
        want_map = {"z": ("FP32", [-1, info.z_dim])}
        if info.num_classes:
            want_map["c"] = ("FP32", [-1, info.num_classes])
        assert tensors(mapping, "inputs") == want_map
        assert tensors(mapping, "outputs") == {"w": ("FP32", [-1, info.w_dim])}
        synth = client.get_model_metadata(f"{name}.synthesis")
        assert tensors(synth, "inputs") == {"ws": ("FP32", [-1, info.num_ws, info.w_dim])}
        assert tensors(synth, "outputs") == {
            "image": ("UINT8", [-1, r, r, ch]),
            "image_float": ("FP32", [-1, ch, r, r]),
        }
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("nope.mapping")
    assert code_of(e.value) == "StatusCode.NOT_FOUND"


# ---------------------------------------------------------------------------------------------- inference


@pytest.mark.parametrize("model, cls, psi", [(COND, 3, 0.7), (UNCOND, None, 1.0), (UNCOND, None, -0.5)])
def test_generator_images_equal_generate(client: Any, server: Any, model: str, cls: int | None, psi: float) -> None:
    seeds = np.array(SEEDS, np.int64)
    inputs = [infer_input("seed", seeds[:, None], "INT64"), infer_input("psi", np.array([psi], np.float32), "FP32")]
    if cls is not None:
        inputs.append(infer_input("class_idx", np.array([cls], np.int64), "INT64"))
    res = client.infer(model, inputs, request_id="r-1")
    images = res.as_numpy("image")
    assert res.get_response().id == "r-1"
    domain = generate_raw(server, model, SEEDS, psi, cls)
    assert images.dtype == np.uint8 and images.shape == (
        len(SEEDS),
        domain[0].height,
        domain[0].width,
        domain[0].channels,
    )
    for i, img in enumerate(domain):
        assert images[i].tobytes() == img.data, f"seed {SEEDS[i]}"
    assert len({im.tobytes() for im in images}) == len(SEEDS)  # Distinct seeds, distinct images.


def test_generator_typed_contents_and_per_row_psi(raw_stub: Any, server: Any) -> None:
    """Typed contents (int64_contents / fp32_contents), psi and class one per row: each row equals Generate's."""
    req = tpb.ModelInferRequest(model_name=COND)
    req.inputs.add(name="seed", datatype="INT64", shape=[2]).contents.int64_contents.extend([5, 6])
    req.inputs.add(name="psi", datatype="FP32", shape=[2, 1]).contents.fp32_contents.extend([0.5, 1.0])
    req.inputs.add(name="class_idx", datatype="INT64", shape=[2]).contents.int64_contents.extend([1, 9])
    resp = raw_stub.ModelInfer(req)
    (out,) = resp.outputs
    assert out.name == "image" and out.datatype == "UINT8"
    images = np.frombuffer(resp.raw_output_contents[0], np.uint8).reshape(out.shape)
    for i, (seed, psi, cls) in enumerate([(5, 0.5, 1), (6, 1.0, 9)]):
        (img,) = generate_raw(server, COND, [seed], psi, cls)
        assert images[i].tobytes() == img.data


@pytest.mark.parametrize("model, cls", [(COND, 4), (UNCOND, None)])
def test_mapping_w_equals_map(client: Any, raw_stub: Any, server: Any, infos: dict[str, pb.ModelInfo],
                              model: str, cls: int | None) -> None:  # fmt: skip
    info = infos[model]
    z = np.stack([z_from_seed(s, info.z_dim) for s in SEEDS])
    inputs = [infer_input("z", z, "FP32")]
    if cls is not None:
        inputs.append(infer_input("c", np.eye(info.num_classes, dtype=np.float32)[[cls] * len(SEEDS)], "FP32"))
    w = client.infer(f"{model}.mapping", inputs).as_numpy("w")
    latents = [pb.Latent(seed=s, class_index=cls) if cls is not None else pb.Latent(seed=s) for s in SEEDS]
    mapped = server.stub().Map(pb.MapRequest(model=model, latents=latents, return_w=True))
    want = np.stack([tensor_from_proto(r.w) for r in mapped.results])
    assert w.dtype == np.float32 and w.shape == (len(SEEDS), info.w_dim)
    np.testing.assert_array_equal(w, want)
    # Typed contents: the same w.
    req = tpb.ModelInferRequest(model_name=f"{model}.mapping")
    req.inputs.add(name="z", datatype="FP32", shape=z.shape).contents.fp32_contents.extend(z.ravel().tolist())
    if cls is not None:
        c = np.eye(info.num_classes, dtype=np.float32)[[cls] * len(SEEDS)]
        req.inputs.add(name="c", datatype="FP32", shape=c.shape).contents.fp32_contents.extend(c.ravel().tolist())
    resp = raw_stub.ModelInfer(req)
    np.testing.assert_array_equal(np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(w.shape), want)


def test_synthesis_of_generate_ws_equals_its_images(client: Any, raw_stub: Any, server: Any) -> None:
    domain = generate_raw(server, COND, SEEDS[:3], 0.8, 2)
    ws = np.stack([tensor_from_proto(img.ws) for img in domain])  # [N, num_ws, w_dim]
    res = client.infer(f"{COND}.synthesis", [infer_input("ws", ws, "FP32")])
    images, floats = res.as_numpy("image"), res.as_numpy("image_float")
    for i, img in enumerate(domain):
        assert images[i].tobytes() == img.data
    n, h, w, c = images.shape
    assert floats.dtype == np.float32 and floats.shape == (n, c, h, w)
    # Only what is asked for; typed contents.
    only = client.infer(f"{COND}.synthesis", [infer_input("ws", ws, "FP32")],
                        outputs=[tc.InferRequestedOutput("image_float")])  # fmt: skip
    assert [o.name for o in only.get_response().outputs] == ["image_float"]
    np.testing.assert_array_equal(only.as_numpy("image_float"), floats)
    req = tpb.ModelInferRequest(
        model_name=f"{COND}.synthesis", outputs=[tpb.ModelInferRequest.InferRequestedOutputTensor(name="image")]
    )
    req.inputs.add(name="ws", datatype="FP32", shape=ws.shape).contents.fp32_contents.extend(ws.ravel().tolist())
    resp = raw_stub.ModelInfer(req)
    assert resp.raw_output_contents[0] == images.tobytes()


def test_noise_parameters(client: Any, server: Any) -> None:
    """``noise_mode`` / ``noise_seed`` request parameters draw what Generate's NoiseControl draws."""
    req = pb.GenerateRequest(model=UNCOND, seeds=[3], noise=pb.NoiseControl(mode="random", noise_seed=11))
    req.output.format = pb.IMAGE_FORMAT_RAW_UINT8
    (want,) = server.stub().Generate(req).images
    res = client.infer(UNCOND, [infer_input("seed", np.array([3], np.int64), "INT64")],
                       parameters={"noise_mode": "random", "noise_seed": 11})  # fmt: skip
    assert res.as_numpy("image")[0].tobytes() == want.data


# ------------------------------------------------------------------------------------------------- errors


def raw_infer(stub: Any, model: str, inputs: list[tuple[str, str, list[int]]], raw: list[bytes]) -> grpc.RpcError:
    req = tpb.ModelInferRequest(model_name=model, raw_input_contents=raw)
    for name, dt, shape in inputs:
        req.inputs.add(name=name, datatype=dt, shape=shape)
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req)
    return e.value


@pytest.mark.parametrize(
    "model, inputs, raw, code, words",
    [
        ("nope", [("seed", "INT64", [1])], [b"\0" * 8], "NOT_FOUND", "unknown model"),
        (COND + ".mapping.x", [], [], "NOT_FOUND", "unknown model"),
        (UNCOND, [("seed", "INT64", [2])], [b"\0" * 15], "INVALID_ARGUMENT", "seed: raw_input_contents[0] holds 15"),
        (UNCOND, [("seed", "INT64", [2, 2])], [b"\0" * 32], "INVALID_ARGUMENT", "seed.shape"),
        (UNCOND, [("seed", "INT64", [2, 1, 1, 1, 1])], [b"\0" * 16], "INVALID_ARGUMENT", "seed.shape"),
        (UNCOND, [("seed", "INT32", [2])], [b"\0" * 8], "INVALID_ARGUMENT", "seed.datatype"),
        (UNCOND, [("seed", "INT64", [65])], [b"\0" * 520], "INVALID_ARGUMENT", "seed.shape: N must be in 1..64"),
        (UNCOND, [("seed", "INT64", [0])], [b""], "INVALID_ARGUMENT", "seed.shape"),
        (UNCOND, [("seeds", "INT64", [1])], [b"\0" * 8], "INVALID_ARGUMENT", "unknown input 'seeds'"),
        (UNCOND, [("psi", "FP32", [1])], [b"\0" * 4], "INVALID_ARGUMENT", "needs input(s) ['seed']"),
        (COND, [("seed", "INT64", [1])], [b"\0" * 8], "INVALID_ARGUMENT", "needs input(s) ['class_idx']"),
        (UNCOND, [("seed", "INT64", [1]), ("psi", "FP32", [1])], [b"\0" * 8, b"\0\0\xc0\x7f"], "INVALID_ARGUMENT",
         "psi: contains NaN"),
        (UNCOND, [("seed", "INT64", [2]), ("psi", "FP32", [3])], [b"\0" * 16, b"\0" * 12], "INVALID_ARGUMENT",
         "psi.shape: N must be 1 or 2"),
        (UNCOND, [("seed", "INT64", [1])], [b"\xff" * 8], "INVALID_ARGUMENT", "seed[0]: must be >= 0"),
        (UNCOND, [("seed", "INT64", [1])], [b"\0" * 8, b""], "INVALID_ARGUMENT", "raw_input_contents: has 2"),
        (UNCOND + ".mapping", [("z", "FP32", [1, 3])], [b"\0" * 12], "INVALID_ARGUMENT", "z.shape"),
        (COND + ".mapping", [("z", "FP32", [1, 32]), ("c", "FP32", [1, 10])], [b"\0" * 128, b"\0" * 40],
         "INVALID_ARGUMENT", "c[0]: must be a one-hot"),
        (UNCOND + ".synthesis", [("ws", "FP32", [1, 1, 32])], [b"\0" * 128], "INVALID_ARGUMENT", "ws.shape"),
    ],
)  # fmt: skip
def test_errors_have_the_right_codes(
    raw_stub: Any, model: str, inputs: list[tuple[str, str, list[int]]], raw: list[bytes], code: str, words: str
) -> None:
    err = raw_infer(raw_stub, model, inputs, raw)
    assert err.code().name == code, err.details()
    assert words in err.details(), err.details()


def test_tritonclient_errors_and_bad_bodies(client: Any, server: Any) -> None:
    with pytest.raises(InferenceServerException) as e:
        client.infer("nope", [infer_input("seed", np.array([1], np.int64), "INT64")])
    assert code_of(e.value) == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as e:
        client.infer(UNCOND, [infer_input("seed", np.array([1], np.int64), "INT64")],
                     outputs=[tc.InferRequestedOutput("w")])  # fmt: skip
    assert code_of(e.value) == "StatusCode.INVALID_ARGUMENT" and "unknown output 'w'" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.infer(UNCOND, [infer_input("seed", np.array([1], np.int64), "INT64")], parameters={"bogus": 1})
    assert code_of(e.value) == "StatusCode.INVALID_ARGUMENT" and "unknown parameter" in e.value.message()
    call = server.channel().unary_unary("/inference.GRPCInferenceService/ModelInfer")
    with pytest.raises(grpc.RpcError) as g:
        call(b"\xff\xff\xff\xff garbage", timeout=10)
    assert g.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as g:
        server.channel().unary_unary("/inference.GRPCInferenceService/ModelConfig")(b"", timeout=10)
    assert g.value.code() == grpc.StatusCode.UNIMPLEMENTED  # A Triton extension, not part of the protocol.


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    model=st.sampled_from([UNCOND, UNCOND + ".mapping", UNCOND + ".synthesis", COND]),
    name=st.sampled_from(["seed", "psi", "class_idx", "z", "c", "ws", "x"]),
    datatype=st.sampled_from(["INT64", "FP32", "UINT8", "BYTES", ""]),
    shape=st.lists(st.integers(-2, 70), max_size=6),
    data=st.binary(max_size=300),
)
def test_hostile_inputs_never_fail_internally(
    raw_stub: Any, model: str, name: str, datatype: str, shape: list[int], data: bytes
) -> None:
    req = tpb.ModelInferRequest(model_name=model, raw_input_contents=[data])
    req.inputs.add(name=name, datatype=datatype, shape=shape)
    try:
        raw_stub.ModelInfer(req, timeout=30)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
        assert len(err.details()) <= 1024


def test_metrics_count_oip_methods(client: Any, server: Any) -> None:
    client.infer(UNCOND, [infer_input("seed", np.array([1, 2], np.int64), "INT64")])
    with pytest.raises(InferenceServerException):
        client.infer("nope", [infer_input("seed", np.array([1], np.int64), "INT64")])
    client.is_server_live()
    m = server.metrics()
    assert m['styleserve_requests_total{code="OK",method="ModelInfer",model="tiny-uncond"}'] >= 1
    assert m['styleserve_requests_total{code="NOT_FOUND",method="ModelInfer",model=""}'] >= 1
    assert m['styleserve_requests_total{code="OK",method="ServerLive",model=""}'] >= 1


# --------------------------------------------------------------------------------------------------- auth


def test_token_required_when_configured(repo: Path, start_server: Any) -> None:
    s = start_server(repo, env={"STYLESERVE_AUTH_TOKEN": "oip-token"})
    c = tc.InferenceServerClient(s.target)
    try:
        for call in (c.is_server_live, lambda: c.get_model_metadata(UNCOND)):
            with pytest.raises(InferenceServerException) as e:
                call()
            assert code_of(e.value) == "StatusCode.UNAUTHENTICATED"
        with pytest.raises(InferenceServerException) as e:
            c.infer(
                UNCOND, [infer_input("seed", np.array([1], np.int64), "INT64")], headers={"authorization": "Bearer x"}
            )
        assert code_of(e.value) == "StatusCode.UNAUTHENTICATED"
        auth = {"authorization": "Bearer oip-token"}
        assert c.is_server_live(headers=auth)
        res = c.infer(UNCOND, [infer_input("seed", np.array([1], np.int64), "INT64")], headers=auth)
        assert res.as_numpy("image").shape[0] == 1
    finally:
        c.close()


# ------------------------------------------------------------------------------------------- the messages


def test_messages_share_a_process_with_tritonclient_and_match_its_wire() -> None:
    """Ours live in their own descriptor pool (tritonclient fills the default one with the same names)."""
    from styleserve.inference import grpc_service_pb2 as ours

    req = ours.ModelInferRequest(model_name="m", model_version="1", id="i", raw_input_contents=[b"\1\2"])
    t = req.inputs.add(name="seed", datatype="INT64", shape=[2])
    t.contents.int64_contents.extend([1, 2])
    req.parameters["noise_mode"].string_param = "none"
    req.outputs.add(name="image")
    theirs = tpb.ModelInferRequest.FromString(req.SerializeToString())
    assert theirs.model_name == "m" and list(theirs.inputs[0].contents.int64_contents) == [1, 2]
    assert theirs.parameters["noise_mode"].string_param == "none" and theirs.outputs[0].name == "image"
    assert ours.ModelInferRequest.FromString(theirs.SerializeToString()) == req
    names = {m.name for m in ours.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods}
    assert names == {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"}


def test_committed_oip_messages_match_the_proto(tmp_path: Path) -> None:
    """src/styleserve/inference is generated by scripts/gen_protos.sh; it must not drift from the proto."""
    pytest.importorskip("grpc_tools")
    r = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", "inference/grpc_service.proto"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    committed = ROOT / "src" / "styleserve" / "inference"
    fresh = (tmp_path / "inference" / "grpc_service_pb2.py").read_text()
    fresh = fresh.replace("_descriptor_pool.Default()", "_descriptor_pool.DescriptorPool()")
    assert (committed / "grpc_service_pb2.py").read_text() == fresh, "stale: run scripts/gen_protos.sh"
    assert (committed / "grpc_service_pb2.pyi").read_text() == (
        tmp_path / "inference" / "grpc_service_pb2.pyi"
    ).read_text()
