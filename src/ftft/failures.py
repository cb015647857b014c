"""``ftft failed-runs``: which runs failed, why (``run.json``), and which table cells (emptied, or losing a
seed) and figures read them: ``failed_runs.{md,html,csv}`` and one line on the terminal at the end of a run.
"""

import json
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd

from . import figures, grid, tables
from .artefacts import io_arguments, report_run
from .labels import frac_label
from .layout import Layout
from .render import md_table, write_report
from .results import Results

COLUMNS = "run reading task model method ref budget seed reason empties reduces figures".split()


def _runs_read(needs: grid.Needs) -> set[grid.Run]:
    """The runs an aggregate reads: directly, or through a data map (that of a failed reference
    run is empty, so Table 8 and Figure 1a lose it too)."""
    return needs.runs | needs.predictions | needs.dynamics | {grid.ref_run(t, r, s) for t, r, s in needs.datamaps}


def failed_runs(cfg: dict, res: Results) -> pd.DataFrame:
    """One row per failed run ("final") and per excluded halted reading ("halted at k/15", judged at its own
    checkpoint, results.Results.failure_at), with the cells and figures it empties or reduces."""
    failed = {(r, "final"): res.failure(r) for r in sorted(grid.all_runs(cfg)) if res.is_failed(r)}
    uses: dict = defaultdict(lambda: {"empties": [], "reduces": [], "figures": []})

    def note(run: grid.Run, fraction, what: str, name: str) -> None:
        if not (why := res.failure_at(run, fraction)):
            return
        k = (run, why.split(":")[0] if why.startswith("halted at ") else "final")
        failed.setdefault(k, why)
        uses[k][what].append(name)

    for tid, kind in tables.table_ids(cfg).items():
        if kind == "cells":
            for cell in grid.table_cells(cfg, tid):
                hit = [r for r in cell.runs if res.failure_at(r, cell.fraction)]
                key = "empties" if len(hit) == len(cell.runs) else "reduces"
                name = tables.cell_name(cfg, cell.task, cell.method, frac_label(cell.fraction), cell.main, cell.ref)[1]
                for r in hit:
                    note(r, cell.fraction, key, f"Table {tid} {name}")
        else:
            for r in sorted(_runs_read(tables.needs(cfg, tid))):
                note(r, r.fraction, "reduces", f"Table {tid}")  # at its end (a limited run's is its budget)
    for fid, kind in figures.figure_ids(cfg).items():
        fracs = [1, *figures.speed_fraction_labels(cfg)] if kind == "speed" else [1]
        for r in sorted(_runs_read(figures.needs(cfg, fid))):
            for f in sorted({min(f, r.fraction) for f in fracs}):  # a limited run is read up to its budget
                note(r, f, "figures", f"Figure {fid}")
    order = sorted(failed.items(), key=lambda kv: (kv[0][0], kv[0][1] != "final", kv[0][1]))  # not in hash order
    rows = [{"run": r.path, "reading": reading, **{k: getattr(r, k) for k in COLUMNS[2:8]}, "reason": why,
             **{k: "; ".join(dict.fromkeys(v)) for k, v in uses[(r, reading)].items()}}
            for (r, reading), why in order]  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def render_md(cfg: dict, df: pd.DataFrame, n_runs: int) -> str:
    halted = int((df["reading"] != "final").sum())
    extra = f"; {halted} halted reading(s) excluded" if halted else ""
    lines = [f"# Failed runs: {len(df) - halted} of {n_runs}{extra}", ""]
    if df.empty:
        return "\n".join(lines + ["Every training run succeeded.", ""])
    lines += [
        "Failed runs are excluded from every mean (tables mark the cell with †). A run fails when its final ID "
        "score is at or below the majority-class baseline, its loss becomes non-finite, or its reference run failed. "
        "A halted reading (checkpoint k/15 of a full run: FTFT cells, halting curves) is judged by its own ID score: "
        "excluded at or below the majority class, whatever the run's final status.",
        "",
        md_table(
            ["run", "reading", "reason", "empties", "loses a seed", "figures"],
            [[f"`{r.run}`", r.reading, r.reason, r.empties or "-", r.reduces or "-", r.figures or "-"]
             for r in df.itertuples()],
        ),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def write(cfg: dict, results: str | Path, prefix: str | Path) -> pd.DataFrame:
    df = failed_runs(cfg, Results(results))
    write_report(prefix, render_md(cfg, df, len(grid.all_runs(cfg))), df.to_csv(index=False))
    return df


def summary_line(cfg: dict, runs: list[grid.Run]) -> str:
    """One line for the end of a Snakemake run (reads whatever run.json files exist)."""
    layout = Layout.from_config(cfg)
    done, reasons = 0, Counter()
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
            reasons[str(rec.get("failure_reason") or "?").split(":")[0]] += 1
    if not (failed := reasons.total()):
        return f"ftft: {done} of {len(runs)} training runs finished, none failed."
    top = "; ".join(f"{n} x {why}" for why, n in reasons.most_common())
    return (
        f"ftft: {failed} of {done} finished training runs FAILED ({top}); they are excluded from the tables. "
        f"Which cells they empty: {layout.failed_runs('md')}"
    )


add_arguments, run = io_arguments, report_run(write, "failed runs")
