"""One GPU per training job on a multi-GPU workstation, claimed with a lock file per device.

``snakemake --resources gpu=N`` runs N training jobs at once but gives them no device ids, so
every job would train on ``cuda:0``. The training command calls :func:`claim_gpu` before
anything in the process touches CUDA: CUDA reads ``CUDA_VISIBLE_DEVICES`` once, when the driver
starts, and ``torch.cuda.is_available()`` already starts it (importing torch does not). This
module imports no torch.

- ``CUDA_VISIBLE_DEVICES`` already set (a scheduler such as SLURM chose the device, or the
  user did) -> nothing is claimed, None (logged).
- The devices are counted without importing torch: ``FTFT_GPU_COUNT`` when set (tests use it
  to simulate devices), else the ``GPU i: ...`` lines of ``nvidia-smi -L``; none (no driver,
  no ``nvidia-smi``, a CPU machine) -> None.
- The first free device ``i`` is the first ``{lock_dir}/gpu{i}.lock`` on which an exclusive
  non-blocking ``flock`` succeeds; the claim exports ``CUDA_VISIBLE_DEVICES=i`` (and
  ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` when unset, so that ``i`` is ``nvidia-smi``'s GPU ``i``)
  and writes pid, host and time into the lock file for humans. The lock's file descriptor
  stays open for the life of the process: the kernel drops the lock when the process exits
  or is killed (even by SIGKILL), so a dead job never leaves a stale lock. Processes that the
  job forks inherit the descriptor and hold the device with it.
- All devices taken -> retry every ``poll_s`` for up to ``wait_s`` seconds, then
  :class:`GpuBusyError` naming the lock folder and each device's holder.

The lock folder must be shared by every job that may use the same GPUs (one per workstation
or per workflow) and be on a local file system (``flock`` over NFS is not reliable).

A training job also holds its run (``hold_run``: a lock beside the run's state folder, so two
trainers never share one) and ends when the Snakemake that started it dies (``die_with_parent``).
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FtftError

log = logging.getLogger("ftft.devices")
COUNT_ENV = "FTFT_GPU_COUNT"  # number of devices, instead of asking nvidia-smi (tests, odd setups)
WAIT_S = 600.0  # how long a job waits for a device when all are taken
POLL_S = 1.0


class GpuBusyError(FtftError):
    """Every GPU is claimed by another process (or the lock folder cannot be used)."""


class RunBusyError(FtftError):
    """Another process holds the lock of the run's state folder."""


@dataclass
class Claim:
    """A claimed device: ``index`` is exported as ``CUDA_VISIBLE_DEVICES``; ``fd`` holds the lock."""

    index: int
    path: Path
    fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        """Drop the lock (idempotent). CUDA_VISIBLE_DEVICES stays as it is."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def count_gpus() -> int:
    """``FTFT_GPU_COUNT`` if set, else the number of GPUs that ``nvidia-smi -L`` lists (0 without it)."""
    value = os.environ.get(COUNT_ENV)
    if value is not None and value.strip():
        try:
            n = int(value)
        except ValueError:
            raise FtftError(f"{COUNT_ENV}={value!r}: expected a whole number of GPUs (or leave it unset)") from None
        if n < 0:
            raise FtftError(f"{COUNT_ENV}={value!r}: expected a whole number of GPUs (or leave it unset)")
        return n
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        return 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("nvidia-smi -L failed (%s): not assigning a GPU", exc)
        return 0
    if out.returncode != 0:
        log.warning("nvidia-smi -L exited with %d (%s): not assigning a GPU", out.returncode, out.stderr.strip())
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _open_lock(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except PermissionError:  # another user's lock file: flock works on a read-only descriptor too
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (st.st_dev, st.st_ino)


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None when another process holds it."""
    while True:
        fd = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd
        os.close(fd)  # the file was deleted or replaced while we opened it: lock the one there now


def _record_holder(fd: int, what: str) -> None:
    note = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S %z')} ({what})\n"
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, note.encode(), 0)
    except OSError:  # read-only descriptor: the lock holds all the same
        pass


def _holders(lock_dir: Path, n: int) -> str:
    parts = []
    for i in range(n):
        try:
            text = (lock_dir / f"gpu{i}.lock").read_text().strip()
        except OSError:
            text = ""
        parts.append(f"GPU {i}: {text or 'holder unknown'}")
    return "; ".join(parts)


def claim_gpu(
    lock_dir: str | Path, n_devices: int | None = None, wait_s: float = WAIT_S, poll_s: float = POLL_S
) -> Claim | None:
    """Claim a free GPU for this process and export ``CUDA_VISIBLE_DEVICES`` (module docstring).

    Call before anything initialises CUDA. Returns None when the device is set already or there
    is none; raises GpuBusyError after ``wait_s`` seconds when all ``n_devices`` are taken.
    """
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
    deadline = time.monotonic() + max(0.0, wait_s)
    next_note = 0.0
    while True:
        for i in range(n):
            path = lock_dir / f"gpu{i}.lock"
            try:
                fd = _try_lock(path)
            except OSError as exc:
                raise GpuBusyError(f"cannot use the GPU lock file {path}: {exc}") from None
            if fd is not None:
                _record_holder(fd, f"GPU {i}")
                os.environ["CUDA_VISIBLE_DEVICES"] = str(i)
                os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
                log.info("claimed GPU %d of %d (%s)", i, n, path)
                return Claim(i, path, fd)
        now = time.monotonic()
        if now >= deadline:
            raise GpuBusyError(
                f"all {n} GPUs are claimed by other jobs (lock files in {lock_dir}); waited {wait_s:g} s. "
                f"Holders: {_holders(lock_dir, n)}. Wait for them, lower --resources gpu=..., "
                f"or set CUDA_VISIBLE_DEVICES yourself"
            )
        if now >= next_note:
            log.info("all %d GPUs are claimed (%s); waiting up to %.0f s", n, _holders(lock_dir, n), deadline - now)
            next_note = now + 60.0
        time.sleep(min(poll_s, max(0.0, deadline - now)))


def hold_run(state_dir: str | Path) -> int:
    """An exclusive lock on a run's state folder (``{state_dir}.lock``, beside it: the folder is deleted at the
    end) for the life of the process, like a GPU claim; RunBusyError naming the holder when another process
    trains the same run (e.g. one orphaned by a killed Snakemake)."""
    path = Path(f"{state_dir}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    if (fd := _try_lock(path)) is None:
        holder = path.read_text().strip() or "holder unknown"
        raise RunBusyError(
            f"another process trains this run: {holder} (lock {path}). If its Snakemake was killed, end it "
            f"(kill PID) or let it finish, then run again"
        )
    _record_holder(fd, f"training {state_dir}")
    return fd


def die_with_parent() -> None:
    """SIGTERM this process when its parent (the Snakemake that started the job) dies (Linux only)."""
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the call
            os.kill(os.getpid(), signal.SIGTERM)
