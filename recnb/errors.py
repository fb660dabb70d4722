"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class RecnbError(Exception):
    """Base class: bad input that the user can correct (file, line, argument)."""


class DataError(RecnbError):
    """A data file or dataset name is wrong: the message names the file and line."""


class ConfigError(RecnbError):
    """A model, option or configuration value is wrong: the message names the field."""


def from_checked_dict(cls, values: dict, what: str):
    """Build the dataclass ``cls`` from ``values``, refusing unknown keys with one line that
    names them and the known ones (a typo in a JSON config must not pass silently)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{what}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return cls(**values)
