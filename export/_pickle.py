"""Restricted unpickling for checkpoints: pickles are read as data, never as code.

Official StyleGAN ``.pkl`` files and ``torch.save`` files are pickles, and a pickle can name any
importable callable (``os.system``, ``builtins.eval``, ...) and call it while loading. This module
reads them with a pure-Python :class:`pickle._Unpickler` subclass, :class:`RestrictedUnpickler`,
that never imports anything:

* ``find_class`` (GLOBAL / STACK_GLOBAL / INST, and the EXT opcodes, which are refused outright)
  looks the name up in an explicit allow-list, :data:`ALLOWED_GLOBALS` plus the storage-type and
  dtype families listed there, and returns *our own* stand-in for it; every other name raises
  :class:`~styleserve.errors.UnsafePickleError` ("refused global 'posix.system'").
* REDUCE, INST/OBJ and NEWOBJ only call stand-ins from the callable allow-list. Some allowed
  names are values, not callables (``numpy.ndarray``, ``torch.FloatStorage``, ``torch.Tensor``):
  a pickle that calls one is refused ("refused call of 'numpy.ndarray'").
* BUILD (``__setstate__``) only runs on our own record types, and sets plain data attributes on
  ``OrderedDict`` (``state_dict()`` carries ``_metadata``); never on tensors or anything else.

What the stand-ins build:

* ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` -> :class:`PersistentObject`, a
  plain record of ``class_name`` and ``state`` (the pickled module ``__dict__``). The embedded
  ``module_src`` is never executed, only its length is kept.
* ``torch._utils._rebuild_tensor_v2`` / ``_v3`` / ``_rebuild_tensor`` / ``_rebuild_parameter``
  (``_with_state``), ``torch._tensor._rebuild_from_type_v2`` -> plain CPU tensors, strided views of
  storages. Storages come from ``torch.storage._load_from_bytes(bytes)`` (plain pickles of tensors;
  the bytes are a legacy ``torch.save`` stream read by :func:`load_torch_legacy`, recursively with
  this same unpickler) or from the ``persistent_load`` hooks of :func:`load_torch_zip` and
  :func:`load_torch_legacy`. Data are copied out of the byte strings; locations (``cuda:0``) are
  ignored.
* numpy (1.x ``numpy.core.multiarray`` and 2.x ``numpy._core.multiarray`` names alike) arrays,
  scalars and dtypes -> :class:`NumpyArray` records (``.value`` is the array), numpy scalars and
  :class:`NumpyDType` records; object arrays hold only already-unpickled (safe) objects;
  structured dtypes are refused.
* ``dnnlib.tflib.network.Network`` (TensorFlow StyleGAN pickles: created by NEWOBJ, filled by
  BUILD) -> :class:`TFNetwork`, a record of the ``__getstate__`` dict; the pickled
  ``build_module_src`` is never executed (the official ``__setstate__`` would ``exec`` it).
* ``dnnlib.EasyDict`` / ``dnnlib.util.EasyDict`` -> :class:`EasyDict` (a ``dict``),
  ``argparse.Namespace`` -> :class:`Namespace` (a ``dict`` of the attributes),
  ``collections.OrderedDict``, ``builtins`` set/frozenset/slice/complex/bytearray -> themselves,
  ``_codecs.encode`` (protocol-2 ``bytes``) -> ``str.encode`` for latin-1/utf-8/ascii,
  ``copyreg._reconstructor`` / ``copyreg.__newobj__`` -> only for the record classes above,
  ``torch.Size`` -> tuple, ``torch.device`` -> str, torch dtypes / memory formats / layouts ->
  themselves (plain values).

Errors: :class:`UnsafePickleError` for refused globals and calls, :class:`CheckpointError` for
anything malformed (truncated streams, bad storage keys, out-of-bounds tensor views, ...).
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import io
import math
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar, Literal

import numpy as np
import torch

from styleserve.errors import CheckpointError, UnsafePickleError

__all__ = [
    "ALLOWED_GLOBALS",
    "BUDGET_FACTOR",
    "BUDGET_FIXED_BYTES",
    "EasyDict",
    "GlobalRef",
    "LoadBudget",
    "Namespace",
    "NumpyArray",
    "NumpyDType",
    "PersistentObject",
    "RestrictedUnpickler",
    "StorageType",
    "TFNetwork",
    "TorchStorage",
    "WalkBudget",
    "check_zip_directory",
    "describe",
    "load_budget",
    "load_torch_legacy",
    "load_torch_zip",
    "restricted_load",
    "restricted_loads",
]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""The magic number a legacy (non-zip) ``torch.save`` stream starts with."""
LEGACY_PROTOCOL = 1001
LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + LEGACY_MAGIC.to_bytes(10, "little") + b"."
"""The first 15 bytes of every legacy ``torch.save`` stream (the pickled magic number)."""


# ----------------------------------------------------------------------------
# Bounded cost: one budget per load, bounded descriptions, bounded walks.

BUDGET_FACTOR = 4
"""A load may allocate at most ``BUDGET_FACTOR * file size + BUDGET_FIXED_BYTES`` bytes (charged)."""
BUDGET_FIXED_BYTES = 256 * 2**20
OPCODE_COST = 128
"""Bytes charged for every pickle opcode: the stack slot, memo entry or small object it may create."""
ITEM_COST = 64
"""Bytes charged per element a stand-in copies into a new container (``set``, ``dict``, ``tuple``)."""
MAX_NESTED_LOADS = 1
"""``torch.storage._load_from_bytes`` streams may not themselves hold ``_load_from_bytes`` streams."""
MAX_ZIP_MEMBERS = 16384
"""Zip ``torch.save`` files with more members than this are refused before the directory is parsed."""
MAX_INDEX = 2**48
"""Largest tensor/array dimension, stride, offset or storage size accepted (elements)."""
MAX_KEY_INT_BITS = 64
MAX_KEY_TUPLE_LEN = 16
MAX_COMPOSITE_KEYS = 4096
"""Dict keys / set elements per load that are tuples, frozensets or complex numbers. Their hashes are not
randomised and can be made to collide (N keys of one hash cost N**2 / 2 comparisons in a dict: 30 000
colliding 2-tuples took 70 s in a 0.5 MB pickle), so a load may hash at most this many (~1 s worst case)."""
MAX_WALK_NODES = 100_000
"""Walks of untrusted data (JSON conversion of init kwargs, ...) visit at most this many nodes..."""
MAX_WALK_DEPTH = 32
"""... at most this deep ..."""
MAX_WALK_CHARS = 1 << 20
"""... and produce at most this many characters of strings."""
DESCRIBE_LIMIT = 60
"""Characters of an untrusted string quoted in an error message."""


class LoadBudget:
    """The bytes one checkpoint load may still allocate; every stand-in charges it *before* allocating.

    ``limit = BUDGET_FACTOR * file_size + BUDGET_FIXED_BYTES``. Charged: every byte read from a pickle
    stream, every pickle opcode (:data:`OPCODE_COST`), byte strings and containers built by stand-ins,
    storage data, and the elements of every tensor view (they are materialised later).
    """

    def __init__(self, file_size: int, *, factor: int = BUDGET_FACTOR, fixed: int = BUDGET_FIXED_BYTES) -> None:
        self.file_size = max(int(file_size), 0)
        self.limit = factor * self.file_size + fixed
        self.used = 0
        self.nested = 0
        self.composite_keys = 0  # Tuples, frozensets and complex numbers used as keys (MAX_COMPOSITE_KEYS).

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes < 0:
            raise CheckpointError(f"malformed checkpoint: negative size for {what}")
        self.used += nbytes
        if self.used > self.limit:
            raise CheckpointError(
                f"checkpoint needs more memory than its size allows ({what}): over {self.limit} bytes "
                f"({BUDGET_FACTOR} x file size {self.file_size} + {BUDGET_FIXED_BYTES >> 20} MiB)"
            )

    def remaining(self) -> int:
        return self.limit - self.used


_BUDGET: ContextVar[LoadBudget | None] = ContextVar("styleserve_load_budget", default=None)


@contextlib.contextmanager
def load_budget(file_size: int) -> Iterator[LoadBudget]:
    """Make a :class:`LoadBudget` for ``file_size`` the current one (a load already running keeps its own)."""
    outer = _BUDGET.get()
    if outer is not None:
        yield outer
        return
    budget = LoadBudget(file_size)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def _budget() -> LoadBudget:
    b = _BUDGET.get()
    if b is None:  # A stand-in called outside a load (tests): a fixed budget of its own.
        b = LoadBudget(0)
        _BUDGET.set(b)
    return b


def _charge(nbytes: int, what: str) -> None:
    _budget().charge(nbytes, what)


def _short(s: str, limit: int) -> str:
    return s if len(s) <= limit else s[:limit] + "..."


def describe(x: Any, limit: int = DESCRIBE_LIMIT) -> str:
    """A short description of an untrusted value for an error message; never walks a container.

    Strings and bytes are quoted truncated to ``limit`` characters, big ints by their bit length,
    containers by their type and length (short flat tuples/lists of scalars are shown), callables and
    allow-listed globals by name, anything else by its type name.
    """
    if x is None or isinstance(x, (bool, float, complex)):
        out = repr(x)
    elif isinstance(x, int):
        out = repr(x) if x.bit_length() <= 64 else f"an int of {x.bit_length()} bits"
    elif isinstance(x, (str, bytes, bytearray)):
        out = repr(x[:limit]) + ("..." if len(x) > limit else "")
    elif isinstance(x, np.generic) and x.dtype.kind in "biufc":
        out = repr(x.item())
    elif isinstance(x, (tuple, list)):
        if len(x) <= 8 and all(e is None or isinstance(e, (bool, int, float, str)) for e in x):
            inner = ", ".join(describe(e, 16) for e in x)
            out = f"({inner}{',' if len(x) == 1 else ''})" if isinstance(x, tuple) else f"[{inner}]"
        else:
            out = f"a {type(x).__name__} of {len(x)} items"
    elif isinstance(x, (dict, set, frozenset)):
        out = f"a {type(x).__name__} of {len(x)} items"
    elif isinstance(x, GlobalRef):
        out = repr(x.qualname)
    elif isinstance(x, StorageType):
        out = repr(x.name)
    elif isinstance(x, (PersistentObject, TFNetwork)):
        out = f"a {type(x).__name__} {describe(getattr(x, 'class_name', getattr(x, 'name', '')), 40)}"
    elif isinstance(x, torch.Tensor):
        out = f"a tensor of shape {describe(tuple(x.shape))}"
    elif isinstance(x, (type, torch.dtype)) or callable(x):
        mod = getattr(x, "__module__", None) or "?"
        out = repr(f"{mod}.{getattr(x, '__qualname__', type(x).__name__)}")
    else:
        out = f"a {type(x).__name__} object"
    return _short(out, 4 * limit)


class WalkBudget:
    """Counts the nodes, depth and characters of one walk over untrusted data; CheckpointError past a cap."""

    def __init__(
        self,
        what: str,
        *,
        max_nodes: int = MAX_WALK_NODES,
        max_depth: int = MAX_WALK_DEPTH,
        max_chars: int = MAX_WALK_CHARS,
    ) -> None:
        self.what = what
        self.max_nodes, self.max_depth, self.max_chars = max_nodes, max_depth, max_chars
        self.nodes = 0
        self.chars = 0

    def visit(self, depth: int) -> None:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise CheckpointError(f"{self.what}: more than {self.max_nodes} values (a shared or cyclic structure?)")
        if depth > self.max_depth:
            raise CheckpointError(f"{self.what}: nested more than {self.max_depth} deep")

    def text(self, s: str) -> str:
        self.chars += len(s)
        if self.chars > self.max_chars:
            raise CheckpointError(f"{self.what}: more than {self.max_chars} characters of text")
        return s

    def str_of(self, x: Any) -> str:
        """``str(x)`` for values whose text is bounded by their own size, else :func:`describe`."""
        if isinstance(x, (str, bytes, bytearray, complex, float, int, GlobalRef, StorageType, torch.dtype, np.dtype)):
            if isinstance(x, int) and x.bit_length() > 64:
                return self.text(describe(x))
            return self.text(str(x))
        if isinstance(x, (PersistentObject, TFNetwork)):
            return self.text(repr(x))
        return self.text(describe(x))


_OBJECT_HASH: Any = object.__hash__


def check_key(k: Any) -> None:
    """Refuse dict keys / set elements whose hashing or comparison could cost more than their size."""
    if k is None or isinstance(k, (str, bytes, bool, float)):
        return
    if isinstance(k, (tuple, frozenset, complex, np.complexfloating)):
        budget = _budget()
        budget.composite_keys += 1
        if budget.composite_keys > MAX_COMPOSITE_KEYS:
            raise CheckpointError(
                f"malformed pickle: more than {MAX_COMPOSITE_KEYS} dict keys or set elements are tuples, "
                "frozensets or complex numbers (their hashes can be made to collide)"
            )
    if isinstance(k, complex):
        return
    if isinstance(k, int):
        if k.bit_length() > MAX_KEY_INT_BITS:
            raise CheckpointError(f"malformed pickle: dict key or set element {describe(k)} is too large")
        return
    if isinstance(k, (tuple, frozenset)):  # Flat ones only: comparing colliding keys costs at most their length.
        if len(k) > MAX_KEY_TUPLE_LEN or not all(
            e is None or isinstance(e, (str, bytes, bool, float)) or (isinstance(e, int) and e.bit_length() <= 64)
            for e in k
        ):
            raise CheckpointError(f"malformed pickle: unsupported dict key or set element {describe(k)}")
        return
    if isinstance(k, np.generic):
        if k.dtype.itemsize > 16:
            raise CheckpointError(f"malformed pickle: dict key or set element {describe(k)} is too large")
        return
    if getattr(type(k), "__hash__", None) is _OBJECT_HASH or isinstance(k, (GlobalRef, StorageType, torch.dtype)):
        return  # Identity-hashed records and allow-listed values.
    raise CheckpointError(f"malformed pickle: unsupported dict key or set element {describe(k)}")


# ----------------------------------------------------------------------------
# Records the stand-ins build.


@dataclass(frozen=True, eq=False)
class PersistentObject:
    """What ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` stands for, as data.

    ``state`` is the pickled ``__dict__`` of the object (for an ``nn.Module``: ``_parameters``,
    ``_buffers``, ``_modules``, ``_init_kwargs``, plain attributes, ...). The class source that the
    official loader would ``exec`` is dropped; ``module_src_len`` says how long it was.
    """

    class_name: str
    state: dict[str, Any]
    module_src_len: int
    version: int = 6

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name!r}, {len(self.state)} state entries)"


class EasyDict(dict[Any, Any]):
    """Stand-in for ``dnnlib.EasyDict`` / ``dnnlib.util.EasyDict``: just a ``dict``."""

    def _pickle_build(self, state: Any) -> None:
        _update_from_build_state(self, state)


class Namespace(dict[Any, Any]):
    """Stand-in for ``argparse.Namespace``: a ``dict`` of its attributes."""

    def _pickle_build(self, state: Any) -> None:
        _update_from_build_state(self, state)


class TFNetwork:
    """Stand-in for ``dnnlib.tflib.network.Network`` (TensorFlow StyleGAN / StyleGAN2 pickles), as data.

    The official ``__setstate__`` ``exec``s the pickled ``build_module_src`` and builds a TF graph;
    this one only records the state: ``version``, ``name``, ``static_kwargs``, ``components`` (other
    :class:`TFNetwork` records), ``build_func_name`` and ``variables`` (``(name, value)`` pairs whose
    values are :class:`NumpyArray` records or numpy scalars). The module source is dropped; only its
    length is kept in ``build_module_src_len``.
    """

    def __init__(self) -> None:
        self.version: int = 0
        self.name: str = ""
        self.static_kwargs: dict[str, Any] = {}
        self.components: dict[str, Any] = {}
        self.build_func_name: str = ""
        self.build_module_src_len: int = 0
        self.variables: list[tuple[str, Any]] = []

    def _pickle_build(self, state: Any) -> None:
        if not isinstance(state, Mapping):
            raise CheckpointError(f"malformed TF network: state is a {type(state).__name__}")
        version = state.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise CheckpointError("malformed TF network: no version")
        name, func = state.get("name"), state.get("build_func_name")
        kwargs, comps, variables = state.get("static_kwargs", {}), state.get("components", {}), state.get("variables")
        if not isinstance(name, str) or not isinstance(func, str):
            raise CheckpointError("malformed TF network: name or build_func_name is not a string")
        if not isinstance(kwargs, Mapping) or not isinstance(comps, Mapping) or not isinstance(variables, list):
            raise CheckpointError(f"malformed TF network {name!r}: bad static_kwargs, components or variables")
        for item in variables:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise CheckpointError(f"malformed TF network {name!r}: variables are not (name, value) pairs")
        src = state.get("build_module_src")
        _charge(ITEM_COST * (len(kwargs) + len(comps) + len(variables)), "TF network state")
        self.version = version
        self.name = name
        self.static_kwargs = dict(kwargs)
        self.components = dict(comps)
        self.build_func_name = func
        self.build_module_src_len = len(src) if isinstance(src, (str, bytes)) else 0
        self.variables = list(variables)

    def __repr__(self) -> str:
        return f"TFNetwork({self.name!r}, {self.build_func_name!r}, {len(self.variables)} variables)"


def _update_from_build_state(target: dict[Any, Any], state: Any) -> None:
    # BUILD state of a plain object: its __dict__, or (__dict__, slots) as a 2-tuple.
    parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
    for part in parts:
        if part is None:
            continue
        if not isinstance(part, Mapping):
            raise CheckpointError(f"malformed pickle: BUILD state of {type(target).__name__} is {type(part).__name__}")
        _charge(ITEM_COST * len(part), "BUILD state")
        target.update(part)


@dataclass(frozen=True)
class GlobalRef:
    """An allowed global that is a value only (a class used as an argument), never called."""

    module: str
    name: str

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return f"<global {self.qualname}>"


@dataclass(frozen=True)
class StorageType:
    """A torch storage class named in a pickle (``torch.FloatStorage``, ``torch.UntypedStorage``)."""

    name: str
    dtype: torch.dtype

    def __repr__(self) -> str:
        return f"<storage type {self.name}>"


@dataclass(eq=False)
class TorchStorage:
    """A storage rebuilt from bytes: ``flat`` is a 1-D CPU tensor (possibly a view of another)."""

    dtype: torch.dtype
    flat: torch.Tensor
    untyped: bool = False


_DTYPE_SPEC = re.compile(r"^[<>|=]?[?bBhHiIlLqQpPefdgFDGSUVOMmc]\d*(\[[A-Za-z0-9]+\])?$")


@dataclass(eq=False)
class NumpyDType:
    """A pickled ``numpy.dtype``: the spec string plus the byte order from its BUILD state."""

    spec: str
    byteorder: str = "="

    def _pickle_build(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2:
            raise CheckpointError("malformed pickle: bad numpy dtype state")
        if state[1] not in ("<", ">", "=", "|"):
            raise CheckpointError(f"malformed pickle: numpy dtype byte order {describe(state[1])}")
        self.byteorder = str(state[1])
        names = state[3] if len(state) > 3 else None
        fields = state[4] if len(state) > 4 else None
        if names is not None or fields is not None:
            raise CheckpointError("structured numpy dtypes are not supported in checkpoints")

    def resolve(self) -> np.dtype[Any]:
        try:
            dt = np.dtype(self.spec)
        except TypeError as e:
            raise CheckpointError(f"unsupported numpy dtype {self.spec!r}") from e
        if self.byteorder == "<" and dt.byteorder != "|":
            dt = dt.newbyteorder("<")
        elif self.byteorder == ">" and dt.byteorder != "|":
            dt = dt.newbyteorder(">")
        return dt


@dataclass(eq=False)
class NumpyArray:
    """A pickled ``numpy.ndarray``; ``value`` is filled by BUILD (``ndarray.__setstate__``'s state)."""

    value: np.ndarray[Any, Any] | None = field(default=None)

    def _pickle_build(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise CheckpointError("malformed pickle: bad numpy array state")
        shape, dtype, is_fortran, raw = state[-4:]
        if not isinstance(dtype, NumpyDType):
            raise CheckpointError("malformed pickle: numpy array without a dtype")
        self.value = _numpy_array(shape, dtype.resolve(), bool(is_fortran), raw)


def _numpy_array(shape: Any, dt: np.dtype[Any], fortran: bool, raw: Any) -> np.ndarray[Any, Any]:
    if (
        not isinstance(shape, tuple)
        or len(shape) > 32
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_INDEX for s in shape)
    ):
        raise CheckpointError(f"malformed pickle: bad numpy shape {describe(shape)}")
    dims: tuple[int, ...] = shape
    count = math.prod(dims)
    order: Literal["C", "F"] = "F" if fortran else "C"
    if count == 0 and any(d > 2**31 for d in dims):
        raise CheckpointError(f"malformed pickle: bad numpy shape {describe(shape)}")
    if dt.hasobject:
        if not isinstance(raw, list) or len(raw) != count:
            raise CheckpointError("malformed pickle: bad numpy object array payload")
        _charge(8 * count + 128, "numpy object array")
        arr = np.empty(count, dtype=object)
        for i, v in enumerate(raw):
            arr[i] = v
        return arr.reshape(dims, order=order)
    if isinstance(raw, str):
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != count * dt.itemsize:
        raise CheckpointError("malformed pickle: numpy array payload has the wrong size")
    _charge(2 * len(raw) + 128, "numpy array")
    return np.frombuffer(bytes(raw), dtype=dt, count=count).reshape(dims, order=order).copy()


# ----------------------------------------------------------------------------
# Stand-ins for allowed callables.


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    if not isinstance(meta, Mapping):
        raise CheckpointError("malformed persistent object: meta is not a dict")
    if meta.get("type") != "class":
        raise CheckpointError(f"unsupported persistent object type {meta.get('type')!r}")
    class_name = meta.get("class_name")
    state = meta.get("state")
    src = meta.get("module_src", "")
    if not isinstance(class_name, str) or not isinstance(state, Mapping):
        raise CheckpointError("malformed persistent object: missing class_name or state")
    version = meta.get("version", 0)
    _charge(ITEM_COST * len(state), "persistent object state")
    return PersistentObject(
        class_name=class_name,
        state=dict(state),
        module_src_len=len(src) if isinstance(src, (str, bytes)) else 0,
        version=int(version) if isinstance(version, int) else 0,
    )


def _codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if not isinstance(obj, str) or errors != "strict":
        raise UnsafePickleError("refused call of '_codecs.encode' with non-string arguments")
    if not isinstance(encoding, str) or encoding.lower().replace("_", "-") not in _ENCODINGS:
        raise UnsafePickleError(f"refused call of '_codecs.encode' with encoding {describe(encoding)}")
    _charge(4 * len(obj), "_codecs.encode")
    return obj.encode(encoding)


_ENCODINGS = ("latin1", "latin-1", "utf-8", "utf8", "ascii")


def _bytearray(source: Any = b"", encoding: Any = None, errors: Any = None) -> bytearray:
    # Never from an int (``bytearray(1 << 30)`` would allocate a GiB) or an iterable.
    if isinstance(source, (bytes, bytearray)) and encoding is None and errors is None:
        _charge(len(source), "builtins.bytearray")
        return bytearray(source)
    if isinstance(source, str) and isinstance(encoding, str) and errors in (None, "strict"):
        return bytearray(_codecs_encode(source, encoding))
    raise UnsafePickleError(f"refused call of 'builtins.bytearray' with {describe(source)}")


def _elements(iterable: Any, what: str) -> tuple[Any, ...]:
    if not isinstance(iterable, (list, tuple, set, frozenset)):
        raise UnsafePickleError(f"refused call of {what!r} with {describe(iterable)}")
    _charge(ITEM_COST * len(iterable), what)
    for e in iterable:
        check_key(e)
    return tuple(iterable)


def _set(iterable: Any = ()) -> set[Any]:
    return set(_elements(iterable, "builtins.set"))


def _frozenset(iterable: Any = ()) -> frozenset[Any]:
    return frozenset(_elements(iterable, "builtins.frozenset"))


def _scalar_arg(x: Any) -> bool:
    return (
        x is None
        or isinstance(x, (bool, float))
        or (isinstance(x, int) and x.bit_length() <= 64)
        or (isinstance(x, str) and len(x) <= 64)
    )


def _complex(real: Any = 0, imag: Any = 0) -> complex:
    if not (_scalar_arg(real) and _scalar_arg(imag)) or real is None or imag is None:
        raise UnsafePickleError(f"refused call of 'builtins.complex' with {describe(real)}, {describe(imag)}")
    return complex(real, imag)


def _slice(*args: Any) -> slice:
    if len(args) > 3 or not all(_scalar_arg(a) for a in args):
        raise UnsafePickleError("refused call of 'builtins.slice' with non-scalar arguments")
    return slice(*args)


for _f, _n in ((_bytearray, "bytearray"), (_set, "set"), (_frozenset, "frozenset"), (_complex, "complex"),
               (_slice, "slice")):  # fmt: skip
    _f.__module__, _f.__qualname__ = "builtins", _n


_RECORD_CLASSES: tuple[type, ...] = (EasyDict, Namespace, OrderedDict)
_OBJECT = GlobalRef("builtins", "object")
_DICT = GlobalRef("builtins", "dict")


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # copyreg._reconstructor is how protocols 0/1 pickle plain objects; only our records qualify.
    if cls is TFNetwork and base is _OBJECT and state is None:
        return TFNetwork()
    if not any(cls is c for c in _RECORD_CLASSES):
        raise UnsafePickleError(f"refused call of 'copyreg._reconstructor' for {_describe(cls)}")
    if base is not _OBJECT and base is not _DICT:
        raise UnsafePickleError(f"refused call of 'copyreg._reconstructor' with base {_describe(base)}")
    obj = cls()
    if state is not None:
        if not isinstance(state, Mapping):
            raise CheckpointError("malformed pickle: bad copyreg._reconstructor state")
        _charge(ITEM_COST * len(state), "copyreg._reconstructor state")
        obj.update(state)
    return obj


def _copyreg_newobj(cls: Any, *args: Any) -> Any:
    if cls is TFNetwork and not args:
        return TFNetwork()
    if not any(cls is c for c in _RECORD_CLASSES):
        raise UnsafePickleError(f"refused call of 'copyreg.__newobj__' for {_describe(cls)}")
    return cls.__new__(cls, *args)


def _torch_size(seq: Any = ()) -> tuple[int, ...]:
    if (
        not isinstance(seq, (tuple, list))
        or len(seq) > 64
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_INDEX for s in seq)
    ):
        raise CheckpointError(f"malformed pickle: bad torch.Size {describe(seq)}")
    return tuple(seq)


def _torch_device(*args: Any) -> str:
    if len(args) > 2 or not all(
        (isinstance(a, str) and len(a) <= 64) or (isinstance(a, int) and a.bit_length() <= 32) for a in args
    ):
        raise CheckpointError("malformed pickle: bad torch.device")
    return ":".join(str(a) for a in args)


def _check_index_tuple(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, list):
        value = tuple(value)
    if (
        not isinstance(value, tuple)
        or len(value) > 64
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise CheckpointError(f"malformed tensor: {name} is {describe(value)}")
    if any(v < 0 for v in value):
        raise CheckpointError(f"malformed tensor: negative {name} {describe(value)}")
    if any(v > MAX_INDEX for v in value):
        raise CheckpointError(f"malformed tensor: {name} {describe(value)} is implausibly large")
    return value


def _view(storage: Any, offset: Any, size: Any, stride: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A strided view of ``storage`` after checking it lies within the storage."""
    if not isinstance(storage, TorchStorage):
        raise CheckpointError(f"malformed tensor: storage is a {type(storage).__name__}")
    flat = storage.flat
    if dtype is not None and dtype != flat.dtype:
        if not isinstance(dtype, torch.dtype):
            raise CheckpointError("malformed tensor: bad dtype")
        if not storage.untyped and flat.dtype != torch.uint8:
            raise CheckpointError("malformed tensor: dtype does not match its typed storage")
        itemsize = torch.empty((), dtype=dtype).element_size()
        if flat.numel() % itemsize:
            raise CheckpointError("malformed tensor: storage size is not a multiple of the element size")
        flat = flat.view(dtype)
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_INDEX:
        raise CheckpointError(f"malformed tensor: storage offset {describe(offset)}")
    size = _check_index_tuple("size", size)
    stride = _check_index_tuple("stride", stride)
    if len(size) != len(stride):
        raise CheckpointError("malformed tensor: size and stride differ in length")
    numel = math.prod(size)
    if numel > 0:
        last = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True))
        if last >= flat.numel():
            raise CheckpointError(
                f"malformed tensor: view {describe(size)} / {describe(stride)} at offset {offset} exceeds its "
                f"storage of {flat.numel()}"
            )
    elif any(s > 2**31 for s in size):
        raise CheckpointError(f"malformed tensor: size {describe(size)} is implausibly large")
    # A view costs nothing now, but it is materialised later (float32, contiguous): charge it.
    _charge(numel * max(flat.element_size(), 4) + 256, "tensor view")
    return flat.as_strided(size, stride, flat.storage_offset() + offset)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> torch.Tensor:
    return _view(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    # requires_grad, hooks (always empty when saved) and metadata (conj/neg bits) are ignored.
    return _view(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    dtype: Any,
    metadata: Any = None,
) -> torch.Tensor:
    return _view(storage, storage_offset, size, stride, dtype=dtype)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("malformed parameter: data is not a tensor")
    return data


def _rebuild_parameter_with_state(data: Any, requires_grad: Any, backward_hooks: Any, state: Any) -> torch.Tensor:
    return _rebuild_parameter(data)


_TENSOR = GlobalRef("torch", "Tensor")
_PARAMETER = GlobalRef("torch.nn.parameter", "Parameter")
_TENSOR_REBUILDERS: tuple[Callable[..., torch.Tensor], ...] = (
    _rebuild_tensor,
    _rebuild_tensor_v2,
    _rebuild_tensor_v3,
    _rebuild_parameter,
    _rebuild_parameter_with_state,
)


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> torch.Tensor:
    # Tensors with Python attributes pickle as this; the attributes (state) are dropped.
    if not any(func is f for f in _TENSOR_REBUILDERS):
        raise UnsafePickleError(f"refused call of {_describe(func)} via torch._tensor._rebuild_from_type_v2")
    if new_type is not _TENSOR and new_type is not _PARAMETER:
        raise UnsafePickleError(f"refused tensor subclass {_describe(new_type)}")
    if not isinstance(args, tuple):
        raise CheckpointError("malformed pickle: bad _rebuild_from_type_v2 arguments")
    return func(*args)


def _rebuild_from_type(func: Any, new_type: Any, args: Any, dict_: Any) -> torch.Tensor:
    return _rebuild_from_type_v2(func, new_type, args, dict_)


def _load_from_bytes(b: Any) -> TorchStorage:
    """``torch.storage._load_from_bytes``: a storage as a legacy ``torch.save`` stream."""
    if not isinstance(b, (bytes, bytearray)):
        raise CheckpointError("malformed storage: _load_from_bytes without bytes")
    budget = _budget()
    if budget.nested >= MAX_NESTED_LOADS:
        raise CheckpointError("malformed storage: _load_from_bytes nested inside another")
    budget.nested += 1
    try:
        obj = load_torch_legacy(io.BytesIO(b), size_limit=len(b))
    finally:
        budget.nested -= 1
    if not isinstance(obj, TorchStorage):
        raise CheckpointError(f"malformed storage: the byte stream holds a {type(obj).__name__}")
    return obj


_NDARRAY = GlobalRef("numpy", "ndarray")


def _np_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> NumpyArray:
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"refused numpy array subtype {_describe(subtype)}")
    return NumpyArray()


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, NumpyDType):
        raise CheckpointError("malformed pickle: numpy scalar without a dtype")
    dt = dtype.resolve()
    if dt.hasobject:
        return data
    if isinstance(data, str):
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)) or len(data) != dt.itemsize:
        raise CheckpointError("malformed pickle: numpy scalar payload has the wrong size")
    _charge(2 * len(data) + 64, "numpy scalar")
    return np.frombuffer(bytes(data), dtype=dt, count=1)[0]


def _np_dtype(spec: Any, align: Any = False, copy: Any = False) -> NumpyDType:
    if not isinstance(spec, str) or len(spec) > 32 or not _DTYPE_SPEC.match(spec):
        raise CheckpointError(f"unsupported numpy dtype {describe(spec)}")
    return NumpyDType(spec)


def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> NumpyArray:
    # Protocol 5 arrays (in-band buffers); out-of-band buffers are not accepted.
    if not isinstance(dtype, NumpyDType):
        raise CheckpointError("malformed pickle: numpy buffer without a dtype")
    if isinstance(buf, memoryview):
        _charge(buf.nbytes, "numpy buffer")
        buf = buf.tobytes()
    return NumpyArray(_numpy_array(shape, dtype.resolve(), order == "F", buf))


# ----------------------------------------------------------------------------
# The allow-list.

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}
_UNTYPED_STORAGE_NAMES = ("UntypedStorage", "_UntypedStorage")

_TORCH_VALUE_NAMES = (
    # dtypes
    "float32", "float", "float64", "double", "float16", "half", "bfloat16", "complex32", "complex64",
    "cfloat", "complex128", "cdouble", "uint8", "int8", "int16", "short", "int32", "int", "int64",
    "long", "bool", "uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    # memory formats and layouts
    "contiguous_format", "channels_last", "channels_last_3d", "preserve_format", "strided", "sparse_coo",
)  # fmt: skip
_TORCH_VALUES: dict[str, Any] = {n: getattr(torch, n) for n in _TORCH_VALUE_NAMES if hasattr(torch, n)}

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    # StyleGAN (NVlabs) persistence and config dicts.
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("dnnlib.tflib.network", "Network"): TFNetwork,  # Only via NEWOBJ / copyreg + BUILD, never called.
    ("argparse", "Namespace"): Namespace,
    # Python containers and scalars.
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): _set,
    ("builtins", "frozenset"): _frozenset,
    ("builtins", "slice"): _slice,
    ("builtins", "complex"): _complex,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "object"): _OBJECT,
    ("builtins", "dict"): _DICT,
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
    ("copyreg", "__newobj__"): _copyreg_newobj,
    # torch tensors.
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch._tensor", "_rebuild_from_type"): _rebuild_from_type,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch", "Tensor"): _TENSOR,
    ("torch.nn.parameter", "Parameter"): _PARAMETER,
    ("torch", "Size"): _torch_size,
    ("torch", "device"): _torch_device,
    # numpy, both the 1.x (numpy.core) and 2.x (numpy._core) module names.
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _np_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy.core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,
}
"""``(module, name) -> stand-in``. Also allowed: ``torch[.cuda].<X>Storage`` for the dtypes of
``_STORAGE_DTYPES``, ``torch[.storage].UntypedStorage``, and the plain values ``torch.<dtype>`` /
memory formats / layouts in ``_TORCH_VALUE_NAMES``."""

_CALLABLES: dict[int, Any] = {
    id(v): v for v in ALLOWED_GLOBALS.values() if not isinstance(v, (GlobalRef, StorageType)) and v is not TFNetwork
}
_NEWOBJ_CLASSES: tuple[Any, ...] = (EasyDict, Namespace, OrderedDict, _set, _frozenset, TFNetwork)
_STORAGE_TYPES: dict[tuple[str, str], StorageType] = {}

_HINTS = {
    "dnnlib.tflib": " (only dnnlib.tflib.network.Network objects are read from TensorFlow pickles)",
}


def resolve_global(module: str, name: str) -> Any:
    """The stand-in for ``module.name``, or :class:`UnsafePickleError`."""
    obj = ALLOWED_GLOBALS.get((module, name))
    if obj is not None:
        return obj
    if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
        return _STORAGE_TYPES.setdefault((module, name), StorageType(f"{module}.{name}", _STORAGE_DTYPES[name]))
    if module in ("torch", "torch.storage") and name in _UNTYPED_STORAGE_NAMES:
        return _STORAGE_TYPES.setdefault((module, name), StorageType(f"{module}.{name}", torch.uint8))
    if module == "torch" and name in _TORCH_VALUES:
        return _TORCH_VALUES[name]
    hint = next((h for prefix, h in _HINTS.items() if module.startswith(prefix)), "")
    raise UnsafePickleError(f"refused global {f'{module}.{name}'!r}{hint}")


def _describe(obj: Any) -> str:
    if isinstance(obj, (GlobalRef, StorageType, type)) or callable(obj):
        return describe(obj)
    return f"a {type(obj).__name__} object"


# ----------------------------------------------------------------------------
# The unpickler.

PersistentLoad = Callable[[Any], Any]


class _Source:
    """The file under an unpickler: refuses reads past the bytes present and charges every byte read."""

    def __init__(self, file: IO[bytes], size: int | None, budget: LoadBudget) -> None:
        self._file = file
        self._left = size
        self._budget = budget

    def _take(self, n: int, what: str) -> None:
        if self._left is not None:
            if n > self._left:
                raise CheckpointError(
                    f"malformed pickle: truncated: {what} of {n} bytes, only {self._left} left in the stream"
                )
            self._left -= n
        self._budget.charge(n, what)

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            raise CheckpointError("malformed pickle: unbounded read")
        self._take(n, "length-prefixed data")
        data: bytes = self._file.read(n)
        return data

    def readline(self) -> bytes:
        limit = self._budget.remaining() if self._left is None else min(self._left, self._budget.remaining())
        line = self._file.readline(max(limit, 0) + 1)
        if len(line) > limit:
            raise CheckpointError("malformed pickle: a text line longer than the stream or the memory budget")
        self._take(len(line), "text line")
        return line


class _BudgetUnframer(pickle._Unframer):  # type: ignore[name-defined,misc]
    """``pickle._Unframer`` whose frames and in-frame reads of length-prefixed data are charged first."""

    def __init__(self, source: _Source, budget: LoadBudget) -> None:
        super().__init__(source.read, source.readline)
        self._budget = budget

    def read(self, n: int) -> bytes:
        if n > 1 and self.current_frame:
            self._budget.charge(n, "length-prefixed data")  # The object built from the frame's bytes.
        data: bytes = super().read(n)
        return data

    def readinto(self, buf: Any) -> int:
        raise CheckpointError("malformed pickle: out-of-band buffers are not supported")


class RestrictedUnpickler(pickle._Unpickler):
    """A pure-Python unpickler that only builds allow-listed data; see the module docstring."""

    # The stock opcode table with REDUCE, NEWOBJ(_EX), BUILD and EXT* replaced (INST/OBJ go
    # through _instantiate).
    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)  # type: ignore[assignment,arg-type]

    def __init__(
        self, file: IO[bytes], *, persistent_load: PersistentLoad | None = None, size: int | None = None
    ) -> None:
        super().__init__(file, encoding="latin1")
        self._persistent_loader = persistent_load
        self._budget = _budget()
        self._source = _Source(file, size, self._budget)

    def load(self) -> Any:
        """``pickle._Unpickler.load`` with every opcode charged and every read bounded (see :class:`_Source`)."""
        self._unframer = _BudgetUnframer(self._source, self._budget)
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack: list[Any] = []
        self.stack: list[Any] = []
        self.append = self.stack.append
        self.proto = 0
        read = self.read
        dispatch = self.dispatch
        budget = self._budget
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError
                budget.used += OPCODE_COST
                if budget.used > budget.limit:
                    budget.charge(0, "pickle opcodes")
                dispatch[key[0]](self)
        except pickle._Stop as stopinst:  # type: ignore[attr-defined]
            return stopinst.value

    # -- names --------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        if getattr(self, "proto", 0) < 3:  # Python 2 names, as the stock unpickler maps them.
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        return resolve_global(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent_loader is None:
            raise CheckpointError("malformed pickle: unexpected persistent id")
        return self._persistent_loader(pid)

    # -- calls ---------------------------------------------------------------
    @staticmethod
    def _call(func: Any, args: Any) -> Any:
        allowed: Callable[..., Any] | None = _CALLABLES.get(id(func))
        if allowed is None or allowed is not func:
            raise UnsafePickleError(f"refused call of {_describe(func)}")
        if not isinstance(args, tuple):
            raise CheckpointError("malformed pickle: call arguments are not a tuple")
        return allowed(*args)

    @staticmethod
    def _new(cls: Any, args: Any, kwargs: Any) -> Any:
        if not any(cls is c for c in _NEWOBJ_CLASSES):
            raise UnsafePickleError(f"refused call of {_describe(cls)} (NEWOBJ)")
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise CheckpointError("malformed pickle: NEWOBJ arguments")
        if cls is TFNetwork:
            if args or kwargs:
                raise CheckpointError("malformed pickle: NEWOBJ arguments for a TF network")
            return TFNetwork()
        if cls is _set or cls is _frozenset:
            if kwargs or len(args) > 1:
                raise CheckpointError("malformed pickle: NEWOBJ arguments for a set")
            return cls(*args)
        return cls.__new__(cls)

    def _load_reduce(self) -> None:
        stack = self.stack  # type: ignore[attr-defined]
        args = stack.pop()
        stack[-1] = self._call(stack[-1], args)

    def _load_newobj(self) -> None:
        stack = self.stack  # type: ignore[attr-defined]
        args = stack.pop()
        cls = stack.pop()
        stack.append(self._new(cls, args, {}))

    def _load_newobj_ex(self) -> None:
        stack = self.stack  # type: ignore[attr-defined]
        kwargs = stack.pop()
        args = stack.pop()
        cls = stack.pop()
        stack.append(self._new(cls, args, kwargs))

    def _instantiate(self, klass: Any, args: Any) -> None:  # INST and OBJ
        self.stack.append(self._call(klass, tuple(args)))  # type: ignore[attr-defined]

    def _load_build(self) -> None:
        stack = self.stack  # type: ignore[attr-defined]
        state = stack.pop()
        inst = stack[-1]
        build = getattr(type(inst), "_pickle_build", None)
        if build is not None and isinstance(inst, (EasyDict, Namespace, NumpyArray, NumpyDType, TFNetwork)):
            build(inst, state)
        elif isinstance(inst, OrderedDict):
            # state_dict() OrderedDicts carry a `_metadata` attribute: plain data attributes only.
            parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
            for part in parts:
                if not part:
                    continue
                if not isinstance(part, dict) or not all(isinstance(k, str) and not k.startswith("__") for k in part):
                    raise UnsafePickleError("refused BUILD (__setstate__) on an OrderedDict with odd attributes")
                inst.__dict__.update(part)
        else:
            raise UnsafePickleError(f"refused BUILD (__setstate__) on a {type(inst).__name__} object")

    def _load_ext(self) -> None:
        raise UnsafePickleError("refused copyreg extension code (EXT opcode)")

    # -- containers whose keys are hashed: flat keys only (see check_key) ----
    def _load_setitem(self) -> None:
        stack = self.stack  # type: ignore[attr-defined]
        value = stack.pop()
        key = stack.pop()
        check_key(key)
        stack[-1][key] = value

    def _load_setitems(self) -> None:
        items = self.pop_mark()  # type: ignore[attr-defined]
        target = self.stack[-1]  # type: ignore[attr-defined]
        for i in range(0, len(items) - 1, 2):
            check_key(items[i])
            target[items[i]] = items[i + 1]

    def _load_dict(self) -> None:
        items = self.pop_mark()  # type: ignore[attr-defined]
        d = {}
        for i in range(0, len(items) - 1, 2):
            check_key(items[i])
            d[items[i]] = items[i + 1]
        self.append(d)  # type: ignore[attr-defined]

    def _load_additems(self) -> None:
        items = self.pop_mark()  # type: ignore[attr-defined]
        target = self.stack[-1]  # type: ignore[attr-defined]
        for item in items:
            check_key(item)
        if isinstance(target, (set, frozenset)):
            target.update(items)  # type: ignore[union-attr]
        else:
            raise UnsafePickleError(f"refused ADDITEMS on {describe(target)}")

    def _load_frozenset(self) -> None:
        items = self.pop_mark()  # type: ignore[attr-defined]
        for item in items:
            check_key(item)
        self.append(frozenset(items))  # type: ignore[attr-defined]

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.EXT1[0]] = _load_ext
    dispatch[pickle.EXT2[0]] = _load_ext
    dispatch[pickle.EXT4[0]] = _load_ext
    dispatch[pickle.SETITEM[0]] = _load_setitem
    dispatch[pickle.SETITEMS[0]] = _load_setitems
    dispatch[pickle.DICT[0]] = _load_dict
    dispatch[pickle.ADDITEMS[0]] = _load_additems
    dispatch[pickle.FROZENSET[0]] = _load_frozenset


def _stream_left(file: IO[bytes]) -> int | None:
    """Bytes left in a seekable plain file or ``BytesIO`` (``None`` when unknown)."""
    if isinstance(file, io.BytesIO):
        return len(file.getbuffer()) - file.tell()
    try:
        return os.fstat(file.fileno()).st_size - file.tell()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def restricted_load(file: IO[bytes], *, persistent_load: PersistentLoad | None = None, size: int | None = None) -> Any:
    """Read one pickle from ``file`` with :class:`RestrictedUnpickler`.

    ``size``: the bytes the stream holds from here (found for plain files and ``BytesIO``); no
    length-prefixed read may claim more. Everything is charged to the current :class:`LoadBudget`
    (one for this load when none is running: ``BUDGET_FACTOR`` x the stream size + the fixed part).

    Raises :class:`UnsafePickleError` for refused globals/calls and :class:`CheckpointError` for
    any other failure (the underlying error is chained; its message is truncated).
    """
    if size is None:
        size = _stream_left(file)
    with load_budget(size or 0):
        try:
            return RestrictedUnpickler(file, persistent_load=persistent_load, size=size).load()
        except CheckpointError:
            raise
        except RecursionError as e:
            raise CheckpointError("malformed pickle: nested too deeply") from e
        except MemoryError as e:
            raise CheckpointError("malformed pickle: out of memory") from e
        except Exception as e:
            msg = _short(" ".join(str(e).split()), 120)
            raise CheckpointError(f"malformed pickle: {type(e).__name__}: {msg}") from e


def restricted_loads(data: bytes, *, persistent_load: PersistentLoad | None = None) -> Any:
    return restricted_load(io.BytesIO(data), persistent_load=persistent_load, size=len(data))


# ----------------------------------------------------------------------------
# torch.save containers.


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _flat_from_bytes(data: bytes, dtype: torch.dtype, big_endian: bool = False) -> torch.Tensor:
    itemsize = _element_size(dtype)
    if len(data) % itemsize:
        raise CheckpointError("malformed storage: byte count is not a multiple of the element size")
    if not data:
        return torch.empty(0, dtype=dtype)
    _charge(len(data) * (2 if big_endian and itemsize > 1 else 1), "storage data")
    if big_endian and itemsize > 1:
        swapped = np.frombuffer(data, dtype=np.uint8).reshape(-1, itemsize)[:, ::-1]
        data = swapped.tobytes()
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype)


def _storage_pid(pid: Any) -> tuple[StorageType, str, int, Any]:
    if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
        if isinstance(pid, tuple) and pid and pid[0] == "module":
            raise CheckpointError("pickled whole modules (torch.save(model)) are not supported; save a state_dict")
        raise CheckpointError(f"malformed torch file: unsupported persistent id {describe(pid)}")
    stype, key, _location, numel = pid[1:5]
    view = pid[5] if len(pid) > 5 else None
    if not isinstance(stype, StorageType):
        raise CheckpointError(f"malformed torch file: storage type {_describe(stype)}")
    if (
        not isinstance(key, str)
        or len(key) > 256
        or not isinstance(numel, int)
        or isinstance(numel, bool)
        or not 0 <= numel <= MAX_INDEX
    ):
        raise CheckpointError("malformed torch file: bad storage key or size")
    return stype, key, numel, view


def load_torch_legacy(f: IO[bytes], *, size_limit: int) -> Any:
    """Read a legacy (non-zip) ``torch.save`` stream: magic, protocol, sys info, the object, the
    storage keys and then each storage as ``int64 numel`` + little-endian data.

    ``size_limit`` bounds the bytes all storages may claim (the stream length), so a forged
    header cannot make us allocate more than the file holds.
    """
    with load_budget(size_limit):
        return _load_torch_legacy(f, size_limit)


def _load_torch_legacy(f: IO[bytes], size_limit: int) -> Any:
    left = _stream_left(f)
    if left is not None and left > size_limit:
        raise CheckpointError("malformed torch file: the stream is longer than its size limit")
    if _load_small(f) != LEGACY_MAGIC:
        raise CheckpointError("not a legacy torch file (bad magic number)")
    if _load_small(f) != LEGACY_PROTOCOL:
        raise CheckpointError("unsupported legacy torch protocol version")
    _load_small(f)  # sys_info: the data are little-endian regardless.

    roots: dict[str, TorchStorage] = {}
    views: dict[str, TorchStorage] = {}
    budget = [size_limit]

    def persistent_load(pid: Any) -> TorchStorage:
        stype, key, numel, view = _storage_pid(pid)
        root = roots.get(key)
        if root is None:
            nbytes = numel * _element_size(stype.dtype)
            if nbytes > budget[0]:
                raise CheckpointError(
                    f"malformed torch file: storage {describe(key)} claims more bytes than the file holds"
                )
            budget[0] -= nbytes
            _charge(nbytes, "legacy storage")
            root = TorchStorage(stype.dtype, torch.empty(numel, dtype=stype.dtype), untyped=stype.dtype == torch.uint8)
            roots[key] = root
        elif root.dtype != stype.dtype or root.flat.numel() != numel:
            raise CheckpointError(f"malformed torch file: storage {describe(key)} is declared twice differently")
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise CheckpointError("malformed torch file: bad storage view")
        view_key, offset, view_size = view
        if not isinstance(view_key, str) or len(view_key) > 256:
            raise CheckpointError("malformed torch file: bad storage view key")
        if not all(isinstance(v, int) and v >= 0 for v in (offset, view_size)) or offset + view_size > numel:
            raise CheckpointError("malformed torch file: storage view out of bounds")
        if view_key not in views:
            views[view_key] = TorchStorage(root.dtype, root.flat[offset : offset + view_size], untyped=root.untyped)
        return views[view_key]

    obj = restricted_load(f, persistent_load=persistent_load, size=_stream_left(f))
    keys = restricted_load(f, size=_stream_left(f))
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or set(keys) != set(roots):
        raise CheckpointError("malformed torch file: storage key list does not match the storages")
    for key in keys:
        st = roots[key]
        header = f.read(8)
        if len(header) != 8:
            raise CheckpointError(f"truncated torch file: storage {describe(key)} is missing")
        numel = int.from_bytes(header, "little")
        if numel != st.flat.numel():
            raise CheckpointError(
                f"malformed torch file: storage {describe(key)} has {numel} elements, expected {st.flat.numel()}"
            )
        nbytes = numel * _element_size(st.dtype)
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise CheckpointError(f"truncated torch file: storage {describe(key)} is incomplete")
        if nbytes:
            st.flat.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8).view(st.dtype))
    return obj


def _load_small(f: IO[bytes]) -> Any:
    """One of the small pickles heading a legacy stream (magic, protocol, sys info): at most 64 KiB."""
    left = _stream_left(f)
    return restricted_load(f, size=None if left is None else min(left, 1 << 16))


def check_zip_directory(fp: IO[bytes], file_size: int) -> None:
    """Refuse a zip whose central directory is implausible *before* ``zipfile`` parses it.

    ``zipfile.ZipFile`` reads the whole central directory and builds one ``ZipInfo`` per member:
    more than :data:`MAX_ZIP_MEMBERS` members, or a directory larger than the file, is refused,
    and parsing it is charged to the current budget.
    """
    try:
        end = zipfile._EndRecData(fp)  # type: ignore[attr-defined]
    except OSError as e:
        raise CheckpointError(f"broken zip file: {e}") from e
    if end is None:
        raise CheckpointError("broken zip file: no end of central directory record")
    entries, cd_size = int(end[zipfile._ECD_ENTRIES_TOTAL]), int(end[zipfile._ECD_SIZE])  # type: ignore[attr-defined]
    if entries > MAX_ZIP_MEMBERS:
        raise CheckpointError(f"zip checkpoint has {entries} members (limit {MAX_ZIP_MEMBERS})")
    if cd_size > file_size:
        raise CheckpointError("broken zip file: its central directory is larger than the file")
    _charge(3 * cd_size + 512 * entries, "zip central directory")


def load_torch_zip(zf: zipfile.ZipFile, *, size_limit: int | None = None) -> Any:
    """Read a zip ``torch.save`` file (``<prefix>/data.pkl`` + ``<prefix>/data/<key>``).

    Every member's declared size is checked before it is read, and only the bytes a storage claims
    are read (decompressed) from its record; everything is charged to the load's
    :class:`LoadBudget` (``BUDGET_FACTOR`` x ``size_limit``, the archive size, + the fixed part),
    so a forged size or a compressed record cannot blow up memory.
    """
    with load_budget(size_limit if size_limit is not None else 0):
        return _load_torch_zip(zf)


def _load_torch_zip(zf: zipfile.ZipFile) -> Any:
    names = zf.namelist()
    if len(names) > MAX_ZIP_MEMBERS:
        raise CheckpointError(f"zip checkpoint has {len(names)} members (limit {MAX_ZIP_MEMBERS})")
    pkl_names = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
    if len(pkl_names) != 1:
        raise CheckpointError("not a torch zip checkpoint (no unique data.pkl)")
    prefix = pkl_names[0][: -len("data.pkl")]
    big_endian = False
    if f"{prefix}byteorder" in zf.NameToInfo:
        info = zf.getinfo(f"{prefix}byteorder")
        if info.file_size > 16:
            raise CheckpointError(f"malformed torch file: byteorder record of {info.file_size} bytes")
        with zf.open(info) as rec:
            order = rec.read(16).decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise CheckpointError(f"malformed torch file: byteorder {describe(order)}")
        big_endian = order == "big"
    cache: dict[str, TorchStorage] = {}

    def persistent_load(pid: Any) -> TorchStorage:
        stype, key, numel, _view = _storage_pid(pid)
        st = cache.get(key)
        if st is not None:
            if st.dtype != stype.dtype:
                raise CheckpointError(f"malformed torch file: storage {describe(key)} is used with two dtypes")
            return st
        name = f"{prefix}data/{key}"
        try:
            info = zf.getinfo(name)
        except KeyError:
            raise CheckpointError(f"malformed torch file: storage record {describe(name)} is missing") from None
        nbytes = numel * _element_size(stype.dtype)
        if info.file_size < nbytes:
            raise CheckpointError(f"malformed torch file: storage record {describe(name)} is too short")
        _charge(nbytes, f"storage {describe(key, 20)}")
        with zf.open(info) as rec:
            data = rec.read(nbytes)
        if len(data) != nbytes:
            raise CheckpointError(f"truncated torch file: storage record {describe(name)} is incomplete")
        st = TorchStorage(
            stype.dtype, _flat_from_bytes(data, stype.dtype, big_endian), untyped=stype.dtype == torch.uint8
        )
        cache[key] = st
        return st

    info = zf.getinfo(pkl_names[0])
    _budget().charge(0, "data.pkl")
    if info.file_size > _budget().remaining():
        raise CheckpointError(f"data.pkl of {info.file_size} bytes is larger than the memory budget allows")
    with zf.open(info) as f:
        return restricted_load(f, persistent_load=persistent_load, size=info.file_size)  # type: ignore[arg-type]
