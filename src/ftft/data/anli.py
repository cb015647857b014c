"""Adversarial NLI v1.0: ``R{1,2,3}/{train,dev,test}.jsonl`` -> splits ``{part}_r{round}`` (a missing file is a
missing split); text_a = context, label from e/n/c; extra columns round, genre, tag."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .prepare import Report, nli_jsonl_rows
from .schema import NLI_LABELS

log = logging.getLogger(__name__)

LABEL_NAMES = NLI_LABELS
ROUNDS = (1, 2, 3)
PARTS = ("train", "dev", "test")
SPLIT_NAMES = tuple(f"{part}_r{r}" for part in PARTS for r in ROUNDS)
EXPECTED = {"train_r1": 16_946, "train_r2": 45_460, "train_r3": 100_459, "dev_r1": 1_000, "dev_r2": 1_000,
            "dev_r3": 1_200, "test_r1": 1_000, "test_r2": 1_000, "test_r3": 1_200}  # fmt: skip
LABEL_MAP = {"e": 0, "n": 1, "c": 2, **{n: i for i, n in enumerate(LABEL_NAMES)}}
FIELDS = ("uid", "context", "hypothesis", "label")


def round_dir(raw: Path, r: int) -> Path:
    """The shallowest folder named R{r} below ``raw`` that holds jsonl files."""
    if not raw.is_dir():
        raise DataError(f"raw data folder not found: {raw}")
    cands = sorted(
        (p for p in raw.rglob(f"R{r}") if p.is_dir() and any(p.glob("*.jsonl")) and "__MACOSX" not in p.parts),
        key=lambda p: (len(p.parts), str(p)),
    )
    if not cands:
        raise DataError(
            f"{raw}: no ANLI round folder 'R{r}' with .jsonl files (was the download step run and extracted?)"
        )
    return cands[0]


def load(raw: Path, report: Report) -> pd.DataFrame:
    rows = []
    for r in ROUNDS:
        folder = round_dir(raw, r)
        for part in PARTS:
            path = folder / f"{part}.jsonl"
            split = f"{part}_r{r}"
            if not path.is_file():
                log.info("%s not found: split '%s' is absent", path, split)
                continue
            new = nli_jsonl_rows(path, split, report, FIELDS, LABEL_MAP, {"genre": "genre", "tag": "tag"}, f"R{r}/")
            rows += [row | {"round": r} for row in new]
    df = pd.DataFrame(rows, columns=["uid", "text_a", "text_b", "label", "split", "round", "genre", "tag"])
    df["round"] = df["round"].astype("int64")
    return df
