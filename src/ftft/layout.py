"""The layout on disk: every path the workflow reads or writes, defined here and only here.

Templates are relative to one of three roots (``results``, ``resources``, ``state_dir``, from
the config) and use Snakemake wildcard syntax. ``Layout`` joins them to their root; each
method returns the concrete path when given the object it names (a ``grid.Run``, a task, ...)
and the Snakemake pattern (wildcards left in) when not, so the rules, the grid and the
aggregation code ask the same function::

    L = Layout.from_config(cfg)
    L.run_file("metrics.csv")           # 'results/runs/{task}/{model}/{method}-{ref}/{budget}/seed{seed}/metrics.csv'
    L.run_file("metrics.csv", run)      # 'results/runs/nli/deberta-v3-large/dm-tinybert/full/seed0/metrics.csv'

See docs/ARCHITECTURE.md ("Files on disk") for what each file holds.
"""

from __future__ import annotations

from pathlib import Path

# --- below results/ -------------------------------------------------------------------------
RUN_NAME = "{task}/{model}/{method}-{ref}/{budget}/seed{seed}"  # a run inside runs/, logs/train/, ...
RUN_DIR = f"runs/{RUN_NAME}"
RUN_FILES = ("metrics.csv", "predictions.parquet", "dynamics.npz", "run.json")
BIAS_FILE = "bias_logp.parquet"  # eval-mode log-probabilities of a PoE bias model's final weights
SOURCE = "data/sources/{source}.parquet"
SOURCE_SUMMARY = "data/sources/{source}.summary.json"
TASK_TRAIN = "data/{task}/train.parquet"
TASK_EVAL_DIR = "data/{task}/eval"
TOKENIZED = "data/{task}/tokenized/{tokenizer}"
DATAMAP = "datamaps/{task}/{ref}/seed{seed}.parquet"
DATAMAP_PLOT = "figures/datamaps/{task}_{ref}_seed{seed}.png"
SUBSET = "subsets/{task}/{method}-{ref}/seed{seed}.parquet"
TABLE = "tables/table{table}.{ext}"
TABLE_EXTS = ("csv", "md", "tex", "html")
FIGURE = "figures/figure{figure}.{ext}"
FIGURE_EXTS = ("png", "pdf")
CLAIMS = "tables/claims.{ext}"
COMPARISON = "tables/paper_comparison.{ext}"
FAILED_RUNS = "failed_runs.{ext}"
SCREENING = "screening.{ext}"  # the candidate references ranked (ship.refs)
EXPORT = f"exports/{RUN_NAME}"  # a DM run's model at the ship.fraction checkpoint (save_pretrained)
SHIPPED = "model/{task}"  # the shipped FTFT model: the export of the chosen reference's run + README.md
CONFIG_JSON = "config.json"
LOGS = "logs"
BENCHMARKS = "benchmarks"
# --- below resources/ -----------------------------------------------------------------------
DOWNLOAD_DIR = "{source}"
DOWNLOAD_MARKER = "{source}/DONE.json"
DEMO_MODEL = "demo_models/{model}"
HUB_MARKER = "hub/{model}.json"
# --- below state_dir/ -----------------------------------------------------------------------
GPU_LOCKS = "gpu-locks"


def _fill(template: str, **fields) -> str:
    """``template`` with the given fields filled in; with none, the wildcard pattern itself."""
    return template.format(**fields) if fields else template


def _path(root: str, template: str, *names: str, **defaults):
    """A ``Layout`` method: ``template`` below the ``root`` attribute, filled with the fields (positional in the
    order of ``names``, or by name) that are given; the others stay wildcards (``_opt``)."""

    def method(self, *args, **kwargs) -> str:
        fields = {**defaults, **dict(zip(names, args, strict=False)), **kwargs}
        return f"{getattr(self, root)}/{_fill(template, **_opt(**{n: fields.get(n) for n in names}))}"

    return method


class Layout:
    """Paths of one workflow instance (roots from the config: ``results``, ``resources``, ``state_dir``)."""

    def __init__(self, results: str | Path = "results", resources: str | Path = "resources", state_dir=".ftft-state"):
        self.results = str(results).rstrip("/") or "."
        self.resources = str(resources).rstrip("/") or "."
        self.state_root = str(state_dir).rstrip("/") or "."

    @classmethod
    def from_config(cls, cfg: dict) -> Layout:
        return cls(cfg["results"], cfg["resources"], cfg["state_dir"])

    def res(self, rel: str) -> str:
        return f"{self.results}/{rel}"

    # --- runs (given a ``grid.Run``, else the pattern) ------------------------------------
    def run_dir(self, run=None) -> str:
        return self.res(_fill(RUN_DIR, **_run_fields(run)))

    def run_file(self, name: str, run=None) -> str:
        return f"{self.run_dir(run)}/{name}"

    def state_dir(self, run=None) -> str:
        return f"{self.state_root}/{_fill(RUN_DIR, **_run_fields(run))}"

    def gpu_locks(self) -> str:
        return f"{self.state_root}/{GPU_LOCKS}"

    def export(self, run=None) -> str:
        return self.res(_fill(EXPORT, **_run_fields(run)))

    def train_log(self, run=None) -> str:
        """A training job's log (both train rules): ``logs/train/<run name>.log``."""
        return self.log("train", _fill(RUN_NAME, **_run_fields(run)))

    def train_benchmark(self, run=None) -> str:
        return self.benchmark("train", _fill(RUN_NAME, **_run_fields(run)))

    # --- data, data maps, subsets, aggregates (below results/) ----------------------------
    source = _path("results", SOURCE, "source")
    source_summary = _path("results", SOURCE_SUMMARY, "source")
    task_train = _path("results", TASK_TRAIN, "task")
    task_eval_dir = _path("results", TASK_EVAL_DIR, "task")
    tokenized = _path("results", TOKENIZED, "task", "tokenizer")
    datamap = _path("results", DATAMAP, "task", "ref", "seed")
    datamap_plot = _path("results", DATAMAP_PLOT, "task", "ref", "seed")
    subset = _path("results", SUBSET, "task", "method", "ref", "seed")
    table = _path("results", TABLE, "table", "ext", ext="csv")
    figure = _path("results", FIGURE, "figure", "ext", ext="png")
    claims = _path("results", CLAIMS, "ext", ext="csv")
    comparison = _path("results", COMPARISON, "ext", ext="csv")
    failed_runs = _path("results", FAILED_RUNS, "ext", ext="md")
    screening = _path("results", SCREENING, "ext", ext="csv")
    shipped = _path("results", SHIPPED, "task")
    config_json = _path("results", CONFIG_JSON)
    # --- below resources/ ----------------------------------------------------------------
    download_dir = _path("resources", DOWNLOAD_DIR, "source")
    download_marker = _path("resources", DOWNLOAD_MARKER, "source")
    demo_model = _path("resources", DEMO_MODEL, "model")
    hub_marker = _path("resources", HUB_MARKER, "model")

    def task_eval(self, task: str, name: str) -> str:
        return f"{self.task_eval_dir(task)}/{name}.parquet"

    def table_prefix(self, table: str) -> str:
        return self.table(table, "csv").removesuffix(".csv")

    def figure_prefix(self, figure: str) -> str:
        return self.figure(figure, "png").removesuffix(".png")

    def log(self, rule: str, name: str) -> str:
        return self.res(f"{LOGS}/{rule}/{name}.log")

    def benchmark(self, rule: str, name: str) -> str:
        return self.res(f"{BENCHMARKS}/{rule}/{name}.tsv")


def _opt(**fields) -> dict:
    """The fields that are set (a pattern keeps the others as wildcards)."""
    given = {k: v for k, v in fields.items() if v is not None}
    if given and len(given) != len(fields):
        return {k: (v if v is not None else "{" + k + "}") for k, v in fields.items()}
    return given


def _run_fields(run) -> dict:
    return {} if run is None else run.fields()
