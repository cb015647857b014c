"""Reading run outputs for tables and figures through ``Results`` (formats, and which runs count as failed:
docs/ARCHITECTURE.md, "Run outputs"). A cell at fraction f of the *full* budget reads a limited run's final
checkpoint and a full run's checkpoint nearest to f (within half a checkpoint spacing, else ``DataError``). A
missing, truncated or malformed file is a ``DataError`` naming it."""

import functools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from . import datamap
from .errors import DataError
from .grid import Run, ref_run
from .io import parquet_meta, read_csv, read_json, read_parquet
from .layout import Layout

METRICS_COLUMNS = ("step", "checkpoint", "fraction", "dataset", "role", "n", "accuracy", "macro_f1")


def read_fraction(run: Run, fraction: Fraction | float = 1) -> Fraction:
    """Fraction of ``run``'s own schedule at which a cell at ``fraction`` of the full budget is read."""
    f = Fraction(fraction).limit_denominator(10_000) / run.fraction
    if f > 1:
        raise DataError(
            f"run {run.path} (budget {run.budget}) cannot be read at fraction {fraction} of the full budget"
        )
    return f


@dataclass
class SeedValues:
    """Per-seed values of the ok runs of one cell (dataset -> value per ok seed), and which seeds failed and why."""

    values: dict[str, list[float]]
    ok_seeds: list[int]
    failed_seeds: list[int]
    reasons: list[str]
    n_ok = property(lambda self: len(self.ok_seeds))
    n_failed = property(lambda self: len(self.failed_seeds))


def mean_std(values: list[float], scale: float = 100.0) -> tuple[float, float]:
    """Mean and sample std (ddof=1; NaN for one value) of ``values`` times ``scale``."""
    a = np.asarray(values, float) * scale
    return (float(a.mean()) if a.size else float("nan")), (float(a.std(ddof=1)) if a.size > 1 else float("nan"))


@functools.lru_cache(maxsize=8192)
def _json(path: str, mtime: float) -> dict:
    return read_json(path, "run record")


@functools.lru_cache(maxsize=4096)
def _metric_index(path: str, mtime: float):
    """(checkpoints, steps, fractions) sorted by checkpoint, and {(checkpoint, dataset): row dict}."""
    df = read_csv(path, "metrics file")
    if missing := [c for c in METRICS_COLUMNS if c not in df.columns]:
        raise DataError(f"{path}: missing column(s) {missing}")
    ck = df.drop_duplicates("checkpoint").sort_values("checkpoint")
    index = {(int(r["checkpoint"]), str(r["dataset"])): r for r in df.to_dict("records")}
    return ck["checkpoint"].to_numpy(int), ck["step"].to_numpy(int), ck["fraction"].to_numpy(float), index


@functools.lru_cache(maxsize=64)
def _predictions_at(path: str, mtime: float, step: int, datasets: tuple[str, ...]) -> pd.DataFrame:
    """The rows of ``datasets`` at one checkpoint of a predictions file, sorted by (dataset, uid); cached (the claims
    compare one run with several others), ``Results.predictions`` hands out copies."""
    pred = read_parquet(path, "predictions file", filters=[("step", "==", step)])
    pred = pred[pred["dataset"].isin(datasets)]
    missing = sorted(set(datasets) - set(pred["dataset"].unique()))
    if missing:
        raise DataError(f"{path}: no predictions for dataset(s) {missing} at step {step}")
    return pred.drop(columns=["step"]).sort_values(["dataset", "uid"], kind="stable").reset_index(drop=True)


class Results:
    """Read access to one results folder (through ``layout.Layout``), with caching."""

    def __init__(self, layout: Layout | str | Path):
        self.layout = layout if isinstance(layout, Layout) else Layout(layout)

    # --- single runs ----------------------------------------------------------------------
    def run_path(self, run: Run, name: str) -> Path:
        return Path(self.layout.run_file(name, run))

    def _read(self, run: Run, name: str, reader, *args):
        """(``reader(path, mtime, *args)``: cached per version of the file, its path); a missing file: DataError."""
        if not (path := self.run_path(run, name)).is_file():
            raise DataError(f"missing run output: {path}")
        return reader(str(path), path.stat().st_mtime, *args), path

    def record(self, run: Run) -> dict:
        rec, path = self._read(run, "run.json", _json)
        if rec.get("status") not in ("ok", "failed"):
            raise DataError(f"{path}: field 'status' must be ok|failed, got {rec.get('status')!r}")
        return rec

    def is_failed(self, run: Run) -> bool:
        return self.record(run)["status"] == "failed"

    def failure(self, run: Run) -> str:
        return str(self.record(run).get("failure_reason") or "")

    def failure_at(self, run: Run, fraction: Fraction | float = 1) -> str:
        """Why ``run`` read at ``fraction`` of the full budget does not count ('' when it does)."""
        fin = self.record(run).get("final")
        if read_fraction(run, fraction) == 1 or not fin:  # the run's end, or it broke (loss, reference)
            return self.failure(run) if self.is_failed(run) else ""
        score, base = self.metric_at(run, fin["dataset"], fin["metric"], fraction), float(fin["majority_baseline"])
        if score <= base:
            return f"halted at {fraction}: ID {fin['metric']} on {fin['dataset']} is {score:.4f} <= majority-class {base:.4f}"
        return ""

    def _checkpoint(self, run: Run, fraction: Fraction | float) -> tuple[int, int, dict, Path]:
        """(checkpoint, step, {(checkpoint, dataset): metrics row}, metrics.csv) of ``run`` at ``fraction``: the last
        checkpoint at the end of the run's own schedule, else the nearest (within half a checkpoint spacing)."""
        (ckpts, steps, fracs, index), path = self._read(run, "metrics.csv", _metric_index)
        f = read_fraction(run, fraction)
        if len(ckpts) == 0:
            raise DataError(f"{path}: no checkpoints")
        i = len(ckpts) - 1 if f == 1 else int(np.argmin(np.abs(fracs - float(f))))
        if f != 1 and abs(fracs[i] - float(f)) > 0.5 / len(ckpts) + 1e-9:
            raise DataError(
                f"{path}: no checkpoint at fraction {f} (nearest {fracs[i]:.4f}); "
                f"checkpoints are at {np.round(fracs, 4).tolist()}"
            )
        return int(ckpts[i]), int(steps[i]), index, path

    def metric_at(self, run: Run, dataset: str, metric: str, fraction: Fraction | float = 1) -> float:
        """``metric`` (0-1) of ``run`` on ``dataset`` at ``fraction`` of the full budget."""
        ckpt, _, index, path = self._checkpoint(run, fraction)
        if (row := index.get((ckpt, dataset))) is None:
            raise DataError(f"{path}: no row for dataset {dataset!r} at checkpoint {ckpt}")
        return float(row[metric])

    def checkpoint_step(self, run: Run, fraction: Fraction | float = 1) -> int:
        return self._checkpoint(run, fraction)[1]

    def predictions(self, run: Run, datasets: list[str], fraction: Fraction | float = 1) -> pd.DataFrame:
        """Rows of ``predictions.parquet`` for ``datasets`` at the checkpoint at ``fraction``,
        sorted by (dataset, uid); columns dataset, uid, label, prob_0..prob_{C-1}."""
        step = self.checkpoint_step(run, fraction)
        return self._read(run, "predictions.parquet", _predictions_at, step, tuple(sorted(set(datasets))))[0].copy()

    def forward_flops_per_epoch(self, task: str, model: str, seed: int, padded: bool = True) -> float:
        """Forward FLOPs of one epoch of ``model``'s ERM run (Table 4; padded tokens as the paper)."""
        run, key = ref_run(task, model, seed), "forward_per_epoch" if padded else "forward_per_epoch_real"
        try:
            value = float(self.record(run)["flops"][key])
        except (KeyError, TypeError, ValueError):
            value = float("nan")
        if not value > 0:
            raise DataError(f"{self.run_path(run, 'run.json')}: field flops.{key} must be a number > 0, got {value}")
        return value

    # --- cells ----------------------------------------------------------------------------
    def seed_values(self, runs, datasets: list[str], metric: str, fraction: Fraction | float = 1) -> SeedValues:
        why = {r: self.failure_at(r, fraction) for r in runs}
        ok, bad = [r for r in runs if not why[r]], [r for r in runs if why[r]]
        values = {d: [self.metric_at(r, d, metric, fraction) for r in ok] for d in datasets}
        return SeedValues(values, [r.seed for r in ok], [r.seed for r in bad], [why[r] for r in bad])

    # --- data maps ------------------------------------------------------------------------
    def datamap(self, task: str, ref: str, seed: int) -> pd.DataFrame | None:
        """The data map, or None when its reference run failed (see ``datamap_failure``)."""
        return None if self.datamap_failure(task, ref, seed) else datamap.read(self.layout.datamap(task, ref, seed))

    def datamap_failure(self, task: str, ref: str, seed: int) -> str:
        path = Path(self.layout.datamap(task, ref, seed))
        if not path.is_file():
            raise DataError(f"data map file not found: {path}")
        return str(parquet_meta(path, "data map").get("failed") or "")

    def dynamics(self, run: Run):
        return datamap.load_dynamics(self.run_path(run, "dynamics.npz"))
