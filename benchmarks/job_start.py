"""Benchmark: the fixed cost of a training job, as the train rule runs it (Snakemake `script:` job).

One demo run (HSD, ELECTRA-Small stand-in, ERM) is trained by real `snakemake` jobs in a copy of the
workflow of ``--repo`` (this checkout by default; give an older checkout to measure "before"), at S
and at 2S steps with the same 15 checkpoints. Snakemake's benchmark file gives each job's wall time
(process start to exit). The loop's cost of S steps is T(2S) - T(S), so the fixed cost, everything
but the training steps (interpreter start, imports, model load, data, evaluations, writes, exit), is
2 T(S) - T(2S). Medians over ``--reps`` pairs, run one at a time.

Usage: .venv/bin/python benchmarks/job_start.py [--repo BEFORE AFTER] [--steps 45] [--reps 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

FILES = ("Snakefile", "rules", "scripts", "envs", "profiles", "config", "workflow_config.yaml")


def job_seconds(wf: Path, steps: int) -> float:
    (wf / "config" / "bench.yaml").write_text(
        "results: results/bench\nstate_dir: .ftft-state/bench\nactive_tasks: [hsd]\n"
        f"tasks: {{hsd: {{steps: {steps}}}}}\n"
    )
    target = "results/bench/runs/hsd/electra-small/erm-none/full/seed0/run.json"
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--cores", "2", "--configfile", "config/demo.yaml",
           "config/bench.yaml", "--forcerun", "train", target]  # fmt: skip
    subprocess.run(cmd, cwd=wf, check=True, capture_output=True, env=os.environ)
    tsv = wf / "results/bench/benchmarks/train/hsd/electra-small/erm-none/full/seed0.tsv"
    return float(tsv.read_text().splitlines()[1].split("\t")[0])


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
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ftft-bench-job-start"))
    args = ap.parse_args()
    repos = [r.resolve() for r in args.repo]
    times: dict[Path, tuple[list, list]] = {r: ([], []) for r in repos}
    for rep in range(args.reps + 1):  # the first round builds data, model and tokenised data
        for repo in repos:
            os.environ["PYTHONPATH"] = str(repo / "src")  # the jobs import that checkout's package
            wf = prepare(repo, args.work) if rep == 0 else args.work / repo.name
            short, long_ = job_seconds(wf, args.steps), job_seconds(wf, 2 * args.steps)
            if rep:
                times[repo][0].append(short)
                times[repo][1].append(long_)
    fixed = {}
    for repo, (short, long_) in times.items():
        t_s, t_l = statistics.median(short), statistics.median(long_)
        fixed[repo] = 2 * t_s - t_l
        print(f"{repo}: fixed cost of a training job {fixed[repo]:.2f} s, {args.steps} steps {t_l - t_s:.2f} s "
              f"(job {short} s at {args.steps} steps, {long_} s at {2 * args.steps})")  # fmt: skip
    for repo in repos[1:]:
        print(f"fixed cost ratio {repo.name} / {repos[0].name}: {fixed[repo] / fixed[repos[0]]:.2f}")


if __name__ == "__main__":
    main()
