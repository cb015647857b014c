"""Resumable training state: saved atomically at every checkpoint, loaded on restart.

The state holds everything the rest of the run depends on (model, optimiser, scheduler,
position in the step/epoch sequence, RNG states, dynamics, metrics and predictions so far,
loss accumulators), so a killed run that resumes ends with bitwise the same outputs on CPU.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path

log = logging.getLogger("ftft.train")
STATE_FILE = "state.pt"


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


def save(state_dir: str | Path, state: dict) -> None:
    """Write the state atomically (a kill mid-write leaves the previous state intact)."""
    with atomic_path(Path(state_dir) / STATE_FILE) as tmp:
        torch.save(state, tmp)


def load(state_dir: str | Path, fingerprint: str) -> dict | None:
    """The saved state, or None if there is none or it belongs to a different spec."""
    path = Path(state_dir) / STATE_FILE
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != fingerprint:
        log.warning("ignoring training state %s: it was saved for a different spec", path)
        return None
    log.info("resuming from %s at step %d", path, state["position"]["step"])
    return state


def clear(state_dir: str | Path) -> None:
    """Delete the state folder after the run's outputs are written."""
    shutil.rmtree(state_dir, ignore_errors=True)
