"""MultiNLI, GLUE release (``MNLI/{train,dev_matched,dev_mismatched}.tsv``, read with ``QUOTE_NONE``).

uid = ``{split}-{pairID}``; texts verbatim; ``gold_label`` ``-`` is ``no_gold_label``; the unlabelled test files
are counted in ``skipped``. Extra columns: genre, prompt_id, pair_id.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from .prepare import Report, drop_missing_text, find_file, map_labels, read_delimited
from .schema import NLI_LABELS

LABEL_NAMES = NLI_LABELS
FILES = {"train": "train.tsv", "validation_matched": "dev_matched.tsv", "validation_mismatched": "dev_mismatched.tsv"}
UNLABELLED = ("test_matched.tsv", "test_mismatched.tsv")
SPLIT_NAMES = tuple(FILES)
EXPECTED = {"train": 392_702, "validation_matched": 9_815, "validation_mismatched": 9_832}
NEEDED = ("pairID", "promptID", "genre", "sentence1", "sentence2", "gold_label")


def load_file(path: Path, split: str, report: Report) -> pd.DataFrame:
    parts = []
    for chunk in read_delimited(path, report, sep="\t", quoting=csv.QUOTE_NONE, needed=NEEDED):
        chunk = report.filter(
            chunk, chunk["gold_label"] == "-", "no_gold_label", lambda r: f"{path.name}: pairID {r['pairID']}"
        )
        chunk = map_labels(chunk, "gold_label", {n: i for i, n in enumerate(LABEL_NAMES)}, report, path.name)
        chunk = report.filter(
            chunk, chunk["pairID"].str.strip() == "", "missing_uid", lambda r: f"{path.name}: empty pairID"
        )
        uid = split + "-" + chunk["pairID"].str.strip()
        parts.append(pd.DataFrame({"uid": uid, "text_a": chunk["sentence1"], "text_b": chunk["sentence2"],
                                   "label": chunk["label"], "split": split, "genre": chunk["genre"],
                                   "prompt_id": chunk["promptID"], "pair_id": chunk["pairID"]}))  # fmt: skip
    return drop_missing_text(pd.concat(parts, ignore_index=True), report, path.name)


def load(raw: Path, report: Report) -> pd.DataFrame:
    frames = [load_file(find_file(raw, name), split, report) for split, name in FILES.items()]
    for name in UNLABELLED:
        path = find_file(raw, name, required=False)
        if path is not None:
            with open(path, "rb") as fh:  # data lines, not the header
                report.skipped[name] = max(0, sum(1 for line in fh if line.strip()) - 1)
    return pd.concat(frames, ignore_index=True)
