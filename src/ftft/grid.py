"""The experiment grid: config -> the set of runs each table and figure needs.

A training run is fully named by a small frozen record, ``Run``. Its output
folder is a pure function of the record, so the Snakefile, the aggregation code
and the tests agree on paths. A reference run *is* the ERM run of that model:
Table 1's "ERM DeBERTaV3-Small" row and the reference model behind "DM with
DeBERTaV3-Small" are the same job, trained once.

Methods as runs:
  erm     Run(task, model, "erm", "none", budget, seed)
  random  Run(task, model, "random", "none", ...)      random q-subset (seeded)
  dm      Run(task, model, "dm", ref, ...)             q most ambiguous of ref's data map
  jtt     Run(task, model, "jtt", ref, ...)            ref's mispredictions upweighted
  poe     Run(task, model, "poe", bias, ...)           product-of-experts with bias model
FTFT is a *table label*: DM with an efficient reference and a reduced budget;
limiting -> Run(..., "dm", ref, "1-3", seed); halting -> the 1/3 checkpoint of
Run(..., "dm", ref, "full", seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .config import parse_fraction

METHODS = ("erm", "random", "dm", "jtt", "poe")
NEEDS_REF = ("dm", "jtt", "poe")
FULL = "full"


def budget_name(frac: Fraction) -> str:
    return FULL if frac == 1 else f"{frac.numerator}-{frac.denominator}"


def budget_fraction(budget: str) -> Fraction:
    if budget == FULL:
        return Fraction(1)
    a, b = budget.split("-")
    return Fraction(int(a), int(b))


@dataclass(frozen=True, order=True)
class Run:
    task: str
    model: str
    method: str
    ref: str = "none"
    budget: str = FULL
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {METHODS}")
        if (self.method in NEEDS_REF) != (self.ref != "none"):
            raise ValueError(f"method {self.method!r} with ref {self.ref!r}")

    @property
    def path(self) -> str:
        """Run folder relative to the results root."""
        return f"runs/{self.task}/{self.model}/{self.method}-{self.ref}/{self.budget}/seed{self.seed}"

    @property
    def fraction(self) -> Fraction:
        return budget_fraction(self.budget)

    def steps(self, cfg: dict) -> int:
        return max(1, round(cfg["tasks"][self.task]["steps"] * self.fraction))

    @classmethod
    def from_path(cls, path: str | Path) -> Run:
        parts = Path(path).parts
        i = parts.index("runs")
        task, model, mr, budget, seed = parts[i + 1 : i + 6]
        method, ref = mr.split("-", 1)
        return cls(task, model, method, ref, budget, int(seed.removeprefix("seed")))


RUN_FILES = ("metrics.csv", "predictions.parquet", "dynamics.npz", "run.json")


def ref_run(task: str, model: str, seed: int) -> Run:
    """The reference run of ``model``: its full-budget ERM run."""
    return Run(task, model, "erm", "none", FULL, seed)


def datamap_seed(cfg: dict, seed: int) -> int:
    ds = cfg.get("datamap_seed", "same")
    return seed if ds == "same" else int(ds)


@dataclass(frozen=True)
class Cell:
    """One row of a paper table for one task: which runs, and which checkpoint fraction."""

    task: str
    method: str  # erm|random|dm|ftft|jtt|poe (the table's label)
    main: str
    ref: str  # "none" if no reference
    fraction: Fraction  # fraction of the full budget at which the row is read
    runs: tuple[Run, ...]  # one per seed


def row_cell(cfg: dict, task: str, row: dict) -> Cell:
    method = row["method"]
    ref = row.get("ref", "none")
    frac = Fraction(1)
    run_method = method
    budget = FULL
    if method == "ftft":
        fr = row.get("fraction", cfg["methods"]["ftft"]["fraction"])
        frac = parse_fraction(fr[task])
        run_method = "dm"
        if cfg["methods"]["ftft"]["mode"] == "limiting":
            budget = budget_name(frac)
    runs = tuple(
        Run(task, row["main"], run_method, ref if run_method in NEEDS_REF else "none", budget, s) for s in cfg["seeds"]
    )
    return Cell(task, method, row["main"], ref, frac, runs)


def table_cells(cfg: dict, table_id: str) -> list[Cell]:
    table = cfg["tables"][table_id]
    return [row_cell(cfg, t, row) for t in table["tasks"] for row in table["rows"]]


def speed_runs(cfg: dict, fig_id: str) -> dict[tuple[str, str, str], list[Run]]:
    """(task, mode, series) -> runs; series 'erm' or the ref model key."""
    speed = cfg["speed"]
    fig = speed["figures"][fig_id]
    fracs = [parse_fraction(f) for f in speed.get("limiting_fractions", speed["fractions"])]
    out: dict[tuple[str, str, str], list[Run]] = {}
    for task in fig["tasks"]:
        for mode in speed["modes"]:
            for series in ["erm", *fig["refs"]]:
                method, ref = ("erm", "none") if series == "erm" else ("dm", series)
                budgets = [FULL] if mode == "halting" else [FULL] + [budget_name(f) for f in fracs]
                out[(task, mode, series)] = [
                    Run(task, fig["main"], method, ref, b, s) for b in budgets for s in cfg["seeds"]
                ]
    return out


def significance_runs(cfg: dict, task: str) -> dict[str, list[Run]]:
    sig = cfg["significance"]
    out = {"erm": [Run(task, sig["main"], "erm", "none", FULL, s) for s in cfg["seeds"]]}
    for r in sig["refs"]:
        out[r] = [Run(task, sig["main"], "dm", r, FULL, s) for s in cfg["seeds"]]
    return out


def significance_tasks(cfg: dict) -> list[str]:
    return list(cfg["tasks"])


def datamap_refs(cfg: dict) -> dict[str, set[str]]:
    """task -> reference models whose data maps some table/figure reads directly."""
    out: dict[str, set[str]] = {t: set() for t in cfg["tasks"]}
    for sec in ("overlap", "ptrue_curves"):
        for t in cfg.get(sec, {}).get("tasks", []):
            out[t].update(cfg[sec]["refs"])
    for t in cfg["tasks"]:
        out[t].update(cfg.get("easy_ratio", {}).get("refs", []))
    return out


def all_runs(cfg: dict) -> set[Run]:
    """Every training run needed by some table or figure (direct or as a dependency)."""
    runs: set[Run] = set()
    for tid in cfg.get("tables", {}):
        for cell in table_cells(cfg, tid):
            runs.update(cell.runs)
    for fid in cfg.get("speed", {}).get("figures", {}):
        for rs in speed_runs(cfg, fid).values():
            runs.update(rs)
    if "significance" in cfg:
        for t in significance_tasks(cfg):
            for rs in significance_runs(cfg, t).values():
                runs.update(rs)
    for t in cfg["tasks"]:
        for m in cfg.get("flops_models", []):
            runs.add(ref_run(t, m, cfg["seeds"][0]))
        runs.add(ref_run(t, cfg["cost_unit_model"], cfg["seeds"][0]))
    for t, refs in datamap_refs(cfg).items():
        for r in refs:
            runs.update(ref_run(t, r, s) for s in cfg["seeds"])
    # dependencies: every run with a reference needs the reference's ERM run
    for run in list(runs):
        runs.update(run_dependencies(cfg, run))
    return runs


def run_dependencies(cfg: dict, run: Run) -> list[Run]:
    """Training runs whose outputs ``run`` consumes (its reference / bias model)."""
    if run.method in NEEDS_REF:
        return [ref_run(run.task, run.ref, datamap_seed(cfg, run.seed))]
    return []


def datamap_path(task: str, ref: str, seed: int) -> str:
    return f"datamaps/{task}/{ref}/seed{seed}.parquet"


def subset_path(run: Run) -> str | None:
    """Subset file the run trains on (None for ERM: the full training set)."""
    if run.method == "erm":
        return None
    return f"subsets/{run.task}/{run.method}-{run.ref}/seed{run.seed}.parquet"


def all_datamaps(cfg: dict) -> set[tuple[str, str, int]]:
    out = set()
    for run in all_runs(cfg):
        if run.method == "dm":
            out.add((run.task, run.ref, datamap_seed(cfg, run.seed)))
    for t, refs in datamap_refs(cfg).items():
        out.update((t, r, s) for r in refs for s in cfg["seeds"])
    return out


def model_keys_used(cfg: dict) -> set[str]:
    return {r.model for r in all_runs(cfg)}


def task_eval_sets(cfg: dict, task: str) -> list[str]:
    t = cfg["tasks"][task]
    return [t["id_test"]["name"], *[o["name"] for o in t["ood"]]]


def sources_used(cfg: dict) -> set[str]:
    out = set()
    for t in cfg["tasks"].values():
        out.add(t["train"]["source"])
        out.add(t["id_test"]["source"])
        out.update(o["source"] for o in t["ood"])
    return out


TABLE_IDS = ("1", "2", "3", "4", "5", "6", "7", "8", "9")


def table_targets(cfg: dict) -> list[str]:
    """Every table file the workflow declares (relative to results root)."""
    ids = sorted(set(cfg.get("tables", {})) | {"4", "5", "8"}, key=int)
    return [f"tables/table{i}.{ext}" for i in ids for ext in ("csv", "md", "tex")]


def figure_targets(cfg: dict) -> list[str]:
    out = []
    for fig in ("figure1a", "figure1b"):
        sec = cfg["overlap"] if fig == "figure1a" else cfg["ptrue_curves"]
        out += [f"figures/{fig}_{t}.{ext}" for t in sec["tasks"] for ext in ("png", "pdf")]
    for fid in cfg["speed"]["figures"]:
        out += [f"figures/figure{fid}_{mode}.{ext}" for mode in cfg["speed"]["modes"] for ext in ("png", "pdf")]
    for task, ref, seed in sorted(all_datamaps(cfg)):
        out.append(f"figures/datamaps/{task}_{ref}_seed{seed}.png")
    return out
