"""``ftft claims``: does this run support the paper's findings? ``tables/claims.{csv,md,html}``.

One row per tested comparison, grouped into the paper's six claims (``TITLES``): the numbers it rests on, an
effect size, a MultiBootstrap p-value where two systems are compared (the task's OOD sets pooled, seeds and
instances resampled) and a verdict by the rule its ``threshold`` states (thresholds: config ``claims``, see
config/README.md; the main model: ``significance.main``); a claim holds when all its rows hold. "published":
the same statistics on the paper's printed means (``src/ftft/paper``; claim 1's p from Table 5).
"""

import logging
import math
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from . import cost as costmod
from . import grid
from .artefacts import io_arguments, report_run
from .compare import PUBLISHED_TABLES, load_published
from .config import active_tasks, parse_fraction
from .labels import data_note, id_set, model_label, ood_sets, q_percent, task_label, task_metric
from .render import md_table, write_report
from .results import Results, mean_std
from .stats import p_value, relative_bootstrap_samples, spearman, spearman_permutation_p
from .tables import compare_systems, mean_ood, system_predictions

log = logging.getLogger(__name__)

HOLDS, FAILS, MISSING = "holds", "does not hold", "not enough runs"
TITLES = {  # claim -> (finding, where the paper shows it)
    1: ("DM (main model as its own reference) beats ERM on OOD at a small ID cost", "§4, Tables 1/6"),
    2: ("training dynamics transfer across model sizes", "§4.1"),
    3: ("... and across pretraining methods, except weak references", "§4.2"),
    4: ("weak references give lower easy ratios and failed transfers", "§4.3, Tables 2/7/8"),
    5: ("DM learns faster than ERM", "§5, Figures 2-4"),
    6: ("FTFT beats ERM on OOD at less than half of ERM's cost and about a quarter of DM's", "§5, Tables 3/9"),
}


@dataclass
class Row:
    claim: int
    task: str
    subject: str
    statistic: str
    value: float = float("nan")
    threshold: str = ""
    p_value: float = float("nan")
    verdict: str = MISSING
    detail: str = ""
    published_value: float = float("nan")
    published_verdict: str = ""


COLUMNS = [f.name for f in fields(Row)]


@dataclass
class Context:
    cfg: dict
    res: Results
    known: set = field(default_factory=set)

    def __post_init__(self):
        self.c, self.main = self.cfg["claims"], self.cfg["significance"]["main"]

    def seeds(self, task, model, method, ref="none") -> list[grid.Run]:
        return [grid.Run(task, model, method, ref, grid.FULL, s) for s in self.cfg["seeds"]]

    def available(self, *run_lists) -> bool:
        return set().union(*run_lists) <= self.known

    def lacking(self, row: Row, *run_lists) -> None:
        """Say why a row has no verdict: which runs failed (and why), or which are not in the grid."""
        if row.verdict != MISSING or row.detail:
            return
        runs = [r for rs in run_lists for r in rs]
        absent = [r for r in runs if r not in self.known]
        failed = [r for r in runs if r in self.known and self.res.is_failed(r)]
        if absent:
            row.detail = f"not in this run's grid: {', '.join(sorted({r.path for r in absent}))}"
        elif failed:
            row.detail = "failed runs: " + "; ".join(f"{r.path} ({self.res.failure(r)})" for r in failed)

    def ood(self, runs, task: str, fraction=1) -> float:
        return mean_ood(self.cfg, self.res, runs, task, fraction)

    def id(self, runs, task: str) -> float:
        name = id_set(self.cfg, task)
        sv = self.res.seed_values(runs, [name], task_metric(self.cfg, task))
        return mean_std(sv.values[name])[0] if sv.n_ok else float("nan")

    def compare(self, a_runs, b_runs, task: str, margin_points: float = 0.0, a_fraction=1) -> tuple[float, float]:
        """(mean pooled-OOD difference A - B in points, one-sided p-value), MultiBootstrap."""
        what, c = "the compared systems' predictions", self.c
        return compare_systems(
            self.cfg, self.res, a_runs, b_runs, task, c["samples"], c["seed"], what, margin_points, a_fraction
        )[:2]


# --------------------------------------------------------------------------- which runs


def dm_refs(cfg: dict, task: str, main: str) -> list[str]:
    """References of full DM runs into ``main`` on ``task`` that the grid trains."""
    return sorted(
        {r.ref for r in grid.all_runs(cfg) if (r.task, r.model, r.method, r.budget) == (task, main, "dm", grid.FULL)}
    )


def family(cfg: dict, model: str) -> str:
    m = cfg["models"][model]
    return m["family"] or m["tokenizer"] or model


def ftft_cells(cfg: dict) -> list[tuple[str, grid.Cell]]:
    return [(tid, cell) for tid in cfg["tables"] for cell in grid.table_cells(cfg, tid) if cell.method == "ftft"]


def needs(cfg: dict) -> grid.Needs:
    n = grid.Needs()
    known = grid.all_runs(cfg)
    main = cfg["significance"]["main"]
    for task in active_tasks(cfg):
        refs = dm_refs(cfg, task, main)
        runs = [grid.ref_run(task, main, s) for s in cfg["seeds"]]
        runs += [grid.Run(task, main, "dm", ref, grid.FULL, s) for ref in refs for s in cfg["seeds"]]
        n.predictions.update(set(runs) & known)
        n.datamaps.update((task, r, s) for r in set(cfg["easy_ratio"]["refs"]) & set(refs) for s in cfg["seeds"])
    n.predictions.update(
        r for fid in cfg["speed"]["figures"] for rs in grid.speed_series(cfg, fid).values() for r in rs
    )
    for _, cell in ftft_cells(cfg):
        n.predictions.update(cell.runs)
        n.predictions.update({grid.ref_run(cell.task, cell.main, s) for s in cfg["seeds"]} & known)
        models = (cell.main, cell.ref, cfg["cost_unit_model"])
        n.runs.update({grid.ref_run(cell.task, m, cfg["seeds"][0]) for m in models} & known)
    n.runs |= n.predictions
    return n


# --------------------------------------------------------------------------- statistics


def relative(at: float, full: float) -> float:
    """100 * at / full (%); NaN when the full-budget score is 0 or missing (no ZeroDivisionError)."""
    return 100 * at / full if full and not math.isnan(full) else float("nan")


def verdict(ok: bool | None) -> str:
    return MISSING if ok is None else (HOLDS if ok else FAILS)


# --------------------------------------------------------------------------- the claims


def claim1(ctx: Context, task: str, pub: "Published") -> list[Row]:
    main, alpha, cp = ctx.main, ctx.c["alpha"], ctx.c["comparable_points"]
    erm, dm = ctx.seeds(task, main, "erm"), ctx.seeds(task, main, "dm", main)
    row = Row(1, task, f"DM({model_label(ctx.cfg, main)} <- itself) vs ERM", "OOD gain (points), ID cost (points)",
              threshold=f"gain > 0, p < {alpha}, ID cost <= {cp:g}")  # fmt: skip
    if not ctx.available(erm, dm):
        ctx.lacking(row, erm, dm)
        return [row]
    row.value, row.p_value = ctx.compare(dm, erm, task)
    id_cost = ctx.id(erm, task) - ctx.id(dm, task)
    row.detail = f"OOD: DM {ctx.ood(dm, task):.2f} vs ERM {ctx.ood(erm, task):.2f}; ID cost {id_cost:.2f}"
    row.verdict = verdict(None if math.isnan(row.value) else row.value > 0 and row.p_value < alpha and id_cost <= cp)
    row.published_value = g = pub.ood(task, main, "dm", main) - pub.ood(task, main, "erm")
    pcost = pub.id(task, main, "erm") - pub.id(task, main, "dm", main)
    pp = pub.value("5", task, main, main, "p_value")
    if not math.isnan(g):
        row.published_verdict = verdict(g > 0 and pcost <= cp and (math.isnan(pp) or pp < alpha)) + (
            f" (Table 5 p = {pp:g})" if not math.isnan(pp) else ""
        )
    return [row]


def transfer(ctx: Context, task: str, pub: "Published", n: int) -> list[Row]:
    """Claims 2 (references of the main model's family, vs DM from itself) and 3 (other families but the weak
    references, vs ERM): DM from each reference is non-inferior (margin comparable_points) to the baseline."""
    main, alpha, cp = ctx.main, ctx.c["alpha"], ctx.c["comparable_points"]
    fam, weak = family(ctx.cfg, main), ctx.c["weak_refs"].get(task, [])
    if n == 2:
        refs = [r for r in dm_refs(ctx.cfg, task, main) if r != main and family(ctx.cfg, r) == fam]
        base, vs, none = ("dm", main), "DM(<- itself)", "no DM run from a smaller model of the main model's family"
    else:
        refs = [r for r in dm_refs(ctx.cfg, task, main) if family(ctx.cfg, r) != fam and r not in weak]
        base, vs, none = ("erm", "none"), "ERM", "no DM run from a reference of another family"
    base_runs, rows = ctx.seeds(task, main, *base), []
    for ref in refs:
        runs = ctx.seeds(task, main, "dm", ref)
        row = Row(n, task, f"DM({model_label(ctx.cfg, main)} <- {model_label(ctx.cfg, ref)}) vs {vs}",
                  "OOD difference (points)", threshold=f"non-inferior by {cp:g} point(s), p < {alpha}")  # fmt: skip
        if ctx.available(runs, base_runs):
            row.value, row.p_value = ctx.compare(runs, base_runs, task, cp)
            row.verdict = verdict(None if math.isnan(row.value) else row.p_value < alpha)
        ctx.lacking(row, runs, base_runs)
        row.published_value = g = pub.ood(task, main, "dm", ref) - pub.ood(task, main, *base)
        row.published_verdict = "" if math.isnan(g) else verdict(g >= -cp)
        rows.append(row)
    return rows or [Row(n, task, none, "")]


def claim4(ctx: Context, task: str, pub: "Published") -> list[Row]:
    from . import datamap

    main, alpha, cp, q = ctx.main, ctx.c["alpha"], ctx.c["comparable_points"], ctx.cfg["q"]
    refs = [r for r in dm_refs(ctx.cfg, task, main) if r in ctx.cfg["easy_ratio"]["refs"]]
    weak = [r for r in ctx.c["weak_refs"].get(task, []) if r in refs]
    erm = ctx.seeds(task, main, "erm")
    easy, gain = {}, {}
    if ctx.available(erm):
        base = ctx.ood(erm, task)
        for ref in refs:
            maps = [m for s in ctx.cfg["seeds"] if (m := ctx.res.datamap(task, ref, s)) is not None]
            runs = ctx.seeds(task, main, "dm", ref)
            if maps and ctx.available(runs):
                easy[ref] = 100 * float(np.mean([datamap.easy_ratio(m, q) for m in maps]))
                gain[ref] = ctx.ood(runs, task) - base
    keys = [r for r in refs if r in easy and not math.isnan(gain[r])]
    row = Row(4, task, f"easy ratio vs transfer gain over {len(keys)} references", "Spearman rho",
              threshold=f"rho > 0, permutation p < {alpha}")  # fmt: skip
    if len(keys) >= 3:
        x, y = [easy[r] for r in keys], [gain[r] for r in keys]
        row.value, row.p_value = spearman(x, y), spearman_permutation_p(x, y)
        row.verdict = verdict(None if math.isnan(row.value) else row.value > 0 and row.p_value < alpha)
        row.detail = "; ".join(f"{model_label(ctx.cfg, r)}: easy {easy[r]:.1f}%, gain {gain[r]:+.2f}" for r in keys)
    else:
        row.detail = f"needs the easy ratio and DM result of at least 3 references, has {len(keys)}"
        lost = [r for ref in refs if ref not in keys for r in ctx.seeds(task, main, "dm", ref) + erm]
        if any(r in ctx.known and ctx.res.is_failed(r) for r in lost):
            ctx.lacking(probe := Row(4, task, "", ""), lost)
            row.detail += f"; {probe.detail}"
    pe = {r: pub.value("8", task, "", r, "easy_ratio", q=q_percent(q)) for r in refs}
    pg = {r: pub.ood(task, main, "dm", r) - pub.ood(task, main, "erm") for r in refs}
    pk = [r for r in refs if not (math.isnan(pe[r]) or math.isnan(pg[r]))]
    if len(pk) >= 3:
        row.published_value = spearman([pe[r] for r in pk], [pg[r] for r in pk])
        row.published_verdict = verdict(row.published_value > 0) + f" (over {len(pk)} references)"
    rows = [row]
    for ref in weak:
        r = Row(4, task, f"weak reference {model_label(ctx.cfg, ref)}", "easy ratio rank, transfer gain (points)",
                threshold=f"lowest easy ratio among the references, gain < -{cp:g}")  # fmt: skip
        if ref in keys:  # the lowest easy ratio of the other references (NaN if none: the row fails)
            lowest = min((easy[o] for o in keys if o not in weak), default=math.nan)
            r.value, r.verdict = gain[ref], verdict(easy[ref] < lowest and gain[ref] < -cp)
            r.detail = f"easy {easy[ref]:.1f}% (others >= {lowest:.1f}%), gain {gain[ref]:+.2f}"
        if ref in pk:
            lowest = min((pe[o] for o in pk if o not in weak), default=math.nan)
            r.published_value, r.published_verdict = pg[ref], verdict(pe[ref] < lowest and pg[ref] < -cp)
        rows.append(r)
    return rows


def claim5(ctx: Context, task: str, pub: "Published") -> list[Row]:
    f, alpha, ratio = parse_fraction(ctx.c["fast_fraction"]), ctx.c["alpha"], ctx.c["fast_ratio"]
    sets, metric, rows = ood_sets(ctx.cfg, task), task_metric(ctx.cfg, task), []
    for fid in ctx.cfg["speed"]["figures"]:
        series = grid.speed_series(ctx.cfg, fid)
        erm = series.get((task, "erm"))
        for (t, s), runs in series.items() if erm is not None else []:
            if t != task or s == "erm":
                continue
            row = Row(5, task, f"Figure {fid}: DM-{model_label(ctx.cfg, s)} vs ERM ({model_label(ctx.cfg, runs[0].model)})",
                      f"OOD % of the full-budget score at {f}", threshold=f"DM >= {ratio:g}% > ERM, p < {alpha}")  # fmt: skip
            rel_dm = relative(ctx.ood(runs, task, f), ctx.ood(runs, task))
            rel_erm = relative(ctx.ood(erm, task, f), ctx.ood(erm, task))
            row.value, row.detail = rel_dm, f"DM {_fmt(rel_dm, 1)}%, ERM {_fmt(rel_erm, 1)}%"
            arrays = [system_predictions(ctx.res, x, sets, fr) for x, fr in ((runs, f), (runs, 1), (erm, f), (erm, 1))]
            if all(len(a[0]) for a in arrays) and not math.isnan(rel_dm):
                diffs = relative_bootstrap_samples(
                    *(a[0] for a in arrays), arrays[0][1], metric, ctx.c["samples"], ctx.c["seed"]
                )
                row.p_value = p_value(diffs[~np.isnan(diffs)])
                row.verdict = verdict(rel_dm >= ratio and rel_erm < ratio and row.p_value < alpha)
            if row.verdict == MISSING:
                row.detail = ""
                ctx.lacking(row, runs, erm)
            row.published_verdict = "not tabulated (Figures 2-4: DM ~100% at 1/3, ERM lower)"
            rows.append(row)
    return rows


def claim6(ctx: Context, task: str, pub: "Published") -> list[Row]:
    alpha, r_erm, r_dm = ctx.c["alpha"], ctx.c["cost_ratio_erm"], ctx.c["cost_ratio_dm"]
    rows: list[Row] = []
    seed0, unit = ctx.cfg["seeds"][0], ctx.cfg["cost_unit_model"]
    cheapest: dict[str, tuple] = {}  # table -> ((FTFT, ERM, DM) cost, label, published (FTFT, ERM, DM) cost)
    for tid, cell in ftft_cells(ctx.cfg):
        if cell.task != task:
            continue
        erm = ctx.seeds(task, cell.main, "erm")
        label = f"FTFT({model_label(ctx.cfg, cell.main)} <- {model_label(ctx.cfg, cell.ref)}, {cell.fraction})"
        row = Row(6, task, f"Table {tid}: {label} vs ERM", "OOD gain (points)",
                  threshold=f"gain > 0 with p < {alpha}, cost below ERM's")  # fmt: skip
        ptask = "nli" if tid == "3" else task  # Table 3 prints costs in its NLI block only (the same for HSD)
        published = (
            pub.value(tid, ptask, cell.main, cell.ref, "cost", method="ftft", frac=str(cell.fraction)),
            pub.value(tid, ptask, cell.main, "", "cost", method="erm"),
            pub.value(tid, ptask, cell.main, cell.main, "cost", method="dm"),
        )
        if ctx.available([*cell.runs, *erm, *(grid.ref_run(task, m, seed0) for m in (cell.main, cell.ref, unit))]):
            row.value, row.p_value = ctx.compare(list(cell.runs), erm, task, a_fraction=cell.fraction)
            f = {m: ctx.res.forward_flops_per_epoch(task, m, seed0) for m in (cell.main, cell.ref, unit)}
            cost = (
                costmod.method_cost("ftft", f[cell.main], f[unit], f[cell.ref], float(cell.fraction)),
                costmod.method_cost("erm", f[cell.main], f[unit]),
                costmod.method_cost("dm", f[cell.main], f[unit], f[cell.main]),
            )
            c, e, d = cost
            row.detail = f"cost {c:.1f} vs ERM {e:.1f} ({c / e:.2f}x) and DM {d:.1f} ({c / d:.2f}x)"
            row.verdict = verdict(None if math.isnan(row.value) else row.value > 0 and row.p_value < alpha and c < e)
            if tid not in cheapest or c < cheapest[tid][0][0]:
                cheapest[tid] = (cost, label, published)
        ctx.lacking(row, cell.runs, erm)
        g = pub.ood(task, cell.main, "ftft", cell.ref, str(cell.fraction)) - pub.ood(task, cell.main, "erm")
        row.published_value = g
        if not math.isnan(g):
            pc, pe, _ = published
            row.published_verdict = verdict(g > 0 and (math.isnan(pc) or pc < pe)) + (
                "" if math.isnan(pc) else f"; cost {pc:g} vs ERM {pe:g}"
            )
        rows.append(row)
    for tid, ((c, e, d), label, (pc, pe, pd_)) in cheapest.items():
        row = Row(6, task, f"Table {tid}: cost of the cheapest FTFT, {label}", "cost / ERM cost", value=c / e,
                  threshold=f"< {r_erm:g} x ERM and <= {r_dm:g} x DM")  # fmt: skip
        row.detail = f"{c:.1f} vs ERM {e:.1f} and DM {d:.1f} ({c / d:.2f}x DM)"
        row.verdict = verdict(c < r_erm * e and c <= r_dm * d)
        if not math.isnan(pc):
            row.published_value = pc / pe
            row.published_verdict = verdict(pc < r_erm * pe and pc <= r_dm * pd_)
        rows.append(row)
    return rows


CLAIMS = {1: claim1, 2: partial(transfer, n=2), 3: partial(transfer, n=3), 4: claim4, 5: claim5, 6: claim6}


# --------------------------------------------------------------------------- published numbers


class Published:
    """The paper's printed cells (``src/ftft/paper/table*.csv``)."""

    def __init__(self, cfg: dict):
        self.df = load_published(PUBLISHED_TABLES)
        self.df["value"] = pd.to_numeric(self.df["mean"], errors="coerce")
        self.cfg = cfg
        d = self.df[self.df["metric"].isin(["accuracy", "macro_f1"])]
        keys = ["task", "main_model", "method", "ref_model", "step_fraction"]
        self.scores = {
            k: g.drop_duplicates(["dataset"]).set_index("dataset")["value"] for k, g in d.groupby(keys, sort=False)
        }

    def value(self, table, task, main, ref, metric, method=None, frac="1", q=None) -> float:
        want = {"table": str(table), "task": task, "main_model": main, "ref_model": ref, "metric": metric}
        want |= {k: v for k, v in (("method", method), ("q", q)) if v is not None}
        sel = (self.df[list(want)] == list(want.values())).all(axis=1)
        if metric != "easy_ratio":
            sel &= self.df["step_fraction"].isin([frac, ""])
        vals = self.df.loc[sel, "value"].dropna()
        return float(vals.iloc[0]) if len(vals) else float("nan")

    def _cells(self, task, main, method, ref="", frac="1") -> pd.Series:
        """The printed scores of one row by dataset (first table in file order that prints it)."""
        ref = "" if ref in ("none", "") or method == "erm" else ref
        return self.scores.get((task, main, method, ref, frac), pd.Series(dtype=float))

    def ood(self, task, main, method, ref="", frac="1") -> float:
        if task not in self.cfg["tasks"]:
            return float("nan")
        vals = self._cells(task, main, method, ref, frac).reindex(ood_sets(self.cfg, task))
        return float(vals.mean()) if vals.notna().all() else float("nan")

    def id(self, task, main, method, ref="") -> float:
        return float(self._cells(task, main, method, ref).get(id_set(self.cfg, task), float("nan")))


# --------------------------------------------------------------------------- report


def evaluate(cfg: dict, results: str | Path | Results) -> pd.DataFrame:
    res = results if isinstance(results, Results) else Results(results)
    ctx, pub = Context(cfg, res, grid.all_runs(cfg)), Published(cfg)
    rows = [row for fn in CLAIMS.values() for task in active_tasks(cfg) for row in fn(ctx, task, pub)]
    return pd.DataFrame([r.__dict__ for r in rows], columns=COLUMNS)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One verdict per claim, what its rows with data say: does not hold if one of them fails, holds if all
    hold; not enough runs only when no row with data fails and some row lacks runs (its details say why)."""
    out = []
    for n in CLAIMS:
        v = df.loc[df["claim"] == n, "verdict"].tolist()
        verdict_ = FAILS if FAILS in v else (MISSING if not v or MISSING in v else HOLDS)
        out.append({"claim": n, "title": TITLES[n][0], "section": TITLES[n][1], "rows": len(v),
                    "rows_holding": sum(x == HOLDS for x in v), "verdict": verdict_})  # fmt: skip
    return pd.DataFrame(out)


def _fmt(x: float, digits: int = 2) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def render_md(cfg: dict, df: pd.DataFrame) -> str:
    c = cfg["claims"]
    lines = ["# Claims of the paper, checked on this run", ""]
    if note := data_note(cfg):
        lines += [f"> {note} The verdicts below say what this run's numbers show.", ""]
    lines += [
        f"Seeds: {', '.join(map(str, cfg['seeds']))}; main model {model_label(cfg, cfg['significance']['main'])}; "
        f"alpha = {c['alpha']}; 'comparable' = at most {c['comparable_points']:g} point(s) worse (non-inferiority); "
        f"p-values: MultiBootstrap over seeds and pooled OOD instances, {c['samples']} samples, "
        "(1 + #{diff <= 0}) / (1 + samples). A claim holds when all its rows hold. Published: the same statistic "
        "on the paper's printed means (no seeds, so no p-value except Table 5's).",
        "",
        md_table(
            ["claim", "finding", "verdict", "rows holding"],
            [
                [str(r.claim), f"{r.title} ({r.section})", f"**{r.verdict}**", f"{r.rows_holding} of {r.rows}"]
                for r in summary(df).itertuples()
            ],
        ),
    ]
    header = [*"task comparison statistic value p-value test verdict details published".split(), "published verdict"]
    for n in CLAIMS:
        rows = [[task_label(r.task), r.subject, r.statistic, _fmt(r.value), _fmt(r.p_value, 4), r.threshold, r.verdict,
                 r.detail, _fmt(r.published_value), r.published_verdict]
                for r in df[df["claim"] == n].itertuples()]  # fmt: skip
        lines += ["", f"## Claim {n}: {TITLES[n][0]} ({TITLES[n][1]})", "", md_table(header, rows)]
    return "\n".join(lines) + "\n"


def write(cfg: dict, results: str | Path, prefix: str | Path) -> pd.DataFrame:
    df = evaluate(cfg, results)
    write_report(prefix, render_md(cfg, df), df.to_csv(index=False, float_format="%.10g"))
    for r in summary(df).itertuples():
        log.info("claim %d (%s): %s (%d of %d rows)", r.claim, r.title, r.verdict, r.rows_holding, r.rows)
    return df


add_arguments, run = io_arguments, report_run(write, "claims")
