"""The experiment grid: config -> the runs each table and figure needs (restricted to the active tasks).
``Run`` names a training run; a reference run is that model's ERM run; FTFT is a table label that reads the full DM
run at a step fraction (docs/ARCHITECTURE.md, "A run is data").
"""

from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from . import methods
from .config import active_tasks, eval_entries, parse_fraction, task_entries  # noqa: F401 (task_entries: re-exported)
from .layout import RUN_DIR

FULL = "full"


def budget_fraction(budget: str) -> Fraction:
    return Fraction(1) if budget == FULL else Fraction(*map(int, budget.split("-")))


@dataclass(frozen=True, order=True)
class Run:
    task: str
    model: str
    method: str
    ref: str = "none"
    budget: str = FULL
    seed: int = 0

    def __post_init__(self):
        if methods.get(self.method).trains_as:
            raise ValueError(f"method {self.method!r} is a table label, not a run")
        if methods.get(self.method).needs_ref != (self.ref != "none"):
            raise ValueError(f"method {self.method!r} with ref {self.ref!r}")

    @property
    def path(self) -> str:
        """Run folder relative to the results root (``layout.RUN_DIR``)."""
        return RUN_DIR.format(**self.fields())

    def fields(self) -> dict:
        return asdict(self)

    @property
    def fraction(self) -> Fraction:
        return budget_fraction(self.budget)

    def steps(self, cfg: dict) -> int:
        return max(1, round(cfg["tasks"][self.task]["steps"] * self.fraction))

    @classmethod
    def from_path(cls, path: str | Path) -> "Run":
        parts = Path(path).parts
        i = parts.index("runs")
        task, model, mr, budget, seed = parts[i + 1 : i + 6]
        method, ref = mr.split("-", 1)
        return cls(task, model, method, ref, budget, int(seed.removeprefix("seed")))


def ref_run(task: str, model: str, seed: int) -> Run:
    """The reference run of ``model``: its full-budget ERM run."""
    return Run(task, model, "erm", "none", FULL, seed)


def datamap_seed(cfg: dict, seed: int) -> int:
    return seed if cfg["datamap_seed"] == "same" else int(cfg["datamap_seed"])


# --------------------------------------------------------------------------- table cells


@dataclass(frozen=True)
class Cell:
    """One row of a paper table for one task: which runs, and which checkpoint fraction."""

    task: str
    method: str  # a ``methods.REGISTRY`` name (the table's label)
    main: str
    ref: str  # "none" if no reference
    fraction: Fraction  # fraction of the full budget at which the row is read
    runs: tuple[Run, ...]  # one per seed
    row: int = 0  # index of the row in the table's config
    group: str = ""


def row_cell(cfg: dict, task: str, row: dict, index: int = 0) -> Cell:
    method, ref = row["method"], row.get("ref", "none")
    frac = parse_fraction(row.get("fraction", cfg["methods"]["ftft"]["fraction"])[task]) if method == "ftft" else 1
    runs = tuple(Run(task, row["main"], methods.get(method).trains_as or method, ref, FULL, s) for s in cfg["seeds"])
    return Cell(task, method, row["main"], ref, Fraction(frac), runs, index, row.get("group", ""))


def table_tasks(cfg: dict, tid: str) -> list[str]:
    return [t for t in cfg["tables"][tid]["tasks"] if t in active_tasks(cfg)]


def table_cells(cfg: dict, tid: str) -> list[Cell]:
    rows = cfg["tables"][tid]["rows"]
    return [row_cell(cfg, t, row, i) for t in table_tasks(cfg, tid) for i, row in enumerate(rows)]


# --------------------------------------------------------------------------- figures


def speed_tasks(cfg: dict, fid: str) -> list[str]:
    return [t for t in cfg["speed"]["figures"][fid]["tasks"] if t in active_tasks(cfg)]


def speed_series(cfg: dict, fid: str) -> dict[tuple[str, str], list[Run]]:
    """(task, series) -> the full runs of a speed figure (halting curves); series 'erm' or a ref key."""
    fig = cfg["speed"]["figures"][fid]
    out: dict[tuple[str, str], list[Run]] = {}
    for task in speed_tasks(cfg, fid):
        for series in ["erm", *fig["refs"]]:
            method, ref = ("erm", "none") if series == "erm" else ("dm", series)
            out[(task, series)] = [Run(task, fig["main"], method, ref, FULL, s) for s in cfg["seeds"]]
    return out


def limiting_runs(cfg: dict) -> dict[tuple[str, str, str], list[Run]]:
    """(figure, task, series) -> limited runs (schedule set for ``limiting.fraction``), if enabled."""
    lim = cfg["limiting"]
    if not lim["enabled"]:
        return {}
    frac = parse_fraction(lim["fraction"], "limiting.fraction")
    budget = FULL if frac == 1 else f"{frac.numerator}-{frac.denominator}"
    out = {}
    for fid in lim["figures"]:
        for (task, series), runs in speed_series(cfg, fid).items():
            out[(fid, task, series)] = [Run(r.task, r.model, r.method, r.ref, budget, r.seed) for r in runs]
    return out


def figure_tasks(cfg: dict, section: str) -> dict[str, str]:
    """Figure 1a/1b ids -> task: the paper's panel ('1a') and the extras ('1a-hsd')."""
    fid, task, active = {"overlap": "1a", "ptrue_curves": "1b"}[section], cfg[section]["task"], active_tasks(cfg)
    out = {fid: task} if task in active else {}
    return out | {f"{fid}-{t}": t for t in cfg[section]["extra_tasks"] if t in active and t != task}


# --------------------------------------------------------------------------- significance


def significance_tasks(cfg: dict) -> list[str]:
    refs = cfg["significance"]["refs"]
    return [t for t in active_tasks(cfg) if refs.get(t)]


def significance_runs(cfg: dict, task: str) -> dict[str, list[Run]]:
    sig = cfg["significance"]
    series = {"erm": ("erm", "none")} | {r: ("dm", r) for r in sig["refs"].get(task, [])}
    return {k: [Run(task, sig["main"], m, ref, FULL, s) for s in cfg["seeds"]] for k, (m, ref) in series.items()}


# --------------------------------------------------------------------------- what is trained


def datamap_refs(cfg: dict) -> dict[str, set[str]]:
    """task -> reference models whose data maps some table/figure reads directly."""
    out = {t: set(cfg["easy_ratio"]["refs"]) for t in active_tasks(cfg)}
    for section in ("overlap", "ptrue_curves"):
        for task in figure_tasks(cfg, section).values():
            out[task].update(cfg[section]["refs"])
    return out


def cost_models(cfg: dict, tid: str) -> set[tuple[str, str]]:
    """(task, model) whose first-seed ERM run's FLOPs a cost column reads."""
    out = set()
    for c in table_cells(cfg, tid):
        if c.task in cfg["tables"][tid]["cost"]:
            out.update((c.task, m) for m in {c.main, c.ref, cfg["cost_unit_model"]} - {"none"})
    return out


def all_runs(cfg: dict) -> set[Run]:
    """Every training run needed by some table or figure (direct or as a dependency)."""
    seed0 = cfg["seeds"][0]
    groups = [cell.runs for tid in cfg["tables"] for cell in table_cells(cfg, tid)]
    groups += [rs for fid in cfg["speed"]["figures"] for rs in speed_series(cfg, fid).values()]
    groups += [
        *limiting_runs(cfg).values(),
        *(rs for t in significance_tasks(cfg) for rs in significance_runs(cfg, t).values()),
    ]
    runs = {r for rs in groups for r in rs} | set(ship_runs(cfg))
    runs.update(ref_run(t, m, seed0) for tid in cfg["tables"] for t, m in cost_models(cfg, tid))
    runs.update(ref_run(t, m, seed0) for t in active_tasks(cfg) for m in cfg["flops_models"])
    runs.update(ref_run(t, r, s) for t, refs in datamap_refs(cfg).items() for r in refs for s in cfg["seeds"])
    for run in list(runs):  # every run with a reference needs the reference's ERM run
        runs.update(run_dependencies(cfg, run))
    return runs


def ship_run(cfg: dict, ref: str) -> Run:
    """The full DM run whose checkpoint at ``ship.fraction`` is the shipped FTFT model, with reference ``ref``;
    ref "none": the main model's ERM run (``ship.erm``)."""
    s, seed = cfg["ship"], cfg["seeds"][0]
    return ref_run(s["task"], s["main"], seed) if ref == "none" else Run(s["task"], s["main"], "dm", ref, FULL, seed)


def ship_runs(cfg: dict) -> list[Run]:
    """The tool's runs known when planning: each candidate's reference run; the DM run of a named reference
    (that of the recommended one is planned once the screening exists: the ``screen`` checkpoint)."""
    if not (s := cfg["ship"]):
        return []
    shipped = [s["ref"]] * bool(s["ref"]) + ["none"] * s["erm"]  # "none": the main model's ERM run (ship.erm)
    return [ref_run(s["task"], r, cfg["seeds"][0]) for r in s["refs"]] + [ship_run(cfg, r) for r in shipped]


def run_dependencies(cfg: dict, run: Run) -> list[Run]:
    """Training runs whose outputs ``run`` consumes (its reference / bias model)."""
    return [ref_run(run.task, run.ref, datamap_seed(cfg, run.seed))] if methods.get(run.method).needs_ref else []


# the sets derived from the runs take ``runs`` (``all_runs(cfg)``) when the caller has them: planning expands once


def bias_models(cfg: dict, runs=None) -> set[tuple[str, str]]:
    """(task, model) of every PoE bias model: its ERM runs also write eval-mode log-probs."""
    return {(r.task, r.ref) for r in runs or all_runs(cfg) if "bias" in methods.get(r.method).reads}


def all_datamaps(cfg: dict, runs=None) -> set[tuple[str, str, int]]:
    reads = (r for r in runs or all_runs(cfg) if "datamap" in methods.get(r.method).reads)
    out = {(r.task, r.ref, datamap_seed(cfg, r.seed)) for r in reads}
    for t, refs in datamap_refs(cfg).items():
        out.update((t, r, s) for r in refs for s in cfg["seeds"])
    return out


def all_subsets(cfg: dict, runs=None) -> set[tuple[str, str, str, int]]:
    """(task, method, ref, seed) of every subset file (every run of a method with a subset step trains on one)."""
    return {(r.task, r.method, r.ref, r.seed) for r in runs or all_runs(cfg) if methods.get(r.method).subset}


def task_eval_sets(cfg: dict, task: str) -> list[str]:
    """The sets the paper's tables report: the ID test set, then the OOD sets."""
    return [name for name, role in eval_entries(cfg["tasks"][task]) if role != "dev"]


def source_users(cfg: dict) -> dict[str, list[str]]:
    """source -> the active tasks reading it (training or evaluation set), in task order."""
    out: dict[str, list[str]] = {}
    for task in active_tasks(cfg):
        for source in dict.fromkeys(e["source"] for _, _, e in task_entries(cfg["tasks"][task])):
            out.setdefault(source, []).append(task)
    return out


def tokenizer_of(cfg: dict, model: str) -> str:
    """The tokenizer group of ``model`` (models in one group share one tokenised copy of the data)."""
    return cfg["models"][model]["tokenizer"] or model


@dataclass
class Needs:
    """What one aggregation job reads, in grid terms (``workflow.Plan`` turns it into files)."""

    runs: set[Run] = field(default_factory=set)  # run.json + metrics.csv
    predictions: set[Run] = field(default_factory=set)  # + predictions.parquet
    dynamics: set[Run] = field(default_factory=set)  # + dynamics.npz
    datamaps: set[tuple[str, str, int]] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)  # other tables' CSV files
