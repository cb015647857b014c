"""CAD rebuilt with Ramponi & Tonelli's (2022) pipeline, and their text cleaning (ftft.data.clean).

The reference below (``rt_*``) is R&T's ``scripts/1.prepare-data.py`` (github.com/dhfbk/
hate-speech-artifacts, MIT licence) for ``cad`` with ``keep_emojis=True``, copied line by line
(logging and the other datasets left out) and run on real files in a temporary folder with the
real scikit-learn ``StratifiedKFold``: our normaliser must give the same files, in the same order.
"""

import csv
import os
import random
import re
from collections import Counter
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_prepare import check_common, copy_fixture, row, tsv_rows

from ftft.data import schema
from ftft.data.cad import LABEL_TO_ID, stratified_test_folds
from ftft.data.clean import clean_text
from ftft.data.prepare import normalise
from ftft.errors import DataError

FIX = Path(__file__).parent / "fixtures"
CAD = FIX / "cad" / "cad_v1_1.tsv"
HATE = "IdentityDirectedAbuse"


# --------------------------------------------------------------------------- R&T, line by line

RT_RANDOM_SEED = 42
RT_LABEL_TO_ID = {"cad": {
    "Neutral": 0, "Slur": 1, "PersonDirectedAbuse": 2, "AffiliationDirectedAbuse": 3, "IdentityDirectedAbuse": 4,
    "AffiliationDirectedAbuse$IdentityDirectedAbuse": 5,
    "AffiliationDirectedAbuse$IdentityDirectedAbuse$PersonDirectedAbuse": 6,
    "AffiliationDirectedAbuse$PersonDirectedAbuse": 7, "AffiliationDirectedAbuse$Slur": 8,
    "IdentityDirectedAbuse$PersonDirectedAbuse": 9, "IdentityDirectedAbuse$PersonDirectedAbuse$Slur": 10,
    "IdentityDirectedAbuse$Slur": 11, "PersonDirectedAbuse$Slur": 12,
}}  # fmt: skip
RT_LABEL_MAPPING = {"cad": {0: 0, 1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 6: 1, 7: 0, 8: 0, 9: 1, 10: 1, 11: 1, 12: 0}}


def rt_create_dataset_file(input_folder, dataset_name):
    annotations_filepath = os.path.join(input_folder, "cad_v1_1.tsv")
    df = pd.read_csv(annotations_filepath, delimiter="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)
    df = df.loc[df["split"].isin(["train", "dev", "test"])]
    df = df.loc[df["annotation_Context"].isin(["CurrentContent", '"NA"'])]
    df = df[df.id != "cad_11730"]
    static_cols = ["info_id", "info_subreddit", "info_subreddit_id", "info_id.parent", "info_id.link",
                   "info_thread.id", "info_order", "info_image.saved", "meta_author", "meta_created_utc",
                   "meta_date", "meta_day", "meta_permalink", "meta_text"]  # fmt: skip
    df = df.groupby(static_cols)["annotation_Primary"].apply(lambda x: "$".join(sorted(set(x)))).reset_index()
    texts = df.meta_text.astype("string").tolist()
    labels = df.annotation_Primary.astype("string").tolist()
    output_file = open(os.path.join(input_folder, "data.tsv"), "w")
    for i in range(len(texts)):
        curr_text = texts[i].replace("\\\\", "[DOUBLE_BS]").replace("\\", "").replace("[DOUBLE_BS]", "\\")
        output_file.write(str(labels[i]) + "\t" + curr_text + "\n")
    output_file.close()


def rt_clean_text(text, dataset_name, keep_emojis):
    import wordsegment as ws

    if not ws.UNIGRAMS:
        ws.load()

    def regex_match_segmentation(match):
        return " ".join(ws.segment(match.group(0)))

    def replace_cad_urls(text):
        text = re.sub(r"\[([^\[\]]+)\]\((https:\/\/(.*?))\)", r"\1", text)
        text = re.sub(r"\[([^\[\]]+)\]\((\/message\/compose(.*?))\)", r"\1", text)
        text = re.sub(r"\[([^\[\]]+)\]\((\/r\/(.*?))\)", r"\1", text)
        text = re.sub(r"http(s?):\/\/[^\r\n\t\f\v )\]\}]+", "[URL]", text)
        text = re.sub(r"www\.\S+", "[URL]", text)
        return text

    text = unescape(text)
    text = text.lower()
    text = re.sub(r"(?i)\b[A-Z0-9._%+-]+@[A-Z0-9.-]+\.[A-Z]{2,}\b", "[EMAIL]", text)
    if dataset_name == "cad":
        text = replace_cad_urls(text)
        text = re.sub(r"\/u\/\w+", "[USER]", text)
        text = re.sub(r"\/r\/\w+", "[USER]", text)
    else:
        text = re.sub(r"@[A-Za-z0-9_-]+", "[USER]", text)
        text = re.sub(r"http[^\r\n\t\f\v )\]\}]+", "[URL]", text)
    assert keep_emojis is True  # the demoji branch is not exercised
    text = re.sub(r"#[A-Za-z0-9]+", regex_match_segmentation, text)
    text = text.replace("\n", " ")
    text = text.replace("\t", " ")
    text = text.replace("[linebreak]", " ")
    text = text.replace("\xa0", " ")
    text = text.replace("\u200d", " ")
    return text


def rt_preprocess_dataset(input_filepath, output_folder, dataset_name, keep_emojis):
    raw_instances = dict()  # RT_EXTRA_LABELS["cad"] is empty: its branch is left out
    with open(input_filepath) as f:
        for line in f:
            raw_label, raw_text = line.rstrip().split("\t")
            raw_instances.setdefault(rt_clean_text(raw_text, dataset_name, keep_emojis), []).append(raw_label)
    with open(os.path.join(output_folder, dataset_name + ".all"), "w") as f:
        for text, labels in raw_instances.items():
            if len(Counter(labels)) == 1:  # get_label_truth; "ambiguous" texts are left out
                f.write(f"{labels[0]}\t{text}\n")


def rt_split_dataset(output_folder, dataset_name, k=10):
    """R&T's split_dataset with its file round trips in memory: the .all lines shuffled (seed 42) and read back with
    rstrip().split("\t"), StratifiedKFold(k) test folds appended to train (0..k-3) / dev / test files (-mc: the
    composite label id, else LABEL_MAPPING's binary label), each file shuffled again with seed 42."""
    from sklearn.model_selection import StratifiedKFold

    with open(os.path.join(output_folder, dataset_name + ".all")) as f:
        lines = f.readlines()
    random.seed(RT_RANDOM_SEED)
    random.shuffle(lines)
    instances = [line.rstrip().split("\t") for line in lines]
    y = np.array([RT_LABEL_TO_ID[dataset_name][label] for label, _ in instances])
    files: dict[str, list[tuple[str, str]]] = {}
    for split_id, (_, split_indices) in enumerate(StratifiedKFold(n_splits=k).split(np.zeros(len(y)), y)):
        file_ext = "train" if split_id < k - 2 else ("dev" if split_id == k - 2 else "test")
        for i in split_indices:
            files.setdefault(f"{file_ext}-mc", []).append((str(y[i]), instances[i][1]))
            files.setdefault(file_ext, []).append((str(RT_LABEL_MAPPING[dataset_name][int(y[i])]), instances[i][1]))
    for split_lines in files.values():
        random.seed(RT_RANDOM_SEED)
        random.shuffle(split_lines)
    return files


def run_reference(raw: Path, out: Path) -> dict[str, list[tuple[str, str]]]:
    """R&T's __main__ for cad; returns {split: [(binary label, text)]} and {split-mc: [(label id, text)]}."""
    out.mkdir()
    rt_create_dataset_file(str(raw), "cad")
    rt_preprocess_dataset(os.path.join(raw, "data.tsv"), str(out), "cad", True)
    return rt_split_dataset(str(out), "cad", k=10)


def copy_cad(tmp_path: Path, extra_rows: list[dict] | None = None) -> Path:
    dest = copy_fixture("cad", tmp_path)
    if extra_rows:
        header = CAD.read_text(encoding="utf-8").splitlines()[0].split("\t")
        base = tsv_rows(CAD)[-1]
        with open(dest / "cad_v1_1.tsv", "a", encoding="utf-8", newline="") as fh:
            for extra in extra_rows:
                fh.write("\t".join({**base, **extra}[h] for h in header) + "\n")
    return dest


def normalise_as_reference(raw: Path, tmp_path: Path):
    """normalise() of ``raw``, checked against R&T's script run on the same file; returns (frame, summary, ref)."""
    ref = run_reference(raw, tmp_path / "rt")
    df, summary = normalise("cad", raw)
    check_common(df, summary, schema.HSD_LABELS)
    for split in ("train", "dev", "test"):
        part = df[df["split"] == split]
        assert list(zip(part["label"].astype(str), part["text_a"], strict=True)) == ref[split], split
        id_to_label = {v: k for k, v in LABEL_TO_ID.items()}
        assert part["labels"].tolist() == [id_to_label[int(lab)] for lab, _ in ref[f"{split}-mc"]], split
    return df, summary, ref


@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")
def test_stratified_folds_match_sklearn_and_its_errors():
    sk = pytest.importorskip("sklearn.model_selection")
    rng = np.random.default_rng(0)
    cases = [rng.integers(0, 13, size=n) for n in (150, 250, 1013)] + [np.array([5] * 10), rng.integers(0, 3, size=37)]
    cases += [rng.choice([4, 0, 9, 2], size=300, p=[0.1, 0.7, 0.05, 0.15]) for _ in range(3)]  # first seen != 0
    cases += [np.array([3] * 25 + [1] * 3 + [7] * 12), rng.integers(0, 2, size=57)]
    for y in cases:
        ours = np.array(stratified_test_folds(y.tolist(), 10))
        theirs = [test_idx.tolist() for _, test_idx in sk.StratifiedKFold(n_splits=10).split(np.zeros(len(y)), y)]
        assert theirs == [np.flatnonzero(ours == fold).tolist() for fold in range(10)], len(y)
    # where scikit-learn raises ValueError, DataError (naming ``where``)
    for y, match in (([0] * 9, "at least 10"), ([0] * 9 + [1] * 9, "no class has 10 members")):
        with pytest.raises(DataError, match=f"my.tsv: .*{match}"):
            stratified_test_folds(y, 10, where="my.tsv")
        with pytest.raises(ValueError):
            list(sk.StratifiedKFold(n_splits=10).split(np.zeros(len(y)), y))
    assert sorted(Counter(stratified_test_folds([0] * 10 + [1] * 3, 10)).values()) == [1] * 7 + [2] * 3


@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")
def test_cad_matches_ramponi_tonelli_script(tmp_path):
    pytest.importorskip("sklearn")
    df, summary, ref = normalise_as_reference(copy_cad(tmp_path), tmp_path)
    assert summary["splits"] == {s: len(ref[s]) for s in ("dev", "test", "train")}
    assert summary["splits"] == {"dev": 9, "test": 9, "train": 76}  # tests/fixtures/README.md section 3
    assert list(df["split"]) == ["train"] * 76 + ["dev"] * 9 + ["test"] * 9
    assert (df["split"] == df["fold"].map(lambda f: "train" if f < 8 else ("dev" if f == 8 else "test"))).all()


def test_cad_fixture_partition_labels_and_accounting():
    df, summary = normalise("cad", FIX / "cad")
    check_common(df, summary, schema.HSD_LABELS)
    raw = tsv_rows(CAD)  # texts and labels per split: test_cad_matches_ramponi_tonelli_script
    assert len(df) == 94 and (df["label"] == df["labels"].map(lambda x: int(HATE in x.split("$")))).all()
    assert int(df["label"].sum()) == 22 and int((df["label"] == 0).sum()) == 72
    assert summary["label_counts"] == {"dev": {"nothate": 7, "hate": 2}, "test": {"nothate": 8, "hate": 1},
                                       "train": {"nothate": 57, "hate": 19}}  # fmt: skip
    # row accounting, reason by reason
    assert summary["rows_in"] == len(raw) == 115
    assert summary["dropped"] == {
        "excluded_split": sum(r["split"] not in ("train", "dev", "test") for r in raw),  # 6
        "needs_previous_content": 6,
        "known_bad_row": 1,
        "merged_annotation_rows": 4,  # 4 entries with two kept annotation rows
        "duplicate_text": 2,  # syc8202 (same text as syc8201) and syc9103 ("SOURCE?" = "Source?")
        "conflicting_duplicate": 2,  # "Based": Neutral (syc8203) vs PersonDirectedAbuse (syc8204)
    }
    assert not {"syc8202", "syc8203", "syc8204", "syc9103", "syc0204", "syc8102", "syc1201"} & set(df["uid"])
    assert row(df, "syc8201")["label"] == 1 and row(df, "syc0903")["text_a"] == "source?"
    # multi-label entries, a Slur-only entry
    assert row(df, "syc0207")["labels"] == "IdentityDirectedAbuse$PersonDirectedAbuse"
    assert row(df, "syc8106")["labels"] == "AffiliationDirectedAbuse$PersonDirectedAbuse"
    assert row(df, "syc8106")["label"] == 0 and row(df, "syc8205")["label"] == 1
    assert row(df, "syc8104")["labels"] == "IdentityDirectedAbuse$Slur" and row(df, "syc8103")["labels"] == "Slur"
    assert set(df.columns) == {"uid", "text_a", "text_b", "label", "split", "labels", "fold", "subreddit"}
    assert df["text_b"].isna().all() and row(df, "syc8103")["subreddit"] == "TumblrInAction"


@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")
def test_cad_static_column_disagreement_and_unmapped_labels(tmp_path):
    """Rows of one entry that differ in a static column are separate instances (R&T's groupby)."""
    pytest.importorskip("sklearn")

    def e(n, info_id, primary, text, context="CurrentContent", **kw):
        return {"split": "train", "info_thread.id": "2", "subreddit_seen": "1", "id": f"cad_{n}", "info_id": info_id,
                "annotation_Primary": primary, "annotation_Context": context, "meta_text": text, **kw}  # fmt: skip

    na = '"NA"'
    extra = [
        # one entry, two annotation rows disagreeing on meta_author: two instances, same text,
        # different labels -> the text is ambiguous and dropped (grouping by info_id would keep IDA$PDA)
        e(90001, "syx0001", HATE, "SYNTHETIC split entry one", meta_author="synth_a"),
        e(90002, "syx0001", "PersonDirectedAbuse", "SYNTHETIC split entry one", meta_author="synth_b"),
        # same, with different texts: two instances of one info_id -> uid gets "#2"
        e(90003, "syx0002", HATE, "SYNTHETIC split entry two, version a"),
        e(90004, "syx0002", HATE, "SYNTHETIC split entry two, version b"),
        # ... and the groupby order of such instances follows the inferred types: 999999999 < 1000000000
        e(90005, "syx0003", "Neutral", "SYNTHETIC version c", na, meta_created_utc="1000000000"),
        e(90006, "syx0003", "Neutral", "SYNTHETIC version d", na, meta_created_utc="999999999"),
    ]
    df, summary, _ = normalise_as_reference(copy_cad(tmp_path, extra), tmp_path)
    assert "syx0001" not in set(df["uid"]) and summary["dropped"]["conflicting_duplicate"] == 4
    assert row(df, "syx0002")["text_a"] == "synthetic split entry two, version a"  # groupby order
    assert row(df, "syx0002#2")["text_a"] == "synthetic split entry two, version b"
    assert row(df, "syx0003")["text_a"] == "synthetic version d"
    assert row(df, "syx0003#2")["text_a"] == "synthetic version c"
    assert any("3 info_id(s)" in w and "disagree on a static column" in w for w in summary["warnings"])

    # where R&T's script would crash, we drop and count instead
    crash = [
        e(90010, "syx0010", "CounterSpeech", "SYNTHETIC counter speech on current content"),
        e(90011, "syx0011", "Neutral", "\\", na),  # empty after the backslash handling
        e(90012, "syx0012", "Neutral", "[linebreak] [linebreak]", na),  # empty after cleaning
        e(90013, "syx0013", "Neutral", "SYNTHETIC carriage &#13; return", na),
        e(90014, "", "Neutral", "SYNTHETIC no id", na),
    ]
    with open(copy_cad(tmp_path / "b", crash) / "cad_v1_1.tsv", "a") as fh:
        fh.write("cad_99999\tonly\tthree\n")  # a row with too few columns
    df2, summary2 = normalise("cad", tmp_path / "b" / "cad")
    check_common(df2, summary2, schema.HSD_LABELS)
    base, _ = normalise("cad", FIX / "cad")
    assert df2.equals(base)  # dropped before the shuffle: the same instances, folds and order
    dropped = {"unmapped_label": 1, "missing_text": 2, "line_break_in_text": 1, "missing_uid": 1, "bad_column_count": 1}
    for reason, n in dropped.items():
        assert summary2["dropped"][reason] == n, reason
    assert any("LABEL_TO_ID" in w and "CounterSpeech" in w for w in summary2["warnings"])


def test_cad_bad_input_errors(tmp_path):
    raw = copy_fixture("cad", tmp_path)
    lines = CAD.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    keep = [i for i, h in enumerate(header) if h != "meta_author"]
    (raw / "cad_v1_1.tsv").write_text(
        "\n".join("\t".join(line.split("\t")[i] for i in keep) for line in lines) + "\n", encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"cad_v1_1\.tsv.*meta_author"):
        normalise("cad", raw)
    # fewer than 10 instances: R&T's StratifiedKFold(10) cannot split them
    (raw / "cad_v1_1.tsv").write_text("\n".join(lines[:8]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"cad_v1_1\.tsv.*annotation_Primary.*10 stratified folds"):
        normalise("cad", raw)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("Fish &amp; Chips &gt; &#39;all&#39;", "fish & chips > 'all'"),
        ("Mail Me.Please@Example.COM now", "mail [EMAIL] now"),
        ("see [the docs](https://example.org/a_(b)) ok", "see the docs) ok"),  # R&T's lazy (.*?)\)
        ("[msg](/message/compose?to=x) and [sub](/r/test/x)", "msg and sub"),
        ("(https://example.com/x) http://a.b/c?d=1]", "([URL]) [URL]]"),
        ("go to www.example.org/page, now", "go to [URL] now"),
        ("/u/Some_User and /r/AskReddit!", "[USER] and [USER]!"),
        ("#BlackCatsRule and #123 and #", "black cats rule and 123 and #"),
        ("a\nb\tc[linebreak]d\xa0e\u200df", "a b c d e f"),
        ("trailing [linebreak]", "trailing  "),  # nothing stripped here
        ("emoji 😀 kept", "emoji 😀 kept"),
    ],
)
def test_clean_text_rules(raw, want):
    assert clean_text(raw, "cad", keep_emojis=True) == want
    assert rt_clean_text(raw, "cad", True) == want


def test_clean_text_other_datasets_follow_rt():
    text = "@User_1 look http://t.co/x) #NoWay"
    assert clean_text(text, "founta", True) == rt_clean_text(text, "founta", True) == "[USER] look [URL]) no way"
