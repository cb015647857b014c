"""The pipeline's direction, end to end: the rows a model learns late are what DM selects.

A toy task whose late-learned rows are known. Tiny models trained from scratch learn the labels one at a
time (the demo's note), so the rows of a minority label, learned last, are the ones whose
p(gold) rises in mid-training: the most variable. A real training run records the dynamics; the data map and the DM subset are built
by the package's own functions. The DM subset (most ambiguous q) must be enriched in the late rows far
above chance, and the least ambiguous q must not be: a sign error anywhere between the dynamics and the
subset fails here.
"""

import engine_fixtures as ef
import pandas as pd
import pytest

from ftft import datamap, subsets
from ftft.data import schema
from ftft.standins import build_demo_model
from ftft.tokenize import tokenize_task
from ftft.train.engine import train
from ftft.train.spec import make_spec

pytestmark = pytest.mark.integration


def test_dm_selects_the_rows_learned_late(tmp_path):
    data = ef.write_toy_data(tmp_path / "raw")
    # 40 texts of labels 0/1 with their keyword, 8 copies each, and 48 rows of label 2 (keyword "no"): the minority
    # label is learned last, so its rows are the ones whose p(gold) moves in mid-training
    labelled = ef.toy_frame(40, 1, "train", ef.FILLER, labels=[0, 1])
    early = pd.concat([labelled.assign(uid=labelled["uid"] + f"-copy{c}") for c in range(8)], ignore_index=True)
    late_rows = ef.toy_frame(48, 101, "late", ef.FILLER, labels=[2]).assign(split="train")
    train_df, late = pd.concat([early, late_rows], ignore_index=True), set(late_rows["uid"])
    schema.write(train_df, data / "train.parquet", ef.LABELS, "toy")
    words = ef.FILLER + ef.OOD_FILLER + ef.KEYWORDS
    model = build_demo_model("toy-bert", "bert", "base", [" ".join(words), *words], tmp_path / "model", num_labels=3)
    tok = tokenize_task(data / "train.parquet", data / "eval", [n for n, _ in ef.EVAL_SETS], str(model), ef.MAX_LENGTH,
                        tmp_path / "tok")  # fmt: skip
    n = tok["train"]["rows"]
    spec = make_spec(ef.toy_config(model, steps=12 * (n // 16), checkpoints=4, lr=5e-3), ef.toy_run())
    rec = train(spec, tmp_path / "tok", tmp_path / "run", tmp_path / "state")
    assert rec["status"] == "ok" and rec["epochs"] >= 11

    dmap = datamap.compute(datamap.load_dynamics(tmp_path / "run" / "dynamics.npz"))
    q = 0.2
    chosen = set(subsets.dm_subset(train_df["uid"].to_numpy(), dmap, q)["uid"])
    k = len(chosen)
    uids = dmap["uid"].to_numpy().astype(str)
    least = set(uids[datamap.select_extreme(dmap["variability"].to_numpy(), dmap["uid"], k, largest=False)])
    base = len(late) / n  # the share of late rows in a random subset
    share_dm, share_least = len(chosen & late) / k, len(least & late) / k
    assert share_dm >= 2.5 * base, (share_dm, base)  # far above chance
    assert share_least <= base, (share_least, base)  # the inverted selection: not enriched
