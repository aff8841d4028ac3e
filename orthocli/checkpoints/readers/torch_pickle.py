"""A restricted unpickler for what `torch.save` pickles, rebuilding tensors as numpy arrays without
torch. It accepts only what `torch.load(weights_only=True)` accepts, and less:

- before anything is unpickled, every opcode is checked against the ones torch's weights-only
  unpickler implements, and every global against ALLOWED: containers, the tensor and parameter
  rebuild functions, storage classes, dtypes, `torch.Size`, `torch.device`, and `_codecs.encode`
  (how protocol 2 writes bytes). Any other global (a class, `os.system`, ...) is refused with
  TrustError, the file's code never imported, let alone run;
- the globals torch also accepts but this reader does not rebuild (quantized, sparse, nested and
  meta tensors, tensor subclasses) raise errors.ReadWithTorch: the caller reads the file with
  torch where it is installed;
- the allowed globals are stand-ins defined here: a tensor becomes a TensorRef (a storage, offset,
  shape and strides), made an array by `materialize` once the storages' bytes are known;
- the pickle is run by pickle_vm.py's interpreter, not `pickle.Unpickler`: BUILD, APPEND, SETITEM
  and calls are allowed on what torch allows them on and nothing else, and a file's claims are
  bounded (MAX_PICKLE, tuple depth, memo, work; tensor sizes against the bytes stored), so a
  small file can cost neither gigabytes nor minutes.

The container formats (torch's zip archive, the legacy pickle stream) are zip.py's and
legacy.py's; they hand their storages' bytes to `materialize`.
"""

from __future__ import annotations

import math
import pickle
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from orthocli.arrays import BFLOAT16
from orthocli.checkpoints.readers.pickle_vm import Machine, Refused
from orthocli.errors import InputFileError, ReadWithTorch, TrustError

MAX_PICKLE = 32 << 20  # bytes of one pickle: it holds the structure (names, shapes), never the weights
MAX_DIMS = 64  # numpy's limit; torch reads more, so a tensor with more is left to torch
MAX_DIM = 1 << 62  # any one size, stride or offset: beyond it no tensor of any length is addressable
# A tensor may view more bytes than its storage holds only by repeating elements (stride 0): allowed up
# to this, so that a tiny file cannot claim a 13 GiB tensor of one stored float.
MAX_REPEATED_BYTES = 1 << 20

# Storage classes (torch.<Name>) by their element type; torch.save names a storage by its class.
STORAGES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": BFLOAT16,
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "ComplexDoubleStorage": np.dtype("<c16"),
    "ComplexFloatStorage": np.dtype("<c8"),
    "UntypedStorage": np.dtype("u1"),
}
# torch.<dtype> by name, for _rebuild_tensor_v3's dtype argument and dtypes kept as values
DTYPES = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": BFLOAT16,
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint64": np.dtype("<u8"),
    "uint32": np.dtype("<u4"),
    "uint16": np.dtype("<u2"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
    "complex128": np.dtype("<c16"),
    "complex64": np.dtype("<c8"),
    # names torch also has, whose tensors this reader does not rebuild (no numpy type)
    "float8_e4m3fn": None,
    "float8_e5m2": None,
    "float8_e4m3fnuz": None,
    "float8_e5m2fnuz": None,
    "complex32": None,
    "qint8": None,
    "quint8": None,
    "qint32": None,
}

# The opcodes torch's weights-only unpickler implements (protocol 2, as torch.save writes), by how
# their argument is laid out; every other opcode of the pickle protocol is refused as torch refuses it.
_FIXED = {pickle.PROTO[0]: 1, pickle.BININT[0]: 4, pickle.BININT1[0]: 1, pickle.BININT2[0]: 2, pickle.BINFLOAT[0]: 8}
_FIXED |= {pickle.BINGET[0]: 1, pickle.LONG_BINGET[0]: 4, pickle.BINPUT[0]: 1, pickle.LONG_BINPUT[0]: 4}
_BARE = {
    getattr(pickle, name)[0]
    for name in [
        "APPEND",
        "APPENDS",
        "BINPERSID",
        "BUILD",
        "EMPTY_DICT",
        "EMPTY_LIST",
        "EMPTY_SET",
        "EMPTY_TUPLE",
        "MARK",
        "NEWFALSE",
        "NEWOBJ",
        "NEWTRUE",
        "NONE",
        "REDUCE",
        "SETITEM",
        "SETITEMS",
        "TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
    ]
}
_STOP, _GLOBAL, _BINUNICODE = pickle.STOP[0], pickle.GLOBAL[0], pickle.BINUNICODE[0]
_LONG1, _SHORT_BINSTRING = pickle.LONG1[0], pickle.SHORT_BINSTRING[0]
_OTHER_OPCODES = {
    value[0]: name
    for name, value in vars(pickle).items()
    if name.isupper() and isinstance(value, bytes) and len(value) == 1
}

# Globals torch's weights-only unpickler accepts that are not rebuilt here: torch reads such a file.
TORCH_ONLY = frozenset(
    [f"torch._utils.{f}" for f in ("_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_nested_tensor")]
    + [f"torch._utils.{f}" for f in ("_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass")]
    + [f"torch._utils.{f}" for f in ("_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor")]
    + ["torch.serialization._get_layout", "torch.per_tensor_affine", "torch.per_tensor_symmetric"]
    + ["torch.per_channel_affine", "torch.per_channel_symmetric", "torch.per_channel_affine_float_qparams"]
    + [f"torch.{q}Storage" for q in ("QInt8", "QUInt8", "QInt32", "QUInt4x2", "QUInt2x4")]
)


UNSAFE = (
    "holds pickled Python objects ({}); loading it would run code from the file. If you trust where it came from, "
    "rerun with --trust"
)


class StorageRef:
    """One storage of the file: its key (the zip record or legacy id), element type and length;
    for a legacy view, (view key, offset, numel) into it. A value: equal refs are one storage.
    (Plain classes here, not dataclasses: this module is imported by every `score` of a .pt.)"""

    __slots__ = ("dtype", "key", "numel", "view")

    def __init__(self, key: str, dtype: np.dtype, numel: int, view: tuple[str, int, int] | None = None) -> None:
        self.key, self.dtype, self.numel, self.view = key, dtype, numel, view

    def _id(self) -> tuple:
        return (self.key, self.dtype.str, self.dtype.names, self.numel, self.view)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorageRef) and self._id() == other._id()

    def __hash__(self) -> int:
        return hash(self._id())


class TensorRef:
    """A tensor to rebuild: `shape` elements of `dtype` laid out by `stride` from `offset` in a storage."""

    __slots__ = ("dtype", "offset", "shape", "storage", "stride")

    def __init__(self, storage: StorageRef, offset: int, shape: tuple, stride: tuple, dtype: np.dtype) -> None:
        self.storage, self.offset, self.shape, self.stride, self.dtype = storage, offset, shape, stride, dtype


class TorchDtype:
    """A torch dtype kept as a value (a training config may hold one)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Dict(dict):
    """collections.OrderedDict and Counter: a plain dict. A state dict's OrderedDict carries its
    `_metadata` (module versions) as BUILD state, which `_TorchMachine.build` drops."""


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name


class _TensorType:
    """torch.Tensor and torch.nn.Parameter, as _rebuild_from_type_v2 names them."""

    def __call__(self, *args: Any) -> Any:
        raise ReadWithTorch("a tensor built by its class")


_TENSOR_TYPE = _TensorType()


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int for v in value):
        raise pickle.UnpicklingError(f"{what} is not a tuple of ints")
    return tuple(value)


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: np.dtype | None = None) -> TensorRef:
    if not isinstance(storage, StorageRef) or type(offset) is not int or not 0 <= offset < MAX_DIM:
        raise pickle.UnpicklingError("a tensor without a storage")
    shape, strides = _ints(size, "a tensor's size"), _ints(stride, "a tensor's stride")
    if len(shape) != len(strides) or not all(0 <= d < MAX_DIM for d in (*shape, *strides)):
        raise pickle.UnpicklingError(f"a tensor of size {str(shape)[:80]} and stride {str(strides)[:80]}")
    if len(shape) > MAX_DIMS:
        raise ReadWithTorch(f"a tensor of {len(shape)} dimensions")
    return TensorRef(storage, offset, shape, strides, storage.dtype if dtype is None else dtype)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any) -> TensorRef:
    return _tensor(storage, offset, size, stride)


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *_flags: Any) -> TensorRef:
    return _tensor(storage, offset, size, stride)  # requires_grad, hooks, metadata: not weights


def _rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, _grad: Any, _hooks: Any, dtype: Any, *_m):
    if not isinstance(dtype, TorchDtype):
        raise pickle.UnpicklingError("a tensor without a dtype")
    if DTYPES.get(dtype.name) is None:
        raise ReadWithTorch(f"a tensor of dtype torch.{dtype.name}")
    return _tensor(storage, offset, size, stride, DTYPES[dtype.name])


def _rebuild_parameter(data: Any, *_flags: Any) -> Any:
    if data is None:  # nn.Parameter(None): torch makes it an empty float tensor
        return np.zeros(0, np.float32)
    if not isinstance(data, TensorRef):
        raise pickle.UnpicklingError("a parameter without a tensor")
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    if new_type is not _TENSOR_TYPE or func not in _REBUILDS or not isinstance(args, tuple):
        raise ReadWithTorch("a tensor subclass")
    if state:
        raise ReadWithTorch("a tensor with Python attributes")
    return func(*args)


def _encode(text: Any, encoding: Any = "utf-8", *_errors: Any) -> bytes:
    # protocol 2 writes bytes as _codecs.encode(text, "latin1")
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise pickle.UnpicklingError("_codecs.encode of something other than text")
    return text.encode(encoding)


def _bytearray(data: Any = b"", *encoding: Any) -> bytearray:
    if isinstance(data, str) and len(encoding) == 1:
        data = _encode(data, encoding[0])
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("bytearray of something other than bytes")  # bytearray(10**12) allocates
    return bytearray(data)


def _complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if not all(isinstance(v, (int, float)) for v in (real, imag)):
        raise pickle.UnpicklingError("complex of something other than numbers")
    return complex(real, imag)


def _size(dims: Any = ()) -> tuple[int, ...]:
    return _ints(dims, "torch.Size")


def _device(*args: Any) -> str:
    if not all(isinstance(a, (str, int)) for a in args):
        raise pickle.UnpicklingError("torch.device of something other than a name")
    return ":".join(str(a) for a in args)


_REBUILDS = {_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3}

ALLOWED: dict[str, Any] = {
    "collections.OrderedDict": _Dict,
    "collections.Counter": _Dict,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.Tensor": _TENSOR_TYPE,
    "torch.nn.parameter.Parameter": _TENSOR_TYPE,
    "torch.Size": _size,
    "torch.device": _device,
    "_codecs.encode": _encode,
    "builtins.set": set,
    "builtins.bytearray": _bytearray,
    "builtins.complex": _complex,
    **{f"torch.{name}": _StorageType(name) for name in STORAGES if name != "UntypedStorage"},
    "torch.storage.UntypedStorage": _StorageType("UntypedStorage"),
    **{f"torch.{name}": TorchDtype(name) for name in DTYPES},
}


def check(data: bytes, start: int = 0) -> int:
    """Check one pickle's opcodes and globals without running it; returns where it ends. Raises
    TrustError for a global outside ALLOWED or an opcode torch's weights-only loader does not
    implement (as torch.load(weights_only=True) refuses them), ReadWithTorch for a global only
    torch rebuilds, InputFileError for a damaged pickle. A scan of the bytes, not pickletools:
    the opcodes torch.save writes have simple arguments, and this runs on every file `score` reads."""
    i, end = start, min(len(data), start + MAX_PICKLE)
    try:
        while i < end:
            op = data[i]
            i += 1
            if op in _FIXED:
                i += _FIXED[op]
            elif op == _STOP:
                return i
            elif op in _BARE:
                pass
            elif op == _BINUNICODE:
                i += 4 + int.from_bytes(data[i : i + 4], "little")
            elif op in (_LONG1, _SHORT_BINSTRING):
                i += 1 + data[i]
            elif op == _GLOBAL:
                eol = data.find(b"\n", i, end)
                eol2 = data.find(b"\n", eol + 1, end)
                if eol < 0 or eol2 < 0:
                    break
                name = _global_name(bytes(data[i:eol]).decode("utf-8"), bytes(data[eol + 1 : eol2]).decode("utf-8"))
                i = eol2 + 1
                if name in TORCH_ONLY:
                    raise ReadWithTorch(name)
                if name not in ALLOWED:
                    raise TrustError(UNSAFE.format(name))
            elif op in _OTHER_OPCODES:  # torch's weights-only loader refuses it too: only --trust reads it
                raise TrustError(
                    f"holds a pickle the weights-only loader does not read (opcode {_OTHER_OPCODES[op]}, a protocol "
                    "above 2); if you trust where it came from, rerun with --trust"
                )
            else:
                raise InputFileError(f"its pickled data is damaged (byte {op:#04x} at {i - 1} is no pickle opcode)")
    except (IndexError, ValueError, UnicodeDecodeError):  # a length past the end, a name without its newline
        pass
    if end - start == MAX_PICKLE:
        raise InputFileError(
            f"its pickled data runs past {MAX_PICKLE >> 20} MiB, the most a checkpoint's structure needs"
        )
    raise InputFileError("its pickled data is damaged or cut short")


def _global_name(module: str, name: str) -> str:
    if module == "__builtin__":  # protocol 2 spells builtins as Python 2 did
        module = "builtins"
    return f"{module}.{name}"


_CALLABLE = {
    _Dict,
    set,
    _bytearray,
    _complex,
    _size,
    _device,
    _encode,
    _rebuild_tensor,
    _rebuild_tensor_v2,
    _rebuild_tensor_v3,
    _rebuild_parameter,
    _rebuild_from_type_v2,
}
# NEWOBJ: what torch's cls.__new__(cls, *args) makes of each class it allows
_NEW = [(_Dict, lambda *a: _Dict()), (set, lambda *a: set()), (_bytearray, lambda *a: bytearray())]
_NEW += [(_complex, _complex), (_size, _size), (_device, _device)]


class _TorchMachine(Machine):
    """pickle_vm's interpreter with torch's rules: the globals of ALLOWED, storages for persistent
    ids, calls of the allowed functions, BUILD on an OrderedDict only (its `_metadata`)."""

    def __init__(self, data: Any, start: int, end: int, storage: Callable[[tuple], StorageRef]) -> None:
        super().__init__(data, start, end)
        self._storage = storage

    def find_global(self, module: str, name: str) -> Any:
        full = _global_name(module, name)
        if full not in ALLOWED:  # check() already refused it; never import anything
            raise TrustError(UNSAFE.format(full))
        return ALLOWED[full]

    def call(self, func: Any, args: tuple) -> Any:
        if func is _TENSOR_TYPE:
            raise ReadWithTorch("a tensor built by its class")
        if not any(func is f for f in _CALLABLE):
            raise Refused(f"a call of {_kind(func)}, which torch refuses too")
        return func(*args)

    def new_object(self, cls: Any, args: tuple) -> Any:
        if cls is _TENSOR_TYPE:
            raise ReadWithTorch("a tensor built by its class")
        new = next((make for c, make in _NEW if c is cls), None)
        if new is None:
            raise Refused(f"NEWOBJ of {_kind(cls)}, which torch refuses too")
        return new(*args)

    def build(self, inst: Any, state: Any) -> None:
        if type(inst) is _Dict and isinstance(state, dict):
            return  # an OrderedDict's attributes (a state dict's _metadata): not weights
        if isinstance(inst, TensorRef):
            raise ReadWithTorch("a tensor with Python attributes")
        raise Refused(f"BUILD on {_kind(inst)}, which torch refuses too")

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise Refused(f"a persistent id that is not a storage ({type(pid).__name__})")
        kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise TrustError(UNSAFE.format(f"a persistent {str(kind)[:40]!r}"))
        if len(pid) < 5 or not isinstance(pid[1], _StorageType):
            raise Refused("a storage without its class")
        if pid[1].name not in STORAGES:
            raise ReadWithTorch(f"torch.{pid[1].name}")
        return self._storage(pid)


def _kind(x: Any) -> str:
    if isinstance(x, (TorchDtype, _StorageType)):
        return f"torch.{x.name}"
    return getattr(x, "__name__", None) or f"a {type(x).__name__}"


def load(data: Any, storage: Callable[[tuple], StorageRef], start: int = 0) -> tuple[Any, int]:
    """Unpickle the pickle at `start` of `data` (bytes, or an mmap), checked first; `storage(pid)`
    turns each persistent id ('storage', class, key, location, numel[, view]) into a StorageRef.
    Returns (the object, with TensorRef leaves; where the pickle ended)."""
    end = check(data, start)
    try:
        obj, _ = _TorchMachine(data, start, end, storage).run()
    except (TrustError, ReadWithTorch, InputFileError):
        raise
    except Refused as e:
        raise InputFileError(f"its pickled data is damaged or crafted ({str(e)[:120]})") from None
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, AttributeError, EOFError) as e:
        raise InputFileError(f"its pickled data is damaged ({type(e).__name__}: {str(e)[:80]})") from None
    except (OverflowError, struct.error) as e:
        raise InputFileError(f"its pickled data is damaged ({type(e).__name__}: {str(e)[:80]})") from None
    except RecursionError:
        raise InputFileError("its pickled data nests too deeply") from None
    except MemoryError:
        raise InputFileError("its pickled data asks for more memory than there is") from None
    return obj, end


def storage_dtype(pid: tuple) -> np.dtype:
    return STORAGES[pid[1].name]


def materialize(obj: Any, storage_bytes: Callable[[StorageRef], np.ndarray], byteorder: str = "little") -> Any:
    """`obj` with every TensorRef replaced by a read-only numpy array viewing its storage's bytes
    (`storage_bytes(ref)`: a uint8 array, checked long enough for every tensor on it). dicts,
    lists and tuples are rebuilt as plain ones."""
    cache: dict[StorageRef, np.ndarray] = {}

    def array(t: TensorRef) -> np.ndarray:
        raw = cache.get(t.storage)
        if raw is None:
            raw = cache[t.storage] = storage_bytes(t.storage)
        dtype = t.dtype if byteorder == "little" or t.dtype.itemsize == 1 else _big_endian(t.dtype)
        item = dtype.itemsize
        shape = str(list(t.shape))[:100]
        if any(d == 0 for d in t.shape):
            if math.prod(d for d in t.shape if d) * item >= 1 << 62:
                raise InputFileError(f"a tensor of shape {shape}, which no memory can address")
            return np.zeros(t.shape, t.dtype)
        last = t.offset + sum((d - 1) * s for d, s in zip(t.shape, t.stride))  # the farthest element, inclusive
        if (last + 1) * item > raw.nbytes:
            raise InputFileError(
                f"a tensor of shape {shape} needs {(last + 1) * item} bytes of storage '{str(t.storage.key)[:40]}', "
                f"which holds {raw.nbytes}"
            )
        values = math.prod(t.shape) * item
        if values > max(raw.nbytes, MAX_REPEATED_BYTES):  # strides of 0 repeat elements: a view, until scored
            raise InputFileError(
                f"a tensor of shape {shape} claims {values} bytes of values from the {raw.nbytes} its storage holds "
                "(strides that repeat elements); refused as crafted"
            )
        flat = raw[: raw.nbytes // item * item].view(dtype)
        view = np.lib.stride_tricks.as_strided(flat[t.offset :], t.shape, [s * item for s in t.stride], writeable=False)
        return view if dtype is t.dtype else view.astype(t.dtype)

    def walk(x: Any, depth: int = 0) -> Any:
        if depth > 200:
            raise InputFileError("its pickled data nests too deeply")
        if isinstance(x, TensorRef):
            return array(x)
        if isinstance(x, dict):
            return {k: walk(v, depth + 1) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(walk(v, depth + 1) for v in x)
        return x

    return walk(obj)


def _big_endian(dtype: np.dtype) -> np.dtype:
    if dtype == BFLOAT16:
        return np.dtype([("bfloat16", ">u2")])
    return dtype.newbyteorder(">")
