"""Errors a user can fix, and the one check every config dataclass runs on its fields.

The CLI prints a :class:`RecnbError` as one line and exits with code 2."""

from __future__ import annotations

import dataclasses
import math


class RecnbError(ValueError):
    """Base class: bad input that the user can correct (file, line, argument). A
    ``ValueError`` too, so Python callers that catch bad values catch it."""


class DataError(RecnbError):
    """A data file or dataset name is wrong: the message names the file and line."""


class ConfigError(RecnbError):
    """A model, option or configuration value is wrong: the message names the field."""


class TrainingDiverged(RecnbError):
    """The loss or the weights went NaN or infinite: the message names the epoch."""


def from_checked_dict(cls, values: dict, what: str):
    """Build the dataclass ``cls`` from ``values``, refusing unknown keys with one line that
    names them and the known ones (a typo in a JSON config must not pass silently)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{what}: expected a JSON object of field: value, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{what}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return cls(**values)


# ----------------------------------------------------------------------------- field checks
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list, tuple),
          "dict": (dict,), "tuple": (list, tuple)}


def annotation_types(annotation) -> tuple | None:
    """The Python types a dataclass field annotated ``annotation`` (a string such as
    ``"float | None"`` or ``"list"``) accepts, an int counting as a float; ``None`` where the
    annotation names a type this check does not know (a nested config runs its own check)."""
    types = []
    for part in str(getattr(annotation, "__name__", annotation)).replace("Optional[", "").replace("]", "").split("|"):
        part = part.strip().split("[")[0]
        kinds = (type(None),) if part == "None" else _TYPES.get(part)
        if kinds is None:
            return None
        types += kinds
    return tuple(dict.fromkeys(types))


def accepts(types: tuple | None, value) -> bool:
    """Whether ``value`` is one of ``types`` (from :func:`annotation_types`); a bool is not an int."""
    if types is None:
        return True
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def _interval(spec: str):
    """``"[0, 1)"`` -> (0.0, 1.0, low_closed=True, high_closed=False)."""
    lo, hi = spec[1:-1].split(",")
    return float(lo), float(hi), spec[0] == "[", spec[-1] == "]"


def check_fields(obj, ranges: dict[str, str], what: str) -> None:
    """Refuse, in one line naming the field, a value of the wrong type or outside its range.

    ``ranges`` maps a field to an interval such as ``"[1, inf)"`` or ``"[0, 1)"``; a number
    must also be finite where the interval is open at infinity (NaN never passes)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not accepts(annotation_types(f.type), value):
            raise ConfigError(f"{what}: {f.name} must be {f.type}, got {value!r} ({type(value).__name__})")
        spec = ranges.get(f.name)
        if spec is None or value is None:
            continue
        lo, hi, lo_closed, hi_closed = _interval(spec)
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{what}: {f.name} must hold numbers in {spec}, got {v!r}")
            ok = (not math.isnan(v) and (v >= lo if lo_closed else v > lo) and (v <= hi if hi_closed else v < hi))
            if not ok:
                raise ConfigError(f"{what}: {f.name} must be in {spec}, got {value}")
