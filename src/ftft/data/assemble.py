"""``ftft assemble``: a task's training set and evaluation sets (``tasks.<task>``) cut from the normalised
sources; the sources' label names must equal the task's ``labels``, and every split must exist and be non-empty."""

import logging
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..io import parse_json_arg
from . import schema

log = logging.getLogger(__name__)


def _entries(spec: dict) -> list[tuple[str, dict]]:
    for key in ("labels", "train", "id_test"):
        if key not in spec:
            raise DataError(f"task spec: missing key '{key}' (have {sorted(spec)})")
    out = [("train", spec["train"]), (spec["id_test"]["name"], spec["id_test"])]
    out += [(o["name"], o) for o in spec.get("ood", [])] + (
        [(spec["dev"]["name"], spec["dev"])] if spec.get("dev") else []
    )
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise DataError(f"task spec: evaluation set names must be unique, got {names}")
    return out


def assemble(spec: dict, sources_dir: str | Path, train: str | Path, eval_dir: str | Path) -> dict:
    sources_dir, train, eval_dir = Path(sources_dir), Path(train), Path(eval_dir)
    labels = [str(x) for x in spec.get("labels", [])]
    cache: dict[str, tuple[pd.DataFrame, dict]] = {}
    written = {}
    for name, entry in _entries(spec):
        source, split = entry["source"], entry["split"]
        if source not in cache:
            path = sources_dir / f"{source}.parquet"
            if not path.is_file():
                raise DataError(f"source '{source}': normalised file not found: {path} (run the prepare step)")
            df, meta = schema.read(path)
            have = [str(x) for x in meta.get("label_names", [])]
            if have != labels:
                raise DataError(
                    f"source '{source}' (split '{split}', {path}): label names {have} do not match the task's labels {labels}"
                )
            cache[source] = (df, meta)
        df, meta = cache[source]
        part = df[df["split"] == split]
        if part.empty:
            avail = sorted(df["split"].unique().tolist())
            raise DataError(
                f"source '{source}': split '{split}' (for {name}) is missing or empty; available splits: {avail}"
            )
        target = train if name == "train" and entry is spec["train"] else eval_dir / f"{name}.parquet"
        schema.write(part, target, labels, source)
        written[name] = {"source": source, "split": split, "rows": len(part), "path": str(target)}
        log.info("%s: %d rows from %s/%s -> %s", name, len(part), source, split, target)
    return written


def add_arguments(parser) -> None:
    for flag, text in (("--spec", "task config (tasks.<task>) as JSON"), ("--sources-dir", "folder with {source}.parquet"),
                       ("--train", "training set parquet to write"),
                       ("--eval-dir", "folder for {name}.parquet of each evaluation set")):  # fmt: skip
        parser.add_argument(flag, required=True, help=text)


def run(args) -> None:
    assemble(parse_json_arg(args.spec, "--spec"), args.sources_dir, args.train, args.eval_dir)
