"""The training spec: everything one run of the engine needs, as a JSON-serialisable dict.

``make_spec(cfg, run)`` resolves the validated workflow config for one ``grid.Run`` (the config
holds every key: the schema fills in the optional ones, so nothing here has a default); the
train rule hands it to the engine as a job parameter, so a job never re-reads the config and
changing one model's settings re-runs only its runs. ``validate_spec`` checks a spec however it
was made (``ftft train`` accepts hand-written JSON) and raises ``ConfigError`` naming the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from .. import grid, methods
from ..config import ConfigError
from ..grid import Run
from ..models import model_source

OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("linear", "plateau")
METRICS = ("accuracy", "macro_f1")
PRECISIONS = ("auto", "no", "bf16", "fp16")
#: keys that do not change what a run computes (left out of the resume fingerprint)
NOT_FINGERPRINTED = ("debug", "log_every", "eval_batch_size", "deterministic")  # resume across these


def make_spec(cfg: dict, run: Run) -> dict:
    """Resolve the config for ``run`` into a training spec (see docs/ARCHITECTURE.md)."""
    task = cfg["tasks"][run.task]
    training = cfg["training"]
    steps = run.steps(cfg)
    spec = {
        "run": asdict(run),
        "task": run.task,
        "labels": list(task["labels"]),
        "metric": task["metric"],
        "model_source": model_source(cfg, run.model),
        "steps": steps,
        # the same checkpoint spacing as the full-budget run (paper: every 4k steps for NLI),
        # so a limited run at fraction f evaluates round(K * f) checkpoints
        "checkpoints": min(max(1, round(int(task["checkpoints"]) * run.fraction)), steps),
        "max_length": int(task["max_length"]),
        "batch_size": int(training["batch_size"]),
        "eval_batch_size": int(training["eval_batch_size"]),
        "lr": float(cfg["models"][run.model]["lr"]),
        "warmup_ratio": float(training["warmup_ratio"]),
        "weight_decay": float(training["weight_decay"]),
        "adam_eps": float(training["adam_eps"]),
        "max_grad_norm": training["max_grad_norm"],
        "mixed_precision": training["mixed_precision"],
        "threads": int(training["threads"]),
        "length_buckets": int(training["length_buckets"]),
        "deterministic": bool(training["deterministic"]),
        "log_every": int(training["log_every"]),
        "seed": run.seed,
        "optimizer": "adamw",
        "momentum": 0.0,
        "scheduler": "linear",
        "plateau": None,
        "eval_sets": [list(e) for e in grid.eval_entries(task)],
        "poe": None,
    }
    spec.update(methods.get(run.method).spec(cfg, run))  # e.g. JTT's optimiser, PoE's loss weights
    if spec["scheduler"] != "linear":
        spec["warmup_ratio"] = 0.0
    validate_spec(spec)
    return spec


def _fail(field: str, msg: str):
    raise ConfigError(f"invalid training spec at '{field}': {msg}")


REQUIRED = (
    "run", "labels", "metric", "model_source", "steps", "checkpoints", "max_length", "batch_size", "eval_batch_size",
    "lr", "warmup_ratio", "weight_decay", "adam_eps", "max_grad_norm", "mixed_precision", "threads", "log_every",
    "seed", "optimizer", "momentum", "scheduler", "plateau", "eval_sets", "poe", "length_buckets", "deterministic",
)  # fmt: skip


def validate_spec(spec: dict) -> dict:
    """Check a spec (every field required but ``debug``); returns the (same) dict."""
    if not isinstance(spec, dict):
        _fail("<top level>", f"must be a JSON object, got {type(spec).__name__}")
    for key in REQUIRED:
        if key not in spec:
            _fail(key, "missing")
    spec.setdefault("debug", {})
    for key in ("steps", "checkpoints", "max_length", "batch_size", "eval_batch_size", "threads", "log_every",
                "length_buckets"):  # fmt: skip
        if not isinstance(spec[key], int) or isinstance(spec[key], bool) or spec[key] < 1:
            _fail(key, f"must be a positive integer, got {spec[key]!r}")
    if spec["steps"] < spec["checkpoints"]:
        _fail("steps", f"steps ({spec['steps']}) must be >= checkpoints ({spec['checkpoints']})")
    if spec.get("export_checkpoint") not in (None, *range(1, spec["checkpoints"] + 1)):  # a shipped model's checkpoint
        _fail("export_checkpoint", f"must be a checkpoint 1..{spec['checkpoints']}, got {spec['export_checkpoint']!r}")
    for key in ("lr", "adam_eps"):
        if not isinstance(spec[key], int | float) or not spec[key] > 0:
            _fail(key, f"must be > 0, got {spec[key]!r}")
    if not 0 <= spec["warmup_ratio"] <= 1:
        _fail("warmup_ratio", f"must be in [0, 1], got {spec['warmup_ratio']!r}")
    if spec["weight_decay"] < 0:
        _fail("weight_decay", f"must be >= 0, got {spec['weight_decay']!r}")
    if not isinstance(spec["deterministic"], bool):
        _fail("deterministic", f"must be true or false, got {spec['deterministic']!r}")
    if spec["max_grad_norm"] is not None and not spec["max_grad_norm"] > 0:
        _fail("max_grad_norm", f"must be > 0 or null, got {spec['max_grad_norm']!r}")
    for key, allowed in (("metric", METRICS), ("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS),
                         ("mixed_precision", PRECISIONS)):  # fmt: skip
        if spec[key] not in allowed:
            _fail(key, f"must be one of {allowed}, got {spec[key]!r}")
    if spec["scheduler"] == "plateau" and not {"factor", "patience"} <= set(spec["plateau"] or {}):
        _fail("plateau", f"the plateau scheduler needs factor and patience, got {spec['plateau']!r}")
    if not isinstance(spec["labels"], list) or len(spec["labels"]) < 2:
        _fail("labels", f"need at least two label names, got {spec['labels']!r}")
    sets = spec["eval_sets"]
    if not sets or [role for _, role in sets].count("id") != 1 or sets[0][1] != "id":
        _fail("eval_sets", f"need [name, role] pairs, the first and only one with role 'id'; got {sets!r}")
    if any(role not in ("id", "ood", "dev") for _, role in sets):
        _fail("eval_sets", f"roles must be 'id', 'ood' or 'dev', got {sets!r}")
    if spec["poe"] is not None and not {"ce_weight", "poe_weight"} <= set(spec["poe"]):
        _fail("poe", f"needs ce_weight and poe_weight, got {spec['poe']!r}")
    return spec


def fingerprint(spec: dict) -> str:
    """Hash of everything that determines the run's results (not the debug hooks or log interval)."""
    core = {k: v for k, v in spec.items() if k not in NOT_FINGERPRINTED}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]


def hparams(spec: dict) -> dict:
    """The hyper-parameters recorded in run.json."""
    keys = ("steps", "checkpoints", "max_length", "batch_size", "eval_batch_size", "lr", "warmup_ratio", "weight_decay",
            "adam_eps", "max_grad_norm", "optimizer", "momentum", "scheduler", "plateau", "mixed_precision", "threads",
            "seed", "metric", "poe", "length_buckets", "deterministic")  # fmt: skip
    return {k: spec[k] for k in keys}
