"""Loading and validating the workflow configuration.

The config is the experiment grid as data (see ``workflow_config.yaml`` and
``config/README.md``). ``load`` merges one or more YAML files the same way
Snakemake's ``--configfile`` does (later files update earlier ones, dicts
recursively), validates the result against ``schemas/config.schema.yaml`` and
then runs the semantic checks a JSON schema cannot express. Every error names
the file and the key path, before any job starts.
"""

from __future__ import annotations

import copy
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from .errors import FtftError

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"


class ConfigError(FtftError, ValueError):
    """A configuration problem; the message names the key (and file when known)."""


def deep_update(base: dict, other: dict) -> dict:
    """Recursively update ``base`` with ``other`` (dicts merge, everything else replaces)."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open() as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load(*paths: str | Path, overrides: dict | None = None) -> dict:
    """Merge the YAML files in order (plus ``overrides``) and validate the result."""
    cfg: dict = {}
    for p in paths:
        deep_update(cfg, read_yaml(p))
    if overrides:
        deep_update(cfg, overrides)
    validate(cfg, source=", ".join(str(p) for p in paths) or "<config>")
    return cfg


def load_schema() -> dict:
    with SCHEMA_PATH.open() as fh:
        return yaml.safe_load(fh)


def _key_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def validate(cfg: dict, source: str = "<config>") -> None:
    """Schema validation followed by cross-key checks. Raises ConfigError."""
    import jsonschema

    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = _key_path(err.absolute_path)
        msg = err.message
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            msg = f"unknown key(s) {extra}; allowed: {sorted(err.schema.get('properties', {}))}"
            if extra:
                key = _key_path([*err.absolute_path, extra[0]])
        raise ConfigError(f"{source}: invalid config at '{key}': {msg}")
    _semantic_checks(cfg, source)


def parse_fraction(value: Any, key: str = "fraction") -> Fraction:
    """'1/3', 0.5 or 1 -> Fraction in (0, 1]."""
    try:
        frac = Fraction(str(value)) if isinstance(value, str) else Fraction(value).limit_denominator(1000)
    except (ValueError, ZeroDivisionError) as exc:
        raise ConfigError(f"invalid fraction at '{key}': {value!r}") from exc
    if not 0 < frac <= 1:
        raise ConfigError(f"fraction at '{key}' must be in (0, 1], got {value!r}")
    return frac


def _semantic_checks(cfg: dict, source: str) -> None:
    def fail(key: str, msg: str):
        raise ConfigError(f"{source}: invalid config at '{key}': {msg}")

    models = cfg["models"]
    tasks = cfg["tasks"]
    for name, m in models.items():
        if m["lr"] <= 0:
            fail(f"models.{name}.lr", f"learning rate must be > 0, got {m['lr']}")
    for tname, t in tasks.items():
        if t["steps"] < t["checkpoints"]:
            fail(f"tasks.{tname}.steps", f"steps ({t['steps']}) must be >= checkpoints ({t['checkpoints']})")
        names = [t["id_test"]["name"]] + [o["name"] for o in t["ood"]]
        if len(set(names)) != len(names):
            fail(f"tasks.{tname}.ood", f"evaluation set names must be unique, got {names}")
        for o in [t["train"], t["id_test"], *t["ood"]]:
            if (
                o["source"] not in cfg.get("datasets", {})
                and not o["source"].startswith("demo_")
                and o["source"] not in cfg.get("byo", {})
            ):
                fail(f"tasks.{tname}", f"source '{o['source']}' is not defined under datasets/byo")
    q = cfg["q"]
    if not 0 < q < 1:
        fail("q", f"must be in (0, 1), got {q}")

    def check_model(key: str, name: str):
        if name not in models:
            fail(key, f"unknown model '{name}'; defined models: {sorted(models)}")

    def check_task(key: str, name: str):
        if name not in tasks:
            fail(key, f"unknown task '{name}'; defined tasks: {sorted(tasks)}")

    for tid, table in cfg.get("tables", {}).items():
        for t in table["tasks"]:
            check_task(f"tables.{tid}.tasks", t)
        for i, row in enumerate(table["rows"]):
            base = f"tables.{tid}.rows[{i}]"
            check_model(f"{base}.main", row["main"])
            needs_ref = row["method"] in ("dm", "ftft", "jtt", "poe")
            if needs_ref and "ref" not in row:
                fail(f"{base}.ref", f"method '{row['method']}' needs a reference model")
            if "ref" in row:
                check_model(f"{base}.ref", row["ref"])
            if row["method"] == "ftft":
                fr = row.get("fraction", cfg["methods"]["ftft"]["fraction"])
                for t in table["tasks"]:
                    if t not in fr:
                        fail(f"{base}.fraction", f"no FTFT step fraction for task '{t}'")
                    f = parse_fraction(fr[t], f"{base}.fraction.{t}")
                    _check_halting_fraction(cfg, t, f, f"{base}.fraction.{t}", fail)
    for key in ("flops_models",):
        for i, name in enumerate(cfg.get(key, [])):
            check_model(f"{key}[{i}]", name)
    for section in ("easy_ratio", "significance", "overlap", "ptrue_curves"):
        sec = cfg.get(section, {})
        for i, name in enumerate(sec.get("refs", [])):
            check_model(f"{section}.refs[{i}]", name)
        for i, name in enumerate(sec.get("tasks", [])):
            check_task(f"{section}.tasks[{i}]", name)
    if "significance" in cfg:
        check_model("significance.main", cfg["significance"]["main"])
    check_model("methods.poe.bias_model", cfg["methods"]["poe"]["bias_model"])
    check_model("cost_unit_model", cfg["cost_unit_model"])
    for t, f in cfg["methods"]["ftft"]["fraction"].items():
        check_task(f"methods.ftft.fraction.{t}", t)
        parse_fraction(f, f"methods.ftft.fraction.{t}")
    speed = cfg.get("speed", {})
    fracs = [parse_fraction(f, f"speed.fractions[{i}]") for i, f in enumerate(speed.get("fractions", []))]
    for fid, fig in speed.get("figures", {}).items():
        check_model(f"speed.figures.{fid}.main", fig["main"])
        for i, r in enumerate(fig["refs"]):
            check_model(f"speed.figures.{fid}.refs[{i}]", r)
        for t in fig["tasks"]:
            check_task(f"speed.figures.{fid}.tasks", t)
            if "halting" in speed.get("modes", []):
                for i, f in enumerate(fracs):
                    _check_halting_fraction(cfg, t, f, f"speed.fractions[{i}]", fail, force=True)
    ds = cfg.get("datamap_seed", "same")
    if ds != "same" and ds not in cfg["seeds"]:
        fail("datamap_seed", f"must be 'same' or one of seeds {cfg['seeds']}, got {ds!r}")


def _check_halting_fraction(cfg, task, frac, key, fail, force=False):
    """Halting reads an evaluated checkpoint, so the fraction must sit on one."""
    if not force and cfg["methods"]["ftft"]["mode"] != "halting":
        return
    k = cfg["tasks"][task]["checkpoints"]
    if (frac * k).denominator != 1:
        fail(
            key,
            f"halting at fraction {frac} needs a checkpoint there, but task '{task}' "
            f"evaluates {k} evenly spaced checkpoints (multiples of 1/{k})",
        )
