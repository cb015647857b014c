"""Small synthetic run outputs with known values, in the formats the engine writes.

``write_results(root, cfg, failed)`` writes the four run files of every run of ``grid.all_runs(cfg)`` and
the data maps of ``grid.all_datamaps(cfg)``. Every value is a pure function of the run, so a test computes
the expected table / figure / claim numbers on its own from the functions below:

- ``metric_value(run, dataset, metric, f)``: the score (0-1) at fraction ``f`` of the run's own
  schedule: ``(STRENGTH[model] + method effect) * curve(f) + 0.003 * seed``; ``curve`` rises
  fast for DM-like methods (``1 - 0.05 (1-f)^2``) and slowly for ERM (``1 - 0.4 (1-f)^2``), so
  DM learns faster (claim 5); ``DM_GAIN`` gives each transfer's OOD effect (TinyBERT and
  ELECTRA-Base -> ELECTRA-Large fail: the paper's gray rows; claims 1-5 hold).
- ``value_at``: what a cell at a fraction of the *full* budget reads (the nearest checkpoint written).
- ``flops(model, task, padded)``: paper Table 4 (x 1e12) padded; the real count is ``REAL_SHARE[model]`` of it.
- ``correct`` / ``predicted``: instance i of an eval set is correct iff ``u_i < accuracy`` (``u`` a
  stratified uniform per (task, dataset)): better systems are right on a superset of instances, so
  MultiBootstrap p-values are sharp; ``system_arrays``: the (preds, labels) a test feeds to ``ftft.stats``.
- ``datamap_frame``: the easy ratio rises with the reference's transfer gain (claim 4).
- ``write_needed`` / ``link_needed``: only what a ``grid.Needs`` declares (checks each aggregate's inputs).
- Failures: runs in ``failed`` are trained-and-failed (low scores, FLOPs kept); runs whose reference
  failed write no outputs and a failed reference's data map is empty, as the engine and ``ftft.datamap`` do.
"""

import functools
import json
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from ftft import config, datamap, grid
from ftft.layout import Layout

REPO = Path(__file__).resolve().parents[1]
N_EVAL = 40
N_TRAIN = 300
EPOCHS = 4
FAILED_SCORE = 0.2
PAPER_T4 = pd.read_csv(REPO / "src" / "ftft" / "paper" / "table4.csv")
PFLOPS = {(r.model, r.task): float(r.pflops) for r in PAPER_T4.itertuples()}

STRENGTH = {
    "tinybert": 0.40,
    "electra-small": 0.55,
    "electra-base": 0.62,
    "electra-large": 0.70,
    "deberta-v3-small": 0.60,
    "deberta-v3-base": 0.66,
    "deberta-v3-large": 0.72,
    "bert-large": 0.64,
    "roberta-large": 0.68,
}
ID_BONUS = 0.15
# OOD gain of DM over ERM of the main model, per (main, ref); distinct per reference so that the
# easy ratio (which follows the gain) and the gain have the same ranking
DM_GAIN = {
    "tinybert": -0.10,
    "electra-small": 0.010,
    "electra-base": 0.020,
    "bert-large": 0.025,
    "electra-large": 0.030,
    "roberta-large": 0.035,
    "deberta-v3-small": 0.0496,
    "deberta-v3-base": 0.0498,
    "deberta-v3-large": 0.050,
}
# into ELECTRA-Large: ELECTRA-Base fails (Table 2's in-table ERM baseline), ELECTRA-Small helps (Table 9)
DM_GAIN_OVERRIDES = {
    ("electra-large", "electra-small"): 0.06,
    ("electra-large", "electra-base"): -0.05,
    ("electra-large", "electra-large"): 0.05,
}
GAIN_RANK = {r: i for i, r in enumerate(sorted(DM_GAIN, key=DM_GAIN.get))}  # 0 = worst transfer
DM_ID_EFFECT = -0.004
OTHER_EFFECT = {"random": (-0.02, -0.02), "jtt": (0.02, -0.01), "poe": (0.015, -0.005)}  # (ood, id)
REAL_SHARE = {m: 0.6 + 0.03 * i for i, m in enumerate(STRENGTH)}


def tiny_config(seeds=(0, 1, 2), **overrides) -> dict:
    """The demo config (paper grid on demo tasks) with 3 seeds and few bootstrap samples."""
    ov = {"seeds": list(seeds), "significance": {"samples": 200, "seed": 0}, "claims": {"samples": 200}}
    config.deep_update(ov, overrides)
    return config.load(REPO / "workflow_config.yaml", REPO / "config" / "demo.yaml", overrides=ov)


def _h(*parts) -> float:
    """Stable hash of the parts in [0, 1)."""
    return zlib.crc32("|".join(map(str, parts)).encode()) / 2**32


def base_score(run: grid.Run, dataset: str) -> float:
    """Full-budget score of the run's kind (before the seed offset)."""
    iden = dataset in ("mnli", "cad")
    v = STRENGTH[run.model] + (ID_BONUS if iden else 0.0) + 0.04 * _h(run.task, dataset) - 0.02
    if run.method == "dm":
        v += DM_ID_EFFECT if iden else DM_GAIN_OVERRIDES.get((run.model, run.ref), DM_GAIN[run.ref])
    elif run.method in OTHER_EFFECT:
        v += OTHER_EFFECT[run.method][1 if iden else 0]
    return v + 0.002 * _h(run.task, run.model, run.method, run.ref, dataset)  # no exact ties


def curve(run: grid.Run, g: float) -> float:
    """Share of the full-budget score reached at fraction ``g`` of the full budget."""
    return 1.0 - (0.4 if run.method == "erm" else 0.05) * (1.0 - g) ** 2


def metric_value(run: grid.Run, dataset: str, metric: str, f: float, failed: bool = False) -> float:
    """Score (0-1) at fraction ``f`` of the run's *own* schedule."""
    if failed:
        return FAILED_SCORE
    if run.budget == grid.FULL:
        v = base_score(run, dataset) * curve(run, f)
    else:  # a limited run: its schedule completes at its budget; a bit below the full run there
        v = base_score(run, dataset) * curve(run, float(run.fraction)) * (0.97 + 0.03 * f) + 0.01
    v += 0.003 * run.seed
    return v - 0.02 if metric == "macro_f1" else v


def flops(model: str, task: str, padded: bool = True) -> float:
    f = PFLOPS.get((model, task), 1e4) * 1e12
    return f if padded else f * REAL_SHARE[model]


def checkpoints(cfg: dict, run: grid.Run) -> list[tuple[int, int, float]]:
    """(checkpoint, step, fraction of the run's own schedule) as the engine writes them."""
    steps = run.steps(cfg)
    k = cfg["tasks"][run.task]["checkpoints"]
    return [(i, round(i * steps / k), round(i * steps / k) / steps) for i in range(1, k + 1)]


def own_fraction(cfg: dict, run: grid.Run, fraction) -> float:
    """Fraction of the run's own schedule of the checkpoint a cell at ``fraction`` of the full budget reads."""
    f = Fraction(fraction).limit_denominator(10_000) / run.fraction
    fr = [c[2] for c in checkpoints(cfg, run)]
    return fr[-1] if f == 1 else min(fr, key=lambda x: abs(x - float(f)))


def value_at(cfg: dict, run: grid.Run, dataset: str, metric: str, fraction=1) -> float:
    return metric_value(run, dataset, metric, own_fraction(cfg, run, fraction))


def expected_cell(cfg: dict, runs, dataset: str, metric: str, fraction=1, failed=()) -> tuple[float, float, int]:
    """(mean %, sample std %, number of ok seeds) over the runs not in ``failed``."""
    vals = [100 * value_at(cfg, r, dataset, metric, fraction) for r in runs if r not in failed]
    if not vals:
        return float("nan"), float("nan"), 0
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"), len(vals)


@functools.cache
def uids(dataset: str) -> list[str]:
    return [f"{dataset}-{i:03d}" for i in range(N_EVAL)]


@functools.cache
def eval_labels(task: str, dataset: str, c: int) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(f"{task}/{dataset}".encode()))
    return rng.integers(0, c, N_EVAL)


@functools.cache
def _u(task: str, dataset: str) -> np.ndarray:
    """A stratified uniform per instance: any score interval holds its share of the instances (+-1)."""
    rng = np.random.default_rng(zlib.crc32(f"u/{task}/{dataset}".encode()))
    return (rng.permutation(N_EVAL) + 0.5) / N_EVAL


def correct(run: grid.Run, dataset: str, f: float, failed: bool = False) -> np.ndarray:
    """Which of the dataset's instances (uid order) the run gets right at own fraction ``f``."""
    return _u(run.task, dataset) < metric_value(run, dataset, "accuracy", f, failed)


def predicted(run: grid.Run, dataset: str, f: float, c: int, failed: bool = False) -> np.ndarray:
    labels = eval_labels(run.task, dataset, c)
    wrong = (labels + 1 + np.arange(N_EVAL) % (c - 1)) % c
    return np.where(correct(run, dataset, f, failed), labels, wrong)


def system_arrays(cfg: dict, runs, datasets, fraction=1, failed=()):
    """(preds [S_ok, N], labels [N]) of the ok runs, instances in (dataset, uid) order."""
    c = len(cfg["tasks"][runs[0].task]["labels"])
    sets = sorted(datasets)
    labels = np.concatenate([eval_labels(runs[0].task, d, c) for d in sets])
    preds = [
        np.concatenate([predicted(r, d, own_fraction(cfg, r, fraction), c) for d in sets])
        for r in runs
        if r not in failed
    ]
    return (np.stack(preds) if preds else None), labels


# --------------------------------------------------------------------------- writing


METRIC_COLUMNS = ["step", "checkpoint", "fraction", "dataset", "role", "n", "accuracy", "macro_f1", "train_loss"]


def write_run(
    root: Path, cfg: dict, run: grid.Run, failed: str | None = None, files=("all",), pred_checkpoints: str = "all"
) -> None:
    """The run's files; ``failed``: its failure reason (a "reference failed: ..." run trains nothing).

    ``pred_checkpoints="final"`` writes predictions of the last checkpoint only (faster; enough
    for everything but the claims, which read halted checkpoints)."""
    d = Path(Layout(root).run_dir(run))
    d.mkdir(parents=True, exist_ok=True)
    c = len(cfg["tasks"][run.task]["labels"])
    record = dict(run=run.fields(), status="failed" if failed else "ok", failure_reason=failed, steps=run.steps(cfg))
    record["checkpoints"] = cfg["tasks"][run.task]["checkpoints"]
    want_preds = "all" in files or "predictions" in files
    nothing = bool(failed and failed.startswith("reference failed"))
    sets, bad, ckpts = grid.task_eval_sets(cfg, run.task), failed is not None, [] if nothing else checkpoints(cfg, run)
    scores = {
        (f, ds): [metric_value(run, ds, m, f, bad) for m in ("accuracy", "macro_f1")]
        for _, _, f in ckpts
        for ds in sets
    }
    role = {ds: "id" if ds == sets[0] else "ood" for ds in sets}
    mrows = [
        (step, ck, f, ds, role[ds], N_EVAL, *scores[(f, ds)], 1.0 - 0.5 * f) for ck, step, f in ckpts for ds in sets
    ]
    pd.DataFrame(mrows, columns=METRIC_COLUMNS).to_csv(d / "metrics.csv", index=False)
    if want_preds:
        frames = [
            pd.DataFrame(
                {"step": step, "dataset": ds, "uid": uids(ds), "label": eval_labels(run.task, ds, c)}
                | {"pred": predicted(run, ds, f, c, bad)}
            )
            for ck, step, f in ckpts
            if pred_checkpoints == "all" or ck == ckpts[-1][0]
            for ds in sets
        ]
        empty = pd.DataFrame(columns=["step", "dataset", "uid", "label", "pred"])  # a run that trained nothing
        pred = pd.concat(frames, ignore_index=True) if frames else empty
        probs = np.full((len(pred), c), 0.3 / (c - 1), np.float32)
        probs[np.arange(len(pred)), pred.pop("pred").to_numpy(np.int64)] = 0.7
        pred.assign(**{f"prob_{j}": probs[:, j] for j in range(c)}).to_parquet(d / "predictions.parquet", index=False)
    if nothing:
        (d / "run.json").write_text(json.dumps(record | {"steps_done": 0, "final": None}))
        return
    if "all" in files or "dynamics" in files:
        write_dynamics(d / "dynamics.npz", run, c)
    fl, real = flops(run.model, run.task), flops(run.model, run.task, padded=False)
    per_epoch = {"forward_per_epoch": fl, "forward_per_epoch_real": real}
    totals = {"forward_total": fl * EPOCHS, "forward_total_real": real * EPOCHS, "train_total": 3 * fl * EPOCHS}
    record |= {"steps_done": run.steps(cfg), "epochs": EPOCHS, "n_train": N_TRAIN, "flops": per_epoch | totals}
    (d / "run.json").write_text(json.dumps(record))


def write_dynamics(path: Path, run: grid.Run, c: int) -> None:
    rng = np.random.default_rng(zlib.crc32(run.path.encode()))
    labels = rng.integers(0, c, N_TRAIN)
    hard = np.arange(N_TRAIN) % 10 == 0  # 10% of the instances with a low p_true throughout
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
    """A data map whose confidence falls with variability more strongly the better the reference
    transfers (rank in ``DM_GAIN``): more overlap of ambiguous and hard-to-learn, a higher easy ratio."""
    base = np.random.default_rng(zlib.crc32(f"{task}".encode()))
    noise = np.random.default_rng(zlib.crc32(f"{task}/{ref}/{seed}".encode()))
    rho = 0.1 * GAIN_RANK[ref]
    var = 0.02 + 0.45 * base.random(N_TRAIN) + noise.uniform(0, 0.02, N_TRAIN)  # in (0.02, 0.49): no ties
    indep = base.random(N_TRAIN)
    conf = 0.02 + 0.94 * (rho * (1 - 2 * var) + (1 - rho) * indep) + noise.uniform(0, 0.02, N_TRAIN)
    return pd.DataFrame(
        {
            "uid": [f"tr-{i}" for i in range(N_TRAIN)],
            "label": base.integers(0, c, N_TRAIN),
            "confidence": conf,
            "variability": var,
            "correctness": conf.round(1),
        }
    )


def write_datamap(root: Path, cfg: dict, task: str, ref: str, seed: int, failed: str | None = None) -> Path:
    path = Path(Layout(root).datamap(task, ref, seed))
    if failed:  # as ftft.datamap.run writes it for a failed reference run
        cols = ("uid", "label", *datamap.METRICS, *datamap.CATEGORIES)
        datamap.write(pd.DataFrame({k: [] for k in cols}), path, {"q": cfg["q"], "failed": failed})
    else:
        datamap.write(datamap_frame(task, ref, seed, len(cfg["tasks"][task]["labels"])), path, {"q": cfg["q"]})
    return path


def failure_reasons(cfg: dict, runs, failed) -> dict[grid.Run, str]:
    """Run -> failure reason, for the ``failed`` runs and the runs whose reference is one of them."""
    failed = set(failed)
    out = {r: "final ID score <= majority baseline" for r in runs if r in failed}
    for r in runs:
        if r not in out:
            deps = [d for d in grid.run_dependencies(cfg, r) if d in failed]
            if deps:
                out[r] = f"reference failed: {deps[0].path}: final ID score <= majority baseline"
    return out


def write_results(root: str | Path, cfg: dict, failed=(), pred_checkpoints: str = "all") -> Path:
    root = Path(root)
    runs = sorted(grid.all_runs(cfg))
    why = failure_reasons(cfg, runs, failed)
    for run in runs:
        write_run(root, cfg, run, why.get(run), pred_checkpoints=pred_checkpoints)
    for task, ref, seed in sorted(grid.all_datamaps(cfg)):
        r = grid.ref_run(task, ref, seed)
        write_datamap(root, cfg, task, ref, seed, why.get(r) and f"{r.path}: {why[r]}")
    return root


def write_needed(root: str | Path, cfg: dict, needs: grid.Needs, failed=()) -> Path:
    """Only what ``needs`` declares: run.json + metrics.csv, predictions / dynamics where named."""
    root = Path(root)
    why = failure_reasons(cfg, sorted(grid.all_runs(cfg) | needs.runs), failed)
    for run in sorted(needs.runs | needs.predictions | needs.dynamics):
        files = [k for k, s in (("predictions", needs.predictions), ("dynamics", needs.dynamics)) if run in s]
        write_run(root, cfg, run, why.get(run), files=files or ("none",))
    for task, ref, seed in sorted(needs.datamaps):
        r = grid.ref_run(task, ref, seed)
        write_datamap(root, cfg, task, ref, seed, why.get(r) and f"{r.path}: {why[r]}")
    return root


# --------------------------------------------------------------------------- the shared folder

# runs written as failed by ``shared_results`` (their dependents fail with "reference failed")
FAILED = (
    grid.Run("nli", "deberta-v3-large", "dm", "deberta-v3-small", grid.FULL, 1),  # Table 1 + FTFT row lose seed 1
    grid.Run("nli", "electra-large", "erm", "none", grid.FULL, 2),  # Table 2/9 ERM, Figure 2 ERM
    *(grid.Run("hsd", "deberta-v3-large", "jtt", "deberta-v3-large", grid.FULL, s) for s in (0, 1, 2)),  # empty
    grid.ref_run("hsd", "electra-small", 1),  # a failed reference: data map hsd/electra-small/seed1
)


def shared_config() -> dict:
    """``tiny_config()`` with the appendix A.1 runs on (a superset of the paper grid)."""
    return tiny_config(limiting={"enabled": True})


def shared_failed(cfg: dict) -> dict[grid.Run, str]:
    """Every failed run of the shared folder (direct and through a failed reference) -> reason."""
    return failure_reasons(cfg, sorted(grid.all_runs(cfg)), FAILED)


_SHARED: dict[str, Path] = {}


def shared_results(tmp_path_factory) -> Path:
    """One synthetic results folder per test session (runs of ``shared_config()``, ``FAILED`` failed;
    predictions of the final checkpoints only)."""
    if "root" not in _SHARED:
        root = tmp_path_factory.mktemp("synthetic_results")
        _SHARED["root"] = write_results(root, shared_config(), FAILED, pred_checkpoints="final")
    return _SHARED["root"]


_BUILT: dict[str, dict] = {}


def built_tables(root: Path, cfg: dict) -> dict:
    """Every table of ``cfg`` written once under ``root``/tables (in the paper's order: 2 and 7
    before 8, which reads their CSV files); returns tid -> the written frame."""
    from ftft import tables

    key = str(root)
    if key not in _BUILT:
        layout = Layout(root)
        _BUILT[key] = {tid: tables.write(cfg, root, tid, layout.table_prefix(tid)) for tid in tables.table_ids(cfg)}
    return _BUILT[key]


def read_table_csv(root: Path, tid: str) -> pd.DataFrame:
    """A written table CSV with the key columns as strings (as ``ftft compare`` reads it)."""
    from ftft import tables

    path = Layout(root).table(tid, "csv")
    cols = pd.read_csv(path, nrows=0).columns
    text_cols = [*tables.KEYS, "failed_seeds", "failure_reasons", "mark_reason", "group"]
    na = {c: ["", "nan", "NaN", "<NA>"] for c in cols if c not in text_cols}
    return pd.read_csv(path, dtype={k: str for k in text_cols if k in cols}, keep_default_na=False, na_values=na)


def md_blocks(md: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Markdown table blocks of a rendered view: title -> (header cells, rows of cells); the
    title is the bold line above the table ("" for a view without block titles)."""
    out, title = {}, ""
    for chunk in md.split("\n\n"):
        lines = chunk.splitlines()
        if chunk.startswith("**") and chunk.endswith("**"):
            title = chunk.strip("*")
        elif len(lines) > 1 and lines[0].startswith("| ") and lines[1].startswith("|---"):
            cells = [[c.strip() for c in ln.strip()[1:-1].split("|")] for ln in lines if not ln.startswith("|---")]
            out[title] = (cells[0], cells[1:])
    return out


def link_needed(src: Path, dst: Path, needs: grid.Needs) -> Path:
    """Symlinks in ``dst`` to only the files of ``src`` that ``needs`` names (what a Snakemake job
    declares): run.json + metrics.csv of ``needs.runs``, predictions / dynamics where named, data maps."""
    lay_s, lay_d = Layout(src), Layout(dst)
    files = {n: needs.runs | needs.predictions | needs.dynamics for n in ("run.json", "metrics.csv")}
    files |= {"predictions.parquet": needs.predictions, "dynamics.npz": needs.dynamics}
    pairs = [(lay_s.run_file(n, r), lay_d.run_file(n, r)) for n, runs in files.items() for r in runs]
    pairs += [(lay_s.datamap(*m), lay_d.datamap(*m)) for m in needs.datamaps]
    pairs += [(lay_s.table(t, "csv"), lay_d.table(t, "csv")) for t in needs.tables]
    for a, b in pairs:
        Path(b).parent.mkdir(parents=True, exist_ok=True)
        if Path(a).exists():  # (a reference-failure run has no dynamics)
            Path(b).symlink_to(Path(a).resolve())
    return dst
