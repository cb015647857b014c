"""CAD v1.1 (Vidgen et al., 2021) rebuilt as Ramponi & Tonelli's ``scripts/1.prepare-data.py`` does for ``cad``
(github.com/dhfbk/hate-speech-artifacts; the official FTFT code trains on its ``cad_uid.train``, tests on ``.dev``).

Steps and line numbers: docs/FIDELITY.md (CAD rows). Where their script would crash, the instance is dropped with
a reason (``missing_text``, ``line_break_in_text``, ``unmapped_label``); an empty ``info_id`` is ``missing_uid``.
Output: ``uid`` = the ``info_id`` of the first entry with that cleaned text (``#2``, ``#3`` for repeats),
``text_a`` as R&T's split files hold it, ``label`` nothate=0 / hate=1, ``split`` train/dev/test (folds 0-7, 8, 9);
extra columns ``labels`` (composite), ``fold``, ``subreddit``. No documented split sizes (docs/FIDELITY.md, 15).
"""

from __future__ import annotations

import csv
import random
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .clean import clean_text
from .prepare import Report, find_file, read_delimited
from .schema import HSD_LABELS

LABEL_NAMES = HSD_LABELS
FILE = "cad_v1_1.tsv"
EXPECTED: dict[str, int] = {}
# Zenodo data.zip members: the data/ tree of dongpng/cad_naacl2021 README.md (466ec52); checked, with the
# split sizes recorded at the first preparation, by prepare.check_recorded (no published hash exists)
MEMBERS = {"data.zip": [f"data/{n}" for n in (
    "cad_codebook_april2021.pdf cad_v1.tsv cad_v1_1.tsv cad_v1_1_dev.tsv cad_v1_1_test.tsv cad_v1_1_train.tsv "
    "cad_v1_dev.tsv cad_v1_test.tsv cad_v1_train.tsv errata_v1_to_v1_1 test/test_data.tsv test/test_data_test.tsv "
    "test/test_predictions.tsv").split()]}  # fmt: skip
SPLIT_NAMES = ("train", "dev", "test")  # R&T folds 0-7, 8, 9
KEEP_CONTEXT = ("CurrentContent", '"NA"')
BAD_IDS = ("cad_11730",)
# R&T l. 208-210: the columns an entry's annotation rows are grouped by, in this order
STATIC_COLS = tuple(
    "info_id info_subreddit info_subreddit_id info_id.parent info_id.link info_thread.id info_order info_image.saved "
    "meta_author meta_created_utc meta_date meta_day meta_permalink meta_text".split()
)
NEEDED = ("id", "split", "annotation_Context", "annotation_Primary", *STATIC_COLS)
# R&T l. 34 (LABEL_TO_ID["cad"]) and l. 44 (LABEL_MAPPING["cad"]: hate iff IdentityDirectedAbuse is in the composite)
LABEL_TO_ID = {
    lab: i
    for i, lab in enumerate(
        "Neutral Slur PersonDirectedAbuse AffiliationDirectedAbuse IdentityDirectedAbuse "
        "AffiliationDirectedAbuse$IdentityDirectedAbuse AffiliationDirectedAbuse$IdentityDirectedAbuse$PersonDirectedAbuse "
        "AffiliationDirectedAbuse$PersonDirectedAbuse AffiliationDirectedAbuse$Slur "
        "IdentityDirectedAbuse$PersonDirectedAbuse IdentityDirectedAbuse$PersonDirectedAbuse$Slur "
        "IdentityDirectedAbuse$Slur PersonDirectedAbuse$Slur".split()
    )
}
LABEL_MAPPING = {i: int("IdentityDirectedAbuse" in lab) for lab, i in LABEL_TO_ID.items()}
RANDOM_SEED = 42  # R&T l. 22
N_FOLDS = 10  # split_dataset(k=10)
CLEAN_DATASET = "cad"  # clean_text's dataset_name (also used for DynaHate)
KEEP_EMOJIS = True  # 1.prepare-data.sh passes no -E


def fold_split(fold: int, k: int = N_FOLDS) -> str:
    """R&T l. 383-390: folds 0..k-3 -> train, k-2 -> dev, k-1 -> test."""
    return "train" if fold < k - 2 else ("dev" if fold == k - 2 else "test")


def stratified_test_folds(labels, n_splits: int = N_FOLDS, where: str = "labels") -> list[int]:
    """The test fold of each sample under ``sklearn.model_selection.StratifiedKFold(n_splits)`` (``shuffle=False``,
    scikit-learn >= 0.22 ``_make_test_folds``: class codes by first appearance, per-fold class counts from a round
    robin over the sorted codes, each class's samples in data order get fold ids in blocks); DataError where
    scikit-learn raises ValueError. scikit-learn is not a dependency: test_cad compares the two."""
    labels = list(labels)
    if n_splits > len(labels):
        raise DataError(
            f"{where}: cannot make {n_splits} stratified folds of {len(labels)} instances "
            f"(Ramponi & Tonelli's StratifiedKFold needs at least {n_splits})"
        )
    code: dict = {}
    for lab in labels:
        code.setdefault(lab, len(code))
    encoded = [code[lab] for lab in labels]
    if all(n_splits > c for c in Counter(encoded).values()):
        raise DataError(
            f"{where}: no class has {n_splits} members (counts {dict(Counter(labels))}); "
            f"StratifiedKFold(n_splits={n_splits}) cannot split it"
        )
    alloc = [[0] * len(code) for _ in range(n_splits)]  # alloc[fold][class]
    for pos, k in enumerate(sorted(encoded)):
        alloc[pos % n_splits][k] += 1
    blocks = {k: iter([f for f in range(n_splits) for _ in range(alloc[f][k])]) for k in range(len(code))}
    return [next(blocks[k]) for k in encoded]


_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_BOOL = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}


def _typed(col: pd.Series) -> list:
    """The column's values typed as ``pd.read_csv`` infers them (R&T's groupby sorts by the typed keys)."""
    values = col.tolist()
    stripped = [v.strip() for v in values]
    if stripped and all(_INT_RE.fullmatch(v) for v in stripped):
        return [int(v) for v in stripped]
    if stripped and all(_FLOAT_RE.fullmatch(v) for v in stripped):
        return [float(v) for v in stripped]
    if stripped and all(v in _BOOL for v in stripped):
        return [_BOOL[v] for v in stripped]
    return values


def rt_backslashes(text: str) -> str:
    """R&T l. 220: keep escaped backslashes (as one), delete every other backslash."""
    return text.replace("\\\\", "[DOUBLE_BS]").replace("\\", "").replace("[DOUBLE_BS]", "\\")


def load(raw: Path, report: Report) -> pd.DataFrame:
    path = find_file(raw, FILE)
    (df,) = read_delimited(path, report, sep="\t", quoting=csv.QUOTE_NONE, chunksize=None, needed=NEEDED)
    df = df.reset_index(drop=True)
    # types are inferred over the whole file, as read_csv does, before any row is filtered
    keys = pd.DataFrame({c: _typed(df[c]) for c in STATIC_COLS}, index=df.index)

    def where(row):
        return f"{path.name}: id {row['id']}"

    df = report.filter(df, ~df["split"].isin(SPLIT_NAMES), "excluded_split", where)
    df = report.filter(df, ~df["annotation_Context"].isin(KEEP_CONTEXT), "needs_previous_content", where)
    df = report.filter(df, df["id"].isin(BAD_IDS), "known_bad_row", where)
    df = report.filter(df, df["info_id"].str.strip() == "", "missing_uid", where)

    # groupby(static_cols)["annotation_Primary"].apply('$'.join(sorted(set(x)))): sorted groups
    info_id = df["info_id"].tolist()
    primary = df["annotation_Primary"].tolist()
    meta_text = df["meta_text"].tolist()
    subreddit = df["info_subreddit"].tolist()
    groups: dict[tuple, list[int]] = {}
    for pos, key in enumerate(keys.loc[df.index].itertuples(index=False, name=None)):
        groups.setdefault(key, []).append(pos)
    entries = []  # (first row position, composite label) in groupby order
    for key in sorted(groups):
        rows = groups[key]
        entries.append((rows[0], "$".join(sorted({primary[r] for r in rows}))))
    report.drop("merged_annotation_rows", len(df) - len(entries), None)
    if split_ids := sorted(k for k, n in Counter(info_id[pos] for pos, _ in entries).items() if n > 1):
        report.warn(
            f"{len(split_ids)} info_id(s) have annotation rows that disagree on a static column, so "
            f"Ramponi & Tonelli's groupby makes several instances of them, e.g. {split_ids[0]}"
        )

    def usable(pos: int, text: str, what: str) -> bool:
        """Where R&T's script would crash: an empty text, or a carriage return (their text-mode reading splits it)."""
        where = f"{path.name}: info_id {info_id[pos]}: {what}"
        if text.rstrip() == "":
            report.drop("missing_text", 1, f"{where} is empty ({meta_text[pos][:80]!r})")
        elif "\r" in text:
            report.drop("line_break_in_text", 1, f"{where} has a carriage return")
        return text.rstrip() != "" and "\r" not in text

    # data.tsv round trip: backslashes, then line.rstrip().split("\t") in preprocess_dataset
    raw_texts = [(pos, labels, rt_backslashes(meta_text[pos]).rstrip()) for pos, labels in entries]
    # preprocess_dataset: clean, then dedup by cleaned text in first-occurrence order
    by_text: dict[str, list[tuple[int, str]]] = {}
    for pos, labels, text in raw_texts:
        if usable(pos, text, "meta_text after the backslash handling"):
            cleaned = clean_text(text, CLEAN_DATASET, KEEP_EMOJIS)
            if usable(pos, cleaned, "the cleaned text"):
                by_text.setdefault(cleaned, []).append((pos, labels))
    instances = []  # (cleaned text, composite label, first row position)
    for cleaned, copies in by_text.items():
        labs = {lab for _, lab in copies}
        first = info_id[copies[0][0]]
        if len(labs) > 1:
            report.drop("conflicting_duplicate", len(copies), f"{path.name}: info_id {first}: labels {sorted(labs)}")
        else:
            report.drop("duplicate_text", len(copies) - 1, f"{path.name}: info_id {first}: {cleaned[:80]!r}")
            instances.append((cleaned, copies[0][1], copies[0][0]))

    # split_dataset: composite labels must be in LABEL_TO_ID (R&T: KeyError)
    unmapped = [inst for inst in instances if inst[1] not in LABEL_TO_ID]
    if unmapped:
        vals = Counter(inst[1] for inst in unmapped)
        report.drop("unmapped_label", len(unmapped), f"{path.name}: {dict(vals.most_common(5))}")
        report.warn(
            f"{len(unmapped)} instance(s) have a composite label outside Ramponi & Tonelli's LABEL_TO_ID "
            f"(their script would stop with a KeyError): dropped, {dict(vals.most_common(5))}"
        )
        instances = [inst for inst in instances if inst[1] in LABEL_TO_ID]
    if not instances:
        return pd.DataFrame(columns=["uid", "text_a", "text_b", "label", "split", "labels", "fold", "subreddit"])
    # uid: info_id of the first entry with that text; a repeated info_id (rows that disagree on a
    # static column, and texts that differ after cleaning) is numbered in first-occurrence order
    seen: Counter = Counter()
    uids = []
    for _, _, pos in instances:
        seen[info_id[pos]] += 1
        uids.append(info_id[pos] if seen[info_id[pos]] == 1 else f"{info_id[pos]}#{seen[info_id[pos]]}")

    order = list(range(len(instances)))
    random.Random(RANDOM_SEED).shuffle(order)  # random.seed(42); random.shuffle(lines)
    ids = [LABEL_TO_ID[instances[j][1]] for j in order]
    folds = stratified_test_folds(ids, N_FOLDS, where=f"{path}: column annotation_Primary")
    if (least := min(Counter(ids).values())) < N_FOLDS:
        report.warn(
            f"the least populated composite label has only {least} member(s), fewer than n_splits={N_FOLDS} "
            "(scikit-learn warns the same)"
        )
    per_split: dict[str, list[int]] = {s: [] for s in SPLIT_NAMES}
    for f in range(N_FOLDS):  # each fold's test indices, ascending, appended to its split file
        per_split[fold_split(f)] += [i for i, fi in enumerate(folds) if fi == f]
    for split in SPLIT_NAMES:  # every split file shuffled again with seed 42
        random.Random(RANDOM_SEED).shuffle(per_split[split])

    rows = []
    for split in SPLIT_NAMES:
        for i in per_split[split]:
            j = order[i]
            cleaned, labels, pos = instances[j]
            rows.append({"uid": uids[j], "text_a": cleaned.rstrip(),  # .all round trip: line.rstrip()
                         "text_b": None, "label": LABEL_MAPPING[ids[i]], "split": split, "labels": labels,
                         "fold": folds[i], "subreddit": subreddit[pos]})  # fmt: skip
    out = pd.DataFrame(rows).astype({"label": "int64", "fold": "int64"})
    return out
