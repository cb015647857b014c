"""The resumable training state: a crafted pickle runs no code; a damaged state is set aside and the run restarts;
another spec's state is ignored; an interrupted save leaves the previous one; a background save writes the state of
its call. What the engine saves comes back: resumed run = uninterrupted run, tests/test_engine.py."""

import copy
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ftft.train import state as state_io
from ftft.train.state import STATE_FILE

pytestmark = pytest.mark.integration


def engine_like_state(fp: str = "fp-1", step: int = 50) -> dict:
    """What the engine saves at a checkpoint, from a real model, optimiser and scheduler."""
    torch.manual_seed(step)
    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / 100)
    model(torch.tensor([1, 2, 3])).sum().backward()
    opt.step()
    sched.step()
    rng = np.random.default_rng(step)
    return {
        "fingerprint": fp,
        "position": {"step": step, "epoch": 2, "batch": 1, "wall_time_s": 1.25},
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau(opt).state_dict(),  # inf floats
        "dynamics": {"probs": [rng.random((40, 3)).astype(np.float16)], "seen": [rng.random(40) > 0.3]},
        "stats": {"loss": torch.tensor(3.5, dtype=torch.float64), "nonfinite": torch.tensor(False), "counts": [7]},
        "metrics": [{"step": 25, "eval_set": "mnli", "acc": np.float64(0.625), "f1": float("nan")}],
        "predictions": [(25, "mnli", rng.random((5, 3)).astype(np.float32))],
        "rng": state_io.rng_state(),
        "big": torch.arange(100_000, dtype=torch.float32),  # most of the file: a byte flipped mid-file is data
    }


def assert_set_aside_and_restarts(state_dir: Path, caplog, content: bytes | None = None) -> None:
    """Refused: a warning naming the file, the file moved aside unchanged, and the next save loads."""
    with caplog.at_level(logging.WARNING, logger="ftft.train"):
        assert state_io.load(state_dir, "fp-1") is None
    path = state_dir / STATE_FILE
    assert any(str(path) in r.getMessage() and "from scratch" in r.getMessage() for r in caplog.records)
    assert not path.exists()
    (aside,) = state_dir.glob(f"{STATE_FILE}.corrupt-*")
    assert content is None or aside.read_bytes() == content
    state_io.save(state_dir, engine_like_state())
    assert state_io.load(state_dir, "fp-1")["position"]["step"] == 50


class RunsCode:
    def __reduce__(self):  # unpickling this runs a shell command
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_crafted_pickle_runs_no_code_and_is_set_aside(tmp_path, monkeypatch, caplog, writer):
    monkeypatch.chdir(tmp_path)
    pickle.loads(pickle.dumps(RunsCode()))  # the payload is live: unpickling it runs code
    Path("PWNED").unlink()
    payload = {"fingerprint": "fp-1", "position": {"step": 1}, "x": RunsCode()}
    path = tmp_path / "state" / STATE_FILE
    path.parent.mkdir()
    torch.save(payload, path) if writer == "torch.save" else path.write_bytes(pickle.dumps(payload))
    assert_set_aside_and_restarts(path.parent, caplog, path.read_bytes())
    assert not Path("PWNED").exists()


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]


@pytest.mark.parametrize(
    "damage",
    [lambda d: b"", lambda d: d[:7], lambda d: d[: len(d) // 2], lambda d: d[:-1], _flip, lambda d: b"text", list],
    ids=["empty", "cut-7", "cut-half", "cut-1", "flipped-byte", "not-a-zip", "not-a-dict"],
)
def test_damaged_state_is_set_aside_and_the_run_restarts(tmp_path, caplog, damage):
    state_io.save(tmp_path, engine_like_state())
    path = tmp_path / STATE_FILE
    data = damage(path.read_bytes())
    torch.save(data, path) if isinstance(data, list) else path.write_bytes(data)
    assert_set_aside_and_restarts(tmp_path, caplog, path.read_bytes())


def test_missing_or_other_spec_state_is_none_and_left_alone(tmp_path, caplog):
    assert state_io.load(tmp_path / "nothing", "fp") is None
    state_io.save(tmp_path, engine_like_state(fp="old-spec"))
    before = (tmp_path / STATE_FILE).read_bytes()
    with caplog.at_level(logging.WARNING, logger="ftft.train"):
        assert state_io.load(tmp_path, "new-spec") is None
    assert "different spec" in caplog.text and str(tmp_path) in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE] and (tmp_path / STATE_FILE).read_bytes() == before


def crash(*args, **kwargs):
    raise InterruptedError("killed")


@pytest.mark.parametrize("target", ["torch.save", "os.fsync", "os.replace"])  # mid-write, at fsync, before rename
def test_interrupted_save_leaves_the_previous_state(tmp_path, monkeypatch, target):
    state_io.save(tmp_path, engine_like_state(step=25))
    with monkeypatch.context() as m:
        m.setattr(target, crash)
        with pytest.raises(InterruptedError):
            state_io.save(tmp_path, engine_like_state(step=50))
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # the temporary file is gone
    assert state_io.load(tmp_path, "fp-1")["position"]["step"] == 25


def test_background_save_writes_the_state_of_its_call_and_reports_errors(tmp_path, monkeypatch):
    """The optimiser steps right after ``save``: the file holds the weights and moments of the call."""
    torch.manual_seed(0)
    model = torch.nn.Linear(256, 256)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 256)).sum().backward()
    opt.step()
    saver = state_io.BackgroundSaver()
    saver.guard(opt)
    for _ in range(2):  # the second save reuses the first one's buffers
        expected = copy.deepcopy({"model": model.state_dict(), "moments": [v["exp_avg"] for v in opt.state.values()]})
        saver.save(tmp_path, {"fingerprint": "fp", "model": model.state_dict(), "optimizer": opt.state_dict()})
        opt.step()  # waits for the copy, then changes weights and moments in place
        saver.wait()
        saved = state_io.load(tmp_path, "fp")
        got = {"model": saved["model"], "moments": [v["exp_avg"] for v in saved["optimizer"]["state"].values()]}
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        assert not torch.equal(model.weight, expected["model"]["weight"])
    with monkeypatch.context() as m:  # a write that fails: raised by wait(), the previous state stays
        m.setattr("torch.save", crash)
        saver.save(tmp_path, {"fingerprint": "fp", "model": {}, "optimizer": {}})
        with pytest.raises(InterruptedError):
            saver.wait()
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE] and state_io.load(tmp_path, "fp")["model"]
