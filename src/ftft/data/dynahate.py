"""DynaHate v0.2.3 (one CSV): uid = ``acl.id``; split ``{split}_r{round.base}_{level}`` (the paper's OOD sets are
``test_r{2,3,4}_{original,perturbation}``); ``text_a`` cleaned like CAD's training texts (an assumption:
docs/FIDELITY.md, 14). Extra columns round, level, type, target, matched_uid.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .cad import CLEAN_DATASET, KEEP_EMOJIS
from .clean import clean_text
from .prepare import Report, drop_missing_text, find_file, map_labels, read_delimited
from .schema import HSD_LABELS

LABEL_NAMES = HSD_LABELS
FILE = "Dynamically Generated Hate Dataset v0.2.3.csv"
EXPECTED: dict[str, int] = {}
LEVELS = ("original", "perturbation")
SPLITS = ("train", "dev", "test")
SPLIT_NAMES = tuple(f"{s}_r{r}_{lv}" for s in SPLITS for r in (1, 2, 3, 4) for lv in LEVELS)
NEEDED = ("acl.id", "text", "label", "type", "target", "level", "split", "round.base", "acl.id.matched")


def load(raw: Path, report: Report) -> pd.DataFrame:
    path = find_file(raw, FILE)
    (df,) = read_delimited(path, report, sep=",", chunksize=None, needed=NEEDED)

    def where(row):
        return f"{path.name}: acl.id {row['acl.id']}"

    df = report.filter(df, df["acl.id"].str.strip() == "", "missing_uid", where)
    df = report.filter(df, ~df["round.base"].str.strip().str.fullmatch(r"\d+"), "bad_round", where)
    df = report.filter(df, ~df["level"].isin(LEVELS), "bad_level", where)
    df = report.filter(df, ~df["split"].isin(SPLITS), "bad_split", where)
    df = map_labels(df, "label", {n: i for i, n in enumerate(LABEL_NAMES)}, report, path.name)
    rnd = df["round.base"].str.strip().astype("int64")
    out = pd.DataFrame(
        {
            "uid": df["acl.id"].str.strip(),
            "text_a": df["text"].map(lambda t: clean_text(t, CLEAN_DATASET, KEEP_EMOJIS)),
            "text_b": None,
            "label": df["label"],
            "split": df["split"] + "_r" + rnd.astype(str) + "_" + df["level"],
            "round": rnd,
            "level": df["level"],
            "type": df["type"],
            "target": df["target"],
            "matched_uid": df["acl.id.matched"].where(~df["acl.id.matched"].isin(["NA", ""]), None),
        }
    )
    return drop_missing_text(out, report, path.name, cols=("text_a",))
