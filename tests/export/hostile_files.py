"""Builders of hostile checkpoint files, one per class of attack (used by the tests and bench/hostile_export.py).

Each builder writes one file (or model directory) under ``out`` and returns its path. They are raw byte
streams, not the output of a pickler, so they can say what no pickler would.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

P2 = b"\x80\x02"
P4 = b"\x80\x04"


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def binint(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def long1(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def bytearray_call(out: Path) -> Path:
    """``builtins.bytearray(1 << 30)``: 30 bytes that would allocate a GiB."""
    return _write(out / "bytearray.pkl", P2 + glob("builtins", "bytearray") + binint(1 << 30) + b"\x85R.")


def binbytes8_header(out: Path) -> Path:
    """BINBYTES8 claiming 2**40 bytes."""
    return _write(out / "binbytes8.pkl", P4 + b"\x8e" + struct.pack("<Q", 1 << 40) + b"x" * 16 + b".")


def binunicode8_header(out: Path) -> Path:
    return _write(out / "binunicode8.pkl", P4 + b"\x8d" + struct.pack("<Q", 1 << 40) + b"x" * 16 + b".")


def long4_header(out: Path) -> Path:
    return _write(out / "long4.pkl", P2 + b"\x8b" + struct.pack("<i", 2**31 - 1) + b"\x01" * 16 + b".")


def frame_header(out: Path) -> Path:
    return _write(out / "frame.pkl", P4 + b"\x95" + struct.pack("<Q", 1 << 40) + b"N.")


def memo_growth(out: Path, size: int = 8 << 20) -> Path:
    """NONE + MEMOIZE repeated: every 2 bytes add a stack slot and a memo entry."""
    n = size // 2
    return _write(out / "memo.pkl", P4 + b"N\x94" * n + b".")


def billion_laughs(depth: int = 40) -> bytes:
    """Lists that reference each other: l_i = [l_{i-1}, l_{i-1}] (2**depth leaves), as pickle opcodes."""
    ops = [P2, b"]q\x00"]  # l_0 = [], memo 0
    for i in range(1, depth + 1):
        ops.append(b"(h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"lq" + bytes([i]))
    return b"".join(ops)


def laughs_pickle(out: Path) -> Path:
    """A dict whose value is a 2**40-leaf list DAG, as an official-looking pickle top level."""
    body = billion_laughs(40)
    return _write(out / "laughs.pkl", body + b"0" + b"}q\x70X\x01\x00\x00\x00xh\x28s.")


def tuple_hash_bomb(out: Path, depth: int = 60) -> Path:
    """A tuple DAG used as a dict key: hashing it visits 2**depth tuples."""
    ops = [P2, b")q\x00"]
    for i in range(1, depth + 1):
        ops.append(b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"\x86q" + bytes([i]))
    ops.append(b"0}h" + bytes([depth]) + b"Ns.")
    return _write(out / "tuplehash.pkl", b"".join(ops))


def set_of_huge_ints(out: Path) -> Path:
    big = (1 << 4_000_000) - 1
    return _write(out / "bigint_set.pkl", P2 + b"(" + long1(0)[0:0] + _long4(big) + b"\x91.")


def _long4(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8b" + struct.pack("<i", len(raw)) + raw


def numpy_shape_overflow(out: Path) -> Path:
    """A numpy array whose shape product overflows int64 and exceeds the 8-byte payload."""
    shape = b"(" + b"".join(_long4(2**62) for _ in range(3)) + b"t"
    dtype = (
        glob("numpy", "dtype")
        + b"X\x02\x00\x00\x00f8\x89\x88\x87R"
        + b"(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    arr = glob("numpy.core.multiarray", "_reconstruct") + glob("numpy", "ndarray") + b"K\x00\x85C\x01b\x87R"
    state = b"(K\x01" + shape + dtype + b"\x89C\x08" + b"\x00" * 8 + b"tb"
    return _write(out / "numpy_shape.pkl", P2 + arr + state + b".")


def codecs_encode(out: Path) -> Path:
    """``_codecs.encode`` of a 4 MB string to utf-8, 64 times over (memoized and re-encoded)."""
    s = "\u20ac" * (1 << 20)  # 3 MiB of UTF-8
    raw = s.encode("utf-8")
    body = P4 + b"\x8d" + struct.pack("<Q", len(raw)) + raw + b"\x94" + b"("
    body += (glob("_codecs", "encode") + b"h\x00X\x05\x00\x00\x00utf-8\x86R") * 200
    return _write(out / "codecs.pkl", body + b"l.")


def torch_size_view(out: Path) -> Path:
    """A stride-0 view of a 4-byte storage claiming 2**40 elements, in a zip torch file."""
    return _torch_zip(out / "view.pt", b"storage_view")


def _pkl_view(size: tuple[int, ...], stride: tuple[int, ...], numel: int = 1) -> bytes:
    storage = glob("torch", "FloatStorage")
    pid = (
        b"(X\x07\x00\x00\x00storageq\x00" + storage + b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpu" + _long4(numel) + b"tQ"
    )

    def tup(xs: tuple[int, ...]) -> bytes:
        return b"(" + b"".join(_long4(x) for x in xs) + b"t"

    return (
        P2 + b"}X\x01\x00\x00\x00w" + glob("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + binint(0)
        + tup(size) + tup(stride) + b"\x89" + glob("collections", "OrderedDict") + b")RtR" + b"s."
    )  # fmt: skip


def _torch_zip(path: Path, what: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", _pkl_view((1 << 20, 1 << 20), (0, 0)))
        zf.writestr("archive/data/0", b"\x00" * 4)
        zf.writestr("archive/version", b"3\n")
    return path


def zip_byteorder_bomb(out: Path, inflated: int = 2 << 30) -> Path:
    """A ~2 MB torch zip whose ``byteorder`` record inflates to ``inflated`` bytes."""
    path = out / "byteorder_bomb.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", P2 + b"}.")
        zf.writestr("archive/byteorder", b"little")
    # Write the deflated member by hand-streaming so the builder itself stays small in memory.
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("archive/data.pkl", P2 + b"}.")
        info = zipfile.ZipInfo("archive/byteorder")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as rec:
            chunk = b"l" * (1 << 22)
            for _ in range(inflated // len(chunk)):
                rec.write(chunk)
    return path


def zip_many_members(out: Path, members: int = 100_000) -> Path:
    path = out / "many_members.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", P2 + b"}.")
        for i in range(members):
            zf.writestr(f"archive/data/{i}", b"")
    return path


def zip_data_pkl_bomb(out: Path, inflated: int = 2 << 30) -> Path:
    """data.pkl deflated from ``inflated`` bytes of a valid-looking stream."""
    path = out / "datapkl_bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        info = zipfile.ZipInfo("archive/data.pkl")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as rec:
            rec.write(P4 + b"\x8e" + struct.pack("<Q", inflated))
            chunk = b"\x00" * (1 << 22)
            for _ in range(inflated // len(chunk)):
                rec.write(chunk)
            rec.write(b".")
    return path


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def legacy_storage_claim(out: Path) -> Path:
    """A legacy torch stream whose storage claims 2**40 floats."""
    f = io.BytesIO()
    for obj in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(obj, f, protocol=2)
    f.write(_pkl_view((4,), (1,), numel=1 << 40))
    pickle.dump(["0"], f, protocol=2)
    f.write(struct.pack("<q", 1 << 40) + b"\x00" * 64)
    return _write(out / "legacy_claim.pt", f.getvalue())


def load_from_bytes_nesting(out: Path, depth: int = 30) -> Path:
    """``torch.storage._load_from_bytes`` whose bytes hold another ``_load_from_bytes``, ``depth`` deep."""
    inner = b""
    for _ in range(depth):
        f = io.BytesIO()
        for obj in (LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        if inner:
            f.write(P2 + glob("torch.storage", "_load_from_bytes") + b"C" if len(inner) < 256 else P2
                    + glob("torch.storage", "_load_from_bytes") + b"B" + struct.pack("<I", len(inner)))  # fmt: skip
            if len(inner) < 256:
                f.write(bytes([len(inner)]))
            f.write(inner + b"\x85R.")
        else:
            f.write(P2 + b"N.")
        pickle.dump([], f, protocol=2)
        inner = f.getvalue()
    body = P2 + glob("torch.storage", "_load_from_bytes") + b"B" + struct.pack("<I", len(inner)) + inner + b"\x85R."
    return _write(out / "nested_bytes.pkl", body)


def config_dir(out: Path, name: str, config: str) -> Path:
    """A styleserve model directory whose config.json is ``config`` (weights: an empty safetensors file)."""
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"__metadata__": {"format": "styleserve"}}).encode()
    (d / "weights.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    (d / "config.json").write_text(config)
    return d


def native_config(**overrides: object) -> dict[str, object]:
    synthesis: dict[str, object] = {
        "w_dim": 8, "img_resolution": 8, "img_channels": 3, "channels": [8, 8], "architecture": "skip",
        "conv_clamp": None, "resample_filter": [1, 3, 3, 1], "use_noise": True, "activation": "lrelu",
        "kernel_size": 3,
    }  # fmt: skip
    mapping: dict[str, object] = {
        "z_dim": 8, "c_dim": 0, "w_dim": 8, "num_ws": 4, "num_layers": 1, "embed_features": 0,
        "layer_features": 0, "activation": "lrelu", "lr_multiplier": 0.01,
    }  # fmt: skip
    for k, v in overrides.items():
        (synthesis if k in synthesis else mapping)[k] = v
    return {"mapping": mapping, "synthesis": synthesis}


def config_deep(out: Path) -> Path:
    return config_dir(out, "deep_config", "[" * 200_000 + "]" * 200_000)


def config_inf_resolution(out: Path) -> Path:
    return config_dir(out, "inf_config", json.dumps(native_config(img_resolution=float("inf"))))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


CLASSES: dict[str, Callable[[Path], Path]] = {
    "bytearray(1<<30)": bytearray_call,
    "BINBYTES8 2**40": binbytes8_header,
    "BINUNICODE8 2**40": binunicode8_header,
    "LONG4 2**31": long4_header,
    "FRAME 2**40": frame_header,
    "memo growth 8 MB": memo_growth,
    "list DAG 2**40": laughs_pickle,
    "tuple-key hash DAG": tuple_hash_bomb,
    "numpy shape overflow": numpy_shape_overflow,
    "_codecs.encode x200": codecs_encode,
    "stride-0 view 2**40": torch_size_view,
    "zip byteorder 2 GB": zip_byteorder_bomb,
    "zip data.pkl 2 GB": zip_data_pkl_bomb,
    "zip 100k members": zip_many_members,
    "legacy storage 2**40": legacy_storage_claim,
    "_load_from_bytes x30": load_from_bytes_nesting,
    "config.json 200k deep": config_deep,
    "config.json inf res": config_inf_resolution,
}
"""Name -> builder of every hostile file class the bench measures (the tests build smaller ones too)."""
