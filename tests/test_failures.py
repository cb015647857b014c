"""ftft.failures: which runs failed, why, and which table cells / figures each one empties or
only reduces (synthetic results of tests/helpers_runs.py, runs of ``H.FAILED`` failed)."""

import json
from pathlib import Path

import helpers_runs as H
import numpy as np
import pandas as pd
import pytest

from ftft import failures, figures, grid, labels, tables
from ftft.grid import FULL, Run
from ftft.layout import Layout
from ftft.results import Results

pytestmark = pytest.mark.integration  # real training runs / subprocesses / servers: the integration tier


@pytest.fixture(scope="module")
def failed(cfg):
    runs = grid.all_runs(cfg)
    return {r: why for r, why in H.shared_failed(H.shared_config()).items() if r in runs}


@pytest.fixture(scope="module")
def report(cfg, results):
    return failures.failed_runs(cfg, Results(results)).set_index("run")


def uses(report, run: Run, key: str) -> list[str]:
    v = report.at[run.path, key]
    return [x for x in str(v).split("; ") if x and x != "nan"]


def test_every_failed_run_with_its_reason(report, failed, results):
    assert set(report.index) == {r.path for r in failed}
    limited = H.shared_config()  # the appendix A.1 runs too: a limited run is read up to its own budget
    everything = failures.failed_runs(limited, Results(results))
    assert set(everything["run"]) == {r.path for r in H.shared_failed(limited)}
    for r, why in failed.items():
        assert report.at[r.path, "reason"] == why
        assert (report.at[r.path, "method"], report.at[r.path, "seed"]) == (r.method, r.seed)
    ref_failed = [r for r, why in failed.items() if why.startswith("reference failed")]
    assert {(r.task, r.model, r.ref, r.seed) for r in ref_failed} == {
        ("hsd", "deberta-v3-large", "electra-small", 1),  # the failed reference run of H.FAILED
        ("hsd", "electra-large", "electra-small", 1),
        ("nli", "deberta-v3-large", "electra-large", 2),  # ERM ELECTRA-Large seed 2 is a reference too
        ("nli", "electra-large", "electra-large", 2),
    }


def test_cells_emptied_vs_reduced(cfg, report, failed):
    for tid in ("1", "2", "3", "6", "7", "9"):  # computed from the grid: empty iff every seed failed
        for cell in grid.table_cells(cfg, tid):
            hit = [r for r in cell.runs if r in failed]
            frac = labels.frac_label(cell.fraction)
            name = tables.cell_name(cfg, cell.task, cell.method, frac, cell.main, cell.ref)[1]
            for r in hit:
                assert f"Table {tid} {name}" in uses(report, r, "empties" if len(hit) == len(cell.runs) else "reduces")
    jtt = [Run("hsd", "deberta-v3-large", "jtt", "deberta-v3-large", FULL, s) for s in cfg["seeds"]]
    for r in jtt:
        assert uses(report, r, "empties") == ["Table 3 HSD JTT DeBERTaV3-Large / DeBERTaV3-Large"]
        assert uses(report, r, "reduces") == [] and uses(report, r, "figures") == []
    dm = Run("nli", "deberta-v3-large", "dm", "deberta-v3-small", FULL, 1)
    assert uses(report, dm, "empties") == []
    assert uses(report, dm, "reduces") == [
        "Table 1 NLI DM DeBERTaV3-Large / DeBERTaV3-Small",
        "Table 3 NLI FTFT (1/3) DeBERTaV3-Large / DeBERTaV3-Small",  # FTFT reads the same run, halted
        "Table 5",
    ]
    assert uses(report, dm, "figures") == ["Figure 4"]
    erm = grid.ref_run("nli", "electra-large", 2)
    assert "Table 2 NLI ERM ELECTRA-Large / -" in uses(report, erm, "reduces")
    assert "Table 9 NLI ERM ELECTRA-Large / -" in uses(report, erm, "reduces")
    assert uses(report, erm, "figures") == ["Figure 2"]
    ref = grid.ref_run("hsd", "electra-small", 1)  # a failed reference run: its data map is gone too
    assert uses(report, ref, "reduces") == ["Table 7 HSD ERM ELECTRA-Small / -", "Table 8"]
    child = Run("hsd", "electra-large", "dm", "electra-small", FULL, 1)
    assert "Table 9 HSD FTFT (7/15) ELECTRA-Large / ELECTRA-Small" in uses(report, child, "reduces")
    assert uses(report, child, "figures") == ["Figure 3"]


def test_a_failed_reference_of_figure_1(cfg, tmp_path):
    bad = grid.ref_run("nli", "deberta-v3-base", cfg["seeds"][0])
    needs = grid.Needs()
    for fid in ("1a", "1b"):
        n = figures.needs(cfg, fid)
        needs.runs |= n.runs
        needs.dynamics |= n.dynamics
        needs.datamaps |= n.datamaps
    root = H.write_needed(tmp_path / "r", cfg, needs, [bad])
    cfg_r = {**cfg, "results": str(root)}
    runs = sorted(needs.runs)
    line = failures.summary_line(cfg_r, runs)
    assert line.startswith(f"ftft: 1 of {len(runs)} finished training runs FAILED (1 x final ID score")
    res = Results(root)
    assert res.is_failed(bad) and res.datamap("nli", "deberta-v3-base", 0) is None
    assert res.datamap_failure("nli", "deberta-v3-base", 0).startswith(bad.path)
    assert figures.needs(cfg, "1a").runs == set()  # Figure 1a reads the data map only ...
    assert bad in failures._runs_read(figures.needs(cfg, "1a"))  # ... which the failed run empties


def test_write_and_summary_line(cfg, results, failed, report, tmp_path):
    out = failures.write({**cfg, "results": str(results)}, results, tmp_path / "failed_runs")
    md = (tmp_path / "failed_runs.md").read_text()
    assert md.startswith(f"# Failed runs: {len(failed)} of {len(grid.all_runs(cfg))}")
    assert "| `runs/hsd/deberta-v3-large/jtt-deberta-v3-large/full/seed0` | final | final ID score" in md
    page = (tmp_path / "failed_runs.html").read_text()
    assert "<td><code>runs/hsd/deberta-v3-large/jtt-deberta-v3-large/full/seed0</code></td>\n<td>final</td>" in page
    csv = pd.read_csv(tmp_path / "failed_runs.csv", keep_default_na=False)
    assert list(csv.columns) == failures.COLUMNS and len(csv) == len(out) == len(failed)
    cfg_r = {**cfg, "results": str(results)}
    line = failures.summary_line(cfg_r, sorted(grid.all_runs(cfg)))
    n_ref = sum(why.startswith("reference failed") for why in failed.values())
    n_direct = len(failed) - n_ref
    n = len(grid.all_runs(cfg))
    assert line == (
        f"ftft: {len(failed)} of {n} finished training runs FAILED ({n_direct} x final ID score <= majority "
        f"baseline; {n_ref} x reference failed); they are excluded from the tables. Which cells they empty: "
        f"{results}/failed_runs.md"
    )


def test_nothing_failed(cfg, tmp_path):
    needs = figures.needs(cfg, "1b")
    root = H.write_needed(tmp_path / "r", cfg, needs)
    cfg_r = {**cfg, "results": str(root)}
    runs = sorted(needs.runs)
    more = runs + [grid.ref_run("nli", "bert-large", 0)]  # not written yet: not counted as finished
    for asked in (runs, more):
        line = f"ftft: {len(runs)} of {len(asked)} training runs finished, none failed."
        assert failures.summary_line(cfg_r, asked) == line
    assert "Every training run succeeded." in failures.render_md(cfg, pd.DataFrame(columns=failures.COLUMNS), 4)
    assert tables.FAILED_MARK in failures.render_md(
        cfg, pd.DataFrame([dict.fromkeys(failures.COLUMNS, "x")], columns=failures.COLUMNS), 4
    )


def test_halted_readings_are_judged_at_their_own_checkpoint(tmp_path):
    """The FTFT cell reads checkpoint 5/15 of full DM runs: seed 0 is at the majority class there but ends fine,
    seed 1 is fine there but ends at the majority class. Each reading counts by its own ID score."""
    cfg = H.tiny_config(seeds=(0, 1))
    root = H.write_results(tmp_path, cfg, pred_checkpoints="final")
    cell = next(c for c in grid.table_cells(cfg, "9") if c.method == "ftft" and c.task == "nli")
    s0, s1 = sorted(cell.runs, key=lambda r: r.seed)
    for run, f in ((s0, H.own_fraction(cfg, s0, cell.fraction)), (s1, 1.0)):
        d = Path(Layout(root).run_dir(run))
        m = pd.read_csv(d / "metrics.csv")
        m.loc[np.isclose(m["fraction"], f) & (m["dataset"] == "mnli"), "accuracy"] = 0.30  # majority: 0.34
        m.to_csv(d / "metrics.csv", index=False)
        last = float(m.loc[m["dataset"] == "mnli", "accuracy"].iloc[-1])
        fin = {"dataset": "mnli", "metric": "accuracy", "step": 1, "score": last, "majority_baseline": 0.34}
        why = "final ID accuracy on mnli is 0.3000 <= majority-class baseline 0.3400" if run is s1 else None
        rec = json.loads((d / "run.json").read_text())
        (d / "run.json").write_text(
            json.dumps(rec | {"final": fin, "status": "failed" if why else "ok", "failure_reason": why})
        )
    res = Results(root)
    halted, full = (res.seed_values(cell.runs, ["mnli"], "accuracy", f) for f in (cell.fraction, 1))
    assert (halted.ok_seeds, halted.failed_seeds, full.ok_seeds, full.failed_seeds) == ([1], [0], [0], [1])
    assert halted.reasons == ["halted at 1/3: ID accuracy on mnli is 0.3000 <= majority-class 0.3400"]
    t9 = tables.cells_build(cfg, res, "9").query("method == 'ftft' and task == 'nli' and dataset == 'mnli'")
    assert t9[t9["ref_model"] == s0.ref][["n_ok", "failed_seeds"]].values.tolist() == [[1, "0"]]
    rep = {(r.run, r.reading): r for r in failures.failed_runs(cfg, res).itertuples()}
    assert set(rep) == {(s0.path, "halted at 1/3"), (s1.path, "final")}
    name = "Table 9 NLI FTFT (1/3) " + " / ".join(labels.model_label(cfg, m) for m in (cell.main, cell.ref))
    assert name in rep[(s0.path, "halted at 1/3")].reduces and "Figure 2" in rep[(s0.path, "halted at 1/3")].figures
    assert name not in rep[(s1.path, "final")].reduces and "DM" in rep[(s1.path, "final")].reduces
    assert "halted reading(s) excluded" in failures.render_md(cfg, failures.failed_runs(cfg, res), 100)
