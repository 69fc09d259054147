"""The client library without a server: value types, tensors, images, error translation, request building, CLI."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import grpc
import numpy as np
import pytest
from PIL import Image
from styleserve.clients import (
    Client,
    DeadlineExceededError,
    GeneratedImage,
    InvalidArgumentError,
    Noise,
    NotFoundError,
    Plan,
    ResourceExhaustedError,
    Source,
    Style,
    StyleServeRpcError,
    UnauthenticatedError,
    UnavailableError,
    cli,
    tensor_from_proto,
    tensor_to_proto,
)
from styleserve.clients._errors import from_rpc_error
from styleserve.clients._types import output_proto
from styleserve.clients.cli import parse_range

from styleserve.errors import StyleServeError
from styleserve.v1 import styleserve_pb2 as pb

# ---------------------------------------------------------------------------- tensors


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4)])
def test_tensor_round_trip(shape: tuple[int, ...]) -> None:
    arr = np.asarray(np.random.RandomState(0).randn(*shape), dtype=np.float32)
    t = tensor_to_proto(arr)
    assert list(t.shape) == list(shape) and len(t.data) == arr.size * 4
    back = tensor_from_proto(t)
    assert back.dtype == np.float32 and back.shape == shape and np.array_equal(back, arr)
    back[...] = 0  # a writable copy, not a view of the message bytes


def test_tensor_is_little_endian_float32_row_major() -> None:
    t = tensor_to_proto(np.array([[1.0, 2.0], [3.0, -0.5]], dtype=">f8"))  # big-endian float64 in
    assert t.data == struct.pack("<4f", 1.0, 2.0, 3.0, -0.5)
    assert tensor_from_proto(pb.Tensor(shape=[2], data=struct.pack("<2f", 7.0, 8.0))).tolist() == [7.0, 8.0]


@pytest.mark.parametrize("nbytes", [0, 7, 12, 20])
def test_tensor_bad_byte_length(nbytes: int) -> None:
    with pytest.raises(ValueError, match=rf"shape \[2, 2\] needs 16 bytes.*got {nbytes}"):
        tensor_from_proto(pb.Tensor(shape=[2, 2], data=b"\0" * nbytes))


@pytest.mark.parametrize("bad", [np.array([1 + 2j]), np.array(["a"]), np.array([object()])])
def test_tensor_rejects_non_real(bad: Any) -> None:
    with pytest.raises(ValueError, match="real numbers"):
        tensor_to_proto(bad)


# ---------------------------------------------------------------------------- request types


def test_seed_source_to_proto() -> None:
    p = Source.from_seed(85, class_index=3, psi=0.7, cutoff=8).to_proto()
    assert p.WhichOneof("source") == "seed"
    assert p.seed.seed == 85 and p.seed.HasField("class_index") and p.seed.class_index == 3
    assert p.seed.truncation.psi == pytest.approx(0.7) and p.seed.truncation.cutoff == 8

    bare = Source.from_seed(0).to_proto()
    assert bare.WhichOneof("source") == "seed" and bare.seed.seed == 0
    assert not bare.seed.HasField("class_index")
    assert not bare.seed.truncation.HasField("psi") and not bare.seed.truncation.HasField("cutoff")


def test_w_sources_to_proto() -> None:
    w = np.arange(4, dtype=np.float32)  # [w_dim]
    ws = np.arange(12, dtype=np.float64).reshape(3, 4)  # [num_ws, w_dim]
    assert Source.from_w_id("abc").to_proto().w_id == "abc"
    pw = Source.from_w(w).to_proto()
    assert pw.WhichOneof("source") == "w" and list(pw.w.shape) == [4]
    assert np.array_equal(tensor_from_proto(pw.w), w)
    pp = Source.from_w_plus(ws).to_proto()
    assert pp.WhichOneof("source") == "w_plus" and list(pp.w_plus.shape) == [3, 4]
    assert np.array_equal(tensor_from_proto(pp.w_plus), ws)


def test_source_copies_and_compares_by_value() -> None:
    w = np.ones(4, dtype=np.float32)
    s = Source.from_w(w)
    w[0] = 5  # the source took a copy
    assert s.w is not None and s.w[0] == 1 and not s.w.flags.writeable
    assert s == Source.from_w(np.ones(4)) and hash(s) == hash(Source.from_w(np.ones(4)))
    assert s != Source.from_w_plus(np.ones((1, 4)))
    assert Source.from_seed(3, psi=0.5) == Source.from_seed(3, psi=0.5) != Source.from_seed(3)
    assert repr(Source.from_seed(3, psi=0.5)) == "Source.from_seed(3, psi=0.5)"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Source.from_seed(-1), "seed must be in"),
        (lambda: Source.from_seed(2**32), "seed must be in"),
        (lambda: Source.from_seed(True), "seed must be an integer"),
        (lambda: Source.from_seed(1, psi=float("nan")), "psi must be finite"),
        (lambda: Source.from_seed(1, class_index=-2), "class_index"),
        (lambda: Source.from_w(np.ones((2, 4))), r"\[w_dim\]"),
        (lambda: Source.from_w_plus(np.ones(4)), r"\[num_ws, w_dim\]"),
        (lambda: Source.from_w_id(""), "w_id"),
        (lambda: Source("w_id", w_id="x", seed=1), "seed sources"),
    ],
)
def test_source_rejects_bad_arguments(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_style_to_proto() -> None:
    src = Source.from_seed(1)
    every = Style(src).to_proto()
    assert list(every.layers) == [] and not every.HasField("start") and not every.HasField("stop")
    assert every.source.seed.seed == 1
    listed = Style(src, layers=[0, 2, 5]).to_proto()
    assert list(listed.layers) == [0, 2, 5] and not listed.HasField("start")
    ranged = Style(src, start=0, stop=7).to_proto()
    assert list(ranged.layers) == [] and ranged.HasField("start") and ranged.start == 0 and ranged.stop == 7
    tail = Style(src, start=4).to_proto()
    assert tail.start == 4 and not tail.HasField("stop")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layers": [1], "start": 0}, "not both"),
        ({"layers": []}, "must not be empty"),
        ({"start": 3, "stop": 3}, "empty layer range"),
        ({"layers": [-1]}, r"layers\[0\]"),
    ],
)
def test_style_rejects_bad_selections(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Style(Source.from_seed(1), **kwargs)


def test_plan_and_noise_to_proto() -> None:
    plan = Plan(
        [Style(Source.from_seed(85)), Style(Source.from_w_id("col"), layers=[0, 1])],
        noise=Noise("random", seed=9, strength=(1.0, 0.5)),
    )
    p = plan.to_proto()
    assert [s.source.WhichOneof("source") for s in p.styles] == ["seed", "w_id"]  # order kept: later overrides
    assert p.noise.mode == "random" and p.noise.noise_seed == 9 and list(p.noise.strength) == [1.0, 0.5]
    assert not Plan([Style(Source.from_seed(1))]).to_proto().HasField("noise")
    assert isinstance(plan.styles, tuple)
    with pytest.raises(ValueError, match="at least one"):
        Plan([])
    with pytest.raises(ValueError, match="noise mode"):
        Noise("static")


def test_output_options() -> None:
    assert output_proto("png", None, False).format == pb.PNG
    jpg = output_proto("JPG", 80, True)
    assert jpg.format == pb.JPEG and jpg.jpeg_quality == 80 and jpg.return_ws
    assert not output_proto("jpeg", None, False).HasField("jpeg_quality")
    assert output_proto("raw_float32", None, False).format == pb.RAW_FLOAT32
    with pytest.raises(ValueError, match="format must be one of"):
        output_proto("gif", None, False)
    with pytest.raises(ValueError, match="only to format 'jpeg'"):
        output_proto("png", 90, False)
    with pytest.raises(ValueError, match=r"\[1, 100\]"):
        output_proto("jpeg", 0, False)


# ---------------------------------------------------------------------------- images


def _rgb(h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.RandomState(1).randint(0, 256, size=(h, w, 3), dtype=np.uint8)


def _encoded(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(buf, format=fmt)
    return buf.getvalue()


def test_png_to_array_rgb_and_gray() -> None:
    rgb = _rgb()
    img = GeneratedImage(_encoded(rgb, "PNG"), "png", 5, 6, 3, None)
    out = img.to_array()
    assert out.dtype == np.uint8 and np.array_equal(out, rgb)
    gray = rgb[..., :1]
    assert np.array_equal(GeneratedImage(_encoded(gray, "PNG"), "png", 5, 6, 1).to_array(), gray)  # [H, W, 1]


def test_jpeg_to_array() -> None:
    flat = np.full((8, 8, 3), (200, 40, 90), dtype=np.uint8)
    out = GeneratedImage(_encoded(flat, "JPEG"), "jpeg", 8, 8, 3).to_array()
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - flat).max() <= 3


def test_raw_to_array() -> None:
    rgb = _rgb()
    assert np.array_equal(GeneratedImage(rgb.tobytes(), "raw_uint8", 5, 6, 3).to_array(), rgb)
    chw = np.random.RandomState(2).randn(3, 6, 5).astype(np.float32)
    out = GeneratedImage(chw.astype("<f4").tobytes(), "raw_float32", 5, 6, 3).to_array()
    assert out.dtype == np.float32 and out.shape == (3, 6, 5) and np.array_equal(out, chw)
    with pytest.raises(ValueError, match="needs 90 bytes"):
        GeneratedImage(rgb.tobytes()[:-1], "raw_uint8", 5, 6, 3).to_array()


def test_generated_image_from_proto() -> None:
    ws = np.ones((4, 2), dtype=np.float32)
    msg = pb.Image(data=b"x", format=pb.IMAGE_FORMAT_UNSPECIFIED, width=2, height=3, channels=1, ws=tensor_to_proto(ws))
    img = GeneratedImage.from_proto(msg)
    assert (img.format, img.width, img.height, img.channels, img.suffix) == ("png", 2, 3, 1, ".png")
    assert img.ws is not None and np.array_equal(img.ws, ws)
    assert GeneratedImage.from_proto(pb.Image(format=pb.RAW_UINT8)).ws is None


def test_save_is_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    data = _encoded(_rgb(), "PNG")
    target = tmp_path / "a.png"
    target.write_bytes(b"old")
    assert GeneratedImage(data, "png", 5, 6, 3).save(target) == target
    assert target.read_bytes() == data and os.listdir(tmp_path) == ["a.png"]
    chw = np.zeros((3, 6, 5), dtype=np.float32)
    GeneratedImage(chw.tobytes(), "raw_float32", 5, 6, 3).save(tmp_path / "b.npy")
    assert np.array_equal(np.load(tmp_path / "b.npy"), chw)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.npy"]


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.png"
    target.write_bytes(b"old")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        GeneratedImage(b"new", "png", 1, 1, 3).save(target)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.png"]


# ---------------------------------------------------------------------------- errors


class FakeRpcError(grpc.RpcError):  # type: ignore[misc]  # grpc ships no type information
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError),
        (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceededError),
        (grpc.StatusCode.INTERNAL, StyleServeRpcError),
    ],
)
def test_error_translation(code: grpc.StatusCode, cls: type[StyleServeRpcError]) -> None:
    err = from_rpc_error(FakeRpcError(code, "boom"))
    assert err.code == code and err.details == "boom" and str(err) == f"{code.name}: boom"
    assert type(err) is cls and isinstance(err, StyleServeError)


def test_invalid_argument_field() -> None:
    err = from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "plans[0].styles[1].stop: 99 > num_ws 8"))
    assert isinstance(err, InvalidArgumentError)
    assert err.field == "plans[0].styles[1].stop" and err.message == "99 > num_ws 8"
    plain = from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "something went wrong: badly"))
    assert isinstance(plain, InvalidArgumentError) and plain.field is None
    assert plain.message == "something went wrong: badly"


def test_error_translation_without_call_info() -> None:
    err = from_rpc_error(grpc.RpcError("bare"))
    assert err.code == grpc.StatusCode.UNKNOWN and err.details == "bare"


# ---------------------------------------------------------------------------- client over a fake channel


class FakeStream:
    def __init__(self, items: list[Any], error: Exception | None) -> None:
        self.items, self.error, self.cancelled = items, error, False

    def __iter__(self) -> Iterator[Any]:
        yield from self.items
        if self.error is not None:
            raise self.error

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class FakeChannel:
    """Records calls by method name; ``responses[name]`` is a message or an exception (a list for streams)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any, Any]] = []
        self.responses: dict[str, Any] = {}
        self.streams: list[FakeStream] = []
        self.stream_error: Exception | None = None

    def unary_unary(self, path: str, **kwargs: Any) -> Any:
        name = path.rsplit("/", 1)[-1]

        def call(request: Any, timeout: Any = None, metadata: Any = None) -> Any:
            self.calls.append((name, request, timeout, metadata))
            resp = self.responses[name]
            if isinstance(resp, Exception):
                raise resp
            return resp

        return call

    def unary_stream(self, path: str, **kwargs: Any) -> Any:
        name = path.rsplit("/", 1)[-1]

        def call(request: Any, timeout: Any = None, metadata: Any = None) -> FakeStream:
            self.calls.append((name, request, timeout, metadata))
            stream = FakeStream(self.responses[name], self.stream_error)
            self.streams.append(stream)
            return stream

        return call

    def close(self) -> None:
        raise AssertionError("a borrowed channel must not be closed")


def _png_msg(w: int = 2, h: int = 2) -> pb.Image:
    return pb.Image(data=b"png", format=pb.PNG, width=w, height=h, channels=3)


def test_client_builds_requests_and_sends_token() -> None:
    ch = FakeChannel()
    ch.responses["Generate"] = pb.SynthesizeResponse(images=[_png_msg(), _png_msg()])
    with Client("x", token="s3cret", timeout=5.0, channel=ch) as client:
        imgs = client.generate("demo", [1, 2], class_index=3, psi=0.5, noise=Noise("none"), format="jpeg")
        client.generate("demo", range(2), timeout=1.5)
    assert [i.format for i in imgs] == ["png", "png"]
    (name, req, timeout, md), (_, _, timeout2, _) = ch.calls
    assert name == "Generate" and timeout == 5.0 and timeout2 == 1.5
    assert md == (("authorization", "Bearer s3cret"),)
    assert list(req.seeds) == [1, 2] and req.class_index == 3 and req.truncation.psi == 0.5
    assert not req.truncation.HasField("cutoff") and req.noise.mode == "none" and req.output.format == pb.JPEG


def test_client_map_requests() -> None:
    ch = FakeChannel()
    w = np.ones(4, dtype=np.float32)
    ch.responses["Map"] = pb.MapResponse(results=[pb.MappedW(w=tensor_to_proto(w), w_id="a"), pb.MappedW()])
    client = Client("x", channel=ch)
    res = client.map("demo", seeds=[5, 6], class_index=[1, None], cache=True)
    assert res[0].w is not None and np.array_equal(res[0].w, w) and res[0].w_id == "a"
    assert res[1].w is None and res[1].w_id is None
    req = ch.calls[0][1]
    assert [lat.seed for lat in req.latents] == [5, 6] and req.return_w and req.cache
    assert req.latents[0].class_index == 1 and not req.latents[1].HasField("class_index")
    assert ch.calls[0][3] == ()  # no token, no metadata
    client.map("demo", zs=np.zeros((2, 3)), class_index=4)
    zreq = ch.calls[1][1]
    assert [lat.WhichOneof("source") for lat in zreq.latents] == ["z", "z"] and zreq.latents[1].class_index == 4
    assert list(zreq.latents[0].z.shape) == [3]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seeds": [1], "zs": np.zeros((1, 3))}, "exactly one"),
        ({}, "exactly one"),
        ({"zs": np.zeros(3)}, r"\[N, z_dim\]"),
        ({"seeds": [1, 2], "class_index": [1]}, "1 entries for 2 latents"),
        ({"seeds": [1], "return_w": False}, "nothing to return"),
        ({"seeds": [-1]}, r"seeds\[0\]"),
    ],
)
def test_client_rejects_bad_map_arguments_before_any_rpc(kwargs: dict[str, Any], match: str) -> None:
    ch = FakeChannel()
    with pytest.raises(ValueError, match=match):
        Client("x", channel=ch).map("demo", **kwargs)
    assert ch.calls == []


def test_client_translates_rpc_errors() -> None:
    ch = FakeChannel()
    rpc_error = FakeRpcError(grpc.StatusCode.NOT_FOUND, "model 'nope' is not served")
    ch.responses["GetModel"] = rpc_error
    with pytest.raises(NotFoundError, match="model 'nope'") as info:
        Client("x", channel=ch).get_model("nope")
    assert info.value.__cause__ is rpc_error


def test_client_grid_w_cache_and_synthesize() -> None:
    ch = FakeChannel()
    ch.responses["StyleMixGrid"] = pb.StyleMixGridResponse(cells=[_png_msg()] * 2, grid=_png_msg(4, 4))
    ch.responses["PutW"] = pb.PutWResponse(w_id="id1")
    ch.responses["GetW"] = pb.GetWResponse(w=tensor_to_proto(np.zeros((2, 3))))
    ch.responses["DeleteW"] = pb.DeleteWResponse(deleted=True)
    ch.responses["Synthesize"] = pb.SynthesizeResponse(images=[_png_msg()])
    client = Client("x", channel=ch)
    grid = client.style_mix_grid("demo", [85, Source.from_w_id("r")], [55], col_styles=[0, 1])
    assert len(grid.cells) == 2 and grid.grid is not None and grid.grid.width == 4
    greq = ch.calls[0][1]
    assert greq.rows[0].seed.seed == 85 and greq.rows[1].w_id == "r" and greq.cols[0].seed.seed == 55
    assert list(greq.col_styles) == [0, 1] and greq.compose
    assert list(pb.StyleMixGridRequest(model="m").col_styles) == []
    assert client.put_w("demo", np.zeros(3)) == "id1"
    assert client.get_w("demo", "id1").shape == (2, 3)
    assert client.delete_w("demo", "id1") is True
    plan = Plan([Style(Source.from_seed(1)), Style(Source.from_seed(2), stop=4)])
    assert len(client.synthesize("demo", [plan], return_ws=True)) == 1
    sreq = ch.calls[-1][1]
    assert len(sreq.plans) == 1 and sreq.plans[0].styles[1].stop == 4 and sreq.output.return_ws
    with pytest.raises(ValueError, match="Source or an int"):
        client.style_mix_grid("demo", ["85"], [55])  # type: ignore[list-item]


def test_stream_generate_is_lazy_and_cancels() -> None:
    ch = FakeChannel()
    ch.responses["StreamGenerate"] = [
        pb.StreamItem(index=i, seed=10 + i, image=_png_msg()) for i in range(3)
    ]  # fmt: skip
    client = Client("x", channel=ch)
    it = client.stream_generate("demo", range(10, 13), psi=0.7)
    assert ch.calls == []  # nothing sent until the first next()
    first = next(it)
    assert (first.index, first.seed) == (0, 10)
    req = ch.calls[0][1]
    assert req.WhichOneof("work") == "seeds" and (req.seeds.start, req.seeds.stop) == (10, 13)
    it.close()  # type: ignore[attr-defined]
    assert ch.streams[0].cancelled

    plans = [Plan([Style(Source.from_seed(1))])]
    ch.stream_error = FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")
    with pytest.raises(ResourceExhaustedError):
        list(client.stream_generate("demo", plans=plans))
    assert ch.calls[-1][1].WhichOneof("work") == "plans"
    with pytest.raises(ValueError, match="exactly one"):
        client.stream_generate("demo")
    with pytest.raises(ValueError, match="step 1"):
        client.stream_generate("demo", range(0, 10, 2))
    with pytest.raises(ValueError, match="seed ranges"):
        client.stream_generate("demo", plans=plans, psi=0.5)


def test_client_channel_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_secure(target: str, creds: Any, options: Any) -> FakeChannel:
        seen.update(target=target, creds=creds, options=dict(options))
        return FakeChannel()

    monkeypatch.setattr(grpc, "ssl_channel_credentials", lambda root_certificates=None: ("creds", root_certificates))
    monkeypatch.setattr(grpc, "secure_channel", fake_secure)
    Client("h:1", root_certificates=b"PEM", max_message_bytes=1234)
    assert seen["creds"] == ("creds", b"PEM")
    assert seen["options"] == {
        "grpc.max_send_message_length": 1234,
        "grpc.max_receive_message_length": 1234,
        "grpc.lb_policy_name": "round_robin",
    }
    with pytest.raises(ValueError, match="ready-made channel"):
        Client("h:1", tls=True, channel=FakeChannel())
    with pytest.raises(ValueError, match="whitespace"):
        Client("h:1", token="a b", channel=FakeChannel())


# ---------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0-3,7", [0, 1, 2, 3, 7]), ("5", [5]), (" 1 , 2-2 ", [1, 2]), ("3,1,3", [3, 1, 3]), ("0-0", [0])],
)
def test_parse_range(text: str, expected: list[int]) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty range"),
        ("1,,2", "empty item"),
        ("1,", "empty item"),
        ("a-3", "bad item 'a-3'"),
        ("-1", "bad item"),
        ("1-2-3", "bad item"),
        ("1.5", "bad item"),
        ("5-3", "descending range '5-3'"),
        ("0-4294967295", "more than"),
    ],
)
def test_parse_range_rejects(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_range(text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "--seeds", "0-3"], "--model"),
        (["generate", "--model", "m", "--seeds", "3-1"], "argument --seeds: descending range"),
        (["grid", "--model", "m", "--rows", "x"], "argument --rows: bad item 'x'"),
        (["generate", "--model", "m", "--seeds", "1", "--noise-seed", "3"], "--noise-mode random"),
        (["models", "--timeout", "-1"], "must be >= 0"),
        (["generate", "--model", "m", "--seeds", "1", "--format", "gif"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_cli_argument_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


class FakeClient:
    """Stands in for Client inside the CLI; records generate() calls."""

    instances: ClassVar[list[FakeClient]] = []

    def __init__(self, target: str, **kwargs: Any) -> None:
        self.target, self.kwargs = target, kwargs
        self.generated: list[tuple[list[int], dict[str, Any]]] = []
        FakeClient.instances.append(self)

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def generate(self, model: str, seeds: list[int], **kwargs: Any) -> list[GeneratedImage]:
        if model == "missing":
            raise NotFoundError(grpc.StatusCode.NOT_FOUND, "unknown model 'missing'")
        self.generated.append((list(seeds), kwargs))
        return [GeneratedImage(b"img%d" % s, "png", 1, 1, 3) for s in seeds]


def test_cli_generate_chunks_and_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeClient.instances.clear()
    monkeypatch.setattr(cli, "Client", FakeClient)
    monkeypatch.setenv("STYLESERVE_TARGET", "env-host:1")
    monkeypatch.setenv("STYLESERVE_TOKEN", "tok")
    out = tmp_path / "imgs"
    rc = cli.main(["generate", "--model", "demo", "--seeds", "0-19", "--psi", "0.7", "--out", str(out)])
    assert rc == 0
    (client,) = FakeClient.instances
    assert client.target == "env-host:1" and client.kwargs["token"] == "tok" and client.kwargs["timeout"] == 60.0
    assert [len(seeds) for seeds, _ in client.generated] == [16, 4]
    assert client.generated[0][1]["psi"] == 0.7 and client.generated[0][1]["noise"] is None
    assert sorted(os.listdir(out)) == [f"seed{s:04d}.png" for s in range(20)]
    assert (out / "seed0007.png").read_bytes() == b"img7"
    assert len(capsys.readouterr().out.splitlines()) == 20


def test_cli_server_error_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "Client", FakeClient)
    rc = cli.main(["generate", "--model", "missing", "--seeds", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and err == "error: NOT_FOUND: unknown model 'missing'\n"
