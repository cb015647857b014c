"""Planning time against the number of runs: ``snakemake -n`` of the paper grid with more seeds.

Each size is a fresh copy of the workflow (``tests/wfutil.make_copy``) and an overlay ``seeds: [0..N-1]``
(50 training runs per seed); the dry run evaluates every job's inputs, params and resources (the
compute plan's runtime and memory per training job). Issue 23's target: 100 seeds in <= 30 s, growing
linearly.

Usage: .venv/bin/python benchmarks/plan_scale.py [--seeds 10 100] [--work DIR]
Prints one row per size: seeds, jobs, training jobs, wall and CPU seconds (CPU: what a busy machine does not
inflate), wall seconds per 1,000 jobs.
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from wfutil import make_copy, snakemake  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--work", type=Path, default=None, help="folder for the workflow copies (default: a temp folder)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ftft-plan-scale-"))
    print("| seeds | jobs | training jobs | snakemake -n (s) | CPU (s) | s per 1,000 jobs |\n|---|---|---|---|---|---|")
    for n in args.seeds:
        wf = make_copy(work / f"seeds{n}")
        (wf / "seeds.yaml").write_text(f"seeds: {list(range(n))}\n")
        t0, cpu0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        res = snakemake(wf, "--dry-run", "--configfile", "seeds.yaml", timeout=3600)
        wall, cpu1 = time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
        if res.returncode != 0:
            sys.exit(f"snakemake -n failed for {n} seeds:\n{(res.stdout + res.stderr)[-3000:]}")
        counts = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout, re.M))
        jobs, train = int(counts["total"]), int(counts.get("train", 0)) + int(counts.get("train_bias_model", 0))
        print(f"| {n} | {jobs} | {train} | {wall:.1f} | {cpu:.1f} | {wall / jobs * 1000:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
