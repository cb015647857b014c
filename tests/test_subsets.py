"""Subset selection per method, failed references, and the datamap -> subset CLI."""

import json
import logging

import numpy as np
import pandas as pd
import pytest

from ftft import datamap, subsets
from ftft.cli import main
from ftft.io import write_json
from ftft.train.engine import bias_log_probs, write_bias

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


def _train(tmp_path):
    pd.DataFrame({"uid": UIDS, "text_a": "x", "label": LABELS}).to_parquet(tmp_path / "train.parquet")
    return tmp_path / "train.parquet"


def test_random_size_order_and_determinism():
    uids = [f"u{i}" for i in range(1000)]
    a = subsets.random_subset(uids, 0.33, seed=3)
    assert len(a) == 330 and a["uid"].is_unique
    assert a["weight"].dtype == np.float32 and (a["weight"] == 1).all()
    assert set(a["uid"]) != set(subsets.random_subset(uids, 0.33, seed=4)["uid"])
    expected = np.sort(np.random.default_rng(3).choice(1000, 330, replace=False))
    assert list(a["uid"]) == [uids[i] for i in expected]  # numpy's draw for the seed, in training-set order


def test_dm_picks_highest_variability():
    uids = [f"u{i}" for i in range(10)]
    var = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.0, 0.05, 0.6, 0.15]
    dmap = pd.DataFrame({"uid": uids[::-1], "variability": var[::-1], "confidence": 0.5})
    out = subsets.dm_subset(uids, dmap, 0.3)
    assert list(out["uid"]) == ["u1", "u3", "u5"]  # top-3 variability, in train order
    assert (out["weight"] == 1).all()


def test_jtt_upsamples_the_error_set(tmp_path, caplog):
    """Liu et al.'s upsampling: every instance once, plus ``upweight`` more copies of each mispredicted one."""
    dyn = datamap.load_dynamics(_dyn(tmp_path) / "dynamics.npz")
    order = ["t4", "t3", "t2", "t1", "t0"]
    out = subsets.jtt_subset(order, dyn, jtt_epoch=2, upweight=4)
    assert list(out["uid"]) == order and (out["weight"] == 1).all()  # every instance, in training-set order
    assert dict(zip(out["uid"], out["copies"], strict=True)) == {"t0": 1, "t1": 5, "t2": 5, "t3": 1, "t4": 1}
    assert list(subsets.jtt_subset(UIDS, dyn, jtt_epoch=1, upweight=4)["copies"]) == [5, 1, 5, 1, 1]
    with caplog.at_level(logging.WARNING):  # beyond the recorded epochs: the last complete one, with a warning
        assert list(subsets.jtt_subset(UIDS, dyn, jtt_epoch=5, upweight=3)["copies"]) == [1, 1, 4, 1, 1]
    assert "jtt_epoch=5" in caplog.text


def _bias_run(tmp_path, failed=None):
    """A bias-model run folder: run.json and bias_logp.parquet of its final weights (here: epoch 3's probs)."""
    run = tmp_path / "bias"
    write_json(run / "run.json", {"status": "failed" if failed else "ok", "failure_reason": failed})
    write_bias(run / "bias_logp.parquet", UIDS, bias_log_probs(np.array(PROBS[2])), 3, {"failed": failed})
    return run


def test_poe_log_probs_come_from_the_bias_file(tmp_path):
    from ftft.results import read_parquet

    run = _bias_run(tmp_path)
    out = subsets.poe_subset(UIDS[::-1], read_parquet(run / "bias_logp.parquet"), "bias file")
    assert list(out.columns) == ["uid", "weight", "bias_logp_0", "bias_logp_1", "bias_logp_2"]
    assert list(out["uid"]) == UIDS[::-1] and (out["weight"] == 1).all()
    lp = out[["bias_logp_0", "bias_logp_1", "bias_logp_2"]].to_numpy()
    assert lp.dtype == np.float32
    p3 = np.clip(np.array(PROBS[2], dtype=np.float64), 1e-6, None)
    p3 /= p3.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(lp, np.log(p3)[::-1], rtol=1e-6)
    # certain instance: exact zeros floored at 1e-6, renormalised
    assert lp[1, 1] == pytest.approx(np.log(1e-6 / (1 + 2e-6)), rel=1e-6)


def test_failed_reference_gives_an_empty_failed_subset(tmp_path):
    from ftft.results import parquet_meta

    train = _train(tmp_path)
    run = _bias_run(tmp_path, failed="non-finite training loss")
    out = tmp_path / "poe.parquet"
    assert main(["subset", "--method", "poe", "--train", str(train), "--out", str(out), "--ref-run", str(run)]) == 0
    assert len(pd.read_parquet(out)) == 0
    assert "non-finite training loss" in parquet_meta(out)["failed"]
    # a failed data map (its reference failed) propagates the same way to DM
    dm_file = tmp_path / "failed_map.parquet"
    assert main(["datamap", "--run-dir", str(run), "--out", str(dm_file), "--q", "0.4"]) == 0
    assert "non-finite" in parquet_meta(dm_file)["failed"]
    out_dm = tmp_path / "dm.parquet"
    assert main(["subset", "--method", "dm", "--train", str(train), "--out", str(out_dm), "--q", "0.4",
                 "--datamap", str(dm_file)]) == 0  # fmt: skip
    assert len(pd.read_parquet(out_dm)) == 0 and "non-finite" in parquet_meta(out_dm)["failed"]


def test_cli_datamap_then_subsets(tmp_path):
    run = _dyn(tmp_path)
    train = _train(tmp_path)
    dm_file, png = tmp_path / "datamaps" / "seed0.parquet", tmp_path / "datamaps" / "seed0.png"
    assert main(["datamap", "--run-dir", str(run), "--out", str(dm_file), "--plot", str(png), "--q", "0.4"]) == 0
    dmap = pd.read_parquet(dm_file)
    assert list(dmap.columns) == ["uid", "label", *datamap.METRICS, *datamap.CATEGORIES]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["datamap", "--run-dir", str(tmp_path / "nope"), "--out", str(dm_file), "--q", "0.4"]) == 1

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

    spec = json.dumps({"jtt_epoch": 2, "upweight": 4})
    jtt = subset("jtt", "--q", "0.4", "--seed", "0", "--ref-run", str(run), "--spec", spec)
    assert list(jtt["copies"]) == [1, 5, 5, 1, 1]

    spec_file = tmp_path / "jtt.json"
    spec_file.write_text(spec)
    assert list(subset("jtt", "--ref-run", str(run), "--spec", str(spec_file))["copies"]) == [1, 5, 5, 1, 1]

    bias = _bias_run(tmp_path)
    poe = subset("poe", "--seed", "0", "--ref-run", str(bias))
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
    assert str(dm_file) in caplog.text and str(train) in caplog.text and "covers different instances" in caplog.text
    assert main([*base, "--method", "jtt", "--ref-run", str(other), "--spec", '{"jtt_epoch": 3}']) == 1
    assert main([*base, "--method", "jtt", "--ref-run", str(tmp_path / "ref_missing")]) == 1
    assert main([*base, "--method", "dm"]) == 1  # no --datamap
    run = _dyn(tmp_path)
    assert main([*base, "--method", "jtt", "--ref-run", str(run), "--spec", '{"jtt_epoch": null}']) == 1
    assert main([*base, "--method", "jtt", "--ref-run", str(run), "--spec", "{not json"]) == 1
    assert not (tmp_path / "s.parquet").exists()
