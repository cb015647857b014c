"""DynaHate v0.2.3 (Vidgen et al., 2021): ``Dynamically Generated Hate Dataset v0.2.3.csv``.

* The CSV (R ``write.csv`` style: quoted text, doubled quotes, embedded newlines) is read with
  pandas' CSV defaults plus ``dtype=str``, ``keep_default_na=False`` (so ``NA`` in
  ``acl.id.matched`` stays the string ``NA`` and ``round`` keeps ``2a``-style values).
* The first, unnamed column is a garbled row index in the file's tail: ignored. ``uid`` =
  ``acl.id``.
* ``label``: nothate=0, hate=1 (anything else -> ``unknown_label``). ``text_b`` null.
* ``text_a`` = ``text`` cleaned with the function and options of the CAD training texts:
  ``ftft.data.clean.clean_text(text, "cad", keep_emojis=True)`` (Ramponi & Tonelli's
  cleaning: HTML unescape, lower-case, e-mails/URLs/``/u/``/``/r/`` masked, hashtags segmented,
  newlines/tabs -> spaces; see ``ftft.data.clean``). **Assumption:** the official FTFT code
  evaluates on pre-processed ``dynahate/r{2,3,4}_{original,perturbation}.test`` TSVs whose
  cleaning is not published; cleaning train and OOD texts alike is our reading (the
  alternative is the raw ``text``, or R&T's non-Reddit rules with ``@user`` masking). Unlike
  CAD's, the texts are not right-stripped (that comes from R&T's file round trips, not their
  cleaning). A text empty after cleaning -> ``missing_text``.
* Splits: ``{split}_r{round.base}_{level}`` for every row, e.g. ``test_r2_original``,
  ``test_r3_perturbation``, ``train_r1_original``, ``dev_r4_perturbation``. The paper's six
  OOD sets are ``test_r{2,3,4}_{original,perturbation}``. The round comes from ``round.base``
  (``round`` = ``2a``/``2b`` means round 2, original/perturbation), the set from ``level``.
  Rows whose ``round.base`` is not an integer or whose ``level``/``split`` is not a known value
  are dropped as ``bad_round`` / ``bad_level`` / ``bad_split``.
* Extra columns: ``round`` (int, = round.base), ``level``, ``type``, ``target``,
  ``matched_uid`` (``acl.id.matched``, null for ``NA``).
* No documented exact full size for v0.2.3 (about 41k rows): no size check.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DataError
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
    chunks = list(read_delimited(path, report, sep=",", chunksize=None))
    df = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; have {list(df.columns)}")
    df = df[list(NEEDED)].copy()

    def drop(mask, reason):
        nonlocal df
        if mask.any():
            report.drop(reason, int(mask.sum()), f"{path.name}: acl.id {df.loc[mask, 'acl.id'].iloc[0]}")
        df = df[~mask]

    drop(df["acl.id"].str.strip() == "", "missing_uid")
    drop(~df["round.base"].str.strip().str.fullmatch(r"\d+"), "bad_round")
    drop(~df["level"].isin(LEVELS), "bad_level")
    drop(~df["split"].isin(SPLITS), "bad_split")
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
