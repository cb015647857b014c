"""Subset selection per method, halting vs limiting schedules, and the datamap -> subset CLI."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from ftft import datamap, schedules, subsets
from ftft.cli import main
from ftft.errors import DataError

# toy dynamics: 5 instances, 3 complete epochs, 3 classes (dyadic values: exact in float16)
UIDS = ["t0", "t1", "t2", "t3", "t4"]
LABELS = [0, 1, 2, 0, 1]
PROBS = [
    # epoch 1: t0 wrong, t2 wrong
    [[0.25, 0.5, 0.25], [0.125, 0.75, 0.125], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.25, 0.5, 0.25]],
    # epoch 2: t1 wrong, t2 wrong
    [[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.75, 0.125, 0.125], [0.25, 0.625, 0.125]],
    # epoch 3: t2 wrong; t3 certain (0, 1 and exact zeros)
    [[0.75, 0.125, 0.125], [0.25, 0.5, 0.25], [0.25, 0.5, 0.25], [1.0, 0.0, 0.0], [0.125, 0.75, 0.125]],
]


def _dyn(tmp_path, uids=UIDS, name="ref"):
    run = tmp_path / name
    datamap.save_dynamics(run / "dynamics.npz", uids, LABELS, PROBS)
    return run


def _train(tmp_path, uids=UIDS):
    path = tmp_path / "train.parquet"
    pd.DataFrame({"uid": uids, "text_a": ["x"] * len(uids), "label": LABELS[: len(uids)]}).to_parquet(path)
    return path


# ---------------------------------------------------------------- random


def test_random_size_order_and_determinism():
    uids = [f"u{i}" for i in range(1000)]
    a = subsets.random_subset(uids, 0.33, seed=3)
    assert len(a) == 330
    assert a["weight"].dtype == np.float32 and (a["weight"] == 1).all()
    pos = [uids.index(u) for u in a["uid"]]
    assert pos == sorted(pos)  # training-set order
    assert a["uid"].is_unique
    pd.testing.assert_frame_equal(a, subsets.random_subset(uids, 0.33, seed=3))
    assert set(a["uid"]) != set(subsets.random_subset(uids, 0.33, seed=4)["uid"])
    expected = np.sort(np.random.default_rng(3).choice(1000, 330, replace=False))
    assert list(a["uid"]) == [uids[i] for i in expected]


# ---------------------------------------------------------------- dm


def test_dm_picks_highest_variability():
    uids = [f"u{i}" for i in range(10)]
    var = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.0, 0.05, 0.6, 0.15]
    dmap = pd.DataFrame({"uid": uids[::-1], "variability": var[::-1], "confidence": 0.5})
    out = subsets.dm_subset(uids, dmap, 0.3)
    assert list(out["uid"]) == ["u1", "u3", "u5"]  # top-3 variability, in train order
    assert (out["weight"] == 1).all()


def test_dm_uid_mismatch():
    dmap = pd.DataFrame({"uid": ["a", "b", "x"], "variability": [0.1, 0.2, 0.3], "confidence": 0.5})
    with pytest.raises(DataError, match="different instances"):
        subsets.dm_subset(["a", "b", "c"], dmap, 0.33)


# ---------------------------------------------------------------- jtt


def test_jtt_weights(tmp_path):
    dyn = datamap.load_dynamics(_dyn(tmp_path) / "dynamics.npz")
    order = ["t4", "t3", "t2", "t1", "t0"]
    out = subsets.jtt_subset(order, dyn, jtt_epoch=2, upweight=4.0)
    assert list(out["uid"]) == order  # every instance, in training-set order
    assert out["weight"].dtype == np.float32
    assert dict(zip(out["uid"], out["weight"], strict=True)) == {"t0": 1, "t1": 4, "t2": 4, "t3": 1, "t4": 1}
    w1 = subsets.jtt_subset(UIDS, dyn, jtt_epoch=1, upweight=4.0)["weight"]
    assert list(w1) == [4, 1, 4, 1, 1]


def test_jtt_epoch_beyond_recorded_uses_last_complete(tmp_path, caplog):
    dyn = datamap.load_dynamics(_dyn(tmp_path) / "dynamics.npz")
    with caplog.at_level(logging.WARNING):
        w = subsets.jtt_subset(UIDS, dyn, jtt_epoch=5, upweight=3.0)["weight"]
    assert list(w) == [1, 1, 3, 1, 1]
    assert "jtt_epoch=5" in caplog.text


# ---------------------------------------------------------------- poe


def test_poe_log_probs(tmp_path):
    dyn = datamap.load_dynamics(_dyn(tmp_path) / "dynamics.npz")
    out = subsets.poe_subset(UIDS, dyn)
    assert list(out.columns) == ["uid", "weight", "bias_logp_0", "bias_logp_1", "bias_logp_2"]
    assert (out["weight"] == 1).all()
    lp = out[["bias_logp_0", "bias_logp_1", "bias_logp_2"]].to_numpy()
    assert lp.dtype == np.float32
    p3 = np.array(PROBS[2], dtype=np.float64)  # last complete epoch
    p3 = np.clip(p3, 1e-6, None)
    p3 /= p3.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(lp, np.log(p3), rtol=1e-6)
    # certain instance: exact zeros floored at 1e-6, renormalised
    np.testing.assert_allclose(np.exp(lp[3]).sum(), 1.0, rtol=1e-6)
    assert lp[3, 1] == pytest.approx(np.log(1e-6 / (1 + 2e-6)), rel=1e-6)


# ---------------------------------------------------------------- halting vs limiting


def test_halting_and_limiting_budgets():
    assert schedules.checkpoint_steps(60000, 15)[4] == 20000
    assert schedules.halting_steps(60000, 15, "1/3") == 20000
    assert schedules.halting_steps(6000, 15, "7/15") == 2800
    assert schedules.limiting_schedule(60000, "1/3", 0.1) == (20000, 2000)
    assert schedules.limiting_schedule(300, 0.2, 0.1) == (60, 6)
    with pytest.raises(ValueError, match="not a checkpoint"):
        schedules.halting_steps(60000, 15, "1/4")


def test_halting_and_limiting_lr_schedules_differ():
    total, K, frac, ratio = 150, 15, "1/3", 0.1
    h_step = schedules.halting_steps(total, K, frac)
    steps, warm = schedules.limiting_schedule(total, frac, ratio)
    assert h_step == steps == 50 and warm == 5
    full = schedules.lr_curve(total, schedules.warmup_steps(total, ratio))
    halting = schedules.lr_curve(total, schedules.warmup_steps(total, ratio), until=h_step)
    limiting = schedules.lr_curve(steps, warm)
    assert halting == full[:h_step]  # halting = the full schedule cut at the checkpoint
    assert len(halting) == len(limiting) == 50
    # warmup: 15 steps for the full schedule, 5 for the limited one
    assert int(np.argmax(halting)) == 15 and int(np.argmax(limiting)) == 5
    assert max(limiting) == pytest.approx(1.0)
    # limiting decays to ~0 within its budget; halting stops with the LR still high
    assert limiting[-1] == pytest.approx(1 / 45)
    assert halting[-1] == pytest.approx((150 - 49) / 135)
    assert not np.allclose(halting, limiting)
    # the schedule is transformers' linear warmup/decay
    fn = schedules.linear_lr_lambda(50, 5)
    assert [fn(s) for s in (0, 1, 5, 27, 50)] == [0.0, 0.2, 1.0, pytest.approx(0.5111111), 0.0]


# ---------------------------------------------------------------- end to end (CLI)


def test_cli_datamap_then_subsets(tmp_path):
    run = _dyn(tmp_path)
    train = _train(tmp_path)
    dm_file = tmp_path / "datamaps" / "seed0.parquet"
    assert main(["datamap", "--run-dir", str(run), "--out", str(dm_file), "--q", "0.4"]) == 0
    dmap = pd.read_parquet(dm_file)

    def subset(method, *extra):
        out = tmp_path / "subsets" / f"{method}.parquet"
        args = ["subset", "--method", method, "--train", str(train), "--out", str(out), *extra]
        assert main(args) == 0
        return pd.read_parquet(out)

    dm = subset("dm", "--q", "0.4", "--seed", "0", "--datamap", str(dm_file))
    assert set(dm["uid"]) == set(dmap.loc[dmap["ambiguous"], "uid"]) and len(dm) == 2
    assert dm["weight"].dtype == np.float32

    rnd = subset("random", "--q", "0.4", "--seed", "7")
    assert len(rnd) == 2 and set(rnd["uid"]) <= set(UIDS)

    spec = json.dumps({"jtt_epoch": 2, "upweight": 4.0})
    jtt = subset("jtt", "--q", "0.4", "--seed", "0", "--ref-run", str(run), "--spec", spec)
    assert list(jtt["weight"]) == [1, 4, 4, 1, 1]

    spec_file = tmp_path / "jtt.json"
    spec_file.write_text(spec)
    assert list(subset("jtt", "--ref-run", str(run), "--spec", str(spec_file))["weight"]) == [1, 4, 4, 1, 1]

    poe = subset("poe", "--q", "0.4", "--seed", "0", "--ref-run", str(run))
    assert [c for c in poe.columns if c.startswith("bias_logp_")] == ["bias_logp_0", "bias_logp_1", "bias_logp_2"]
    assert len(poe) == 5


def test_cli_subset_errors(tmp_path, caplog):
    train = _train(tmp_path)
    other = _dyn(tmp_path, uids=["t0", "t1", "t2", "t3", "zz"], name="other")
    dm_file = tmp_path / "other.parquet"
    assert main(["datamap", "--run-dir", str(other), "--out", str(dm_file), "--q", "0.4"]) == 0
    out = str(tmp_path / "s.parquet")
    base = ["subset", "--train", str(train), "--out", out, "--q", "0.4"]
    with caplog.at_level(logging.ERROR):
        assert main([*base, "--method", "dm", "--datamap", str(dm_file)]) == 1
    assert str(dm_file) in caplog.text and str(train) in caplog.text
    assert main([*base, "--method", "jtt", "--ref-run", str(other), "--spec", '{"jtt_epoch": 3}']) == 1
    assert main([*base, "--method", "jtt", "--ref-run", str(tmp_path / "ref_missing")]) == 1
    assert main([*base, "--method", "dm"]) == 1  # no --datamap
    run = _dyn(tmp_path)
    assert main([*base, "--method", "jtt", "--ref-run", str(run), "--spec", '{"jtt_epoch": null}']) == 1
    assert main([*base, "--method", "jtt", "--ref-run", str(run), "--spec", "{not json"]) == 1
    assert not (tmp_path / "s.parquet").exists()
