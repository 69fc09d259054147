# ruff: noqa: N802  (gRPC method names)
"""The KServe Open Inference Protocol (v2 gRPC, ``inference.GRPCInferenceService``) beside ``styleserve.v1``.

Thin methods over :class:`~.engine.Engine`: the same batchers, w cache, limits, auth (the token interceptor covers
every service but health) and metrics (``styleserve_requests_total{method="ModelInfer"}``, ...) as the domain API.
Every served model ``M`` is three OIP models (docs/OIP.md):

* ``M``           the whole generator: ``seed`` INT64 ``[N]`` (or ``[N, 1]``), optional ``psi`` FP32 and, for a
                  conditional model, ``class_idx`` INT64 (each ``[1]`` or ``[N]``, or ``[.., 1]``)
                  -> ``image`` UINT8 ``[N, H, W, C]`` (the images of ``Generate`` with ``raw_uint8``)
* ``M.mapping``   ``z`` FP32 ``[N, z_dim]`` (+ ``c`` FP32 ``[N, c_dim]``, one-hot) -> ``w`` FP32 ``[N, w_dim]``
* ``M.synthesis`` ``ws`` FP32 ``[N, num_ws, w_dim]`` -> ``image`` UINT8 ``[N, H, W, C]`` and/or
                  ``image_float`` FP32 ``[N, C, H, W]``

Request parameters ``noise_mode`` (string) and ``noise_seed`` (int64) choose the noise of ``M`` and ``M.synthesis``
as ``NoiseControl`` does. Inputs come as ``raw_input_contents`` or typed ``contents``; a tensor's rank, shape,
batch size (at most ``max_images_per_request``) and byte length are checked against its declared shape before
anything is decoded. Errors are domain errors (INVALID_ARGUMENT naming the input, NOT_FOUND for an unknown model,
UNAVAILABLE while warming or draining), translated in :mod:`.status`. Bodies are parsed inside the handler, as
:func:`.service.add_to_server` does, so garbage answers INVALID_ARGUMENT.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf.message import Message

from styleserve import __version__
from styleserve.errors import InvalidArgument, NotFound
from styleserve.inference import grpc_service_pb2 as pb
from styleserve.latent import check_psi
from styleserve.v1 import styleserve_pb2 as spb

from . import convert
from .bodies import SMALL_METHOD_BYTES, BodyParser
from .convert import Latent, Source, Truncation
from .engine import Engine, ServedModel
from .runtime import IMAGE_FLOAT, IMAGE_UINT8, NoiseSpec
from .service import _deadline, handling
from .status import quote

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = Any  # grpc.aio.ServicerContext; grpc ships no type hints.
Array = npt.NDArray[Any]

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
REQUEST_TYPES: dict[str, type[Message]] = {m.name: getattr(pb, m.input_type.name) for m in SERVICE.methods}
OIP_BODY_LIMITS = {m.name: SMALL_METHOD_BYTES for m in SERVICE.methods if m.name != "ModelInfer"}
"""Every OIP method but ModelInfer (which carries tensors) takes a small body."""
RESPONSE_TYPES: dict[str, type[Message]] = {m.name: getattr(pb, m.output_type.name) for m in SERVICE.methods}

SERVER_NAME = "styleserve"
PLATFORM = "styleserve_onnxruntime"
VERSION = "1"  # Each OIP model has one version; "" picks it.
KINDS = ("generator", "mapping", "synthesis")
DTYPES: dict[str, np.dtype[Any]] = {"INT64": np.dtype("<i8"), "FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}
CONTENTS = {"INT64": "int64_contents", "FP32": "fp32_contents"}  # The typed field each input datatype reads.
CONTENT_FIELDS = tuple(f.name for f in pb.InferTensorContents.DESCRIPTOR.fields)
MAX_RANK = 4  # Longest input shape (ws is [N, num_ws, w_dim]); checked before the shape is read.
MAX_PARAMETERS = 8
MAX_ID_CHARS = 256
MAX_VERSION_CHARS = 16
PARAMETERS = ("noise_mode", "noise_seed")  # Request parameters of the generator and synthesis models.


# ------------------------------------------------------------------------------------------ models


@dataclass(frozen=True)
class TensorSpec:
    """An input or output: ``shape`` is its metadata shape (-1: the batch N); ``tails`` the accepted shapes after N."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    tails: tuple[tuple[int, ...], ...] = ()
    broadcast: bool = False  # Its N may be 1: one value for every row.
    required: bool = True

    def metadata(self) -> pb.ModelMetadataResponse.TensorMetadata:
        return pb.ModelMetadataResponse.TensorMetadata(name=self.name, datatype=self.datatype, shape=self.shape)


@dataclass(frozen=True)
class OipModel:
    """One OIP model: a served model seen whole (``generator``) or one of its networks."""

    name: str
    kind: str  # generator | mapping | synthesis
    sm: ServedModel
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def metadata(self) -> pb.ModelMetadataResponse:
        return pb.ModelMetadataResponse(
            name=self.name,
            versions=[VERSION],
            platform=PLATFORM,
            inputs=[t.metadata() for t in self.inputs],
            outputs=[t.metadata() for t in self.outputs],
        )


def oip_models(sm: ServedModel) -> list[OipModel]:
    """The three OIP models of a served model, with their tensors."""
    m = sm.manifest
    r, ch = m.img_resolution, m.img_channels
    per_row = ((), (1,))
    image = TensorSpec("image", "UINT8", (-1, r, r, ch))
    gen_in = [
        TensorSpec("seed", "INT64", (-1,), per_row),
        TensorSpec("psi", "FP32", (-1,), per_row, broadcast=True, required=False),
    ]
    map_in = [TensorSpec("z", "FP32", (-1, m.z_dim), ((m.z_dim,),))]
    if m.c_dim:
        gen_in.append(TensorSpec("class_idx", "INT64", (-1,), per_row, broadcast=True))
        map_in.append(TensorSpec("c", "FP32", (-1, m.c_dim), ((m.c_dim,),)))
    ws = TensorSpec("ws", "FP32", (-1, m.num_ws, m.w_dim), ((m.num_ws, m.w_dim),))
    return [
        OipModel(sm.name, "generator", sm, tuple(gen_in), (image,)),
        OipModel(f"{sm.name}.mapping", "mapping", sm, tuple(map_in), (TensorSpec("w", "FP32", (-1, m.w_dim)),)),
        OipModel(
            f"{sm.name}.synthesis", "synthesis", sm, (ws,), (image, TensorSpec("image_float", "FP32", (-1, ch, r, r)))
        ),
    ]


# ------------------------------------------------------------------------------------------ tensors


def _contents_values(t: pb.ModelInferRequest.InferInputTensor, datatype: str, field: str) -> Any:
    """The typed contents of ``datatype``; any other typed field set is an error."""
    want = CONTENTS[datatype]
    for name in CONTENT_FIELDS:
        if name != want and len(getattr(t.contents, name)):
            raise InvalidArgument(f"{field}.contents.{name}", f"a {datatype} input takes its values in {want}")
    return getattr(t.contents, want)


def decode_inputs(req: pb.ModelInferRequest, model: OipModel, limit: int) -> tuple[dict[str, Array], int]:
    """The request's input tensors, by name, and the batch size N. Every size is checked on lengths (rank, shape,
    N <= ``limit``, byte or element count) before anything proportional to the data is done."""
    specs = {s.name: s for s in model.inputs}
    names = list(specs)
    raw = req.raw_input_contents
    if len(req.inputs) > len(specs):
        raise InvalidArgument("inputs", f"has {len(req.inputs)} tensors; model {model.name!r} takes {names}")
    if len(raw) and len(raw) != len(req.inputs):
        raise InvalidArgument(
            "raw_input_contents", f"has {len(raw)} entries; needs one per input ({len(req.inputs)}) or none"
        )
    out: dict[str, Array] = {}
    for i, t in enumerate(req.inputs):
        spec = specs.get(t.name)
        if spec is None:
            raise InvalidArgument(
                f"inputs[{i}].name", f"unknown input {quote(t.name)}; model {model.name!r} takes {names}"
            )
        field = t.name
        if field in out:
            raise InvalidArgument(f"inputs[{i}].name", f"input {field!r} is given twice")
        if t.datatype != spec.datatype:
            raise InvalidArgument(f"{field}.datatype", f"must be {spec.datatype}, got {quote(t.datatype)}")
        want = " or ".join(str(["N", *tail]) for tail in spec.tails)
        if not 1 <= len(t.shape) <= MAX_RANK:
            raise InvalidArgument(f"{field}.shape", f"must be {want}, got {len(t.shape)} dimensions")
        shape = tuple(int(d) for d in t.shape)
        if shape[1:] not in spec.tails:
            raise InvalidArgument(f"{field}.shape", f"must be {want}, got {list(shape)}")
        if not 1 <= shape[0] <= limit:
            raise InvalidArgument(f"{field}.shape", f"N must be in 1..{limit} (images per request), got {shape[0]}")
        count = math.prod(shape)
        dtype = DTYPES[spec.datatype]
        if len(raw):
            if t.HasField("contents"):
                raise InvalidArgument(f"{field}.contents", "give raw_input_contents or contents, not both")
            data = raw[i]
            if len(data) != count * dtype.itemsize:
                raise InvalidArgument(
                    field, f"raw_input_contents[{i}] holds {len(data)} bytes; {spec.datatype} "
                    f"{list(shape)} needs {count * dtype.itemsize}"
                )  # fmt: skip
            arr = np.frombuffer(data, dtype).reshape(shape)
        else:
            values = _contents_values(t, spec.datatype, field)
            if len(values) != count:
                raise InvalidArgument(
                    f"{field}.contents", f"holds {len(values)} values; {spec.datatype} {list(shape)} needs {count}"
                )
            arr = np.asarray(values, dtype).reshape(shape)
        if dtype.kind == "f" and not np.isfinite(arr).all():
            raise InvalidArgument(field, "contains NaN or Inf")
        out[field] = arr.reshape(shape[0]) if spec.tails[0] == () else arr  # [N, 1] -> [N]
    missing = [s.name for s in model.inputs if s.required and s.name not in out]
    if missing:
        raise InvalidArgument("inputs", f"model {model.name!r} needs input(s) {missing}")
    n = len(out[model.inputs[0].name])
    for name, arr in out.items():
        spec = specs[name]
        if len(arr) != n and not (spec.broadcast and len(arr) == 1):
            ok = f"1 or {n}" if spec.broadcast else str(n)
            raise InvalidArgument(f"{name}.shape", f"N must be {ok} (as {model.inputs[0].name}'s), got {len(arr)}")
    return out, n


def _rows(arr: Array, n: int) -> Array:
    """A broadcast input ``[1]`` or ``[N]`` as ``[N]``."""
    return np.broadcast_to(arr, (n,)) if len(arr) == 1 else arr


def generator_sources(model: OipModel, inputs: dict[str, Array], n: int) -> list[Source]:
    """seed ``[N]``, psi, class_idx -> one :class:`~.convert.Source` per row (the checks ``Generate`` makes)."""
    m = model.sm.manifest
    seeds = inputs["seed"]
    psi = _rows(inputs["psi"], n) if "psi" in inputs else np.ones(n, np.float32)
    cls = _rows(inputs["class_idx"], n) if "class_idx" in inputs else None
    out = []
    for i in range(n):
        s = int(seeds[i])
        if s < 0:
            raise InvalidArgument(f"seed[{i}]", f"must be >= 0, got {s}")
        c: int | None = None
        if cls is not None:
            c = int(cls[i])
            if c < 0:
                raise InvalidArgument(f"class_idx[{i}]", f"must be >= 0, got {c}")
            c = convert.class_value(m, True, c, f"class_idx[{i}]")
        trunc = Truncation(check_psi(float(psi[i]), f"psi[{i}]"))
        out.append(Source(f"seed[{i}]", seed=convert.seed_value(s, f"seed[{i}]"), class_index=c, truncation=trunc))
    return out


def mapping_latents(model: OipModel, inputs: dict[str, Array]) -> list[Latent]:
    """z ``[N, z_dim]`` (+ one-hot c ``[N, c_dim]``) -> latents; a c row that is not one-hot is refused."""
    z = inputs["z"].astype(np.float32)
    classes: list[int | None] = [None] * len(z)
    if "c" in inputs:
        c = inputs["c"]
        hot = (c == 1).sum(axis=1) == 1
        ok = hot & ((c == 0) | (c == 1)).all(axis=1)
        if not ok.all():
            bad = int(np.argmin(ok))
            raise InvalidArgument(f"c[{bad}]", "must be a one-hot class label (one 1, the rest 0)")
        classes = [int(k) for k in c.argmax(axis=1)]
    return [Latent(z=z[i].copy(), class_index=classes[i]) for i in range(len(z))]


def noise_of(model: OipModel, params: Any) -> NoiseSpec:
    """The request parameters ``noise_mode`` / ``noise_seed`` as ``NoiseControl`` (checked by :func:`convert.noise`)."""
    nc = spb.NoiseControl()
    for key, p in params.items():
        if key not in PARAMETERS or model.kind == "mapping":
            takes = [] if model.kind == "mapping" else list(PARAMETERS)
            raise InvalidArgument(f"parameters[{quote(key)}]", f"unknown parameter; model {model.name!r} takes {takes}")
        kind = p.WhichOneof("parameter_choice")
        if key == "noise_mode":
            if kind != "string_param":
                raise InvalidArgument("parameters['noise_mode']", "must be a string_param")
            nc.mode = convert.text(p.string_param, "parameters['noise_mode']", convert.MAX_NOISE_MODE_CHARS)
        else:
            if kind != "int64_param":
                raise InvalidArgument("parameters['noise_seed']", "must be an int64_param")
            nc.noise_seed = convert.seed_value(p.int64_param, "parameters['noise_seed']")
    return convert.noise(model.sm.manifest, nc, "parameters")


def output_tensor(spec: TensorSpec, arr: Array) -> tuple[pb.ModelInferResponse.InferOutputTensor, bytes]:
    data = np.ascontiguousarray(arr, dtype=DTYPES[spec.datatype]).tobytes()
    return pb.ModelInferResponse.InferOutputTensor(name=spec.name, datatype=spec.datatype, shape=arr.shape), data


# ------------------------------------------------------------------------------------------ servicer


def _rpc(
    needs_serving: bool,
) -> Callable[[Callable[[OipServicer, Any, Context], Awaitable[Resp]]], Callable[[OipServicer, Any, Context], Any]]:
    """Parse the body, refuse while warming or draining (``needs_serving``), count the call in flight for its
    model, record metrics and answer errors with the code :func:`.status.status_for` gives."""

    def wrap(fn: Callable[[OipServicer, Any, Context], Awaitable[Resp]]) -> Callable[[OipServicer, Any, Context], Any]:
        method = fn.__name__

        @wraps(fn)
        async def wrapper(self: OipServicer, body: Any, context: Context) -> Resp:
            async with self.bodies.parsed(method, REQUEST_TYPES[method], body) as box:
                del body
                return await handle(self, box[0], context)
            raise AssertionError("unreachable: errors abort the call")

        async def handle(self: OipServicer, request: Any, context: Context) -> Resp:
            name = getattr(request, "model_name", None) or getattr(request, "name", "")
            model = self.models().get(name) if isinstance(name, str) else None
            sm = model.sm if model is not None else None
            async with handling(self.engine, method, sm, context, needs_serving=needs_serving):
                if isinstance(request, Exception):
                    raise request
                if request is None:
                    raise InvalidArgument(
                        "request", f"the body does not parse as {SERVICE.full_name}.{method}'s request"
                    )
                return await fn(self, request, context)
            raise AssertionError("unreachable: errors abort the call")

        return wrapper

    return wrap


class OipServicer:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.limit = engine.config.max_images_per_request
        self.bodies = BodyParser(engine.offload, engine.config.max_message_bytes, OIP_BODY_LIMITS)
        self._models: dict[str, OipModel] = {}

    def models(self) -> dict[str, OipModel]:
        """The OIP models of every served model, by name (listed once the engine has started its models)."""
        if not self._models and self.engine.models:
            self._models = {om.name: om for sm in self.engine.models.values() for om in oip_models(sm)}
        return self._models

    def model(self, name: str, version: str, field: str = "model_name") -> OipModel:
        if not name:
            raise InvalidArgument(field, "is required")
        convert.text(name, field, convert.MAX_MODEL_NAME_CHARS + len(".synthesis"))
        om = self.models().get(name)
        if om is None:
            raise NotFound(f"{field}: unknown model {quote(name)}; serving {sorted(self.models())}")
        if version not in ("", VERSION):
            convert.text(version, "version", MAX_VERSION_CHARS)
            raise NotFound(f"version: model {name!r} has version {VERSION} only, got {quote(version)}")
        return om

    # ----------------------------------------------------------------------------------- health

    @_rpc(needs_serving=False)
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @_rpc(needs_serving=False)
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.engine.state == "serving")

    @_rpc(needs_serving=False)
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        """False, not NOT_FOUND, for a model that is not served: the question has an answer."""
        known = request.name in self.models() and request.version in ("", VERSION)
        return pb.ModelReadyResponse(ready=known and self.engine.state == "serving")

    # --------------------------------------------------------------------------------- metadata

    @_rpc(needs_serving=False)
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__)

    @_rpc(needs_serving=False)
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:
        return self.model(request.name, request.version, "name").metadata()

    # -------------------------------------------------------------------------------- inference

    @_rpc(needs_serving=True)
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        om = self.model(request.model_name, request.model_version)
        sm = om.sm
        engine = self.engine
        convert.text(request.id, "id", MAX_ID_CHARS)
        if len(request.parameters) > MAX_PARAMETERS:
            raise InvalidArgument("parameters", f"has {len(request.parameters)} entries; at most {MAX_PARAMETERS}")
        noise = noise_of(om, request.parameters)
        outputs = self._requested(om, request)
        inputs, n = await engine.offload(decode_inputs, request, om, self.limit)
        deadline = _deadline(context)
        results: dict[str, Array]
        if om.kind == "mapping":
            latents = await engine.offload(mapping_latents, om, inputs)
            w, _ = await engine.map_latents(sm, latents, deadline)
            results = {"w": w}
        else:
            if om.kind == "generator":
                ws = await engine.resolve(sm, generator_sources(om, inputs, n), deadline)
            else:
                ws = inputs["ws"].astype(np.float32)
            graph = {"image": IMAGE_UINT8, "image_float": IMAGE_FLOAT}
            images = await engine.synthesize(sm, ws, [noise] * n, [graph[s.name] for s in outputs], deadline)
            results = {s.name: images[graph[s.name]] for s in outputs}
            engine.metrics.images.labels(sm.name).inc(n)
        resp = pb.ModelInferResponse(model_name=om.name, model_version=VERSION, id=request.id)
        for spec in outputs:
            tensor, data = await engine.offload(output_tensor, spec, results[spec.name])
            resp.outputs.append(tensor)
            resp.raw_output_contents.append(data)
        return resp

    @staticmethod
    def _requested(om: OipModel, request: pb.ModelInferRequest) -> list[TensorSpec]:
        """The outputs asked for, in the request's order; none asks for all of them."""
        specs = {s.name: s for s in om.outputs}
        if len(request.outputs) > len(specs):
            raise InvalidArgument("outputs", f"has {len(request.outputs)} entries; model {om.name!r} has {list(specs)}")
        out: list[TensorSpec] = []
        for i, o in enumerate(request.outputs):
            spec = specs.get(o.name)
            if spec is None:
                raise InvalidArgument(
                    f"outputs[{i}].name", f"unknown output {quote(o.name)}; model {om.name!r} has {list(specs)}"
                )
            if spec in out:
                raise InvalidArgument(f"outputs[{i}].name", f"output {o.name!r} is asked for twice")
            out.append(spec)
        return out or list(om.outputs)


def add_to_server(engine: Engine, server: grpc.aio.Server) -> OipServicer:
    """Register ``inference.GRPCInferenceService`` with raw-bytes requests (each method parses its own body)."""
    servicer = OipServicer(engine)
    handlers = {
        m.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, m.name), response_serializer=RESPONSE_TYPES[m.name].SerializeToString
        )
        for m in SERVICE.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(SERVICE.full_name, handlers)
    return servicer
