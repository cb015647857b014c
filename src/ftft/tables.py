"""Paper Tables 1-9 from run outputs: a tidy CSV plus Markdown and LaTeX renderings.

``ftft table --id N --config-json CFG.json --results DIR --out-prefix results/tables/tableN``
writes ``PREFIX.csv``, ``PREFIX.md`` and ``PREFIX.tex``.

Tidy CSV columns (the same keys as ``src/ftft/paper/table*.csv``, so ``ftft compare`` can
join them): ``table, task, main_model, ref_model, method, step_fraction, dataset, metric, q,
mean, std`` and per-table extras (``n_ok``, ``n_failed``, ``failed_seeds``, ``marked``, ...).
Scores are in % (mean and sample std, ddof=1, over the seeds whose run succeeded); failed runs
(``run.json`` ``status: failed``) are excluded and counted (``n_failed``, footnote ``†``).

Rules (also stated in each table's caption):

- Tables 1/6, 2/7, 3/9: one row per ``grid.table_cells`` cell, read at the row's step fraction
  (``results.read_fraction``: limiting runs at their final checkpoint, halting at the
  checkpoint at that fraction of the full run).
- Tables 2/7 (``TRANSFER_MARK_TABLES``): a DM row is an *unsuccessful transfer* if its mean
  OOD score (average over the OOD sets of the seed means) is more than ``MARGIN`` points below
  the ERM run of the same main model; the ERM row of its reference model is marked too (the
  paper's gray rows; ``‡`` here).
- Tables 3/9: ``Cost`` = ``cost.method_cost`` with per-epoch forward FLOPs from the first
  seed's ERM run of each model (``run.json`` ``flops.forward_per_epoch``), unit =
  ``cost_unit_model``. ``mean`` uses the paper's rounding of each model's FLOPs ratio to 2
  significant figures; ``exact`` is unrounded.
- Table 4: ``flops.forward_per_epoch / 1e15`` of each ``flops_models`` ERM run (first seed).
- Table 5: ``stats.multibootstrap`` of DM (each ``significance.refs``) vs ERM of
  ``significance.main`` on all OOD sets pooled, final checkpoints; mean difference in points.
- Table 8: % of training instances that are easy (neither ambiguous nor hard-to-learn) at each
  ``easy_ratio.qs``, mean over seeds of the reference's data maps; a reference is marked
  ineffective if one of its DM transfers in Tables 2/7 is unsuccessful (unmarked when no such
  transfer is in the config).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import cost as costmod
from . import grid
from . import results as res
from .errors import DataError, FtftError
from .io import write_text

log = logging.getLogger(__name__)

KEYS = ["table", "task", "main_model", "ref_model", "method", "step_fraction", "dataset", "metric", "q"]
TRANSFER_MARK_TABLES = ("2", "7")
MARGIN = 1.0  # points of mean OOD score below ERM that make a transfer unsuccessful
METHOD_LABEL = {"erm": "ERM", "dm": "DM", "random": "DM", "jtt": "JTT", "poe": "PoE", "ftft": "FTFT"}
Q_METHODS = ("dm", "random", "ftft")
FAILED_MARK = "†"
GRAY_MARK = "‡"
#: Snakemake report caption (src/ftft/report/) of each table
REPORT_CAPTIONS = {
    "1": "table_transfer.rst",
    "6": "table_transfer.rst",
    "2": "table_weak.rst",
    "7": "table_weak.rst",
    "3": "table_methods.rst",
    "9": "table_methods.rst",
    "4": "table4.rst",
    "5": "table5.rst",
    "8": "table8.rst",
    "paper_comparison": "paper_comparison.rst",
}
DEMO_NOTE = (
    "Demo mode: tiny random-init models on synthetic data; the numbers exercise the pipeline "
    "and are not comparable with the paper's."
)


# --- small helpers ---------------------------------------------------------------------------


def model_label(cfg: dict, key: str) -> str:
    if key in ("", "none"):
        return "-"
    return cfg["models"].get(key, {}).get("label", key)


def task_metric(cfg: dict, task: str) -> str:
    return cfg["tasks"][task]["metric"]


def q_percent(q: float) -> str:
    return str(int(round(q * 100)))


def ood_sets(cfg: dict, task: str) -> list[str]:
    return grid.task_eval_sets(cfg, task)[1:]


def id_set(cfg: dict, task: str) -> str:
    return grid.task_eval_sets(cfg, task)[0]


def fmt_num(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if x != 0 and abs(x) < 0.01:
        return f"{x:.3g}"
    return f"{x:.{digits}f}"


def fmt_score(mean: float, std: float, style: str) -> str:
    """``mean`` with ``std`` as subscript (md: <sub>, tex: math subscript)."""
    if mean is None or math.isnan(mean):
        return "–"
    if std is None or math.isnan(std):
        return f"{mean:.2f}" if style == "md" else f"${mean:.2f}$"
    return f"{mean:.2f}<sub>{std:.2f}</sub>" if style == "md" else f"${mean:.2f}_{{{std:.2f}}}$"


def tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        s = s.replace(a, b)
    return s.replace("†", r"$^\dagger$").replace("‡", r"$^\ddagger$").replace("←", r"$\leftarrow$")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def tex_table(header: list[str], rows: list[list[str]], gray: list[bool] | None = None, aligns: str = "") -> str:
    """booktabs tabular; rows may be a str (a full-width group line). Needs xcolor[table] for gray."""
    n = len(header)
    aligns = aligns or "l" * min(3, n) + "c" * (n - min(3, n))
    out = [
        rf"\begin{{tabular}}{{{aligns}}}",
        r"\toprule",
        " & ".join(tex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    for i, r in enumerate(rows):
        if isinstance(r, str):
            out.append(rf"\multicolumn{{{n}}}{{c}}{{\emph{{{tex_escape(r)}}}}} \\")
            continue
        prefix = r"\rowcolor{gray!25} " if gray and gray[i] else ""
        out.append(prefix + " & ".join(c if c.startswith(("$", "\\")) else tex_escape(c) for c in r) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out)


def ref_label(cfg: dict, method: str, ref: str) -> str:
    return "Random" if method == "random" else model_label(cfg, ref)


# --- Tables 1/2/3/6/7/9: one row per table cell -------------------------------------------------


def _cell_keys(tid: str, cell: grid.Cell) -> dict:
    """The key columns of a table cell, as in the published tables (src/ftft/paper/*.csv)."""
    return {
        "table": tid,
        "task": cell.task,
        "main_model": cell.main,
        "ref_model": "" if cell.ref == "none" else cell.ref,
        "method": cell.method,
        "step_fraction": str(cell.fraction),
    }


def _table_rows(cfg: dict, tid: str) -> list[tuple[int, dict, grid.Cell]]:
    """(row index within its task block, row config, cell) in grid.table_cells order."""
    table = cfg["tables"][tid]
    cells = grid.table_cells(cfg, tid)
    rows = [(i, row) for _t in table["tasks"] for i, row in enumerate(table["rows"])]
    return [(i, row, cell) for (i, row), cell in zip(rows, cells, strict=True)]


def cell_frame(cfg: dict, results: str | Path, tid: str) -> pd.DataFrame:
    """Tidy rows of a transfer / methods table (one per cell x dataset, plus cost rows)."""
    out = []
    for i, row, cell in _table_rows(cfg, tid):
        metric = task_metric(cfg, cell.task)
        sets = grid.task_eval_sets(cfg, cell.task)
        sv = res.seed_values(results, cell.runs, sets, metric, cell.fraction)
        base = {
            **_cell_keys(tid, cell),
            "q": q_percent(cfg["q"]) if cell.method in Q_METHODS else "",
            "row": i,
            "group": row.get("group", ""),
            "n_ok": sv.n_ok,
            "n_failed": sv.n_failed,
            "failed_seeds": ";".join(map(str, sv.failed_seeds)),
        }
        for d in sets:
            mean, std = res.mean_std(sv.values[d])
            role = "id" if d == sets[0] else "ood"
            out.append({**base, "dataset": d, "metric": metric, "role": role, "mean": mean, "std": std})
    df = pd.DataFrame(out)
    if cfg["tables"][tid].get("cost"):
        df = pd.concat([df, cost_frame(cfg, results, tid)], ignore_index=True)
    if tid in TRANSFER_MARK_TABLES:
        df = mark_transfers(cfg, results, df)
    return df


def cost_frame(cfg: dict, results: str | Path, tid: str) -> pd.DataFrame:
    seed0 = cfg["seeds"][0]
    unit = cfg["cost_unit_model"]
    out = []
    for i, row, cell in _table_rows(cfg, tid):
        flops = {m: res.forward_flops_per_epoch(results, cell.task, m, seed0) for m in {cell.main, unit}}
        f_ref = None
        if cell.method in costmod.REF_COST_METHODS:
            f_ref = res.forward_flops_per_epoch(results, cell.task, cell.ref, seed0)
        args = (cell.method, flops[cell.main], flops[unit], f_ref, float(cell.fraction))
        out.append(
            {
                **_cell_keys(tid, cell),
                "dataset": "",
                "metric": "cost",
                "q": q_percent(cfg["q"]) if cell.method in Q_METHODS else "",
                "role": "cost",
                "row": i,
                "group": row.get("group", ""),
                "mean": costmod.method_cost(*args),
                "std": float("nan"),
                "exact": costmod.method_cost(*args, sig_figs=None),
            }
        )
    return pd.DataFrame(out)


def _mean_ood(df: pd.DataFrame) -> float:
    return float(df.loc[df["role"] == "ood", "mean"].mean())


def _erm_mean_ood(cfg: dict, results: str | Path, task: str, model: str) -> float | None:
    """Mean OOD score (points) of ``model``'s full ERM runs; None if they are not available."""
    runs = [grid.ref_run(task, model, s) for s in cfg["seeds"]]
    if not all((res.run_dir(results, r) / "run.json").is_file() for r in runs):
        return None
    sets = ood_sets(cfg, task)
    sv = res.seed_values(results, runs, sets, task_metric(cfg, task))
    if sv.n_ok == 0:
        return None
    return float(np.mean([res.mean_std(sv.values[d])[0] for d in sets]))


def transfer_verdicts(cfg: dict, results: str | Path, df: pd.DataFrame) -> pd.DataFrame:
    """One row per full-budget DM row of ``df``: task, main, ref, mean OOD, ERM mean OOD, unsuccessful."""
    perf = df[df["role"] != "cost"]
    out = []
    for (task, main, ref), g in perf[perf["method"] == "dm"].groupby(["task", "main_model", "ref_model"], sort=False):
        erm = perf[(perf["task"] == task) & (perf["method"] == "erm") & (perf["main_model"] == main)]
        erm_ood = _mean_ood(erm) if not erm.empty else _erm_mean_ood(cfg, results, task, main)
        ood = _mean_ood(g)
        bad = erm_ood is not None and not math.isnan(ood) and ood < erm_ood - MARGIN
        out.append(
            {
                "task": task,
                "main_model": main,
                "ref_model": ref,
                "mean_ood": ood,
                "erm_mean_ood": erm_ood,
                "unsuccessful": bad,
            }
        )
    return pd.DataFrame(out, columns=["task", "main_model", "ref_model", "mean_ood", "erm_mean_ood", "unsuccessful"])


def mark_transfers(cfg: dict, results: str | Path, df: pd.DataFrame) -> pd.DataFrame:
    verdicts = transfer_verdicts(cfg, results, df)
    df = df.copy()
    df["marked"] = False
    df["mark_reason"] = ""
    for v in verdicts[verdicts["unsuccessful"]].itertuples():
        dm = (df["task"] == v.task) & (df["method"] == "dm") & (df["main_model"] == v.main_model)
        dm &= df["ref_model"] == v.ref_model
        df.loc[dm, "marked"] = True
        df.loc[dm, "mark_reason"] = (
            f"unsuccessful transfer: mean OOD {v.mean_ood:.2f} < ERM {v.erm_mean_ood:.2f} - {MARGIN:g}"
        )
        refrow = (df["task"] == v.task) & (df["method"] == "erm") & (df["main_model"] == v.ref_model)
        df.loc[refrow, "marked"] = True
        df.loc[refrow & (df["mark_reason"] == ""), "mark_reason"] = "reference model of an unsuccessful transfer"
    return df


def render_cells(cfg: dict, df: pd.DataFrame, style: str) -> tuple[str, list[str]]:
    """Markdown or LaTeX body of a cell table: one block per task."""
    blocks = []
    footnotes = []
    has_cost = (df["role"] == "cost").any()
    for task in dict.fromkeys(df["task"]):
        tdf = df[df["task"] == task]
        sets = grid.task_eval_sets(cfg, task)
        header = ["Mode", "Main Model", "Ref. Model"] + (["Cost"] if has_cost else []) + sets
        lines: list = []
        gray: list[bool] = []
        group = ""
        for row_idx, r in tdf[tdf["role"] != "cost"].groupby("row", sort=True):
            first = r.iloc[0]
            g = first["group"] if isinstance(first["group"], str) else ""
            if g and g != group:
                lines.append(g)
                gray.append(False)
            group = g
            mode = METHOD_LABEL[first["method"]]
            if first["method"] == "ftft":
                mode += f" ({first['step_fraction']})"
            if int(first["n_failed"]):
                mode += FAILED_MARK
                footnotes.append(
                    f"{FAILED_MARK} {task} {mode.rstrip(FAILED_MARK)} {model_label(cfg, first['main_model'])} / "
                    f"{ref_label(cfg, first['method'], first['ref_model'])}: "
                    f"{int(first['n_failed'])} failed run(s) excluded (seed(s) {first['failed_seeds']})."
                )
            marked = bool(first.get("marked", False))
            if marked:
                mode += GRAY_MARK
            cells = [mode, model_label(cfg, first["main_model"]), ref_label(cfg, first["method"], first["ref_model"])]
            if has_cost:
                c = tdf[(tdf["role"] == "cost") & (tdf["row"] == row_idx)]
                cells.append(f"{c['mean'].iloc[0]:.1f}" if not c.empty else "")
            by_set = r.set_index("dataset")
            cells += [fmt_score(by_set.at[d, "mean"], by_set.at[d, "std"], style) for d in sets]
            lines.append(cells)
            gray.append(marked)
        title = f"{task.upper()} ({task_metric(cfg, task).replace('_', '-')}, %)"
        if style == "md":
            md_rows = [r if isinstance(r, list) else [f"*{r}*"] + [""] * (len(header) - 1) for r in lines]
            blocks.append(f"**{title}**\n\n" + md_table(header, md_rows))
        else:
            blocks.append(f"% {title}\n" + tex_table(header, lines, gray))
    return "\n\n".join(blocks), footnotes


# --- Table 4: FLOPs ----------------------------------------------------------------------------


def table4_frame(cfg: dict, results: str | Path) -> pd.DataFrame:
    seed0 = cfg["seeds"][0]
    out = []
    for m in cfg.get("flops_models", []):
        for t in cfg["tasks"]:
            f = res.forward_flops_per_epoch(results, t, m, seed0)
            out.append(
                {
                    "table": "4",
                    "task": t,
                    "main_model": m,
                    "ref_model": "",
                    "method": "",
                    "step_fraction": "",
                    "dataset": id_set(cfg, t),
                    "metric": "pflops",
                    "q": "",
                    "mean": f / 1e15,
                    "std": float("nan"),
                    "flops": f,
                    "train_source": cfg["tasks"][t]["train"]["source"],
                }
            )
    return pd.DataFrame(out)


def render_table4(cfg: dict, df: pd.DataFrame, style: str) -> str:
    tasks = list(dict.fromkeys(df["task"]))
    header = ["Model"] + [f"{t.upper()}: {cfg['tasks'][t]['train']['source']}" for t in tasks]
    rows = []
    for m in dict.fromkeys(df["main_model"]):
        r = df[df["main_model"] == m].set_index("task")
        rows.append([model_label(cfg, m)] + [fmt_num(r.at[t, "mean"]) for t in tasks])
    return md_table(header, rows) if style == "md" else tex_table(header, rows, aligns="l" + "r" * len(tasks))


# --- Table 5: MultiBootstrap ---------------------------------------------------------------------


def system_predictions(results: str | Path, runs, datasets: list[str]):
    """(preds [S_ok, N], labels [N], failed seeds) of the ok runs, aligned on (dataset, uid)."""
    ok, failed = res.split_failed(results, runs)
    preds, keys, labels = [], None, None
    for r in ok:
        p = res.predictions(results, r, datasets)
        k = p["dataset"].astype(str) + "\x00" + p["uid"].astype(str)
        if keys is None:
            keys, labels = k.to_numpy(), p["label"].to_numpy(np.int64)
        elif len(k) != len(keys) or not np.array_equal(k.to_numpy(), keys):
            raise DataError(f"{res.run_dir(results, r)}: predictions cover other instances than seed {ok[0].seed}")
        preds.append(res.predicted_labels(p))
    arr = np.stack(preds) if preds else np.zeros((0, 0), np.int64)
    return arr, labels, keys, [r.seed for r in failed]


def table5_frame(cfg: dict, results: str | Path) -> pd.DataFrame:
    from .stats import multibootstrap

    sig = cfg["significance"]
    out = []
    for task in grid.significance_tasks(cfg):
        metric = task_metric(cfg, task)
        sets = ood_sets(cfg, task)
        systems = grid.significance_runs(cfg, task)
        erm, labels, keys, erm_failed = system_predictions(results, systems["erm"], sets)
        for ref in sig["refs"]:
            dm, labels_dm, keys_dm, dm_failed = system_predictions(results, systems[ref], sets)
            if len(dm) and len(erm) and not np.array_equal(keys, keys_dm):
                raise DataError(f"task {task}: DM ({ref}) and ERM predictions cover different OOD instances")
            if len(dm) and len(erm):
                diff, p = multibootstrap(dm, erm, labels, metric, int(sig["samples"]), int(sig.get("seed", 0)))
                diff *= 100
            else:
                diff, p = float("nan"), float("nan")
            base = {
                "table": "5",
                "task": task,
                "main_model": sig["main"],
                "ref_model": ref,
                "method": "dm",
                "step_fraction": "1",
                "dataset": "ood_pooled",
                "q": q_percent(cfg["q"]),
                "std": float("nan"),
                "task_metric": metric,
                "n_instances": 0 if labels is None else len(labels),
                "n_seeds_dm": len(dm),
                "n_seeds_erm": len(erm),
                "n_failed": len(dm_failed) + len(erm_failed),
                "failed_seeds": f"dm:{';'.join(map(str, dm_failed))} erm:{';'.join(map(str, erm_failed))}",
                "samples": int(sig["samples"]),
            }
            out.append({**base, "metric": "mean_diff", "mean": diff})
            out.append({**base, "metric": "p_value", "mean": p})
    return pd.DataFrame(out)


def fmt_p(p: float, style: str) -> str:
    if math.isnan(p):
        return "–"
    s = f"{p:.4f}"
    if p < 0.05:
        return f"**{s}**" if style == "md" else rf"\textbf{{{s}}}"
    if p < 0.06:
        return f"*{s}*" if style == "md" else rf"\emph{{{s}}}"
    return s


def render_table5(cfg: dict, df: pd.DataFrame, style: str) -> str:
    header = ["Task", "Ref. Model", "Mean", "p-value"]
    rows = []
    for (task, ref), g in df.groupby(["task", "ref_model"], sort=False):
        v = g.set_index("metric")["mean"]
        label = model_label(cfg, ref) + (FAILED_MARK if int(g["n_failed"].iloc[0]) else "")
        rows.append([task.upper(), label, fmt_num(v["mean_diff"]), fmt_p(v["p_value"], style)])
    return md_table(header, rows) if style == "md" else tex_table(header, rows, aligns="llrr")


# --- Table 8: easy ratio -------------------------------------------------------------------------


def table8_frame(cfg: dict, results: str | Path) -> pd.DataFrame:
    from . import datamap

    er = cfg["easy_ratio"]
    verdicts = pd.DataFrame(columns=["task", "ref_model", "unsuccessful"])
    frames = [cell_frame(cfg, results, t) for t in TRANSFER_MARK_TABLES if t in cfg.get("tables", {})]
    if frames:
        verdicts = transfer_verdicts(cfg, results, pd.concat(frames, ignore_index=True))
    out = []
    for task in cfg["tasks"]:
        for ref in er["refs"]:
            maps = [datamap.read(Path(results) / grid.datamap_path(task, ref, s)) for s in cfg["seeds"]]
            v = verdicts[(verdicts["task"] == task) & (verdicts["ref_model"] == ref)]
            marked = bool(v["unsuccessful"].any()) if len(v) else False
            for q in er["qs"]:
                vals = [100 * datamap.easy_ratio(m, q) for m in maps]
                out.append(
                    {
                        "table": "8",
                        "task": task,
                        "main_model": "",
                        "ref_model": ref,
                        "method": "",
                        "step_fraction": "",
                        "dataset": id_set(cfg, task),
                        "metric": "easy_ratio",
                        "q": q_percent(q),
                        "mean": float(np.mean(vals)),
                        "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"),
                        "n_seeds": len(vals),
                        "marked": marked,
                        "transfers_judged": len(v),
                    }
                )
    return pd.DataFrame(out)


def render_table8(cfg: dict, df: pd.DataFrame, style: str) -> str:
    tasks = list(dict.fromkeys(df["task"]))
    qs = list(dict.fromkeys(df["q"]))
    header = ["Ref. Model"] + [f"{t.upper()} q={q}%" for t in tasks for q in qs]
    rows, gray = [], []
    for ref in dict.fromkeys(df["ref_model"]):
        r = df[df["ref_model"] == ref]
        cells = [model_label(cfg, ref)]
        any_mark = False
        for t in tasks:
            for q in qs:
                c = r[(r["task"] == t) & (r["q"] == q)].iloc[0]
                mark = GRAY_MARK if c["marked"] else ""
                any_mark |= bool(c["marked"])
                cells.append(f"{c['mean']:.2f}%{mark}")
        rows.append(cells)
        gray.append(any_mark)
    return (
        md_table(header, rows) if style == "md" else tex_table(header, rows, gray, aligns="l" + "r" * (len(header) - 1))
    )


# --- captions and dispatch -----------------------------------------------------------------------


def caption(cfg: dict, tid: str) -> str:
    n = len(cfg["seeds"])
    q = q_percent(cfg["q"])
    common = (
        f"Mean<sub>std</sub> in % over {n} seeds (sample std, ddof=1); failed runs (run.json status "
        f"'failed') are excluded and counted ({FAILED_MARK}). Metric per task: "
        + ", ".join(f"{t} {task_metric(cfg, t)}" for t in cfg["tasks"])
        + f". DM = the {q}% most ambiguous training instances of the reference model's data map; "
        "Random = a random subset of the same size."
    )
    if tid in ("1", "6"):
        return "Transfer of training dynamics across model sizes and pretraining methods. " + common
    if tid in ("2", "7"):
        return (
            "Conditions for a successful transfer. "
            + common
            + f" {GRAY_MARK} (gray in the paper and in the LaTeX): a DM row is an unsuccessful transfer if its mean OOD "
            f"score (average over the OOD sets) is more than {MARGIN:g} point below the ERM run of the same main "
            "model; the ERM row of its reference model is marked too."
        )
    if tid in ("3", "9"):
        unit = model_label(cfg, cfg["cost_unit_model"])
        return (
            "Methods compared (FTFT = DM with an efficient reference model and a reduced step budget, read "
            f"{'at the checkpoint of the full run' if cfg['methods']['ftft']['mode'] == 'halting' else 'from runs scheduled for that budget'}). "
            + common
            + f" Cost in units of one full ERM run of {unit}: (F_ref + F_main * fraction) / F_unit for DM/FTFT/JTT "
            "and F_main / F_unit for ERM/Random/PoE, F_m = forward FLOPs of one epoch (Table 4, first seed); each "
            "ratio F_m / F_unit rounded to 2 significant figures as the paper's printed costs are (unrounded values "
            "in the CSV column 'exact')."
        )
    if tid == "4":
        return (
            "Forward PFLOPs (1e15) of one epoch over the task's training set, from run.json "
            "flops.forward_per_epoch of each model's ERM run (first seed). Per token (Kaplan et al. 2020): "
            "C = 2 N_nonembed + 2 n_layer n_ctx d_model, summed over the real tokens of every training instance."
        )
    if tid == "5":
        sig = cfg["significance"]
        return (
            f"MultiBootstrap (Sellam et al. 2022): DM with {model_label(cfg, sig['main'])} as main model vs ERM, all OOD "
            f"test sets of a task pooled, final checkpoints, {sig['samples']} samples (seed {sig.get('seed', 0)}); seeds "
            "resampled independently per system and instances resampled jointly. Mean = mean difference DM - ERM "
            "in points of the task metric; p-value = fraction of samples with difference <= 0 (one-sided). "
            "Bold: p < 0.05; italics: 0.05 <= p < 0.06."
        )
    if tid == "8":
        return (
            "Easy ratio: % of training instances that are neither ambiguous (top q% variability) nor "
            "hard-to-learn (bottom q% confidence) in each reference model's data map, mean over "
            f"{n} seeds. {GRAY_MARK} (gray): the reference model has an unsuccessful DM transfer in "
            "Tables 2/7 (same rule); references without such a transfer in the config are not marked."
        )
    return ""


def build(cfg: dict, results: str | Path, tid: str) -> pd.DataFrame:
    tid = str(tid)
    if tid == "4":
        df = table4_frame(cfg, results)
    elif tid == "5":
        df = table5_frame(cfg, results)
    elif tid == "8":
        df = table8_frame(cfg, results)
    elif tid in cfg.get("tables", {}):
        df = cell_frame(cfg, results, tid)
    else:
        raise FtftError(
            f"table {tid} is not defined (config 'tables' has {sorted(cfg.get('tables', {}))} plus 4, 5, 8)"
        )
    for c in ("n_ok", "n_failed"):
        if c in df.columns:
            df[c] = df[c].astype("Int64")
    front = [c for c in KEYS + ["mean", "std"] if c in df.columns]
    return df[front + [c for c in df.columns if c not in front]]


def render(cfg: dict, df: pd.DataFrame, tid: str, style: str) -> str:
    tid = str(tid)
    footnotes: list[str] = []
    if tid == "4":
        body = render_table4(cfg, df, style)
    elif tid == "5":
        body = render_table5(cfg, df, style)
        if (df["n_failed"] > 0).any():
            footnotes.append(f"{FAILED_MARK} some runs failed and were excluded (see CSV column failed_seeds).")
    elif tid == "8":
        body = render_table8(cfg, df, style)
    else:
        body, footnotes = render_cells(cfg, df, style)
    cap = caption(cfg, tid)
    notes = ([DEMO_NOTE] if cfg.get("mode") == "demo" else []) + footnotes
    if style == "md":
        text = f"# Table {tid}\n\n{cap}\n\n{body}\n"
        if notes:
            text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
        return text
    cap_tex = tex_escape(cap.replace("Mean<sub>std</sub>", "@MEANSTD@")).replace("@MEANSTD@", r"Mean$_{\mathrm{std}}$")
    note_tex = "".join(f"\n\\par\\footnotesize {tex_escape(n)}" for n in notes)
    return (
        "% generated by `ftft table`; needs \\usepackage{booktabs} and \\usepackage[table]{xcolor}\n"
        "\\begin{table}[t]\n\\centering\n\\small\n"
        f"{body}{note_tex}\n\\caption{{{cap_tex}}}\n\\label{{tab:table{tid}}}\n\\end{{table}}\n"
    )


def write(cfg: dict, results: str | Path, tid: str, prefix: str | Path) -> pd.DataFrame:
    df = build(cfg, results, tid)
    prefix = Path(prefix)
    write_text(prefix.with_name(prefix.name + ".csv"), df.to_csv(index=False))
    write_text(prefix.with_name(prefix.name + ".md"), render(cfg, df, tid, "md"))
    write_text(prefix.with_name(prefix.name + ".tex"), render(cfg, df, tid, "tex"))
    return df


def table_inputs(cfg: dict, tid: str) -> list[str]:
    """Files (relative to the results root) that ``ftft table --id tid`` reads."""
    tid = str(tid)
    runs: set[grid.Run] = set()
    files: list[str] = []
    known = grid.all_runs(cfg)
    seed0 = cfg["seeds"][0]
    if tid == "4":
        runs |= {grid.ref_run(t, m, seed0) for m in cfg.get("flops_models", []) for t in cfg["tasks"]}
    elif tid == "5":
        for t in grid.significance_tasks(cfg):
            for rs in grid.significance_runs(cfg, t).values():
                runs.update(rs)
        files += [f"{r.path}/predictions.parquet" for r in sorted(runs)]
    else:
        mark_tables = [t for t in TRANSFER_MARK_TABLES if t in cfg.get("tables", {})]
        tables = mark_tables if tid == "8" else [tid]
        for t in tables:
            cells = grid.table_cells(cfg, t)
            for c in cells:
                runs.update(c.runs)
                if t in TRANSFER_MARK_TABLES and c.method == "dm":
                    runs.update(r for r in (grid.ref_run(c.task, c.main, s) for s in cfg["seeds"]) if r in known)
            if cfg["tables"][t].get("cost"):
                for c in cells:
                    for m in {c.main, c.ref, cfg["cost_unit_model"]} - {"none"}:
                        runs.add(grid.ref_run(c.task, m, seed0))
        if tid == "8":
            files += [
                grid.datamap_path(t, r, s)
                for t in cfg["tasks"]
                for r in cfg["easy_ratio"]["refs"]
                for s in cfg["seeds"]
            ]
    files += [f"{r.path}/{f}" for r in sorted(runs) for f in ("run.json", "metrics.csv")]
    return sorted(set(files))


# --- CLI -------------------------------------------------------------------------------------------


def load_config_json(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise FtftError(f"config JSON not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise FtftError(f"{path}: not valid JSON: {exc}") from exc


def add_arguments(parser) -> None:
    parser.add_argument("--id", required=True, help="table number (1-9)")
    parser.add_argument("--config-json", required=True, help="the merged workflow config as JSON")
    parser.add_argument("--results", required=True, help="results root (holds runs/ and datamaps/)")
    parser.add_argument("--out-prefix", required=True, help="output path without extension")


def run(args) -> int:
    cfg = load_config_json(args.config_json)
    df = write(cfg, args.results, args.id, args.out_prefix)
    log.info("table %s: %d rows -> %s.{csv,md,tex}", args.id, len(df), args.out_prefix)
    return 0
