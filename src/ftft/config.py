"""The workflow config (``workflow_config.yaml``, ``config/README.md``): ``load`` merges YAML files as Snakemake's
``--configfile`` does, then ``validate`` checks it in two steps, before any job: the schema
(``schemas/config.schema.yaml``: shapes, names, defaults) and one semantic pass (cross-key rules). ``Plan.check``
(``ftft.workflow``) then checks what only the planned grid reveals. Every error names the file, key and value.
"""

import copy
import functools
import itertools
import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from . import methods
from .errors import FtftError
from .modeling import model_origin


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
        text = path.read_text()
        tags = [t.value for t in yaml.scan(text) if isinstance(t, yaml.TagToken)]
        data = None if tags else yaml.safe_load(text) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if tags:  # plain data only: a tag makes Python objects (!!python/...) or means something else to another reader
        raise ConfigError(
            f"{path}: YAML tags are not allowed in a config file, found {''.join(p or '' for p in tags[0])!r}"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    if "__use_yte__" in data:  # Snakemake would evaluate the file as a YTE template: code from a config file
        raise ConfigError(f"{path}: '__use_yte__' is not allowed: config files are plain data, never templates")
    return data


def base_config(path: str | Path | None = None) -> Path:
    """The base config: ``path``, else ``workflow_config.yaml`` in the working folder, else beside the package's repo."""
    if path:
        return Path(path)
    here = Path("workflow_config.yaml")
    return here if here.is_file() else Path(__file__).resolve().parents[2] / "workflow_config.yaml"


def task_entries(t: dict) -> list[tuple[str, str, dict]]:
    """(config key, role, entry) of a task's data: train, id_test, ood[i] and the optional dev set (evaluated at
    every checkpoint, reported in the run's metrics, not in the paper tables)."""
    out = [("train", "train", t["train"])] if "train" in t else []
    out += [("id_test", "id", t["id_test"])] + [(f"ood[{i}]", "ood", o) for i, o in enumerate(t["ood"])]
    return out + ([("dev", "dev", t["dev"])] if t.get("dev") else [])


def eval_entries(t: dict) -> list[tuple[str, str]]:
    """(name, role) of every evaluation set of a task config, the ID test set first."""
    return [(e["name"], role) for _, role, e in task_entries(t) if role != "train"]


def load_overlays(overlays, base: str | Path | None = None) -> dict:
    """``load(base_config(base), *overlays)``: what a Snakemake run with these --configfile overlays sees."""
    return load(base_config(base), *overlays)


def add_overlay_arguments(parser) -> None:
    """The run's own config arguments: overlays as positionals or ``--configfile`` (as given to snakemake),
    ``--cores``/``--jobs`` (how many jobs run at once) and ``--base``."""
    parser.add_argument("configfiles", nargs="*", help="YAML overlays merged onto workflow_config.yaml, in order")
    parser.add_argument("--configfile", "--configfiles", dest="overlays", nargs="+", action="extend", default=[],
                        metavar="FILE", help="the same overlays, written as in the snakemake command")  # fmt: skip
    parser.add_argument("--cores", "-c", "--jobs", "-j", dest="parallel", default=1,
                        type=lambda v: (os.cpu_count() or 1) if v == "all" else int(v),
                        help="jobs that run at once (as given to snakemake)")  # fmt: skip
    parser.add_argument("--base", default=None, help="base config (default: workflow_config.yaml beside the Snakefile)")


def add_arguments(parser) -> None:  # ftft check-config
    add_overlay_arguments(parser)
    parser.add_argument("--summary", action="store_true", help="print the number of runs per method/task")


def run(args) -> int:
    """``ftft check-config``: the checks the Snakefile runs first (this module's, then ``Plan.check``)."""
    from collections import Counter

    from .grid import all_runs
    from .workflow import Plan

    cfg = load_args(args)
    Plan(cfg).check()
    print(f"config OK: {', '.join([str(base_config(args.base)), *args.configfiles, *args.overlays])}")
    if args.summary:
        runs = all_runs(cfg)
        counts = Counter(f"{r.task}/{r.method}" for r in runs)
        print(json.dumps({"runs": len(runs), "by_task_method": dict(sorted(counts.items()))}, indent=2))
    return 0


def load_args(args) -> dict:
    """The config of a command that took ``add_overlay_arguments``."""
    return load_overlays([*args.configfiles, *args.overlays], args.base)


def load(*paths: str | Path, overrides: dict | None = None) -> dict:
    """Merge the YAML files in order (plus ``overrides``) and validate the result."""
    cfg: dict = {}
    for p in paths:
        deep_update(cfg, read_yaml(p))
    if overrides:
        deep_update(cfg, overrides)
    validate(cfg, source=", ".join(str(p) for p in paths) or "<config>")
    return cfg


@functools.cache
def load_schema() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parent / "schemas" / "config.schema.yaml").read_text())


def _key_path(parts) -> str:
    """['tasks', 'nli', 'ood', 0, 'name'] -> 'tasks.nli.ood[0].name'."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).removeprefix(".") or "<top level>"


@functools.cache
def _validator_class():
    """Draft 2020-12 validator that fills in schema defaults (the jsonschema FAQ recipe)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def schema_error(validator, instance) -> str | None:
    """The first error (by key path) of ``instance`` as "at 'key': message"; None if it is valid."""
    from jsonschema.exceptions import best_match

    errors = list(validator.iter_errors(instance))
    if not errors:
        return None
    err = min(errors, key=lambda e: (list(e.absolute_path), e.validator != "additionalProperties"))
    err = best_match([err])  # into a oneOf / anyOf: the alternative that fits the value's type
    key, msg = _key_path(err.absolute_path), err.message
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        msg = f"unknown key(s) {extra}; allowed: {allowed}"
        key = _key_path([*err.absolute_path, *extra[:1]])
    elif err.validator == "pattern" and "x1f" in err.validator_value:
        msg = f"{err.instance!r} is not allowed here (display text is one line without control characters)"
    elif err.validator == "pattern" or (err.validator == "oneOf" and isinstance(err.instance, str)):
        msg = f"{err.instance!r} is not allowed here (names and paths may not contain whitespace, quotes or shell characters)"
    return f"at '{key}': {msg}"


def validate(cfg: dict, source: str = "<config>") -> None:
    """Schema validation (filling in defaults; model, task and method names must be defined ones), then the
    semantic checks a schema cannot express. Raises ConfigError naming ``source``, the key and the value."""
    if "mode" not in cfg and "tasks" not in cfg:
        raise ConfigError(
            f"{source}: the base configuration is missing (no 'mode', no 'tasks'): the workflow's own "
            "workflow_config.yaml (beside the Snakefile) must be loaded first, overlays on top of it"
        )
    schema = load_schema()
    names = {k: sorted(cfg[f"{k}s"]) if isinstance(cfg.get(f"{k}s"), dict) else [] for k in ("model", "task")}
    names["method"] = list(methods.REGISTRY)
    schema = {**schema, "$defs": {**schema["$defs"], **{k: {"type": "string", "enum": v} for k, v in names.items()}}}
    if error := schema_error(_validator_class()(schema), cfg):
        raise ConfigError(f"{source}: invalid config {error}")
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


def active_tasks(cfg: dict) -> list[str]:
    """The tasks this run trains and reports (``active_tasks``, default every task)."""
    return list(cfg["active_tasks"] or cfg["tasks"])


def demo_kind(cfg: dict, source: str) -> str | None:
    """The demo generator's task ('nli', 'hsd', ...) when ``source`` is generated here (demo mode, ``demo_*``), else
    None: the one place that says where a dataset comes from besides ``datasets`` (download) and ``byo``."""
    return source.removeprefix("demo_") if cfg["mode"] == "demo" and source.startswith("demo_") else None


def _semantic_checks(cfg: dict, source: str) -> None:
    """What the schema cannot say: folders, step counts, sources, table rows and halting fractions."""

    def fail(key: str, msg: str):
        raise ConfigError(f"{source}: invalid config at '{key}': {msg}")

    def halts(key: str, value, tasks):  # halting reads an evaluated checkpoint: the fraction must sit on one
        frac = parse_fraction(value, key)
        for t in tasks:
            if (frac * (k := cfg["tasks"][t]["checkpoints"])).denominator != 1:
                fail(key, f"halting at fraction {frac} needs a checkpoint there, but task '{t}' "
                          f"evaluates {k} evenly spaced checkpoints (multiples of 1/{k})")  # fmt: skip

    here, roots = Path.cwd(), {k: Path(os.path.abspath(cfg[k])) for k in ("state_dir", "resources", "results")}
    for k, p in roots.items():  # lexical (a root may be a symlink to scratch space)
        if here.is_relative_to(p) or not (Path(cfg[k]).is_absolute() or p.is_relative_to(here)):
            fail(k, f"{cfg[k]!r} is or escapes the project folder {here}: name a folder below it (or an absolute one)")
    for (a, pa), (b, pb) in itertools.permutations(roots.items(), 2):  # training cleanup would delete outputs
        if pa.is_relative_to(pb):
            fail(a, f"{cfg[a]!r} is or is inside {b} {cfg[b]!r}: the two folders must not overlap")
    sources = set(cfg["datasets"]) | set(cfg["byo"])
    for tname, t in cfg["tasks"].items():
        if t["steps"] < t["checkpoints"]:
            fail(f"tasks.{tname}.steps", f"steps ({t['steps']}) must be >= checkpoints ({t['checkpoints']})")
        names = [name for name, _ in eval_entries(t)]
        if len(set(names)) != len(names):
            fail(f"tasks.{tname}.ood", f"evaluation set names must be unique, got {names}")
        for key, role, o in task_entries(t):
            if role != "train" and o["name"] == "train":
                fail(f"tasks.{tname}.{key}.name", "'train' names the training split; call the evaluation set otherwise")
            if o["source"] not in sources and demo_kind(cfg, o["source"]) is None:
                fail(f"tasks.{tname}.{key}.source",
                     f"source '{o['source']}' is not defined under 'datasets' or 'byo' (defined: {sorted(sources)})")  # fmt: skip
    for name, b in cfg["byo"].items():
        if bool(b["files"]) == bool(b["hf"]):
            fail(f"byo.{name}.files", "give either files (split -> path) or hf (a Hugging Face dataset), not both")
    for name, m in cfg["models"].items():
        if model_origin(cfg, name) == "demo" and (m["family"] is None or m["size"] is None):
            fail(f"models.{name}.family", "demo mode builds a tiny stand-in of every model: set family and size")
    for tid, table in cfg["tables"].items():
        for i, t in enumerate(table["cost"]):
            if t not in table["tasks"]:
                fail(f"tables.{tid}.cost[{i}]", f"task '{t}' is not one of the table's tasks {table['tasks']}")
        for i, row in enumerate(table["rows"]):
            base = f"tables.{tid}.rows[{i}]"
            if methods.get(row["method"]).needs_ref != ("ref" in row):
                fail(
                    f"{base}.ref",
                    f"method '{row['method']}' {'takes no' if 'ref' in row else 'needs a'} reference model",
                )
            if "fraction" in row and row["method"] != "ftft":
                fail(f"{base}.fraction", "only ftft rows have a step fraction")
            if row["method"] == "ftft":
                fr = row.get("fraction", cfg["methods"]["ftft"]["fraction"])
                key = f"{base}.fraction" if "fraction" in row else "methods.ftft.fraction"  # where the value is
                for t in table["tasks"]:
                    if t not in fr:
                        fail(key, f"no FTFT step fraction for task '{t}'")
                    halts(f"{key}.{t}", fr[t], [t])
    for t, f in cfg["methods"]["ftft"]["fraction"].items():
        halts(f"methods.ftft.fraction.{t}", f, [t])
    speed = cfg["speed"]
    for i, f in enumerate(speed["fractions"]):
        halts(f"speed.fractions[{i}]", f, [t for fig in speed["figures"].values() for t in fig["tasks"]])
    halts("limiting.fraction", cfg["limiting"]["fraction"], [])
    for i, fid in enumerate(cfg["limiting"]["figures"]):
        if fid not in speed["figures"]:
            fail(f"limiting.figures[{i}]", f"figure '{fid}' is not under speed.figures {sorted(speed['figures'])}")
    halts("claims.fast_fraction", cfg["claims"]["fast_fraction"], [])
    if ship := cfg["ship"]:  # FTFT as a tool: the paper's task-independent lists keep only the models of its tables
        if ship["task"] not in active_tasks(cfg):
            fail("ship.task", f"task '{ship['task']}' is not active ({active_tasks(cfg)})")
        halts("ship.fraction", ship["fraction"], [ship["task"]])
        on = set(active_tasks(cfg))
        keep = {
            r.get(k) for t in cfg["tables"].values() if on & set(t["tasks"]) for r in t["rows"] for k in ("main", "ref")
        }
        cfg["flops_models"] = [m for m in cfg["flops_models"] if m in keep]
        cfg["easy_ratio"]["refs"] = [m for m in cfg["easy_ratio"]["refs"] if m in keep]
    if (ds := cfg["datamap_seed"]) != "same" and ds not in cfg["seeds"]:
        fail("datamap_seed", f"must be 'same' or one of seeds {cfg['seeds']}, got {ds!r}")
