"""Data maps (Swayamdipta et al. 2020) from a run's training dynamics (``dynamics.npz``), and their analyses.

Per instance, over the *complete* epochs (a partial last pass would bias the instances it covered): confidence (mean
p_true), variability (population std of p_true), correctness (share of epochs with argmax == label). Categories at q,
the selection size and ties: docs/FIDELITY.md (assumptions 9, 10). Analyses: ``overlap_matrix`` (Figure 1a),
``ptrue_curves`` (Figure 1b), ``easy_ratio`` (Table 8), ``plot``."""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data import schema
from .errors import DataError
from .grid import Run
from .io import REBUILD, _read, atomic_path, read_json, read_parquet, write_parquet

log = logging.getLogger(__name__)

METRICS = ("confidence", "variability", "correctness")
CATEGORIES = ("ambiguous", "hard_to_learn", "easy", "category")  # columns of a categorised map
DYNAMICS_KEYS = ("uids", "labels", "probs", "seen", "complete_epochs")


@dataclass(frozen=True)
class TrainingDynamics:
    """``dynamics.npz``: uids [N], labels [N], probs [E, N, C] (float16 on disk), seen [E, N], complete_epochs."""

    uids: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    seen: np.ndarray
    complete_epochs: int
    path: str = "<memory>"
    n = property(lambda self: len(self.uids))


def load_dynamics(path: str | Path) -> TrainingDynamics:
    """Read and validate ``dynamics.npz`` (contract in docs/ARCHITECTURE.md)."""

    def load(p: Path) -> dict:
        with np.load(p, allow_pickle=False) as z:
            if missing := [k for k in DYNAMICS_KEYS if k not in z.files]:
                raise DataError(f"{p}: missing array(s) {missing}; have {sorted(z.files)}")
            return {k: z[k] for k in DYNAMICS_KEYS}

    a = _read(path, "training dynamics file", REBUILD, load, (Exception,))  # zipfile / pickle / format errors
    return _validated(a["uids"].astype(str), a["labels"].astype(np.int64), a["probs"], a["seen"].astype(bool),
                      int(a["complete_epochs"]), str(path))  # fmt: skip


def save_dynamics(path: str | Path, uids, labels, probs, seen=None, complete_epochs: int | None = None) -> None:
    """Write ``dynamics.npz`` atomically (probs as float16); ``seen`` defaults to all True, ``complete_epochs`` to
    the number of leading all-seen epochs."""
    uids, labels, probs = np.asarray(uids).astype(str), np.asarray(labels, np.int64), np.asarray(probs, np.float16)
    seen = np.ones(probs.shape[:2], dtype=bool) if seen is None else np.asarray(seen, dtype=bool)
    if complete_epochs is None:
        complete_epochs = int(np.cumprod(seen.all(axis=1)).sum())
    # a failed run (non-finite loss) has NaN dynamics: they are written, but never read back
    _validated(uids, labels, probs, seen, int(complete_epochs), str(path), allow_nan=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, uids=uids, labels=labels, probs=probs, seen=seen, complete_epochs=np.int64(complete_epochs))


def _validated(uids, labels, probs, seen, complete_epochs, path, allow_nan: bool = False) -> TrainingDynamics:
    if probs.ndim != 3:
        raise DataError(f"{path}: 'probs' must be [epochs, N, classes], got shape {probs.shape}")
    e, n, c = probs.shape
    if uids.shape != (n,) or labels.shape != (n,):
        raise DataError(f"{path}: 'uids' {uids.shape} / 'labels' {labels.shape} do not match N={n} of 'probs'")
    if seen.shape != (e, n):
        raise DataError(f"{path}: 'seen' has shape {seen.shape}, expected {(e, n)}")
    if n and (labels.min() < 0 or labels.max() >= c):
        raise DataError(f"{path}: 'labels' outside 0..{c - 1}")
    if not 0 <= complete_epochs <= e:
        raise DataError(f"{path}: 'complete_epochs'={complete_epochs} outside 0..{e}")
    if complete_epochs and not seen[:complete_epochs].all():
        bad = int(np.argmin(seen[:complete_epochs].all(axis=1)))
        raise DataError(f"{path}: 'complete_epochs'={complete_epochs} but epoch {bad + 1} has unseen instances")
    if probs.dtype.kind != "f":
        raise DataError(f"{path}: 'probs' must be floating point, got {probs.dtype}")
    if (probs < 0).any():  # NaN compares False
        raise DataError(f"{path}: 'probs' has negative values")
    if not ((finite := np.isfinite(probs).all()) or allow_nan):
        raise DataError(f"{path}: 'probs' has NaN/inf values (dynamics of a failed run?)")
    if finite and len(set(uids.tolist())) != n:
        raise DataError(f"{path}: 'uids' are not unique")
    return TrainingDynamics(uids, labels, probs, seen, complete_epochs, path)


# --------------------------------------------------------------------------- the map
def _p_true(dyn: TrainingDynamics, epochs: str | int) -> np.ndarray:
    """[E, N] probability of the gold label (float64) in every complete epoch or the first ``epochs`` (at least 2)."""
    e = dyn.complete_epochs if epochs == "complete" else int(epochs)
    if e > dyn.complete_epochs:
        raise DataError(f"{dyn.path}: asked for {e} epochs but only {dyn.complete_epochs} are complete")
    if e < 2:
        raise DataError(
            f"{dyn.path}: a data map needs at least 2 complete epochs of training dynamics, got {e} "
            f"(recorded {dyn.probs.shape[0]} epoch(s), complete_epochs={dyn.complete_epochs})"
        )
    pt = dyn.probs[:e, np.arange(dyn.n), dyn.labels].astype(np.float64)
    if not np.isfinite(pt).all():
        raise DataError(f"{dyn.path}: non-finite probabilities in the first {e} epochs")
    return pt


def compute(dyn: TrainingDynamics, epochs: str | int = "complete") -> pd.DataFrame:
    """One row per instance (uid, label and ``METRICS``, in float64) over every complete epoch or the first k."""
    pt = _p_true(dyn, epochs)  # [E, N]
    correct = dyn.probs[: len(pt)].argmax(axis=-1) == dyn.labels  # [E, N]; the first maximum on ties
    conf = pt.mean(axis=0)
    return pd.DataFrame(
        {
            "uid": dyn.uids,
            "label": dyn.labels,
            "confidence": conf,
            "variability": np.sqrt(np.einsum("en,en->n", pt - conf, pt - conf) / len(pt)),  # ddof=0
            "correctness": correct.mean(axis=0),
        }
    )


def select_extreme(values: np.ndarray, uids, k: int, largest: bool) -> np.ndarray:
    """Bool mask of the ``k`` largest (or smallest) ``values``; among equal values, smaller uid first."""
    v = np.asarray(values, dtype=np.float64)
    if np.isnan(v).any():
        raise DataError("data map has NaN values; cannot rank instances")
    mask = np.zeros(len(v), dtype=bool)
    mask[np.lexsort((np.asarray(uids).astype(str), -v if largest else v))[: max(int(k), 0)]] = True
    return mask


def category_size(n: int, q: float) -> int:
    """Size of each of the ambiguous / hard-to-learn sets: round(q * N) (half to even)."""
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q}")
    return int(round(q * n))


def categorize(df: pd.DataFrame, q: float) -> pd.DataFrame:
    """Copy of ``df`` with the bool columns ambiguous, hard_to_learn, easy at ``q`` and ``category`` naming the
    region (``ambiguous``, ``hard_to_learn``, ``ambiguous+hard_to_learn`` or ``easy``)."""
    k = category_size(len(df), q)
    amb = select_extreme(df["variability"].to_numpy(), df["uid"], k, largest=True)
    hard = select_extreme(df["confidence"].to_numpy(), df["uid"], k, largest=False)
    category = np.select([amb & hard, amb, hard], ["ambiguous+hard_to_learn", "ambiguous", "hard_to_learn"], "easy")
    return df.assign(ambiguous=amb, hard_to_learn=hard, easy=~(amb | hard), category=category)


def ambiguous_uids(df: pd.DataFrame, q: float) -> np.ndarray:
    """The round(q*N) most ambiguous uids, in the map's row order."""
    uids = df["uid"].to_numpy().astype(str)
    return uids[select_extreme(df["variability"].to_numpy(), uids, category_size(len(df), q), largest=True)]


# --------------------------------------------------------------------------- analyses
def overlap_matrix(maps: dict[str, pd.DataFrame], q: float) -> pd.DataFrame:
    """|A ∩ B| / |A| of the q-ambiguous sets A (rows), B (columns) of maps of the same training instances (Figure 1a;
    random sets of q*N share q in expectation, footnote 4)."""
    names = list(maps)
    ref = np.sort(maps[names[0]]["uid"].to_numpy().astype(str))
    for name in names[1:]:
        if not np.array_equal(np.sort(maps[name]["uid"].to_numpy().astype(str)), ref):
            raise DataError(f"data maps {names[0]!r} and {name!r} cover different training instances")
    sets = {name: set(ambiguous_uids(maps[name], q).tolist()) for name in names}
    if not all(sets.values()):
        raise ValueError("overlap of an empty set is undefined")
    mat = [[len(sets[a] & sets[b]) / len(sets[a]) for b in names] for a in names]
    return pd.DataFrame(mat, pd.Index(names, name="a"), pd.Index(names, name="b"), dtype=np.float64)


def easy_ratio(df: pd.DataFrame, q: float) -> float:
    """Fraction (0-1) of instances that are neither ambiguous nor hard-to-learn at ``q`` (Table 8)."""
    if len(df) == 0:
        raise ValueError("easy ratio of an empty data map is undefined")
    return float(categorize(df, q)["easy"].mean())


def ptrue_curves(dyn: TrainingDynamics, hard_fraction: float = 0.10, epochs: str | int = "complete") -> pd.DataFrame:
    """Median p_true per (1-based) epoch of the round(hard_fraction*N) lowest-confidence instances ("hard") and of
    the others ("rest") (Figure 1b)."""
    pt = _p_true(dyn, epochs)
    hard = select_extreme(pt.mean(axis=0), dyn.uids, category_size(dyn.n, hard_fraction), largest=False)
    groups = {"hard": hard, "rest": ~hard}
    med = {g: np.median(pt[:, m], axis=1) if m.any() else np.full(len(pt), np.nan) for g, m in groups.items()}
    wide = pd.DataFrame(med, index=pd.RangeIndex(1, len(pt) + 1, name="epoch"))
    return wide.melt(var_name="group", value_name="median_ptrue", ignore_index=False).reset_index()


def plot(
    df: pd.DataFrame, path: str | Path, title: str, q: float | None = None, max_points: int = 25_000, seed: int = 0
) -> None:
    """Cartography scatter (variability, confidence, colour = correctness) with marginal histograms, the regions
    labelled and DM's selection (the ``q`` most ambiguous) outlined; at most ``max_points`` (seeded) drawn."""
    from matplotlib.figure import Figure

    n = len(df)
    shown = df.sample(n=max_points, random_state=seed) if n > max_points else df
    fig = Figure(figsize=(8, 7), dpi=120)
    grid = fig.add_gridspec(2, 3, width_ratios=(5, 1.1, 0.25), height_ratios=(1.1, 5), wspace=0.05, hspace=0.05)
    ax = fig.add_subplot(grid[1, 0])
    top, right = fig.add_subplot(grid[0, 0], sharex=ax), fig.add_subplot(grid[1, 1], sharey=ax)
    size = 6 if len(shown) > 2000 else 16
    sc = ax.scatter(shown["variability"], shown["confidence"], c=shown["correctness"], cmap="coolwarm_r",
                    vmin=0.0, vmax=1.0, s=size, alpha=0.65, linewidths=0)  # fmt: skip
    if q is not None:
        amb = df["ambiguous"] if "ambiguous" in df.columns else categorize(df, q)["ambiguous"]
        sel = shown[amb.loc[shown.index].to_numpy(bool)]
        label = f"selected by DM: the {q:.0%} most ambiguous ({category_size(n, q):,})"
        ax.scatter(sel["variability"], sel["confidence"], s=size * 1.6, facecolors="none", edgecolors="black",
                   linewidths=0.4, alpha=0.7, label=label)  # fmt: skip
        ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
    top.hist(df["variability"], bins=30, color="0.55")
    right.hist(df["confidence"], bins=30, orientation="horizontal", color="0.55")
    top.tick_params(labelbottom=False, labelsize=8)
    right.tick_params(labelleft=False, labelsize=8)
    fig.colorbar(sc, cax=fig.add_subplot(grid[1, 2])).set_label("correctness", fontsize=11)
    ax.set(ylim=(-0.02, 1.02), xlim=(0.0, None))
    ax.set_xlabel("variability", fontsize=12)
    ax.set_ylabel("confidence", fontsize=12)
    xmax = max(float(df["variability"].max()) if n else 0.5, 0.05)
    for text, x, y in (("easy-to-learn", 0.02, 0.95), ("ambiguous", 0.72, 0.5), ("hard-to-learn", 0.02, 0.04)):
        ax.text(x * xmax, y, text, fontsize=11, fontweight="bold", color="0.2",
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.7, "edgecolor": "0.7"})  # fmt: skip
    ax.grid(alpha=0.3)
    sub = f"{n:,} instances" + (f" ({len(shown):,} shown)" if len(shown) < n else "")
    top.set_title(f"{title}\n{sub}", fontsize=12)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")


# --------------------------------------------------------------------------- files + CLI
write = write_parquet  # a data map parquet, atomically; ``meta`` goes to the schema metadata key ``ftft``


def read(path: str | Path) -> pd.DataFrame:
    """Read a data map parquet (error naming the file if missing or malformed)."""
    df = read_parquet(path, "data map")
    if missing := [c for c in ("uid", "label", *METRICS) if c not in df.columns]:
        raise DataError(f"{path}: data map is missing column(s) {missing}")
    df["uid"] = df["uid"].astype(str)
    return df


def default_title(run_dir: str | Path) -> str:
    """'Data map: nli, reference deberta-v3-small, seed 0' for a run folder of the grid."""
    try:
        r = Run.from_path(run_dir)
    except (ValueError, IndexError):
        return f"Data map: {run_dir}"
    return f"Data map: {r.task}, reference {r.model}, seed {r.seed}"


def add_arguments(parser) -> None:
    parser.add_argument("--run-dir", required=True, help="run folder holding dynamics.npz and run.json")
    parser.add_argument("--train", default=None, help="the task's training set: the map then carries the texts")
    parser.add_argument("--out", required=True, help="data map parquet to write")
    parser.add_argument("--plot", default=None, help="optional PNG of the data map")
    parser.add_argument("--q", type=float, required=True, help="category threshold (fraction), e.g. 0.33")
    parser.add_argument("--title", default=None, help="plot title (default: task, reference model and seed)")


def run(args) -> int:
    run_dir = Path(args.run_dir)
    title = args.title or default_title(run_dir)
    record = read_json(run_dir / "run.json", "run record") if (run_dir / "run.json").is_file() else {}
    if record.get("status") == "failed":
        reason = f"{run_dir}: {record.get('failure_reason')}"
        empty = pd.DataFrame({c: [] for c in ("uid", "label", *METRICS, *CATEGORIES)})
        write(empty, args.out, {"run_dir": str(run_dir), "q": args.q, "failed": reason})
        if args.plot:  # a placeholder image saying why there is no data map
            from matplotlib.figure import Figure

            fig = Figure(figsize=(7, 3), dpi=100)
            ax = fig.subplots()
            ax.axis("off")
            text = f"{title}\n\nno data map: the reference run failed\n{reason}"
            ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
            with atomic_path(args.plot) as tmp:
                fig.savefig(tmp, format="png")
        log.warning("no data map for %s: the reference run failed (%s)", run_dir, record.get("failure_reason"))
        return 0
    dyn = load_dynamics(run_dir / "dynamics.npz")
    df = categorize(compute(dyn), args.q)
    if args.train:  # the instances' texts, joined on uid
        texts = schema.read(args.train)[0][["uid", "text_a", "text_b"]].astype({"uid": str})
        df = df.merge(texts, on="uid", how="left", validate="one_to_one")
        if df["text_a"].isna().any():
            n = df["text_a"].isna().sum()
            raise DataError(f"{args.train}: {n} uid(s) of the data map are not in the training set")
    write(df, args.out, {"run_dir": str(run_dir), "q": args.q, "epochs": dyn.complete_epochs, "n": dyn.n})
    log.info("data map of %s: %d instances, %d epochs; q=%.2f: %d ambiguous, %d hard-to-learn, easy ratio %.4f -> %s",
             run_dir, dyn.n, dyn.complete_epochs, args.q, df["ambiguous"].sum(), df["hard_to_learn"].sum(),
             df["easy"].mean(), args.out)  # fmt: skip
    if args.plot:
        plot(df, args.plot, title, q=args.q)
    return 0
