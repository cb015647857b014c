"""``ftft check-config``: validate a run's config (overlays onto workflow_config.yaml) before any job runs."""

from __future__ import annotations

import json
from collections import Counter

from . import config, grid


def add_arguments(parser):
    config.add_overlay_arguments(parser)
    parser.add_argument("--summary", action="store_true", help="print the number of runs per method/task")


def run(args):
    from .workflow import Plan

    cfg = config.load_args(args)  # onto workflow_config.yaml, as snakemake --configfile merges
    Plan(cfg).check()  # what the Snakefile checks next: local files, the sources' splits and labels
    print(f"config OK: {', '.join([str(config.base_config(args.base)), *args.configfiles, *args.overlays])}")
    if args.summary:
        runs = grid.all_runs(cfg)
        counts = Counter(f"{r.task}/{r.method}" for r in runs)
        print(json.dumps({"runs": len(runs), "by_task_method": dict(sorted(counts.items()))}, indent=2))
    return 0
