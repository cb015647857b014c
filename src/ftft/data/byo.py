"""Bring your own data: a ``byo.<name>`` config entry (config/README.md) -> the normalised schema.

Files are read by extension (csv, tsv/tab, jsonl/ndjson/json lines, parquet/pq; CSV cells as strings), relative
paths from the working directory, then ``--raw``; or a hub dataset (``hf``). Labels: named values map to their
index, integers in range are kept; without ``labels``, all-integer values are kept, else the sorted unique values
are the names. Unknown labels, empty texts and duplicate ids are dropped and counted; ids recurring across splits
become ``{split}/{id}``; without a uid column the uid is ``{name}-{split}-{row}``.
"""

import json
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .prepare import Report, drop_missing_text

READERS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}  # fmt: skip


def resolve(path: str, raw: str | Path | None, key: str) -> Path:
    p = Path(path).expanduser()
    tried = [p, *([Path(raw) / p] if not p.is_absolute() and raw is not None else [])]
    if found := next((cand for cand in tried if cand.is_file()), None):
        return found
    raise DataError(f"{key}: file not found: {path} (tried {', '.join(str(t) for t in tried)})")


def read_any(path: Path, key: str) -> pd.DataFrame:
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{key}: {path}: unknown file type '{path.suffix}'; use one of {sorted(READERS)}")
    try:
        if kind in ("csv", "tsv"):
            return pd.read_csv(path, sep="," if kind == "csv" else "\t", dtype=str, keep_default_na=False)
        if kind == "jsonl":  # line by line: a broken line is named by its number
            rows = []
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    try:
                        rows += [json.loads(line)] if line.strip() else []
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{key}: {path}:{lineno}: not a JSON line: {exc}") from exc
            return pd.DataFrame(rows)
        return pd.read_parquet(path)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"{key}: {path}: cannot read ({exc})") from exc


def _as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    s = str(value).strip()
    return int(s) if s.lstrip("-").isdigit() else None


def label_names_for(values: list, labels: list | None) -> tuple[list[str], dict]:
    """(label names, {str(value): index}) for the label values seen."""
    if labels is not None:
        names = [str(x) for x in labels]
        mapping = {n: i for i, n in enumerate(names)}
        for v in values:  # integers in range index the names
            if str(v) not in mapping and (i := _as_int(v)) is not None and 0 <= i < len(names):
                mapping[str(v)] = i
        return names, mapping
    ints = [_as_int(v) for v in values]
    if values and all(i is not None and i >= 0 for i in ints):
        return [str(i) for i in range(max(ints) + 1)], {str(v): i for v, i in zip(values, ints, strict=True)}
    names = sorted({str(v) for v in values})
    return names, {n: i for i, n in enumerate(names)}


def read_hub(hf: dict, key: str) -> dict[str, pd.DataFrame]:
    """``hf: {path, name, revision, splits}``: the dataset repository's files at the pinned revision through
    the Hugging Face cache (offline from a filled cache with HF_HUB_OFFLINE=1), read by ``datasets.load_dataset``
    (config ``name``); ``splits`` maps our split names to the dataset's."""
    import datasets
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(hf["path"], repo_type="dataset", revision=hf["revision"])
        return {ours: datasets.load_dataset(folder, hf.get("name"), split=theirs).to_pandas()
                for ours, theirs in hf["splits"].items()}  # fmt: skip
    except Exception as exc:  # hub, cache, file and split errors alike
        raise DataError(f"{key}: cannot load {hf['path']}@{hf['revision']}: {type(exc).__name__}: {exc}") from exc


def load(name: str, spec: dict, raw: str | Path | None, report: Report) -> tuple[pd.DataFrame, list[str]]:
    base = f"byo.{name}"
    for key in ("text_a", "label"):
        if not spec.get(key):
            raise DataError(f"{base}.{key}: required")
    hub = read_hub(spec["hf"], f"{base}.hf") if spec.get("hf") else None
    if hub is None and not (isinstance(spec.get("files"), dict) and spec["files"]):
        raise DataError(f"{base}.files: expected a {{split: path}} mapping (or hf), got {spec.get('files')!r}")
    frames = []
    for split, file in (hub or spec["files"]).items():
        if hub is None:
            path = resolve(str(file), raw, f"{base}.files.{split}")
            df = read_any(path, f"{base}.files.{split}")
        else:
            path, df = Path(f"{spec['hf']['path']}@{spec['hf']['revision']}:{split}"), file
        for field in ("text_a", "text_b", "label", "uid"):
            col = spec.get(field)
            if col is not None and col not in df.columns:
                raise DataError(
                    f"{path}: column {col!r} (config {base}.{field}) not found; available columns: {list(df.columns)}"
                )
        report.rows_in += len(df)
        uid_col = spec.get("uid")
        if uid_col and (noid := df[uid_col].isna() | (df[uid_col].astype(str).str.strip() == "")).any():
            raise DataError(
                f"{path}: {int(noid.sum())} row(s) without an id in column {uid_col!r} (config {base}.uid), the first "
                f"is data row {int(noid.to_numpy().argmax()) + 1}: give every row an id, or set {base}.uid: null"
            )
        uids = df[uid_col].astype(str) if uid_col else [f"{name}-{split}-{i}" for i in range(len(df))]
        text_b = df[spec["text_b"]].astype(object) if spec.get("text_b") else None
        out = pd.DataFrame({"uid": uids, "text_a": df[spec["text_a"]].astype(object), "text_b": text_b,
                            "raw_label": df[spec["label"]].astype(object), "split": str(split)})  # fmt: skip
        cols = ("text_a", "text_b") if spec.get("text_b") else ("text_a",)
        for c in cols:
            out[c] = out[c].where(out[c].notna(), None).map(lambda v: v if v is None else str(v))
        frames.append(drop_missing_text(out, report, path.name, cols=cols))
    df = pd.concat(frames, ignore_index=True)
    if (across := df["uid"].duplicated() & ~df.duplicated(["split", "uid"])).any():  # ids numbered per split
        report.warn(f"{base}.uid: {int(across.sum())} id(s) recur in another split; uids are '<split>/<id>'")
        df["uid"] = df["split"] + "/" + df["uid"]
    nolabel = df["raw_label"].isna() | (df["raw_label"].astype(str).str.strip() == "")
    df = report.filter(df, nolabel, "missing_label", lambda r: f"uid {r['uid']}")
    values = list(dict.fromkeys(df["raw_label"].tolist()))
    names, mapping = label_names_for(values, spec.get("labels"))
    lab = df["raw_label"].astype(str).map(mapping)
    if (unknown := lab.isna()).any():
        bad = sorted({str(v) for v in df.loc[unknown, "raw_label"]})
        report.drop("unknown_label", int(unknown.sum()), f"values {bad[:10]}")
        where = spec.get("labels_from") or f"{base}.labels"
        report.warn(f"{int(unknown.sum())} row(s) with label values not in {where} {names}: {bad[:10]} (dropped)")
    df = df[~unknown].copy()
    df["label"] = lab[~unknown].astype("int64")
    if len(names) < 2:
        report.warn(f"{base}: only {len(names)} label name(s): {names}")
    return df.drop(columns=["raw_label"]), names
