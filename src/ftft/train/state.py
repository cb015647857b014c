"""Resumable training state (``{state_dir}/resume.pt``, ``torch.save``): everything the rest of a run depends on, so
that a killed run resumes to bitwise the same outputs on CPU. ``load`` returns None when there is none or it belongs
to another spec; a state that cannot be read (damaged, or more than tensors, numpy arrays and plain values, which
``torch.load(weights_only=True)`` refuses unread) is set aside as ``resume.pt.corrupt-<UTC time>`` with a warning
and the run restarts, instead of failing on every rerun.
"""

import copy
import logging
import os
import pickle
import random
import threading
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path, error_reason

log = logging.getLogger("ftft.train")
STATE_FILE = "resume.pt"
# numpy arrays and scalars (dynamics, predictions, the numpy RNG state): constructors only, no code
NUMPY_GLOBALS = [np.dtype, np.ndarray, np.ndarray(0).__reduce__()[0], np.float64(0).__reduce__()[0]] + [
    getattr(np.dtypes, name) for name in np.dtypes.__all__
]


def rng_state() -> dict:
    """RNG states of python, numpy, torch (and CUDA when present)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    return state | ({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(state_dir: str | Path, state: dict) -> None:
    """Write the state atomically (a kill mid-write leaves the previous one)."""
    with atomic_path(Path(state_dir) / STATE_FILE) as tmp:
        torch.save(state, tmp)


def _host_copy(obj, old=None):
    """``obj`` with every tensor copied into host memory (into ``old``'s buffer of the same shape, if any)."""
    if isinstance(obj, torch.Tensor):
        if not (isinstance(old, torch.Tensor) and old.shape == obj.shape and old.dtype == obj.dtype):
            old = torch.empty(obj.shape, dtype=obj.dtype, pin_memory=obj.is_cuda)
        return old.copy_(obj.detach(), non_blocking=True)
    if isinstance(obj, dict):
        old = old if isinstance(old, dict) else {}
        return {k: _host_copy(v, old.get(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        old = old if isinstance(old, list | tuple) and len(old) == len(obj) else [None] * len(obj)
        return type(obj)(_host_copy(v, o) for v, o in zip(obj, old, strict=True))
    return copy.deepcopy(obj)


class BackgroundSaver:
    """``save`` in a background thread, after copying the state into reused host buffers (pinned on CUDA, on a
    side stream). Forward and backward only read the weights; the optimiser step waits for the copy (``guard``),
    on CUDA on the device (``wait_event``). The next save and the end of the run wait for the write."""

    def __init__(self):
        self._thread, self._error, self._buffers, self._done = None, None, None, None
        self._copied = threading.Event()
        self._copied.set()
        self._stream = torch.cuda.Stream() if torch.cuda.is_available() else None

    def guard(self, optimizer) -> None:
        """Make ``optimizer.step`` wait until the state being saved is copied."""
        optimizer.register_step_pre_hook(lambda *_: self.before_update())

    def before_update(self) -> None:
        self._copied.wait()
        if self._done is not None:
            torch.cuda.current_stream().wait_event(self._done)

    def save(self, state_dir: str | Path, state: dict) -> None:
        self.wait()
        self._copied.clear()
        ready = None
        if self._stream is not None:
            ready = torch.cuda.Event()
            ready.record()
        self._thread = threading.Thread(target=self._run, args=(state_dir, state, ready), daemon=True)
        self._thread.start()

    def _run(self, state_dir, state: dict, ready) -> None:
        try:
            if ready is None:
                self._buffers = _host_copy(state, self._buffers)
            else:
                with torch.cuda.stream(self._stream):
                    self._stream.wait_event(ready)
                    self._buffers = _host_copy(state, self._buffers)
                    self._done = torch.cuda.Event()
                    self._done.record()
            self._copied.set()
            if self._done is not None:
                self._done.synchronize()
            save(state_dir, self._buffers)
        except BaseException as exc:  # re-raised on the training thread by wait()
            self._error = exc
        finally:
            self._copied.set()

    def wait(self) -> None:
        """Block until the last save is on disk; raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error


def _read(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:  # torch.save writes a zip with a CRC per record
        bad = archive.testzip()
    if bad is not None:
        raise ValueError(f"CRC mismatch in {bad}: the content differs from what was written")
    with torch.serialization.safe_globals(NUMPY_GLOBALS):
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"the state is a {type(state).__name__}, not a dict")
    return state


def load(state_dir: str | Path, fingerprint: str) -> dict | None:
    """The saved state, or None (module docstring)."""
    path = Path(state_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = _read(path)
    except Exception as exc:  # whatever the reason, an unreadable state must not fail every rerun
        reason = error_reason(exc)
        if isinstance(exc, pickle.UnpicklingError):  # torch's message advises weights_only=False: not here
            why = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line]
            reason = f"it holds more than tensors and plain values, refused unread: {(why or ['?'])[0]}"
        aside = path.with_name(f"{path.name}.corrupt-{datetime.now(UTC):%Y%m%dT%H%M%S.%fZ}")
        try:
            os.replace(path, aside)
            where = f"moved it to {aside.name}"
        except OSError as err:
            where = f"cannot move it aside ({err})"
        log.warning("training state %s cannot be read (%s); %s, starting from scratch", path, reason, where)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("ignoring training state %s: it was saved for a different spec", path)
        return None
    log.info("resuming from %s at step %s", path, state.get("position", {}).get("step"))
    return state
