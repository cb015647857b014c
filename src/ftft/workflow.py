"""What the Snakefile asks of the package: targets, every rule's inputs (the DAG edges), job parameters and resources.
``Plan(config)`` is built once per Snakemake invocation; the rules call it with plain wildcard values. Rerun triggers
(params that hold only what changes a result): docs/ARCHITECTURE.md."""

import copy
import functools
import json
import math
import os
import re
import shlex
import shutil
from pathlib import Path

from . import cost, figures, grid, methods, plan, tables
from .config import ConfigError, active_tasks, demo_kind, parse_fraction
from .grid import Run
from .layout import BIAS_FILE, FIGURE_EXTS, TABLE_EXTS, Layout
from .modeling import model_origin, model_source

KEY_RE = r"[a-z0-9][a-z0-9.-]*"
#: config keys that never change a result (left out of the config dump aggregation jobs read)
OPERATIONAL = ("cluster", "hub", "state_dir", "resources")
OPERATIONAL_TRAINING = ("threads", "log_every", "eval_batch_size", "deterministic")


def alternation(names) -> str:
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
        self.layout = Layout.from_config(cfg)

    # ------------------------------------------------------------------ the grid (expanded once)
    @functools.cached_property
    def runs(self) -> list[Run]:
        return sorted(grid.all_runs(self.cfg))

    @functools.cached_property
    def datamaps(self) -> list[tuple[str, str, int]]:
        return sorted(grid.all_datamaps(self.cfg, self.runs))

    @functools.cached_property
    def sources(self) -> list[str]:
        return sorted(grid.source_users(self.cfg))

    @functools.cached_property
    def table_ids(self) -> list[str]:
        return list(tables.table_ids(self.cfg))

    @functools.cached_property
    def figure_ids(self) -> list[str]:
        return list(figures.figure_ids(self.cfg))

    @functools.cached_property
    def models_used(self) -> set[str]:  # (the shipped main model's run is planned after the screening)
        return {r.model for r in self.runs} | ({self.cfg["ship"]["main"]} if self.cfg["ship"] else set())

    @functools.cached_property
    def bias_models(self) -> set[tuple[str, str]]:
        return grid.bias_models(self.cfg, self.runs)

    def models_from(self, origin: str) -> list[str]:
        """The models the grid loads that come from ``origin`` (``modeling.model_origin``: demo, path, hub)."""
        return [m for m in sorted(self.models_used) if model_origin(self.cfg, m) == origin]

    def check(self) -> None:
        """Config problems only the planned grid reveals (before any job): raise ConfigError."""
        from .data.sources import SOURCES

        for m in self.models_from("path"):
            path = self.cfg["models"][m]["path"]
            if not Path(path).exists():
                raise ConfigError(f"invalid config at 'models.{m}.path': local model copy {path!r} does not exist")
            if not (Path(path) / "config.json").is_file():
                raise ConfigError(
                    f"invalid config at 'models.{m}.path': {path!r} is not a model folder (no config.json in it; "
                    "expected what save_pretrained writes: config.json, weights and tokenizer files)"
                )
        # every task's training / evaluation set names a split its source has, with the task's labels: known from
        # the config before anything is downloaded or generated (built-in datasets, demo sources, BYO)
        for task in active_tasks(self.cfg):
            t = self.cfg["tasks"][task]
            for key, _, entry in grid.task_entries(t):
                source, byo = entry["source"], self.cfg["byo"].get(entry["source"])
                if byo:
                    splits, labels = list(byo["hf"]["splits"] if byo["hf"] else byo["files"]), byo["labels"]
                elif (kind := demo_kind(self.cfg, source)) is not None:
                    from .data import demo

                    if kind not in demo.TASKS:
                        raise ConfigError(
                            f"invalid config at 'tasks.{task}.{key}.source': no demo source {source!r}; the demo "
                            "sources are 'demo_nli' and 'demo_hsd'"
                        )
                    splits, labels = [*demo.ID_SPLITS, *demo.OOD_SPLITS[kind]], list(demo.LABEL_NAMES[kind])
                elif source in SOURCES:
                    splits, labels = list(SOURCES[source].splits), list(SOURCES[source].labels)
                else:
                    continue
                if labels is not None and [str(x) for x in labels] != [str(x) for x in t["labels"]]:
                    where = f"source '{source}' (byo.{source}.labels)" if byo else f"source '{source}'"
                    raise ConfigError(
                        f"invalid config at 'tasks.{task}.labels': {t['labels']} are not the labels of {where} "
                        f"({list(labels)}, in that order)"
                    )
                if entry["split"] not in splits:
                    what = f"byo.{source}.files has no split" if byo else f"source '{source}' has no split"
                    raise ConfigError(
                        f"invalid config at 'tasks.{task}.{key}.split': {what} {entry['split']!r}; its splits are {splits}"
                    )
        for source, users in sorted(grid.source_users(self.cfg).items()):  # BYO, a download or a demo source
            byo, label_sets = self.cfg["byo"].get(source), {tuple(self.cfg["tasks"][t]["labels"]) for t in users}
            if byo and byo["labels"] is None and len(label_sets) > 1:
                raise ConfigError(
                    f"invalid config at 'byo.{source}.labels': null takes the labels of the task using the source, "
                    f"but tasks {users} have different labels {sorted(label_sets)}; set byo.{source}.labels"
                )
            for split, f in (byo["files"] if byo else {}).items():
                if not Path(f).is_file():
                    raise ConfigError(f"invalid config at 'byo.{source}.files.{split}': file {f!r} does not exist")
            if byo or (ds := self.cfg["datasets"].get(source)) is None:
                continue
            if not ds["url"] and not ds["mirror"]:
                raise ConfigError(f"invalid config at 'datasets.{source}': neither 'url' nor 'mirror' is set")
            done = Path(self.layout.download_marker(source)).is_file()
            if ds["mirror"] and not done and not Path(ds["mirror"]).exists():
                raise ConfigError(f"invalid config at 'datasets.{source}.mirror': {ds['mirror']!r} does not exist")

    def final_targets(self) -> list[str]:
        L = self.layout
        out = [L.table(t, ext) for t in self.table_ids for ext in TABLE_EXTS]
        out += [L.figure(f, ext) for f in self.figure_ids for ext in FIGURE_EXTS]
        out += [L.datamap_plot(t, r, s) for t, r, s in self.datamaps]
        # every report item is a target: --report on a finished results folder then finds them all
        # the comparison with the published numbers is built when the config has the paper's tasks
        paper = {"nli", "hsd"} & set(active_tasks(self.cfg))
        reports = (L.comparison, L.claims) if paper else (L.claims,) if self.table_ids else ()
        out += [f(ext) for f in reports for ext in ("csv", "md", "html")]
        out += self.ship_targets()
        out += [L.failed_runs("md"), L.failed_runs("html")]
        return out

    def wildcard_constraints(self) -> dict[str, str]:
        from .data import demo

        return {
            "task": alternation(active_tasks(self.cfg)),
            "model": KEY_RE,
            "ref": KEY_RE,
            "method": alternation(methods.run_methods()),
            "subset_method": alternation(m for m in methods.run_methods() if methods.get(m).subset),
            "budget": r"full|\d+-\d+",
            "seed": r"\d+",
            "tokenizer": KEY_RE,
            "kind": alternation(demo.TASKS),
            "table": alternation(self.table_ids),
            "figure": alternation(self.figure_ids),
            # raw and BYO sources; demo_* sources come from the demo_data rule
            "source": r"(?!demo_)[A-Za-z0-9][A-Za-z0-9_-]*",
        }

    # ------------------------------------------------------------------ data
    def download_args(self, source: str) -> str:
        ds = self.cfg["datasets"].get(source)
        if ds is None:
            raise ValueError(f"source '{source}' is not defined under 'datasets'")
        return quote_args(
            ("--url", ds["url"]),
            ("--sha256", dumps(ds["sha256"]) if isinstance(ds["sha256"], dict) else ds["sha256"]),
            ("--mirror", ds["mirror"]),
        )

    def prepare_inputs(self, source: str) -> list[str]:
        byo = self.cfg["byo"]
        if source in byo:
            return sorted(byo[source]["files"].values())
        if source in self.cfg["datasets"]:
            return [self.layout.download_marker(source)]
        raise ValueError(f"source '{source}' is defined neither under 'datasets' nor under 'byo'")

    def byo_spec(self, source: str) -> dict:
        """The ``byo.<source>`` entry; ``labels: null`` takes the labels of the task(s) using it."""
        spec = copy.deepcopy(self.cfg["byo"][source])
        users = grid.source_users(self.cfg).get(source, [])
        label_sets = {tuple(self.cfg["tasks"][t]["labels"]) for t in users}
        if spec["labels"] is None and len(label_sets) == 1:
            spec["labels"] = list(label_sets.pop())
            spec["labels_from"] = f"tasks.{users[0]}.labels (byo.{source}.labels is null)"
        return spec

    def prepare_args(self, source: str) -> str:
        """--raw DIR (and --spec for a BYO source: its file/column mapping)."""
        if source in self.cfg["byo"]:
            return quote_args(("--raw", "."), ("--spec", dumps(self.byo_spec(source))))
        return quote_args(("--raw", self.layout.download_dir(source)))

    def task_sources(self, task: str) -> list[str]:
        names = {e["source"] for _, _, e in grid.task_entries(self.cfg["tasks"][task])}
        return [self.layout.source(s) for s in sorted(names)]

    def assemble_spec(self, task: str) -> str:
        return dumps(self.cfg["tasks"][task])

    def demo_data_args(self, kind: str) -> str:
        demo = self.cfg["demo"]
        return quote_args(
            ("--train-rows", demo[f"{kind}_train_rows"]), ("--eval-rows", demo["eval_rows"]), ("--seed", demo["seed"])
        )

    # ------------------------------------------------------------------ models
    def demo_model_args(self) -> str:
        m = self.cfg["models"]
        return " ".join(
            quote_args(
                ("--model", k),
                ("--family", m[k]["family"]),
                ("--size", m[k]["size"]),
                ("--out", self.layout.demo_model(k)),
            )
            for k in self.models_from("demo")
        )

    def model_input(self, model: str) -> str:
        """What a job that loads ``model`` depends on: its demo folder, local copy or hub marker."""
        return (
            self.layout.hub_marker(model) if model_origin(self.cfg, model) == "hub" else model_source(self.cfg, model)
        )

    def tokenizer_model(self, tokenizer: str) -> str:
        """The model whose tokenizer files a tokenizer group is built from (first key of the group)."""
        members = sorted(m for m in self.models_used if grid.tokenizer_of(self.cfg, m) == tokenizer)
        if not members:
            raise ValueError(f"no model of this config uses tokenizer group {tokenizer!r}")
        return members[0]

    def fetch_env(self) -> str:
        """Environment prefix of the fetch job: the configured cache (``hub.cache``), never offline. The jobs
        that load models (tokenize, train) set the cache and ``hub.offline`` in their own process."""
        env = {k: v for k, v in hub_environment(self.cfg).items() if k != "HF_HUB_OFFLINE"}
        return "".join(f"{k}={shlex.quote(v)} " for k, v in env.items())

    # ------------------------------------------------------------------ training
    @staticmethod
    def run_of(wildcards) -> Run:
        return Run(
            wildcards.task, wildcards.model, wildcards.method, wildcards.ref, wildcards.budget, int(wildcards.seed)
        )

    def tokenized(self, task: str, model: str) -> str:
        return self.layout.tokenized(task, grid.tokenizer_of(self.cfg, model))

    def tokenize_inputs(self, task: str, tokenizer: str) -> dict[str, str]:
        return {
            "train": self.layout.task_train(task),
            "evals": self.layout.task_eval_dir(task),
            "model": self.model_input(self.tokenizer_model(tokenizer)),
        }

    def tokenize_params(self, task: str, tokenizer: str) -> dict:
        return {
            "model": model_source(self.cfg, self.tokenizer_model(tokenizer)),
            "max_length": self.cfg["tasks"][task]["max_length"],
            "eval_sets": [name for name, _ in grid.eval_entries(self.cfg["tasks"][task])],
        }

    def train_inputs(self, run: Run) -> dict[str, str]:
        inputs = {"data": self.tokenized(run.task, run.model), "model": self.model_input(run.model)}
        if methods.get(run.method).subset:
            inputs["subset"] = self.layout.subset(run.task, run.method, run.ref, run.seed)
        return inputs

    def train_spec(self, run: Run) -> dict:
        """``ftft.train.spec.make_spec(cfg, run)`` less the keys that change no result (the job takes those from
        the config itself): the train rule's param, so changing threads or log_every re-runs nothing. A run
        that may be shipped (``ship``) also saves its model at the halting checkpoint."""
        from .train.spec import make_spec  # lazy: the train package is not needed to plan

        spec = {k: v for k, v in make_spec(self.cfg, run).items() if k not in OPERATIONAL_TRAINING}
        if run in self.ship_candidates:  # the ERM model (ship.erm) at the end of its schedule
            frac = parse_fraction(self.cfg["ship"]["fraction"]) if run.method == "dm" else 1
            spec["export_checkpoint"] = int(frac * spec["checkpoints"])
        return spec

    def bias_model_constraint(self) -> dict[str, str]:
        """Wildcard constraints of the train rule variant that also writes ``bias_logp.parquet``."""
        return {"model": alternation({m for _, m in self.bias_models}), "method": "erm", "budget": grid.FULL}

    # ------------------------------------------------------------------ compute estimate (ftft.plan: the formulas)
    @functools.cache  # noqa: B019 (one Plan per Snakemake invocation)
    def estimate(self, run: Run) -> plan.Estimate:
        n, n_layer, d, n_all, t, source, real, eval_rows, train_rows = self.estimate_inputs(run.task, run.model)
        per_token = cost.forward_flops_per_token(n, n_layer, d, t)
        train_tokens = run.steps(self.cfg) * self.cfg["training"]["batch_size"] * t
        eval_tokens = max(1, round(self.cfg["tasks"][run.task]["checkpoints"] * float(run.fraction))) * eval_rows * t
        flops = 3.0 * train_tokens * per_token + eval_tokens * per_token
        if (run.task, run.model) in self.bias_models and run.method == "erm":
            flops += train_tokens / max(1, run.steps(self.cfg)) * per_token  # roughly one pass
        rate = self.cfg["cluster"]["gpu_peak_tflops"] * 1e12 * self.cfg["cluster"]["gpu_utilisation"]
        data_mb = train_rows * t * 8 / 2**20  # input ids + type ids, int32
        mem = plan.BASE_MEM_MB + plan.HOST_BYTES_PER_PARAM * n_all / 2**20 + data_mb
        real_tokens = None if real is None else train_tokens * real / t
        return plan.Estimate(run, train_tokens, flops, flops / rate / 3600, mem, source, real_tokens)

    @functools.cache  # noqa: B019 (per (task, model): planning stays linear in the runs)
    def estimate_inputs(self, task: str, model: str) -> tuple:
        """Model dims; padded tokens per example as the engine batches them, where from, real tokens per example (or
        None); evaluation and training rows."""
        t, stats = self.cfg["tasks"][task], Path(self.tokenized(task, model)) / "stats.json"
        tokens = plan.measured_tokens(stats, self.cfg["training"]) if stats.is_file() else None
        if tokens is None and t["train"]["source"] in plan.PAPER_TOKENS:
            tokens = plan.PAPER_TOKENS[t["train"]["source"]], "paper Table 4", None
        return (
            *plan.model_dims(self.cfg, model),
            *(tokens or (t["max_length"] / 2, "max_length / 2", None)),
            sum(plan.parquet_rows(self.layout.task_eval(task, name)) for name, _ in grid.eval_entries(t)),
            plan.parquet_rows(self.layout.task_train(task), plan.TRAIN_ROWS_DEFAULT),
        )

    def runtime_min(self, run: Run) -> int:
        """SLURM --time (minutes): safety x planned hours, plus 10 minutes of start-up, at least the floor."""
        c = self.cfg["cluster"]
        return max(c["min_runtime_min"], math.ceil(self.estimate(run).gpu_hours * 60 * c["runtime_safety"] + 10))

    def mem_mb(self, run: Run) -> int:
        return int(math.ceil(self.estimate(run).mem_mb * self.cfg["cluster"]["mem_safety"] / 100) * 100)

    def compute_rows(self) -> list[dict]:
        """One row per (task, method) group of training runs, then the total."""
        groups: dict[tuple[str, str], list[plan.Estimate]] = {}
        for run in self.runs:
            groups.setdefault((run.task, run.method), []).append(self.estimate(run))
        rows = [plan.row(t, m, es) for (t, m), es in sorted(groups.items())]
        return rows + [plan.row("all", "all", [e for es in groups.values() for e in es], "")]

    def other_jobs(self) -> dict[str, int]:
        """CPU jobs per rule (no GPU-hours)."""
        return {
            "tokenize": len({(r.task, grid.tokenizer_of(self.cfg, r.model)) for r in self.runs}),
            "datamap": len(self.datamaps),
            "subset": len(grid.all_subsets(self.cfg, self.runs)),
            "table": len(self.table_ids),
            "figure": len(self.figure_ids),
        }

    def compute_summary(self) -> str:
        """A few lines for the start of a run."""
        total, c = self.compute_rows()[-1], self.cfg["cluster"]
        other = ", ".join(f"{n} {k}" for k, n in self.other_jobs().items())
        line = (
            f"ftft compute plan: {total['jobs']} training jobs, {total['train_tokens'] / 1e9:.2f} G training tokens, "
            f"{total['pflops']:,.1f} PFLOPs ~ {total['gpu_hours']:,.1f} GPU-hours on {c['gpu_name']} at "
            f"{c['gpu_utilisation']:.0%} utilisation ({total['gpu_hours'] / 24:.2f} GPU-days)"
        )
        if self.cfg["mode"] == "paper" and set(active_tasks(self.cfg)) >= {"nli", "hsd"}:
            line += f"; the paper reports about {plan.PAPER_DAYS:g} GPU-days"
        return line + f"; CPU jobs: {other}. Details: ftft plan"

    def compute_markdown(self) -> str:
        """``ftft plan``: the rows as a table, the CPU jobs, the GPU and SLURM assumptions, the summary."""
        head = ["rule", "task", "method", "jobs", "train tokens (G)", "padded / real", "PFLOPs", "GPU-hours",
                "tokens/example from"]  # fmt: skip
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.compute_rows():
            lines.append(
                f"| {r['rule']} | {r['task']} | {r['method']} | {r['jobs']} | {r['train_tokens'] / 1e9:.3f} | "
                f"{'n/a' if r['padded_per_real'] is None else format(r['padded_per_real'], '.2f')} | "
                f"{r['pflops']:,.1f} | {r['gpu_hours']:,.2f} | {r['tokens_from']} |"
            )
        c = self.cfg["cluster"]
        lines += [
            "",
            "CPU jobs: " + ", ".join(f"{k} {n}" for k, n in self.other_jobs().items()),
            "",
            f"GPU: {c['gpu_name']}, {c['gpu_peak_tflops']} TFLOP/s peak at {c['gpu_utilisation']:.0%} utilisation "
            f"(cluster.gpu_utilisation). SLURM per training job: runtime = {c['runtime_safety']:g} x planned hours + "
            f"10 min (at least {c['min_runtime_min']} min), mem = {c['mem_safety']:g} x planned host memory.",
            "",
            self.compute_summary(),
        ]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ data maps, subsets
    def ref_inputs(self, task: str, ref: str, seed: int, reads=("dynamics", "record")) -> dict[str, str]:
        """The training set and the files of reference run (task, ref, seed) a job reads (``Method.reads``; by
        default what the data map is made of)."""
        run, L = grid.ref_run(task, ref, seed), self.layout
        files = {"dynamics": "dynamics.npz", "record": "run.json", "bias": BIAS_FILE}
        return {"train": L.task_train(task)} | {
            k: L.datamap(task, ref, seed) if k == "datamap" else L.run_file(files[k], run) for k in reads
        }

    def subset_inputs(self, task: str, method: str, ref: str, seed: int) -> dict[str, str]:
        """What the method's subset step reads: the reference run of the data map the run trains from."""
        return self.ref_inputs(task, ref, grid.datamap_seed(self.cfg, seed), methods.get(method).reads)

    def subset_args(self, task: str, method: str, ref: str, seed: int, inputs) -> str:
        m = methods.get(method)
        spec = m.settings(self.cfg, task)
        return quote_args(
            ("--q", self.cfg["q"] if m.uses_q else None),
            ("--seed", seed),
            ("--datamap", inputs.get("datamap")),
            ("--ref-run", inputs["record"].rsplit("/", 1)[0] if "record" in inputs.keys() else None),
            ("--spec", dumps(spec) if spec else None),
        )

    # ------------------------------------------------------------------ FTFT as a tool (ship)
    @functools.cached_property
    def ship_candidates(self) -> set[Run]:
        """The runs that save a model to ship: the DM run of each candidate reference; the main model's ERM run
        (``ship.erm``)."""
        s = self.cfg["ship"]
        refs = {*s["refs"], s["ref"], "none" if s["erm"] else None} - {None} if s else set()
        return {grid.ship_run(self.cfg, r) for r in refs}

    def ship_targets(self) -> list[str]:
        if not self.cfg["ship"]:
            return []
        erm = [self.shipped_model(erm=True)] if self.cfg["ship"]["erm"] else []
        return [self.layout.screening(ext) for ext in ("csv", "md", "html", "png")] + [self.shipped_model(), *erm]

    def shipped_model(self, erm: bool = False) -> str:
        return self.layout.shipped(self.cfg["ship"]["task"] + ("-erm" if erm else ""))

    def export_constraint(self) -> dict[str, str]:
        """Wildcard constraints of the train rule variant that also saves the model (``ship_candidates``)."""
        keys = ("task", "model", "method", "ref")
        fields = {k: alternation({getattr(r, k) for r in self.ship_candidates}) for k in keys}
        return fields | {"budget": grid.FULL, "seed": str(self.cfg["seeds"][0])}

    def screen_inputs(self) -> list[str]:
        s = self.cfg["ship"]
        runs = [grid.ref_run(s["task"], r, self.cfg["seeds"][0]) for r in s["refs"]]
        return [self.layout.config_json()] + self.needs_files(grid.Needs(runs=set(runs), dynamics=set(runs)))

    def ship_inputs(self, ref: str) -> list[str]:
        """What the shipped folder is made of: the export of the DM run with ``ref`` (first), its run files,
        its data map and the reference run (cost); ref "none": the main model's ERM run (``ship.erm``)."""
        run, L = grid.ship_run(self.cfg, ref), self.layout
        if ref == "none":
            return [L.export(run), *self.needs_files(grid.Needs(runs={run}))]
        seed = grid.datamap_seed(self.cfg, run.seed)  # the map (and reference run) the DM run trained from
        files = self.needs_files(grid.Needs(runs={run, grid.ref_run(run.task, ref, seed)}))
        return [L.export(run), *files, L.datamap(run.task, ref, seed)]

    # ------------------------------------------------------------------ aggregation
    def config_dump(self) -> dict:
        """The merged config without its operational keys (what aggregation jobs read)."""
        cfg = {k: copy.deepcopy(v) for k, v in self.cfg.items() if k not in OPERATIONAL}
        for k in OPERATIONAL_TRAINING:
            cfg["training"].pop(k, None)
        return json.loads(dumps(cfg))  # keys sorted at every level: the order the overlays came in changes nothing

    def needs_files(self, needs: grid.Needs) -> list[str]:
        L = self.layout
        files = {L.run_file(f, r) for r in needs.runs for f in ("run.json", "metrics.csv")}
        files |= {L.run_file("predictions.parquet", r) for r in needs.predictions}
        files |= {L.run_file(f, r) for r in needs.dynamics for f in ("run.json", "dynamics.npz")}
        files |= {L.datamap(t, r, s) for t, r, s in needs.datamaps}
        files |= {L.table(t, "csv") for t in needs.tables}
        return sorted(files)

    def artefact_inputs(self, kind: str, key: str) -> list[str]:
        return self.needs_files({"table": tables, "figure": figures}[kind].needs(self.cfg, key))

    def caption(self, kind: str, key: str) -> str:
        return rst_text({"table": tables, "figure": figures}[kind].caption(self.cfg, key))

    def claims_inputs(self) -> list[str]:
        from . import claims

        return sorted(
            set(self.needs_files(claims.needs(self.cfg))) | {self.layout.table(t, "csv") for t in self.table_ids}
        )

    def clear_kept(self) -> None:
        """After a successful Snakemake run: drop the kept outputs (``ftft.train.cli``) of the runs it has taken."""
        from .train.cli import KEPT

        for run in self.runs:
            if os.path.isfile(self.layout.run_file("run.json", run)):
                shutil.rmtree(os.path.join(self.layout.state_dir(run), KEPT), ignore_errors=True)

    def failed_runs_message(self) -> str:
        """The end-of-run summary: rows the data preparation dropped, how many runs failed and where the details are."""
        from .failures import summary_line

        lines = []
        for source in self.sources:
            path = Path(self.layout.source_summary(source))
            try:
                summary = json.loads(path.read_text()) if path.is_file() else {}
            except (OSError, ValueError):  # a broken summary is the prepare job's error, not the closing line's
                continue
            if summary.get("dropped"):
                what = "; ".join(f"{n} x {why}" for why, n in summary["dropped"].items())
                lines.append(f"ftft: source {source}: {summary['rows_in']} rows read, dropped {what} ({path})")
                lines += [f"      {w}" for w in summary.get("warnings", [])[:5]]
        return "\n".join([*lines, summary_line(self.cfg, self.runs)])


def hub_environment(cfg: dict) -> dict[str, str]:
    """Environment variables of jobs that load models: HF_HOME, HF_HUB_OFFLINE (the cache the fetch_model rule
    filled; nothing a local or demo model folder reads)."""
    env = {}
    if cfg["hub"]["cache"]:
        env["HF_HOME"] = str(cfg["hub"]["cache"])
    if cfg["hub"]["offline"]:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def rst_text(text: str) -> str:
    """Plain text as inert reStructuredText (report captions): whitespace runs (newlines included) become one
    space, so no line can start a directive (``.. raw::``, ``.. include::``), and every ASCII punctuation
    character is backslash-escaped, so no role, link, URI (``javascript:``) or substitution is recognised;
    docutils then writes the text HTML-escaped."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", " ".join(text.split()))
