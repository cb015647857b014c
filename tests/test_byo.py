"""Bring-your-own datasets: config column mapping -> the normalised schema."""

import json

import pandas as pd
import pytest

from ftft.cli import main
from ftft.data import schema
from ftft.data.prepare import normalise
from ftft.errors import DataError


@pytest.fixture
def files(tmp_path):
    sentences = ["good film", 'said "great", then, left', "awful\nreally", "meh"]
    train = pd.DataFrame({"id": ["a1", "a2", "a3", "a4"], "sentence": sentences, "other": ["x", "y", "z", "w"],
                          "gold": ["pos", "pos", "neg", "neg"]})  # fmt: skip
    train.to_csv(tmp_path / "train.csv", index=False)
    test = [
        {"sentence": "lovely", "gold": "pos"},
        {"sentence": "terrible", "gold": "neg"},
        {"sentence": "unsure", "gold": "mixed"},  # not in labels -> dropped, counted
        {"sentence": "", "gold": "neg"},  # empty text -> dropped, counted
    ]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    return tmp_path, train, test


def spec_for(tmp_path, **kw):
    files = {"train": str(tmp_path / "train.csv"), "test": "test.jsonl"}  # relative: found below --raw
    spec = {"files": files, "text_a": "sentence", "text_b": None, "label": "gold", "uid": None}
    return spec | {"labels": ["neg", "pos"]} | kw


def prepare(raw, out, spec) -> int:
    return main(["prepare", "--source", "mine", "--raw", str(raw), "--out", str(out),
                 "--summary", str(out.with_suffix(".json")), "--spec", json.dumps(spec)])  # fmt: skip


def test_byo_csv_jsonl_round_trip_uid_column_pair_and_sorted_labels(files, tmp_path):
    raw, train, test = files
    out, summ = tmp_path / "mine.parquet", tmp_path / "mine.json"
    assert prepare(raw, out, spec_for(raw)) == 0
    df, meta = schema.read(out)
    assert meta == {"label_names": ["neg", "pos"], "source": "mine"}
    tr = df[df["split"] == "train"]
    assert tr["text_a"].tolist() == train["sentence"].tolist()  # quotes, commas, newlines survive
    assert tr["label"].tolist() == [1, 1, 0, 0]
    assert tr["uid"].tolist() == ["mine-train-0", "mine-train-1", "mine-train-2", "mine-train-3"]
    assert df["text_b"].isna().all()
    te = df[df["split"] == "test"]
    assert te["text_a"].tolist() == ["lovely", "terrible"] and te["label"].tolist() == [1, 0]
    assert te["uid"].tolist() == ["mine-test-0", "mine-test-1"]
    summary = json.loads(summ.read_text())
    assert summary["rows_in"] == len(train) + len(test) and summary["rows_out"] == 6
    assert summary["dropped"] == {"unknown_label": 1, "missing_text": 1}
    assert any("mixed" in w for w in summary["warnings"])
    spec = spec_for(raw, files={"train": str(raw / "train.csv")}, uid="id", text_b="other", labels=None)
    df, summary = normalise("mine", raw, spec)
    assert summary["label_names"] == ["neg", "pos"]  # sorted unique
    assert df["uid"].tolist() == ["a1", "a2", "a3", "a4"] and df["text_b"].tolist() == ["x", "y", "z", "w"]


def test_byo_int_labels_and_parquet_tsv(tmp_path):
    pd.DataFrame({"t": ["a", "b", "c"], "y": [2, 0, 1]}).to_parquet(tmp_path / "tr.parquet")
    pd.DataFrame({"t": ["d", "e"], "y": ["1", "0"]}).to_csv(tmp_path / "te.tsv", sep="\t", index=False)
    files = {"train": str(tmp_path / "tr.parquet"), "test": str(tmp_path / "te.tsv")}
    spec = {"files": files, "text_a": "t", "label": "y"}
    df, summary = normalise("ints", tmp_path, spec)
    assert summary["label_names"] == ["0", "1", "2"]
    assert df["label"].tolist() == [2, 0, 1, 1, 0]
    # int labels are kept as indices into the configured names
    df, summary = normalise("ints", tmp_path, {**spec, "labels": ["entailment", "neutral", "contradiction"]})
    assert df["label"].tolist() == [2, 0, 1, 1, 0] and summary["dropped"] == {}


def test_byo_mismapped_column_is_a_clear_error(files, tmp_path):
    raw, _, _ = files
    with pytest.raises(DataError) as err:
        normalise("mine", raw, spec_for(raw, text_a="sentense"))
    msg = str(err.value)
    assert "train.csv" in msg and "byo.mine.text_a" in msg and "'sentense'" in msg
    assert "['id', 'sentence', 'other', 'gold']" in msg
    with pytest.raises(DataError, match=r"byo\.mine\.files\.test"):
        normalise("mine", raw, spec_for(raw, files={"test": "nowhere.jsonl"}))
    assert prepare(raw, tmp_path / "o.parquet", spec_for(raw, label="lab")) == 1
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.integration
def test_dropped_rows_are_reported_on_the_console(tmp_path):
    """A label value outside the task's labels (byo.<s>.labels null): the rows are dropped, and the closing
    lines on the terminal say how many, why and which values, naming the task's labels as the reference."""
    import wfutil

    wf = wfutil.make_copy(tmp_path / "wf")
    train = wf / "examples/byo/comments_train.csv"
    df = pd.read_csv(train)
    df.loc[: len(df) // 10, "verdict"] = "spam"  # not one of tasks.comments.labels
    df.to_csv(train, index=False)
    res = wfutil.snakemake(wf, "results/byo-example/data/sources/comments.parquet", "--cores", "1",
                           "--configfile", "config/byo-example.yaml")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    n = len(df[df["verdict"] == "spam"])
    assert f"dropped {n} x unknown_label" in res.stderr
    assert "not in tasks.comments.labels (byo.comments.labels is null) ['ok', 'toxic']: ['spam']" in res.stderr
    summary = json.loads((wf / "results/byo-example/data/sources/comments.summary.json").read_text())
    assert summary["dropped"] == {"unknown_label": n}


def test_byo_ids_numbered_per_split_keep_every_row(tmp_path, caplog):
    """Ids unique per split (0, 1, ... in each file) keep every row, as '<split>/<id>'; a duplicate within a split
    is dropped and the drop is a warning with the counts."""
    for split, n in (("train", 5), ("test", 4)):
        ids = [*range(n), 0] if split == "train" else range(n)  # one duplicate within train
        pd.DataFrame({"id": ids, "t": [f"{split} row {i}" for i in range(len(ids))], "y": 0}).to_csv(
            tmp_path / f"{split}.csv", index=False
        )
    files = {s: str(tmp_path / f"{s}.csv") for s in ("train", "test")}
    df, summary = normalise("mine", tmp_path, spec_for(tmp_path, files=files, text_a="t", label="y", uid="id"))
    assert df.groupby("split").size().to_dict() == {"train": 5, "test": 4}
    assert df["uid"].is_unique and set(df.loc[df.split == "test", "uid"]) == {f"test/{i}" for i in range(4)}
    assert summary["dropped"] == {"duplicate_uid": 1}
    assert any(r.levelname == "WARNING" and "dropped 1 of 10 rows" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("second", "error"),
    [('{"id": NaN, "t": "b", "y": 1}', r"train\.jsonl: 1 row\(s\) without an id in column 'id'.*data row 2"),
     ('{"id": 2, "t": ', r"byo\.mine\.files\.train: .*train\.jsonl:2: not a JSON line")],
)  # fmt: skip
def test_byo_bad_jsonl_row_is_named_by_file_and_row(tmp_path, second, error):
    (tmp_path / "train.jsonl").write_text(f'{{"id": 1, "t": "a", "y": 0}}\n{second}\n')
    spec = spec_for(tmp_path, files={"train": str(tmp_path / "train.jsonl")}, text_a="t", label="y", uid="id")
    with pytest.raises(DataError, match=error):
        normalise("mine", tmp_path, spec)


def test_byo_source_from_a_hub_dataset_offline(tmp_path):
    """hf: {path, name, revision, splits}: a dataset in the hub's cache layout (parquet files of a pinned
    commit), read with HF_DATASETS_OFFLINE=1 and HF_HUB_OFFLINE=1 by the real `ftft prepare` command."""
    import os
    import subprocess
    import sys

    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "home" / "hub" / "datasets--someone--comments"
    (repo / "snapshots" / sha / "data").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    rows = {"train": (["nice one", "you fool", "so kind"], [0, 1, 0]), "validation": (["idiot", "thanks"], [1, 0])}
    for split, (texts, labels) in rows.items():
        frame = pd.DataFrame({"text": texts, "label": labels})
        frame.to_parquet(repo / "snapshots" / sha / "data" / f"{split}-00000-of-00001.parquet")
    spec = {"hf": {"path": "someone/comments", "revision": sha, "splits": {"train": "train", "test": "validation"}},
            "text_a": "text", "label": "label", "labels": ["ok", "toxic"]}  # fmt: skip
    env = {**os.environ, "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = tmp_path / "comments.parquet"
    cmd = [sys.executable, "-m", "ftft.cli", "prepare", "--source", "comments", "--raw", ".", "--out", str(out),
           "--summary", str(tmp_path / "s.json"), "--spec", json.dumps(spec)]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    df = pd.read_parquet(out)
    for split, (texts, labels) in rows.items():
        got = df[df.split == {"validation": "test"}.get(split, split)]
        assert got.text_a.tolist() == texts and got.label.tolist() == labels
    assert schema.read(out)[1]["label_names"] == ["ok", "toxic"]
    spec["hf"]["revision"] = "f" * 40  # not in the cache: a clear error naming the key
    cmd[cmd.index("--spec") + 1] = json.dumps(spec)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert r.returncode == 1 and "byo.comments.hf" in r.stderr and "f" * 40 in r.stderr
