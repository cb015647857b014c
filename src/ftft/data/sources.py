"""The built-in sources as data (``SOURCES``), read by one reader (``load``); CAD, rebuilt as R&T's script does,
brings its own reader (``cad.load``). Split names, files and extra columns per source: docs/ARCHITECTURE.md."""

import csv
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import cad
from .clean import clean_text
from .prepare import Report, drop_missing_text, find_file, map_labels, read_delimited
from .schema import HSD_LABELS, NLI_LABELS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """``files``: split -> file below the raw folder (``R1/x``: in the shallowest folder ``R1``, and optional);
    ``delimited``: ``read_delimited``'s options (else JSON lines). ``columns``: output column -> source column or
    key, or a function of (the rows read, split); ``uid``, ``label``: source columns or keys; ``drops``: (reason,
    column, test of the column) applied in order after a missing uid, before the label map."""

    labels: list[str]
    splits: tuple[str, ...]
    expected: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    uid: str = ""
    label: str = ""
    label_map: dict = field(default_factory=dict)
    columns: dict[str, str | Callable] = field(default_factory=dict)
    delimited: dict = field(default_factory=dict)
    drops: tuple = ()
    unlabelled: tuple[str, ...] = ()  # files only counted in ``skipped``
    reader: Callable | None = None  # a source read by its own code
    members: dict = field(default_factory=dict)  # the published archive members (prepare.check_recorded)


NLI = {n: i for i, n in enumerate(NLI_LABELS)}
MNLI_FILES = dict(train="train.tsv", validation_matched="dev_matched.tsv", validation_mismatched="dev_mismatched.tsv")
ANLI_SPLITS = tuple(f"{p}_r{r}" for p in ("train", "dev", "test") for r in (1, 2, 3))
ANLI_FILES = {f"{p}_r{r}": f"R{r}/{p}.jsonl" for r in (1, 2, 3) for p in ("train", "dev", "test")}  # rows by round
MNLI_NEEDED = ("pairID", "promptID", "genre", "sentence1", "sentence2", "gold_label")
LEVELS, SPLITS = ("original", "perturbation"), ("train", "dev", "test")
DYNAHATE_NEEDED = ("acl.id", "text", "label", "type", "target", "level", "split", "round.base", "acl.id.matched")


def dynahate_round(df: pd.DataFrame) -> pd.Series:
    return df["round.base"].str.strip().astype("int64")


SOURCES = {
    # MultiNLI, GLUE release (read with QUOTE_NONE): uid = {split}-{pairID}; gold_label '-' is no_gold_label
    "mnli": Source(
        labels=NLI_LABELS,
        splits=tuple(MNLI_FILES),
        expected={"train": 392_702, "validation_matched": 9_815, "validation_mismatched": 9_832},
        files=MNLI_FILES,
        unlabelled=("test_matched.tsv", "test_mismatched.tsv"),
        delimited={"sep": "\t", "quoting": csv.QUOTE_NONE, "needed": MNLI_NEEDED},
        uid="pairID",
        drops=(("no_gold_label", "gold_label", lambda c: c == "-"),),
        label="gold_label",
        label_map=NLI,
        columns={
            "uid": lambda d, s: s + "-" + d["pairID"].str.strip(),
            "text_a": "sentence1",
            "text_b": "sentence2",
            "genre": "genre",
            "prompt_id": "promptID",
            "pair_id": "pairID",
        },
    ),
    # WANLI
    "wanli": Source(
        labels=NLI_LABELS,
        splits=("train", "test"),
        expected={"train": 102_885, "test": 5_000},
        files={"train": "train.jsonl", "test": "test.jsonl"},
        uid="id",
        label="gold",
        label_map=NLI,
        columns={"uid": "id", "text_a": "premise", "text_b": "hypothesis", "genre": "genre", "pair_id": "pairID"},
    ),
    # Adversarial NLI v1.0: R{1,2,3}/{train,dev,test}.jsonl -> splits {part}_r{round} (a missing file: a missing split)
    "anli": Source(
        labels=NLI_LABELS,
        splits=ANLI_SPLITS,
        expected=dict(
            zip(ANLI_SPLITS, (16_946, 45_460, 100_459, 1_000, 1_000, 1_200, 1_000, 1_000, 1_200), strict=True)
        ),
        files=ANLI_FILES,
        uid="uid",
        label="label",
        label_map={"e": 0, "n": 1, "c": 2, **NLI},
        columns={
            "uid": "uid",
            "text_a": "context",
            "text_b": "hypothesis",
            "round": lambda d, s: d["split"].str[-1].astype("int64"),
            "genre": "genre",
            "tag": "tag",
        },
    ),
    "cad": Source(labels=HSD_LABELS, splits=cad.SPLIT_NAMES, reader=cad.load, members=cad.MEMBERS),
    # DynaHate v0.2.3: split {split}_r{round.base}_{level}; text_a cleaned like CAD's (docs/FIDELITY.md, 14)
    "dynahate": Source(
        labels=HSD_LABELS,
        splits=tuple(f"{s}_r{r}_{lv}" for s in SPLITS for r in (1, 2, 3, 4) for lv in LEVELS),
        files={"": "Dynamically Generated Hate Dataset v0.2.3.csv"},
        delimited={"sep": ",", "chunksize": None, "needed": DYNAHATE_NEEDED},
        uid="acl.id",
        drops=(
            ("bad_round", "round.base", lambda c: ~c.str.strip().str.fullmatch(r"\d+")),
            ("bad_level", "level", lambda c: ~c.isin(LEVELS)),
            ("bad_split", "split", lambda c: ~c.isin(SPLITS)),
        ),
        label="label",
        label_map={n: i for i, n in enumerate(HSD_LABELS)},
        columns={
            "uid": lambda d, s: d["acl.id"].str.strip(),
            "text_a": lambda d, s: d["text"].map(lambda t: clean_text(t, cad.CLEAN_DATASET, cad.KEEP_EMOJIS)),
            "split": lambda d, s: d["split"] + "_r" + dynahate_round(d).astype(str) + "_" + d["level"],
            "round": lambda d, s: dynahate_round(d),
            "level": "level",
            "type": "type",
            "target": "target",
            "matched_uid": lambda d, s: d["acl.id.matched"].where(~d["acl.id.matched"].isin(["NA", ""]), None),
        },
    ),
}


def read_table(src: Source, path: Path, split: str, report: Report) -> pd.DataFrame:
    """A delimited file's rows with the output columns (uid, text_a, text_b, label, split, then the extra ones)."""

    def where(row):
        return f"{path.name}: {src.uid} {row[src.uid]}"

    cols = {"text_b": lambda d, s: None, "label": "label", "split": lambda d, s: s, **src.columns}
    order = dict.fromkeys(["uid", "text_a", "text_b", "label", "split", *src.columns])
    parts = []
    for chunk in read_delimited(path, report, **src.delimited):
        for reason, col, test in (("missing_uid", src.uid, lambda c: c.str.strip() == ""), *src.drops):
            chunk = report.filter(chunk, test(chunk[col]), reason, where)
        d = map_labels(chunk, src.label, src.label_map, report, path.name)
        parts.append(pd.DataFrame({c: cols[c](d, split) if callable(cols[c]) else d[cols[c]] for c in order}))
    texts = [c for c in ("text_a", "text_b") if c in src.columns]
    return drop_missing_text(pd.concat(parts, ignore_index=True), report, path.name, cols=texts)


def blank(value) -> bool:
    return value is None or (isinstance(value, float) and value != value) or str(value).strip() == ""


def jsonl_rows(src: Source, path: Path, split: str, report: Report, where_prefix: str) -> list[dict]:
    """Rows of a JSON-lines file; bad lines are dropped and counted by reason (first line of each: file:line)."""
    keys = (src.uid, src.columns["text_a"], src.columns["text_b"], src.label)
    extra = {c: k for c, k in src.columns.items() if c not in ("uid", "text_a", "text_b") and isinstance(k, str)}
    rows = []
    with open(path, encoding="utf-8") as fh:  # not splitlines(): U+2028 may stand inside a JSON string
        lines = list(fh)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        report.rows_in += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            report.drop("bad_json", example=f"{path.name}:{lineno}: {exc}")
            continue
        if not isinstance(obj, dict):
            report.drop("bad_json", example=f"{path.name}:{lineno}: not an object")
            continue
        where = f"{where_prefix}{path.name}:{lineno}"
        if missing := [k for k in keys if obj.get(k) is None]:
            report.drop("missing_field", example=f"{where}: missing {missing}")
            continue
        if blank(obj[keys[1]]) or blank(obj[keys[2]]):
            report.drop("missing_text", example=f"{where}: {src.uid} {obj[src.uid]}")
            continue
        label = src.label_map.get(str(obj[src.label]).strip())
        if label is None:
            report.drop("unknown_label", example=f"{where}: {src.label} {obj[src.label]!r}")
            continue
        row = {"uid": str(obj[src.uid]), "text_a": str(obj[keys[1]]), "text_b": str(obj[keys[2]]), "label": label}
        rows.append(row | {"split": split} | {c: None if obj.get(k) is None else str(obj[k]) for c, k in extra.items()})
    return rows


def load(name: str, raw: Path, report: Report) -> pd.DataFrame:
    """Source ``name`` from the raw folder, every row read counted in ``report`` (read, dropped or skipped)."""
    src = SOURCES[name]
    if src.reader:
        return src.reader(raw, report)
    parts, rows = [], []
    for split, file in src.files.items():
        folder, _, base = file.rpartition("/")
        if not folder:
            path = find_file(raw, file)
        elif not (path := find_file(raw, folder, folder=True) / base).is_file():
            log.info("%s not found: split '%s' is absent", path, split)
            continue
        if src.delimited:
            parts.append(read_table(src, path, split, report))
        else:
            rows += jsonl_rows(src, path, split, report, f"{folder}/" if folder else "")
    for file in src.unlabelled:
        if (path := find_file(raw, file, required=False)) is not None:
            with open(path, "rb") as fh:  # data lines, not the header
                report.skipped[file] = max(0, sum(1 for line in fh if line.strip()) - 1)
    if src.delimited:
        return pd.concat(parts, ignore_index=True)
    df = pd.DataFrame(rows, columns=list(dict.fromkeys(["uid", "text_a", "text_b", "label", "split", *src.columns])))
    for col, make in src.columns.items():
        if callable(make):
            df[col] = make(df, "")
    return df
