"""``ftft check-config``: validate config files before any job runs."""

from __future__ import annotations

import json

from . import config, grid


def add_arguments(parser):
    parser.add_argument("configfiles", nargs="+", help="YAML files, merged in order like snakemake --configfile")
    parser.add_argument("--summary", action="store_true", help="print the number of runs per method/task")


def run(args):
    from .workflow import Plan

    cfg = config.load(*args.configfiles)
    Plan(cfg).check()  # what the Snakefile checks next: local files, the sources' splits and labels
    print(f"config OK: {', '.join(args.configfiles)}")
    if args.summary:
        runs = grid.all_runs(cfg)
        counts: dict[str, int] = {}
        for r in runs:
            counts[f"{r.task}/{r.method}"] = counts.get(f"{r.task}/{r.method}", 0) + 1
        print(json.dumps({"runs": len(runs), "by_task_method": dict(sorted(counts.items()))}, indent=2))
    return 0
