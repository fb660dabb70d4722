"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class RecnbError(Exception):
    """Base class: bad input that the user can correct (file, line, argument)."""


class DataError(RecnbError):
    """A data file or dataset name is wrong: the message names the file and line."""


class ConfigError(RecnbError):
    """A model, option or configuration value is wrong: the message names the field."""
