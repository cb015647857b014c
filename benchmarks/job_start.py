"""Benchmark: the fixed cost of a training job, as the train rule runs it (Snakemake `script:` job).

One demo run (HSD, ELECTRA-Small stand-in, ERM, 45 steps) is trained by real `snakemake` jobs in a copy of
the workflow of each ``--repo`` (measured in turns; give an older checkout first to compare). The job's
fixed cost is what the issue names: process start to the first training step (interpreter, imports,
model and data loading; ``run.json`` ``timing.startup_s``, from the process's start time) plus the
writing of the outputs to process exit (Snakemake's benchmark wall time minus ``timing.outputs_at_s``).
An older checkout needs the same two timing fields (a measurement patch). Medians over ``--reps`` jobs.

Usage: .venv/bin/python benchmarks/job_start.py [--repo BEFORE AFTER] [--steps 45] [--reps 5] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

FILES = ("Snakefile", "rules", "scripts", "envs", "profiles", "config", "workflow_config.yaml")


def job_seconds(wf: Path, steps: int) -> tuple[float, float]:
    """(start to first step, outputs to exit) of one forced training job, in seconds."""
    (wf / "config" / "bench.yaml").write_text(
        "results: results/bench\nstate_dir: .ftft-state/bench\nactive_tasks: [hsd]\ndemo: {hsd_train_rows: 500}\n"
        f"tasks: {{hsd: {{steps: {steps}}}}}\n"
    )
    run = "hsd/electra-small/erm-none/full/seed0"
    cmd = [
        str(Path(sys.executable).with_name("snakemake")),
        f"results/bench/runs/{run}/run.json",
        "--cores",
        "2",
        "--configfile",
        "config/demo.yaml",
        "config/bench.yaml",
        "--forcerun",
        "train",
    ]  # fmt: skip (target first)
    subprocess.run(cmd, cwd=wf, check=True, capture_output=True, env=os.environ)
    job = float((wf / f"results/bench/benchmarks/train/{run}.tsv").read_text().splitlines()[1].split("\t")[0])
    timing = json.loads((wf / f"results/bench/runs/{run}/run.json").read_text())["timing"]
    return timing["startup_s"], job - timing["outputs_at_s"]


def prepare(repo: Path, work: Path) -> Path:
    wf = work / repo.name
    shutil.rmtree(wf, ignore_errors=True)
    wf.mkdir(parents=True)
    for name in FILES:
        (shutil.copytree if (repo / name).is_dir() else shutil.copy2)(repo / name, wf / name)
    (wf / "src").symlink_to(repo / "src")
    (wf / "schemas").symlink_to(repo / "src" / "ftft" / "schemas")
    return wf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, nargs="+", default=[Path(__file__).resolve().parents[1]],
                    help="checkouts to compare (measured in turns); the first is the baseline")  # fmt: skip
    ap.add_argument("--steps", type=int, default=45)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ftft-bench-job-start"))
    args = ap.parse_args()
    repos = [r.resolve() for r in args.repo]
    times: dict[Path, list[tuple[float, float]]] = {r: [] for r in repos}
    for rep in range(args.reps + 1):  # the first round builds data, model and tokenised data
        for repo in repos:
            os.environ["PYTHONPATH"] = str(repo / "src")  # the jobs import that checkout's package
            wf = prepare(repo, args.work) if rep == 0 else args.work / repo.name
            t = job_seconds(wf, args.steps)
            if rep:
                times[repo].append(t)
    fixed = {}
    for repo, ts in times.items():
        start, end = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
        fixed[repo] = start + end
        print(f"{repo}: fixed cost of a training job {fixed[repo]:.2f} s = start to first step {start:.2f} s "
              f"+ outputs to exit {end:.2f} s (runs: {[tuple(round(x, 2) for x in t) for t in ts]})")  # fmt: skip
    for repo in repos[1:]:
        print(f"fixed cost ratio {repo.name} / {repos[0].name}: {fixed[repo] / fixed[repos[0]]:.2f}")


if __name__ == "__main__":
    main()
