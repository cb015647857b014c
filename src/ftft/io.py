"""Atomic, durable writes (a path holds the old or the new content, never a truncated file), and readers that
turn a missing, truncated or corrupt file into a ``DataError`` naming it and saying how to rebuild it."""

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import DataError

#: what to do about an unreadable file an earlier job of the workflow wrote (``{path}``: that file)
REBUILD = (
    "rebuild it: add `--force {path}` right after `snakemake` in your command (only the job that writes it runs; "
    "placed after the options it would split the command's targets), then run as before"
)


def rebuild(path: str | Path, fix: str = REBUILD) -> str:
    """REBUILD for ``path`` (a file or a folder output: deleting it is not enough on a finished results folder, where
    Snakemake does not rebuild an intermediate file no pending job needs), or the caller's own ``fix``."""
    return REBUILD.replace("{path}", str(path)) if fix == REBUILD else fix


@contextlib.contextmanager
def atomic_path(path: str | Path, folder: bool = False):
    """Yield a temporary file (or folder) beside ``path``; it replaces ``path`` on success only (umask mode, fsync'ed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = os.umask(0)
    os.umask(mask)
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp / mkdtemp make 0600 / 0700 entries: give them the usual umask mode
            os.chmod(tmp, (0o777 if tmp.is_dir() else 0o666) & ~mask)
            if tmp.is_file():
                _fsync(tmp)
        if folder and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        _fsync(path.parent)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # a full disk or quota: name the file and the cause
            raise DataError(
                f"{path}: cannot write it: {exc.strerror} ({errno.errorcode[exc.errno]}); free space, run again"
            ) from exc
        raise
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_dir(path: str | Path):
    """``atomic_path`` for a folder."""
    return atomic_path(path, folder=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    if type(obj).__module__ == "numpy":  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_parquet(df, path: str | Path, meta: dict | None = None) -> None:
    """Atomically write a data frame as parquet; ``meta`` goes to the schema metadata key ``ftft``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    if meta:
        md = dict(table.schema.metadata or {})
        md[b"ftft"] = json.dumps(meta, default=_json_default).encode()
        table = table.replace_schema_metadata(md)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def parse_json_arg(value: str | None, what: str = "--spec") -> dict:
    """A JSON object given inline, as ``@file`` or as a file path (empty -> {}); ConfigError naming the argument
    (or file) on bad JSON or a non-object."""
    from .config import ConfigError

    if not value:
        return {}
    where, text = what, value
    if not value.lstrip().startswith("{"):
        path = Path(value[1:] if value.startswith("@") else value)
        if not path.is_file():
            raise ConfigError(f"{what}: not a JSON object nor an existing file: {value!r}")
        where, text = str(path), path.read_text()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


# --------------------------------------------------------------------------------- reading


def error_reason(exc: BaseException) -> str:
    """The exception in one line: its type and the first line of its message (at most 300 characters)."""
    lines = str(exc).strip().splitlines()
    text = (lines[0] if lines else "").rstrip(".")
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def unreadable(path: str | Path, what: str, exc: BaseException, fix: str = REBUILD) -> DataError:
    """The error for a file that exists but cannot be read: names it, says why and what to do."""
    return DataError(
        f"{path}: not a readable {what} (truncated or corrupt?): {error_reason(exc)}; {rebuild(path, fix)}"
    )


def _read(path: str | Path, what: str, fix: str, load, errors: tuple | None = None):
    """``load(path)``; a missing file, or a read error (``errors``, default: what pyarrow / pandas raise on a
    truncated or corrupt file), becomes a DataError naming the file and what to do."""
    import pyarrow as pa

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}" + ("" if fix == REBUILD else f"; {fix}"))
    errors = errors or (OSError, ValueError, EOFError, TypeError, NotImplementedError, pa.ArrowException)
    try:
        return load(path)
    except DataError:
        raise
    except errors as exc:
        raise unreadable(path, what, exc, fix) from exc


def read_arrow(path: str | Path, what: str = "parquet file", fix: str = REBUILD, columns: list[str] | None = None):
    """A parquet file as a ``pyarrow.Table`` (only ``columns`` when given: each must exist)."""
    import pyarrow.parquet as pq

    def load(path):
        names = pq.read_schema(path).names
        if missing := [c for c in columns or () if c not in names]:
            raise DataError(f"{path}: {what} has no column(s) {missing}; it has {names}")
        return pq.read_table(path, columns=columns)

    return _read(path, what, fix, load)


def read_parquet(path: str | Path, what: str = "parquet file", fix: str = REBUILD, **kwargs):
    """``pandas.read_parquet`` whose errors name the file (a truncated file is not a traceback)."""
    import pandas as pd

    return _read(path, what, fix, lambda p: pd.read_parquet(p, **kwargs))


def parquet_meta(path: str | Path, what: str = "parquet file", fix: str = REBUILD) -> dict:
    """The ``ftft`` JSON of a parquet file's schema metadata (``{}`` if none)."""
    import pyarrow.parquet as pq

    meta = _read(path, what, fix, lambda p: json.loads((pq.read_schema(p).metadata or {}).get(b"ftft", b"{}")))
    if not isinstance(meta, dict):
        raise DataError(f"{path}: the 'ftft' schema metadata of this {what} is not a JSON object; {rebuild(path, fix)}")
    return meta


def read_json(path: str | Path, what: str = "JSON file", fix: str = REBUILD) -> dict:
    """A JSON object from a file (an empty, truncated or non-object file is a ``DataError``)."""
    obj = _read(path, what, fix, lambda p: json.loads(p.read_text(encoding="utf-8")), (OSError, ValueError))
    if not isinstance(obj, dict):
        raise DataError(f"{path}: {what} must hold a JSON object, got {type(obj).__name__}; {rebuild(path, fix)}")
    return obj


def read_csv(path: str | Path, what: str = "CSV file", fix: str = REBUILD, **kwargs):
    """``pandas.read_csv`` whose errors name the file; a file whose last line has no line break (cut off
    mid-line) is unreadable too (pandas would read the partial row)."""
    import pandas as pd

    def load(path):
        with open(path, "rb") as fh:  # what the workflow writes ends with a line break; a cut file rarely does
            fh.seek(max(0, path.stat().st_size - 1))
            if fh.read(1) not in (b"\n", b""):
                raise ValueError("the last line is cut off")
        return pd.read_csv(path, **kwargs)

    return _read(path, what, fix, load, (OSError, ValueError))  # pandas' parser errors are ValueErrors
