"""The normalised schema of every dataset: uid (unique str), text_a, text_b (or null), label (int64), split, then
source columns; the parquet metadata key ``ftft`` holds the label names and the source."""

from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..io import REBUILD, parquet_meta, read_arrow, write_parquet

REQUIRED = ("uid", "text_a", "text_b", "label", "split")
NLI_LABELS = ["entailment", "neutral", "contradiction"]
HSD_LABELS = ["nothate", "hate"]


def check(df: pd.DataFrame, label_names: list[str], where: str) -> None:
    """Raise DataError naming ``where`` and the column if ``df`` breaks the schema."""
    if missing := [c for c in REQUIRED if c not in df.columns]:
        raise DataError(f"{where}: missing column(s) {missing}; have {list(df.columns)}")
    if df["uid"].isna().any():
        raise DataError(f"{where}: column 'uid' has {int(df['uid'].isna().sum())} null value(s)")
    if len(dup := df["uid"][df["uid"].duplicated()]):
        raise DataError(f"{where}: column 'uid' is not unique, e.g. {dup.iloc[0]!r} ({len(dup)} duplicates)")
    if df["text_a"].isna().any() or (df["text_a"].astype(str).str.strip() == "").any():
        raise DataError(f"{where}: column 'text_a' has empty values")
    if (bad := ~df["label"].isin(range(len(label_names)))).any():
        raise DataError(
            f"{where}: column 'label' has value {df['label'][bad].iloc[0]!r} outside 0..{len(label_names) - 1} ({label_names})"
        )


def write(df: pd.DataFrame, path: str | Path, label_names: list[str], source: str) -> None:
    """Check and atomically write a normalised table with its metadata."""
    df = df.reset_index(drop=True).copy()
    df["uid"] = df["uid"].astype(str)
    df["label"] = df["label"].astype("int64")
    df["text_b"] = df["text_b"].astype(object).where(df["text_b"].notna(), None)
    check(df, label_names, str(path))
    cols = list(REQUIRED) + [c for c in df.columns if c not in REQUIRED]
    write_parquet(df[cols], path, {"label_names": list(label_names), "source": source})


def read(path: str | Path, fix: str = REBUILD) -> tuple[pd.DataFrame, dict]:
    """Read a normalised table; returns (frame, metadata dict). ``fix``: what an unreadable file's error
    advises (default: delete it and rerun; a file inside a folder output needs the folder deleted)."""
    return read_arrow(path, "normalised data file", fix).to_pandas(), parquet_meta(path, "normalised data file", fix)
