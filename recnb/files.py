"""Files recnb writes and reads itself: atomic writes (a kill mid-write never leaves a
half-written file), JSON option files (one clear line for anything but a JSON object) and
the pandas pickles of the official DLLM2Rec layout, read without running their code."""

from __future__ import annotations

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


# What a pickled DataFrame of numbers and lists needs, in the pandas and numpy versions that
# write the official files (older names are mapped to these by pandas' own compat table).
# Anything else a pickle asks for is refused: unpickling calls what it names.
_DATAFRAME_GLOBALS = {
    ("builtins", "slice"), ("builtins", "bytearray"), ("_codecs", "encode"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("pandas", "DataFrame"), ("pandas", "Index"), ("pandas", "RangeIndex"),
    ("pandas.core.frame", "DataFrame"), ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.base", "_new_Index"), ("pandas.core.indexes.range", "RangeIndex"),
    ("pandas.core.internals.managers", "BlockManager"), ("pandas._libs.internals", "_unpickle_block"),
    # string column labels (pandas >= 3 stores them as a string array, on pyarrow where installed)
    ("pandas", "NA"), ("pandas", "StringDtype"), ("pandas.core.arrays.string_", "StringDtype"),
    ("pandas.arrays", "StringArray"), ("pandas.core.arrays.string_", "StringArray"),
    ("pandas.arrays", "ArrowStringArray"), ("pandas.core.arrays.string_arrow", "ArrowStringArray"),
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
    ("pyarrow.lib", "_restore_array"), ("pyarrow.lib", "py_buffer"), ("pyarrow.lib", "type_for_alias"),
}


def _dataframe_unpickler(data: bytes, path: Path) -> pickle.Unpickler:
    try:  # pandas' unpickler maps the class names of older pandas versions to today's
        from pandas.compat.pickle_compat import Unpickler as base
        from pandas.compat.pickle_compat import _class_locations_map as renamed
    except ImportError:  # pragma: no cover - a pandas without the compat module
        base, renamed = pickle.Unpickler, {}

    class DataFrameOnly(base):
        def find_class(self, module: str, name: str):
            module, name = renamed.get((module, name), (module, name))
            if module == "__builtin__":  # protocol 0-2 pickles from Python 2 era writers
                module = "builtins"
            if (module, name) not in _DATAFRAME_GLOBALS:
                raise DataError(f"{path}: refused: the pickle asks for {module}.{name}, and recnb unpickles "
                                "nothing but a plain DataFrame (a pickle can run code)")
            return super().find_class(module, name)

    return DataFrameOnly(io.BytesIO(data))


def read_dataframe_pickle(path: str | Path):
    """A pandas DataFrame from a pickle file, refusing every global a plain DataFrame of
    numbers and lists does not need, so a crafted file cannot run code."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        df = _dataframe_unpickler(path.read_bytes(), path).load()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed pickle is one line
        raise DataError(f"{path}: not a pandas pickle ({type(exc).__name__})") from None
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{path}: holds a {type(df).__name__}, expected a DataFrame")
    return df
