"""CAD v1.1 (Vidgen et al., 2021) rebuilt as Ramponi & Tonelli's ``scripts/1.prepare-data.py`` does for ``cad``
(github.com/dhfbk/hate-speech-artifacts; the official FTFT code trains on its ``cad_uid.train``, tests on ``.dev``).

Steps and line numbers: docs/FIDELITY.md (CAD rows). Where their script would crash, the instance is dropped with
a reason (``missing_text``, ``line_break_in_text``, ``unmapped_label``); an empty ``info_id`` is ``missing_uid``.
Output: ``uid`` = the ``info_id`` of the first entry with that cleaned text (``#2``, ``#3`` for repeats),
``text_a`` as R&T's split files hold it, ``label`` nothate=0 / hate=1, ``split`` train/dev/test (folds 0-7, 8, 9);
extra columns ``labels`` (composite), ``fold``, ``subreddit``. No documented split sizes (docs/FIDELITY.md, 15).
"""

import csv
import random
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .clean import clean_text
from .prepare import Report, find_file, read_delimited

FILE = "cad_v1_1.tsv"
# Zenodo data.zip members: the data/ tree of dongpng/cad_naacl2021 README.md (466ec52); checked, with the
# split sizes recorded at the first preparation, by prepare.check_recorded (no published hash exists)
MEMBERS = {"data.zip": [f"data/{n}" for n in (
    "cad_codebook_april2021.pdf cad_v1.tsv cad_v1_1.tsv cad_v1_1_dev.tsv cad_v1_1_test.tsv cad_v1_1_train.tsv "
    "cad_v1_dev.tsv cad_v1_test.tsv cad_v1_train.tsv errata_v1_to_v1_1 test/test_data.tsv test/test_data_test.tsv "
    "test/test_predictions.tsv").split()]}  # fmt: skip
SPLIT_NAMES = ("train", "dev", "test")  # R&T folds 0-7, 8, 9
COLUMNS = ["uid", "text_a", "text_b", "label", "split", "labels", "fold", "subreddit"]
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
    stripped = [v.strip() for v in col.tolist()]
    for matches, cast in ((_INT_RE.fullmatch, int), (_FLOAT_RE.fullmatch, float), (_BOOL.__contains__, _BOOL.get)):
        if stripped and all(matches(v) for v in stripped):
            return [cast(v) for v in stripped]
    return col.tolist()


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
    info_id, meta_text, subreddit = (df[c].tolist() for c in ("info_id", "meta_text", "info_subreddit"))
    grouped = keys.loc[df.index].assign(pos=range(len(df)), primary=df["annotation_Primary"].to_numpy())
    grouped = grouped.groupby(list(STATIC_COLS), sort=True)
    entries = list(zip(grouped["pos"].first(), grouped["primary"].agg(lambda x: "$".join(sorted(set(x)))), strict=True))
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

    # data.tsv round trip: backslashes, then line.rstrip().split("\t"); preprocess_dataset: clean, then dedup by
    # cleaned text in first-occurrence order
    by_text: dict[str, list[tuple[int, str]]] = {}
    for pos, labels in entries:
        if usable(pos, text := rt_backslashes(meta_text[pos]).rstrip(), "meta_text after the backslash handling"):
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

    inst = pd.DataFrame(instances, columns=["text_a", "labels", "pos"])
    # split_dataset: composite labels must be in LABEL_TO_ID (R&T: KeyError)
    if (unmapped := ~inst["labels"].isin(list(LABEL_TO_ID))).any():
        vals = dict(Counter(inst.loc[unmapped, "labels"]).most_common(5))
        report.drop("unmapped_label", int(unmapped.sum()), f"{path.name}: {vals}")
        report.warn(
            f"{int(unmapped.sum())} instance(s) have a composite label outside Ramponi & Tonelli's LABEL_TO_ID "
            f"(their script would stop with a KeyError): dropped, {vals}"
        )
        inst = inst[~unmapped].reset_index(drop=True)
    if inst.empty:
        return pd.DataFrame(columns=COLUMNS)
    # uid: info_id of the first entry with that text; a repeated info_id (rows that disagree on a
    # static column, and texts that differ after cleaning) is numbered in first-occurrence order
    iid = inst["pos"].map(info_id.__getitem__)
    nth = iid.groupby(iid).cumcount() + 1
    inst["uid"] = iid.where(nth == 1, iid + "#" + nth.astype(str))
    inst["subreddit"] = inst["pos"].map(subreddit.__getitem__)
    order = list(range(len(inst)))
    random.Random(RANDOM_SEED).shuffle(order)  # random.seed(42); random.shuffle(lines)
    inst = inst.iloc[order].reset_index(drop=True)
    ids = inst["labels"].map(LABEL_TO_ID)
    inst["fold"] = stratified_test_folds(ids, N_FOLDS, where=f"{path}: column annotation_Primary")
    if (least := ids.value_counts().min()) < N_FOLDS:
        report.warn(
            f"the least populated composite label has only {least} member(s), fewer than n_splits={N_FOLDS} "
            "(scikit-learn warns the same)"
        )
    inst["label"], inst["split"], inst["text_b"] = ids.map(LABEL_MAPPING), inst["fold"].map(fold_split), None
    inst["text_a"] = inst["text_a"].str.rstrip()  # .all round trip: line.rstrip()
    parts = []
    for split in SPLIT_NAMES:  # each fold's test indices, ascending, appended to its split file, shuffled with seed 42
        rows = inst[inst["split"] == split].sort_values("fold", kind="stable").index.tolist()
        random.Random(RANDOM_SEED).shuffle(rows)
        parts.append(inst.loc[rows])
    return pd.concat(parts, ignore_index=True)[COLUMNS].astype({"label": "int64", "fold": "int64"})
