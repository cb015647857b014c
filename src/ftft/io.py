"""Atomic, durable file writes: a reader (or Snakemake) never sees a half-written output.

``atomic_path`` writes beside the target, ``fsync``s the file, renames it into place and
``fsync``s the folder, so that after a power loss a path holds either the old or the new
content, never a truncated file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process's current umask (mkstemp makes 0600 files; outputs get the usual mode)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path: str | Path) -> None:
    """Flush a file (or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it into place on success only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.isfile(tmp):  # mkstemp makes 0600 files: give them the usual umask mode
            os.chmod(tmp, 0o666 & ~current_umask())
            fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (umask mode kept)."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
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
    """A JSON object given inline, as ``@file`` or as a file path (empty -> {}).

    Raises ConfigError naming the argument (or file) on bad JSON or a non-object.
    """
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
