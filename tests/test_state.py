"""The resumable training state (ftft.train.state): exact round trip, no code run on load, self-healing.

A realistic nested state comes back equal in types and bitwise in values; a crafted pickle
where the state lives runs no code and is set aside; truncated or tampered states are set
aside with a warning naming the file and the reason; another spec's state is ignored; a save
interrupted at any point (or a writer SIGKILLed mid-save) leaves the previous state loadable.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import pickle
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from ftft.train import state as state_io
from ftft.train.state import STATE_FILE

pytestmark = pytest.mark.integration  # real training runs / subprocesses / servers: the integration tier


def assert_same(got, want, where="state"):
    """Equal nested types and values; tensors and arrays bitwise with the same dtype and shape."""
    assert type(got) is type(want), f"{where}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, torch.Tensor):
        assert (got.dtype, got.shape, got.device.type) == (want.dtype, want.shape, "cpu"), where
        a, b = got.contiguous().reshape(-1), want.detach().cpu().contiguous().reshape(-1)
        assert torch.equal(a.view(torch.uint8), b.view(torch.uint8)), where
    elif isinstance(want, np.ndarray):
        assert (got.dtype, got.shape) == (want.dtype, want.shape), where
        assert got.tobytes() == want.tobytes(), where
    elif isinstance(want, np.generic):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), where
    elif isinstance(want, dict):
        assert list(got) == list(want), where
        for k in want:
            assert_same(got[k], want[k], f"{where}[{k!r}]")
        if hasattr(want, "_metadata"):
            assert got._metadata == want._metadata, f"{where}._metadata"
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got), where
    else:
        assert got == want, where


def realistic_state(fp: str = "fp-1", step: int = 50) -> dict:
    """What engine.save_state writes, from a real model, optimiser and schedulers, plus odd corners."""
    torch.manual_seed(step)
    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 3))
    model[1].bias.data = model[1].bias.data.half().float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / 100)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max")
    model(torch.tensor([1, 2, 3])).sum().backward()
    opt.step()
    sched.step()
    rng = np.random.default_rng(step)
    n, c = 40, 3
    wide = torch.randn(4, 6)
    return {
        "fingerprint": fp,
        "position": {"step": step, "epoch": 2, "batch": 1, "tokens_seen": 12345, "wall_time_s": 1.25},
        "model": model.state_dict(),  # an OrderedDict with _metadata
        "optimizer": opt.state_dict(),  # int keys, 0-dim step tensors, tuples (betas)
        "scheduler": sched.state_dict(),  # None in lr_lambdas
        "plateau": plateau.state_dict(),  # inf floats
        "dynamics": {
            "epoch_probs": torch.rand(n, c),
            "probs": [rng.random((n, c)).astype(np.float16) for _ in range(3)],
            "seen": [rng.random(n) > 0.3 for _ in range(3)],
            "complete_epochs": 2,
        },
        "stats": {"loss_sum": torch.tensor(3.5, dtype=torch.float64), "nonfinite": torch.tensor(False), "count": 7},
        "metrics": [{"step": 25, "eval_set": "mnli", "macro_f1": 0.5, "acc": np.float64(0.625), "ood": False}],
        "predictions": [(25, "mnli", rng.random((5, c)).astype(np.float32)), (25, "hans", np.zeros((0, c)))],
        "rng": state_io.rng_state(),  # python tuple of ints, numpy tuple with a uint32 array
        "odd": {
            "dtypes": [torch.arange(6, dtype=t) for t in (torch.int64, torch.int8, torch.uint8, torch.float16)],
            "bf16": torch.randn(5).bfloat16(),
            "empty": torch.zeros(0, 4),
            "view": wide[1:3, ::2],  # not contiguous, shares storage with "wide"
            "wide": wide,
            "arrays": [np.arange(5, dtype=">i4"), np.array(["a", "bcd"]), np.array(3.0), np.arange(3, dtype=np.uint32)],
            "floats": [float("nan"), float("-inf"), -0.0, 1e-310, 0.1],
            "scalars": (np.float32(0.1), np.int64(-3), np.bool_(True)),
            "keys": {1: "int", (2, "x"): "tuple", None: "none", 1.5: "float", "s": "str"},
            "nested": [({"a": [(None, True, "")]},)],
            "big": 2**70,
        },
    }


def corrupt_files(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob(f"{STATE_FILE}.corrupt-*"))


def assert_set_aside(state_dir: Path, caplog, reason: str, content: bytes | None = None) -> None:
    """The state was refused: warning naming the file and the reason, file moved aside."""
    path = state_dir / STATE_FILE
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(path) in w and reason in w and "from scratch" in w for w in warnings), warnings
    assert not path.exists()
    (aside,) = corrupt_files(state_dir)
    if content is not None:
        assert aside.read_bytes() == content
    aside.unlink()
    caplog.clear()


# ------------------------------------------------------------------------------ round trip


def test_round_trip_of_a_realistic_state_is_exact(tmp_path):
    state = realistic_state()
    state_io.save(tmp_path, state)
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # one file, no temporaries left
    got = state_io.load(tmp_path, "fp-1")
    assert_same(got, state)
    assert isinstance(got["model"], collections.OrderedDict)

    # the restored RNG states continue the same streams
    state_io.set_rng_state(state["rng"])
    want = (random.random(), np.random.random(), torch.rand(3))
    state_io.set_rng_state(got["rng"])
    assert_same((random.random(), np.random.random(), torch.rand(3)), want)

    # a fresh model and optimiser take the loaded state dicts
    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 3))
    model.load_state_dict(got["model"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt.load_state_dict(got["optimizer"])
    assert_same(opt.state_dict()["state"], state["optimizer"]["state"])


def test_file_is_safetensors_with_named_tensors_and_json_structure(tmp_path):
    state = realistic_state()
    state_io.save(tmp_path, state)
    tensors = safetensors.torch.load_file(tmp_path / STATE_FILE)
    assert torch.equal(tensors["model/1.weight"], state["model"]["1.weight"])
    assert tensors["dynamics/probs/0"].dtype == torch.float16 and tensors["dynamics/seen/1"].dtype == torch.bool
    with open(tmp_path / STATE_FILE, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n))["__metadata__"]
    assert meta["format"] == "ftft-train-state" and meta["version"] == "1" and meta["fingerprint"] == "fp-1"
    assert json.loads(meta["structure"])["dict"]["position"] == {
        "dict": {"step": 50, "epoch": 2, "batch": 1, "tokens_seen": 12345, "wall_time_s": 1.25}
    }


def test_unstorable_value_fails_before_writing_and_names_its_path(tmp_path):
    state_io.save(tmp_path, {"fingerprint": "fp", "n": 1})
    with pytest.raises(TypeError, match=r"metrics/0/when.*set"):
        state_io.save(tmp_path, {"fingerprint": "fp", "metrics": [{"when": {1, 2}}]})
    assert state_io.load(tmp_path, "fp") == {"fingerprint": "fp", "n": 1}


# ------------------------------------------------------------------------------ refused states


class _RunsCode:
    """Unpickling this creates the file at ``marker``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_crafted_pickle_runs_no_code_and_is_set_aside(tmp_path, caplog, writer):
    marker, proof = tmp_path / "pwned", tmp_path / "proof"
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    payload = {"fingerprint": "fp", "position": {"step": 1}, "x": _RunsCode(marker)}
    if writer == "torch.save":
        torch.save(payload, state_dir / STATE_FILE)
    else:
        (state_dir / STATE_FILE).write_bytes(pickle.dumps(payload, protocol=4))
    content = (state_dir / STATE_FILE).read_bytes()
    pickle.loads(pickle.dumps(_RunsCode(proof)))  # the payload is live: unpickling it runs code
    assert proof.exists()

    with caplog.at_level(logging.WARNING, logger="ftft.train"):
        assert state_io.load(state_dir, "fp") is None
    assert not marker.exists()
    assert_set_aside(state_dir, caplog, "pickle", content)


@pytest.mark.parametrize(
    "cut",
    [0, 1, 7, 8, 100, "header-1", "header", "header+3", "end-1"],
)
def test_truncated_state_is_set_aside_and_the_run_restarts(tmp_path, caplog, cut):
    state_io.save(tmp_path, realistic_state())
    path = tmp_path / STATE_FILE
    data = path.read_bytes()
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    at = {"header-1": header_end - 1, "header": header_end, "header+3": header_end + 3, "end-1": len(data) - 1}
    path.write_bytes(data[: at.get(cut, cut)])
    with caplog.at_level(logging.WARNING, logger="ftft.train"):
        assert state_io.load(tmp_path, "fp-1") is None
    reason = "empty" if cut == 0 else ("truncated" if isinstance(cut, int) or cut == "header-1" else "cannot be read")
    assert_set_aside(tmp_path, caplog, reason)
    state_io.save(tmp_path, realistic_state())  # the next checkpoint writes a fresh state
    assert state_io.load(tmp_path, "fp-1")["position"]["step"] == 50


def _rewrite_header(path: Path, edit) -> None:
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    new = edit(header)
    body = new if isinstance(new, bytes) else json.dumps(new, separators=(",", ":")).encode()
    body = body.ljust(n)  # same length: tensor offsets stay valid
    assert len(body) == n
    path.write_bytes(data[:8] + body + data[8 + n :])


def _bump_version(h):
    h["__metadata__"]["version"] = "9"
    return h


def _tamper_structure(h):
    h["__metadata__"]["structure"] = h["__metadata__"]["structure"].replace('"step":50', '"step":51')
    return h


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda h: b"{not json" + b" " * 10, "not valid JSON"),
        (_bump_version, "unknown ftft-train-state version '9'"),
        (_tamper_structure, "sha256 mismatch"),
        (lambda h: {k: v for k, v in h.items() if k != "__metadata__"}, "not a ftft-train-state file"),
    ],
)
def test_tampered_header_is_set_aside(tmp_path, caplog, edit, reason):
    state_io.save(tmp_path, realistic_state())
    _rewrite_header(tmp_path / STATE_FILE, edit)
    with caplog.at_level(logging.WARNING, logger="ftft.train"):
        assert state_io.load(tmp_path, "fp-1") is None
    assert_set_aside(tmp_path, caplog, reason)


def test_flipped_tensor_byte_is_a_hash_mismatch(tmp_path, caplog):
    state_io.save(tmp_path, realistic_state())
    path = tmp_path / STATE_FILE
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # e.g. a bad sector: same size, other content
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="ftft.train"):
        assert state_io.load(tmp_path, "fp-1") is None
    assert_set_aside(tmp_path, caplog, "sha256 mismatch")


def test_plain_safetensors_file_is_not_a_state(tmp_path, caplog):
    safetensors.torch.save_file({"w": torch.zeros(3)}, tmp_path / STATE_FILE)
    with caplog.at_level(logging.WARNING, logger="ftft.train"):
        assert state_io.load(tmp_path, "fp") is None
    assert_set_aside(tmp_path, caplog, "not a ftft-train-state file")


def test_state_of_another_spec_is_ignored_and_kept(tmp_path, caplog):
    state_io.save(tmp_path, realistic_state(fp="old-spec"))
    before = (tmp_path / STATE_FILE).read_bytes()
    with caplog.at_level(logging.WARNING, logger="ftft.train"):
        assert state_io.load(tmp_path, "new-spec") is None
    assert any("different spec" in r.getMessage() and str(tmp_path) in r.getMessage() for r in caplog.records)
    assert (tmp_path / STATE_FILE).read_bytes() == before and not corrupt_files(tmp_path)
    assert state_io.load(tmp_path, "old-spec")["fingerprint"] == "old-spec"


def test_missing_state_is_none_and_clear_removes_the_folder(tmp_path):
    assert state_io.load(tmp_path / "nothing", "fp") is None
    state_io.save(tmp_path / "s", {"fingerprint": "fp"})
    state_io.clear(tmp_path / "s")
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------------------ kill safety


class Crash(Exception):
    pass


def _partial_write(tensors, filename, metadata=None):
    """safetensors' writer dying halfway through the file."""
    data = safetensors.torch.save(tensors, metadata=metadata)
    Path(filename).write_bytes(data[: len(data) // 2])
    raise Crash("killed while writing")


def _raise(*args, **kwargs):
    raise Crash("killed")


@pytest.mark.parametrize(
    ("target", "replacement"),
    [
        ("ftft.train.state.save_file", _partial_write),  # mid-write of the temporary file
        ("os.chmod", _raise),  # after writing, before its fsync
        ("os.fsync", _raise),  # at the fsync of the file
        ("os.replace", _raise),  # just before the rename into place
    ],
)
def test_interrupted_save_leaves_the_previous_state(tmp_path, monkeypatch, target, replacement):
    previous = realistic_state(step=25)
    state_io.save(tmp_path, previous)
    with monkeypatch.context() as m:
        m.setattr(target, replacement)
        with pytest.raises(Crash):
            state_io.save(tmp_path, realistic_state(step=50))
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # the temporary file is gone
    assert_same(state_io.load(tmp_path, "fp-1"), previous)


SAVER = textwrap.dedent(
    """
    import sys, torch
    from ftft.train import state
    big = torch.zeros(4_000_000)  # 16 MB: a save takes long enough to be killed inside it
    step = 0
    while True:
        step += 1
        state.save(sys.argv[1], {"fingerprint": "fp", "position": {"step": step}, "w": big.fill_(step)})
        print(step, flush=True)
    """
)


def test_writer_killed_mid_save_leaves_a_loadable_state(tmp_path):
    """SIGKILL a process that saves in a loop until a kill lands inside a save (a temporary is left)."""
    for attempt in range(5):
        state_dir = tmp_path / str(attempt)
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(state_dir)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "1"
            time.sleep(0.3 + 0.07 * attempt)  # somewhere inside a later save
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            last = max([1, *map(int, proc.stdout.read().split())])
            proc.stdout.close()
        got = state_io.load(state_dir, "fp")
        step = got["position"]["step"]
        assert step in (last, last + 1)  # the last completed save (its line may not be printed yet)
        assert torch.equal(got["w"], torch.full((4_000_000,), float(step)))
        assert not corrupt_files(state_dir)
        if any(p.name.endswith(".tmp") for p in state_dir.iterdir()):
            return  # this kill interrupted a save
    pytest.fail("no kill landed inside a save in 5 attempts")
