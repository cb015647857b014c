"""The training spec: everything one run of the engine needs, as a JSON-serialisable dict.

``make_spec(cfg, run)`` resolves the workflow config for one ``grid.Run``; the Snakefile writes
it into the ``ftft train --spec`` argument, so a job never re-reads the config.
``validate_spec`` checks a spec however it was made (``ftft train`` accepts hand-written JSON)
and raises ``ConfigError`` naming the field.
"""

from __future__ import annotations

import hashlib
import json

from ..config import ConfigError
from ..grid import Run
from ..models import model_source

OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("linear", "plateau")
METRICS = ("accuracy", "macro_f1")
PRECISIONS = ("auto", "no", "bf16", "fp16")

# ReduceLROnPlateau settings for JTT (those of the JTT reference code: factor 0.1, patience 5),
# stepped at each checkpoint on the ID metric.
PLATEAU = {"factor": 0.1, "patience": 5}


def make_spec(cfg: dict, run: Run) -> dict:
    """Resolve the config for ``run`` into a training spec (see docs/ARCHITECTURE.md)."""
    task = cfg["tasks"][run.task]
    model = cfg["models"][run.model]
    training = cfg.get("training", {})
    steps = run.steps(cfg)
    optimizer, momentum, scheduler = "adamw", 0.0, "linear"
    if run.method == "jtt":
        jtt = cfg.get("methods", {}).get("jtt", {})
        optimizer = jtt.get("optimizer", "sgd")
        momentum = float(jtt.get("momentum", 0.9))
        scheduler = jtt.get("scheduler", "plateau")
    poe = None
    if run.method == "poe":
        p = cfg.get("methods", {}).get("poe", {})
        poe = {"ce_weight": float(p.get("ce_weight", 0.3)), "poe_weight": float(p.get("poe_weight", 1.0))}
    spec = {
        "run": {
            "task": run.task,
            "model": run.model,
            "method": run.method,
            "ref": run.ref,
            "budget": run.budget,
            "seed": run.seed,
        },
        "task": run.task,
        "labels": list(task["labels"]),
        "metric": task["metric"],
        "model_source": model_source(cfg, run.model),
        "steps": steps,
        # the same checkpoint spacing as the full-budget run (paper: every 4k steps for NLI),
        # so a limited run at fraction f evaluates round(K * f) checkpoints
        "checkpoints": min(max(1, round(int(task["checkpoints"]) * run.fraction)), steps),
        "max_length": int(task["max_length"]),
        "batch_size": int(training.get("batch_size", 32)),
        "eval_batch_size": int(training.get("eval_batch_size", 128)),
        "lr": float(model["lr"]),
        "warmup_ratio": float(training.get("warmup_ratio", 0.1)) if scheduler == "linear" else 0.0,
        "weight_decay": float(training.get("weight_decay", 0.0)),
        "max_grad_norm": training.get("max_grad_norm", 1.0),
        "mixed_precision": training.get("mixed_precision", "auto"),
        "threads": int(training.get("threads", 1)),
        "log_every": int(training.get("log_every", 200)),
        "seed": run.seed,
        "optimizer": optimizer,
        "momentum": momentum,
        "scheduler": scheduler,
        "plateau": dict(PLATEAU) if scheduler == "plateau" else None,
        "eval_sets": [[task["id_test"]["name"], "id"], *[[o["name"], "ood"] for o in task["ood"]]],
        "poe": poe,
    }
    validate_spec(spec)
    return spec


def _fail(field: str, msg: str):
    raise ConfigError(f"invalid training spec at '{field}': {msg}")


REQUIRED = (
    "run",
    "labels",
    "metric",
    "model_source",
    "steps",
    "checkpoints",
    "max_length",
    "batch_size",
    "eval_batch_size",
    "lr",
    "seed",
    "eval_sets",
)

DEFAULTS = {
    "warmup_ratio": 0.0,
    "weight_decay": 0.0,
    "max_grad_norm": None,
    "mixed_precision": "auto",
    "threads": 1,
    "log_every": 200,
    "optimizer": "adamw",
    "momentum": 0.0,
    "scheduler": "linear",
    "plateau": None,
    "poe": None,
    "debug": {},
}


def validate_spec(spec: dict) -> dict:
    """Check a spec and fill optional fields with defaults; returns the (same) dict."""
    if not isinstance(spec, dict):
        _fail("<top level>", f"must be a JSON object, got {type(spec).__name__}")
    for key in REQUIRED:
        if key not in spec:
            _fail(key, "missing")
    for key, value in DEFAULTS.items():
        spec.setdefault(key, value)
    for key in ("steps", "checkpoints", "max_length", "batch_size", "eval_batch_size", "threads", "log_every"):
        if not isinstance(spec[key], int) or isinstance(spec[key], bool) or spec[key] < 1:
            _fail(key, f"must be a positive integer, got {spec[key]!r}")
    if spec["steps"] < spec["checkpoints"]:
        _fail("steps", f"steps ({spec['steps']}) must be >= checkpoints ({spec['checkpoints']})")
    if not isinstance(spec["lr"], int | float) or not spec["lr"] > 0:
        _fail("lr", f"learning rate must be > 0, got {spec['lr']!r}")
    if not 0 <= spec["warmup_ratio"] <= 1:
        _fail("warmup_ratio", f"must be in [0, 1], got {spec['warmup_ratio']!r}")
    if spec["weight_decay"] < 0:
        _fail("weight_decay", f"must be >= 0, got {spec['weight_decay']!r}")
    if spec["max_grad_norm"] is not None and not spec["max_grad_norm"] > 0:
        _fail("max_grad_norm", f"must be > 0 or null, got {spec['max_grad_norm']!r}")
    if spec["metric"] not in METRICS:
        _fail("metric", f"must be one of {METRICS}, got {spec['metric']!r}")
    if spec["optimizer"] not in OPTIMIZERS:
        _fail("optimizer", f"must be one of {OPTIMIZERS}, got {spec['optimizer']!r}")
    if spec["scheduler"] not in SCHEDULERS:
        _fail("scheduler", f"must be one of {SCHEDULERS}, got {spec['scheduler']!r}")
    if spec["scheduler"] == "plateau" and not spec["plateau"]:
        spec["plateau"] = dict(PLATEAU)
    if spec["mixed_precision"] not in PRECISIONS:
        _fail("mixed_precision", f"must be one of {PRECISIONS}, got {spec['mixed_precision']!r}")
    if not isinstance(spec["labels"], list) or len(spec["labels"]) < 2:
        _fail("labels", f"need at least two label names, got {spec['labels']!r}")
    sets = spec["eval_sets"]
    if not sets or [role for _, role in sets].count("id") != 1 or sets[0][1] != "id":
        _fail("eval_sets", f"need [name, role] pairs, the first and only one with role 'id'; got {sets!r}")
    if any(role not in ("id", "ood") for _, role in sets):
        _fail("eval_sets", f"roles must be 'id' or 'ood', got {sets!r}")
    if spec["poe"] is not None and not {"ce_weight", "poe_weight"} <= set(spec["poe"]):
        _fail("poe", f"needs ce_weight and poe_weight, got {spec['poe']!r}")
    return spec


def fingerprint(spec: dict) -> str:
    """Hash of everything that determines the run's results (not the debug hooks)."""
    core = {k: v for k, v in spec.items() if k != "debug"}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]


def hparams(spec: dict) -> dict:
    """The hyper-parameters recorded in run.json."""
    keys = (
        "steps",
        "checkpoints",
        "max_length",
        "batch_size",
        "eval_batch_size",
        "lr",
        "warmup_ratio",
        "weight_decay",
        "max_grad_norm",
        "optimizer",
        "momentum",
        "scheduler",
        "plateau",
        "mixed_precision",
        "threads",
        "seed",
        "metric",
        "poe",
    )
    return {k: spec.get(k) for k in keys}
