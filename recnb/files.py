"""Files recnb writes and reads itself: atomic writes (a kill mid-write never leaves a
half-written file) and JSON option files (one clear line for anything but a JSON object)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from recnb.errors import ConfigError


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``
    (atomic on one filesystem): readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)
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
