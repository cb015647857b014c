"""``ftft status``: where a workflow run stands, from the files it writes (no Snakemake needed).

For every training run of the config: done (``run.json`` status ok), failed (status failed),
running (its log's last progress line is recent and there is no ``run.json`` yet: step, loss,
steps/s, ETA as the engine logs them) or waiting. Then an overall line: runs done / running /
failed / waiting and the estimated time left, from the measured speed of the running jobs and
the wall time per step of the finished ones (sequential estimate: divide by the number of jobs
that run at once). ``--watch S`` refreshes every S seconds. Works the same on a workstation
and on a cluster (the logs are on the shared file system).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from . import config, grid
from .layout import Layout

PROGRESS = re.compile(r"step (\d+)/(\d+) \(\d+%\) loss ([0-9.naninf]+) \| ([0-9.]+) steps/s")
RECENT_S = 900  # a log written to within this many seconds counts as a running job


@dataclass
class RunState:
    run: grid.Run
    state: str  # done | failed | running | waiting
    step: int = 0
    steps: int = 0
    rate: float = 0.0
    loss: str = ""
    reason: str = ""
    wall_per_step: float = 0.0


def _last_progress(log: Path) -> tuple[int, int, str, float] | None:
    try:
        with open(log, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 16_384))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    hits = PROGRESS.findall(tail)
    if not hits:
        return None
    step, total, loss, rate = hits[-1]
    return int(step), int(total), loss, float(rate)


def run_state(cfg: dict, layout: Layout, run: grid.Run, now: float) -> RunState:
    steps = run.steps(cfg)
    record = Path(layout.run_file("run.json", run))
    if record.is_file():
        try:
            rec = json.loads(record.read_text())
        except (OSError, ValueError):
            rec = {}
        failed = rec.get("status") == "failed"
        per_step = float(rec.get("wall_time_s") or 0) / max(1, int(rec.get("steps_done") or steps))
        return RunState(run, "failed" if failed else "done", steps, steps, reason=str(rec.get("failure_reason") or ""),
                        wall_per_step=per_step)  # fmt: skip
    log = Path(layout.train_log(run))
    if log.is_file() and now - log.stat().st_mtime < RECENT_S:
        p = _last_progress(log)
        if p:
            return RunState(run, "running", p[0], p[1], p[3], p[2])
        return RunState(run, "running", 0, steps)
    return RunState(run, "waiting", 0, steps)


def collect(cfg: dict, now: float | None = None) -> list[RunState]:
    layout = Layout.from_config(cfg)
    now = time.time() if now is None else now
    return [run_state(cfg, layout, r, now) for r in sorted(grid.all_runs(cfg))]


def eta_seconds(states: list[RunState]) -> float:
    """Sequential time left: running jobs at their rate, waiting ones at the finished ones' speed."""
    per_step = [s.wall_per_step for s in states if s.state in ("done", "failed") and s.wall_per_step > 0]
    rates = [s.rate for s in states if s.state == "running" and s.rate > 0]
    default = sum(per_step) / len(per_step) if per_step else (1 / (sum(rates) / len(rates)) if rates else 0.0)
    left = sum((s.steps - s.step) / s.rate for s in states if s.state == "running" and s.rate > 0)
    return left + sum(s.steps * default for s in states if s.state == "waiting")


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def report(states: list[RunState], parallel: int = 1) -> str:
    count = {k: sum(s.state == k for s in states) for k in ("done", "running", "failed", "waiting")}
    lines = []
    for s in states:
        if s.state == "running":
            pct = 100 * s.step / max(1, s.steps)
            eta = (s.steps - s.step) / s.rate if s.rate else 0
            lines.append(f"  running  {s.run.path}  step {s.step}/{s.steps} ({pct:.0f}%)  loss {s.loss}  "
                         f"{s.rate:.2f} steps/s  ETA {_hms(eta)}")  # fmt: skip
    for s in states:
        if s.state == "failed":
            lines.append(f"  FAILED   {s.run.path}  {s.reason}")
    left = eta_seconds(states) / max(1, parallel)
    head = (
        f"training runs: {count['done']} done, {count['running']} running, {count['failed']} failed, "
        f"{count['waiting']} waiting (of {len(states)}); estimated time left: {_hms(left)}"
        + (f" at {parallel} jobs at once" if parallel > 1 else "")
    )
    return "\n".join([head, *lines]) + "\n"


def add_arguments(parser) -> None:
    parser.add_argument("configfiles", nargs="*", help="the run's --configfile overlays (onto workflow_config.yaml)")
    parser.add_argument("--base", default=None, help="base config (default: workflow_config.yaml beside the Snakefile)")
    parser.add_argument("--parallel", type=int, default=1, help="training jobs that run at once (for the ETA)")
    parser.add_argument("--watch", type=float, default=0, help="refresh every this many seconds (0: once)")


def run(args) -> int:
    cfg = config.load_overlays(args.configfiles, args.base)
    while True:
        text = report(collect(cfg), args.parallel)
        print(("\033[2J\033[H" if args.watch else "") + text, end="", flush=True)
        if not args.watch:
            return 0
        time.sleep(args.watch)
