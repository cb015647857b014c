"""The compute estimate's numbers: jobs, training tokens, FLOPs and GPU-hours of a config, before it runs.

``workflow.Plan.estimate`` uses them (the formulas: docs/ARCHITECTURE.md, "The compute plan"); ``ftft plan
CONFIG...`` prints ``Plan.compute_markdown``, the Snakefile ``compute_summary`` when a run starts, and each
training job's SLURM ``runtime`` / ``mem_mb`` come from it (times a stated safety factor).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import grid
from .config import add_overlay_arguments, load_args

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


def model_dims(cfg: dict, model: str) -> tuple[int, int, int, int]:
    """(non-embedding params, n_layer, d_model, all params) of a model key: its config.json on disk, the demo
    stand-in's architecture, else ``MODEL_DIMS`` (an unknown hub id: assume the base size)."""
    from .modeling import model_origin, model_source

    m, origin = cfg["models"][model], model_origin(cfg, model)
    if origin != "hub" and (d := _dims_from_config(Path(model_source(cfg, model)) / "config.json")):
        return d
    if origin == "demo":
        from .standins import DEMO_ARCH

        a = DEMO_ARCH[m["size"]]
        d, ff, n = a["hidden"], a["intermediate"], a["layers"]
        return n * (4 * d * d + 2 * d * ff), n, d, n * (4 * d * d + 2 * d * ff)
    return MODEL_DIMS.get(m["hub_id"], MODEL_DIMS["microsoft/deberta-v3-base"])


def measured_tokens(stats: Path, training: dict) -> tuple[float, str, float] | None:
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


def row(task: str, method: str, es: list[Estimate], tokens_from: str | None = None) -> dict:
    """A row of the compute plan: the sums of ``es`` (padded / real: None when a real count is unknown)."""
    real = None if any(e.real_tokens is None for e in es) else sum(e.real_tokens for e in es)
    return {
        "rule": "train",
        "task": task,
        "method": method,
        "jobs": len(es),
        "train_tokens": sum(e.train_tokens for e in es),
        "pflops": sum(e.flops for e in es) / 1e15,
        "gpu_hours": sum(e.gpu_hours for e in es),
        "tokens_from": ", ".join(sorted({e.tokens_source for e in es})) if tokens_from is None else tokens_from,
        "padded_per_real": sum(e.train_tokens for e in es) / real if es and real is not None else None,
    }


def parquet_rows(path: str, default: int = EVAL_ROWS_DEFAULT) -> int:
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
    from .workflow import Plan

    print(Plan(load_args(args)).compute_markdown(), end="")
    return 0
