"""WANLI (Liu et al., 2022), Hugging Face ``alisawuffles/WANLI``: ``train.jsonl``, ``test.jsonl``.

* Splits: ``train``, ``test``.
* One JSON object per line: ``id, premise, hypothesis, gold, genre, pairID``. ``text_a`` =
  premise, ``text_b`` = hypothesis (embedded newlines are kept as they are); ``label`` from
  ``gold`` (entailment=0, neutral=1, contradiction=2; anything else -> ``unknown_label``).
* ``uid`` = ``str(id)`` (WANLI's example id, unique over the dataset). ``pairID`` (the MNLI
  seed pair) is an int in some files and a string in others: always ``str()``-ed into
  ``pair_id``. Extra columns: ``genre`` (generated / generated_revised), ``pair_id``.
* Undecodable lines -> ``bad_json``; a line without id/premise/hypothesis/gold ->
  ``missing_field``; empty premise or hypothesis -> ``missing_text``.
"""

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


def load_file(path: Path, split: str, report: Report) -> list[dict]:
    return nli_jsonl_rows(
        path, split, report, ("id", "premise", "hypothesis", "gold"), LABEL_MAP, {"genre": "genre", "pair_id": "pairID"}
    )


def load(raw: Path, report: Report) -> pd.DataFrame:
    rows = []
    for split, name in FILES.items():
        rows += load_file(find_file(raw, name), split, report)
    return pd.DataFrame(rows, columns=["uid", "text_a", "text_b", "label", "split", "genre", "pair_id"])
