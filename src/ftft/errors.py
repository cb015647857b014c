"""Errors raised for bad user input. The CLI prints their message (no traceback)."""


class FtftError(Exception):
    """Base class: bad input (config, dataset row, path, model name) or a failed check.

    Messages name the file, the field and the offending value.
    """


class DataError(FtftError):
    """A dataset file is missing, corrupt or malformed."""


class ChecksumError(DataError):
    """A downloaded file does not match its recorded sha256."""


class ModelError(FtftError):
    """A model id or path cannot be resolved or loaded."""
