"""Planning time against the number of runs: ``snakemake -n`` of the paper grid with more seeds, beside Snakemake's floor.

Each size is a fresh copy of the workflow (``tests/wfutil.make_copy``) and an overlay ``seeds: [0..N-1]``
(50 training runs per seed); the dry run evaluates every job's inputs, params and resources (the
compute plan's runtime and memory per training job). Issue 23's target: 100 seeds in <= 30 s, growing
linearly. ``--floor`` also plans a Snakefile of trivial jobs with the same number of jobs and input edges
(one-input jobs with the train rule's directives, the remaining edges on as many aggregation jobs as the grid
has): what Snakemake itself costs for a DAG of that size, whoever writes the rules.

Usage: .venv/bin/python benchmarks/plan_scale.py [--seeds 10 100] [--floor] [--work DIR]
Prints one row per size: seeds, jobs, input edges, wall and CPU seconds (CPU: what a busy machine does not
inflate), wall seconds per 1,000 jobs. Note: where SLURM's client tools are installed but no controller answers,
every ``snakemake`` start waits about 9 s (wall, no CPU) for ``scontrol show config`` (the SLURM executor plugin
asks it for its help text).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from wfutil import SNAKEMAKE, make_copy  # noqa: E402

FLOOR = """N, AGG, EDGES = config["n"], config["agg"], config["edges"]
rule all:
    input: expand("out/{i}.txt", i=range(N)), expand("agg/{a}.txt", a=range(AGG))
rule job:
    input: unpack(lambda w: {"data": "src.txt"})
    output: "out/{i}.txt"
    log: "logs/{i}.log"
    benchmark: "bench/{i}.tsv"
    conda: "env.yaml"
    resources: mem_mb=lambda w: 1000, runtime=lambda w: 60
    params: spec=lambda w: {"seed": w.i}
    shell: "touch {output}"
rule agg:
    input: lambda w: [f"out/{(int(w.a) * 997 + k) % N}.txt" for k in range(EDGES)]
    output: "agg/{a}.txt"
    shell: "touch {output}"
rule src:
    output: "src.txt"
    shell: "touch {output}"
"""


def timed(wf: Path, *args: str) -> tuple[str, float, float]:
    """(output, wall s, CPU s of this snakemake alone: other children of the caller do not count)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen([SNAKEMAKE, "--dry-run", *args], cwd=wf, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode, wall = os.waitstatus_to_exitcode(status), time.monotonic() - t0
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        sys.exit(f"snakemake -n failed in {wf}:\n{text[-3000:]}")
    return text, wall, usage.ru_utime + usage.ru_stime


def row(what: str, jobs: int, edges: int, wall: float, cpu: float) -> None:
    print(f"| {what} | {jobs} | {edges} | {wall:.1f} | {cpu:.1f} | {wall / jobs * 1000:.1f} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--floor", action="store_true", help="also time trivial jobs of the same count (Snakemake's cost)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the workflow copies (default: a temp folder)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ftft-plan-scale-"))
    print("| planned | jobs | input edges | snakemake -n (s) | CPU (s) | s per 1,000 jobs |\n|---|---|---|---|---|---|")
    for n in args.seeds:
        wf = make_copy(work / f"seeds{n}")
        (wf / "seeds.yaml").write_text(f"seeds: {list(range(n))}\n")
        out, wall, cpu = timed(wf, "--configfile", "seeds.yaml")
        inputs = [len(line.split(", ")) for line in re.findall(r"^    input: (.*)$", out, re.M)]
        jobs, edges = int(re.search(r"^total\s+(\d+)$", out, re.M).group(1)), sum(inputs)
        row(f"paper grid, {n} seeds", jobs, edges, wall, cpu)
        if args.floor:  # the aggregation jobs (over 50 inputs) keep their edges, every other job has one input
            agg = sum(k > 50 for k in inputs) - 1  # less `all`
            one = jobs - agg - 2  # less `all` and `src`; edges: one each, all's, the aggregations'
            floor = work / f"floor{n}"
            floor.mkdir(exist_ok=True)
            (floor / "Snakefile").write_text(FLOOR)
            (floor / "env.yaml").write_text("dependencies: [python]\n")
            (floor / "c.yaml").write_text(f"n: {one}\nagg: {agg}\nedges: {(edges - 2 * one - agg) // agg}\n")
            _, wall, cpu = timed(floor, "--configfile", "c.yaml")
            row(f"trivial jobs, {n} seeds' size", jobs, edges, wall, cpu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
