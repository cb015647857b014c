"""``ftft compare``: every reproduced cell (``tables/table{N}.csv``) beside the published one
(``src/ftft/paper/table*.csv``), matched on ``tables.KEYS``; ``difference = ours - published``; cells only one
side has are listed with the other side empty. The paper prints Table 5's HSD mean differences on a 0-1 scale,
ours are in points: the difference uses 100 x published there (noted per row).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from . import methods
from .artefacts import io_arguments, report_run
from .errors import DataError
from .io import read_csv
from .labels import data_note, dataset_title, demo_models, model_label, ref_label
from .render import md_table, write_report
from .tables import KEYS, table_ids

PAPER_DIR = Path(__file__).resolve().parent / "paper"
PUBLISHED_TABLES = ("1", "2", "3", "4", "5", "6", "7", "8", "9")
OUT_COLUMNS = (
    KEYS + "ours_mean ours_std n_ok n_failed published_mean published_std published_flag difference note".split()
)


def _norm(df: pd.DataFrame) -> pd.DataFrame:
    """The key columns as stripped strings ('' for a missing key)."""
    df = df.reindex(columns=[*df.columns, *(k for k in KEYS if k not in df.columns)])
    df[KEYS] = df[KEYS].fillna("").astype(str).apply(lambda c: c.str.strip()).replace(["nan", "None", "<NA>"], "")
    return df


def load_published(table_ids) -> pd.DataFrame:
    """The paper's printed cells of these tables (Table 4's PFLOPs as its ``mean``)."""
    paths = [PAPER_DIR / f"table{tid}.csv" for tid in table_ids]
    frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in paths if p.is_file()]
    t4 = {"model": "main_model", "pflops": "mean"}
    frames = [df.rename(columns=t4).assign(std="", flag="ok") if "pflops" in df else df for df in frames]
    return (
        _norm(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame(columns=[*KEYS, "mean", "std", "flag"])
    )


def load_ours(results: str | Path, table_ids) -> pd.DataFrame:
    frames = []
    for tid in table_ids:
        path = Path(results) / "tables" / f"table{tid}.csv"
        if not path.is_file():
            raise DataError(f"missing table (run `ftft table --id {tid}` first): {path}")
        frames.append(read_csv(path, "table", dtype={k: str for k in KEYS}, keep_default_na=False, na_values=[""]))
    return _norm(pd.concat(frames, ignore_index=True))


PUBLISHED = {"mean": "published_mean", "std": "published_std", "flag": "published_flag"}
NOTES = {
    "left_only": "not in the paper",
    "right_only": "not reproduced by this config",
    "scaled": "paper prints this on a 0-1 scale; difference uses 100 x published",
    "cost": "cost: FLOPs ratios rounded to 2 significant figures as in the paper",
}


def compare(cfg: dict, results: str | Path) -> pd.DataFrame:
    ids = [t for t in table_ids(cfg) if t in PUBLISHED_TABLES]
    ours = load_ours(results, ids).rename(columns={"mean": "ours_mean", "std": "ours_std"})
    ours = ours.reindex(columns=[*KEYS, "ours_mean", "ours_std", "n_ok", "n_failed"]).assign(order=np.arange(len(ours)))
    pub = load_published(ids).rename(columns=PUBLISHED)[[*KEYS, *PUBLISHED.values()]]
    df = ours.merge(pub, on=KEYS, how="outer", indicator="source")
    df[list(PUBLISHED.values())] = df[list(PUBLISHED.values())].fillna("")
    df["order"] = df["order"].fillna(len(df))
    for c in ("n_ok", "n_failed"):
        df[c] = pd.to_numeric(df[c], errors="coerce").round().astype("Int64")
    pm = pd.to_numeric(df["published_mean"], errors="coerce")
    scaled = (df["table"] == "5") & (df["task"] == "hsd") & (df["metric"] == "mean_diff") & pm.notna()
    df["difference"] = pd.to_numeric(df["ours_mean"], errors="coerce") - pm.where(~scaled, 100 * pm)
    flag = df["published_flag"]
    notes = pd.DataFrame({
        "source": df["source"].astype(str).map(NOTES),
        "scaled": scaled.map({True: NOTES["scaled"]}),
        "flag": ("published cell flagged " + flag).where(~flag.isin(["", "ok"])),
        "cost": (df["metric"] == "cost").map({True: NOTES["cost"]}),
    })  # fmt: skip
    df["note"] = ["; ".join(n for n in row if isinstance(n, str)) for row in notes.itertuples(index=False)]
    df["_t"] = df["table"].map(lambda t: PUBLISHED_TABLES.index(t) if t in PUBLISHED_TABLES else 99)
    df = df.sort_values(["_t", "order"], kind="stable").reset_index(drop=True)
    return df[OUT_COLUMNS]


def _fmt(x, digits=2) -> str:
    v = pd.to_numeric(x, errors="coerce")
    if np.isnan(v):
        return ""
    return f"{v:.4f}" if abs(v) < 0.1 and v != 0 else f"{v:.{digits}f}"


def render_md(cfg: dict, df: pd.DataFrame) -> str:
    lines = ["# Reproduced vs published (FTFT, arXiv 2310.06588)", ""]
    if note := data_note(cfg):
        lines += [f"> **{note}** The published column is shown for the layout only.", ""]
    lines += [
        "Matched on table, task, main/ref model, method, step fraction, dataset, metric and q. "
        "difference = ours - published (scores in %, costs in units, Table 4 in the paper's unit (FLOPs / 1e12), Table 5 mean "
        "difference in points and p-value). Published values as printed in the paper (see "
        "src/ftft/paper/README for the flags).",
        "",
        "## Summary",
        "",
    ]
    summary = []
    for tid, g in df.groupby("table", sort=False):
        both = g["ours_mean"].notna() & pd.to_numeric(g["published_mean"], errors="coerce").notna()
        d = g.loc[both, "difference"].abs()
        n = [g["ours_mean"].notna().sum(), both.sum(), g["note"].str.contains("not reproduced").sum()]
        summary.append([f"Table {tid}", *map(str, n), *((_fmt(d.mean()), _fmt(d.max())) if len(d) else ("", ""))])
    head = ["table", "reproduced cells", "with published value", "published only", "mean |diff|", "max |diff|"]
    lines.append(md_table(head, summary))
    header = "task main ref method steps dataset metric q ours published diff note".split()
    for tid, g in df.groupby("table", sort=False):
        rows = [[r.task, model_label(cfg, r.main_model), ref_label(cfg, r.method, r.ref_model),
                 methods.REGISTRY[r.method].label if r.method in methods.REGISTRY else r.method, r.step_fraction, dataset_title(cfg, r.task, r.dataset), r.metric, r.q,
                 _fmt(r.ours_mean) + (f" ± {_fmt(r.ours_std)}" if _fmt(r.ours_std) else ""),
                 str(r.published_mean or "") + (f" ± {r.published_std}" if r.published_std else ""),
                 _fmt(r.difference), r.note]
                for r in g.itertuples(index=False)]  # fmt: skip
        lines += ["", f"## Table {tid}", "", md_table(header, rows)]
    return "\n".join(lines) + "\n"


def write(cfg: dict, results: str | Path, prefix: str | Path) -> pd.DataFrame:
    df = compare(cfg, results)
    out = df.assign(demo=True) if demo_models(cfg) else df
    write_report(prefix, render_md(cfg, df), out.to_csv(index=False, float_format="%.10g"))
    return df


add_arguments, run = io_arguments, report_run(write, "paper comparison")
