"""One GPU per training job on a multi-GPU workstation, claimed with a ``filelock`` per device; no torch import.

``claim_gpu`` (before anything starts CUDA) does nothing when ``CUDA_VISIBLE_DEVICES`` is set or no GPU is found
(``FTFT_GPU_COUNT``, else ``nvidia-smi -L``); otherwise it locks the first free ``{lock_dir}/gpu{i}.lock``, exports
``CUDA_VISIBLE_DEVICES=i`` and holds the lock for the life of the process, waiting up to ``wait_s`` when all are
taken. ``hold_run`` locks a run's state folder the same way; ``die_with_parent`` ends the job when its Snakemake
dies. The lock folder must be local (flock over NFS is not reliable).
"""

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import FtftError

log = logging.getLogger("ftft.devices")
COUNT_ENV = "FTFT_GPU_COUNT"  # number of devices, instead of asking nvidia-smi (tests, odd setups)
WAIT_S = 600.0  # how long a job waits for a device when all are taken
POLL_S = 1.0


class GpuBusyError(FtftError):
    """Every GPU is claimed by another process (or the lock folder cannot be used)."""


class RunBusyError(FtftError):
    """Another process holds the lock of the run's state folder."""


_HELD: list[FileLock] = []  # a claim lives as long as the process, even when the caller drops it


def count_gpus() -> int:
    """``FTFT_GPU_COUNT`` if set, else the number of GPUs that ``nvidia-smi -L`` lists (0 without it)."""
    value = os.environ.get(COUNT_ENV)
    if value is not None and value.strip():
        if not value.strip().isdigit():
            raise FtftError(f"{COUNT_ENV}={value!r}: expected a whole number of GPUs (or leave it unset)")
        return int(value)
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True)
    except FileNotFoundError:
        return 0
    except (OSError, subprocess.SubprocessError) as exc:
        stderr = (getattr(exc, "stderr", "") or "").strip()
        log.warning("nvidia-smi -L failed (%s %s): not assigning a GPU", exc, stderr)
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _note(what: str, fd: int) -> None:
    note = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S %z')} ({what})\n"
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, note.encode(), 0)
    except OSError:  # another user's lock file, opened read-only: locked all the same, just not annotated
        pass


def _holder(path: str | Path) -> str:
    try:
        return Path(path).read_text().strip() or "holder unknown"
    except OSError:  # not there, or another user's unreadable lock file
        return "holder unknown"


def claim_gpu(
    lock_dir: str | Path, n_devices: int | None = None, wait_s: float = WAIT_S, poll_s: float = POLL_S
) -> FileLock | None:
    """Claim a free GPU and export ``CUDA_VISIBLE_DEVICES`` (module docstring): the held lock (``release()`` frees
    it early), or None when the device is set already or there is none; GpuBusyError after ``wait_s``."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        log.info("CUDA_VISIBLE_DEVICES=%r is set already: not claiming a GPU", os.environ["CUDA_VISIBLE_DEVICES"])
        return None
    n = count_gpus() if n_devices is None else int(n_devices)
    if n <= 0:
        log.info("no GPU found: not claiming one")
        return None
    lock_dir = Path(lock_dir)
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GpuBusyError(f"cannot create the GPU lock folder {lock_dir}: {exc}; choose a writable folder") from None
    # on_acquired: the holder's note goes into the lock file (a waiting claimant does not truncate it)
    locks = [
        FileLock(lock_dir / f"gpu{i}.lock", thread_local=False, on_acquired=partial(_note, f"GPU {i}"))
        for i in range(n)
    ]
    deadline = time.monotonic() + max(0.0, wait_s)
    next_note = 0.0
    while True:
        for i, lock in enumerate(locks):
            try:
                lock.acquire(blocking=False)
            except Timeout:
                continue
            except OSError as exc:
                raise GpuBusyError(f"cannot use the GPU lock file {lock.lock_file}: {exc}") from None
            os.environ["CUDA_VISIBLE_DEVICES"] = str(i)
            os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
            log.info("claimed GPU %d of %d (%s)", i, n, lock.lock_file)
            _HELD.append(lock)
            return lock
        now = time.monotonic()
        holders = "; ".join(f"GPU {i}: {_holder(lock.lock_file)}" for i, lock in enumerate(locks))
        if now >= deadline:
            raise GpuBusyError(
                f"all {n} GPUs are claimed by other jobs (lock files in {lock_dir}); waited {wait_s:g} s. "
                f"Holders: {holders}. Wait for them, lower --resources gpu=..., "
                f"or set CUDA_VISIBLE_DEVICES yourself"
            )
        if now >= next_note:
            log.info("all %d GPUs are claimed (%s); waiting up to %.0f s", n, holders, deadline - now)
            next_note = now + 60.0
        time.sleep(min(poll_s, max(0.0, deadline - now)))


def hold_run(state_dir: str | Path) -> FileLock:
    """An exclusive lock on a run's state folder (``{state_dir}.lock``, beside it: the folder is deleted at the
    end) for the life of the process, like a GPU claim; RunBusyError naming the holder when another process
    trains the same run (e.g. one orphaned by a killed Snakemake)."""
    path = Path(state_dir).with_name(Path(state_dir).name + ".lock")  # beside it, also for "dir/"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, thread_local=False, on_acquired=partial(_note, f"training {state_dir}"))
    try:
        lock.acquire(blocking=False)
    except Timeout:
        raise RunBusyError(
            f"another process trains this run: {_holder(path)} (lock {path}). If its Snakemake was killed, end it "
            f"(kill PID) or let it finish, then run again"
        ) from None
    _HELD.append(lock)
    return lock


def die_with_parent() -> None:
    """SIGTERM this process when its parent (the Snakemake that started the job) dies (Linux only)."""
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent or parent == 1:  # the parent died before the call (we were re-parented)
            os.kill(os.getpid(), signal.SIGTERM)
