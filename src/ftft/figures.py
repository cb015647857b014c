"""Paper Figures 1a, 1b, 2, 3 and 4 from data maps and run outputs (PNG + PDF).

``ftft figure --id 1a|1b --task T --config-json CFG.json --results DIR --out-prefix P``
``ftft figure --id 2|3|4 --mode halting|limiting --config-json CFG.json --results DIR --out-prefix P``
write ``P.png`` and ``P.pdf``. Each ``figure_*`` function also returns the plotted numbers as a
DataFrame (tests assert them).

- 1a: share of the ambiguous (top q variability) training instances of reference A also
  picked by B (``datamap.overlap_matrix``), data maps of the first seed; the diagonal shows the
  overlap between the first two seeds of the same reference (the paper's superscripts).
- 1b: median p_true per epoch of the hard-to-learn ``hard_fraction`` vs the rest
  (``datamap.ptrue_curves``), from each reference's ERM run (first seed).
- 2/3/4: OOD performance at a step fraction relative to the full budget,
  ``100 * mean_seeds(score at f) / mean_seeds(score of the full run)``; halting reads the
  full runs' checkpoints at f, limiting the final checkpoint of the runs scheduled for f
  (``results.read_fraction``). Series ERM and DM-<ref> (``grid.speed_runs``), one panel per
  OOD set, one row per task. Failed runs are excluded from the means.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from . import grid
from . import results as res
from .config import parse_fraction
from .errors import FtftError
from .io import atomic_path
from .tables import load_config_json, model_label, ood_sets, task_metric

log = logging.getLogger(__name__)

DPI = 100
PANEL_W, PANEL_H = 3.6, 3.0  # inches per panel of the speed figures
HEATMAP_SIZE = (6.0, 5.0)
CURVES_SIZE = (7.5, 4.5)
FIGURE_IDS = ("1a", "1b", "2", "3", "4")
#: Snakemake report caption (src/ftft/report/) of each figure
REPORT_CAPTIONS = {
    "1a": "figure1a.rst",
    "1b": "figure1b.rst",
    "2": "figure_speed.rst",
    "3": "figure_speed.rst",
    "4": "figure_speed.rst",
}
REPORT_DIR = Path(__file__).resolve().parent / "report"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "pdf.fonttype": 42, "axes.titlesize": 11})
    return plt, sns


def save(fig, prefix: str | Path) -> list[Path]:
    """Write PREFIX.png and PREFIX.pdf atomically (fixed size: no tight bbox)."""
    import matplotlib.pyplot as plt

    prefix = Path(prefix)
    out = []
    fig.canvas.draw()  # lay out once (constrained layout), then keep the positions for both files
    fig.set_layout_engine("none")
    for ext in ("png", "pdf"):
        path = prefix.with_name(f"{prefix.name}.{ext}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=DPI)
        out.append(path)
    plt.close(fig)
    return out


def speed_size(n_rows: int, n_cols: int) -> tuple[float, float]:
    """Figure size (inches) of a speed figure with that panel grid (+ room for the legend)."""
    return (PANEL_W * n_cols, PANEL_H * n_rows + 0.9)


def pixel_size(size_in: tuple[float, float]) -> tuple[int, int]:
    """(height, width) in pixels of a PNG of ``size_in`` inches."""
    return round(size_in[1] * DPI), round(size_in[0] * DPI)


def _frac_label(f: Fraction) -> str:
    return "1" if f == 1 else f"{f.numerator}/{f.denominator}"


# --- Figure 1a ---------------------------------------------------------------------------------------


def overlap_data(cfg: dict, results: str | Path, task: str) -> tuple[pd.DataFrame, dict[str, float]]:
    """(overlap matrix of the first seed's maps, ref -> seed-to-seed overlap (NaN with one seed))."""
    from . import datamap

    refs = cfg["overlap"]["refs"]
    seeds = cfg["seeds"]
    q = cfg["q"]

    def read(ref, s):
        return datamap.read(Path(results) / grid.datamap_path(task, ref, s))

    mat = datamap.overlap_matrix({r: read(r, seeds[0]) for r in refs}, q)
    seed_overlap = {}
    for r in refs:
        if len(seeds) > 1:
            pair = datamap.overlap_matrix({"a": read(r, seeds[0]), "b": read(r, seeds[1])}, q)
            seed_overlap[r] = float(pair.iloc[0, 1])
        else:
            seed_overlap[r] = float("nan")
    return mat, seed_overlap


def figure_1a(cfg: dict, results: str | Path, task: str, prefix: str | Path) -> pd.DataFrame:
    plt, sns = _plt()
    mat, seed_ov = overlap_data(cfg, results, task)
    refs = list(mat.index)
    labels = [model_label(cfg, r) for r in refs]
    shown = mat.to_numpy().copy()
    annot = np.empty(shown.shape, dtype=object)
    for i in range(len(refs)):
        for j in range(len(refs)):
            annot[i, j] = f"{shown[i, j]:.2f}"
        s = seed_ov[refs[i]]
        annot[i, i] = f"{s:.2f}\n(seeds)" if not np.isnan(s) else "1.00\n(one seed)"
        shown[i, i] = s if not np.isnan(s) else 1.0
    fig, ax = plt.subplots(figsize=HEATMAP_SIZE, layout="constrained")
    sns.heatmap(
        shown, annot=annot, fmt="", vmin=0, vmax=1, cmap="viridis", square=True, ax=ax,
        xticklabels=labels, yticklabels=labels, cbar_kws={"label": "share of ambiguous instances"},
        annot_kws={"fontsize": 10},
    )  # fmt: skip
    seeds = cfg["seeds"]
    ax.set_xlabel("reference model B")
    ax.set_ylabel("reference model A")
    ax.set_title(
        f"{task.upper()}: ambiguous-set overlap |A∩B|/|A| (q={cfg['q']:g}, seed {seeds[0]})\n"
        + (f"diagonal: seed {seeds[0]} vs seed {seeds[1]} of the same model" if len(seeds) > 1 else "")
    )
    save(fig, prefix)
    out = mat.copy()
    out.attrs["seed_overlap"] = seed_ov
    return out


# --- Figure 1b -----------------------------------------------------------------------------------------


def figure_1b(cfg: dict, results: str | Path, task: str, prefix: str | Path) -> pd.DataFrame:
    from . import datamap

    plt, sns = _plt()
    sec = cfg["ptrue_curves"]
    hard = float(sec.get("hard_fraction", 0.10))
    seed0 = cfg["seeds"][0]
    frames = []
    for ref in sec["refs"]:
        run = grid.ref_run(task, ref, seed0)
        dyn = datamap.load_dynamics(res.run_dir(results, run) / "dynamics.npz")
        c = datamap.ptrue_curves(dyn, hard)
        label = model_label(cfg, ref) + (" (failed run)" if res.is_failed(results, run) else "")
        frames.append(c.assign(reference=label, ref_model=ref))
    df = pd.concat(frames, ignore_index=True)
    group_names = {"hard": f"hard-to-learn {hard:.0%}", "rest": f"others {1 - hard:.0%}"}
    df["subset"] = df["group"].map(lambda g: group_names.get(g, str(g)))
    fig, ax = plt.subplots(figsize=CURVES_SIZE, layout="constrained")
    sns.lineplot(data=df, x="epoch", y="median_ptrue", hue="reference", style="subset", markers=True, ax=ax)
    ax.set_ylim(0, 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("median $p_{true}$")
    ax.set_title(f"{task.upper()}: median $p_{{true}}$ per epoch (ERM reference runs, seed {seed0})")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    epochs = sorted(df["epoch"].unique())
    ax.set_xticks(epochs)
    save(fig, prefix)
    return df


# --- Figures 2, 3, 4 -------------------------------------------------------------------------------


def speed_fractions(cfg: dict, mode: str) -> list[Fraction]:
    return list(_speed_fraction_labels(cfg, mode))


def _speed_fraction_labels(cfg: dict, mode: str) -> dict[Fraction, str]:
    """Fraction -> its label as written in the config (``3/15`` stays ``3/15``)."""
    speed = cfg["speed"]
    key = "limiting_fractions" if mode == "limiting" and "limiting_fractions" in speed else "fractions"
    return {parse_fraction(f): str(f) if isinstance(f, str) else _frac_label(parse_fraction(f)) for f in speed[key]}


def series_label(cfg: dict, series: str) -> str:
    return "ERM" if series == "erm" else f"DM-{model_label(cfg, series)}"


def speed_data(cfg: dict, results: str | Path, fig_id: str, mode: str) -> pd.DataFrame:
    """Relative OOD performance: task, dataset, series, fraction, relative (%), n_ok, n_failed."""
    if mode not in cfg["speed"]["modes"]:
        raise FtftError(f"mode {mode!r} is not in speed.modes {cfg['speed']['modes']}")
    runs_by = grid.speed_runs(cfg, fig_id)
    fig = cfg["speed"]["figures"][fig_id]
    fracs = _speed_fraction_labels(cfg, mode)
    out = []
    for task in fig["tasks"]:
        metric = task_metric(cfg, task)
        sets = ood_sets(cfg, task)
        for series in ["erm", *fig["refs"]]:
            runs = runs_by[(task, mode, series)]
            full = [r for r in runs if r.budget == grid.FULL]
            full_v = res.seed_values(results, full, sets, metric, 1)
            for f, f_label in fracs.items():
                at = full if mode == "halting" else [r for r in runs if r.fraction == f]
                if not at:
                    raise FtftError(f"figure {fig_id}: no {mode} runs for {task}/{series} at fraction {f}")
                v = res.seed_values(results, at, sets, metric, f)
                for d in sets:
                    num, den = (
                        np.mean(v.values[d]) if v.n_ok else np.nan,
                        np.mean(full_v.values[d]) if full_v.n_ok else np.nan,
                    )
                    out.append(
                        {
                            "task": task,
                            "dataset": d,
                            "series": series,
                            "label": series_label(cfg, series),
                            "fraction": float(f),
                            "fraction_label": f_label,
                            "relative": 100.0 * num / den if den else np.nan,
                            "n_ok": v.n_ok,
                            "n_failed": v.n_failed + full_v.n_failed,
                        }
                    )
    return pd.DataFrame(out)


def figure_speed(cfg: dict, results: str | Path, fig_id: str, mode: str, prefix: str | Path) -> pd.DataFrame:
    plt, sns = _plt()
    df = speed_data(cfg, results, fig_id, mode)
    fig_cfg = cfg["speed"]["figures"][fig_id]
    tasks = fig_cfg["tasks"]
    n_cols = max(len(ood_sets(cfg, t)) for t in tasks)
    fig, axes = plt.subplots(
        len(tasks), n_cols, figsize=speed_size(len(tasks), n_cols), squeeze=False, layout="constrained"
    )
    labels = list(dict.fromkeys(df["label"]))
    palette = dict(zip(labels, sns.color_palette("colorblind", len(labels)), strict=True))
    fracs = sorted(df["fraction"].unique())
    ticks = df.drop_duplicates("fraction").set_index("fraction")["fraction_label"]
    for i, task in enumerate(tasks):
        sets = ood_sets(cfg, task)
        for j in range(n_cols):
            ax = axes[i, j]
            if j >= len(sets):
                ax.set_visible(False)
                continue
            part = df[(df["task"] == task) & (df["dataset"] == sets[j])]
            for label in labels:
                s = part[part["label"] == label].sort_values("fraction")
                ax.plot(s["fraction"], s["relative"], marker="o", ms=4, label=label, color=palette[label])
            ax.axhline(100, color="0.4", lw=0.8, ls="--")
            ax.set_xticks(fracs)
            ax.set_xticklabels([ticks[f] for f in fracs], fontsize=8)
            ax.set_title(f"{task.upper()}: {sets[j]}")
            ax.set_xlabel("fraction of training steps")
            if j == 0:
                ax.set_ylabel("OOD perf. vs full budget (%)")
    handles, hl = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, hl, loc="outside lower center", ncol=len(labels), frameon=False)
    how = "checkpoints of the full runs" if mode == "halting" else "runs scheduled for the shorter budget"
    fig.suptitle(f"Figure {fig_id}: {model_label(cfg, fig_cfg['main'])} trained with fewer steps ({mode}: {how})")
    save(fig, prefix)
    return df


# --- dispatch / inputs / CLI ---------------------------------------------------------------------------


def make(
    cfg: dict, results: str | Path, fig_id: str, prefix: str | Path, task: str | None = None, mode: str | None = None
):
    fig_id = str(fig_id)
    if fig_id in ("1a", "1b"):
        sec = cfg["overlap" if fig_id == "1a" else "ptrue_curves"]
        if task not in sec["tasks"]:
            raise FtftError(f"figure {fig_id} needs --task, one of {sec['tasks']}; got {task!r}")
        return (figure_1a if fig_id == "1a" else figure_1b)(cfg, results, task, prefix)
    if fig_id in cfg["speed"]["figures"]:
        if mode is None:
            raise FtftError(f"figure {fig_id} needs --mode, one of {cfg['speed']['modes']}")
        return figure_speed(cfg, results, fig_id, mode, prefix)
    raise FtftError(
        f"unknown figure {fig_id!r}; expected 1a, 1b or one of speed.figures {sorted(cfg['speed']['figures'])}"
    )


def figure_inputs(cfg: dict, fig_id: str, task: str | None = None, mode: str | None = None) -> list[str]:
    """Files (relative to the results root) that ``ftft figure`` reads."""
    fig_id = str(fig_id)
    seeds = cfg["seeds"]
    if fig_id == "1a":
        return sorted(grid.datamap_path(task, r, s) for r in cfg["overlap"]["refs"] for s in seeds[:2])
    if fig_id == "1b":
        runs = [grid.ref_run(task, r, seeds[0]) for r in cfg["ptrue_curves"]["refs"]]
        return sorted(f"{r.path}/{f}" for r in runs for f in ("dynamics.npz", "run.json"))
    runs = {r for (_t, m, _s), rs in grid.speed_runs(cfg, fig_id).items() if m == mode for r in rs}
    return sorted(f"{r.path}/{f}" for r in runs for f in ("metrics.csv", "run.json"))


def add_arguments(parser) -> None:
    parser.add_argument("--id", required=True, choices=FIGURE_IDS, help="figure id")
    parser.add_argument("--task", default=None, help="task (figures 1a, 1b)")
    parser.add_argument("--mode", default=None, choices=("halting", "limiting"), help="figures 2-4")
    parser.add_argument("--config-json", required=True, help="the merged workflow config as JSON")
    parser.add_argument("--results", required=True, help="results root")
    parser.add_argument("--out-prefix", required=True, help="output path without extension")


def run(args) -> int:
    cfg = load_config_json(args.config_json)
    make(cfg, args.results, args.id, args.out_prefix, task=args.task, mode=args.mode)
    log.info("figure %s -> %s.{png,pdf}", args.id, args.out_prefix)
    return 0
