"""The offline demo from nothing, once per Snakemake job scheduler: wall time and how much of a core
the training jobs got.

Each run is a fresh copy of the workflow (``snakemake --cores 2 --configfile config/demo.yaml
--scheduler S``, the README's demo command with the scheduler named); the training jobs'
``benchmark:`` files give their mean CPU load. Snakemake's default ``ilp`` scheduler calls a solver
(CBC, a subprocess) at each scheduling round; ``profiles/default`` sets ``greedy``.

Usage: .venv/bin/python benchmarks/demo_time.py [--schedulers ilp greedy] [--work DIR]
Prints one row per scheduler and the wall-time ratio of the first to each other. About 10 minutes
per scheduler on 2 cores; keep the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from wfutil import make_copy, snakemake  # noqa: E402


def train_load(wf: Path) -> tuple[int, float, float]:
    """(jobs, summed wall seconds, mean load %) of the training jobs' benchmark files."""
    rows = []
    for f in (wf / "results" / "demo" / "benchmarks" / "train").rglob("*.tsv"):
        with f.open() as fh:
            rows.append(list(csv.DictReader(fh, delimiter="\t"))[-1])
    wall = sum(float(r["s"]) for r in rows)
    cpu = sum(float(r["cpu_time"]) for r in rows)
    return len(rows), wall, 100 * cpu / wall if wall else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schedulers", nargs="+", default=["ilp", "greedy"])
    ap.add_argument("--work", type=Path, default=None, help="keep the copies here (default: a temp folder)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ftft-demo-time-"))
    results = []
    for sched in args.schedulers:
        wf = make_copy(work / sched)
        t0 = time.monotonic()
        res = snakemake(wf, "--cores", "2", "--configfile", "config/demo.yaml", "--scheduler", sched, timeout=3600)
        wall = time.monotonic() - t0
        if res.returncode != 0:
            sys.exit(f"demo with --scheduler {sched} failed:\n{(res.stdout + res.stderr)[-3000:]}")
        n, job_s, load = train_load(wf)
        results.append((sched, wall, n, job_s, load))
        print(f"{sched}: {wall:.0f} s", flush=True)
    print("\n| scheduler | demo wall (s) | training jobs | their summed wall (s) | their mean load (% of a core) |")
    print("|---|---|---|---|---|")
    for sched, wall, n, job_s, load in results:
        print(f"| {sched} | {wall:.0f} | {n} | {job_s:.0f} | {load:.0f} |")
    base = results[0]
    for r in results[1:]:
        print(f"wall ratio {base[0]} / {r[0]}: {base[1] / r[1]:.2f}x")


if __name__ == "__main__":
    main()
