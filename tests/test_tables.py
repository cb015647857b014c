"""Paper tables from synthetic run outputs with known values (tests/helpers_runs.py).

Every expected number is computed here from the helper's value functions (never from ftft's readers) and compared with
the files ``tables.write`` produced (CSV, MD, TEX, HTML)."""

import json
import math
import re
from fractions import Fraction

import helpers_runs as H
import numpy as np
import pandas as pd
import pytest

from ftft import cli, cost, grid, labels, stats, tables
from ftft.errors import DataError
from ftft.grid import FULL, Run
from ftft.layout import Layout

CELL_TABLES = ("1", "2", "3", "6", "7", "9")


@pytest.fixture(scope="module")
def failed():
    return H.shared_failed(H.shared_config())


@pytest.fixture(scope="module")
def built(cfg, results):
    return H.built_tables(results, cfg)


def one(df, **kw):
    sel = df
    for k, v in kw.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, (kw, len(sel))
    return sel.iloc[0]


def key(ref: str) -> str:
    return "" if ref == "none" else ref


def text(results, tid, ext):
    return open(Layout(results).table(tid, ext)).read()


def close(got, want, rel=1e-5):
    """CSV values are written with 6 significant figures."""
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    return got == pytest.approx(want, rel=rel, abs=1e-9)


def mean_ood(cfg, runs, failed, task="nli", fraction=1):
    metric = cfg["tasks"][task]["metric"]
    return np.mean([H.expected_cell(cfg, runs, d, metric, fraction, failed)[0] for d in labels.ood_sets(cfg, task)])


# --------------------------------------------------------------------------- registry


def test_table_ids(cfg):
    kinds = ["cells"] * 3 + ["flops", "significance", "cells", "cells", "easy", "cells"]
    assert list(tables.table_ids(cfg).items()) == list(zip("123456789", kinds, strict=True))  # the paper's order
    assert tables.table_ids(H.shared_config())["A1"] == "limiting"
    nli = H.tiny_config(active_tasks=["nli"])
    assert "6" not in tables.table_ids(nli) and "7" not in tables.table_ids(nli)  # HSD-only tables
    with pytest.raises(Exception, match="not produced"):
        tables.build(nli, "nowhere", "6")


# --------------------------------------------------------------------------- cell tables


@pytest.mark.parametrize("tid", CELL_TABLES)
def test_cell_tables_means_stds_and_failed_runs(cfg, results, built, failed, tid):
    df = H.read_table_csv(results, tid)
    perf = df[df["metric"] != "cost"]
    n = 0
    for c in grid.table_cells(cfg, tid):
        metric = cfg["tasks"][c.task]["metric"]
        n_failed = sum(r in failed for r in c.runs)
        keys = dict(task=c.task, main_model=c.main, ref_model=key(c.ref), method=c.method)
        for d in grid.task_eval_sets(cfg, c.task):
            row = one(perf, **keys, step_fraction=labels.frac_label(c.fraction), dataset=d)
            m, s, n_ok = H.expected_cell(cfg, c.runs, d, metric, c.fraction, failed)
            assert close(row["mean"], m) and close(row["std"], s), (c, d)
            assert (row["n_ok"], row["n_failed"], row["metric"]) == (n_ok, n_failed, metric)
            assert row["role"] == ("id" if d == labels.id_set(cfg, c.task) else "ood")
            assert row["q"] == ("33" if c.method in ("dm", "random", "ftft") else "")
            n += 1
    assert len(perf) == n


def test_failed_runs_are_excluded_counted_and_noted(cfg, results, built):
    t1 = H.read_table_csv(results, "1")
    row = one(t1, method="dm", ref_model="deberta-v3-small", dataset="mnli")
    assert (row["n_ok"], row["n_failed"], str(row["failed_seeds"])) == (2, 1, "1")
    assert row["failure_reasons"] == "final ID score <= majority baseline"
    md = text(results, "1", "md")
    assert (
        "† NLI DM DeBERTaV3-Large / DeBERTaV3-Small: 1 failed run(s) excluded (seed(s) 1: final ID score <= "
        "majority baseline)." in md
    )
    assert "| DM† | DeBERTaV3-Large | DeBERTaV3-Small |" in md
    assert r"$^\dagger$" in text(results, "1", "tex")
    # a cell without any successful seed: empty, and its note says so
    t3 = H.read_table_csv(results, "3")
    jtt = t3[(t3["task"] == "hsd") & (t3["method"] == "jtt")]
    assert jtt["mean"].isna().all() and (jtt["n_ok"] == 0).all() and (jtt["n_failed"] == 3).all()
    md3 = text(results, "3", "md")
    assert (
        "† HSD JTT DeBERTaV3-Large / DeBERTaV3-Large: no successful seed (all 3 runs failed: final ID score <= "
        "majority baseline); the cell is empty." in md3
    )
    hsd_header, hsd_rows = H.md_blocks(md3)["HSD (macro-F1, %)"]
    jtt_row = next(r for r in hsd_rows if r[0].startswith("JTT"))
    assert jtt_row[0] == "JTT†" and set(jtt_row[3:]) == {"–"}
    # a failed reference: the DM runs that use it fail too, and say why
    md7 = text(results, "7", "md")
    assert "HSD ERM ELECTRA-Small / -: 1 failed run(s) excluded (seed(s) 1" in md7
    assert "HSD DM DeBERTaV3-Large / ELECTRA-Small: 1 failed run(s) excluded (seed(s) 1: reference failed: " in md7
    assert "runs/hsd/electra-small/erm-none/full/seed1" in md7


def test_ftft_rows_read_the_halting_checkpoint_of_the_full_dm_run(cfg, results, built, failed):
    t1, t3, t9 = (H.read_table_csv(results, t) for t in ("1", "3", "9"))
    for c in grid.table_cells(cfg, "3") + grid.table_cells(cfg, "9"):
        if c.method == "ftft":
            assert all((r.method, r.budget) == ("dm", FULL) for r in c.runs)  # no separate run
    for ref in ("deberta-v3-small", "deberta-v3-base"):
        runs = [Run("nli", "deberta-v3-large", "dm", ref, FULL, s) for s in cfg["seeds"]]
        for d in ("mnli", "anli_r1"):
            row = one(t3, task="nli", method="ftft", ref_model=ref, dataset=d)
            assert row["step_fraction"] == "1/3"
            assert close(row["mean"], H.expected_cell(cfg, runs, d, "accuracy", Fraction(1, 3), failed)[0])
            full = one(t1, method="dm", ref_model=ref, dataset=d)["mean"]  # the same runs at the end
            assert not close(row["mean"], full)
            # the limited run (budget 1-3, written in this folder too) is not what FTFT reads
            limited = [Run("nli", "deberta-v3-large", "dm", ref, "1-3", s) for s in cfg["seeds"]]
            assert not close(row["mean"], H.expected_cell(cfg, limited, d, "accuracy", Fraction(1, 3), failed)[0])
    # Table 9: HSD at 7/15 (per-row fraction), NLI at 1/3
    runs = [Run("hsd", "electra-large", "dm", "electra-base", FULL, s) for s in cfg["seeds"]]
    row = one(t9, task="hsd", method="ftft", ref_model="electra-base", dataset="cad")
    assert row["step_fraction"] == "7/15"
    assert close(row["mean"], H.expected_cell(cfg, runs, "cad", "macro_f1", Fraction(7, 15), failed)[0])
    assert set(t9.loc[(t9["method"] == "ftft") & (t9["task"] == "nli"), "step_fraction"]) == {"1/3"}
    assert "| FTFT (1/3) | DeBERTaV3-Large | DeBERTaV3-Small |" in text(results, "3", "md").replace("†", "")


def test_cost_columns_per_block(cfg, results, built):
    blocks3 = H.md_blocks(text(results, "3", "md"))
    assert set(blocks3) == {"NLI (accuracy, %)", "HSD (macro-F1, %)"}
    assert blocks3["NLI (accuracy, %)"][0][3] == "Cost"
    assert "Cost" not in blocks3["HSD (macro-F1, %)"][0]
    assert len(blocks3["HSD (macro-F1, %)"][0]) == 3 + 7  # labels + CAD + six DynaHate sets
    blocks9 = H.md_blocks(text(results, "9", "md"))
    assert all(header[3] == "Cost" for header, _ in blocks9.values())
    t3 = H.read_table_csv(results, "3")
    assert set(t3.loc[t3["metric"] == "cost", "task"]) == {"nli"}
    tex = text(results, "3", "tex")
    nli_tex, hsd_tex = tex.split(r"\caption")[0].split("% HSD")
    assert "Cost" in nli_tex and "Cost" not in hsd_tex
    html = text(results, "3", "html")
    nli_html, hsd_html = html.split('<p class="caption">')[0].split("<h2>HSD")
    assert '<th rowspan="2">Cost</th>' in nli_html and "Cost" not in hsd_html


@pytest.mark.parametrize("tid", ["3", "9"])
def test_costs_reproduce_method_cost_and_the_paper(cfg, results, built, tid):
    df = H.read_table_csv(results, tid)
    costs = df[df["metric"] == "cost"]
    unit = cfg["cost_unit_model"]
    cells = [c for c in grid.table_cells(cfg, tid) if c.task in cfg["tables"][tid]["cost"]]
    assert len(costs) == len(cells)
    for c in cells:
        row = one(
            costs, task=c.task, method=c.method, ref_model=key(c.ref), step_fraction=labels.frac_label(c.fraction)
        )
        f_ref = H.flops(c.ref, c.task) if c.method in ("dm", "ftft", "jtt") else None
        args = (c.method, H.flops(c.main, c.task), H.flops(unit, c.task), f_ref, float(c.fraction))
        assert close(row["mean"], cost.method_cost(*args))
        assert close(row["exact"], cost.method_cost(*args, sig_figs=None))
    # the synthetic FLOPs are the paper's Table 4, so the printed costs come out
    paper = pd.read_csv(H.REPO / "src" / "ftft" / "paper" / f"table{tid}.csv", dtype=str, keep_default_na=False)
    printed = paper[paper["metric"] == "cost"]
    assert len(printed)
    for p in printed.itertuples():
        ours = one(costs, task=p.task, method=p.method, ref_model=p.ref_model, step_fraction=p.step_fraction)
        assert ours["mean"] == pytest.approx(float(p.mean), abs=0.051), p
    md = text(results, tid, "md")
    assert "| 15.2 |" in md or tid == "9"


def test_table2_marks_unsuccessful_transfers(cfg, results, built, failed):
    df = H.read_table_csv(results, "2")
    marked = df.groupby(["method", "main_model", "ref_model"])["marked"].first()
    unsuccessful = df.groupby(["method", "main_model", "ref_model"])["unsuccessful"].first()
    bad_refs = set()
    for c in grid.table_cells(cfg, "2"):
        if c.method != "dm":
            continue
        erm = [grid.ref_run("nli", c.main, s) for s in cfg["seeds"]]
        bad = mean_ood(cfg, c.runs, failed) < mean_ood(cfg, erm, failed) - tables.MARGIN
        assert marked[("dm", c.main, c.ref)] == bad == unsuccessful[("dm", c.main, c.ref)]
        bad_refs |= {c.ref} if bad else set()
    assert bad_refs == {"tinybert", "electra-base"}  # the helper's failed transfers
    for c in grid.table_cells(cfg, "2"):
        if c.method == "erm":
            assert marked[("erm", c.main, "")] == (c.main in bad_refs)
    md = text(results, "2", "md")
    assert "| ERM‡ | TinyBERT | - |" in md and "more than 1 point below" in md
    n_marked = int(df.groupby(["method", "main_model", "ref_model"])["marked"].first().sum())
    assert text(results, "2", "tex").count(r"\rowcolor{gray!25}") == n_marked
    assert text(results, "2", "html").count('<tr class="gray">') == n_marked
    # ERM ELECTRA-Large has a failed seed: excluded from the row and from the rule's baseline
    assert (one(df, method="erm", main_model="electra-large", dataset="mnli")[["n_ok", "n_failed"]] == [2, 1]).all()


# --------------------------------------------------------------------------- Table 4


def test_table4_padded_vs_real_flops(cfg, results, built):
    df = H.read_table_csv(results, "4")
    assert len(df) == len(cfg["flops_models"]) * 2 * 2
    paper = pd.read_csv(H.REPO / "src" / "ftft" / "paper" / "table4.csv")
    for m in cfg["flops_models"]:
        for t in ("nli", "hsd"):
            pad = one(df, main_model=m, task=t, metric="pflops")
            real = one(df, main_model=m, task=t, metric="pflops_real")
            assert close(pad["mean"], H.flops(m, t) / 1e12) and close(real["mean"], H.flops(m, t, False) / 1e12)
            assert real["mean"] < pad["mean"]
            assert pad["dataset"] == labels.id_set(cfg, t)
            printed = paper[(paper["model"] == m) & (paper["task"] == t)]["pflops"]
            assert pad["mean"] == pytest.approx(float(printed.iloc[0]), rel=1e-5)
    md = text(results, "4", "md")
    header, rows = H.md_blocks(md)[""]
    assert header[1:] == [
        "padded tokens (as the paper) NLI: MultiNLI*",
        "padded tokens (as the paper) HSD: CAD*",
        "real tokens NLI: MultiNLI*",
        "real tokens HSD: CAD*",
    ]
    tiny = next(r for r in rows if r[0] == "TinyBERT")
    assert tiny[1] == f"{H.flops('tinybert', 'nli') / 1e12:.2f}" and "**" not in "".join(tiny)  # never bold
    assert '<th class="g" colspan="2">padded tokens (as the paper)</th>' in text(results, "4", "html")


# --------------------------------------------------------------------------- Table 5


def test_table5_multibootstrap_p_values(cfg, results, built, failed):
    df = H.read_table_csv(results, "5")
    sig = cfg["significance"]
    n_rows = 0
    for task in ("nli", "hsd"):
        metric = cfg["tasks"][task]["metric"]
        sets = labels.ood_sets(cfg, task)
        systems = grid.significance_runs(cfg, task)
        erm, y = H.system_arrays(cfg, systems["erm"], sets, failed=failed)
        for ref in sig["refs"][task]:
            dm, _ = H.system_arrays(cfg, systems[ref], sets, failed=failed)
            diffs = stats.multibootstrap_samples(dm, erm, y, metric, sig["samples"], sig["seed"])
            p = (1 + np.sum(diffs <= 0)) / (1 + sig["samples"])
            got = df[(df["task"] == task) & (df["ref_model"] == ref)].set_index("metric")
            assert close(got.at["mean_diff", "mean"], 100 * diffs.mean())
            assert close(got.at["p_value", "mean"], p) and got.at["p_value", "mean"] > 0
            assert got.at["p_value", "n_instances"] == H.N_EVAL * len(sets)
            assert got.at["p_value", "n_seeds_dm"] == len(dm) and got.at["p_value", "n_seeds_erm"] == len(erm)
            n_rows += 2
    assert len(df) == n_rows
    assert (df.loc[df["metric"] == "p_value", "mean"] >= (1 - 1e-9) / (1 + sig["samples"])).all()  # never 0
    small = df[(df["task"] == "nli") & (df["ref_model"] == "deberta-v3-small")].iloc[0]
    assert (small["n_seeds_dm"], small["n_seeds_erm"], small["n_failed"]) == (2, 3, 1)
    md = text(results, "5", "md")
    p_small = df[(df["task"] == "nli") & (df["ref_model"] == "deberta-v3-small") & (df["metric"] == "p_value")]
    p = float(p_small["mean"].iloc[0])
    assert "| NLI | DeBERTaV3-Small† | " in md and f"{p:.4f}" + (" (p < 0.05)" if p < 0.05 else "") in md
    assert "(1 + #{samples with DM - ERM <= 0}) / (1 + 200)" in md


# --------------------------------------------------------------------------- Table 8


def easy_ratio(frame: pd.DataFrame, q: float) -> float:
    """Share neither in the top round(qN) variability nor in the bottom round(qN) confidence."""
    k = int(round(q * len(frame)))
    amb = set(frame.sort_values("variability", ascending=False)["uid"][:k])
    hard = set(frame.sort_values("confidence")["uid"][:k])
    return 1 - len(amb | hard) / len(frame)


def unsuccessful_refs(results, task) -> set[str]:
    frames = [H.read_table_csv(results, t) for t in ("2", "7")]
    df = pd.concat(frames)
    dm = df[(df["method"] == "dm") & (df["task"] == task)]
    return set(dm.loc[dm["unsuccessful"].astype(str) == "True", "ref_model"])


def test_table8_easy_ratio_marks_and_failed_maps(cfg, results, built, failed):
    df = H.read_table_csv(results, "8")
    assert len(df) == 2 * len(cfg["easy_ratio"]["refs"]) * len(cfg["easy_ratio"]["qs"])
    for task in ("nli", "hsd"):
        bad = unsuccessful_refs(results, task)
        assert bad == {"tinybert", "electra-base"}
        for ref in cfg["easy_ratio"]["refs"]:
            ok = [s for s in cfg["seeds"] if grid.ref_run(task, ref, s) not in failed]
            for q in cfg["easy_ratio"]["qs"]:
                row = one(df, task=task, ref_model=ref, q=labels.q_percent(q))
                vals = [100 * easy_ratio(H.datamap_frame(task, ref, s, 3 if task == "nli" else 2), q) for s in ok]
                assert close(row["mean"], float(np.mean(vals)))
                assert (row["n_seeds"], row["n_failed"]) == (len(ok), len(cfg["seeds"]) - len(ok))
                assert bool(row["marked"]) == (ref in bad)
    assert set(df["q"]) == {"25", "33", "50"}
    md = text(results, "8", "md")
    assert "ELECTRA-Small (HSD): 1 of 3 reference runs failed; their data maps are left out." in md
    assert "%‡" in md and md.count("ELECTRA-Small (NLI)") == 0
    assert text(results, "8", "html").count('<tr class="gray">') == 2  # TinyBERT, ELECTRA-Base


def test_table8_reads_the_marks_from_the_table2_and_7_csv_files(cfg, results, built, tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    for d in ("runs", "datamaps"):
        (root / d).symlink_to(results / d)
    with pytest.raises(DataError, match="table2.csv"):
        tables.build(cfg, root, "8")
    (root / "tables").mkdir()
    for t in ("2", "7"):
        df = pd.read_csv(Layout(results).table(t, "csv"), dtype=str, keep_default_na=False)
        dm = df["method"] == "dm"
        df.loc[dm, "unsuccessful"] = np.where(df.loc[dm, "ref_model"] == "electra-small", "True", "False")
        df.to_csv(Layout(root).table(t, "csv"), index=False)
    out = tables.build(cfg, root, "8")
    marks = out.groupby(["task", "ref_model"])["marked"].first()
    assert marks[("nli", "electra-small")] and marks[("hsd", "electra-small")]
    assert not marks[("nli", "tinybert")] and not marks[("hsd", "electra-base")]


# --------------------------------------------------------------------------- Table A1


def test_table_a1_halted_vs_limited(results, failed):
    cfg = H.shared_config()
    assert grid.limiting_runs(cfg)
    tables.write(cfg, results, "A1", Layout(results).table_prefix("A1"))
    df = H.read_table_csv(results, "A1")
    n = 0
    seen = set()
    for (fid, task, series), limited in grid.limiting_runs(cfg).items():
        full = grid.speed_series(cfg, fid)[(task, series)]
        if (task, full[0].model, series) in seen:
            continue
        seen.add((task, full[0].model, series))
        metric = cfg["tasks"][task]["metric"]
        for how, runs, f in (("full", full, 1), ("halted", full, Fraction(1, 3)), ("limited", limited, Fraction(1, 3))):
            keys = dict(task=task, main_model=full[0].model, ref_model="" if series == "erm" else series, how=how)
            for d in grid.task_eval_sets(cfg, task):
                row = one(df, **keys, dataset=d)
                m, s, n_ok = H.expected_cell(cfg, runs, d, metric, f, failed)
                assert close(row["mean"], m) and close(row["std"], s) and row["n_ok"] == n_ok
                n += 1
    assert len(df) == n
    halted = df[(df["how"] == "halted") & (df["role"] == "ood")]["mean"].to_numpy()
    limited = df[(df["how"] == "limited") & (df["role"] == "ood")]["mean"].to_numpy()
    assert not np.allclose(halted, limited)
    blocks = H.md_blocks(text(results, "A1", "md"))
    header, rows = blocks["NLI (mean OOD accuracy, %)"]
    assert header == ["Mode", "Main Model", "halted at 1/3", "limited to 1/3", "full budget"]
    erm = [Run("nli", "electra-large", "erm", "none", FULL, s) for s in cfg["seeds"]]
    row = next(r for r in rows if r[:2] == ["ERM", "ELECTRA-Large"])
    assert row[4].strip("*") == f"{mean_ood(cfg, erm, failed):.2f}"


# --------------------------------------------------------------------------- CLI, compare, needs


def test_cli_and_compare(cfg, results, built, tmp_path):
    cfg_json = tmp_path / "cfg.json"  # as the config_json rule writes it
    assert cli.main(["config-json", "--json", json.dumps(cfg), "--out", str(cfg_json)]) == 0
    assert json.loads(cfg_json.read_text()) == cfg
    base = ["--config-json", str(cfg_json), "--results", str(results)]
    prefix = tmp_path / "t4"
    assert cli.main(["table", "--id", "4", *base, "--out-prefix", str(prefix)]) == 0
    assert all((tmp_path / f"t4.{e}").stat().st_size > 0 for e in ("csv", "md", "tex", "html"))
    assert cli.main(["table", "--id", "12", *base, "--out-prefix", str(prefix)]) == 1
    out = tmp_path / "paper_comparison"
    assert cli.main(["compare", *base, "--out-prefix", str(out)]) == 0
    df = pd.read_csv(f"{out}.csv", dtype=str, keep_default_na=False)
    t4 = df[(df["table"] == "4") & (df["metric"] == "pflops")]
    assert len(t4) == 14 and np.allclose(t4["difference"].astype(float), 0, atol=1e-3)
    real = df[(df["table"] == "4") & (df["metric"] == "pflops_real")]
    assert len(real) == 14 and (real["note"] == "not in the paper").all()
    costs = df[(df["table"] == "3") & (df["metric"] == "cost")]
    assert (np.abs(costs["difference"].astype(float)) <= 0.051).all() and set(costs["task"]) == {"nli"}
    t5 = df[(df["table"] == "5") & (df["task"] == "hsd") & (df["metric"] == "mean_diff")]
    assert t5["note"].str.contains("0-1 scale").all()
    md = open(f"{out}.md").read()
    assert "do not show the paper's effect" in md and "## Table 9" in md
    page = open(f"{out}.html").read()  # the command writes the report's HTML page too (render.write_report)
    assert page.count("<table>") == md.count("\n|---") and "do not show the paper's effect" in page
    main = df.loc[df["main_model"] != "", "main_model"].iloc[0]  # display names, not config keys
    assert labels.model_label(cfg, main) != main and f"| {labels.model_label(cfg, main)} |" in md
    assert f"| {main} |" not in md
    raw = open(f"{out}.csv").read()
    assert not re.search(r"\d\.\d*(9999999|0000000)\d", raw)  # no float noise in the differences


def test_needs_declare_everything_build_reads(cfg, results, built, tmp_path):
    """Each table built from a folder holding only what its ``needs`` names (what a Snakemake job sees)."""
    for tid in tables.table_ids(cfg):
        root = H.link_needed(results, tmp_path / f"t{tid}", tables.needs(cfg, tid))
        got = tables.build(cfg, root, tid)
        want = built[tid]
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
