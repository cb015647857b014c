"""Reading run outputs for tables and figures (file formats: docs/ARCHITECTURE.md).

Everything that aggregates runs goes through here, so one rule decides which checkpoint a
table cell reads and which runs count:

- ``read_fraction(run, fraction)``: a table row is read at a fraction of the *full* budget.
  A limiting run (``budget`` < full) was trained for that budget, so its final checkpoint is
  read; a full run read at fraction f < 1 (halting) gives the checkpoint at f.
- A checkpoint at fraction f is the one whose ``fraction`` column in ``metrics.csv`` is
  nearest to f; it must lie within half a checkpoint spacing, else ``DataError``.
- Failed runs (``run.json`` ``status: failed``) are excluded from every mean and counted.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .grid import Run, ref_run


def run_dir(results: str | Path, run: Run) -> Path:
    return Path(results) / run.path


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"missing run output: {path}")
    return path


@functools.lru_cache(maxsize=4096)
def _read_json_cached(path: str, mtime: float) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from exc


def run_record(results: str | Path, run: Run) -> dict:
    """The run's ``run.json``."""
    path = _need(run_dir(results, run) / "run.json")
    return _read_json_cached(str(path), path.stat().st_mtime)


def is_failed(results: str | Path, run: Run) -> bool:
    status = run_record(results, run).get("status")
    if status not in ("ok", "failed"):
        raise DataError(f"{run_dir(results, run) / 'run.json'}: field 'status' must be ok|failed, got {status!r}")
    return status == "failed"


METRICS_COLUMNS = ("step", "checkpoint", "fraction", "dataset", "role", "n", "accuracy", "macro_f1")


@functools.lru_cache(maxsize=1024)
def _read_metrics_cached(path: str, mtime: float) -> pd.DataFrame:
    df = pd.read_csv(path)
    missing = [c for c in METRICS_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")
    return df


def metrics(results: str | Path, run: Run) -> pd.DataFrame:
    path = _need(run_dir(results, run) / "metrics.csv")
    return _read_metrics_cached(str(path), path.stat().st_mtime)


def read_fraction(run: Run, fraction: Fraction | float = 1) -> Fraction:
    """Fraction of ``run``'s own schedule at which a cell at ``fraction`` of the full budget is read."""
    f = Fraction(fraction).limit_denominator(10_000) / run.fraction
    if f > 1:
        raise DataError(
            f"run {run.path} (budget {run.budget}) cannot be read at fraction {fraction} of the full budget"
        )
    return f


def checkpoint_row(df: pd.DataFrame, fraction: Fraction | float, where: str = "metrics.csv") -> tuple[int, int]:
    """(checkpoint, step) of the checkpoint at ``fraction`` of the run's own schedule."""
    ck = df.drop_duplicates("checkpoint").sort_values("checkpoint")
    return _pick_checkpoint(
        ck["checkpoint"].to_numpy(int), ck["step"].to_numpy(int), ck["fraction"].to_numpy(float), fraction, where
    )


def _pick_checkpoint(ckpts, steps, fracs, fraction, where) -> tuple[int, int]:
    if len(ckpts) == 0:
        raise DataError(f"{where}: no checkpoints")
    if fraction == 1:
        return int(ckpts[-1]), int(steps[-1])
    i = int(np.argmin(np.abs(fracs - float(fraction))))
    tol = 0.5 / len(ckpts) + 1e-9
    if abs(fracs[i] - float(fraction)) > tol:
        raise DataError(
            f"{where}: no checkpoint at fraction {fraction} (nearest {fracs[i]:.4f}); "
            f"checkpoints are at {np.round(fracs, 4).tolist()}"
        )
    return int(ckpts[i]), int(steps[i])


@functools.lru_cache(maxsize=1024)
def _metric_index_cached(path: str, mtime: float):
    """(checkpoints, steps, fractions) sorted by checkpoint, and {(checkpoint, dataset): row dict}."""
    df = _read_metrics_cached(path, mtime)
    ck = df.drop_duplicates("checkpoint").sort_values("checkpoint")
    index = {(int(r["checkpoint"]), str(r["dataset"])): r for r in df.to_dict("records")}
    return ck["checkpoint"].to_numpy(int), ck["step"].to_numpy(int), ck["fraction"].to_numpy(float), index


def metric_at(results: str | Path, run: Run, dataset: str, metric: str, fraction: Fraction | float = 1) -> float:
    """``metric`` (0-1) of ``run`` on ``dataset`` at ``fraction`` of the full budget."""
    path = _need(run_dir(results, run) / "metrics.csv")
    ckpts, steps, fracs, index = _metric_index_cached(str(path), path.stat().st_mtime)
    ckpt, _ = _pick_checkpoint(ckpts, steps, fracs, read_fraction(run, fraction), str(path))
    row = index.get((ckpt, dataset))
    if row is None:
        raise DataError(f"{path}: no row for dataset {dataset!r} at checkpoint {ckpt}")
    if metric not in row:
        raise DataError(f"{path}: no metric column {metric!r}")
    return float(row[metric])


@dataclass
class SeedValues:
    """Per-seed values of the ok runs of one cell, and which seeds failed."""

    values: dict[str, list[float]] = field(default_factory=dict)  # dataset -> value per ok seed
    ok_seeds: list[int] = field(default_factory=list)
    failed_seeds: list[int] = field(default_factory=list)

    @property
    def n_ok(self) -> int:
        return len(self.ok_seeds)

    @property
    def n_failed(self) -> int:
        return len(self.failed_seeds)


def split_failed(results: str | Path, runs) -> tuple[list[Run], list[Run]]:
    ok, failed = [], []
    for r in runs:
        (failed if is_failed(results, r) else ok).append(r)
    return ok, failed


def seed_values(
    results: str | Path, runs, datasets: list[str], metric: str, fraction: Fraction | float = 1
) -> SeedValues:
    ok, failed = split_failed(results, runs)
    out = SeedValues(ok_seeds=[r.seed for r in ok], failed_seeds=[r.seed for r in failed])
    for d in datasets:
        out.values[d] = [metric_at(results, r, d, metric, fraction) for r in ok]
    return out


def mean_std(values: list[float], scale: float = 100.0) -> tuple[float, float]:
    """Mean and sample std (ddof=1; NaN for one value) of ``values`` times ``scale``."""
    a = np.asarray(values, float) * scale
    if a.size == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else float("nan")


def predictions(results: str | Path, run: Run, datasets: list[str], fraction: Fraction | float = 1) -> pd.DataFrame:
    """Rows of ``predictions.parquet`` for ``datasets`` at the checkpoint at ``fraction``,
    sorted by (dataset, uid); columns dataset, uid, label, prob_0..prob_{C-1}."""
    df = metrics(results, run)
    where = run_dir(results, run)
    _, step = checkpoint_row(df, read_fraction(run, fraction), str(where / "metrics.csv"))
    path = _need(where / "predictions.parquet")
    pred = pd.read_parquet(path, filters=[("step", "==", step)])
    pred = pred[pred["dataset"].isin(datasets)]
    missing = sorted(set(datasets) - set(pred["dataset"].unique()))
    if missing:
        raise DataError(f"{path}: no predictions for dataset(s) {missing} at step {step}")
    return pred.drop(columns=["step"]).sort_values(["dataset", "uid"], kind="stable").reset_index(drop=True)


def predicted_labels(pred: pd.DataFrame) -> np.ndarray:
    cols = sorted((c for c in pred.columns if c.startswith("prob_")), key=lambda c: int(c.split("_")[1]))
    return pred[cols].to_numpy(np.float32).argmax(axis=1).astype(np.int64)


def forward_flops_per_epoch(results: str | Path, task: str, model: str, seed: int) -> float:
    """``flops.forward_per_epoch`` of ``model``'s ERM run on ``task`` (the paper's Table 4 unit)."""
    run = ref_run(task, model, seed)
    rec = run_record(results, run)
    try:
        value = float(rec["flops"]["forward_per_epoch"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{run_dir(results, run) / 'run.json'}: missing field flops.forward_per_epoch") from exc
    if not value > 0:
        raise DataError(f"{run_dir(results, run) / 'run.json'}: flops.forward_per_epoch must be > 0, got {value}")
    return value
