"""The client library: value types, tensors, images and error translation (pure), and the requests it sends
to a real server (recorded by a channel interceptor), CLI parsing and the generate command."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from harness import ServerProcess
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
    assert output_proto("png", None, False).format == pb.IMAGE_FORMAT_PNG
    jpg = output_proto("JPG", 80, True)
    assert jpg.format == pb.IMAGE_FORMAT_JPEG and jpg.jpeg_quality == 80 and jpg.return_ws
    assert not output_proto("jpeg", None, False).HasField("jpeg_quality")
    assert output_proto("raw_float32", None, False).format == pb.IMAGE_FORMAT_RAW_FLOAT32
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
    assert GeneratedImage.from_proto(pb.Image(format=pb.IMAGE_FORMAT_RAW_UINT8)).ws is None


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


# ---------------------------------------------------------------------------- requests as sent to a real server


class Recorder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Records (method, request, timeout, metadata) of every call on a real channel; keeps stream calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any, Any]] = []
        self.streams: list[Any] = []

    def _record(self, details: Any, request: Any) -> None:
        name = details.method.rsplit("/", 1)[-1]
        self.calls.append((name, request, details.timeout, tuple(details.metadata or ())))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self._record(details, request)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        self._record(details, request)
        call = continuation(details, request)
        self.streams.append(call)
        return call


@pytest.fixture
def recorded(server: ServerProcess) -> Iterator[tuple[grpc.Channel, Recorder]]:
    """A real channel to the shared test server, with every request recorded."""
    rec = Recorder()
    raw = grpc.insecure_channel(server.target)
    yield grpc.intercept_channel(raw, rec), rec
    raw.close()


COND, UNCOND = "tiny-cond", "tiny-uncond"  # tests/conftest.py: 32 px RGB with 10 classes; 16 px gray


def test_client_builds_requests_and_sends_token(recorded: tuple[grpc.Channel, Recorder]) -> None:
    ch, rec = recorded
    with Client("x", token="s3cret", timeout=5.0, channel=ch) as client:
        imgs = client.generate(COND, [1, 2], class_index=3, psi=0.5, noise=Noise("none"), format="jpeg")
        client.generate(COND, range(2), class_index=0, timeout=1.5)
    assert [i.format for i in imgs] == ["jpeg", "jpeg"]
    (name, req, timeout, md), (_, _, timeout2, _) = rec.calls
    assert name == "Generate" and timeout == 5.0 and timeout2 == 1.5
    assert md == (("authorization", "Bearer s3cret"),)
    assert list(req.seeds) == [1, 2] and req.class_index == 3 and req.truncation.psi == 0.5
    assert not req.truncation.HasField("cutoff") and req.noise.mode == "none"
    assert req.output.format == pb.IMAGE_FORMAT_JPEG


def test_client_map_requests(recorded: tuple[grpc.Channel, Recorder]) -> None:
    ch, rec = recorded
    client = Client("x", channel=ch)
    with pytest.raises(InvalidArgumentError) as info:  # The server needs a class for every latent.
        client.map(COND, seeds=[5, 6], class_index=[1, None], cache=True)
    assert info.value.field == "latents[1].class_index"
    req = rec.calls[0][1]
    assert [lat.seed for lat in req.latents] == [5, 6] and req.return_w and req.cache
    assert req.latents[0].class_index == 1 and not req.latents[1].HasField("class_index")
    assert rec.calls[0][3] == ()  # no token, no metadata
    res = client.map(COND, seeds=[5, 6], class_index=[1, 2], cache=True)
    assert res[0].w is not None and res[0].w.shape == (32,) and res[0].w_id
    assert client.map(COND, seeds=[5], class_index=1)[0].w_id is None
    assert np.array_equal(res[0].w, client.get_w(COND, res[0].w_id))
    z = np.random.RandomState(5).randn(2, 32)
    by_z = client.map(COND, zs=z, class_index=1)
    zreq = rec.calls[-1][1]
    assert [lat.WhichOneof("source") for lat in zreq.latents] == ["z", "z"] and zreq.latents[1].class_index == 1
    assert list(zreq.latents[0].z.shape) == [32]
    assert by_z[0].w is not None and np.allclose(by_z[0].w, res[0].w, atol=1e-6)  # z of seed 5, class 1


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
def test_client_rejects_bad_map_arguments_before_any_rpc(
    recorded: tuple[grpc.Channel, Recorder], kwargs: dict[str, Any], match: str
) -> None:
    ch, rec = recorded
    with pytest.raises(ValueError, match=match):
        Client("x", channel=ch).map(COND, **kwargs)
    assert rec.calls == []


def test_client_translates_rpc_errors(recorded: tuple[grpc.Channel, Recorder]) -> None:
    ch, _ = recorded
    with pytest.raises(NotFoundError, match="unknown model 'nope'") as info:
        Client("x", channel=ch).get_model("nope")
    assert isinstance(info.value.__cause__, grpc.RpcError)
    assert info.value.__cause__.code() == grpc.StatusCode.NOT_FOUND


def test_client_grid_w_cache_and_synthesize(recorded: tuple[grpc.Channel, Recorder]) -> None:
    ch, rec = recorded
    client = Client("x", channel=ch)
    w_id = client.put_w(UNCOND, np.zeros(32))
    grid = client.style_mix_grid(UNCOND, [85, Source.from_w_id(w_id)], [55], col_styles=[0, 1])
    assert len(grid.cells) == 2 and grid.grid is not None and grid.grid.width == 2 * 16
    greq = rec.calls[-1][1]
    assert greq.rows[0].seed.seed == 85 and greq.rows[1].w_id == w_id and greq.cols[0].seed.seed == 55
    assert list(greq.col_styles) == [0, 1] and greq.compose
    assert list(pb.StyleMixGridRequest(model="m").col_styles) == []
    assert client.put_w(UNCOND, np.zeros(32)) == w_id  # Keyed by content.
    assert client.get_w(UNCOND, w_id).shape == (32,)
    assert client.delete_w(UNCOND, w_id) is True
    plan = Plan([Style(Source.from_seed(1)), Style(Source.from_seed(2), stop=4)])
    assert len(client.synthesize(UNCOND, [plan], return_ws=True)) == 1
    sreq = rec.calls[-1][1]
    assert len(sreq.plans) == 1 and sreq.plans[0].styles[1].stop == 4 and sreq.output.return_ws
    with pytest.raises(ValueError, match="Source or an int"):
        client.style_mix_grid(UNCOND, ["85"], [55])  # type: ignore[list-item]


def test_stream_generate_is_lazy_and_cancels(recorded: tuple[grpc.Channel, Recorder]) -> None:
    ch, rec = recorded
    client = Client("x", channel=ch)
    it = client.stream_generate(UNCOND, range(10, 500), psi=0.7)
    assert rec.calls == []  # nothing sent until the first next()
    first = next(it)
    assert (first.index, first.seed) == (0, 10)
    req = rec.calls[0][1]
    assert req.WhichOneof("work") == "seeds" and (req.seeds.start, req.seeds.stop) == (10, 500)
    it.close()  # type: ignore[attr-defined]
    assert rec.streams[0].cancelled()

    plans = [Plan([Style(Source.from_seed(1), stop=2)])]  # Layers 2.. have no source: the server refuses.
    with pytest.raises(InvalidArgumentError) as info:
        list(client.stream_generate(UNCOND, plans=plans))
    assert info.value.field == "plans.plans[0].styles"
    assert rec.calls[-1][1].WhichOneof("work") == "plans"
    with pytest.raises(ValueError, match="exactly one"):
        client.stream_generate(UNCOND)
    with pytest.raises(ValueError, match="step 1"):
        client.stream_generate(UNCOND, range(0, 10, 2))
    with pytest.raises(ValueError, match="seed ranges"):
        client.stream_generate(UNCOND, plans=plans, psi=0.5)


def test_client_message_size_limits(server: ServerProcess) -> None:
    """max_message_bytes is set on the client's channels in both directions."""
    with Client(server.target, max_message_bytes=1234) as client:
        with pytest.raises(ResourceExhaustedError):
            client.put_w(COND, np.zeros(1000))  # a 4 kB request
        with pytest.raises(ResourceExhaustedError):
            client.generate(COND, [1], class_index=0, format="raw_uint8")  # a 3 kB response
    ready = grpc.insecure_channel(server.target)
    with pytest.raises(ValueError, match="ready-made channel"):
        Client("h:1", tls=True, channel=ready)
    with pytest.raises(ValueError, match="whitespace"):
        Client("h:1", token="a b", channel=ready)
    ready.close()


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


def test_cli_generate_chunks_and_writes(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """20 seeds go out as Generate calls of 16 and 4 (seen in the server's metrics) and land as files."""
    monkeypatch.setenv("STYLESERVE_TARGET", server.target)
    monkeypatch.setenv("STYLESERVE_TOKEN", "tok")  # Sent; this server does not check tokens.
    key = f'styleserve_requests_total{{code="OK",method="Generate",model="{UNCOND}"}}'
    before = server.metrics()
    out = tmp_path / "imgs"
    rc = cli.main(["generate", "--model", UNCOND, "--seeds", "0-19", "--psi", "0.7", "--out", str(out)])
    assert rc == 0
    after = server.metrics()
    assert after[key] - before.get(key, 0) == 2
    assert (
        after['styleserve_batch_size_sum{model="tiny-uncond",network="synthesis"}']
        - before.get('styleserve_batch_size_sum{model="tiny-uncond",network="synthesis"}', 0)
        == 20
    )
    assert sorted(os.listdir(out)) == [f"seed{s:04d}.png" for s in range(20)]
    with Client(server.target) as client:
        assert (out / "seed0007.png").read_bytes() == client.generate(UNCOND, [7], psi=0.7)[0].data
    assert len(capsys.readouterr().out.splitlines()) == 20


def test_cli_server_error_exits_1(server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["generate", "--model", "missing", "--seeds", "1", "--out", str(tmp_path), "--target", server.target])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: NOT_FOUND: model: unknown model 'missing'") and "Traceback" not in err
