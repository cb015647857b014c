"""The warm worker (ftft.worker): `ftft` commands run in forks of one pre-imported process.

The worker here starts without preloading (the children import what they need), which keeps
these tests fast; the demo end-to-end test runs it with the full preload.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import engine_fixtures as ef
import numpy as np
import pandas as pd
import pytest

from ftft import worker
from ftft.cli import main
from ftft.train.spec import make_spec

FTFT = [sys.executable, "-m", "ftft.cli"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_worker")
    data = ef.write_toy_data(root / "data")
    model = ef.build_toy_model(root / "model")
    spec_file = root / "spec.json"
    spec_file.write_text(json.dumps(make_spec(ef.toy_config(model, steps=12, checkpoints=3), ef.toy_run())))
    return {"root": root, "data": data, "spec": spec_file}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A running worker: {"socket": path, "log": log file}; stopped after the module."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    path = worker.start(log, idle_timeout=300, preload=False)
    assert path is not None and Path(path).exists(), log.read_text()
    yield {"socket": path, "log": log}
    worker.stop(path)
    assert not Path(path).exists()
    assert "stopped after serving" in log.read_text()


def _children(log: Path) -> list[int]:
    return [int(m) for m in re.findall(r"child (\d+) started", log.read_text())]


def _exit_status(log: Path, pid: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(rf"child {pid} exited (-?\d+)", log.read_text())
        if m:
            return int(m.group(1))
        time.sleep(0.1)
    raise AssertionError(f"child {pid} did not exit:\n{log.read_text()}")


def _ftft(args, socket_path, tmp_path, name="client", **env) -> tuple[subprocess.CompletedProcess, str]:
    """Run `ftft args` as a client; return the process and what it wrote to its stderr file."""
    err = tmp_path / f"{name}.err"
    environ = {**os.environ, worker.SOCKET_ENV: socket_path, **env}
    with open(err, "w") as stderr:
        proc = subprocess.run(
            [*FTFT, *args], env=environ, stderr=stderr, stdout=subprocess.PIPE, text=True, check=False
        )
    return proc, err.read_text()


def _train_args(toy, out: Path) -> list[str]:
    return [
        "train",
        "--spec",
        f"@{toy['spec']}",
        "--data-dir",
        str(toy["data"]),
        "--out",
        str(out),
        "--state-dir",
        str(out) + ".state",
    ]


def test_training_in_the_worker_matches_a_fresh_process(toy, served, tmp_path):
    before = _children(served["log"])
    proc, err = _ftft(_train_args(toy, tmp_path / "warm"), served["socket"], tmp_path)
    assert proc.returncode == 0, err
    new = [pid for pid in _children(served["log"]) if pid not in before]
    assert len(new) == 1 and _exit_status(served["log"], new[0]) == 0  # it ran in the worker
    assert "not used" not in err and "checkpoint 3/3" in err  # the job's log reaches its stderr

    assert main(_train_args(toy, tmp_path / "cold")) == 0  # the same run in this process
    warm, cold = tmp_path / "warm", tmp_path / "cold"
    assert pd.read_csv(warm / "metrics.csv").equals(pd.read_csv(cold / "metrics.csv"))
    a, b = np.load(warm / "dynamics.npz"), np.load(cold / "dynamics.npz")
    assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    pd.testing.assert_frame_equal(
        pd.read_parquet(warm / "predictions.parquet"), pd.read_parquet(cold / "predictions.parquet")
    )


def test_exit_status_and_error_message_pass_through(served, tmp_path):
    before = _children(served["log"])
    proc, err = _ftft(["check-config", str(tmp_path / "missing.yaml")], served["socket"], tmp_path)
    assert proc.returncode == 1
    assert f"config file not found: {tmp_path / 'missing.yaml'}" in err
    proc, err = _ftft(["train", "--no-such-flag"], served["socket"], tmp_path, name="usage")
    assert proc.returncode == 2 and "the following arguments are required" in err
    new = [pid for pid in _children(served["log"]) if pid not in before]
    assert [_exit_status(served["log"], pid) for pid in new] == [1, 2]


def test_working_directory_and_stdout_are_the_clients(served, tmp_path):
    args = [
        "demo-data",
        "--task",
        "nli",
        "--out",
        "nli.parquet",
        "--summary",
        "nli.json",
        "--train-rows",
        "30",
        "--eval-rows",
        "10",
    ]
    env = {**os.environ, worker.SOCKET_ENV: served["socket"]}
    proc = subprocess.run([*FTFT, *args], env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "not used" not in proc.stderr, proc.stderr
    assert (tmp_path / "nli.parquet").is_file() and json.loads((tmp_path / "nli.json").read_text())
    proc = subprocess.run([*FTFT, "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "serve ftft commands" in proc.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLURM_JOB_ID": "42"}, None),  # inside a SLURM job: always run here, silently
        ({"HF_HUB_OFFLINE": "1"}, "environment variables read at import differ from the worker's: HF_HUB_OFFLINE"),
    ],
)
def test_client_runs_the_command_itself_when_the_worker_must_not(served, tmp_path, env, message):
    before = _children(served["log"])
    proc, err = _ftft(["check-config", str(tmp_path / "missing.yaml")], served["socket"], tmp_path, **env)
    assert proc.returncode == 1 and "config file not found" in err
    if message is None:
        assert _children(served["log"]) == before and "not used" not in err
    else:
        assert f"warm worker not used ({message}); running here" in err


def test_no_worker_listening_runs_here(tmp_path):
    proc, err = _ftft(["check-config", str(tmp_path / "missing.yaml")], str(tmp_path / "no.sock"), tmp_path)
    assert proc.returncode == 1 and "config file not found" in err and "not used" not in err


def _start_long_training(toy, served, tmp_path, name):
    """A client training 100k steps in the worker; returns (client process, child pid)."""
    spec = json.loads(toy["spec"].read_text()) | {"steps": 100_000, "checkpoints": 2}
    spec_file = tmp_path / f"{name}.json"
    spec_file.write_text(json.dumps(spec))
    args = _train_args({**toy, "spec": spec_file}, tmp_path / name)
    before = _children(served["log"])
    err = open(tmp_path / f"{name}.err", "w")  # noqa: SIM115 - the client writes to it
    client = subprocess.Popen([*FTFT, *args], env={**os.environ, worker.SOCKET_ENV: served["socket"]}, stderr=err)
    deadline = time.monotonic() + 60
    while "training" not in (tmp_path / f"{name}.err").read_text():
        assert time.monotonic() < deadline and client.poll() is None, (tmp_path / f"{name}.err").read_text()
        time.sleep(0.1)
    (child,) = [pid for pid in _children(served["log"]) if pid not in before]
    return client, child


@pytest.mark.parametrize(("signum", "child_status"), [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGKILL, 143)])
def test_killing_the_client_stops_its_command(toy, served, tmp_path, signum, child_status):
    """SIGTERM is forwarded to the child; after SIGKILL the child notices the closed socket."""
    client, child = _start_long_training(toy, served, tmp_path, f"long{signum}")
    client.send_signal(signum)
    client.wait(timeout=20)
    assert _exit_status(served["log"], child) == child_status
    assert not (tmp_path / f"long{signum}" / "run.json").exists()  # no partial outputs


def test_idle_worker_stops_and_cleans_up(tmp_path):
    log = tmp_path / "idle.log"
    path = worker.start(log, idle_timeout=1, preload=False)
    assert path is not None
    deadline = time.monotonic() + 30
    while Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(path).parent.exists()
    assert "idle for 1 s; stopping" in log.read_text()
    worker.stop(path)  # reaps the exited process


def test_preload_names_real_modules():
    missing = [name for name in worker.PRELOAD if importlib.util.find_spec(name) is None]
    assert not missing
