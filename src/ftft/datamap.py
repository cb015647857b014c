"""Data maps (Swayamdipta et al. 2020) from a run's training dynamics, and the paper's analyses.

A data map summarises, per training instance, the probability of the gold label (``p_true``)
that the model assigned in the training forward pass of each epoch (``dynamics.npz``, see
docs/ARCHITECTURE.md):

  confidence     mean of p_true over epochs
  variability    standard deviation of p_true over epochs (population std, ddof=0)
  correctness    fraction of epochs in which argmax(probs) == label
  forgetfulness  number of correct -> incorrect transitions between consecutive epochs
                 (forgetting events, Toneva et al. 2019)

Only *complete* epochs are used: the last pass over the training set may be partial (the
step budget rarely ends on an epoch boundary) and a partial epoch would bias the statistics
of the instances it happened to cover.

Categories at a threshold q (``categorize``): ``ambiguous`` = the round(q*N) instances with the
highest variability, ``hard_to_learn`` = the round(q*N) with the lowest confidence, ``easy`` =
neither. An instance can be both ambiguous and hard-to-learn (§2 of the paper), so the easy
share is between 1 - 2q and 1 - q (Table 8).

Analyses used by the figures and tables: ``overlap`` / ``overlap_matrix`` (Figure 1a),
``ptrue_curves`` (Figure 1b), ``easy_ratio`` (Table 8), ``plot`` (data-map scatter).

Everything is vectorised over instances (no per-instance Python): an MNLI-size map
(392,702 instances x 15 epochs x 3 classes) is built in well under a second
(benchmarks/datamap.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .io import atomic_path, read_json, read_parquet, unreadable, write_parquet

log = logging.getLogger(__name__)

METRICS = ("confidence", "variability", "correctness", "forgetfulness")
CATEGORIES = ("ambiguous", "hard_to_learn", "easy", "category")  # columns of a categorised map
DYNAMICS_KEYS = ("uids", "labels", "probs", "seen", "complete_epochs")


# --------------------------------------------------------------------------- dynamics file


@dataclass(frozen=True)
class TrainingDynamics:
    """Training dynamics of one run (the arrays of ``dynamics.npz``).

    uids [N] str, labels [N] int64, probs [E, N, C] (float16 on disk), seen [E, N] bool,
    complete_epochs: number of leading epochs in which every instance was seen.
    """

    uids: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    seen: np.ndarray
    complete_epochs: int
    path: str = "<memory>"

    @property
    def n(self) -> int:
        return len(self.uids)

    def p_true(self, epochs: int | None = None) -> np.ndarray:
        """[E', N] probability of the gold label in the first ``epochs`` epochs (default: all complete)."""
        e = self.complete_epochs if epochs is None else epochs
        probs = self.probs[:e]
        return probs[:, np.arange(self.n), self.labels]

    def correct(self, epochs: int | None = None) -> np.ndarray:
        """[E', N] bool: argmax(probs) == label (first maximum on ties)."""
        e = self.complete_epochs if epochs is None else epochs
        return self.probs[:e].argmax(axis=-1) == self.labels[None, :]


def load_dynamics(path: str | Path) -> TrainingDynamics:
    """Read and validate ``dynamics.npz`` (contract in docs/ARCHITECTURE.md)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"training dynamics file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in DYNAMICS_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {missing}; have {sorted(z.files)}")
            arrays = {k: z[k] for k in DYNAMICS_KEYS}
    except DataError:
        raise
    except Exception as exc:  # zipfile / pickle / format errors
        raise unreadable(path, "training dynamics file", exc) from exc
    return _validated(
        uids=arrays["uids"].astype(str),
        labels=arrays["labels"].astype(np.int64),
        probs=arrays["probs"],
        seen=arrays["seen"].astype(bool),
        complete_epochs=int(arrays["complete_epochs"]),
        path=str(path),
    )


def save_dynamics(
    path: str | Path,
    uids,
    labels,
    probs,
    seen=None,
    complete_epochs: int | None = None,
) -> None:
    """Write ``dynamics.npz`` atomically in the contract's dtypes (probs as float16).

    ``seen`` defaults to all True and ``complete_epochs`` to the number of leading epochs
    whose ``seen`` row is all True.
    """
    uids = np.asarray(uids).astype(str)
    probs = np.asarray(probs, dtype=np.float16)
    seen = np.ones(probs.shape[:2], dtype=bool) if seen is None else np.asarray(seen, dtype=bool)
    if complete_epochs is None:
        full = seen.all(axis=1)
        complete_epochs = int(np.argmin(full)) if not full.all() else int(len(full))
    # a failed run (non-finite loss) has NaN dynamics: they are written, but never read back
    _validated(uids, np.asarray(labels, dtype=np.int64), probs, seen, int(complete_epochs), str(path), allow_nan=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                uids=uids,
                labels=np.asarray(labels, dtype=np.int64),
                probs=probs,
                seen=seen,
                complete_epochs=np.int64(complete_epochs),
            )


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
    if not np.isfinite(probs).all():
        if not allow_nan:
            raise DataError(f"{path}: 'probs' has NaN/inf values (dynamics of a failed run?)")
        return TrainingDynamics(uids, labels, probs, seen, complete_epochs)
    if len(set(uids.tolist())) != n:
        raise DataError(f"{path}: 'uids' are not unique")
    return TrainingDynamics(uids, labels, probs, seen, complete_epochs, path)


# --------------------------------------------------------------------------- the map


def _epochs(dyn: TrainingDynamics, epochs) -> int:
    if epochs == "complete":
        e = dyn.complete_epochs
    else:
        e = int(epochs)
        if e > dyn.complete_epochs:
            raise DataError(f"{dyn.path}: asked for {e} epochs but only {dyn.complete_epochs} are complete")
    if e < 2:
        raise DataError(
            f"{dyn.path}: a data map needs at least 2 complete epochs of training dynamics, got {e} "
            f"(recorded {dyn.probs.shape[0]} epoch(s), complete_epochs={dyn.complete_epochs})"
        )
    return e


def compute(dyn: TrainingDynamics, epochs: str | int = "complete") -> pd.DataFrame:
    """Data map of ``dyn``: one row per instance (in the dynamics' order).

    Columns: uid, label, confidence, variability, correctness, forgetfulness.
    ``epochs``: "complete" (every complete epoch) or an int k (the first k complete epochs).

    Variability is the *population* standard deviation (``np.std``, ddof=0), exactly as the
    dataset-cartography reference implementation (allenai/cartography) computes it; with the E
    complete epochs of a full run (NLI 4: 60,000 x 32 / 392,702 = 4.9 passes; HSD about 11),
    ddof=1 would scale every value by sqrt(E/(E-1)), which leaves the ranking, hence the categories, unchanged but shifts the plotted values.
    Statistics are computed in float64 from the float16 probabilities.
    """
    e = _epochs(dyn, epochs)
    pt = dyn.p_true(e).astype(np.float64)  # [E, N]
    if not np.isfinite(pt).all():
        raise DataError(f"{dyn.path}: non-finite probabilities in the first {e} epochs")
    correct = dyn.correct(e)  # [E, N] bool
    forgets = (correct[:-1] & ~correct[1:]).sum(axis=0)
    conf = pt.mean(axis=0)
    dev = pt - conf
    var = np.einsum("en,en->n", dev, dev) / e  # == pt.var(axis=0, ddof=0), one pass
    return pd.DataFrame(
        {
            "uid": dyn.uids,
            "label": dyn.labels,
            "confidence": conf,
            "variability": np.sqrt(var),
            "correctness": correct.mean(axis=0),
            "forgetfulness": forgets.astype(np.int64),
        }
    )


def select_extreme(values: np.ndarray, uids, k: int, largest: bool) -> np.ndarray:
    """Bool mask of exactly ``k`` instances with the largest (or smallest) ``values``.

    Deterministic tie-breaking: among equal values, smaller uid (string order) first. This is
    the result of a stable sort by (value, uid) but only the tied group at the boundary is
    sorted by uid, so it costs O(N).
    """
    n = len(values)
    k = int(k)
    mask = np.zeros(n, dtype=bool)
    if k <= 0:
        return mask
    if k >= n:
        mask[:] = True
        return mask
    v = -np.asarray(values, dtype=np.float64) if largest else np.asarray(values, dtype=np.float64)
    if np.isnan(v).any():
        raise DataError("data map has NaN values; cannot rank instances")
    kth = np.partition(v, k - 1)[k - 1]
    mask = v < kth
    need = k - int(mask.sum())
    tied = np.flatnonzero(v == kth)
    if need < len(tied):
        tied_uids = uids.iloc[tied].to_numpy() if isinstance(uids, pd.Series) else np.asarray(uids)[tied]
        tied = tied[np.argsort(tied_uids.astype(str), kind="stable")[:need]]
    mask[tied] = True
    return mask


def category_size(n: int, q: float) -> int:
    """Size of each of the ambiguous / hard-to-learn sets: round(q * N) (half to even)."""
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q}")
    return int(round(q * n))


def categorize(df: pd.DataFrame, q: float) -> pd.DataFrame:
    """Copy of ``df`` with bool columns ambiguous, hard_to_learn, easy at threshold ``q``.

    ambiguous: the round(q*N) highest variability; hard_to_learn: the round(q*N) lowest
    confidence; easy: neither. Ties are broken by uid (ascending), so the result is a pure
    function of the map. An instance may be both ambiguous and hard-to-learn. ``category`` names
    the region in one column (``ambiguous``, ``hard_to_learn``, both joined by ``+``, or ``easy``).
    """
    k = category_size(len(df), q)
    uids = df["uid"]  # only the tied values at a boundary are read
    out = df.copy()
    out["ambiguous"] = select_extreme(df["variability"].to_numpy(), uids, k, largest=True)
    out["hard_to_learn"] = select_extreme(df["confidence"].to_numpy(), uids, k, largest=False)
    out["easy"] = ~(out["ambiguous"].to_numpy() | out["hard_to_learn"].to_numpy())
    both = out["ambiguous"] & out["hard_to_learn"]
    out["category"] = np.select([both, out["ambiguous"], out["hard_to_learn"]],
                                ["ambiguous+hard_to_learn", "ambiguous", "hard_to_learn"], "easy")  # fmt: skip
    return out


def ambiguous_uids(df: pd.DataFrame, q: float) -> np.ndarray:
    """The round(q*N) most ambiguous uids, in the map's row order."""
    k = category_size(len(df), q)
    uids = df["uid"].to_numpy().astype(str)
    return uids[select_extreme(df["variability"].to_numpy(), uids, k, largest=True)]


# --------------------------------------------------------------------------- analyses


def overlap(a_uids, b_uids) -> float:
    """Share of the ambiguous set ``A`` also in ``B``: |A ∩ B| / |A| (Figure 1a).

    Both sets have q*N elements in the paper, so the measure is symmetric there; random sets
    share q in expectation (footnote 4).
    """
    a = np.unique(np.asarray(a_uids).astype(str))
    b = np.unique(np.asarray(b_uids).astype(str))
    if len(a) == 0:
        raise ValueError("overlap of an empty set is undefined")
    return float(len(np.intersect1d(a, b, assume_unique=True)) / len(a))


def overlap_matrix(maps: dict[str, pd.DataFrame], q: float) -> pd.DataFrame:
    """Pairwise ``overlap`` of the q-ambiguous sets; rows = A, columns = B, names in input order.

    All maps must cover the same training instances (same uid set).
    """
    names = list(maps)
    sets = {}
    ref_name, ref_uids = None, None
    for name in names:
        uids = np.sort(maps[name]["uid"].to_numpy().astype(str))
        if ref_uids is None:
            ref_name, ref_uids = name, uids
        elif len(uids) != len(ref_uids) or not np.array_equal(uids, ref_uids):
            raise DataError(f"data maps {ref_name!r} and {name!r} cover different training instances")
        sets[name] = ambiguous_uids(maps[name], q)
    mat = np.array([[overlap(sets[a], sets[b]) for b in names] for a in names], dtype=np.float64)
    return pd.DataFrame(mat, index=pd.Index(names, name="a"), columns=pd.Index(names, name="b"))


def easy_ratio(df: pd.DataFrame, q: float) -> float:
    """Fraction (0-1) of instances that are neither ambiguous nor hard-to-learn at ``q`` (Table 8)."""
    if len(df) == 0:
        raise ValueError("easy ratio of an empty data map is undefined")
    return float(categorize(df, q)["easy"].mean())


def ptrue_curves(dyn: TrainingDynamics, hard_fraction: float = 0.10, epochs: str | int = "complete") -> pd.DataFrame:
    """Median p_true per epoch of the hard-to-learn instances vs the rest (Figure 1b).

    hard = the round(hard_fraction*N) instances with the lowest confidence (mean p_true over
    the complete epochs; ties by uid), rest = the others. Returns columns
    epoch (1-based), group ("hard" | "rest"), median_ptrue; complete epochs only.
    """
    e = _epochs(dyn, epochs)
    pt = dyn.p_true(e).astype(np.float64)
    conf = pt.mean(axis=0)
    hard = select_extreme(conf, dyn.uids, category_size(dyn.n, hard_fraction), largest=False)
    rows = []
    for group, mask in (("hard", hard), ("rest", ~hard)):
        med = np.median(pt[:, mask], axis=1) if mask.any() else np.full(e, np.nan)
        rows += [{"epoch": i + 1, "group": group, "median_ptrue": float(m)} for i, m in enumerate(med)]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- plot


def plot(
    df: pd.DataFrame, path: str | Path, title: str, q: float | None = None, max_points: int = 25_000, seed: int = 0
) -> None:
    """Dataset-cartography scatter with marginal histograms (PNG, written atomically).

    x = variability, y = confidence, colour = correctness, as allenai/cartography draws it,
    plus: the three regions labelled (easy-to-learn top left, ambiguous right, hard-to-learn
    bottom left), the instances DM selects (the ``q`` most ambiguous) outlined, and the
    distributions of both coordinates on the margins. Large maps are subsampled to
    ``max_points`` (seeded) so the scatter stays readable; the subtitle says so.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(df)
    shown = df.sample(n=max_points, random_state=seed) if n > max_points else df
    fig = plt.figure(figsize=(8, 7), dpi=120)
    grid = fig.add_gridspec(2, 3, width_ratios=(5, 1.1, 0.25), height_ratios=(1.1, 5), wspace=0.05, hspace=0.05)
    ax = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=ax)
    right = fig.add_subplot(grid[1, 1], sharey=ax)
    cax = fig.add_subplot(grid[1, 2])
    size = 6 if len(shown) > 2000 else 16
    sc = ax.scatter(shown["variability"], shown["confidence"], c=shown["correctness"], cmap="coolwarm_r",
                    vmin=0.0, vmax=1.0, s=size, alpha=0.65, linewidths=0)  # fmt: skip
    if q is not None:
        k = category_size(n, q)
        amb = df["ambiguous"] if "ambiguous" in df.columns else categorize(df, q)["ambiguous"]
        sel = shown[amb.loc[shown.index].to_numpy(bool)]
        ax.scatter(sel["variability"], sel["confidence"], s=size * 1.6, facecolors="none", edgecolors="black",
                   linewidths=0.4, alpha=0.7, label=f"selected by DM: the {q:.0%} most ambiguous ({k:,})")  # fmt: skip
        ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
    bins = 30
    top.hist(df["variability"], bins=bins, color="0.55")
    right.hist(df["confidence"], bins=bins, orientation="horizontal", color="0.55")
    top.tick_params(labelbottom=False, labelsize=8)
    right.tick_params(labelleft=False, labelsize=8)
    fig.colorbar(sc, cax=cax).set_label("correctness", fontsize=11)
    ax.set_xlabel("variability", fontsize=12)
    ax.set_ylabel("confidence", fontsize=12)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(left=0.0)
    xmax = max(float(df["variability"].max()) if n else 0.5, 0.05)
    for text, x, y in (
        ("easy-to-learn", 0.02 * xmax, 0.95),
        ("ambiguous", 0.72 * xmax, 0.5),
        ("hard-to-learn", 0.02 * xmax, 0.04),
    ):
        ax.text(x, y, text, fontsize=11, fontweight="bold", color="0.2",
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.7, "edgecolor": "0.7"})  # fmt: skip
    ax.grid(alpha=0.3)
    sub = f"{n:,} instances" + (f" ({len(shown):,} shown)" if len(shown) < n else "")
    top.set_title(f"{title}\n{sub}", fontsize=12)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)


def plot_failure(path: str | Path, title: str, reason: str) -> None:
    """A placeholder image saying why there is no data map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3), dpi=100)
    ax.axis("off")
    ax.text(
        0.5, 0.5, f"{title}\n\nno data map: the reference run failed\n{reason}", ha="center", va="center", wrap=True
    )
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


# --------------------------------------------------------------------------- files + CLI


def write(df: pd.DataFrame, path: str | Path, meta: dict | None = None) -> None:
    """Write a data map parquet atomically; ``meta`` goes to the schema metadata key ``ftft``."""
    write_parquet(df, path, meta)


def read(path: str | Path) -> pd.DataFrame:
    """Read a data map parquet (error naming the file if missing or malformed)."""
    path = Path(path)
    df = read_parquet(path, "data map")
    missing = [c for c in ("uid", "label", *METRICS) if c not in df.columns]
    if missing:
        raise DataError(f"{path}: data map is missing column(s) {missing}")
    df["uid"] = df["uid"].astype(str)
    return df


def default_title(run_dir: str | Path) -> str:
    """'Data map: nli, reference deberta-v3-small, seed 0' for a run folder of the grid."""
    from .grid import Run

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
    parser.add_argument(
        "--title", default=None, help="plot title (default: task, reference model and seed from the run folder)"
    )


def with_texts(df: pd.DataFrame, train: str | Path) -> pd.DataFrame:
    """The map with the instances' ``text_a`` / ``text_b`` (joined on uid)."""
    from .data import schema

    texts, _ = schema.read(train)
    texts = texts[["uid", "text_a", "text_b"]].assign(uid=lambda d: d["uid"].astype(str))
    out = df.merge(texts, on="uid", how="left", validate="one_to_one")
    if out["text_a"].isna().any():
        raise DataError(
            f"{train}: {int(out['text_a'].isna().sum())} uid(s) of the data map are not in the training set"
        )
    return out


def run(args) -> int:
    run_dir = Path(args.run_dir)
    title = args.title or default_title(run_dir)
    record = read_json(run_dir / "run.json", "run record") if (run_dir / "run.json").is_file() else {}
    if record.get("status") == "failed":
        reason = f"{run_dir}: {record.get('failure_reason')}"
        write(
            pd.DataFrame({c: [] for c in ("uid", "label", *METRICS, *CATEGORIES)}),
            args.out,
            {"run_dir": str(run_dir), "q": args.q, "failed": reason},
        )
        if args.plot:
            plot_failure(args.plot, title, reason)
        log.warning("no data map for %s: the reference run failed (%s)", run_dir, record.get("failure_reason"))
        return 0
    dyn = load_dynamics(run_dir / "dynamics.npz")
    df = categorize(compute(dyn), args.q)
    if args.train:
        df = with_texts(df, args.train)
    meta = {"run_dir": str(run_dir), "q": args.q, "epochs": dyn.complete_epochs, "n": dyn.n}
    write(df, args.out, meta)
    log.info(
        "data map of %s: %d instances, %d epochs; q=%.2f: %d ambiguous, %d hard-to-learn, easy ratio %.4f -> %s",
        run_dir,
        dyn.n,
        dyn.complete_epochs,
        args.q,
        int(df["ambiguous"].sum()),
        int(df["hard_to_learn"].sum()),
        float(df["easy"].mean()),
        args.out,
    )
    if args.plot:
        plot(df, args.plot, title, q=args.q)
    return 0
