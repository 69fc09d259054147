"""Every malformed request gets the right status code with the offending field named, and the server lives on."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from styleserve.v1 import styleserve_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ServerProcess

COND, UNCOND = "tiny-cond", "tiny-uncond"
NUM_WS, W_DIM = 8, 32  # tiny-cond: 32 px
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


def tensor(shape: tuple[int, ...], fill: float = 0.1, nbytes: int | None = None) -> pb.Tensor:
    a = np.full(shape, fill, "<f4")
    data = a.tobytes()
    return pb.Tensor(shape=list(shape), data=data if nbytes is None else data[:nbytes])


def src_all(source: pb.StyleSource) -> pb.StylePlan:
    return pb.StylePlan(styles=[pb.LayerStyle(source=source)])


def seed(s: int = 1, cls: int | None = 0, **trunc: Any) -> pb.StyleSource:
    sd = pb.SeedSource(seed=s, truncation=pb.Truncation(**trunc))
    if cls is not None:
        sd.class_index = cls
    return pb.StyleSource(seed=sd)


def synth(*plans: pb.StylePlan, **kw: Any) -> tuple[str, Any]:
    return "Synthesize", pb.SynthesizeRequest(model=COND, plans=list(plans), **kw)


CASES: dict[str, tuple[tuple[str, Any], grpc.StatusCode, str]] = {
    "unknown model": (("Generate", pb.GenerateRequest(model="nope", seeds=[1])), NOT_FOUND, "model"),
    "missing model": (("GetModel", pb.GetModelRequest()), INVALID, "model"),
    "no seeds": (("Generate", pb.GenerateRequest(model=UNCOND)), INVALID, "seeds"),
    "too many seeds": (("Generate", pb.GenerateRequest(model=UNCOND, seeds=range(65))), INVALID, "seeds"),
    "seed too large": (("Generate", pb.GenerateRequest(model=UNCOND, seeds=[1, 2**32])), INVALID, "seeds[1]"),
    "NaN psi": (
        ("Generate", pb.GenerateRequest(model=UNCOND, seeds=[1], truncation=pb.Truncation(psi=float("nan")))),
        INVALID,
        "truncation.psi",
    ),
    "absurd psi": (
        ("Generate", pb.GenerateRequest(model=UNCOND, seeds=[1], truncation=pb.Truncation(psi=1e6))),
        INVALID,
        "truncation.psi",
    ),
    "cutoff beyond num_ws": (
        ("Generate", pb.GenerateRequest(model=COND, seeds=[1], class_index=0, truncation=pb.Truncation(cutoff=99))),
        INVALID,
        "truncation.cutoff",
    ),
    "unknown class": (("Generate", pb.GenerateRequest(model=COND, seeds=[1], class_index=10)), INVALID, "class_index"),
    "missing class": (("Generate", pb.GenerateRequest(model=COND, seeds=[1])), INVALID, "class_index"),
    "class on unconditional": (
        ("Generate", pb.GenerateRequest(model=UNCOND, seeds=[1], class_index=0)),
        INVALID,
        "class_index",
    ),
    "bad noise mode": (
        ("Generate", pb.GenerateRequest(model=UNCOND, seeds=[1], noise=pb.NoiseControl(mode="loud"))),
        INVALID,
        "noise.mode",
    ),
    "noise strength count": (
        ("Generate", pb.GenerateRequest(model=UNCOND, seeds=[1], noise=pb.NoiseControl(strength=[1.0]))),
        INVALID,
        "noise.strength",
    ),
    "jpeg quality": (
        (
            "Generate",
            pb.GenerateRequest(
                model=UNCOND, seeds=[1], output=pb.OutputOptions(format=pb.IMAGE_FORMAT_JPEG, jpeg_quality=0)
            ),
        ),
        INVALID,
        "output.jpeg_quality",
    ),
    "unknown format": (
        ("Generate", pb.GenerateRequest(model=UNCOND, seeds=[1], output=pb.OutputOptions(format=42))),
        INVALID,
        "output.format",
    ),
    "no plans": (synth(), INVALID, "plans"),
    "empty plan": (synth(pb.StylePlan()), INVALID, "plans[0].styles"),
    "source missing": (synth(pb.StylePlan(styles=[pb.LayerStyle()])), INVALID, "plans[0].styles[0].source"),
    "w wrong shape": (
        synth(src_all(pb.StyleSource(w=tensor((W_DIM + 1,))))),
        INVALID,
        "plans[0].styles[0].source.w.shape",
    ),
    "w wrong byte length": (
        synth(src_all(pb.StyleSource(w=tensor((W_DIM,), nbytes=7)))),
        INVALID,
        "plans[0].styles[0].source.w.data",
    ),
    "w NaN": (
        synth(src_all(pb.StyleSource(w=tensor((W_DIM,), float("nan"))))),
        INVALID,
        "plans[0].styles[0].source.w.data",
    ),
    "w+ Inf": (
        synth(src_all(pb.StyleSource(w_plus=tensor((NUM_WS, W_DIM), float("inf"))))),
        INVALID,
        "plans[0].styles[0].source.w_plus.data",
    ),
    "w+ as w": (
        synth(src_all(pb.StyleSource(w=tensor((NUM_WS, W_DIM))))),
        INVALID,
        "plans[0].styles[0].source.w.shape",
    ),
    "layer out of range": (
        synth(pb.StylePlan(styles=[pb.LayerStyle(source=seed()), pb.LayerStyle(layers=[2, NUM_WS], source=seed(2))])),
        INVALID,
        "plans[0].styles[1].layers[1]",
    ),
    "empty range": (
        synth(pb.StylePlan(styles=[pb.LayerStyle(start=3, stop=3, source=seed())])),
        INVALID,
        "plans[0].styles[0].stop",
    ),
    "layers and range": (
        synth(pb.StylePlan(styles=[pb.LayerStyle(layers=[1], start=0, source=seed())])),
        INVALID,
        "plans[0].styles[0]",
    ),
    "uncovered layers": (
        synth(pb.StylePlan(styles=[pb.LayerStyle(start=0, stop=4, source=seed())])),
        INVALID,
        "plans[0].styles",
    ),
    "seed source class": (synth(src_all(seed(1, cls=None))), INVALID, "plans[0].styles[0].source.seed.class_index"),
    "seed source psi": (
        synth(src_all(seed(1, psi=float("inf")))),
        INVALID,
        "plans[0].styles[0].source.seed.truncation.psi",
    ),
    "unknown w id": (synth(src_all(pb.StyleSource(w_id="w_0123"))), NOT_FOUND, "plans[0].styles[0].source.w_id"),
    "put w shape": (("PutW", pb.PutWRequest(model=COND, w=tensor((3, W_DIM)))), INVALID, "w.shape"),
    "put w missing": (("PutW", pb.PutWRequest(model=COND)), INVALID, "w"),
    "get w unknown": (("GetW", pb.GetWRequest(model=COND, w_id="w_ffff")), NOT_FOUND, "w_id"),
    "map nothing back": (("Map", pb.MapRequest(model=UNCOND, latents=[pb.Latent(seed=1)])), INVALID, "return_w"),
    "map no source": (
        ("Map", pb.MapRequest(model=UNCOND, latents=[pb.Latent()], return_w=True)),
        INVALID,
        "latents[0]",
    ),
    "map z shape": (
        ("Map", pb.MapRequest(model=UNCOND, latents=[pb.Latent(z=tensor((5,)))], return_w=True)),
        INVALID,
        "latents[0].z.shape",
    ),
    "grid col_styles": (
        (
            "StyleMixGrid",
            pb.StyleMixGridRequest(model=UNCOND, rows=[seed(1, None)], cols=[seed(2, None)], col_styles=[0, 40]),
        ),
        INVALID,
        "col_styles[1]",
    ),
    "grid too large": (
        (
            "StyleMixGrid",
            pb.StyleMixGridRequest(model=UNCOND, rows=[seed(1, None)] * 8, cols=[seed(2, None)] * 8, compose=True),
        ),
        INVALID,
        "cols",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request(server: ServerProcess, case: str) -> None:
    (method, request), code, field = CASES[case]
    with pytest.raises(grpc.RpcError) as e:
        getattr(server.stub(), method)(request, timeout=10)
    assert e.value.code() == code, e.value.details()
    assert (e.value.details() or "").startswith(field + ":"), e.value.details()


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.StreamGenerateRequest(model=UNCOND), "work"),
        (pb.StreamGenerateRequest(model=UNCOND, seeds=pb.SeedRange(start=5, stop=5)), "seeds.stop"),
        (pb.StreamGenerateRequest(model=UNCOND, seeds=pb.SeedRange(start=0, stop=2**32 + 1)), "seeds.stop"),
        (pb.StreamGenerateRequest(model=COND, seeds=pb.SeedRange(start=0, stop=3)), "class_index"),
        (pb.StreamGenerateRequest(model=UNCOND, plans=pb.PlanList(plans=[pb.StylePlan()])), "plans.plans[0].styles"),
    ],
)
def test_bad_stream(server: ServerProcess, request_: pb.StreamGenerateRequest, field: str) -> None:
    with pytest.raises(grpc.RpcError) as e:
        list(server.stub().StreamGenerate(request_, timeout=10))
    assert e.value.code() == INVALID and (e.value.details() or "").startswith(field + ":"), e.value.details()


def test_the_server_lives_on(server: ServerProcess) -> None:
    """After every bad request above, the server still serves and counted each failure by code."""
    stub = server.stub()
    assert len(stub.Generate(pb.GenerateRequest(model=UNCOND, seeds=[1, 2])).images) == 2
    m = server.metrics()

    def count(code: str, method: str) -> float:  # All models (the series carry a model label).
        prefix = f'styleserve_requests_total{{code="{code}",method="{method}",'
        return sum(v for k, v in m.items() if k.startswith(prefix))

    assert count("INVALID_ARGUMENT", "Synthesize") >= 10
    assert count("NOT_FOUND", "GetW") >= 1
    assert count("INTERNAL", "Synthesize") == 0
    assert server.proc.poll() is None


def test_oversized_message_is_refused(start_server: Callable[..., ServerProcess], repo: Path) -> None:
    s = start_server(repo, "--max-message-bytes", str(2**20))
    big = tensor((300_000,))  # 1.2 MB > 1 MiB
    with pytest.raises(grpc.RpcError) as e:
        s.stub().PutW(pb.PutWRequest(model=COND, w=big), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert s.health() == 1
