"""Paper Figures 1a, 1b, 2, 3 and 4 (PNG + PDF; what each shows: its ``*_caption``); which ones a config makes:
``figure_ids``; the kinds: ``KINDS``. Failed runs are excluded; a panel or series without a successful run says why.
"""

import textwrap
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from . import datamap, grid
from .artefacts import Registry
from .config import parse_fraction
from .io import atomic_path
from .labels import dataset_title, frac_label, model_label, ood_sets, seeds_phrase, task_label, task_metric
from .render import out_path
from .results import Results

DPI = 100
PANEL_W, PANEL_H = 3.6, 3.0  # inches per panel of the speed figures
HEATMAP_SIZE = (6.0, 5.0)
CURVES_SIZE = (7.5, 4.5)


def _figure(size: tuple[float, float], **subplots):
    """(figure, its axes, seaborn) in the paper's style; labels are plain text ($ is a dollar), mathtext opts in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    plt.rcParams.update(
        {"figure.dpi": DPI, "savefig.dpi": DPI, "pdf.fonttype": 42, "axes.titlesize": 11, "text.parse_math": False}
    )
    return *plt.subplots(figsize=size, layout="constrained", **subplots), sns


def save(fig, prefix: str | Path) -> None:
    """Write PREFIX.png and PREFIX.pdf atomically (fixed size: no tight bbox)."""
    import matplotlib.pyplot as plt

    for ext in ("png", "pdf"):
        with atomic_path(out_path(prefix, ext)) as tmp:
            fig.savefig(tmp, format=ext, dpi=DPI)
        fig.set_layout_engine("none")  # laid out once (constrained layout, by the PNG): the PDF keeps the positions
    plt.close(fig)


def speed_size(n_rows: int, n_cols: int) -> tuple[float, float]:
    """Figure size (inches) of a speed figure with that panel grid (+ room for the legend)."""
    return (PANEL_W * n_cols, PANEL_H * n_rows + 0.9)


def panel_note(ax, text: str, chars: int = 40, lines: int = 6) -> None:
    """A note inside its panel: wrapped to the panel's width, clipped to it, kept out of the layout."""
    wrapped = [w for line in text.splitlines() for w in textwrap.wrap(line, chars, subsequent_indent="  ")]
    if len(wrapped) > lines:
        wrapped = wrapped[: lines - 1] + ["  ..."]
    ax.text(0.03, 0.03, "\n".join(wrapped), transform=ax.transAxes, fontsize=7, va="bottom", color="0.3",
            in_layout=False, clip_on=True, bbox={"fc": "white", "ec": "none", "alpha": 0.8})  # fmt: skip


def _figure_task(cfg: dict, fid: str) -> str:
    return grid.figure_tasks(cfg, "overlap" if fid.startswith("1a") else "ptrue_curves")[fid]


# --- Figure 1a ---------------------------------------------------------------------------------------
def overlap_needs(cfg: dict, fid: str) -> grid.Needs:
    task = _figure_task(cfg, fid)
    return grid.Needs(datamaps={(task, r, s) for r in cfg["overlap"]["refs"] for s in cfg["seeds"][:2]})


def overlap_make(cfg: dict, res: Results, fid: str, prefix: str | Path) -> pd.DataFrame:
    """The overlap matrix of the first seed's maps (a failed reference's row and column NaN) and, in
    ``attrs["seed_overlap"]``, ref -> seed-to-seed overlap (NaN with one seed)."""
    task, refs, seeds, q = _figure_task(cfg, fid), cfg["overlap"]["refs"], cfg["seeds"], cfg["q"]
    first = {r: res.datamap(task, r, seeds[0]) for r in refs}
    ok = {r: m for r, m in first.items() if m is not None}
    mat = pd.DataFrame(np.nan, index=pd.Index(refs, name="a"), columns=pd.Index(refs, name="b"))
    if ok:
        mat.update(datamap.overlap_matrix(ok, q))
    seed_ov = {}
    for r in refs:
        second = res.datamap(task, r, seeds[1]) if len(seeds) > 1 else None
        ok = first[r] is not None and second is not None
        seed_ov[r] = float(datamap.overlap_matrix({"a": first[r], "b": second}, q).iloc[0, 1]) if ok else float("nan")
    labels = [model_label(cfg, r) for r in refs]
    annot = mat.map(lambda v: "failed\nrun" if np.isnan(v) else f"{v:.2f}").to_numpy(copy=True)  # writable (pandas 3)
    shown = mat.to_numpy(copy=True)
    for i, s in enumerate(seed_ov[r] for r in refs):
        if not np.isnan(shown[i, i]):
            annot[i, i], shown[i, i] = ("1.00\n(one seed)", 1.0) if np.isnan(s) else (f"{s:.2f}\n(seeds)", s)
    fig, ax, sns = _figure(HEATMAP_SIZE)
    sns.heatmap(
        shown, annot=annot, fmt="", vmin=0, vmax=1, cmap="viridis", square=True, ax=ax,
        xticklabels=labels, yticklabels=labels, cbar_kws={"label": "share of ambiguous instances"},
        annot_kws={"fontsize": 10},
    )  # fmt: skip
    ax.set(xlabel="reference model B", ylabel="reference model A")
    extra = " (extra: not in the paper)" if "-" in fid else ""
    ax.set_title(
        f"{task_label(task)}{extra}: ambiguous-set overlap |A∩B|/|A| (q={cfg['q']:g}, seed {seeds[0]})\n"
        + (f"diagonal: seed {seeds[0]} vs seed {seeds[1]} of the same model" if len(seeds) > 1 else "")
    )
    save(fig, prefix)
    mat.attrs["seed_overlap"] = seed_ov
    return mat


def overlap_caption(cfg: dict, fid: str) -> str:
    task = _figure_task(cfg, fid)
    extra = "Extra (the paper shows NLI only): " if fid != "1a" else ""
    return (
        f"{extra}Figure 1a, {task_label(task)}: share of the {round(cfg['q'] * 100)}% most ambiguous training instances of "
        "reference model A that B also selects (data maps of the first seed). The diagonal compares two seeds of "
        "the same model (the paper's superscripts); random subsets share q in expectation."
    )


# --- Figure 1b -----------------------------------------------------------------------------------------
def curves_needs(cfg: dict, fid: str) -> grid.Needs:
    task = _figure_task(cfg, fid)
    runs = {grid.ref_run(task, r, cfg["seeds"][0]) for r in cfg["ptrue_curves"]["refs"]}
    return grid.Needs(runs=runs, dynamics=runs)


def curves_make(cfg: dict, res: Results, fid: str, prefix: str | Path) -> pd.DataFrame:
    task = _figure_task(cfg, fid)
    sec, seed0 = cfg["ptrue_curves"], cfg["seeds"][0]
    hard = float(sec["hard_fraction"])
    frames, failed = [], []
    for ref in sec["refs"]:
        run = grid.ref_run(task, ref, seed0)
        if res.is_failed(run):
            failed.append(f"{model_label(cfg, ref)}: {res.failure(run)}")
            continue
        c = datamap.ptrue_curves(res.dynamics(run), hard)
        frames.append(c.assign(reference=model_label(cfg, ref), ref_model=ref))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["epoch", "group", "median_ptrue"])
    df["subset"] = df["group"].map({"hard": f"hard-to-learn {hard:.0%}", "rest": f"others {1 - hard:.0%}"})
    fig, ax, sns = _figure(CURVES_SIZE)
    if frames:
        sns.lineplot(data=df, x="epoch", y="median_ptrue", hue="reference", style="subset", markers=True, ax=ax)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
        ax.set_xticks(sorted(df["epoch"].unique()))
    if failed:
        panel_note(ax, "not shown (failed run):\n" + "\n".join(failed), chars=70)
    ax.set(ylim=(0, 1), xlabel="epoch")
    ax.set_ylabel("median $p_{true}$", parse_math=True)
    extra = " (extra)" if "-" in fid else ""
    ax.set_title(
        f"{task_label(task)}{extra}: median $p_{{true}}$ per epoch (ERM reference runs, seed {seed0})", parse_math=True
    )
    save(fig, prefix)
    df.attrs["failed"] = failed
    return df


def curves_caption(cfg: dict, fid: str) -> str:
    task = _figure_task(cfg, fid)
    hard = cfg["ptrue_curves"]["hard_fraction"]
    extra = "Extra (the paper shows NLI only): " if fid != "1b" else ""
    return (
        f"{extra}Figure 1b, {task_label(task)}: median p_true in each epoch of the reference model's training run, for the "
        f"{hard:.0%} of training instances with the lowest mean p_true (hard-to-learn) and the others; effective "
        "references learn the hard instances gradually, ineffective ones not at all."
    )


# --- Figures 2, 3, 4 -------------------------------------------------------------------------------
def speed_fraction_labels(cfg: dict) -> dict[Fraction, str]:
    """Fraction -> its label as written in the config (``3/15`` stays ``3/15``)."""
    fracs = cfg["speed"]["fractions"]
    return {parse_fraction(f): str(f) if isinstance(f, str) else frac_label(parse_fraction(f)) for f in fracs}


def speed_needs(cfg: dict, fid: str) -> grid.Needs:
    return grid.Needs(runs={r for rs in grid.speed_series(cfg, fid).values() for r in rs})


def speed_data(cfg: dict, res: Results, fid: str) -> pd.DataFrame:
    """Relative OOD performance: task, dataset, series, fraction, relative (%), n_ok, n_failed, why."""
    fracs = speed_fraction_labels(cfg)
    out = []
    for (task, series), runs in grid.speed_series(cfg, fid).items():
        metric, sets = task_metric(cfg, task), ood_sets(cfg, task)
        full = res.seed_values(runs, sets, metric, 1)
        why = "; ".join(sorted(set(full.reasons)))
        label = "ERM" if series == "erm" else f"DM-{model_label(cfg, series)}"
        for f, f_label in fracs.items():
            v = res.seed_values(runs, sets, metric, f)
            for d in sets:
                num = np.mean(v.values[d]) if v.n_ok else np.nan
                den = np.mean(full.values[d]) if full.n_ok else np.nan
                out.append({"task": task, "dataset": d, "series": series, "label": label,
                            "fraction": float(f), "fraction_label": f_label,
                            "relative": 100.0 * num / den if den else np.nan, "n_ok": v.n_ok,
                            "n_failed": v.n_failed, "why": why})  # fmt: skip
    return pd.DataFrame(out)


def speed_make(cfg: dict, res: Results, fid: str, prefix: str | Path) -> pd.DataFrame:
    df = speed_data(cfg, res, fid)
    tasks = grid.speed_tasks(cfg, fid)
    rows, cols = len(tasks), max(len(ood_sets(cfg, t)) for t in tasks)
    fig, axes, sns = _figure(speed_size(rows, cols), nrows=rows, ncols=cols, squeeze=False, sharey="row")
    labels = list(dict.fromkeys(df["label"]))
    palette = dict(zip(labels, sns.color_palette("colorblind", len(labels)), strict=True))
    ticks = df.drop_duplicates("fraction").sort_values("fraction")
    for i, task in enumerate(tasks):
        sets = ood_sets(cfg, task)
        for ax in axes[i, len(sets) :]:
            ax.set_visible(False)
        for j, (ax, d) in enumerate(zip(axes[i], sets, strict=False)):
            part = df[(df["task"] == task) & (df["dataset"] == d)]
            missing = []
            for label in labels:
                s = part[part["label"] == label].sort_values("fraction")
                if s["relative"].notna().any():
                    ax.plot(s["fraction"], s["relative"], marker="o", ms=4, label=label, color=palette[label])
                else:
                    ax.plot([], [], marker="o", label=label, color=palette[label])
                    missing.append(f"{label}: {s['why'].iloc[0] or 'no successful run'}")
            if missing:
                panel_note(ax, "no successful run:\n" + "\n".join(missing))
            ax.axhline(100, color="0.4", lw=0.8, ls="--")
            ax.set_xticks(ticks["fraction"], ticks["fraction_label"], fontsize=8)
            ax.set_title(textwrap.fill(f"{task_label(task)}: {dataset_title(cfg, task, d)}", 30), fontsize=10)
            ax.set(xlabel="fraction of training steps", ylabel="" if j else "OOD perf. vs full budget (%)")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncol=len(labels), frameon=False)
    main = model_label(cfg, cfg["speed"]["figures"][fid]["main"])
    fig.suptitle(f"Figure {fid}: {main} halted early (checkpoints of the full-budget runs)")
    save(fig, prefix)
    return df


def speed_caption(cfg: dict, fid: str) -> str:
    fig = cfg["speed"]["figures"][fid]
    fr = list(speed_fraction_labels(cfg).values())
    return (
        f"Figure {fid}: OOD performance of {model_label(cfg, fig['main'])} halted at {fr[0]} to {fr[-1]} of its "
        "training steps, as a percentage of the same run's performance with the full budget ("
        + ", ".join(f"{task_label(t)} {cfg['tasks'][t]['steps']:,} steps" for t in grid.speed_tasks(cfg, fid))
        + f"), mean over {seeds_phrase(cfg)}. ERM trains on the full training set; DM-X on the "
        f"{round(cfg['q'] * 100)}% most ambiguous instances of reference X's data map. One panel per OOD set."
    )


KINDS = {  # kind -> what it reads, draws (returning the plotted numbers) and its caption, for artefacts.Registry
    "overlap": SimpleNamespace(needs=overlap_needs, make=overlap_make, caption=overlap_caption),
    "curves": SimpleNamespace(needs=curves_needs, make=curves_make, caption=curves_caption),
    "speed": SimpleNamespace(needs=speed_needs, make=speed_make, caption=speed_caption),
}


def figure_ids(cfg: dict) -> dict[str, str]:
    """Figure id -> kind for the figures this config produces."""
    ids = {fid: "overlap" for fid in grid.figure_tasks(cfg, "overlap")}
    ids |= {fid: "curves" for fid in grid.figure_tasks(cfg, "ptrue_curves")}
    ids |= {fid: "speed" for fid in cfg["speed"]["figures"] if grid.speed_tasks(cfg, fid)}
    return dict(sorted(ids.items()))


REGISTRY = Registry("figure", KINDS, figure_ids, "1a, 1b, 1a-hsd, 2, 3, 4, ...")
needs, caption, make, add_arguments, run = (
    REGISTRY.needs, REGISTRY.caption, REGISTRY.make, REGISTRY.add_arguments, REGISTRY.run
)  # fmt: skip
