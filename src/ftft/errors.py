"""Errors for bad input (config, dataset row, path, model name) or a failed check. Their messages name the
file, the field and the offending value; the CLI prints them without a traceback."""


class FtftError(Exception):
    """Base class of ftft's errors."""


class DataError(FtftError):
    """A dataset file is missing, corrupt or malformed."""


class ChecksumError(DataError):
    """A downloaded file does not match its recorded sha256."""


class ModelError(FtftError):
    """A model id or path cannot be resolved or loaded."""
