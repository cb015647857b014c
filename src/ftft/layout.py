"""The layout on disk: every path the workflow reads or writes, defined here and only here (docs/ARCHITECTURE.md,
"One home for paths" and "Files on disk"). A method returns the Snakemake pattern without the object it names,
the concrete path with it::

    L = Layout.from_config(cfg)
    L.run_file("metrics.csv")           # 'results/runs/{task}/{model}/{method}-{ref}/{budget}/seed{seed}/metrics.csv'
    L.run_file("metrics.csv", run)      # 'results/runs/nli/deberta-v3-large/dm-tinybert/full/seed0/metrics.csv'
"""

from pathlib import Path

RUN_NAME = "{task}/{model}/{method}-{ref}/{budget}/seed{seed}"  # a run inside runs/, logs/train/, ...
RUN_DIR = f"runs/{RUN_NAME}"
RUN_FILES = ("metrics.csv", "predictions.parquet", "dynamics.npz", "run.json")
BIAS_FILE = "bias_logp.parquet"  # eval-mode log-probabilities of a PoE bias model's final weights
TABLE_EXTS = ("csv", "md", "tex", "html")
FIGURE_EXTS = ("png", "pdf")


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


def _run_path(root: str, template: str):
    """A ``Layout`` method: ``template`` below ``root`` filled with a ``grid.Run``'s fields (none: the pattern)."""
    return lambda self, run=None: f"{getattr(self, root)}/{_fill(template, **_run_fields(run))}"


class Layout:
    """Paths of one workflow instance (roots from the config: ``results``, ``resources``, ``state_dir``)."""

    def __init__(self, results: str | Path = "results", resources: str | Path = "resources", state_dir=".ftft-state"):
        self.results = str(results).rstrip("/") or "."
        self.resources = str(resources).rstrip("/") or "."
        self.state_root = str(state_dir).rstrip("/") or "."

    @classmethod
    def from_config(cls, cfg: dict) -> "Layout":
        return cls(cfg["results"], cfg["resources"], cfg["state_dir"])

    def res(self, rel: str) -> str:
        return f"{self.results}/{rel}"

    # --- runs (given a ``grid.Run``, else the pattern) ------------------------------------
    run_dir = _run_path("results", RUN_DIR)
    state_dir = _run_path("state_root", RUN_DIR)
    export = _run_path("results", f"exports/{RUN_NAME}")  # a DM run's model at the ship.fraction checkpoint
    train_log = _run_path("results", f"logs/train/{RUN_NAME}.log")  # both train rules
    train_benchmark = _run_path("results", f"benchmarks/train/{RUN_NAME}.tsv")
    gpu_locks = _path("state_root", "gpu-locks")

    def run_file(self, name: str, run=None) -> str:
        return f"{self.run_dir(run)}/{name}"

    # --- data, data maps, subsets, aggregates (below results/) ----------------------------
    source = _path("results", "data/sources/{source}.parquet", "source")
    source_summary = _path("results", "data/sources/{source}.summary.json", "source")
    task_train = _path("results", "data/{task}/train.parquet", "task")
    task_eval_dir = _path("results", "data/{task}/eval", "task")
    tokenized = _path("results", "data/{task}/tokenized/{tokenizer}", "task", "tokenizer")
    datamap = _path("results", "datamaps/{task}/{ref}/seed{seed}.parquet", "task", "ref", "seed")
    datamap_plot = _path("results", "figures/datamaps/{task}_{ref}_seed{seed}.png", "task", "ref", "seed")
    subset = _path("results", "subsets/{task}/{method}-{ref}/seed{seed}.parquet", "task", "method", "ref", "seed")
    table = _path("results", "tables/table{table}.{ext}", "table", "ext", ext="csv")
    figure = _path("results", "figures/figure{figure}.{ext}", "figure", "ext", ext="png")
    claims = _path("results", "tables/claims.{ext}", "ext", ext="csv")
    comparison = _path("results", "tables/paper_comparison.{ext}", "ext", ext="csv")
    failed_runs = _path("results", "failed_runs.{ext}", "ext", ext="md")
    screening = _path("results", "screening.{ext}", "ext", ext="csv")  # the candidate references ranked (ship.refs)
    shipped = _path("results", "model/{task}", "task")  # the shipped FTFT model: an export + README.md
    config_json = _path("results", "config.json")
    # --- below resources/ ----------------------------------------------------------------
    download_dir = _path("resources", "{source}", "source")
    download_marker = _path("resources", "{source}/DONE.json", "source")
    demo_model = _path("resources", "demo_models/{model}", "model")
    hub_marker = _path("resources", "hub/{model}.json", "model")

    def task_eval(self, task: str, name: str) -> str:
        return f"{self.task_eval_dir(task)}/{name}.parquet"

    def table_prefix(self, table: str) -> str:
        return self.table(table, "csv").removesuffix(".csv")

    def figure_prefix(self, figure: str) -> str:
        return self.figure(figure, "png").removesuffix(".png")

    def log(self, rule: str, name: str) -> str:
        return self.res(f"logs/{rule}/{name}.log")

    def benchmark(self, rule: str, name: str) -> str:
        return self.res(f"benchmarks/{rule}/{name}.tsv")


def _opt(**fields) -> dict:
    """The fields that are set (a pattern keeps the others as wildcards)."""
    given = {k: v for k, v in fields.items() if v is not None}
    if given and len(given) != len(fields):
        return {k: (v if v is not None else "{" + k + "}") for k, v in fields.items()}
    return given


def _run_fields(run) -> dict:
    return {} if run is None else run.fields()
