"""Resumable training state: saved atomically at every checkpoint, loaded on restart.

The state holds everything the rest of the run depends on (model, optimiser, scheduler,
position in the step/epoch sequence, RNG states, dynamics, metrics and predictions so far,
loss accumulators), so a killed run that resumes ends with bitwise the same outputs on CPU.

Contract
--------
``save(state_dir, state)`` writes ``{state_dir}/state.pt`` atomically (``ftft.io.atomic_path``:
written beside it, fsynced, renamed into place, folder fsynced): a kill or power loss at any
moment leaves the previous state or the new one, never a mix. ``load(state_dir, fingerprint)``
returns what was saved, equal in nested types and values (tensors and arrays bitwise, same
dtype and shape), or None when there is nothing to resume from:

- no state file -> None;
- a state saved for another spec (fingerprint mismatch) -> None, the file is left alone (the
  next checkpoint replaces it);
- a state that cannot be read (empty, truncated, not this format, an old pickle ``state.pt``,
  bad JSON, hash mismatch) -> a warning naming the file and the reason, the file is renamed
  to ``state.pt.corrupt-<UTC timestamp>`` beside it, and None: the run restarts from scratch
  instead of failing on every rerun. ``clear`` deletes it with the folder once the run is done.

Loading never runs code: the file is never unpickled (``torch.load`` is not used at all).

On-disk format (one file, despite the historical ``.pt`` name: a ``safetensors`` file)
-------------------------------------------------------------------------------------
Every torch tensor and numpy array of the state is one safetensors tensor, named by its path
in the state (``model/bert.embeddings.word_embeddings.weight``, ``dynamics/probs/0``). The
header's ``__metadata__`` (strings only) holds:

- ``format``: ``ftft-train-state``, ``version``: ``1``;
- ``fingerprint``: the state's fingerprint (checked before anything else is decoded);
- ``structure``: a JSON document of the state with every value encoded as
  JSON ``null``/``true``/``false``/int/str/list, finite floats as JSON numbers (exact:
  shortest repr), and one-key objects for the rest:
  ``{"float": "nan"|"inf"|"-inf"}``, ``{"tuple": [...]}``, ``{"dict": {str: value}}`` (all keys
  str), ``{"items": [[key, value], ...]}`` (other keys), ``{"odict": ..., "meta": ...}``
  (``OrderedDict``, with a state dict's ``_metadata``), ``{"tensor": name}``,
  ``{"ndarray": name, "dtype": "<f2", "shape": [...], "raw": false}`` (``raw``: stored as
  bytes because torch has no such dtype, e.g. strings or datetimes) and
  ``{"npscalar": "<f8", "hex": "..."}`` (numpy scalars, bitwise);
- ``sha256``: of the structure and of every tensor's name, dtype, shape and bytes.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
import os
import random
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..io import atomic_path

log = logging.getLogger("ftft.train")
STATE_FILE = "state.pt"  # a safetensors file (module docstring); the name is kept from the pickle days
FORMAT, VERSION = "ftft-train-state", "1"
_MAX_HEADER = 100_000_000  # safetensors' own limit on the header size
_UNREAD = object()


class StateFormatError(ValueError):
    """The state file is not a readable state of this format (the message is the reason)."""


# ------------------------------------------------------------------------------ RNG


def rng_state() -> dict:
    """RNG states of python, numpy, torch (and CUDA when present)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------ encoding


class _Encoder:
    """Split a nested state into a JSON-able structure and a dict of named CPU tensors."""

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}
        self._storages: set[int] = set()

    def _name(self, path: str) -> str:
        path = path.lstrip("/") or "/"
        name, n = path, 1
        while name in self.tensors:
            name, n = f"{path}#{n}", n + 1
        return name

    def _add(self, path: str, t: torch.Tensor) -> str:
        t = t.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr:  # safetensors refuses tensors sharing memory (views, tied weights): store a copy
            if ptr in self._storages:
                t = t.clone()
            self._storages.add(ptr)
        name = self._name(path)
        self.tensors[name] = t
        return name

    def encode(self, value, path: str = ""):
        kind = type(value)
        if value is None or kind in (bool, int, str):
            return value
        if kind is float:
            return value if math.isfinite(value) else {"float": repr(value)}
        if kind is list:
            return [self.encode(v, f"{path}/{i}") for i, v in enumerate(value)]
        if kind is tuple:
            return {"tuple": [self.encode(v, f"{path}/{i}") for i, v in enumerate(value)]}
        if kind in (dict, collections.OrderedDict):
            if all(type(k) is str for k in value):
                body = {"dict": {k: self.encode(v, f"{path}/{k}") for k, v in value.items()}}
            else:
                body = {"items": [[self.encode(k), self.encode(v, f"{path}/{k}")] for k, v in value.items()]}
            if kind is dict:
                return body
            meta = getattr(value, "_metadata", None)
            return {"odict": body, "meta": None if meta is None else self.encode(meta, f"{path}/_metadata")}
        if kind is torch.Tensor:
            if value.layout != torch.strided:
                raise TypeError(f"training state: {path or '/'}: cannot store a {value.layout} tensor")
            return {"tensor": self._add(path, value)}
        if kind is np.ndarray:
            return self._ndarray(value, path)
        if isinstance(value, np.generic) and not value.dtype.hasobject:
            return {"npscalar": value.dtype.str, "hex": value.tobytes().hex()}
        raise TypeError(f"training state: {path or '/'}: cannot store a value of type {kind.__qualname__}")

    def _ndarray(self, arr: np.ndarray, path: str) -> dict:
        if arr.dtype.hasobject or arr.dtype.fields is not None:
            raise TypeError(f"training state: {path or '/'}: cannot store a numpy array of dtype {arr.dtype}")
        native = arr.astype(arr.dtype.newbyteorder("="), order="C", copy=False)  # keeps 0-d arrays 0-d
        try:
            t, raw = torch.from_numpy(native.copy() if not native.flags.writeable else native), False
        except TypeError:  # a dtype torch does not have (strings, datetimes, ...): its bytes
            t, raw = torch.from_numpy(native.reshape(-1).view(np.uint8).copy()), True
        return {"ndarray": self._add(path, t), "dtype": arr.dtype.str, "shape": list(arr.shape), "raw": raw}


class _Decoder:
    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def _tensor(self, name) -> torch.Tensor:
        if name not in self.tensors:
            raise StateFormatError(f"the structure names a tensor {name!r} that the file lacks")
        return self.tensors[name]

    def decode(self, obj):
        if obj is None or type(obj) in (bool, int, float, str):
            return obj
        if type(obj) is list:
            return [self.decode(v) for v in obj]
        if type(obj) is not dict:
            raise StateFormatError(f"unexpected element in the structure: {str(obj)[:80]}")
        if "float" in obj:
            return float(obj["float"])
        if "tuple" in obj:
            return tuple(self.decode(v) for v in obj["tuple"])
        if "dict" in obj:
            return {k: self.decode(v) for k, v in obj["dict"].items()}
        if "items" in obj:
            return {self.decode(k): self.decode(v) for k, v in obj["items"]}
        if "odict" in obj:
            out = collections.OrderedDict(self.decode(obj["odict"]))
            if obj["meta"] is not None:
                out._metadata = self.decode(obj["meta"])
            return out
        if "tensor" in obj:
            return self._tensor(obj["tensor"])
        if "ndarray" in obj:
            arr = self._tensor(obj["ndarray"]).numpy()
            dtype = np.dtype(obj["dtype"])
            if obj["raw"]:
                return arr.view(dtype.newbyteorder("=")).reshape(obj["shape"]).astype(dtype, copy=False)
            if arr.shape != tuple(obj["shape"]):
                raise StateFormatError(f"array {obj['ndarray']!r} has shape {arr.shape}, expected {obj['shape']}")
            return arr.astype(dtype, copy=False)
        if "npscalar" in obj:
            return np.frombuffer(bytes.fromhex(obj["hex"]), dtype=np.dtype(obj["npscalar"]))[0]
        raise StateFormatError(f"unexpected element in the structure: {str(obj)[:80]}")


def _digest(structure: str, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(structure.encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"\0{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


# ------------------------------------------------------------------------------ save / load


def save(state_dir: str | Path, state: dict) -> None:
    """Write the state atomically (a kill mid-write leaves the previous state intact).

    Raises TypeError naming the path in the state of a value it cannot store (before writing).
    """
    enc = _Encoder()
    structure = json.dumps(enc.encode(state), allow_nan=False, separators=(",", ":"))
    fp = state.get("fingerprint") if isinstance(state, dict) else None
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "fingerprint": fp if isinstance(fp, str) else "",
        "structure": structure,
        "sha256": _digest(structure, enc.tensors),
    }
    with atomic_path(Path(state_dir) / STATE_FILE) as tmp:
        save_file(enc.tensors, tmp, metadata=metadata)


def _read_metadata(path: Path) -> dict:
    """The header's metadata; StateFormatError (the reason) when it is not this format."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if not head:
            raise StateFormatError("the file is empty")
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        header, bad_json = _UNREAD, "unreadable"
        if n is not None and n <= _MAX_HEADER and 8 + n <= size:
            try:
                header = json.loads(f.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                bad_json = exc
    if header is _UNREAD:
        if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
            raise StateFormatError(
                "it is a pickle (torch.save) file, the format of older ftft versions; it is not "
                "unpickled, since unpickling a file can run arbitrary code"
            )
        if n is None:
            raise StateFormatError(f"truncated: {size} bytes, too short for a header")
        if n > _MAX_HEADER:
            raise StateFormatError(f"not a {FORMAT} file (it does not start with a safetensors header)")
        if 8 + n > size:
            raise StateFormatError(f"truncated: {size} bytes, the header alone needs {8 + n}")
        raise StateFormatError(f"the header is not valid JSON ({bad_json})")
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StateFormatError(f"not a {FORMAT} file (a safetensors file without its metadata?)")
    if meta.get("version") != VERSION:
        raise StateFormatError(f"unknown {FORMAT} version {meta.get('version')!r} (this ftft reads {VERSION})")
    missing = {"fingerprint", "structure", "sha256"} - set(meta)
    if missing:
        raise StateFormatError(f"the header lacks {', '.join(sorted(missing))}")
    return meta


def _read_state(path: Path, meta: dict) -> dict:
    try:
        tensors = load_file(path)
    except SafetensorError as exc:
        raise StateFormatError(f"the tensors cannot be read ({exc})") from None
    if _digest(meta["structure"], tensors) != meta["sha256"]:
        raise StateFormatError("sha256 mismatch: the content differs from what was written")
    try:
        structure = json.loads(meta["structure"])
    except json.JSONDecodeError as exc:
        raise StateFormatError(f"the structure is not valid JSON ({exc})") from None
    dec = _Decoder(tensors)
    try:
        state = dec.decode(structure)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, StateFormatError):
            raise
        raise StateFormatError(f"the structure cannot be decoded ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise StateFormatError(f"the state is a {type(state).__name__}, not a dict")
    return state


def _set_aside(path: Path, reason: str) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while aside.exists():
        aside, n = path.with_name(f"{path.name}.corrupt-{stamp}-{n}"), n + 1
    try:
        os.replace(path, aside)
    except OSError as exc:
        log.warning(
            "training state %s cannot be read (%s) nor moved aside (%s); starting from scratch", path, reason, exc
        )
        return
    log.warning(
        "training state %s cannot be read (%s); moved it to %s and starting this run from scratch",
        path,
        reason,
        aside.name,
    )


def load(state_dir: str | Path, fingerprint: str) -> dict | None:
    """The saved state, or None if there is none, it belongs to a different spec, or it is
    unreadable (then set aside with a warning: module docstring)."""
    path = Path(state_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        meta = _read_metadata(path)
        if meta["fingerprint"] != fingerprint:
            log.warning("ignoring training state %s: it was saved for a different spec", path)
            return None
        state = _read_state(path, meta)
    except StateFormatError as exc:
        _set_aside(path, str(exc))
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("ignoring training state %s: it was saved for a different spec", path)
        return None
    step = state.get("position", {}).get("step") if isinstance(state.get("position"), dict) else None
    log.info("resuming from %s at step %s", path, step)
    return state


def clear(state_dir: str | Path) -> None:
    """Delete the state folder after the run's outputs are written (set-aside files with it)."""
    shutil.rmtree(state_dir, ignore_errors=True)
