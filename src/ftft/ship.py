"""FTFT as a fine-tuning tool (config key ``ship``): ``screen`` ranks the candidate references by the mean of their
ranks on the paper's three signals (§4.3; docs/FIDELITY.md, "reference screening" and assumption 21); ``ship``
saves the DM run's model at the ``ship.fraction`` checkpoint (the engine's export) with a model card (README.md)."""

import os
import shutil
from pathlib import Path

import jinja2
import pandas as pd
import yaml

from . import datamap, grid, render
from .config import parse_fraction, task_entries
from .cost import method_cost
from .errors import DataError
from .grid import ref_run, ship_run
from .io import atomic_dir, atomic_path, read_json
from .results import Results

EASY_Q = 0.5  # Table 8 / §4.3: the easy ratio at q = 50%
EFFECTIVE_EASY = 0.45  # §4.3: effective references put > 45% of the instances in "easy" at q = 50%
HARD_FRACTION = 0.10  # Figure 1b: the hard-to-learn 10%
SIGNALS = ["easy_ratio", "hard_ptrue", "id_score"]
CARD = jinja2.Environment(
    loader=jinja2.PackageLoader("ftft"), trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
).get_template("model_card.md.j2")


def screen(cfg: dict, res: Results) -> pd.DataFrame:
    """One row per candidate reference, best first (failed reference runs last)."""
    s, seed = cfg["ship"], cfg["seeds"][0]
    t = cfg["tasks"][s["task"]]
    rows = []
    for ref in s["refs"]:
        run = ref_run(s["task"], ref, seed)
        row = {"ref": ref, "failed": res.failure_at(run)}
        if not row["failed"]:
            dyn = res.dynamics(run)
            curves = datamap.ptrue_curves(dyn, HARD_FRACTION)
            row |= {"easy_ratio": datamap.easy_ratio(datamap.compute(dyn), EASY_Q),
                    "hard_ptrue": curves[curves.group == "hard"].median_ptrue.iloc[-1], "epochs": dyn.complete_epochs,
                    "id_score": res.metric_at(run, t["id_test"]["name"], t["metric"]),
                    "forward_flops_per_epoch": res.forward_flops_per_epoch(s["task"], ref, seed)}  # fmt: skip
        rows.append(row)
    df = pd.DataFrame(rows).reindex(columns=["ref", *SIGNALS, "epochs", "forward_flops_per_epoch", "failed"])
    df["mean_rank"] = df[SIGNALS].rank(ascending=False).mean(axis=1)  # failed runs: NaN signals, NaN rank
    df = df.sort_values(["mean_rank", "easy_ratio"], ascending=[True, False], na_position="last", kind="stable")
    df = df.reset_index(drop=True)
    df.insert(0, "rank", range(1, len(df) + 1))
    df["flag"] = ["reference run failed" if f else "ineffective? easy ratio <= 45%" if e <= EFFECTIVE_EASY else ""
                  for f, e in zip(df.failed, df.easy_ratio, strict=True)]  # fmt: skip
    df["recommended"] = (df["rank"] == 1) & (df.failed == "")
    return df


def why(cfg: dict, df: pd.DataFrame) -> str:
    """The one sentence that names the recommended reference and says why."""
    if not df.recommended.any():
        return "No reference can be recommended: every candidate's reference run failed (see failed_runs.md)."
    r = df[df.recommended].iloc[0]
    text = (f"Recommended reference: `{r.ref}`: the best mean rank ({r.mean_rank:.2g}) over the paper's signals "
            f"(§4.3): it puts {r.easy_ratio:.1%} of the instances in 'easy' at q = 50% (effective references put "
            f"> 45% there), its hard-to-learn 10% reach a median p_true of {r.hard_ptrue:.2f} by epoch "
            f"{int(r.epochs)}, and its ID {cfg['tasks'][cfg['ship']['task']]['metric']} is {r.id_score:.3f}.")  # fmt: skip
    return text + ("" if r.easy_ratio > EFFECTIVE_EASY else " No candidate passes the 45% line: add stronger ones.")


def write_screening(cfg: dict, res: Results, out_csv: str | Path) -> pd.DataFrame:
    """screening.{csv,md,html,png} (the CSV is the recommendation the workflow reads)."""
    from matplotlib.figure import Figure

    df, out = screen(cfg, res), Path(out_csv)
    header = ["rank", "reference", "easy at q = 50%", "hard-10% median p_true (last epoch)", "ID score", "mean rank",
              "flag"]  # fmt: skip
    num = render.fmt_number
    rows = [
        [str(r.rank), f"`{r.ref}`", num(100 * r.easy_ratio, 1) + "%", num(r.hard_ptrue), num(100 * r.id_score, 1)]
        + [num(r.mean_rank, 1), r.flag]
        for r in df.itertuples()
    ]
    md = (
        f"# Reference screening: task `{cfg['ship']['task']}`\n\n{why(cfg, df)}\n\n{render.md_table(header, rows)}"
        "\n\nRanked by the mean of each reference's ranks by easy ratio, hard-10% p_true and ID score (from the "
        "references' ERM runs; ties: the higher easy ratio).\n"
    )
    render.write_report(out.with_suffix(""), md, df.to_csv(index=False, float_format="%.6g"))
    fig = Figure(figsize=(9, 3.2))
    a, b = fig.subplots(1, 2)
    ok = df[df.failed == ""]
    colors = ["C2" if e > EFFECTIVE_EASY else "C3" for e in ok.easy_ratio[::-1]]
    a.barh(ok.ref[::-1], 100 * ok.easy_ratio[::-1], color=colors)
    a.axvline(100 * EFFECTIVE_EASY, color="k", ls="--", lw=1)
    a.set(xlabel="easy at q = 50% (%)", title="Easy ratio (> 45%: effective)")
    for ref in ok.ref:
        c = datamap.ptrue_curves(res.dynamics(ref_run(cfg["ship"]["task"], ref, cfg["seeds"][0])), HARD_FRACTION)
        c = c[c.group == "hard"]
        b.plot(c.epoch, c.median_ptrue, marker="o", label=ref)
    b.set(xlabel="epoch", ylabel="median p_true", title="Hard-to-learn 10%", ylim=(0, 1))
    b.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out.with_suffix(".png")) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return df


def recommended(csv: str | Path, refs: list[str]) -> str:
    """The recommended reference of a screening CSV (``write_screening``): one of ``refs``."""
    df = pd.read_csv(csv, keep_default_na=False)
    rec = df[df.recommended.astype(str) == "True"]
    if rec.empty or str(rec.ref.iloc[0]) not in refs:
        raise DataError(f"{csv}: no recommended reference among {refs} (did every reference run fail?); set ship.ref")
    return str(rec.ref.iloc[0])


def model_card(cfg: dict, res: Results, ref: str, name: str) -> str:
    """README.md of the shipped model (templates/model_card.md.j2): front matter (model-index) and the FTFT facts;
    ref "none": the main model's ERM run (``ship.erm``), for comparison."""
    s, run = cfg["ship"], ship_run(cfg, ref)
    t, erm = cfg["tasks"][s["task"]], ref == "none"
    frac = 1 if erm else parse_fraction(s["fraction"])
    sets = [(e, role.upper()) for _, role, e in task_entries(t) if role != "train"]
    scores = {o["name"]: {m: res.metric_at(run, o["name"], m, frac) for m in ("accuracy", "macro_f1")} for o, _ in sets}
    results = [{"task": {"type": "text-classification"},
                "dataset": {"name": o["name"], "type": o["source"], "split": o["split"]},
                "metrics": [{"type": "accuracy", "value": round(scores[o["name"]]["accuracy"], 4)},
                            {"type": "f1", "name": "macro_f1", "value": round(scores[o["name"]]["macro_f1"], 4)}]}
               for o, _ in sets]  # fmt: skip
    front = {"library_name": "transformers", "pipeline_tag": "text-classification",
             "tags": ["ftft"] + ["data-maps"] * (not erm), "model-index": [{"name": name, "results": results}]}  # fmt: skip
    rec = res.record(run)
    facts = dict(front=yaml.safe_dump(front, sort_keys=False), name=name, erm=erm, failure=res.failure_at(run, frac),
                 s=s, t=t, run=run, rec=rec, frac=frac, q=cfg["q"], ref=ref, sets=sets, scores=scores)  # fmt: skip
    if not erm:
        seed = grid.datamap_seed(cfg, run.seed)  # the map (and reference run) the DM run trained from
        ref_rec = res.record(ref_run(run.task, ref, seed))
        dm = datamap.read(res.layout.datamap(run.task, ref, seed))
        f_ref = float(ref_rec["flops"]["forward_per_epoch"])  # per epoch over the full training set
        f_main = float(rec["flops"]["forward_per_epoch"]) * ref_rec["n_train"] / rec["n_train"]  # subset -> full set
        facts |= dict(ref_rec=ref_rec, step=res.checkpoint_step(run, frac),
                      shares={c: float(dm[c].mean()) for c in ("easy", "ambiguous", "hard_to_learn")},
                      cost=method_cost("ftft", f_main, f_main, f_ref, float(frac), sig_figs=None))  # fmt: skip
    return CARD.render(**facts)


def ship(cfg: dict, res: Results, ref: str, export: str | Path, out: str | Path) -> None:
    """The shipped folder: the export's files (hard links where possible) and the model card."""
    export, out = Path(export), Path(out)
    files = sorted(p for p in export.iterdir() if p.is_file()) if export.is_dir() else []
    if not files:
        run = ship_run(cfg, ref)
        raise DataError(f"{export}: no saved model: run {run.path} stopped before its halting checkpoint "
                        f"({res.failure(run) or 'see its log'})")  # fmt: skip
    with atomic_dir(out) as tmp:
        for f in files:
            try:
                os.link(f, tmp / f.name)
            except OSError:
                shutil.copy2(f, tmp / f.name)
        name = f"{cfg['ship']['task']}-{'erm' if ref == 'none' else 'ftft'}-{cfg['ship']['main']}"
        (tmp / "README.md").write_text(model_card(cfg, res, ref, name))


def add_arguments(parser) -> None:
    parser.add_argument("--config-json", required=True, help="the merged workflow config as JSON")
    parser.add_argument("--results", required=True, help="results root (holds runs/, datamaps/)")
    parser.add_argument("--out", required=True, help="screening CSV (screen) or the model folder (ship)")
    parser.add_argument("--ref", help="ship: the reference whose DM run is shipped (none: the main model's ERM run)")
    parser.add_argument("--export", help="ship: the DM run's saved model (exports/...)")


def run(args) -> int:
    cfg, res = read_json(args.config_json, "config JSON"), Results(args.results)
    if args.export:
        ship(cfg, res, args.ref, args.export, args.out)
    else:
        write_screening(cfg, res, args.out)
    return 0
