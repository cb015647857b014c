"""Paper Tables 1-9 (and A1) from run outputs: ``ftft table --id N`` writes ``PREFIX.csv`` (tidy, keyed
like ``src/ftft/paper/table*.csv`` so ``ftft compare`` can join them) and ``PREFIX.{md,tex,html}``.

``TABLES``, ``KINDS`` (needs, build, view, caption): docs/ARCHITECTURE.md. Scores in % (mean and sample std over
the seeds that succeeded); failed runs are excluded and counted (``n_failed``, footnote ``†``).
"""

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from . import cost as costmod
from . import grid, methods, render
from .artefacts import Registry
from .config import active_tasks, parse_fraction
from .errors import DataError
from .io import read_csv, write_text
from .labels import (
    budgets_phrase,
    data_note,
    dataset_label,
    frac_label,
    id_set,
    metric_label,
    model_label,
    ood_sets,
    q_percent,
    ref_label,
    seeds_phrase,
    task_label,
    task_metric,
    train_title,
)  # fmt: skip
from .results import Results, mean_std

log = logging.getLogger(__name__)

KEYS = ["table", "task", "main_model", "ref_model", "method", "step_fraction", "dataset", "metric", "q"]
MARGIN = 1.0  # points of mean OOD score below ERM that make a transfer unsuccessful
FAILED_MARK = "†"
GRAY_MARK = "‡"
CSV_FLOAT = "%.10g"  # 10 significant figures: exact for the printed values, no float noise (57, not 56.99999999999999)


# the paper's tables in order: id -> (kind, role); a "weak" table marks unsuccessful transfers (gray rows)
TABLES = {
    "1": ("cells", "transfer"), "2": ("cells", "weak"), "3": ("cells", "methods"), "4": ("flops", ""),
    "5": ("significance", ""), "6": ("cells", "transfer"), "7": ("cells", "weak"), "8": ("easy", ""),
    "9": ("cells", "methods"), "A1": ("limiting", ""),
}  # fmt: skip
TRANSFER_MARK_TABLES = tuple(t for t, (_, role) in TABLES.items() if role == "weak")


def failed_note(what: str, row: pd.Series) -> str | None:
    """The footnote of a cell (a row of its tidy frame) with failed runs (None without); says so when no seed
    succeeded."""
    seeds = [x for x in str(row["failed_seeds"]).split(";") if x]
    why = str(row["failure_reasons"]).replace(" | ", "; ") or "see run.json"  # sorted and unique (cells_build)
    if not seeds:
        return None
    if row["n_ok"] == 0:
        return f"{FAILED_MARK} {what}: no successful seed (all {len(seeds)} runs failed: {why}); the cell is empty."
    return f"{FAILED_MARK} {what}: {len(seeds)} failed run(s) excluded (seed(s) {', '.join(seeds)}: {why})."


def cell_name(cfg: dict, task: str, method: str, fraction: str, main: str, ref: str) -> tuple[str, str]:
    """(mode, name) of a table cell's row: ``FTFT (1/3)`` and ``NLI FTFT (1/3) ELECTRA-Large / ELECTRA-Small``."""
    mode = methods.get(method).label + (f" ({fraction})" if method == "ftft" else "")
    return mode, f"{task_label(task)} {mode} {model_label(cfg, main)} / {ref_label(cfg, method, ref)}"


# --- cell tables: 1/6, 2/7, 3/9 ----------------------------------------------------------------


def cells_needs(cfg: dict, tid: str) -> grid.Needs:
    needs = grid.Needs()
    known = grid.all_runs(cfg)
    seed0 = cfg["seeds"][0]
    for c in grid.table_cells(cfg, tid):
        needs.runs.update(c.runs)
        if tid in TRANSFER_MARK_TABLES and c.method == "dm":  # the ERM baseline of the main model
            needs.runs.update(r for r in (grid.ref_run(c.task, c.main, s) for s in cfg["seeds"]) if r in known)
    needs.runs.update(grid.ref_run(t, m, seed0) for t, m in grid.cost_models(cfg, tid))
    return needs


def cells_build(cfg: dict, res: Results, tid: str) -> pd.DataFrame:
    """Tidy rows of a transfer / methods table (one per cell x dataset, plus cost rows)."""
    out = []
    for cell in grid.table_cells(cfg, tid):
        metric = task_metric(cfg, cell.task)
        sets = grid.task_eval_sets(cfg, cell.task)
        sv = res.seed_values(cell.runs, sets, metric, cell.fraction)
        base = {
            "task": cell.task,
            "main_model": cell.main,
            "ref_model": "" if cell.ref == "none" else cell.ref,
            "method": cell.method,
            "step_fraction": frac_label(cell.fraction),
            "q": q_percent(cfg["q"]) if methods.get(cell.method).uses_q else "",
            "row": cell.row,
            "group": cell.group,
            "n_ok": sv.n_ok,
            "n_failed": sv.n_failed,
            "failed_seeds": ";".join(map(str, sv.failed_seeds)),
            "failure_reasons": " | ".join(sorted(set(sv.reasons))),
        }
        for d in sets:
            mean, std = mean_std(sv.values[d])
            role = "id" if d == sets[0] else "ood"
            out.append({**base, "dataset": d, "metric": metric, "role": role, "mean": mean, "std": std})
        if cell.task in cfg["tables"][tid]["cost"]:
            out.append(cost_row(cfg, res, tid, cell, base))
    df = pd.DataFrame(out)
    if tid in TRANSFER_MARK_TABLES:
        df = mark_transfers(cfg, res, df)
    return df


def cost_row(cfg: dict, res: Results, tid: str, cell: grid.Cell, base: dict) -> dict:
    seed0, unit = cfg["seeds"][0], cfg["cost_unit_model"]
    f = {m: res.forward_flops_per_epoch(cell.task, m, seed0) for m in {cell.main, unit}}
    f_ref = res.forward_flops_per_epoch(cell.task, cell.ref, seed0) if methods.get(cell.method).ref_cost else None
    args = (cell.method, f[cell.main], f[unit], f_ref, float(cell.fraction))
    return {
        **base,
        "dataset": "",
        "metric": "cost",
        "role": "cost",
        "mean": costmod.method_cost(*args),
        "std": float("nan"),
        "exact": costmod.method_cost(*args, sig_figs=None),
    }


def _mean_ood(df: pd.DataFrame) -> float:
    return float(df.loc[df["role"] == "ood", "mean"].mean())


def mean_ood(cfg: dict, res: Results, runs, task: str, fraction=1) -> float:
    """Mean over the OOD sets of the seed means (points); NaN without a successful seed."""
    sets = ood_sets(cfg, task)
    sv = res.seed_values(runs, sets, task_metric(cfg, task), fraction)
    return float(np.mean([mean_std(sv.values[d])[0] for d in sets])) if sv.n_ok else float("nan")


def mark_transfers(cfg: dict, res: Results, df: pd.DataFrame) -> pd.DataFrame:
    """Mark unsuccessful DM transfers (mean OOD more than MARGIN points below ERM of the same
    main model) and the ERM rows of their reference models (the paper's gray rows)."""
    df = df.copy()
    df["marked"] = False
    df["unsuccessful"] = False
    df["mark_reason"] = ""
    perf = df[df["role"] != "cost"]
    for (task, main, ref), g in perf[perf["method"] == "dm"].groupby(["task", "main_model", "ref_model"], sort=False):
        erm = perf[(perf["task"] == task) & (perf["method"] == "erm") & (perf["main_model"] == main)]
        erm_runs = [grid.ref_run(task, main, s) for s in cfg["seeds"]]  # off the table: main's full ERM runs
        known = set(erm_runs) <= grid.all_runs(cfg)
        erm_ood = _mean_ood(erm) if not erm.empty else mean_ood(cfg, res, erm_runs, task) if known else math.nan
        ood = _mean_ood(g)
        if math.isnan(ood) or math.isnan(erm_ood) or not ood < erm_ood - MARGIN:
            continue
        dm = (df["task"] == task) & (df["method"] == "dm") & (df["main_model"] == main) & (df["ref_model"] == ref)
        df.loc[dm, ["marked", "unsuccessful"]] = True
        df.loc[dm, "mark_reason"] = f"unsuccessful transfer: mean OOD {ood:.2f} < ERM {erm_ood:.2f} - {MARGIN:g}"
        refrow = (df["task"] == task) & (df["method"] == "erm") & (df["main_model"] == ref)
        df.loc[refrow, "marked"] = True
        df.loc[refrow & (df["mark_reason"] == ""), "mark_reason"] = "reference model of an unsuccessful transfer"
    return df


def cells_view(cfg: dict, df: pd.DataFrame, tid: str) -> tuple[list[render.Block], list[str]]:
    blocks, notes = [], []
    for task in dict.fromkeys(df["task"]):
        tdf, sets = df[df["task"] == task], grid.task_eval_sets(cfg, task)
        has_cost = task in cfg["tables"][tid]["cost"]
        columns = [render.Column(*dataset_label(cfg, task, d)) for d in sets]
        columns = [render.Column("Cost", best=None, digits=1), *columns] if has_cost else columns
        cost = tdf[tdf["role"] == "cost"].set_index("row")["mean"]
        rows: list = []
        group = ""
        for row, r in tdf[tdf["role"] != "cost"].groupby("row", sort=True):
            first = r.iloc[0]
            if first["group"] and first["group"] != group:
                rows.append(first["group"])
            group = first["group"]
            keys = first[["method", "step_fraction", "main_model", "ref_model"]]
            mode, name = cell_name(cfg, task, *keys)
            note = failed_note(name, first)
            notes += [note] if note else []
            marked = bool(first.get("marked", False))
            mode += (FAILED_MARK if note else "") + (GRAY_MARK if marked else "")
            by_set = r.set_index("dataset")
            values = [render.Value(cost.get(row))] if has_cost else []
            values += [render.Value(by_set.at[d, "mean"], by_set.at[d, "std"]) for d in sets]
            ref = ref_label(cfg, first["method"], first["ref_model"])
            rows.append(render.Row([mode, model_label(cfg, first["main_model"]), ref], values, gray=marked))
        title = f"{task_label(task)} ({metric_label(task_metric(cfg, task))}, %)"
        blocks.append(render.Block(title, ["Mode", "Main Model", "Ref. Model"], columns, rows))
    return blocks, notes


# --- Table 4: FLOPs ------------------------------------------------------------------------------


def flops_needs(cfg: dict, tid: str) -> grid.Needs:
    seed0 = cfg["seeds"][0]
    return grid.Needs(runs={grid.ref_run(t, m, seed0) for m in cfg["flops_models"] for t in active_tasks(cfg)})


def flops_build(cfg: dict, res: Results, tid: str) -> pd.DataFrame:
    seed0 = cfg["seeds"][0]
    out = []
    for m in cfg["flops_models"]:
        for t in active_tasks(cfg):
            for metric, padded in (("pflops", True), ("pflops_real", False)):
                f = res.forward_flops_per_epoch(t, m, seed0, padded=padded)  # paper unit: 1e12
                out.append({"task": t, "main_model": m, "dataset": id_set(cfg, t), "metric": metric, "mean": f / 1e12,
                            "std": float("nan"), "flops": f, "train_source": cfg["tasks"][t]["train"]["source"]})  # fmt: skip
    return pd.DataFrame(out)


def flops_view(cfg: dict, df: pd.DataFrame, tid: str) -> tuple[list[render.Block], list[str]]:
    tasks = list(dict.fromkeys(df["task"]))
    columns = [
        render.Column(f"{task_label(t)}: {train_title(cfg, t)}", group=group, best=None)
        for group in ("padded tokens (as the paper)", "real tokens")
        for t in tasks
    ]
    v = df.set_index(["main_model", "metric", "task"])["mean"]
    rows = [
        render.Row(
            [model_label(cfg, m)], [render.Value(v[(m, k, t)]) for k in ("pflops", "pflops_real") for t in tasks]
        )
        for m in dict.fromkeys(df["main_model"])
    ]
    return [render.Block("", ["Model"], columns, rows)], []


# --- Table 5: MultiBootstrap ---------------------------------------------------------------------


def significance_needs(cfg: dict, tid: str) -> grid.Needs:
    runs = {r for t in grid.significance_tasks(cfg) for rs in grid.significance_runs(cfg, t).values() for r in rs}
    return grid.Needs(runs=set(runs), predictions=set(runs))


def system_predictions(res: Results, runs, datasets: list[str], fraction=1):
    """(preds [S_ok, N], labels [N], keys [N], failed seeds) of the runs that succeeded at ``fraction`` of the
    full budget, aligned on (dataset, uid); also what ``ftft claims`` compares."""
    ok = [r for r in runs if not res.failure_at(r, fraction)]
    preds, keys, labels = [], None, None
    for r in ok:
        p = res.predictions(r, datasets, fraction)
        k = (p["dataset"].astype(str) + "\x00" + p["uid"].astype(str)).to_numpy()
        if keys is None:
            keys, labels = k, p["label"].to_numpy(np.int64)
        elif len(k) != len(keys) or not np.array_equal(k, keys):
            raise DataError(
                f"{res.run_path(r, 'predictions.parquet')}: predictions cover other instances than seed {ok[0].seed}"
            )
        cols = sorted((c for c in p.columns if c.startswith("prob_")), key=lambda c: int(c.split("_")[1]))
        preds.append(p[cols].to_numpy(np.float32).argmax(axis=1).astype(np.int64))
    arr = np.stack(preds) if preds else np.zeros((0, 0), np.int64)
    return arr, labels, keys, [r.seed for r in runs if r not in ok]


def compare_systems(
    cfg: dict, res: Results, a_runs, b_runs, task: str, samples: int, seed: int, what: str, margin=0.0, a_fraction=1
):
    """(mean pooled-OOD difference A - B in points, one-sided MultiBootstrap p-value, (A, B, labels, failed seeds of
    A, of B)); NaN without a successful seed on a side. ``margin`` in points; ``what`` names the two in the error."""
    from .stats import multibootstrap

    sets = ood_sets(cfg, task)
    a, labels, keys, a_failed = system_predictions(res, a_runs, sets, a_fraction)
    b, _, keys_b, b_failed = system_predictions(res, b_runs, sets)
    diff = p = float("nan")
    if len(a) and len(b):
        if not np.array_equal(keys, keys_b):
            raise DataError(f"task {task}: {what} cover different OOD instances")
        diff, p = multibootstrap(a, b, labels, task_metric(cfg, task), samples, seed, margin / 100)
    return 100 * diff, p, (a, b, labels, a_failed, b_failed)


def significance_build(cfg: dict, res: Results, tid: str) -> pd.DataFrame:
    sig = cfg["significance"]
    out = []
    for task in grid.significance_tasks(cfg):
        systems = grid.significance_runs(cfg, task)
        for ref in sig["refs"][task]:
            what = f"DM ({ref}) and ERM predictions"
            diff, p, (dm, erm, labels, dm_failed, erm_failed) = compare_systems(
                cfg, res, systems[ref], systems["erm"], task, sig["samples"], sig["seed"], what
            )
            base = {"task": task, "main_model": sig["main"], "ref_model": ref, "method": "dm",
                    "step_fraction": "1", "dataset": "ood_pooled", "q": q_percent(cfg["q"]), "std": float("nan"),
                    "task_metric": task_metric(cfg, task), "n_instances": 0 if labels is None else len(labels),
                    "n_seeds_dm": len(dm), "n_seeds_erm": len(erm), "n_failed": len(dm_failed) + len(erm_failed),
                    "failed_seeds": "; ".join(f"{m} seed {', '.join(map(str, f))}" for m, f in (("DM", dm_failed),
                                              ("ERM", erm_failed)) if f),
                    "samples": sig["samples"]}  # fmt: skip
            out.append({**base, "metric": "mean_diff", "mean": diff})
            out.append({**base, "metric": "p_value", "mean": p})
    return pd.DataFrame(out)


def significance_view(cfg: dict, df: pd.DataFrame, tid: str) -> tuple[list[render.Block], list[str]]:
    rows, notes = [], []
    for (task, ref), g in df.groupby(["task", "ref_model"], sort=False):
        v = g.set_index("metric")["mean"]
        failed = int(g["n_failed"].iloc[0])
        p = v["p_value"]
        mark = " (p < 0.05)" if p < 0.05 else " (0.05 <= p < 0.06)" if p < 0.06 else ""  # False for NaN
        p_text = "–" if math.isnan(p) else f"{p:.4f}{mark}"
        label = model_label(cfg, ref) + (FAILED_MARK if failed else "")
        rows.append(render.Row([task_label(task), label], [render.Value(v["mean_diff"]), render.Value(text=p_text)]))
        if failed:
            notes.append(
                f"{FAILED_MARK} {task_label(task)} {model_label(cfg, ref)}: {failed} failed run(s) excluded ({g['failed_seeds'].iloc[0]})."
            )
    columns = [render.Column("Mean diff. (points)", best=None), render.Column("p-value", best=None)]
    return [render.Block("", ["Task", "Ref. Model"], columns, rows)], notes


# --- Table 8: easy ratio -------------------------------------------------------------------------


def easy_needs(cfg: dict, tid: str) -> grid.Needs:
    maps = {(t, r, s) for t in active_tasks(cfg) for r in cfg["easy_ratio"]["refs"] for s in cfg["seeds"]}
    return grid.Needs(datamaps=maps, tables={t for t in TRANSFER_MARK_TABLES if t in table_ids(cfg)})


def easy_build(cfg: dict, res: Results, tid: str) -> pd.DataFrame:
    from . import datamap

    verdicts = _transfer_verdicts(res, [t for t in TRANSFER_MARK_TABLES if t in table_ids(cfg)])
    out = []
    for task in active_tasks(cfg):
        for ref in cfg["easy_ratio"]["refs"]:
            maps = [res.datamap(task, ref, s) for s in cfg["seeds"]]
            ok = [m for m in maps if m is not None]
            v = verdicts[(verdicts["task"] == task) & (verdicts["ref_model"] == ref)]
            for q in cfg["easy_ratio"]["qs"]:
                vals = [100 * datamap.easy_ratio(m, q) for m in ok]
                mean, std = mean_std(vals, scale=1.0)
                out.append({"task": task, "ref_model": ref, "dataset": id_set(cfg, task), "metric": "easy_ratio",
                            "q": q_percent(q), "mean": mean, "std": std, "n_seeds": len(ok),
                            "n_failed": len(maps) - len(ok), "marked": bool(v["unsuccessful"].any()),
                            "transfers_judged": len(v)})  # fmt: skip
    return pd.DataFrame(out)


def _transfer_verdicts(res: Results, tids: list[str]) -> pd.DataFrame:
    """(task, ref_model, unsuccessful) of the DM rows of Tables 2/7, read from their CSV outputs."""
    frames = []
    for t in tids:
        path = Path(res.layout.table(t, "csv"))
        if not path.is_file():
            raise DataError(f"missing table (Table 8 reads it): {path}")
        df = read_csv(path, "table", dtype={k: str for k in KEYS}, keep_default_na=False)
        frames.append(df[df["method"] == "dm"])
    if not frames:
        return pd.DataFrame(columns=["task", "ref_model", "unsuccessful"])
    df = pd.concat(frames, ignore_index=True)
    df["unsuccessful"] = df["unsuccessful"].astype(str).str.lower() == "true"
    return df.groupby(["task", "main_model", "ref_model"], as_index=False)["unsuccessful"].any()


def easy_view(cfg: dict, df: pd.DataFrame, tid: str) -> tuple[list[render.Block], list[str]]:
    tasks = list(dict.fromkeys(df["task"]))
    qs = list(dict.fromkeys(df["q"]))
    columns = [render.Column(f"{q}%", group=f"{task_label(t)}: {train_title(cfg, t)}") for t in tasks for q in qs]
    rows = []
    for ref in dict.fromkeys(df["ref_model"]):
        r = df[df["ref_model"] == ref].set_index(["task", "q"])
        values = [
            render.Value(r.at[(t, q), "mean"], suffix="%" + (GRAY_MARK if r.at[(t, q), "marked"] else ""))
            for t in tasks
            for q in qs
        ]
        rows.append(render.Row([model_label(cfg, ref)], values, gray=bool(r["marked"].any())))
    notes = [
        f"{model_label(cfg, ref)} ({task_label(t)}): {int(n)} of {len(cfg['seeds'])} reference runs failed; their data maps are left out."
        for (t, ref), n in df.groupby(["task", "ref_model"])["n_failed"].first().items()
        if n
    ]
    return [render.Block("", ["Ref. Model"], columns, rows)], notes


# --- Table A1: halted vs limited (appendix A.1 follow-up) ------------------------------------------


def limiting_needs(cfg: dict, tid: str) -> grid.Needs:
    needs = grid.Needs()
    for (fid, task, series), limited in grid.limiting_runs(cfg).items():
        needs.runs.update(limited)
        needs.runs.update(grid.speed_series(cfg, fid)[(task, series)])
    return needs


def limiting_build(cfg: dict, res: Results, tid: str) -> pd.DataFrame:
    frac = parse_fraction(cfg["limiting"]["fraction"])
    out, seen = [], set()
    for (fid, task, series), limited in grid.limiting_runs(cfg).items():
        full = grid.speed_series(cfg, fid)[(task, series)]
        key = (task, full[0].model, series)
        if key in seen:
            continue
        seen.add(key)
        metric, sets = task_metric(cfg, task), grid.task_eval_sets(cfg, task)
        for how, runs, f in (("full", full, Fraction(1)), ("halted", full, frac), ("limited", limited, frac)):
            sv = res.seed_values(runs, sets, metric, f)
            for d in sets:
                mean, std = mean_std(sv.values[d])
                out.append({"task": task, "main_model": full[0].model, "ref_model": "" if series == "erm" else series,
                            "method": "erm" if series == "erm" else "dm", "step_fraction": frac_label(f), "dataset": d,
                            "metric": metric, "how": how,
                            "role": "id" if d == sets[0] else "ood", "mean": mean, "std": std, "n_ok": sv.n_ok,
                            "n_failed": sv.n_failed})  # fmt: skip
    return pd.DataFrame(out)


def limiting_view(cfg: dict, df: pd.DataFrame, tid: str) -> tuple[list[render.Block], list[str]]:
    blocks = []
    hows = ("halted", "limited", "full")
    for task in dict.fromkeys(df["task"]):
        tdf = df[(df["task"] == task) & (df["role"] == "ood")]
        rows = []
        for (main, ref), g in tdf.groupby(["main_model", "ref_model"], sort=False):
            means = g.groupby("how")["mean"].mean()
            mode = "ERM" if not ref else f"DM ({model_label(cfg, ref)})"
            rows.append(
                render.Row([mode, model_label(cfg, main)], [render.Value(means.get(h, float("nan"))) for h in hows])
            )
        f = frac_label(parse_fraction(cfg["limiting"]["fraction"]))
        columns = [render.Column(f"halted at {f}"), render.Column(f"limited to {f}"), render.Column("full budget")]
        title = f"{task_label(task)} (mean OOD {metric_label(task_metric(cfg, task))}, %)"
        blocks.append(render.Block(title, ["Mode", "Main Model"], columns, rows))
    return blocks, []


# --- registry and dispatch ------------------------------------------------------------------------


CAPTIONS = jinja2.Environment(loader=jinja2.PackageLoader("ftft"), trim_blocks=True, lstrip_blocks=True).get_template(
    "captions.txt.j2",
    globals={"failed": FAILED_MARK, "gray": GRAY_MARK, "margin": MARGIN, "table_tasks": grid.table_tasks}
    | {f.__name__: f for f in (budgets_phrase, frac_label, metric_label, model_label, parse_fraction, q_percent)}
    | {f.__name__: f for f in (seeds_phrase, task_label, task_metric)},
)


def table_caption(cfg: dict, tid: str) -> str:
    """A table's caption: its kind's text in templates/captions.txt.j2, the per-table differences as data."""
    kind, role = TABLES[tid]
    marks = [t for t in TRANSFER_MARK_TABLES if t in table_ids(cfg)]
    text = CAPTIONS.render(cfg=cfg, tid=tid, kind=kind, role=role, marks=marks)
    return re.sub(r"\s*\n\s*", " ", text).strip()


@dataclass(frozen=True)
class TableKind:
    needs: Callable[[dict, str], grid.Needs]
    build: Callable[[dict, Results, str], pd.DataFrame]
    view: Callable[[dict, pd.DataFrame, str], tuple[list[render.Block], list[str]]]  # blocks and notes
    present: Callable[[dict, str], bool]  # does this config produce the table
    caption = staticmethod(table_caption)

    def frame(self, cfg: dict, res: Results, tid: str) -> pd.DataFrame:
        """The tidy frame as the CSV holds it: the keys first, counts as integers."""
        df = self.build(cfg, res, tid)
        df = df.assign(**{k: "" for k in KEYS if k not in df.columns} | {"table": tid})
        for c in ("n_ok", "n_failed"):
            if c in df.columns:
                df[c] = df[c].astype("Int64")
        front = KEYS + ["mean", "std"]
        return df[front + [c for c in df.columns if c not in front]]

    def make(self, cfg: dict, res: Results, tid: str, prefix: str | Path) -> pd.DataFrame:
        df = self.frame(cfg, res, tid)
        write_text(f"{prefix}.csv", df.to_csv(index=False, float_format=CSV_FLOAT))
        view = render.View(f"Table {tid}", table_caption(cfg, tid), *self.view(cfg, df, tid))
        render.write_table(prefix, view, f"table{tid}", data_note(cfg))
        return df


KINDS: dict[str, TableKind] = {
    "cells": TableKind(cells_needs, cells_build, cells_view,
                       lambda cfg, tid: tid in cfg["tables"] and bool(grid.table_tasks(cfg, tid))),
    "flops": TableKind(flops_needs, flops_build, flops_view,
                       lambda cfg, tid: bool(cfg["flops_models"] and active_tasks(cfg))),
    "significance": TableKind(significance_needs, significance_build, significance_view,
                              lambda cfg, tid: bool(grid.significance_tasks(cfg))),
    "easy": TableKind(easy_needs, easy_build, easy_view,
                      lambda cfg, tid: bool(cfg["easy_ratio"]["refs"] and active_tasks(cfg))),
    "limiting": TableKind(limiting_needs, limiting_build, limiting_view,
                          lambda cfg, tid: bool(grid.limiting_runs(cfg))),
}  # fmt: skip


def table_ids(cfg: dict) -> dict[str, str]:
    """Table id -> kind, for the tables this config produces (in the paper's order)."""
    return {tid: kind for tid, (kind, _) in TABLES.items() if KINDS[kind].present(cfg, tid)}


REGISTRY = Registry("table", KINDS, table_ids, "1-9, A1")
needs, caption, write, add_arguments, run = (
    REGISTRY.needs, REGISTRY.caption, REGISTRY.make, REGISTRY.add_arguments, REGISTRY.run
)  # fmt: skip


def build(cfg: dict, results: str | Path | Results, tid: str) -> pd.DataFrame:
    """The tidy frame of a table as its CSV holds it (``write`` writes it with the other formats)."""
    return REGISTRY.kind(cfg, tid).frame(cfg, results if isinstance(results, Results) else Results(results), tid)
