"""The synthetic demo data: deterministic, schema-valid, and with the structure FTFT is about."""

import json

import pandas as pd
import pytest

from ftft.cli import main
from ftft.data import demo, schema

ROWS = {"nli": 2000, "hsd": 1200}  # the demo config's sizes


@pytest.fixture(scope="module")
def frames():
    return {task: demo.generate(task, ROWS[task], 300, seed=13) for task in demo.TASKS}


def agreement(df: pd.DataFrame) -> pd.Series:
    return df.groupby("split", sort=False)["shortcut"].mean()


@pytest.mark.parametrize("task", demo.TASKS)
def test_deterministic_per_seed_and_split(task):
    a = demo.generate(task, 300, 50, seed=5)
    pd.testing.assert_frame_equal(a, demo.generate(task, 300, 50, seed=5))
    c = demo.generate(task, 300, 50, seed=6)
    assert list(c["uid"]) == list(a["uid"]) and (c["text_a"] != a["text_a"]).mean() > 0.5
    b = demo.generate(task, 300, 80, seed=5)  # the training rows do not depend on the evaluation sizes
    pd.testing.assert_frame_equal(a[a["split"] == "train"], b[b["split"] == "train"])


@pytest.mark.parametrize("task", demo.TASKS)
def test_schema_splits_and_balance(frames, task):
    df = frames[task]
    schema.check(df, demo.LABEL_NAMES[task], task)
    expected = {"train": ROWS[task], "dev": 300, "test": 300} | {s: 300 for s in demo.OOD_SPLITS[task]}
    assert df["split"].value_counts().to_dict() == expected
    assert df["uid"].is_unique
    n_labels = len(demo.LABEL_NAMES[task])
    for split, part in df.groupby("split"):
        shares = part["label"].value_counts(normalize=True)
        assert len(shares) == n_labels, split
        assert shares.min() > (0.7 / n_labels if split != "train" else 0.8 / n_labels), (split, shares.to_dict())
    assert (df["text_b"].notna() if task == "nli" else df["text_b"].isna()).all()


@pytest.mark.parametrize("task", demo.TASKS)
def test_shortcut_strong_in_id_fails_ood_and_noise_as_configured(frames, task):
    agree = agreement(frames[task])
    for split in demo.ID_SPLITS:
        assert 0.8 <= agree[split] <= 0.93, (split, agree[split])
    ood = [agree[s] for s in demo.OOD_SPLITS[task]]
    assert max(ood) <= 0.6, agree.to_dict()
    if task == "nli":
        rounds = [agree[f"ood_anli_r{k}"] for k in (1, 2, 3)]
    else:
        rounds = [agree[f"ood_r{k}_perturbation"] for k in (2, 3, 4)]
        originals = [agree[f"ood_r{k}_original"] for k in (2, 3, 4)]
        assert originals[0] > originals[2]
    assert rounds[0] > rounds[1] > rounds[2], rounds
    assert rounds[2] <= 0.2  # anti-correlated in the hardest round
    df = frames[task]  # noise and ambiguity
    train = df[df["split"] == "train"]
    kinds = train["kind"].value_counts(normalize=True)
    for kind in ("noise", "ambiguous"):  # the configured shares, up to sampling noise
        assert abs(kinds[kind] - demo.ID_SETTINGS[kind]) <= 0.02, (kind, kinds[kind])
    assert 0.03 <= kinds["counter"] <= 0.15
    noise = train[train["kind"] == "noise"]
    assert (noise["label"] != noise["true_label"]).all()
    clean = train[train["kind"].isin(["clean", "counter"])]
    assert (clean["label"] == clean["true_label"]).all()
    ood = df[df["split"].str.startswith("ood_")]
    assert set(ood["kind"]) <= {"clean", "counter"}
    assert (ood["label"] == ood["true_label"]).all()


def test_nli_rule_holds(frames):
    """Off the noisy / ambiguous rows, the label is the mood rule of the module docstring."""
    df = frames["nli"]
    df = df[df["kind"].isin(["clean", "counter"])]
    assert len(df) > 2000
    for prem, hyp, label in zip(df["text_a"], df["text_b"], df["label"], strict=True):
        mood = 0 if prem.split()[1] in demo.MOODS[0] else 1
        assert prem.split()[1] in demo.MOODS[mood]
        adj = hyp.split(" was ")[1].split()[0]
        rule = 1 if adj in demo.TRAITS else (0 if adj in demo.MOODS[mood] else 2)
        assert rule == label, (prem, hyp, label)


def test_hsd_rule_holds(frames):
    """Off the noisy / ambiguous rows: hate iff an abusive predicate follows a group target."""
    df = frames["hsd"]
    df = df[df["kind"].isin(["clean", "counter"])]
    targets = demo.IDENTITIES + [f"people from {x}" for x in demo.LANDS]
    for text, label in zip(df["text_a"], df["label"], strict=True):
        framed = any(text.removeprefix(o).strip().startswith(f) for o in demo.OPENERS if o for f in demo.FRAMES)
        framed = framed or any(text.startswith(f) for f in demo.FRAMES)
        hate = not framed and any(f"{t} {a}" in text for t in targets for a in demo.ABUSIVE)
        assert int(hate) == label, (text, label)


def test_lengths_and_vocabulary(frames):
    nli, hsd = frames["nli"], frames["hsd"]
    pair_words = (nli["text_a"].str.split().str.len() + nli["text_b"].str.split().str.len()).max()
    assert pair_words + 3 <= 30
    assert hsd["text_a"].str.split().str.len().max() + 2 <= 20
    vocab = set(" ".join(pd.concat([nli["text_a"], nli["text_b"], hsd["text_a"]])).split())
    assert 150 <= len(vocab) <= 500


def test_hsd_perturbations_are_minimal_label_flips(frames):
    df = frames["hsd"].set_index("uid")
    pert = df[df["split"].str.endswith("_perturbation")]
    assert pert["orig_uid"].notna().all()
    orig = df.loc[pert["orig_uid"]]
    assert (orig["split"].str.replace("_original", "_perturbation").values == pert["split"].values).all()
    assert (orig["label"].values != pert["label"].values).all()
    # the identity cue is kept, so whether the shortcut agrees flips with the label
    assert (orig["cue"].values == pert["cue"].values).all()
    changed = [len(set(a.split()) ^ set(b.split())) for a, b in zip(orig["text_a"], pert["text_a"], strict=True)]
    assert max(changed) <= 12 and sorted(changed)[len(changed) // 2] <= 8


@pytest.mark.parametrize("task", demo.TASKS)
def test_cli_writes_parquet_and_summary(tmp_path, task):
    out, summ = tmp_path / f"{task}.parquet", tmp_path / f"{task}.summary.json"
    rc = main(["demo-data", "--task", task, "--out", str(out), "--summary", str(summ), "--train-rows", "120"])
    assert rc == 0
    df, meta = schema.read(out)
    assert meta == {"label_names": demo.LABEL_NAMES[task], "source": f"demo_{task}"}
    expect = demo.generate(task, 120, 300, 13)
    assert list(df.columns) == list(expect.columns)
    for col in df.columns:
        assert df[col].isna().tolist() == expect[col].isna().tolist(), col
        assert df[col].dropna().tolist() == expect[col].dropna().tolist(), col
    s = json.loads(summ.read_text())
    assert s["splits"] == s["expected"]
    assert s["rows_out"] == len(df) and s["label_names"] == demo.LABEL_NAMES[task]
    assert s["diagnostics"]["train"]["shortcut_agreement"] > 0.75


@pytest.mark.parametrize(("args", "error"), [(("qa", 10, 10, 0), "unknown task 'qa'"), (("nli", 0, 10, 0), ">= 1")])
def test_bad_arguments_raise_data_error(args, error):
    with pytest.raises(schema.DataError, match=error):
        demo.generate(*args)
