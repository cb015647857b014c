"""``ftft failed-runs``: which runs failed, why, and which table cells and figures they touch.

Written at the end of every run as ``failed_runs.{md,csv}`` (and one line on the terminal), so
that a failed run cannot hide behind "100% done": for each failed run its folder, the reason
from ``run.json`` (worse than the majority class, non-finite loss, a failed reference), and
every table cell (table, task, row) and figure that reads it, with whether that cell is now
empty (no successful seed left) or only loses a seed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from . import figures, grid, tables
from .io import write_text
from .layout import Layout
from .results import Results

log = logging.getLogger(__name__)
COLUMNS = ["run", "task", "model", "method", "ref", "budget", "seed", "reason", "empties", "reduces", "figures"]


def _cell_name(cfg: dict, tid: str, cell: grid.Cell) -> str:
    mode = tables.METHOD_LABEL[cell.method] + (
        f" ({tables.frac_label(cell.fraction)})" if cell.method == "ftft" else ""
    )
    ref = tables.ref_label(cfg, cell.method, cell.ref)
    return f"Table {tid} {tables.task_label(cell.task)} {mode} {tables.model_label(cfg, cell.main)} / {ref}"


def _runs_read(needs: grid.Needs) -> set[grid.Run]:
    """The runs an aggregate reads: directly, or through a data map (that of a failed reference
    run is empty, so Table 8 and Figure 1a lose it too)."""
    return needs.runs | needs.predictions | needs.dynamics | {grid.ref_run(t, r, s) for t, r, s in needs.datamaps}


def failed_runs(cfg: dict, res: Results) -> pd.DataFrame:
    runs = sorted(grid.all_runs(cfg))
    failed = {r: res.failure(r) for r in runs if res.is_failed(r)}
    uses: dict[grid.Run, dict[str, list[str]]] = {r: {"empties": [], "reduces": [], "figures": []} for r in failed}
    for tid, kind in tables.table_ids(cfg).items():
        if kind == "cells":
            for cell in grid.table_cells(cfg, tid):
                hit = [r for r in cell.runs if r in failed]
                key = "empties" if len(hit) == len(cell.runs) else "reduces"
                for r in hit:
                    uses[r][key].append(_cell_name(cfg, tid, cell))
        else:
            for r in _runs_read(tables.needs(cfg, tid)) & set(failed):
                uses[r]["reduces"].append(f"Table {tid}")
    for fid in figures.figure_ids(cfg):
        for r in _runs_read(figures.needs(cfg, fid)) & set(failed):
            uses[r]["figures"].append(f"Figure {fid}")
    rows = [
        {"run": r.path, **{k: getattr(r, k) for k in ("task", "model", "method", "ref", "budget", "seed")},
         "reason": why, **{k: "; ".join(v) for k, v in uses[r].items()}}
        for r, why in failed.items()
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def render_md(cfg: dict, df: pd.DataFrame, n_runs: int) -> str:
    lines = [f"# Failed runs: {len(df)} of {n_runs}", ""]
    if df.empty:
        return "\n".join(lines + ["Every training run succeeded.", ""])
    lines += [
        "Failed runs are excluded from every mean (tables mark the cell with †). A run fails when its final ID "
        "score is at or below the majority-class baseline, its loss becomes non-finite, or its reference run failed.",
        "",
        "| run | reason | empties | loses a seed | figures |",
        "|---|---|---|---|---|",
    ]
    for r in df.itertuples():
        lines.append(f"| `{r.run}` | {r.reason} | {r.empties or '-'} | {r.reduces or '-'} | {r.figures or '-'} |")
    return "\n".join(lines) + "\n"


def write(cfg: dict, results: str | Path, prefix: str | Path) -> pd.DataFrame:
    df = failed_runs(cfg, Results(results))
    prefix = Path(prefix)
    write_text(prefix.with_name(prefix.name + ".csv"), df.to_csv(index=False))
    write_text(prefix.with_name(prefix.name + ".md"), render_md(cfg, df, len(grid.all_runs(cfg))))
    return df


def summary_line(cfg: dict, runs: list[grid.Run]) -> str:
    """One line for the end of a Snakemake run (reads whatever run.json files exist)."""
    layout = Layout.from_config(cfg)
    done, failed, reasons = 0, 0, {}
    for r in runs:
        path = Path(layout.run_file("run.json", r))
        if not path.is_file():
            continue
        done += 1
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("status") == "failed":
            failed += 1
            why = str(rec.get("failure_reason") or "?").split(":")[0]
            reasons[why] = reasons.get(why, 0) + 1
    if not failed:
        return f"ftft: {done} of {len(runs)} training runs finished, none failed."
    top = "; ".join(f"{n} x {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    return (
        f"ftft: {failed} of {done} finished training runs FAILED ({top}); they are excluded from the tables. "
        f"Which cells they empty: {layout.failed_runs('md')}"
    )


def add_arguments(parser) -> None:
    parser.add_argument("--config-json", required=True, help="the merged workflow config as JSON")
    parser.add_argument("--results", required=True, help="results root")
    parser.add_argument("--out-prefix", required=True, help="output path without extension")


def run(args) -> int:
    cfg = tables.load_config_json(args.config_json)
    df = write(cfg, args.results, args.out_prefix)
    log.info("%d failed run(s) -> %s.{md,csv}", len(df), args.out_prefix)
    return 0
