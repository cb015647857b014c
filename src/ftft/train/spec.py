"""The training spec: everything one run of the engine needs, as a JSON-serialisable dict.

``make_spec(cfg, run)`` resolves the validated config for one ``grid.Run``; the train rule passes it as a job
parameter, so changing one model's settings re-runs only its runs. ``validate_spec`` checks a spec however it was
made (``ftft train`` accepts hand-written JSON) by the config schema's rules, raising ``ConfigError``.
"""

import functools
import hashlib
import json
from dataclasses import asdict

from .. import config, grid, methods
from ..config import ConfigError
from ..grid import Run
from ..modeling import model_source

#: keys that do not change what a run computes (left out of the resume fingerprint)
NOT_FINGERPRINTED = ("debug", "log_every", "eval_batch_size", "deterministic")  # resume across these


def make_spec(cfg: dict, run: Run) -> dict:
    """Resolve the config for ``run`` into a training spec (see docs/ARCHITECTURE.md)."""
    task, training, steps = cfg["tasks"][run.task], cfg["training"], run.steps(cfg)
    spec = {"run": asdict(run), "task": run.task, "labels": list(task["labels"]), "metric": task["metric"],
            "model_source": model_source(cfg, run.model), "steps": steps,
            # the full-budget run's checkpoint spacing (paper: every 4k steps for NLI): a limited run at fraction f
            # evaluates round(K * f) checkpoints
            "checkpoints": min(max(1, round(int(task["checkpoints"]) * run.fraction)), steps),
            "max_length": int(task["max_length"]), "batch_size": int(training["batch_size"]),
            "eval_batch_size": int(training["eval_batch_size"]), "lr": float(cfg["models"][run.model]["lr"]),
            **{k: float(training[k]) for k in ("warmup_ratio", "weight_decay", "adam_eps")},
            **{k: training[k] for k in ("max_grad_norm", "mixed_precision")},
            **{k: int(training[k]) for k in ("threads", "length_buckets")},
            "deterministic": bool(training["deterministic"]), "log_every": int(training["log_every"]),
            "seed": run.seed, "optimizer": "adamw", "momentum": 0.0, "scheduler": "linear", "plateau": None,
            "eval_sets": [list(e) for e in grid.eval_entries(task)], "poe": None}  # fmt: skip
    spec.update(methods.get(run.method).spec(cfg, run))  # e.g. JTT's optimiser, PoE's loss weights
    if spec["scheduler"] != "linear":
        spec["warmup_ratio"] = 0.0
    validate_spec(spec)
    return spec


@functools.cache
def _spec_validator():
    """The spec's JSON schema, built from the config schema's rules for the same values."""
    from jsonschema import Draft202012Validator

    props = config.load_schema()["properties"]
    training = props["training"]["properties"]
    task = props["tasks"]["additionalProperties"]["properties"]
    jtt = props["methods"]["properties"]["jtt"]["properties"]
    positive, null = {"type": "integer", "minimum": 1}, {"type": "null"}

    schema = {"type": "object", "properties": {
        **{k: training[k] for k in ("batch_size", "eval_batch_size", "warmup_ratio", "weight_decay", "adam_eps",
                                    "max_grad_norm", "mixed_precision", "threads", "log_every", "length_buckets",
                                    "deterministic")},
        **{k: task[k] for k in ("labels", "metric", "max_length")},
        **{k: jtt[k] for k in ("optimizer", "momentum", "scheduler")},
        "run": {"type": "object"}, "model_source": {"type": "string", "minLength": 1}, "seed": {"type": "integer"},
        "steps": positive, "checkpoints": positive, "lr": props["models"]["additionalProperties"]["properties"]["lr"],
        "plateau": {"oneOf": [null, jtt["plateau"]]},
        "poe": {"oneOf": [null, props["methods"]["properties"]["poe"]]},
        "eval_sets": {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 2, "maxItems": 2,
                      "prefixItems": [{"type": "string"}, {"enum": ["id", "ood", "dev"]}]}},
    }}  # fmt: skip
    schema["required"] = list(schema["properties"])
    return Draft202012Validator(schema)


def validate_spec(spec: dict) -> dict:
    """Check a spec (every field required but ``debug`` and ``export_checkpoint``); returns the (same) dict."""

    def fail(key: str, msg: str):
        raise ConfigError(f"invalid training spec at '{key}': {msg}")

    if error := config.schema_error(_spec_validator(), spec):
        raise ConfigError(f"invalid training spec {error}")
    spec.setdefault("debug", {})
    if spec["steps"] < spec["checkpoints"]:
        fail("steps", f"steps ({spec['steps']}) must be >= checkpoints ({spec['checkpoints']})")
    if spec.get("export_checkpoint") not in (None, *range(1, spec["checkpoints"] + 1)):  # a shipped model's checkpoint
        fail("export_checkpoint", f"must be a checkpoint 1..{spec['checkpoints']}, got {spec['export_checkpoint']!r}")
    if spec["scheduler"] == "plateau" and spec["plateau"] is None:
        fail("plateau", "the plateau scheduler needs factor and patience, got None")
    if [role for _, role in spec["eval_sets"]].count("id") != 1 or spec["eval_sets"][0][1] != "id":
        fail("eval_sets", f"need [name, role] pairs, the first and only one with role 'id'; got {spec['eval_sets']!r}")
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
