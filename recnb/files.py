"""Files recnb writes and reads itself: atomic writes (a kill mid-write never leaves a
half-written file), JSON option files (one clear line for anything but a JSON object) and
the pandas pickles of the official DLLM2Rec layout, read without running their code."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from collections.abc import Callable
from pathlib import Path

from recnb.errors import ConfigError, DataError


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``
    (atomic on one filesystem): readers see the old file or the new one, never a part. A
    failed write (full disk, file-size limit, permissions) leaves no ``.tmp`` behind and is
    one ``DataError`` line naming the file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        tmp.replace(path)
    except (OSError, RuntimeError) as exc:  # torch's writer reports a short write as a RuntimeError
        tmp.unlink(missing_ok=True)
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "short write"
        raise DataError(f"{path}: could not be written ({why}); check the free space, file-size limit and "
                        "permissions there") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in chunks: artifacts can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ids_digest(ids) -> str:
    """SHA-256 of a list of raw ids (a scene's item ids): what identifies a scene's catalogue,
    where the item count alone would accept another scene of the same size."""
    return hashlib.sha256(json.dumps([str(i) for i in ids]).encode()).hexdigest()


def json_digest(obj: dict) -> str:
    """SHA-256 of a JSON object without its own ``"digest"`` key (keys sorted)."""
    body = {k: v for k, v in obj.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_json_atomic(path: str | Path, obj, indent: int | None = 2) -> Path:
    """A JSON file written through :func:`atomic_write` (never half-written)."""
    text = json.dumps(obj, indent=indent) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def check_writable(path: str | Path, what: str = "--out") -> Path:
    """Make sure ``path`` can be written before any expensive work: its folder is created and
    a probe file written and removed there. A read-only folder, a folder under a file or a
    full disk is one ``ConfigError`` line naming ``path``, not a failure after the work."""
    path = Path(path)
    probe = path.with_name(f".{path.name}.recnb-probe")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot be written there ({exc.strerror or type(exc).__name__})") from None
    probe.unlink(missing_ok=True)
    return path


def read_json_file(path: str | Path, what: str) -> dict:
    """A JSON object from ``path``; anything else (missing, binary, malformed, a list) is one line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path}: no such file")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path}: not a UTF-8 JSON text file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} {path}: expected a JSON object of option: value, got a {type(value).__name__}")
    return value


# The pandas pickles of the official DLLM2Rec layout are read by recnb itself: the pickle
# builds stand-ins that only hold their state (never a pandas block manager, index or arrow
# array), and recnb checks every offset, placement and length before it builds a DataFrame
# from plain numpy columns. Pandas and pyarrow trust a pickle's internals: a crafted
# placement or string offset there corrupts memory (a segfault, std::bad_alloc) without
# running any code, so none of their reconstructors is ever called on a file's bytes.
class _Stub:
    """A pandas object as a pickle describes it: its arguments and state, nothing built."""

    def __init__(self, *args):
        self.args, self.state = args, None

    def __setstate__(self, state):
        self.state = state


class _FrameStub(_Stub):
    pass


class _ManagerStub(_Stub):
    pass


class _ArrowStringsStub(_Stub):
    pass


class _IndexStub(_Stub):
    pass


class _RangeIndexStub(_Stub):
    pass


class _StringArrayStub(_Stub):
    pass


class _PickleRefused(Exception):
    """A pickle that asks for something a plain DataFrame of numbers and lists never needs."""


class _Malformed(Exception):
    """A pickle whose DataFrame parts do not fit together (lengths, offsets, placements)."""


_DTYPES = {"O8", "O", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "b1", "bool", "int64",
           "float64", "object"}
_STRING_TYPES = {"string": "<i4", "utf8": "<i4", "large_string": "<i8", "large_utf8": "<i8"}


def _dtype(name, align=False, copy=True):
    import numpy as np

    if not isinstance(name, str) or name not in _DTYPES:
        raise _PickleRefused(f"numpy dtype {name!r}")
    return np.dtype(name)


def _reconstruct(subtype, shape, code):
    import numpy as np

    if subtype is not np.ndarray:
        raise _PickleRefused(f"an array of type {getattr(subtype, '__name__', subtype)}")
    return np.ndarray.__new__(np.ndarray, (0,), np.dtype("b"))


def _frombuffer(buf, dtype, shape, order):
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.hasobject or order not in ("C", "F"):
        raise _PickleRefused("an array from a buffer of another kind")
    return np.frombuffer(bytes(buf), dtype=dtype).reshape(shape, order=order).copy()


def _scalar(dtype, raw=None):
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
        raise _PickleRefused("a numpy scalar of another kind")
    return np.frombuffer(raw, dtype=dtype)[0]


def _encode(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _PickleRefused(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


def _type_for_alias(name):
    if name not in _STRING_TYPES:
        raise _PickleRefused(f"an arrow array of type {name!r} (only strings are read)")
    return name


def _py_buffer(raw):
    if not isinstance(raw, (bytes, bytearray)):
        raise _PickleRefused("an arrow buffer of another kind")
    return bytes(raw)


def _restore_arrow_strings(data) -> list:
    """The strings of a pickled arrow string array, decoded by recnb: every offset is checked
    against the data buffer (pyarrow builds the array from them unchecked)."""
    import numpy as np

    try:
        kind, length, _nulls, offset, buffers, children, dictionary = data
        validity, offsets_buf, values = buffers
    except (TypeError, ValueError):
        raise _PickleRefused("an arrow array of another layout") from None
    if kind not in _STRING_TYPES or children or dictionary is not None:
        raise _PickleRefused("an arrow array of another kind")
    if not (isinstance(length, int) and isinstance(offset, int) and 0 <= length and 0 <= offset):
        raise _Malformed("arrow array length or offset out of range")
    offsets = np.frombuffer(offsets_buf or b"", dtype=_STRING_TYPES[kind])[offset:offset + length + 1]
    values = values or b""
    if len(offsets) != length + 1 or (length and (offsets[0] < 0 or offsets[-1] > len(values)
                                                   or (np.diff(offsets) < 0).any())):
        raise _Malformed("arrow string offsets out of range")
    if validity is not None and len(validity) * 8 < offset + length:
        raise _Malformed("arrow validity bitmap too short")
    out = []
    for i in range(length):
        j = offset + i
        valid = validity is None or validity[j // 8] >> (j % 8) & 1
        out.append(values[offsets[i]:offsets[i + 1]].decode("utf-8") if valid else None)
    return out


def _chunked_array(chunks, kind=None) -> list:
    if not isinstance(chunks, list) or not all(isinstance(c, list) for c in chunks):
        raise _PickleRefused("an arrow chunked array of another kind")
    return [x for c in chunks for x in c]


def _unpickle_block(values, placement, ndim=2):
    return ("block", values, placement)


def _new_index(cls, d):
    if not isinstance(d, dict):
        raise _Malformed("index state is not a dict")
    if cls is _RangeIndexStub:
        start, stop, step = d.get("start", 0), d.get("stop"), d.get("step", 1)
        if not all(isinstance(v, int) for v in (start, stop, step)) or step == 0:
            raise _Malformed("range index bounds are not whole numbers")
        return range(start, stop, step)
    if cls is not _IndexStub or "data" not in d:
        raise _PickleRefused("an index of another kind")
    return d["data"]


def _ndarray_backed(cls, checksum, state=None):
    if cls is not _StringArrayStub:
        raise _PickleRefused("a pandas array of another kind")
    stub = cls()
    stub.state = state
    return stub


def _string_dtype(*args):
    return "string"


_DATAFRAME_GLOBALS = {
    ("builtins", "slice"): slice, ("builtins", "bytearray"): bytearray, ("_codecs", "encode"): _encode,
    ("numpy", "dtype"): _dtype, ("numpy", "ndarray"): "ndarray",
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct, ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar, ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer, ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("pandas", "DataFrame"): _FrameStub, ("pandas.core.frame", "DataFrame"): _FrameStub,
    ("pandas", "Index"): _IndexStub, ("pandas.core.indexes.base", "Index"): _IndexStub,
    ("pandas", "RangeIndex"): _RangeIndexStub, ("pandas.core.indexes.range", "RangeIndex"): _RangeIndexStub,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
    ("pandas.core.internals.managers", "BlockManager"): _ManagerStub,
    ("pandas._libs.internals", "_unpickle_block"): _unpickle_block,
    ("pandas", "NA"): None, ("pandas", "StringDtype"): _string_dtype,
    ("pandas.core.arrays.string_", "StringDtype"): _string_dtype,
    ("pandas.arrays", "StringArray"): _StringArrayStub, ("pandas.core.arrays.string_", "StringArray"): _StringArrayStub,
    ("pandas.arrays", "ArrowStringArray"): _ArrowStringsStub,
    ("pandas.core.arrays.string_arrow", "ArrowStringArray"): _ArrowStringsStub,
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"): _ndarray_backed,
    ("pyarrow.lib", "_restore_array"): _restore_arrow_strings, ("pyarrow.lib", "py_buffer"): _py_buffer,
    ("pyarrow.lib", "type_for_alias"): _type_for_alias, ("pyarrow.lib", "chunked_array"): _chunked_array,
}


def _check_array_state(state) -> None:
    """An ndarray's pickled state ``(version, shape, dtype, fortran, data)`` whose data holds
    exactly what its shape and dtype say (numpy's own ``__setstate__`` does not check an
    object array's list)."""
    import math

    import numpy as np

    if not (isinstance(state, tuple) and len(state) in (4, 5)):
        raise _Malformed("an array with a malformed state")
    shape, dtype, fortran, raw = state[-4:]
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)
            and isinstance(dtype, np.dtype) and isinstance(fortran, bool)):
        raise _Malformed("an array with a malformed shape or dtype")
    size = math.prod(shape)
    if dtype.hasobject:
        fits = dtype == np.dtype(object) and isinstance(raw, list) and len(raw) == size
    else:
        fits = isinstance(raw, (bytes, bytearray)) and len(raw) == size * dtype.itemsize
    if not fits:
        raise _Malformed("an array whose data does not match its shape")


def _dataframe_unpickler(data: bytes, path: Path) -> pickle.Unpickler:
    """The pure-Python unpickler with every global mapped to a stand-in above, objects built
    only from stand-ins, and a numpy dtype's state accepted only when it is the dtype's own."""
    import numpy as np

    try:  # the class names of older pandas versions, mapped to today's
        from pandas.compat.pickle_compat import _class_locations_map as renamed
    except ImportError:  # pragma: no cover - a pandas without the compat module
        renamed = {}

    class DataFrameOnly(pickle._Unpickler):
        dispatch = pickle._Unpickler.dispatch.copy()

        def find_class(self, module: str, name: str):
            module, name = renamed.get((module, name), (module, name))
            module = "builtins" if module == "__builtin__" else module  # Python 2 era writers
            if (module, name) not in _DATAFRAME_GLOBALS:
                raise _PickleRefused(f"{module}.{name}")
            found = _DATAFRAME_GLOBALS[module, name]
            return np.ndarray if found == "ndarray" else found

        def _instantiate(self, klass, args):
            raise _PickleRefused("an old-style instance")

        def load_newobj(self):
            args, cls = self.stack.pop(), self.stack.pop()
            if not (isinstance(cls, type) and issubclass(cls, _Stub)):
                raise _PickleRefused(f"a new {getattr(cls, '__name__', 'object')}")
            self.append(cls(*args))

        def load_reduce(self):
            if self.stack[-2] is np.ndarray:
                raise _PickleRefused("numpy.ndarray called directly")
            pickle._Unpickler.load_reduce(self)

        def load_build(self):
            state, inst = self.stack[-1], self.stack[-2]
            if isinstance(inst, np.dtype):
                order = state[1] if isinstance(state, tuple) and len(state) > 1 else None
                own = inst.newbyteorder(order) if order in ("<", ">") else inst
                if own.__reduce__()[2] != state:
                    raise _PickleRefused("a numpy dtype with a crafted state")
                self.stack.pop()
                self.stack[-1] = own
                return
            if not isinstance(inst, (np.ndarray, _Stub)):
                raise _PickleRefused(f"state for a {type(inst).__name__}")
            if isinstance(inst, np.ndarray):
                _check_array_state(state)  # numpy trusts it: a short object list there is a segfault
            pickle._Unpickler.load_build(self)

        dispatch[pickle.NEWOBJ[0]] = load_newobj
        dispatch[pickle.REDUCE[0]] = load_reduce
        dispatch[pickle.BUILD[0]] = load_build

    return DataFrameOnly(io.BytesIO(data))


def read_dataframe_pickle(path: str | Path):
    """A pandas DataFrame from a pickle file: nothing in the file runs, and no pandas or
    arrow reconstructor sees its bytes (see :func:`_frame_from_stub`), so a crafted file is
    one ``DataError`` line, never code run or a crash."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        stub = _dataframe_unpickler(path.read_bytes(), path).load()
        if not isinstance(stub, _FrameStub):
            raise DataError(f"{path}: holds a {type(stub).__name__.strip('_').replace('Stub', '')}, expected a "
                            "DataFrame")
        return _frame_from_stub(stub, path)
    except DataError:
        raise
    except _PickleRefused as exc:
        asked = str(exc).encode("unicode_escape").decode("ascii")[:200]  # names from the file: one printable line
        raise DataError(f"{path}: refused: the pickle asks for {asked}, and recnb unpickles nothing but a plain "
                        "DataFrame of numbers, strings and lists (a pickle can run code)") from None
    except Exception as exc:  # noqa: BLE001 - any malformed pickle is one line
        why = str(exc).encode("unicode_escape").decode("ascii")[:200] if isinstance(exc, _Malformed) else type(exc).__name__
        raise DataError(f"{path}: not a pandas pickle of a DataFrame ({why})") from None


def _labels(axis, what: str) -> list:
    """An index as plain labels: a range, a list of strings or a 1-D numpy array."""
    import numpy as np

    if isinstance(axis, (_ArrowStringsStub, _StringArrayStub)):
        axis = _strings(axis)
    if isinstance(axis, range):
        return list(axis)
    if isinstance(axis, np.ndarray) and axis.ndim == 1 and axis.dtype.kind in "iuO":
        axis = axis.tolist()
    if not isinstance(axis, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in axis):
        raise _Malformed(f"the {what} labels are not strings or whole numbers")
    return axis


def _strings(stub: _Stub) -> list:
    """The values of a pickled string array: arrow-backed (decoded by
    :func:`_restore_arrow_strings`) or a 1-D numpy array of objects."""
    import numpy as np

    state = stub.state
    if isinstance(stub, _StringArrayStub):  # state: (dtype, ndarray of str and missing values)
        arrays = [v for v in (state if isinstance(state, tuple) else ()) if isinstance(v, np.ndarray)]
        values = arrays[0].tolist() if len(arrays) == 1 and arrays[0].ndim == 1 and arrays[0].dtype == object else None
    else:
        values = state.get("_pa_array", state.get("_data")) if isinstance(state, dict) else None
    if not isinstance(values, list) or not all(v is None or isinstance(v, (str, float)) for v in values):
        raise _Malformed("a string array without its strings")
    return values


def _manager_parts(mgr) -> tuple[list, list]:
    """(blocks as (values, placement), axes) from both pickle forms of a block manager."""
    if mgr.args:  # pandas >= 2.1: BlockManager(blocks, axes)
        blocks, axes = mgr.args[0], mgr.args[1] if len(mgr.args) > 1 else None
        blocks = [b[1:] for b in blocks if isinstance(b, tuple) and len(b) == 3 and b[0] == "block"] \
            if isinstance(blocks, (tuple, list)) else None
    else:  # older: a state whose "0.14.1" entry holds the axes and the blocks
        state = mgr.state[3].get("0.14.1") if isinstance(mgr.state, tuple) and len(mgr.state) > 3 \
            and isinstance(mgr.state[3], dict) else None
        state = state if isinstance(state, dict) else {}
        axes, blocks = state.get("axes"), state.get("blocks")
        blocks = [(b.get("values"), b.get("mgr_locs")) for b in blocks if isinstance(b, dict)] \
            if isinstance(blocks, list) else None
    if not isinstance(axes, list) or len(axes) != 2 or blocks is None:
        raise _Malformed("not the block layout of a 2-D DataFrame")
    return blocks, axes


def _frame_from_stub(stub: _FrameStub, path: Path):
    """A DataFrame built from plain, checked columns: every block's placement must name
    existing columns, each column exactly once, with one value per row."""
    import numpy as np
    import pandas as pd

    state = stub.state if isinstance(stub.state, dict) else {}
    mgr = state.get("_mgr", state.get("_data"))
    if not isinstance(mgr, _ManagerStub):
        raise _Malformed("no block manager")
    blocks, (columns, index) = _manager_parts(mgr)
    columns, index = _labels(columns, "column"), _labels(index, "row")
    cols = [None] * len(columns)
    for values, placement in blocks:
        if isinstance(values, (_ArrowStringsStub, _StringArrayStub)):
            values = np.asarray([_strings(values)], dtype=object)
        if not isinstance(values, np.ndarray) or values.ndim != 2 or values.dtype.kind not in "biufO":
            raise _Malformed("a block that is not a 2-D array of numbers or objects")
        locs = range(*placement.indices(len(columns))) if isinstance(placement, slice) else \
            np.asarray(placement).reshape(-1).tolist()
        if len(locs) != values.shape[0] or values.shape[1] != len(index):
            raise _Malformed("a block whose shape does not match its columns and rows")
        for row, loc in zip(values, locs):
            if not isinstance(loc, int) or not 0 <= loc < len(columns) or cols[loc] is not None:
                raise _Malformed(f"a block placed at column {loc!r} of {len(columns)}")
            cols[loc] = row.copy()
    if any(c is None for c in cols):
        raise _Malformed("a column no block holds")
    df = pd.DataFrame(dict(enumerate(cols)), index=pd.Index(index) if index else None)
    df.columns = pd.Index(columns, dtype=object)
    return df
