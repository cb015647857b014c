"""What the Snakefile asks of the package: targets, input lists and job parameters.

The ``.smk`` files stay declarative: every path list, every input function's logic and
every parameter string is computed here, from the validated config and ``ftft.grid``.
``Plan(config)`` is built once per Snakemake invocation; its methods are called by the
rules' input / params / resources functions with plain wildcard values.

Paths returned here include the results (or resources) root, exactly as the rules
declare them (the Snakefile sets the ``<results>`` / ``<resources>`` path variables to
``config["results"]`` / ``config["resources"]``).

Rerun triggers: Snakemake re-runs a job when its params change, so a training job's
params hold only that run's spec (``make_spec(cfg, run)``), never the whole config.
"""

from __future__ import annotations

import json
import re
import shlex
from functools import cached_property
from pathlib import PurePosixPath

from . import grid
from .grid import RUN_FILES, Run

#: Wildcard patterns shared by all rules (the training path must parse one way only).
MODEL_RE = r"[a-z0-9][a-z0-9.-]*"
METHOD_RE = r"[a-z]+"
BUDGET_RE = r"full|\d+-\d+"
SEED_RE = r"\d+"
#: ``Run.path`` with the train rule's wildcards (tests check the two agree).
RUN_PATTERN = "runs/{task}/{model}/{method}-{ref}/{budget}/seed{seed}"
DEMO_KINDS = ("nli", "hsd")


def _alternation(names) -> str:
    names = sorted(names, key=lambda n: (-len(n), n))
    return "|".join(re.escape(n) for n in names) or "(?!)"


def dumps(obj) -> str:
    """Canonical JSON (stable key order) so that a param only changes when its content does."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def quote_args(*pairs: tuple[str, object]) -> str:
    """'--flag value' pairs, shell-quoted, skipping empty values."""
    out = []
    for flag, value in pairs:
        if value is None or value == "" or value == []:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        out.append(" ".join([flag, *(shlex.quote(str(v)) for v in values)]))
    return " ".join(out)


class Plan:
    """The workflow's view of one validated config."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.results = str(cfg["results"]).rstrip("/") or "."
        self.resources = str(cfg["resources"]).rstrip("/") or "."
        self.mode = cfg["mode"]

    # ------------------------------------------------------------------ paths
    def r(self, rel: str) -> str:
        """Path below the results root."""
        return f"{self.results}/{rel}"

    def run_file(self, run: Run, name: str) -> str:
        return self.r(f"{run.path}/{name}")

    def run_files(self, run: Run, names=RUN_FILES) -> list[str]:
        return [self.run_file(run, n) for n in names]

    def datamap_file(self, task: str, ref: str, seed: int) -> str:
        return self.r(grid.datamap_path(task, ref, seed))

    def source_file(self, source: str) -> str:
        return self.r(f"data/sources/{source}.parquet")

    def task_train_file(self, task: str) -> str:
        return self.r(f"data/{task}/train.parquet")

    def task_eval_files(self, task: str) -> list[str]:
        return [self.r(f"data/{task}/eval/{name}.parquet") for name in grid.task_eval_sets(self.cfg, task)]

    def demo_model_dir(self, model: str) -> str:
        return f"{self.resources}/demo_models/{model}"

    def download_marker(self, source: str) -> str:
        return f"{self.resources}/{source}/DONE.json"

    # ------------------------------------------------------------- the grid
    @cached_property
    def runs(self) -> list[Run]:
        return sorted(grid.all_runs(self.cfg))

    @cached_property
    def datamaps(self) -> list[tuple[str, str, int]]:
        return sorted(grid.all_datamaps(self.cfg))

    @cached_property
    def models_used(self) -> list[str]:
        return sorted({r.model for r in self.runs})

    @cached_property
    def sources(self) -> list[str]:
        return sorted(grid.sources_used(self.cfg))

    @cached_property
    def table_ids(self) -> list[str]:
        ids = {PurePosixPath(t).stem.removeprefix("table") for t in grid.table_targets(self.cfg)}
        return sorted(ids, key=int)

    @cached_property
    def figure_ids(self) -> list[str]:
        """'1a_nli', '2_halting', ...: one figure job per (png, pdf) pair."""
        ids = []
        for t in grid.figure_targets(self.cfg):
            p = PurePosixPath(t)
            if p.parent.name == "figures" and p.suffix == ".png":
                ids.append(p.stem.removeprefix("figure"))
        return ids

    def final_targets(self) -> list[str]:
        rel = [
            *grid.table_targets(self.cfg),
            *grid.figure_targets(self.cfg),
            "tables/paper_comparison.csv",
            "tables/paper_comparison.md",
        ]
        return [self.r(t) for t in rel]

    def wildcard_constraints(self) -> dict[str, str]:
        return {
            "task": _alternation(self.cfg["tasks"]),
            "model": MODEL_RE,
            "ref": MODEL_RE,
            "method": METHOD_RE,
            "budget": BUDGET_RE,
            "seed": SEED_RE,
            "kind": _alternation(DEMO_KINDS),
            "variant": r"[A-Za-z0-9_]+",  # a figure's task (1a, 1b) or mode (2-4)
            # raw and BYO sources; demo_* sources come from the demo_data rule
            "source": r"(?!demo_)[A-Za-z0-9_-]+",
        }

    # ------------------------------------------------------------------ data
    def download_params(self, source: str) -> dict[str, str]:
        ds = self.cfg.get("datasets", {}).get(source)
        if ds is None:
            raise ValueError(f"source '{source}' is not defined under 'datasets'")
        sha = ds.get("sha256")
        return {
            "url": ds.get("url") or "",
            "extra": quote_args(
                ("--sha256", dumps(sha) if isinstance(sha, dict) else sha),
                ("--mirror", ds.get("mirror")),
            ),
        }

    def prepare_inputs(self, source: str) -> list[str]:
        byo = self.cfg.get("byo", {})
        if source in byo:
            return sorted(byo[source]["files"].values())
        if source in self.cfg.get("datasets", {}):
            return [self.download_marker(source)]
        raise ValueError(f"source '{source}' is defined neither under 'datasets' nor under 'byo'")

    def prepare_extra(self, source: str) -> str:
        """--raw DIR (and --spec for a BYO source: its file/column mapping)."""
        byo = self.cfg.get("byo", {})
        if source in byo:
            return quote_args(("--raw", "."), ("--spec", dumps(byo[source])))
        return quote_args(("--raw", f"{self.resources}/{source}"))

    def task_sources(self, task: str) -> list[str]:
        t = self.cfg["tasks"][task]
        names = {t["train"]["source"], t["id_test"]["source"], *(o["source"] for o in t["ood"])}
        return [self.source_file(s) for s in sorted(names)]

    def assemble_spec(self, task: str) -> str:
        return dumps(self.cfg["tasks"][task])

    def demo_data_params(self, kind: str) -> str:
        demo = self.cfg.get("demo", {})
        return quote_args(
            ("--train-rows", demo.get(f"{kind}_train_rows")),
            ("--eval-rows", demo.get("eval_rows")),
            ("--seed", demo.get("seed")),
        )

    # ---------------------------------------------------------------- models
    def demo_corpus(self) -> list[str]:
        return [self.source_file(s) for s in self.sources if s.startswith("demo_")]

    def model_setting(self, model: str, key: str) -> str:
        return self.cfg["models"][model][key]

    # -------------------------------------------------------------- training
    @staticmethod
    def run_of(wildcards) -> Run:
        return Run(
            wildcards.task,
            wildcards.model,
            wildcards.method,
            wildcards.ref,
            wildcards.budget,
            int(wildcards.seed),
        )

    def train_inputs(self, run: Run) -> dict[str, object]:
        inputs: dict[str, object] = {
            "train": self.task_train_file(run.task),
            "evals": self.task_eval_files(run.task),
        }
        subset = grid.subset_path(run)
        if subset is not None:
            inputs["subset"] = self.r(subset)
        if self.mode == "demo":
            inputs["model"] = self.demo_model_dir(run.model)
        return inputs

    def train_spec(self, run: Run) -> str:
        """JSON of ``ftft.train.spec.make_spec(cfg, run)``: this run's settings only."""
        from .train.spec import make_spec  # lazy: the train package is not needed to plan

        return dumps(make_spec(self.cfg, run))

    def train_extra(self, run: Run, inputs) -> str:
        model_path = inputs.get("model") if hasattr(inputs, "get") else None
        if model_path is None and self.mode != "demo":
            model_path = self.cfg["models"][run.model].get("path")
        return quote_args(
            ("--subset", inputs.get("subset") if hasattr(inputs, "get") else None),
            ("--model-path", model_path),
        )

    def state_dir(self, run: Run) -> str:
        return f"{str(self.cfg['state_dir']).rstrip('/')}/{run.path}"

    def state_dir_pattern(self) -> str:
        """``state_dir(run)`` as a wildcard pattern of the train rule (a plain string param,
        cheaper to expand than a function for hundreds of jobs)."""
        return f"{str(self.cfg['state_dir']).rstrip('/')}/{RUN_PATTERN}"

    def train_threads(self) -> int:
        return int(self.cfg["training"].get("threads", 1))

    def train_gpus(self) -> int:
        """GPUs per training job: config cluster.train_gpus, else 1 in paper mode and 0 in
        demo mode (the demo trains tiny models on CPU)."""
        default = 1 if self.mode == "paper" else 0
        return int(self.cfg.get("cluster", {}).get("train_gpus", default))

    def train_mem_mb(self) -> int:
        return int(self.cfg.get("cluster", {}).get("train_mem_mb", 32000))

    def train_runtime(self, task: str) -> int:
        """Minutes (SLURM --time) for one training job of ``task``."""
        return int(self.cfg.get("cluster", {}).get("train_runtime_min", {}).get(task, 720))

    def gpu_model(self) -> str:
        """SLURM GPU model (the plugin's ``gpu_model`` -> --gpus=MODEL:1); '' for any."""
        return self.cfg.get("cluster", {}).get("gpu_model") or ""

    def worker_settings(self) -> dict | None:
        """The warm worker's settings (``worker`` config key) when enabled, else None."""
        settings = self.cfg.get("worker") or {}
        if not settings.get("enabled"):
            return None
        return {"idle_timeout": float(settings.get("idle_timeout_s", 600)), "log": self.r("logs/worker.log")}

    # ------------------------------------------------------ datamaps, subsets
    def datamap_ref_run(self, task: str, ref: str, seed: int) -> Run:
        return grid.ref_run(task, ref, seed)

    def datamap_inputs(self, task: str, ref: str, seed: int) -> dict[str, str]:
        run = grid.ref_run(task, ref, seed)
        return {"dynamics": self.run_file(run, "dynamics.npz"), "record": self.run_file(run, "run.json")}

    def subset_inputs(self, task: str, method: str, ref: str, seed: int) -> dict[str, str]:
        inputs = {"train": self.task_train_file(task)}
        if method in grid.NEEDS_REF:
            ref_seed = grid.datamap_seed(self.cfg, seed)
            if method == "dm":
                inputs["datamap"] = self.datamap_file(task, ref, ref_seed)
            else:
                ref_run = grid.ref_run(task, ref, ref_seed)
                inputs["dynamics"] = self.run_file(ref_run, "dynamics.npz")
        return inputs

    def subset_spec(self, task: str, method: str) -> str:
        if method == "jtt":
            jtt = self.cfg["methods"]["jtt"]
            return dumps({"jtt_epoch": self.cfg["tasks"][task].get("jtt_epoch"), "upweight": jtt.get("upweight")})
        return dumps({})

    @staticmethod
    def subset_extra(inputs) -> str:
        dynamics = inputs.get("dynamics")
        return quote_args(
            ("--datamap", inputs.get("datamap")),
            ("--ref-run", str(PurePosixPath(dynamics).parent) if dynamics else None),
        )

    # ------------------------------------------------------- tables, figures
    def config_json(self) -> str:
        return self.r("config.json")

    def config_dump(self) -> str:
        """The merged config as canonical JSON (what table/figure jobs read)."""
        return json.dumps(self.cfg, sort_keys=True, indent=1, default=str)

    # The table / figure / comparison modules say which files they read; ask them, so a
    # job's inputs are exactly those files (imported lazily: they pull in pandas).
    def table_inputs(self, tid: str) -> list[str]:
        from . import tables

        return [self.r(f) for f in tables.table_inputs(self.cfg, tid)]

    @staticmethod
    def table_caption(tid: str) -> str:
        from .tables import REPORT_CAPTIONS

        return REPORT_CAPTIONS[str(tid)]

    @cached_property
    def figure_groups(self) -> dict[str, list[str]]:
        """Figure id ('1a', '2', ...) -> its variants (tasks for 1a/1b, modes for 2-4)."""
        out: dict[str, list[str]] = {}
        for fig in self.figure_ids:
            fid, _, variant = fig.partition("_")
            out.setdefault(fid, []).append(variant)
        return out

    @staticmethod
    def figure_cli(fid: str, variant: str) -> dict[str, str | None]:
        if fid in ("1a", "1b"):
            return {"task": variant, "mode": None}
        return {"task": None, "mode": variant}

    def figure_inputs(self, fid: str, variant: str) -> list[str]:
        from . import figures

        return [self.r(f) for f in figures.figure_inputs(self.cfg, fid, **self.figure_cli(fid, variant))]

    def figure_args(self, fid: str, variant: str) -> str:
        cli = self.figure_cli(fid, variant)
        return quote_args(("--id", fid), ("--task", cli["task"]), ("--mode", cli["mode"]))

    @staticmethod
    def figure_caption(fid: str) -> str:
        from .figures import REPORT_CAPTIONS

        return REPORT_CAPTIONS[str(fid)]

    def compare_inputs(self) -> list[str]:
        from . import compare

        return [self.r(f) for f in compare.compare_inputs(self.cfg)]
