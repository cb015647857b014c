"""GPU claims (ftft.devices) with a simulated device count: real processes, real flock locks.

Concurrent claimants get distinct devices, a SIGKILLed holder frees its device, a busy
workstation fails after the wait naming the lock folder and the holders, a device set by a
scheduler is respected, and no GPU means no claim.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ftft import devices
from ftft.devices import COUNT_ENV, GpuBusyError, claim_gpu, count_gpus
from ftft.errors import FtftError

pytestmark = pytest.mark.integration  # real training runs / subprocesses / servers: the integration tier

CLAIMANT = textwrap.dedent(
    """
    import os, sys, time
    from ftft.devices import claim_gpu
    from ftft.errors import FtftError
    lock_dir, go, wait_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    while not os.path.exists(go):
        time.sleep(0.002)
    try:
        claim = claim_gpu(lock_dir, wait_s=wait_s, poll_s=0.05)
    except FtftError as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)
    assert "torch" not in sys.modules  # counting and claiming must not initialise CUDA
    print(os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
    sys.stdin.read()  # hold the device until the test closes stdin
    """
)


@pytest.fixture
def clean_env(monkeypatch):
    """No CUDA_* variables (restored after the test, whatever claim_gpu exported)."""
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    return monkeypatch


class Claimant:
    """One ``claim_gpu`` in its own Python process, started before the go file exists."""

    def __init__(self, lock_dir: Path, go: Path, n: int, wait_s: float = 20.0):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUDA_")}
        env[COUNT_ENV] = str(n)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLAIMANT, str(lock_dir), str(go), str(wait_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def device(self, timeout: float = 15.0) -> str | None:
        """The device it claimed, or None if it printed nothing within ``timeout``."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().strip() if ready else None

    def release(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def claimants(tmp_path):
    started = []

    def start(n: int, count: int, wait_s: float = 20.0) -> list[Claimant]:
        new = [Claimant(tmp_path / "locks", tmp_path / "go", n, wait_s) for _ in range(count)]
        started.extend(new)
        return new

    yield start
    for c in started:
        if c.proc.poll() is None:
            c.kill()
        for stream in (c.proc.stdin, c.proc.stdout, c.proc.stderr):
            if stream and not stream.closed:
                stream.close()


def test_concurrent_claimants_get_distinct_devices_and_the_next_one_fails_naming_holders(tmp_path, claimants):
    holders = claimants(4, 4)
    (tmp_path / "go").touch()  # all four race for the locks at once
    got = [c.device() for c in holders]
    assert sorted(got) == ["0", "1", "2", "3"]
    for i in range(4):  # the lock file tells humans who holds the device
        note = (tmp_path / "locks" / f"gpu{i}.lock").read_text()
        assert f"pid {holders[got.index(str(i))].proc.pid} " in note and f"(GPU {i})" in note

    start = time.monotonic()
    (late,) = claimants(4, 1, wait_s=0.5)
    assert late.proc.wait(15) == 3
    assert time.monotonic() - start >= 0.5
    err = late.proc.stderr.read()
    assert "all 4 GPUs are claimed" in err and str(tmp_path / "locks") in err
    assert all(f"pid {c.proc.pid} " in err for c in holders)

    holders[0].release()  # an exited holder frees its device for the next claimant
    (after,) = claimants(4, 1, wait_s=0.5)
    assert after.device() == got[0]


def test_killed_holder_frees_its_device_for_a_waiting_claimant(tmp_path, claimants):
    holders = claimants(2, 2)
    (tmp_path / "go").touch()
    got = [c.device() for c in holders]
    assert sorted(got) == ["0", "1"]
    (waiter,) = claimants(2, 1, wait_s=20.0)
    assert waiter.device(timeout=1.0) is None  # both taken: it waits
    holders[1].kill()  # SIGKILL: no cleanup code runs, the kernel drops the lock
    assert waiter.device() == got[1]
    assert (tmp_path / "locks" / f"gpu{got[1]}.lock").is_file()  # the file stays; only the lock counts


def test_claim_in_process_exports_device_and_release_frees_it(tmp_path, clean_env):
    clean_env.setenv(COUNT_ENV, "2")
    first = claim_gpu(tmp_path)
    assert first.index == 0 and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    del os.environ["CUDA_VISIBLE_DEVICES"]
    with claim_gpu(tmp_path) as second:  # another open of the lock file: GPU 0 is busy
        assert second.index == 1 and os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        del os.environ["CUDA_VISIBLE_DEVICES"]
        with pytest.raises(GpuBusyError, match="all 2 GPUs are claimed"):
            claim_gpu(tmp_path, wait_s=0)
    assert second.fd is None
    first.release()
    first.release()  # idempotent
    third = claim_gpu(tmp_path, n_devices=1)
    assert third.index == 0
    third.release()


def test_preset_cuda_visible_devices_is_respected(tmp_path, clean_env):
    clean_env.setenv(COUNT_ENV, "4")
    clean_env.setenv("CUDA_VISIBLE_DEVICES", "3")  # e.g. set by SLURM for this job
    assert claim_gpu(tmp_path / "locks") is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert "CUDA_DEVICE_ORDER" not in os.environ
    assert not (tmp_path / "locks").exists()


def test_no_gpu_means_no_claim(tmp_path, clean_env):
    clean_env.setenv(COUNT_ENV, "0")
    assert claim_gpu(tmp_path / "locks") is None
    clean_env.delenv(COUNT_ENV)
    clean_env.setenv("PATH", str(tmp_path))  # no nvidia-smi at all
    assert count_gpus() == 0
    assert claim_gpu(tmp_path / "locks") is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and not (tmp_path / "locks").exists()


def test_nvidia_smi_listing_is_counted(tmp_path, clean_env):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        "echo 'GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-aaaa)'\n"
        "echo '  MIG 1g.10gb     Device  0: (UUID: MIG-bbbb)'\n"
        "echo 'GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-cccc)'\n"
    )
    smi.chmod(0o755)
    clean_env.delenv(COUNT_ENV, raising=False)
    clean_env.setenv("PATH", str(tmp_path))
    assert count_gpus() == 2
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert count_gpus() == 0  # a broken driver: no claim (logged), training decides the device


@pytest.mark.parametrize("value", ["two", "-1"])
def test_bad_simulated_count_names_the_variable(value, tmp_path, clean_env):
    clean_env.setenv(COUNT_ENV, value)
    with pytest.raises(FtftError, match=COUNT_ENV):
        claim_gpu(tmp_path)


def test_unusable_lock_folder_is_named(tmp_path, clean_env):
    clean_env.setenv(COUNT_ENV, "1")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(GpuBusyError, match=str(blocker / "locks")):
        devices.claim_gpu(blocker / "locks")


HOLDER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from ftft.devices import die_with_parent, hold_run
    if sys.argv[1] == "trainer":
        die_with_parent()
        hold_run(sys.argv[2])
        print(os.getpid(), flush=True)
        time.sleep(120)
    else:  # a stand-in for Snakemake: starts a trainer, then waits to be killed
        subprocess.Popen([sys.executable, __file__, "trainer", sys.argv[2]])
        time.sleep(120)
    """
)


def test_second_trainer_of_a_run_fails_naming_the_holder_and_a_killed_parent_ends_it(tmp_path):
    """A trainer holds its run's state folder; a second one fails at once naming the holder's pid. When the
    process that started the trainer is SIGKILLed (Snakemake killed), the trainer ends and frees the run."""
    script, state = tmp_path / "holder.py", tmp_path / "state" / "run1"
    script.write_text(HOLDER)
    parent = subprocess.Popen([sys.executable, str(script), "parent", str(state)], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())  # the trainer's pid, printed once it holds the lock
        with pytest.raises(devices.RunBusyError, match=rf"pid {pid} .*training {state}"):
            devices.hold_run(state)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 20
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists(), "the trainer outlived the process that started it"
        os.close(devices.hold_run(state))  # the run is free again
    finally:
        parent.kill()
