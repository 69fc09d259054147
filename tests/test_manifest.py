"""model.json validation (styleserve.manifest): generated hostile manifests, paths and JSON bombs.

The base is the real manifest of a session export; each example breaks it one way and the loader
must raise ManifestError ``<where>: <field>: <problem>`` - never another exception.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from styleserve.errors import ManifestError
from styleserve.manifest import (
    MANIFEST_NAME,
    MAX_JSON_DEPTH,
    MAX_MANIFEST_BYTES,
    ModelManifest,
    check_relative_path,
    parse_manifest,
    resolve_inside,
)

WHERE = "/models/victim/model.json"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="session")
def base(tiny_cond_model: Path) -> dict[str, Any]:
    d: dict[str, Any] = json.loads((tiny_cond_model / MANIFEST_NAME).read_text())
    ModelManifest.from_dict(d, WHERE)  # the export itself is valid
    return d


def put(d: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(d)
    *parents, last = path.split(".")
    node: Any = out
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    node[int(last) if last.isdigit() else last] = value
    return out


def delete(d: dict[str, Any], path: str) -> dict[str, Any]:
    out = copy.deepcopy(d)
    *parents, last = path.split(".")
    node: Any = out
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    del node[last]
    return out


def refused(d: dict[str, Any], field: str) -> str:
    with pytest.raises(ManifestError) as e:
        ModelManifest.from_dict(d, WHERE)
    msg = str(e.value)
    assert msg.startswith(f"{WHERE}: ") and field in msg and "\n" not in msg, (field, msg)
    return msg


# -------------------------------------------------------------------------------- strategies

not_int = st.one_of(
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
not_number = st.one_of(st.booleans(), st.text(max_size=5), st.none(), st.lists(st.floats(), max_size=2))
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
escaping_path = st.one_of(
    st.lists(st.sampled_from(["a", "b.onnx", "."]), max_size=3).flatmap(
        lambda parts: st.permutations([*parts, ".."]).map("/".join)
    ),
    st.text(min_size=1, max_size=10).map(lambda t: "/" + t),
    st.sampled_from(["", ".", "./", "C:/x.onnx", "C:x.onnx", "a\\..\\b", "a\x00b", "\\\\server\\x", "a\nb"]),
)
# Required fields, and the nested ones, whose deletion must be refused.
REQUIRED = [
    "format_version", "name", "architecture", "z_dim", "c_dim", "w_dim", "num_ws", "img_resolution",
    "img_channels", "w_avg", "mapping", "synthesis", "ws_layers", "noise_inputs", "mapping.file",
    "synthesis.inputs", "synthesis.outputs", "ws_layers.0.index", "ws_layers.3.layers", "noise_inputs.2.resolution",
    "noise_inputs.0.name",
]  # fmt: skip
INT_FIELDS = {  # field -> (smallest valid, largest valid)
    "z_dim": (1, 4096),
    "c_dim": (0, 65536),
    "w_dim": (1, 4096),
    "num_ws": (1, 64),
    "img_resolution": (4, 4096),
    "img_channels": (1, 4),
    "ws_layers.1.resolution": (1, 32),
    "noise_inputs.1.resolution": (1, 32),
}


def hostile(base: dict[str, Any]) -> st.SearchStrategy[tuple[dict[str, Any], str]]:
    """(a broken manifest, the field its error must name)."""
    ints = st.sampled_from(sorted(INT_FIELDS)).flatmap(
        lambda f: st.one_of(
            not_int,
            st.integers(max_value=INT_FIELDS[f][0] - 1),
            st.integers(min_value=INT_FIELDS[f][1] + 1),
        ).map(lambda v: (put(base, f, v), f.replace(".1.", "[1].")))
    )
    deletions = st.sampled_from(REQUIRED).map(lambda f: (delete(base, f), f.split(".")[0]))
    w_avg = st.one_of(
        st.tuples(st.integers(0, 31), st.one_of(not_number, non_finite)).map(
            lambda iv: (put(base, f"w_avg.{iv[0]}", iv[1]), f"w_avg[{iv[0]}]")
        ),
        st.integers(0, 31).map(lambda n: (put(base, "w_avg", base["w_avg"][:n]), "w_avg")),
        not_int.filter(lambda v: not isinstance(v, list)).map(lambda v: (put(base, "w_avg", v), "w_avg")),
    )
    paths = st.tuples(
        st.sampled_from(["mapping.file", "synthesis.file", "synthesis_fp16.file", "noise_const_file"]), escaping_path
    ).map(lambda fv: (put(base, fv[0], fv[1]), fv[0]))
    names = st.one_of(
        st.sampled_from(["", " demo", "demo ", "de\nmo", "x" * 129, "\x00"]),
        not_number.filter(lambda v: not isinstance(v, str)),
    ).map(lambda v: (put(base, "name", v), "name"))
    truncation = st.one_of(
        st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)).map(
            lambda v: (put(base, "truncation", v), "truncation")
        ),
        st.one_of(non_finite, st.text(max_size=3), st.booleans(), st.floats(min_value=101, max_value=1e300)).map(
            lambda v: (put(base, "truncation.psi", v), "truncation.psi")
        ),
        st.one_of(st.integers(max_value=-1), st.integers(min_value=65), st.floats(), st.booleans()).map(
            lambda v: (put(base, "truncation.cutoff", v), "truncation.cutoff")
        ),
    )
    others = st.sampled_from(
        [
            (put(base, "format_version", 2), "format_version"),
            (put(base, "architecture", "biggan"), "architecture"),
            (put(base, "ws_layers.2.index", 5), "ws_layers[2].index"),
            (put(base, "noise_inputs.1.name", base["noise_inputs"][0]["name"]), "noise_inputs"),
            (put(base, "noise_inputs", base["noise_inputs"] * 20), "noise_inputs"),
            (put(base, "mapping.inputs", ["z"]), "mapping.inputs"),
            (put(base, "synthesis.outputs", ["image"]), "synthesis.outputs"),
            (put(base, "default_noise_mode", "loud"), "default_noise_mode"),
            (put(base, "noise_modes", []), "noise_modes"),
            (put(base, "source.files_sha256", {"mapping.onnx": "00"}), "source.files_sha256"),
            (put(base, "source.files_sha256", {"../x": "0" * 64}), "source.files_sha256"),
            (put(base, "source", []), "source"),
            (put(base, "img_resolution", 48), "img_resolution"),
        ]
    )
    return st.one_of(ints, deletions, w_avg, paths, names, truncation, others)


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)


def field_paths(d: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else ()
    for k, v in items:
        if "." in str(k):  # file names in source.files_sha256: not addressable by a dotted path
            continue
        path = f"{prefix}.{k}" if prefix else str(k)
        out.append(path)
        if not (isinstance(v, list) and len(v) > 8):  # not every w_avg entry
            out += field_paths(v, path)
    return out


# -------------------------------------------------------------------------------------- tests


def test_hostile_manifests_are_refused_naming_the_field(base: dict[str, Any]) -> None:
    @FAST
    @given(hostile(base))
    def check(case: tuple[dict[str, Any], str]) -> None:
        refused(*case)

    check()


def test_any_value_anywhere_is_valid_or_a_manifest_error(base: dict[str, Any]) -> None:
    """Random JSON values at random places: the loader returns a manifest or raises ManifestError, nothing else."""
    paths = field_paths(base)

    @FAST
    @given(st.sampled_from(paths), json_value)
    def check(path: str, value: Any) -> None:
        try:
            m = ModelManifest.from_dict(put(base, path, value), WHERE)
        except ManifestError as exc:
            assert str(exc).startswith(f"{WHERE}: ")
        else:
            assert len(m.w_avg) == m.w_dim and len(m.ws_layers) == m.num_ws and all(map(math.isfinite, m.w_avg))

    check()


@settings(max_examples=40, deadline=None)
@given(st.integers(MAX_JSON_DEPTH, 300_000), st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_refused_never_recursion_error(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    raw = ('{"source": ' + opener * depth + "1" + closer * depth + "}").encode()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / MANIFEST_NAME).write_bytes(raw)
        with pytest.raises(ManifestError, match="nested too deep" if len(raw) <= MAX_MANIFEST_BYTES else "larger than"):
            ModelManifest.load(tmp)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1" * 5000]))
def test_non_finite_and_huge_numbers_are_refused(token: str) -> None:
    with pytest.raises(ManifestError, match="cannot parse"):
        parse_manifest(f'{{"w_avg": [{token}]}}'.encode(), WHERE)


def test_huge_manifest_is_refused_before_parsing(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_bytes(b" " * MAX_MANIFEST_BYTES + b"{}")
    with pytest.raises(ManifestError, match="refused before parsing"):
        ModelManifest.load(tmp_path)
    for bad in (b"\xff\xfe", b"[]", b"{", b"{}"):
        (tmp_path / MANIFEST_NAME).write_bytes(bad)
        with pytest.raises(ManifestError, match=str(tmp_path)):
            ModelManifest.load(tmp_path)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", ".", "..", "m.onnx"]), min_size=1, max_size=5))
def test_relative_paths_with_dotdot_are_refused(parts: list[str]) -> None:
    text = "/".join(parts)
    if ".." in parts or all(p == "." for p in parts):
        with pytest.raises(ManifestError, match=r"^/models/victim/model.json: mapping.file: "):
            check_relative_path(text, WHERE, "mapping.file")
    else:
        assert check_relative_path(text, WHERE, "mapping.file") == text


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["inside", "outside", "inside-dir", "up", "loop", "dangling"]), min_size=1, max_size=3))
def test_symlink_chains_resolve_inside_or_are_refused(hops: list[str]) -> None:
    """A chain of symlinks ending at a file: served only if the final target is a regular file in the model dir."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, elsewhere = root / "model", root / "elsewhere"
        (model / "sub").mkdir(parents=True)
        elsewhere.mkdir()
        for d in (model, model / "sub", elsewhere):
            (d / "real.onnx").write_bytes(b"x")
        link = model / "link0"
        for i, hop in enumerate(hops):
            nxt = model / f"link{i + 1}"
            last = i == len(hops) - 1
            target = {
                "inside": nxt if not last else model / "real.onnx",
                "inside-dir": nxt if not last else Path("sub") / "real.onnx",
                "outside": elsewhere / "real.onnx",
                "up": Path("..") / "elsewhere" / "real.onnx",
                "loop": link,
                "dangling": model / "nothing",
            }[hop]
            os.symlink(target, model / f"link{i}")
            if hop in ("outside", "up", "loop", "dangling"):
                break
        bad = next((h for h in hops if h in ("outside", "up", "loop", "dangling")), None)
        if bad is None:
            got = resolve_inside(model, "link0", WHERE, "synthesis.file")
            assert got.is_relative_to(model.resolve()) and got.name == "real.onnx"
        else:
            with pytest.raises(ManifestError, match=r"^/models/victim/model.json: synthesis.file: "):
                resolve_inside(model, "link0", WHERE, "synthesis.file")
