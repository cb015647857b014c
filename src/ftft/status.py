"""``ftft status``: where a workflow run stands, from the files it writes (no Snakemake needed).

Each training run is done or failed (``run.json``), running (its log changed recently: step, loss, steps/s,
ETA from the last progress line) or waiting. The time left: running jobs at their measured speed, the others
as the finished jobs of the same model took (seconds per step plus the job's time outside the loop, from its
benchmark file), divided by the jobs that run at once; unknown until a training job has finished.
"""

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
    wall_per_step: float = 0.0  # finished runs: training seconds per step
    overhead: float = 0.0  # finished runs: job seconds outside the training loop (start-up, loading, exit)


def run_state(cfg: dict, layout: Layout, run: grid.Run, now: float) -> RunState:
    steps = run.steps(cfg)
    record = Path(layout.run_file("run.json", run))
    if record.is_file():
        try:
            rec = json.loads(record.read_text())
        except (OSError, ValueError):
            rec = {}
        wall = float(rec.get("wall_time_s") or 0)
        try:  # the whole job's wall time, from its Snakemake benchmark file
            job = float(Path(layout.train_benchmark(run)).read_text().splitlines()[1].split("\t")[0])
        except (OSError, IndexError, ValueError):
            job = None
        state = "failed" if rec.get("status") == "failed" else "done"
        return RunState(run, state, steps, steps, reason=str(rec.get("failure_reason") or ""),
                        wall_per_step=wall / max(1, int(rec.get("steps_done") or steps)),
                        overhead=max(0.0, job - wall) if job else 0.0)  # fmt: skip
    log = Path(layout.train_log(run))
    if log.is_file() and now - log.stat().st_mtime < RECENT_S:
        try:  # the last progress line
            p = PROGRESS.findall(log.read_bytes()[-16_384:].decode("utf-8", "replace"))[-1]
        except (OSError, IndexError):
            p = None
        if p and int(p[0]) > 0 and float(p[3]) > 0:
            return RunState(run, "running", int(p[0]), int(p[1]), float(p[3]), p[2])
        return RunState(run, "running", 0, steps)  # starting: no measured speed yet
    return RunState(run, "waiting", 0, steps)


def collect(cfg: dict, now: float | None = None) -> list[RunState]:
    layout = Layout.from_config(cfg)
    now = time.time() if now is None else now
    return [run_state(cfg, layout, r, now) for r in sorted(grid.all_runs(cfg))]


def eta_seconds(states: list[RunState]) -> float | None:
    """Sequential job time left, from the finished jobs of the same model (else of any model): their
    seconds per step and their time outside the loop; None when no training job has finished yet."""
    finished = [s for s in states if s.state in ("done", "failed") and s.wall_per_step > 0]
    left = sum((s.steps - s.step) / s.rate for s in states if s.state == "running" and s.rate > 0)
    todo = [s for s in states if s.state == "waiting" or (s.state == "running" and s.rate == 0)]
    if not todo:
        return left
    if not finished:
        return None
    for s in todo:
        like = [f for f in finished if (f.run.task, f.run.model) == (s.run.task, s.run.model)] or finished
        left += sum(f.overhead + f.wall_per_step * s.steps for f in like) / len(like)
    return left


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def report(states: list[RunState], parallel: int = 1) -> str:
    count = {k: sum(s.state == k for s in states) for k in ("done", "running", "failed", "waiting")}
    lines = []
    for s in states:
        if s.state == "running" and s.rate > 0:
            lines.append(f"  running  {s.run.path}  step {s.step}/{s.steps} ({100 * s.step / max(1, s.steps):.0f}%)  "
                         f"loss {s.loss}  {s.rate:.2f} steps/s  ETA {_hms((s.steps - s.step) / s.rate)}")  # fmt: skip
        elif s.state == "running":
            lines.append(f"  starting {s.run.path}  (loading; no step finished yet)")
    lines += [f"  FAILED   {s.run.path}  {s.reason}" for s in states if s.state == "failed"]
    eta = eta_seconds(states)
    left = (
        "unknown until a training run finishes (`ftft plan` gives the planned GPU-hours)"
        if eta is None
        else _hms(eta / max(1, parallel)) + (f" at {parallel} jobs at once" if parallel > 1 else "")
    )
    head = (
        f"training runs: {count['done']} done, {count['running']} running, {count['failed']} failed, "
        f"{count['waiting']} waiting (of {len(states)}); estimated time left: {left}"
    )
    return "\n".join([head, *lines]) + "\n"


def add_arguments(parser) -> None:
    config.add_overlay_arguments(parser)
    parser.add_argument("--parallel", dest="parallel", type=int, help="training jobs that run at once (for the ETA)")
    parser.add_argument("--watch", type=float, default=0, help="refresh every this many seconds (0: once)")


def run(args) -> int:
    cfg = config.load_args(args)
    while True:
        text = report(collect(cfg), args.parallel)
        print(("\033[2J\033[H" if args.watch else "") + text, end="", flush=True)
        if not args.watch:
            return 0
        time.sleep(args.watch)
