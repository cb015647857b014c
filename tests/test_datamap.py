"""Data maps: metrics, categories and analyses against values computed by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from ftft import datamap
from ftft.errors import DataError

# 4 instances x 3 complete epochs (+ a partial 4th), 3 classes. Values are dyadic, so float16
# stores them exactly and the expected statistics below are exact.
UIDS = ["a", "b", "c", "d"]
LABELS = [0, 1, 2, 0]
PROBS = [
    # epoch 1
    [[0.25, 0.625, 0.125], [0.125, 0.75, 0.125], [0.5, 0.375, 0.125], [0.875, 0.0625, 0.0625]],
    # epoch 2
    [[0.5, 0.25, 0.25], [0.625, 0.25, 0.125], [0.5, 0.375, 0.125], [0.5, 0.25, 0.25]],
    # epoch 3
    [[0.75, 0.125, 0.125], [0.25, 0.5, 0.25], [0.5, 0.375, 0.125], [0.875, 0.0625, 0.0625]],
    # epoch 4: partial (a and c seen), wildly different values: must be ignored
    [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
]
SEEN = [[True] * 4, [True] * 4, [True] * 4, [True, False, True, False]]

# by hand:
#   a: p_true .25 .5 .75   -> conf .5,   var sqrt((1/16+0+1/16)/3) = sqrt(1/24); correct F T T
#   b: p_true .75 .25 .5   -> conf .5,   var sqrt(1/24);                        correct T F T
#   c: p_true .125 x3      -> conf .125, var 0;                                 correct F F F
#   d: p_true .875 .5 .875 -> conf .75,  var sqrt((1/64+1/16+1/64)/3) = sqrt(1/32); correct T T T
EXPECTED = pd.DataFrame({"uid": UIDS, "label": LABELS, "confidence": [0.5, 0.5, 0.125, 0.75],
                         "variability": [math.sqrt(1 / 24), math.sqrt(1 / 24), 0.0, math.sqrt(1 / 32)],
                         "correctness": [2 / 3, 2 / 3, 0.0, 1.0]})  # fmt: skip


@pytest.fixture
def dyn(tmp_path):
    datamap.save_dynamics(tmp_path / "run" / "dynamics.npz", UIDS, LABELS, PROBS, SEEN)
    return datamap.load_dynamics(tmp_path / "run" / "dynamics.npz")


def test_metrics_by_hand_over_complete_epochs(dyn, tmp_path):
    with np.load(dyn.path) as z:  # the file contract
        assert (z["probs"].dtype, z["labels"].dtype, z["seen"].dtype, int(z["complete_epochs"])) == (
            np.float16, np.int64, bool, 3)  # fmt: skip
    df = datamap.compute(dyn)
    assert list(df.columns) == ["uid", "label", *datamap.METRICS] and list(df["uid"]) == UIDS
    for col in datamap.METRICS:  # variability: population std (ddof=0), like cartography
        np.testing.assert_allclose(df[col].to_numpy(), EXPECTED[col].to_numpy(), atol=1e-12, err_msg=col)
    # the partial 4th epoch would change a's p_true mean to (1.5 + 0) / 4 if it were used
    assert datamap.compute(dyn, epochs=2)["confidence"].iloc[0] == pytest.approx(0.375)
    compressed = tmp_path / "compressed.npz"  # the engine writes np.savez_compressed
    with np.load(dyn.path) as z:
        np.savez_compressed(compressed, **z)
    pd.testing.assert_frame_equal(datamap.compute(datamap.load_dynamics(compressed)), df)


def test_malformed_dynamics_or_fewer_than_two_complete_epochs(tmp_path):
    path = tmp_path / "dynamics.npz"
    datamap.save_dynamics(path, UIDS, LABELS, PROBS[:2], [SEEN[0], [True, False, True, True]])
    dyn = datamap.load_dynamics(path)
    assert dyn.complete_epochs == 1
    with pytest.raises(DataError, match=str(path)):
        datamap.compute(dyn)
    with pytest.raises(DataError, match="not found"):
        datamap.load_dynamics(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, uids=np.array(UIDS), labels=np.array(LABELS))
    with pytest.raises(DataError, match="missing array"):
        datamap.load_dynamics(bad)
    probs = np.array(PROBS[:3])
    probs[1, 2, 0] = -0.125
    with pytest.raises(DataError, match="negative"):
        datamap.save_dynamics(tmp_path / "d.npz", UIDS, LABELS, probs)


def test_categories_partition_rule_and_easy_ratio(dyn):
    df = datamap.compute(dyn)
    # q=0.25: 1 per category; a and b tie on variability -> the smaller uid 'a' wins.
    # q=0.5: 2 per category; hard: c, then a/b tie on confidence -> 'a'; a is both
    for q, amb, hard, easy in ((0.25, "a", "c", "bd"), (0.5, "ab", "ac", "d")):
        c = datamap.categorize(df, q)
        assert [list(c.loc[c[k], "uid"]) for k in ("ambiguous", "hard_to_learn", "easy")] == [[*amb], [*hard], [*easy]]
        assert datamap.easy_ratio(df, q) == len(easy) / len(UIDS)
    assert list(c["category"]) == ["ambiguous+hard_to_learn", "ambiguous", "hard_to_learn", "easy"]


def test_categories_sizes_and_deterministic_ties():
    rng = np.random.default_rng(0)
    n = 1001
    uids = [f"u{i:04d}" for i in range(n)]  # heavy ties below
    df = pd.DataFrame({"uid": uids, "confidence": rng.integers(0, 5, n) / 4, "variability": rng.integers(0, 3, n) / 8})
    for q in (0.25, 0.33, 0.5):
        k = round(q * n)
        c = datamap.categorize(df, q)
        assert c["ambiguous"].sum() == k and c["hard_to_learn"].sum() == k
        # same result whatever the row order
        shuffled = datamap.categorize(df.sample(frac=1, random_state=1), q).sort_index()
        pd.testing.assert_frame_equal(shuffled, c)
        # equals a stable sort by (value, uid)
        amb = df.sort_values(["variability", "uid"], ascending=[False, True]).head(k)["uid"]
        hard = df.sort_values(["confidence", "uid"], ascending=[True, True]).head(k)["uid"]
        assert set(c.loc[c["ambiguous"], "uid"]) == set(amb)
        assert set(c.loc[c["hard_to_learn"], "uid"]) == set(hard)


def test_overlap_matrix(dyn):
    m1 = datamap.compute(dyn)
    m2 = m1.copy()
    m2["variability"] = [0.0, 0.3, 0.2, 0.1]  # ambiguous at q=.5: b, c (vs a, b)
    mat = datamap.overlap_matrix({"x": m1, "y": m2}, 0.5)
    assert list(mat.index) == ["x", "y"] and list(mat.columns) == ["x", "y"]
    np.testing.assert_allclose(mat.to_numpy(), [[1.0, 0.5], [0.5, 1.0]])
    with pytest.raises(DataError, match="different training instances"):
        datamap.overlap_matrix({"x": m1, "z": m1.iloc[:3]}, 0.5)
    with pytest.raises(ValueError, match="empty set"):
        datamap.overlap_matrix({"x": m1}, 0.1)  # round(0.1 * 4) = 0 ambiguous instances


def test_ptrue_curves(dyn):
    cur = datamap.ptrue_curves(dyn, hard_fraction=0.25)  # hard = c (lowest confidence)
    assert list(cur.columns) == ["epoch", "group", "median_ptrue"]
    wide = cur.pivot(index="epoch", columns="group", values="median_ptrue")
    assert list(wide.index) == [1, 2, 3]  # complete epochs only
    # rest = a, b, d: medians of (.25,.75,.875), (.5,.25,.5), (.75,.5,.875)
    np.testing.assert_allclose(wide[["hard", "rest"]], [[0.125, 0.75], [0.125, 0.5], [0.125, 0.75]])


def test_default_title():
    title = datamap.default_title("results/runs/nli/tinybert/erm-none/full/seed2")
    assert title == "Data map: nli, reference tinybert, seed 2"
    assert datamap.default_title("elsewhere") == "Data map: elsewhere"
