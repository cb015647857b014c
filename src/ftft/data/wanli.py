"""WANLI (``train.jsonl``, ``test.jsonl``): uid = id, label from ``gold``; extra columns genre, pair_id."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .prepare import Report, find_file, nli_jsonl_rows
from .schema import NLI_LABELS

LABEL_NAMES = NLI_LABELS
FILES = {"train": "train.jsonl", "test": "test.jsonl"}
SPLIT_NAMES = tuple(FILES)
EXPECTED = {"train": 102_885, "test": 5_000}
LABEL_MAP = {n: i for i, n in enumerate(LABEL_NAMES)}


def load(raw: Path, report: Report) -> pd.DataFrame:
    rows, fields, extra = [], ("id", "premise", "hypothesis", "gold"), {"genre": "genre", "pair_id": "pairID"}
    for split, name in FILES.items():
        rows += nli_jsonl_rows(find_file(raw, name), split, report, fields, LABEL_MAP, extra)
    return pd.DataFrame(rows, columns=["uid", "text_a", "text_b", "label", "split", "genre", "pair_id"])
