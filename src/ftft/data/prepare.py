"""``ftft prepare``: normalise one raw dataset (a built-in source module, or a ``byo.<name>`` spec) into the
schema of ``ftft.data.schema``. No row is lost silently: ``rows_in == rows_out + sum(dropped)`` (by reason);
unread files go to ``skipped``; split sizes that differ from the documented ones are warnings."""

import csv
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..io import parse_json_arg, write_json
from . import schema

log = logging.getLogger(__name__)


@dataclass
class Report:
    """Row accounting for one source."""

    source: str
    rows_in: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # reason -> first offending row (file:line)
    skipped: dict = field(default_factory=dict)  # file -> rows not read (e.g. unlabelled)
    warnings: list = field(default_factory=list)

    def drop(self, reason: str, n: int = 1, example: str | None = None) -> None:
        if n > 0:
            self.dropped[reason] += n
            if example is not None:
                self.examples.setdefault(reason, example[:300])

    def filter(self, df: pd.DataFrame, mask, reason: str, example) -> pd.DataFrame:
        """``df`` without the rows of ``mask``, counted under ``reason`` (``example(first such row)``)."""
        if mask.any():
            self.drop(reason, int(mask.sum()), example(df[mask].iloc[0]))
        return df[~mask]

    def warn(self, msg: str) -> None:
        log.warning("%s: %s", self.source, msg)
        self.warnings.append(msg)


# --------------------------------------------------------------------------- helpers for readers


def find_file(raw: str | Path, name: str, required: bool = True, folder: bool = False) -> Path | None:
    """The shallowest file (``folder``: non-empty folder) called ``name`` below ``raw`` (downloads extract into
    subfolders)."""
    raw, what = Path(raw), "folder" if folder else "file"
    if not raw.is_dir():
        raise DataError(f"raw data folder not found: {raw}")
    hidden = (".", "__MACOSX")
    hits = [
        p
        for p in raw.rglob(name)
        if (p.is_dir() and any(p.iterdir()) if folder else p.is_file())
        and not any(q.startswith(hidden) for q in p.relative_to(raw).parts)
    ]
    if not hits:
        if required:
            raise DataError(f"{raw}: required {what} '{name}' not found (was the download step run and extracted?)")
        return None
    hits.sort(key=lambda p: (len(p.parts), str(p)))
    if len(hits) > 1 and len(hits[0].parts) == len(hits[1].parts):
        raise DataError(f"{raw}: {what} '{name}' is ambiguous: {[str(h) for h in hits]}")
    return hits[0]


def read_delimited(path: Path, report: Report, *, sep: str, quoting=csv.QUOTE_MINIMAL, chunksize=50_000, needed=()):
    """Chunks of a CSV/TSV read as strings (the ``needed`` columns, each must exist); rows with too many fields
    (pandas' ``on_bad_lines``) or too few (NaN: ``keep_default_na=False`` keeps every real value a string) are
    dropped and counted as ``bad_column_count``."""
    bad: list = []

    def count_bad():
        if bad:
            report.rows_in += len(bad)
            report.drop("bad_column_count", len(bad), f"{path.name}: {bad[0]!r}")
            bad.clear()

    try:
        reader = pd.read_csv(path, sep=sep, quoting=quoting, dtype=str, keep_default_na=False, engine="python",
                             on_bad_lines=bad.append, chunksize=chunksize, encoding="utf-8")  # fmt: skip
        for chunk in [reader] if chunksize is None else reader:
            count_bad()
            report.rows_in += len(chunk)
            short = chunk.isna().any(axis=1)
            chunk = report.filter(chunk, short, "bad_column_count", lambda r: f"{path.name}: {r.to_dict()!r}")
            if missing := [c for c in needed if c not in chunk.columns]:
                raise DataError(f"{path}: missing column(s) {missing}; have {list(chunk.columns)}")
            yield chunk[list(needed)] if needed else chunk
        count_bad()
    except (pd.errors.ParserError, csv.Error, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse ({exc})") from exc


def map_labels(df: pd.DataFrame, column: str, mapping: dict, report: Report, where: str) -> pd.DataFrame:
    """Map ``df[column]`` through ``mapping`` into ``label``; unknown values dropped as ``unknown_label``."""
    lab = df[column].map(mapping)
    if (unknown := lab.isna()).any():
        vals = Counter(df.loc[unknown, column].astype(str))
        report.drop("unknown_label", int(unknown.sum()), f"{where}: {dict(vals.most_common(5))}")
    df = df[~unknown].copy()
    df["label"] = lab[~unknown].astype("int64")
    return df


def drop_missing_text(df: pd.DataFrame, report: Report, where: str, cols=("text_a", "text_b")) -> pd.DataFrame:
    for col in cols:
        if col not in df.columns:
            continue
        miss = df[col].isna() | (df[col].astype(str).str.strip() == "")
        df = report.filter(df, miss, "missing_text", lambda r, c=col: f"{where}: {c} empty (uid {r.get('uid', '?')})")
    return df


# --------------------------------------------------------------------------- driver


def normalise(source: str, raw: str | Path, spec: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Load one source into the schema. Returns (frame, summary dict)."""
    report = Report(source)
    if spec is not None:
        from . import byo

        df, label_names = byo.load(source, spec, raw, report)
        expected: dict = {}
    else:
        from .sources import SOURCES, load

        if source not in SOURCES:
            raise DataError(
                f"unknown source '{source}'; built-in sources: {list(SOURCES)} (or pass --spec for a byo source)"
            )
        df = load(source, Path(raw), report)
        label_names, expected = list(SOURCES[source].labels), dict(SOURCES[source].expected)
    df = df.reset_index(drop=True)
    df = report.filter(df, df["uid"].duplicated(), "duplicate_uid", lambda r: f"uid {r['uid']!r}")
    df = df.reset_index(drop=True)
    splits = {str(k): int(v) for k, v in sorted(df["split"].value_counts().items())}
    for split, n in expected.items():
        got = splits.get(split, 0)
        if got == 0:
            report.warn(f"split '{split}' is missing (0 rows); the documented full size is {n}")
        elif got != n:
            report.warn(f"split '{split}' has {got} rows; the documented full size is {n}")
    rows_out, dropped = len(df), sum(report.dropped.values())
    if report.rows_in != rows_out + dropped:  # every reader counts what it reads: a gap is a bug in a reader
        report.warn(f"row accounting gap: rows_in {report.rows_in} != rows_out {rows_out} + dropped {dropped}")
    if report.dropped:  # a warning: the prepare rule copies warnings from its log to the console
        report.warn(f"dropped {dropped} of {report.rows_in} rows: {dict(report.dropped)}")
    summary = {
        "source": source,
        "rows_in": report.rows_in,
        "rows_out": rows_out,
        "dropped": dict(sorted(report.dropped.items())),
        "dropped_examples": report.examples,
        "skipped": report.skipped,
        "splits": splits,
        "expected": expected,
        "warnings": report.warnings,
        "label_names": label_names,
        "label_counts": {
            s: {label_names[int(k)]: int(v) for k, v in g.value_counts().sort_index().items()}
            for s, g in df.groupby("split")["label"]
        },
    }
    return df, summary


def prepare(source: str, raw: str | Path, out: str | Path, summary_path: str | Path, spec: dict | None = None) -> dict:
    df, summary = normalise(source, raw, spec)
    if df.empty:
        read = ", ".join(str(f) for f in spec["files"].values()) if spec and spec.get("files") else raw
        raise DataError(f"{source}: no rows left after normalising {read} (dropped: {summary['dropped']})")
    if spec is None and not summary["expected"]:
        check_recorded(source, Path(raw), summary, df)
    schema.write(df, out, summary["label_names"], source)
    write_json(summary_path, summary)
    log.info("%s: %d rows in, %d out, splits %s -> %s", source, summary["rows_in"], len(df), summary["splits"], out)
    return summary


def check_recorded(source: str, raw: Path, summary: dict, df: pd.DataFrame) -> None:
    """A source without documented sizes (CAD, DynaHate): its first preparation records the split (and CAD fold)
    sizes and the extracted members in ``raw/prepared.json``; a later preparation that differs from that record, or
    members that differ from the module's ``MEMBERS`` (the authors' published tree), warn."""
    done, rec = raw / "DONE.json", raw / "prepared.json"
    members = json.loads(done.read_text())["extracted"] if done.is_file() else {}
    now = {"splits": summary["splits"], "members": {k: sorted(v) for k, v in members.items()}}
    if "fold" in df.columns:
        now["folds"] = {str(k): int(v) for k, v in df["fold"].value_counts().sort_index().items()}
    old = json.loads(rec.read_text()) if rec.is_file() else now
    checks = [(k, old.get(k), f"the first preparation recorded in {rec}") for k in now]
    if members:
        from .sources import SOURCES

        checks.append(
            ("members", {**now["members"], **SOURCES[source].members}, f"the published list ftft.data.{source}.MEMBERS")
        )
    for what, was, why in checks:
        if was != now[what]:
            report = f"{source}: {what} {now[what]} differ from {why}: {was} (a new release?)"
            summary["warnings"].append(report)
            log.warning(report)
    if not rec.is_file():
        write_json(rec, now)


def add_arguments(parser) -> None:
    parser.add_argument("--source", required=True, help="source name (built-in or byo)")
    parser.add_argument("--raw", required=True, help="folder with the raw (downloaded, extracted) files")
    parser.add_argument("--out", required=True, help="normalised parquet to write")
    parser.add_argument("--summary", required=True, help="summary JSON to write")
    parser.add_argument("--spec", default=None, help="byo.<name> config entry as JSON (bring-your-own data)")


def run(args) -> None:
    spec = parse_json_arg(args.spec, "--spec") if args.spec not in (None, "", "null") else None
    prepare(args.source, args.raw, args.out, args.summary, spec)
