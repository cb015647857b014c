"""The warm worker (ftft.worker): `ftft` commands run in forks of one pre-imported process.

The module's worker preloads the stack like the demo's, so the commands run in forks of a
process that has imported torch and transformers already.
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
    path = worker.start(log, idle_timeout=300)
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
    before = _children(served["log"])
    args = ["demo-data", "--task", "nli", "--out", "nli.parquet", "--summary", "nli.json"]
    env = {**os.environ, worker.SOCKET_ENV: served["socket"]}
    proc = subprocess.run(
        [*FTFT, *args, "--train-rows", "30", "--eval-rows", "10"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "not used" not in proc.stderr, proc.stderr
    assert (tmp_path / "nli.parquet").is_file() and json.loads((tmp_path / "nli.json").read_text())
    proc = subprocess.run([*FTFT, "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "serve ftft commands" in proc.stdout
    new = [pid for pid in _children(served["log"]) if pid not in before]
    assert len(new) == 2 and [_exit_status(served["log"], pid) for pid in new] == [0, 0]


def test_commands_run_side_by_side(served, tmp_path):
    before = _children(served["log"])
    env = {**os.environ, worker.SOCKET_ENV: served["socket"]}
    procs = [
        subprocess.Popen(
            [*FTFT, "check-config", str(tmp_path / f"missing{i}.yaml")], env=env, stderr=subprocess.PIPE, text=True
        )
        for i in range(3)
    ]
    errs = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [1, 1, 1]
    assert all(f"missing{i}.yaml" in err and "not used" not in err for i, err in enumerate(errs))
    assert len([pid for pid in _children(served["log"]) if pid not in before]) == 3


def _raw_request(socket_path: str, payload: bytes, fds: list[int]) -> bytes:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(socket_path)
        socket.send_fds(sock, [worker._HEADER.pack(len(payload))], fds)
        sock.sendall(payload)
        return sock.makefile("rb").readline()


def test_refuses_another_environment_and_survives_bad_requests(served, tmp_path):
    request = {"argv": ["--help"], "cwd": str(tmp_path), "env": dict(os.environ), "umask": 0o22}
    fds = [0, 1, 2]
    other = {**request, "prefix": "/some/other/venv", "package": worker._package_dir()}
    assert (
        "python environment /some/other/venv"
        in json.loads(_raw_request(served["socket"], json.dumps(other).encode(), fds))["refused"]
    )
    copy = {**request, "prefix": sys.prefix, "package": "/elsewhere/ftft"}
    assert (
        "ftft package /elsewhere/ftft"
        in json.loads(_raw_request(served["socket"], json.dumps(copy).encode(), fds))["refused"]
    )
    assert _raw_request(served["socket"], b"not json", fds) == b""  # dropped, worker keeps going
    bad_env = {**request, "prefix": sys.prefix, "package": worker._package_dir(), "env": {"X": 1}}
    assert _raw_request(served["socket"], json.dumps(bad_env).encode(), fds) == b""
    assert Path(served["socket"]).exists()
    proc, err = _ftft(["check-config", str(tmp_path / "missing.yaml")], served["socket"], tmp_path)
    assert proc.returncode == 1 and "config file not found" in err and "not used" not in err
    assert served["log"].read_text().count("bad request") >= 2


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


@pytest.mark.parametrize(
    ("signum", "status"),
    [
        (signal.SIGTERM, 128 + signal.SIGTERM),
        (signal.SIGINT, 128 + signal.SIGINT),
        (signal.SIGKILL, 128 + signal.SIGTERM),
    ],
)
def test_killing_the_client_stops_its_command(toy, served, tmp_path, signum, status):
    """SIGTERM/SIGINT reach the child through the client; after SIGKILL the worker notices
    the closed connection and terminates the child. Exit statuses as a shell reports them."""
    client, child = _start_long_training(toy, served, tmp_path, f"long{signum}")
    client.send_signal(signum)
    client.wait(timeout=30)
    assert _exit_status(served["log"], child) == status
    if signum == signal.SIGKILL:
        assert f"child {child}: client gone; terminating it" in served["log"].read_text()
    else:
        assert client.returncode == status  # the client exits with its command's status
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
