"""Small synthetic run outputs with known values, written per docs/ARCHITECTURE.md.

``write_results(root, cfg)`` writes, for every run in ``grid.all_runs(cfg)``, the four run
files (metrics.csv, predictions.parquet, dynamics.npz, run.json) and every data map of
``grid.all_datamaps(cfg)``. Values are pure functions of the run, so tests compute the expected
table / figure numbers independently:

- ``metric_value(run, dataset, metric, f)``: the score at fraction ``f`` of the run's own
  schedule (``BASE_OVERRIDES`` pins some runs; failed runs score 0).
- ``flops(model, task)``: the paper's Table 4 PFLOPs * 1e15 (1e19 for models it lacks).
- predictions: ``N_EVAL`` instances per eval set, each correct with probability ``metric_value``
  (probability 0.7 on the predicted class).
"""

from __future__ import annotations

import functools
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ftft import config, grid

REPO = Path(__file__).resolve().parents[1]
N_EVAL = 12
N_TRAIN = 60
EPOCHS = 4
PAPER_T4 = pd.read_csv(REPO / "src" / "ftft" / "paper" / "table4.csv")
PFLOPS = {(r.model, r.task): float(r.pflops) for r in PAPER_T4.itertuples()}

# (task, model, method, ref) -> base score; TinyBERT data maps make every transfer fail
BASE_OVERRIDES = {
    ("nli", "deberta-v3-large", "dm", "tinybert"): 0.30,
    ("nli", "deberta-v3-large", "dm", "electra-small"): 0.95,
    ("nli", "electra-large", "erm", "none"): 0.70,
    ("nli", "electra-large", "dm", "electra-large"): 0.71,
    ("nli", "electra-large", "dm", "electra-small"): 0.72,
    ("nli", "electra-large", "dm", "electra-base"): 0.60,
    ("hsd", "deberta-v3-large", "dm", "tinybert"): 0.30,
}


def tiny_config(seeds=(0, 1, 2), **overrides) -> dict:
    """The demo config (paper grid on demo tasks) with 3 seeds and few bootstrap samples."""
    ov = {"seeds": list(seeds), "significance": {"samples": 200, "seed": 0}}
    config.deep_update(ov, overrides)
    return config.load(REPO / "workflow_config.yaml", REPO / "config" / "demo.yaml", overrides=ov)


def _h(*parts) -> float:
    """Stable hash of the parts in [0, 1)."""
    return zlib.crc32("|".join(map(str, parts)).encode()) / 2**32


def base_score(run: grid.Run, dataset: str) -> float:
    key = (run.task, run.model, run.method, run.ref)
    if key in BASE_OVERRIDES and run.budget == grid.FULL:
        return BASE_OVERRIDES[key] + 0.02 * _h(dataset)
    return 0.45 + 0.4 * _h(run.task, run.model, run.method, run.ref, run.budget, dataset)


def metric_value(run: grid.Run, dataset: str, metric: str, f: float, failed: bool = False) -> float:
    """Score (0-1) at fraction ``f`` of the run's own schedule."""
    if failed:
        return 0.0
    curve = 1.0 - 0.4 * (1.0 - f) ** 2 if run.method == "erm" else 1.0 - 0.1 * (1.0 - f) ** 2
    v = base_score(run, dataset) * curve + 0.01 * run.seed
    return v - 0.02 if metric == "macro_f1" else v


def flops(model: str, task: str) -> float:
    return PFLOPS.get((model, task), 1e4) * 1e15


def checkpoints(cfg: dict, run: grid.Run) -> list[tuple[int, int, float]]:
    """(checkpoint, step, fraction) as the engine writes them."""
    steps = run.steps(cfg)
    k = cfg["tasks"][run.task]["checkpoints"]
    return [(i, round(i * steps / k), round(i * steps / k) / steps) for i in range(1, k + 1)]


@functools.cache
def eval_labels(task: str, dataset: str, c: int) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(f"{task}/{dataset}".encode()))
    return rng.integers(0, c, N_EVAL)


def write_run(root: Path, cfg: dict, run: grid.Run, failed: bool = False) -> None:
    d = root / run.path
    d.mkdir(parents=True, exist_ok=True)
    task = cfg["tasks"][run.task]
    sets = grid.task_eval_sets(cfg, run.task)
    c = len(task["labels"])
    rng = np.random.default_rng(zlib.crc32(run.path.encode()))
    mrows = []
    cols: dict[str, list] = {"step": [], "dataset": [], "uid": [], "label": [], "pred": []}
    for ck, step, f in checkpoints(cfg, run):
        for ds in sets:
            acc = metric_value(run, ds, "accuracy", f, failed)
            mrows.append(
                {
                    "step": step,
                    "checkpoint": ck,
                    "fraction": f,
                    "dataset": ds,
                    "role": "id" if ds == sets[0] else "ood",
                    "n": N_EVAL,
                    "accuracy": acc,
                    "macro_f1": metric_value(run, ds, "macro_f1", f, failed),
                }
            )
            labels = eval_labels(run.task, ds, c)
            correct = rng.random(N_EVAL) < acc
            wrong = (labels + rng.integers(1, c, N_EVAL)) % c
            cols["step"] += [step] * N_EVAL
            cols["dataset"] += [ds] * N_EVAL
            cols["uid"] += [f"{ds}-{i}" for i in range(N_EVAL)]
            cols["label"].append(labels)
            cols["pred"].append(np.where(correct, labels, wrong))
    pd.DataFrame(mrows).to_csv(d / "metrics.csv", index=False)
    pred = np.concatenate(cols.pop("pred"))
    cols["label"] = np.concatenate(cols["label"])
    probs = np.full((len(pred), c), 0.3 / (c - 1), np.float32)
    probs[np.arange(len(pred)), pred] = 0.7
    frame = pd.DataFrame(cols | {f"prob_{j}": probs[:, j] for j in range(c)})
    frame.to_parquet(d / "predictions.parquet", index=False)
    write_dynamics(d / "dynamics.npz", run, c)
    fl = flops(run.model, run.task)
    record = {
        "run": {k: getattr(run, k) for k in ("task", "model", "method", "ref", "budget", "seed")},
        "status": "failed" if failed else "ok",
        "failure_reason": "final ID score <= majority baseline" if failed else None,
        "steps": run.steps(cfg),
        "checkpoints": task["checkpoints"],
        "epochs": EPOCHS,
        "n_train": N_TRAIN,
        "flops": {"forward_per_epoch": fl, "forward_total": fl * EPOCHS, "train_total": 3 * fl * EPOCHS},
    }
    (d / "run.json").write_text(json.dumps(record))


def hard_ids(n: int = N_TRAIN) -> np.ndarray:
    """Instances with a low p_true throughout (10%)."""
    return np.arange(n) % 10 == 0


def write_dynamics(path: Path, run: grid.Run, c: int) -> None:
    rng = np.random.default_rng(zlib.crc32(run.path.encode()))
    labels = rng.integers(0, c, N_TRAIN)
    hard = hard_ids()
    probs = np.zeros((EPOCHS, N_TRAIN, c), np.float32)
    for e in range(EPOCHS):
        pt = np.where(hard, 0.05 + 0.05 * e, 0.5 + 0.1 * e) + rng.uniform(-0.02, 0.02, N_TRAIN)
        probs[e] = ((1 - pt) / (c - 1))[:, None]
        probs[e, np.arange(N_TRAIN), labels] = pt
    np.savez(
        path,
        uids=np.array([f"tr-{i}" for i in range(N_TRAIN)]),
        labels=labels.astype(np.int64),
        probs=probs.astype(np.float16),
        seen=np.ones((EPOCHS, N_TRAIN), bool),
        complete_epochs=np.int64(EPOCHS),
    )


def datamap_frame(task: str, ref: str, seed: int, c: int) -> pd.DataFrame:
    base = np.random.default_rng(zlib.crc32(f"{task}/{ref}".encode()))
    noise = np.random.default_rng(zlib.crc32(f"{task}/{ref}/{seed}".encode()))
    conf = np.clip(base.random(N_TRAIN) + 0.1 * noise.standard_normal(N_TRAIN), 0, 1)
    var = np.clip(base.random(N_TRAIN) * 0.5 + 0.05 * noise.standard_normal(N_TRAIN), 0, 0.5)
    return pd.DataFrame(
        {
            "uid": [f"tr-{i}" for i in range(N_TRAIN)],
            "label": base.integers(0, c, N_TRAIN),
            "confidence": conf,
            "variability": var,
            "correctness": conf.round(1),
            "forgetfulness": noise.integers(0, 3, N_TRAIN),
        }
    )


def write_results(root: str | Path, cfg: dict, failed=()) -> Path:
    root = Path(root)
    failed = set(failed)
    for run in sorted(grid.all_runs(cfg)):
        write_run(root, cfg, run, failed=run in failed)
    for task, ref, seed in sorted(grid.all_datamaps(cfg)):
        p = root / grid.datamap_path(task, ref, seed)
        p.parent.mkdir(parents=True, exist_ok=True)
        datamap_frame(task, ref, seed, len(cfg["tasks"][task]["labels"])).to_parquet(p, index=False)
    return root


# runs written with status "failed" (and score 0) by ``shared_results``
FAILED = (
    grid.Run("nli", "deberta-v3-large", "dm", "deberta-v3-small", grid.FULL, 1),
    grid.Run("nli", "electra-large", "erm", "none", grid.FULL, 2),
)
_SHARED: dict[str, Path] = {}


def shared_results(tmp_path_factory) -> Path:
    """One synthetic results folder per test session (``tiny_config()``, runs in ``FAILED`` failed)."""
    if "root" not in _SHARED:
        _SHARED["root"] = write_results(tmp_path_factory.mktemp("synthetic_results"), tiny_config(), FAILED)
    return _SHARED["root"]
