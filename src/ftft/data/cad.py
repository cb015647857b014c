"""CAD, the Contextual Abuse Dataset v1.1 (Vidgen et al., 2021), as a binary HSD task.

Source: Zenodo 4881008 ``data.zip`` -> ``data/cad_v1_1.tsv`` (one row per *annotation*).
The paper (§3) frames CAD "following Ramponi & Tonelli (2022)": identity-directed abuse is
hateful, everything else is not. This module rebuilds that binary task from the annotation
file with Ramponi & Tonelli's preprocessing (their ``create_dataset_file`` for ``cad``):

1. read the TSV with ``quoting=csv.QUOTE_NONE``, ``keep_default_na=False`` (no quoting in the
   file; missing values are the literal 4-character string ``"NA"``), all columns as strings;
2. keep ``split`` in {train, dev, test} (others -> dropped as ``excluded_split``);
3. keep ``annotation_Context`` in {``CurrentContent``, ``"NA"``}: annotations that need the
   previous content are removed (-> ``needs_previous_content``); an entry whose only
   annotations needed previous content disappears with them;
4. drop row ``id == cad_11730`` (an annotation with empty ``meta_text``; -> ``known_bad_row``);
5. merge the remaining annotation rows of one entry (``info_id``) into one instance whose
   ``labels`` column is the sorted set of primary labels joined by ``$`` (the merged rows are
   counted as ``merged_annotation_rows``, so the row accounting still adds up);
6. ``label`` = hate (1) iff ``IdentityDirectedAbuse`` is in the set, else nothate (0).

Choices beyond that pipeline (documented here because they change what a model sees):

* Splits are CAD's own ``split`` column (``train``, ``dev``, ``test``): FTFT trains on CAD
  train and uses CAD test as the ID test set. Ramponi & Tonelli re-split their merged data by
  stratified 10-fold CV and also dedup identical texts (dropping conflicting duplicates);
  neither is done here (duplicate texts stay, each with its own entry id).
* Grouping is by ``info_id`` only (R&T group by all static entry columns, which is the same
  thing when the entry columns agree; a disagreement is reported as a warning).
* ``text_a`` = ``meta_text`` with ``[linebreak]`` replaced by a newline; nothing else is
  changed (no lower-casing, URL/user masking or markdown unescaping: the tokenizer sees the
  Reddit text). ``text_b`` is null. An empty text after that -> ``missing_text``.
* ``uid`` = ``info_id`` (``<linkid>-post`` / ``<linkid>-title`` / comment id).
* Unknown ``annotation_Primary`` values -> ``unknown_label`` (row-level, before merging).
* Extra columns: ``labels`` (the ``$``-joined primary labels), ``subreddit``,
  ``subreddit_seen``.
* Expected sizes are the authors' per-entry split files (13,584 / 4,526 / 5,307 entries); the
  Ramponi & Tonelli filter (step 3) removes some entries, so real data is a little smaller and
  the summary carries a (harmless) warning about it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .prepare import Report, drop_missing_text, find_file, read_delimited
from .schema import HSD_LABELS

LABEL_NAMES = HSD_LABELS
FILE = "cad_v1_1.tsv"
EXPECTED = {"train": 13_584, "dev": 4_526, "test": 5_307}
KEEP_SPLITS = ("train", "dev", "test")
KEEP_CONTEXT = ("CurrentContent", '"NA"')
BAD_IDS = ("cad_11730",)
PRIMARY = (
    "Neutral",
    "IdentityDirectedAbuse",
    "AffiliationDirectedAbuse",
    "PersonDirectedAbuse",
    "CounterSpeech",
    "Slur",
)
HATEFUL = "IdentityDirectedAbuse"
NEEDED = (
    "id",
    "info_id",
    "info_subreddit",
    "annotation_Primary",
    "annotation_Context",
    "split",
    "subreddit_seen",
    "meta_text",
)


def load(raw: Path, report: Report) -> pd.DataFrame:
    path = find_file(raw, FILE)
    chunks = list(read_delimited(path, report, sep="\t", quoting=csv.QUOTE_NONE, chunksize=None))
    df = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; have {list(df.columns)}")
    df = df[list(NEEDED)]

    def drop(mask, reason):
        nonlocal df
        if mask.any():
            report.drop(reason, int(mask.sum()), f"{path.name}: id {df.loc[mask, 'id'].iloc[0]}")
        df = df[~mask]

    drop(~df["split"].isin(KEEP_SPLITS), "excluded_split")
    drop(~df["annotation_Context"].isin(KEEP_CONTEXT), "needs_previous_content")
    drop(df["id"].isin(BAD_IDS), "known_bad_row")
    drop(~df["annotation_Primary"].isin(PRIMARY), "unknown_label")
    drop(df["info_id"].str.strip() == "", "missing_uid")

    groups = df.groupby("info_id", sort=False)
    entries = groups.agg(
        split=("split", "first"),
        n_split=("split", "nunique"),
        meta_text=("meta_text", "first"),
        n_text=("meta_text", "nunique"),
        subreddit=("info_subreddit", "first"),
        subreddit_seen=("subreddit_seen", "first"),
        labels=("annotation_Primary", lambda s: "$".join(sorted(set(s)))),
    ).reset_index()
    report.drop("merged_annotation_rows", len(df) - len(entries), None)
    bad = entries[(entries["n_split"] > 1) | (entries["n_text"] > 1)]
    if len(bad):
        report.warn(
            f"{len(bad)} entries have annotation rows that disagree on split/meta_text (first kept), e.g. {bad['info_id'].iloc[0]}"
        )
    out = pd.DataFrame(
        {
            "uid": entries["info_id"],
            "text_a": entries["meta_text"].str.replace("[linebreak]", "\n", regex=False),
            "text_b": None,
            "label": entries["labels"].str.split("$", regex=False).map(lambda s: int(HATEFUL in s)).astype("int64"),
            "split": entries["split"],
            "labels": entries["labels"],
            "subreddit": entries["subreddit"],
            "subreddit_seen": entries["subreddit_seen"],
        }
    )
    return drop_missing_text(out, report, path.name, cols=("text_a",))
