"""GPU claims (ftft.devices) with a simulated device count: real processes, real locks."""

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftft import devices
from ftft.devices import COUNT_ENV, GpuBusyError, claim_gpu, count_gpus
from ftft.errors import FtftError

pytestmark = pytest.mark.integration

CLAIMANT = """
import os, sys, time
from ftft.devices import claim_gpu
from ftft.errors import FtftError
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
try:
    claim_gpu(sys.argv[1], wait_s=float(sys.argv[3]), poll_s=0.05)  # the claim is not kept: it holds all the same
except FtftError as exc:
    sys.exit(str(exc))
assert "torch" not in sys.modules  # counting and claiming must not initialise CUDA
print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
sys.stdin.read()  # hold the device until killed
"""


@pytest.fixture
def claimant(tmp_path):
    started = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUDA_")} | {COUNT_ENV: "2"}

    def start(wait_s: float = 20.0) -> subprocess.Popen:
        args = [sys.executable, "-c", CLAIMANT, str(tmp_path / "locks"), str(tmp_path / "go"), str(wait_s)]
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        started.append(subprocess.Popen(args, text=True, env=env, **pipes))
        return started[-1]

    yield start
    for proc in started:
        proc.kill()
        proc.communicate()


def device(proc: subprocess.Popen, timeout: float = 15.0) -> str | None:
    """The device it claimed, or None if it printed nothing within ``timeout``."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else None


def test_claimants_get_distinct_devices_wait_for_a_killed_holder_or_fail_naming_the_holders(tmp_path, claimant):
    holders = [claimant(), claimant()]
    (tmp_path / "go").touch()  # both race for the locks at once
    got = [device(p) for p in holders]
    assert sorted(got) == ["0", "1"]
    for proc, i in zip(holders, got, strict=True):  # the lock file tells humans who holds the device
        assert f"pid {proc.pid} " in (tmp_path / "locks" / f"gpu{i}.lock").read_text()

    start = time.monotonic()
    late = claimant(wait_s=0.5)
    _, err = late.communicate(timeout=15)
    assert late.returncode == 1 and time.monotonic() - start >= 0.5
    assert "all 2 GPUs are claimed" in err and str(tmp_path / "locks") in err
    assert all(f"pid {p.pid} " in err for p in holders)

    waiter = claimant()
    assert device(waiter, timeout=1.0) is None  # both taken: it waits
    holders[1].kill()  # SIGKILL: no cleanup code runs, the kernel drops the lock
    assert device(waiter) == got[1]


def test_claim_in_process_exports_the_device_and_release_frees_it(tmp_path, monkeypatch):
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        monkeypatch.setenv(name, "x")  # restored after the test, whatever claim_gpu exports
        monkeypatch.delenv(name)
    monkeypatch.setenv(COUNT_ENV, "2")
    first = claim_gpu(tmp_path)
    assert (os.environ.pop("CUDA_VISIBLE_DEVICES"), os.environ["CUDA_DEVICE_ORDER"]) == ("0", "PCI_BUS_ID")
    second = claim_gpu(tmp_path)  # GPU 0 is busy, also for this process
    assert os.environ.pop("CUDA_VISIBLE_DEVICES") == "1"
    with pytest.raises(GpuBusyError, match="all 2 GPUs are claimed"):
        claim_gpu(tmp_path, wait_s=0)
    first.release()
    first.release()  # idempotent
    claim_gpu(tmp_path).release()
    assert os.environ.pop("CUDA_VISIBLE_DEVICES") == "0"
    second.release()

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # e.g. set by SLURM for this job: left alone
    assert claim_gpu(tmp_path / "preset") is None and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert not (tmp_path / "preset").exists()


def test_no_gpu_means_no_claim_nvidia_smi_is_counted_and_a_bad_count_or_lock_folder_named(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    (tmp_path / "file").write_text("")  # a file where the lock folder should be
    for count, error in (("two", COUNT_ENV), ("-1", COUNT_ENV), ("1", "file/locks")):  # named
        monkeypatch.setenv(COUNT_ENV, count)
        with pytest.raises(FtftError, match=error):
            claim_gpu(tmp_path / "file" / "locks")
    monkeypatch.setenv(COUNT_ENV, "0")
    assert claim_gpu(tmp_path / "locks") is None
    monkeypatch.delenv(COUNT_ENV)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi at all
    assert count_gpus() == 0 and claim_gpu(tmp_path / "locks") is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and not (tmp_path / "locks").exists()

    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA A100 (UUID: GPU-a)'\necho '  MIG 1g.10gb Device 0: (UUID: MIG-b)'\n"
        "echo 'GPU 1: NVIDIA A100 (UUID: GPU-c)'\n"
    )
    smi.chmod(0o755)
    assert count_gpus() == 2
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert count_gpus() == 0  # a broken driver: no claim (logged), training decides the device


HOLDER = """
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
        devices.hold_run(state).release()  # the run is free again
    finally:
        parent.kill()
