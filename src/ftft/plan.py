"""The compute plan: jobs, training tokens, FLOPs and GPU-hours of a config, before it runs.

``ftft plan CONFIG...`` prints it; the Snakefile prints a summary when a run starts, and each
training job's SLURM ``runtime`` / ``mem_mb`` come from it (times a stated safety factor)
instead of one request for every job.

Per training run (``grid.Run``):
  train tokens   steps x batch_size x T, T = tokens per example as the engine feeds them on a GPU
                 (each batch as ``training.length_buckets`` length-sorted micro-batches, each
                 padded to its longest instance, widths rounded up to 8)
  FLOPs          3 x forward, forward = tokens x (2 N + 2 n_layer T d_model) (Kaplan et al.
                 2020; N = non-embedding parameters), plus the checkpoint evaluations
                 (checkpoints x eval tokens x forward per token) and, for a PoE bias model,
                 one inference pass over the training set
  GPU-hours      FLOPs / (peak x utilisation) of ``cluster.gpu_name`` (defaults: A100 bf16,
                 312 TFLOP/s dense, 35% utilisation)
  host memory    3 GB (Python, torch, CUDA context) + 16 bytes per parameter (all parameters,
                 embeddings included: the fp32 weights as loaded, plus the resume state of
                 weights and two AdamW moments, loaded on resume or the checkpoint's host copy)
                 + the tokenised data
T comes from the tokenised data when it exists (the length histogram in ``stats.json`` of the
tokenize step, batched as the engine batches; the plan prints padded / real tokens), else from
the paper's Table 4 (NLI 92, HSD 210 padded tokens per example at batch 32, the values that
reproduce its FLOPs, whole batches padded) or, for other data, half of ``max_length``. The
parameter counts, n_layer and d_model come from the model's ``config.json`` when it is on disk,
else from ``MODEL_DIMS`` (the nine paper models, from their hub configs).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import grid
from .config import active_tasks, add_overlay_arguments, load_args

#: hub id -> (non-embedding parameters, n_layer, d_model, all parameters), from the hub config.json files
#: (all: the 3-label sequence classifier built from the hub config, counted; DeBERTaV3's model cards:
#: 98M / 131M embedding parameters)
MODEL_DIMS: dict[str, tuple[int, int, int, int]] = {
    "microsoft/deberta-v3-small": (42_500_000, 6, 768, 141_900_000),
    "microsoft/deberta-v3-base": (85_000_000, 12, 768, 184_400_000),
    "microsoft/deberta-v3-large": (302_000_000, 24, 1024, 435_100_000),
    "google/electra-small-discriminator": (9_500_000, 12, 256, 13_500_000),
    "google/electra-base-discriminator": (85_000_000, 12, 768, 109_500_000),
    "google/electra-large-discriminator": (302_000_000, 24, 1024, 335_100_000),
    "prajjwal1/bert-tiny": (393_000, 2, 128, 4_400_000),
    "bert-large-uncased": (302_000_000, 24, 1024, 335_100_000),
    "roberta-large": (302_000_000, 24, 1024, 355_400_000),
}
#: padded tokens per example implied by the paper's Table 4 (DeBERTaV3-Base: 6233.34 / 624.68)
PAPER_TOKENS = {"mnli": 92.0, "cad": 210.0}
#: expected rows of the paper's evaluation sets (for the evaluation cost)
EVAL_ROWS_DEFAULT = 2000
PAPER_DAYS = 7.0  # appendix A.1: "Training all models takes approximately seven GPU days"
BASE_MEM_MB = 3000
HOST_BYTES_PER_PARAM = 16  # fp32 weights (4) + resume state or its host copy: weights and 2 AdamW moments (12)
GPU_PAD_MULTIPLE = 8  # the engine rounds batch widths up to 8 on CUDA
TRAIN_ROWS_DEFAULT = 400_000  # MNLI size, the largest paper training set


@dataclass
class Estimate:
    run: grid.Run
    train_tokens: float
    flops: float
    gpu_hours: float
    mem_mb: float
    tokens_source: str
    real_tokens: float | None  # real (unpadded) training tokens, when known


def _dims_from_config(path: Path) -> tuple[int, int, int, int] | None:
    """(non-embedding params, n_layer, d_model, all params) estimated from a config.json (no transformers import)."""
    try:
        c = json.loads(path.read_text())
        d, n_layer = int(c["hidden_size"]), int(c["num_hidden_layers"])
        ff = int(c.get("intermediate_size", 4 * d))
        rows = int(c.get("vocab_size", 0)) + int(c.get("max_position_embeddings", 0)) + int(c.get("type_vocab_size", 0))
        width = int(c.get("embedding_size") or d)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    n = n_layer * (4 * d * d + 2 * d * ff + 9 * d + ff)
    return n, n_layer, d, n + rows * width


class ComputePlan:
    """Estimates for every run of ``grid.all_runs(cfg)`` (``runs``: those runs, when the caller has them)."""

    def __init__(self, cfg: dict, runs: list[grid.Run] | None = None):
        from .layout import Layout

        self.cfg = cfg
        self.runs = sorted(runs or grid.all_runs(cfg))
        self.bias_models = grid.bias_models(cfg, self.runs)
        self.layout = Layout.from_config(cfg)
        self.cluster = cfg["cluster"]
        self._estimates: dict[grid.Run, Estimate] = {}
        self._token_stats: dict[Path, tuple | None] = {}
        self._inputs: dict[tuple[str, str], tuple] = {}

    # --- inputs ---------------------------------------------------------------------------
    def dims(self, model: str) -> tuple[int, int, int, int]:
        from .modeling import model_origin, model_source

        m, origin = self.cfg["models"][model], model_origin(self.cfg, model)
        if origin != "hub" and (d := _dims_from_config(Path(model_source(self.cfg, model)) / "config.json")):
            return d
        if origin == "demo":
            from .standins import DEMO_ARCH

            a = DEMO_ARCH[m["size"]]
            d, ff, n = a["hidden"], a["intermediate"], a["layers"]
            return n * (4 * d * d + 2 * d * ff), n, d, n * (4 * d * d + 2 * d * ff)
        return MODEL_DIMS.get(m["hub_id"], MODEL_DIMS["microsoft/deberta-v3-base"])  # unknown: assume base size

    def tokens_per_example(self, task: str, model: str) -> tuple[float, str, float | None]:
        """(padded tokens per example as the engine batches them, where from, real tokens per example or None)."""
        stats = Path(self.layout.tokenized(task, grid.tokenizer_of(self.cfg, model))) / "stats.json"
        if stats.is_file():
            if stats not in self._token_stats:
                self._token_stats[stats] = _measured_tokens(stats, self.cfg["training"])
            if self._token_stats[stats] is not None:
                return self._token_stats[stats]
        source = self.cfg["tasks"][task]["train"]["source"]
        if source in PAPER_TOKENS:
            return PAPER_TOKENS[source], "paper Table 4", None
        return self.cfg["tasks"][task]["max_length"] / 2, "max_length / 2", None

    def eval_rows(self, task: str) -> int:
        return sum(
            _parquet_rows(self.layout.task_eval(task, name)) for name, _ in grid.eval_entries(self.cfg["tasks"][task])
        )

    def train_rows(self, task: str) -> int:
        return _parquet_rows(self.layout.task_train(task), TRAIN_ROWS_DEFAULT)

    # --- estimates ------------------------------------------------------------------------
    def estimate(self, run: grid.Run) -> Estimate:
        if run in self._estimates:
            return self._estimates[run]
        key = (run.task, run.model)  # the inputs are per (task, model): planning stays linear in the runs
        if key not in self._inputs:
            self._inputs[key] = (*self.dims(run.model), *self.tokens_per_example(*key), self.eval_rows(run.task),
                                 self.train_rows(run.task))  # fmt: skip
        n, n_layer, d, n_all, t, source, real, eval_rows, train_rows = self._inputs[key]
        per_token = 2.0 * n + 2.0 * n_layer * t * d
        tcfg = self.cfg["tasks"][run.task]
        train_tokens = run.steps(self.cfg) * self.cfg["training"]["batch_size"] * t
        eval_tokens = max(1, round(tcfg["checkpoints"] * float(run.fraction))) * eval_rows * t
        flops = 3.0 * train_tokens * per_token + eval_tokens * per_token
        if (run.task, run.model) in self.bias_models and run.method == "erm":
            flops += train_tokens / max(1, run.steps(self.cfg)) * per_token  # roughly one pass
        rate = self.cluster["gpu_peak_tflops"] * 1e12 * self.cluster["gpu_utilisation"]
        data_mb = train_rows * t * 8 / 2**20  # input ids + type ids, int32
        mem = BASE_MEM_MB + HOST_BYTES_PER_PARAM * n_all / 2**20 + data_mb
        real_tokens = None if real is None else train_tokens * real / t
        est = Estimate(run, train_tokens, flops, flops / rate / 3600, mem, source, real_tokens)
        self._estimates[run] = est
        return est

    def runtime_min(self, run: grid.Run) -> int:
        """SLURM --time (minutes): safety x planned hours, plus 10 minutes of start-up, at least the floor."""
        hours = self.estimate(run).gpu_hours
        return max(self.cluster["min_runtime_min"], math.ceil(hours * 60 * self.cluster["runtime_safety"] + 10))

    def mem_mb(self, run: grid.Run) -> int:
        return int(math.ceil(self.estimate(run).mem_mb * self.cluster["mem_safety"] / 100) * 100)

    # --- reports --------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        """One row per (task, method) group of training runs, then the total."""
        groups: dict[tuple[str, str], list[Estimate]] = {}
        for run in self.runs:
            groups.setdefault((run.task, run.method), []).append(self.estimate(run))

        def row(task: str, method: str, es: list[Estimate], tokens_from: str) -> dict:
            return {
                "rule": "train",
                "task": task,
                "method": method,
                "jobs": len(es),
                "train_tokens": sum(e.train_tokens for e in es),
                "pflops": sum(e.flops for e in es) / 1e15,
                "gpu_hours": sum(e.gpu_hours for e in es),
                "tokens_from": tokens_from,
                "padded_per_real": _ratio(es),
            }

        rows = [
            row(t, m, es, ", ".join(sorted({e.tokens_source for e in es}))) for (t, m), es in sorted(groups.items())
        ]
        return rows + [row("all", "all", [e for es in groups.values() for e in es], "")]

    def other_jobs(self) -> dict[str, int]:
        """CPU jobs per rule (no GPU-hours)."""
        from . import figures, tables

        return {
            "tokenize": len({(r.task, grid.tokenizer_of(self.cfg, r.model)) for r in self.runs}),
            "datamap": len(grid.all_datamaps(self.cfg, self.runs)),
            "subset": len(grid.all_subsets(self.cfg, self.runs)),
            "table": len(tables.table_ids(self.cfg)),
            "figure": len(figures.figure_ids(self.cfg)),
        }

    def summary(self) -> str:
        """A few lines for the start of a run."""
        total = self.rows()[-1]
        other = ", ".join(f"{n} {k}" for k, n in self.other_jobs().items())
        line = (
            f"ftft compute plan: {total['jobs']} training jobs, {total['train_tokens'] / 1e9:.2f} G training tokens, "
            f"{total['pflops']:,.1f} PFLOPs ~ {total['gpu_hours']:,.1f} GPU-hours on {self.cluster['gpu_name']} at "
            f"{self.cluster['gpu_utilisation']:.0%} utilisation ({total['gpu_hours'] / 24:.2f} GPU-days)"
        )
        if self.cfg["mode"] == "paper" and set(active_tasks(self.cfg)) >= {"nli", "hsd"}:
            line += f"; the paper reports about {PAPER_DAYS:g} GPU-days"
        return line + f"; CPU jobs: {other}. Details: ftft plan"

    def markdown(self) -> str:
        head = ["rule", "task", "method", "jobs", "train tokens (G)", "padded / real", "PFLOPs", "GPU-hours",
                "tokens/example from"]  # fmt: skip
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows():
            lines.append(
                f"| {r['rule']} | {r['task']} | {r['method']} | {r['jobs']} | {r['train_tokens'] / 1e9:.3f} | "
                f"{'n/a' if r['padded_per_real'] is None else format(r['padded_per_real'], '.2f')} | "
                f"{r['pflops']:,.1f} | {r['gpu_hours']:,.2f} | {r['tokens_from']} |"
            )
        lines += ["", "CPU jobs: " + ", ".join(f"{k} {n}" for k, n in self.other_jobs().items())]
        c = self.cluster
        lines += [
            "",
            f"GPU: {c['gpu_name']}, {c['gpu_peak_tflops']} TFLOP/s peak at {c['gpu_utilisation']:.0%} utilisation "
            f"(cluster.gpu_utilisation). SLURM per training job: runtime = {c['runtime_safety']:g} x planned hours + "
            f"10 min (at least {c['min_runtime_min']} min), mem = {c['mem_safety']:g} x planned host memory.",
            "",
            self.summary(),
        ]
        return "\n".join(lines) + "\n"


def _measured_tokens(stats: Path, training: dict) -> tuple[float, str, float] | None:
    """Padded tokens per example as the engine batches (on a GPU) the tokenised training set of ``stats``."""
    from .tokenize import padded_per_example

    try:
        train = json.loads(stats.read_text())["train"]
        counts = train.get("length_counts")
        if counts is None:  # written before the histogram: whole batches padded (length_buckets 1)
            return float(train["padded_tokens_per_example"]), "tokenised data", float(train["tokens_per_example"])
        lengths = np.repeat(np.arange(len(counts)), counts)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    padded = padded_per_example(lengths, training["batch_size"], 0, training["length_buckets"], GPU_PAD_MULTIPLE)
    return padded, "tokenised data", float(lengths.mean())


def _ratio(estimates: list[Estimate]) -> float | None:
    """Padded / real training tokens of ``estimates`` (None when a real count is unknown)."""
    if not estimates or any(e.real_tokens is None for e in estimates):
        return None
    return sum(e.train_tokens for e in estimates) / sum(e.real_tokens for e in estimates)


def _parquet_rows(path: str, default: int = EVAL_ROWS_DEFAULT) -> int:
    """Rows of a parquet file; ``default`` before it exists (pyarrow is only imported once one does)."""
    if not Path(path).is_file():
        return default
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows
    except (OSError, ValueError):
        return default


add_arguments = add_overlay_arguments  # ftft plan: the run's own config arguments


def run(args) -> int:
    print(ComputePlan(load_args(args)).markdown(), end="")
    return 0
