"""Normalisers of the five real datasets, run on the raw-format fixtures (tests/fixtures)."""

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from ftft.cli import main
from ftft.data import schema
from ftft.data.clean import clean_text
from ftft.data.prepare import normalise
from ftft.data.sources import SOURCES
from ftft.errors import DataError

FIX = Path(__file__).parent / "fixtures"
DYNAHATE_CSV = "Dynamically Generated Hate Dataset v0.2.3.csv"
NLI = {"entailment": 0, "neutral": 1, "contradiction": 2}
ANLI = {"e": 0, "n": 1, "c": 2}


def copy_fixture(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(FIX / name, dest)
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)  # fixtures are read-only
    return dest


def tsv_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_common(df, summary, label_names):
    schema.check(df, label_names, summary["source"])
    assert summary["label_names"] == label_names
    assert summary["rows_out"] == len(df)
    assert summary["rows_in"] == summary["rows_out"] + sum(summary["dropped"].values())
    assert summary["splits"] == {k: int(v) for k, v in sorted(df["split"].value_counts().items())}
    assert df["uid"].is_unique


def row(df, uid):
    hit = df[df["uid"] == uid]
    assert len(hit) == 1, uid
    return hit.iloc[0]


RAW = {  # source: (split, raw file, label key, label map) of every labelled file
    "mnli": [(split, name, "gold_label", NLI) for split, name in SOURCES["mnli"].files.items()],
    "wanli": [(split, f"{split}.jsonl", "gold", NLI) for split in ("train", "test")],
    "anli": [(f"{p}_r{r}", f"R{r}/{p}.jsonl", "label", ANLI) for r in (1, 2, 3) for p in ("dev", "test")],
}


@pytest.mark.parametrize("source", RAW)
def test_nli_fixture_rows_and_labels_per_split(source):
    df, summary = normalise(source, FIX / source)
    check_common(df, summary, schema.NLI_LABELS)
    for split, name, key, labels in RAW[source]:
        raw = (tsv_rows if name.endswith(".tsv") else jsonl_rows)(FIX / source / name)
        assert Counter(df.loc[df["split"] == split, "label"]) == Counter(labels[r[key]] for r in raw), split
        if source == "wanli":
            assert set(df.loc[df["split"] == split, "uid"]) == {str(r["id"]) for r in raw}


def test_mnli_fixture():
    df, summary = normalise("mnli", FIX / "mnli")
    # unlabelled test files are skipped, and counted
    assert summary["skipped"] == {
        f: len(tsv_rows(FIX / "mnli" / f)) for f in ("test_matched.tsv", "test_mismatched.tsv")
    }
    assert summary["dropped"] == {}
    # real rows, verbatim (GLUE train index 0 keeps its trailing space)
    r = row(df, "train-31193n")
    assert r["label"] == NLI["neutral"] and r["genre"] == "government"
    assert r["text_a"].startswith("Conceptually cream skimming has two basic dimensions")
    assert r["text_b"] == "Product and geography are what make cream skimming work. "
    r = row(df, "validation_matched-63735n")
    assert r["text_a"] == "The new rights are nice enough" and r["label"] == NLI["neutral"]
    # literal quotes survive (QUOTE_NONE)
    quoted = df[df["prompt_id"] == "999001"]
    assert len(quoted) >= 1 and quoted["text_a"].str.contains('"Stay here,"', regex=False).any()
    # documented full sizes differ from the fixture: warnings, not errors
    assert any("validation_matched" in w and "9815" in w for w in summary["warnings"])


def test_wanli_fixture_by_the_cli(tmp_path):
    out, summ = tmp_path / "wanli.parquet", tmp_path / "wanli.summary.json"
    rc = main(["prepare", "--source", "wanli", "--raw", str(FIX / "wanli"), "--out", str(out), "--summary", str(summ)])
    df, meta = schema.read(out)
    summary = json.loads(summ.read_text())
    assert rc == 0 and meta == {"label_names": schema.NLI_LABELS, "source": "wanli"}
    assert list(df.columns[:5]) == ["uid", "text_a", "text_b", "label", "split"] and str(df["label"].dtype) == "int64"
    assert summary["expected"] == {"train": 102885, "test": 5000} and len(summary["warnings"]) == 2
    r = row(df, "116646")
    assert r["split"] == "train" and r["label"] == NLI["entailment"] and r["pair_id"] == "47695"
    assert r["text_b"] == "The policy encourages the development of alternative energy sources."
    r = row(df, "322151")  # test file: pairID is an int there, coerced to str
    assert r["split"] == "test" and r["label"] == NLI["neutral"] and r["pair_id"] == "299582"
    assert set(df["genre"]) == {"generated", "generated_revised"}


def test_anli_fixture():
    df, summary = normalise("anli", FIX / "anli")
    assert (df["round"] == df["split"].str[-1].astype(int)).all()
    first = jsonl_rows(FIX / "anli" / "R1" / "dev.jsonl")[0]
    r = row(df, first["uid"])
    assert r["text_a"] == first["context"] and "P\u0101\u1e47ini" in r["text_a"]  # \u escapes decoded
    assert r["text_b"] == first["hypothesis"] and r["label"] == NLI["contradiction"]
    assert not any(s.startswith("train") for s in summary["splits"])  # no train fixtures
    assert any("train_r1" in w and "missing" in w for w in summary["warnings"])


def test_dynahate_fixture():
    df, summary = normalise("dynahate", FIX / "dynahate")
    check_common(df, summary, schema.HSD_LABELS)
    with open(FIX / "dynahate" / DYNAHATE_CSV, encoding="utf-8", newline="") as fh:
        raw = list(csv.DictReader(fh))
    assert len(df) == len(raw) and summary["dropped"] == {}
    want = Counter(f"{r['split']}_r{r['round.base']}_{r['level']}" for r in raw)
    assert summary["splits"] == dict(sorted(want.items()))
    assert all(summary["splits"].get(f"test_r{r}_{lv}", 0) for r in (2, 3, 4) for lv in ("original", "perturbation"))
    by_uid = {r["acl.id"]: r for r in raw}
    # texts cleaned with the CAD cleaning (Ramponi & Tonelli's clean_text, "cad", emojis kept)
    assert df.set_index("uid")["text_a"].to_dict() == {u: clean_text(r["text"], "cad", True) for u, r in by_uid.items()}
    assert df.set_index("uid")["label"].to_dict() == {
        u: {"nothate": 0, "hate": 1}[r["label"]] for u, r in by_uid.items()
    }
    assert row(df, "acl9873")["text_a"].startswith('"destruction" became')  # doubled quotes undone, lower-cased
    assert by_uid["acl39377"]["text"].endswith("Natives.\n")  # embedded newline -> space
    assert row(df, "acl39377")["text_a"] == (
        "mexico's discount version of al qaeda that is zapatistas, that's what you get when you colonize a "
        "country but don't kill its natives. "
    )
    assert row(df, "acl23453")["text_a"].endswith("impulses.  many are professional athletes or convicts.")
    assert "i\u201a\u00e4\u00f2d" in row(df, "acl40068")["text_a"]  # mojibake kept, lower-cased
    assert row(df, "acl32662")["text_a"].endswith("let that happen. believe women my ass")  # hashtag segmented
    assert not df["text_a"].str.contains("\n").any() and (df["text_a"] == df["text_a"].str.lower()).all()
    assert row(df, "acl1")["label"] == 1 and row(df, "acl1")["split"] == "train_r1_original"
    assert pd.isna(row(df, "acl1")["matched_uid"])
    r2a = df[df["uid"] == "acl13446"].iloc[0]  # round '2a' -> base round 2, original
    assert r2a["round"] == 2 and r2a["level"] == "original" and r2a["matched_uid"] == "acl13447"


def malformed(source: str, raw: Path) -> tuple[str, list[str], dict[str, int]]:
    """Bad lines to append to one raw file of ``source``, and the drops they must give."""
    if source == "mnli":
        base, header = tsv_rows(raw / "dev_matched.tsv")[0], (raw / "dev_matched.tsv").read_text().split("\n")[0]
        rows = [{**base, "pairID": "777001n", "gold_label": "-"}, {**base, "pairID": "777002n", "gold_label": "maybe"},
                {**base, "pairID": "777003n", "sentence2": "  "}]  # fmt: skip
        lines = ["\t".join(r[h] for h in header.split("\t")) for r in rows]
        lines += ["\t".join([*base.values(), "extra"]), "\t".join(list(base.values())[:5])]  # too many / few fields
        return "dev_matched.tsv", lines, {"no_gold_label": 1, "unknown_label": 1, "missing_text": 1,
                                          "bad_column_count": 2}  # fmt: skip
    if source == "anli":
        good = jsonl_rows(raw / "R2" / "test.jsonl")[0]  # the third line: a duplicate uid
        bad = [{**good, "uid": "x1", "label": "-"}, {**good, "uid": "x2", "hypothesis": ""}, good]
        return "R2/test.jsonl", [*map(json.dumps, bad), "not json"], {"unknown_label": 1, "missing_text": 1,
                                                                      "duplicate_uid": 1, "bad_json": 1}  # fmt: skip
    if source == "wanli":
        return "test.jsonl", [
            '{"id":1,"premise":"a","hypothesis":"b","gold":"maybe","genre":"generated","pairID":1}',
            '{"id":2,"premise":"a","hypothesis":"b","gold":"neu',  # broken line
            '{"id":3,"premise":"","hypothesis":"b","gold":"neutral","genre":"generated","pairID":1}',
            '{"id":4,"hypothesis":"b","gold":"neutral"}',
        ], {"unknown_label": 1, "bad_json": 1, "missing_text": 1, "missing_field": 1}  # fmt: skip
    return DYNAHATE_CSV, [
        '"9","acl900001",9,"some text","maybe","none","none","original","test",2,"x","2a","acl900002"',
        '"10","acl900002",10,"some text","hate","none","none","sideways","test",2,"x","2b","acl900001"',
        '"11","acl900003",11,"","hate","none","none","original","test",2,"x","2a",NA',
        '"12","acl900004",12,"short row"',
    ], {"unknown_label": 1, "bad_level": 1, "missing_text": 1, "bad_column_count": 1}  # fmt: skip


@pytest.mark.parametrize("source", ["mnli", "wanli", "anli", "dynahate"])
def test_malformed_rows_are_dropped_and_counted(tmp_path, source):
    raw = copy_fixture(source, tmp_path)
    name, lines, dropped = malformed(source, raw)
    with open(raw / name, "a") as fh:
        fh.write("\n".join(lines) + "\n")
    df, summary = normalise(source, raw)
    check_common(df, summary, schema.HSD_LABELS if source == "dynahate" else schema.NLI_LABELS)
    assert summary["dropped"] == dropped and summary["splits"] == normalise(source, FIX / source)[1]["splits"]


def test_prepare_missing_raw_file_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="train.tsv"):
        normalise("mnli", tmp_path / "empty")
    with pytest.raises(DataError, match="required folder 'R1' not found"):
        normalise("anli", tmp_path / "empty")
    with pytest.raises(DataError, match="unknown source"):
        normalise("nosuch", tmp_path / "empty")
    argv = ["--raw", str(tmp_path / "empty"), "--out", str(tmp_path / "x.parquet"), "--summary", str(tmp_path / "x")]
    assert main(["prepare", "--source", "cad", *argv]) == 1 and not (tmp_path / "x.parquet").exists()


def test_cad_sizes_and_members_are_recorded_then_checked(tmp_path):
    """CAD has no published hash or sizes: the first preparation records split / fold sizes and the archive's
    members; a later preparation that differs (or members other than the authors' published tree) warns."""
    raw = copy_fixture("cad", tmp_path)
    argv = ["prepare", "--source", "cad", "--raw", str(raw), "--out", str(tmp_path / "c.parquet")]
    summary = tmp_path / "c.json"

    def run() -> list[str]:
        assert main([*argv, "--summary", str(summary)]) == 0
        return [w for w in json.loads(summary.read_text())["warnings"] if "differ from" in w]

    assert run() == []
    rec = json.loads((raw / "prepared.json").read_text())
    df, _ = schema.read(tmp_path / "c.parquet")
    assert rec["splits"] == df["split"].value_counts().to_dict() and sum(rec["folds"].values()) == len(df)
    assert run() == []  # the same data again: nothing to say
    (raw / "DONE.json").write_text(json.dumps({"extracted": {"data.zip": ["data/cad_v1_1.tsv"]}}))
    lines = (raw / "cad_v1_1.tsv").read_text().splitlines(keepends=True)
    (raw / "cad_v1_1.tsv").write_text("".join(lines[:-20]))  # a later download with fewer rows
    warned = " ".join(run())
    for part in ("splits", "members", "prepared.json", "ftft.data.cad.MEMBERS", "cad_codebook_april2021.pdf"):
        assert part in warned, part
    assert json.loads((raw / "prepared.json").read_text()) == rec  # the first record stays
