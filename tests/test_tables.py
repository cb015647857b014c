"""Paper tables from synthetic run outputs with known values (tests/helpers_runs.py)."""

from __future__ import annotations

import json
from fractions import Fraction

import helpers_runs as H
import numpy as np
import pandas as pd
import pytest

from ftft import cli, compare, grid, stats, tables
from ftft.grid import FULL, Run


@pytest.fixture(scope="module")
def cfg():
    return H.tiny_config()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return H.shared_results(tmp_path_factory)


@pytest.fixture(scope="module")
def built(cfg, results):
    """Every table written once under results/tables (shared by the tests below)."""
    out = {}
    for tid in ("1", "2", "3", "4", "5", "6", "7", "8", "9"):
        out[tid] = tables.write(cfg, results, tid, results / "tables" / f"table{tid}")
    return out


def expected(runs, dataset, metric, fraction=1.0):
    """Mean and sample std (%) over the ok runs, straight from the helper's value function."""
    vals = [
        H.metric_value(r, dataset, metric, float(Fraction(fraction) / r.fraction)) * 100
        for r in runs
        if r not in H.FAILED
    ]
    return np.mean(vals), np.std(vals, ddof=1)


def cell(df, **kw):
    sel = df
    for k, v in kw.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, kw
    return sel.iloc[0]


def test_table1_means_stds_and_failed_runs(cfg, built, results):
    df = built["1"]
    assert set(df["dataset"]) == set(grid.task_eval_sets(cfg, "nli"))
    for c in grid.table_cells(cfg, "1"):
        for d in grid.task_eval_sets(cfg, "nli"):
            row = cell(df, main_model=c.main, ref_model="" if c.ref == "none" else c.ref, method=c.method, dataset=d)
            m, s = expected(c.runs, d, "accuracy")
            assert row["mean"] == pytest.approx(m) and row["std"] == pytest.approx(s)
    failed = cell(df, method="dm", ref_model="deberta-v3-small", dataset="mnli")
    assert (failed["n_ok"], failed["n_failed"], failed["failed_seeds"]) == (2, 1, "1")
    ok = cell(df, method="dm", ref_model="deberta-v3-base", dataset="mnli")
    assert (ok["n_ok"], ok["n_failed"]) == (3, 0)
    md = (results / "tables" / "table1.md").read_text()
    assert "1 failed run(s) excluded (seed(s) 1)" in md
    assert f"{failed['mean']:.2f}<sub>{failed['std']:.2f}</sub>" in md
    assert "*Across different model sizes*" in md and "Random" in md
    tex = (results / "tables" / "table1.tex").read_text()
    assert rf"${failed['mean']:.2f}_{{{failed['std']:.2f}}}$" in tex and r"\begin{tabular}" in tex
    assert "not comparable" in md  # demo note


def test_table6_uses_macro_f1(cfg, built):
    df = built["6"]
    assert set(df["metric"]) == {"macro_f1"} and set(df["task"]) == {"hsd"}
    c = grid.table_cells(cfg, "6")[0]
    m, _ = expected(c.runs, "cad", "macro_f1")
    assert cell(df, main_model=c.main, method="erm", dataset="cad")["mean"] == pytest.approx(m)


def _mean_ood(cfg, runs, metric="accuracy", task="nli"):
    return np.mean([expected(runs, d, metric)[0] for d in grid.task_eval_sets(cfg, task)[1:]])


def test_table2_marks_unsuccessful_transfers(cfg, built, results):
    df = built["2"]
    seeds = cfg["seeds"]
    marked = df.groupby(["method", "main_model", "ref_model"])["marked"].first()
    # the rule, computed directly: DM mean OOD < ERM(main) mean OOD - 1
    for c in grid.table_cells(cfg, "2"):
        if c.method != "dm":
            continue
        erm = [grid.ref_run("nli", c.main, s) for s in seeds]
        bad = _mean_ood(cfg, c.runs) < _mean_ood(cfg, erm) - tables.MARGIN
        assert marked[("dm", c.main, c.ref)] == bad
        if bad:
            assert marked[("erm", c.ref, "")]
    assert marked[("dm", "deberta-v3-large", "tinybert")] and marked[("erm", "tinybert", "")]
    assert marked[("dm", "electra-large", "electra-base")] and marked[("erm", "electra-base", "")]
    assert not marked[("dm", "electra-large", "electra-small")]
    assert not marked[("erm", "electra-large", "")]
    md = (results / "tables" / "table2.md").read_text()
    assert "ERM‡ | TinyBERT" in md and "more than 1 point below" in md
    assert r"\rowcolor{gray!25}" in (results / "tables" / "table2.tex").read_text()
    # ERM ELECTRA-Large has a failed seed: excluded from the row and from the rule's baseline
    erm_l = cell(df, method="erm", main_model="electra-large", dataset="mnli")
    assert (erm_l["n_ok"], erm_l["n_failed"]) == (2, 1)


def test_table3_costs_and_limiting_ftft(cfg, built):
    df = built["3"]
    costs = df[df["metric"] == "cost"]
    got = {(r.task, r.method, r.ref_model): r.mean for r in costs.itertuples()}
    for (method, ref), printed in {
        ("erm", ""): 32.0,
        ("dm", "deberta-v3-large"): 64.0,
        ("jtt", "deberta-v3-large"): 64.0,
        ("poe", "tinybert"): 32.0,
        ("ftft", "deberta-v3-small"): 15.2,
        ("ftft", "deberta-v3-base"): 19.7,
    }.items():
        assert got[("nli", method, ref)] == pytest.approx(printed, abs=0.15)
    exact = cell(costs, task="nli", method="ftft", ref_model="deberta-v3-small")["exact"]
    f = {m: H.flops(m, "nli") for m in ("deberta-v3-large", "deberta-v3-small", "electra-small")}
    assert exact == pytest.approx((f["deberta-v3-small"] + f["deberta-v3-large"] / 3) / f["electra-small"])
    # limiting FTFT: the final checkpoint of the run scheduled for 1/3 of the steps
    runs = [Run("nli", "deberta-v3-large", "dm", "deberta-v3-small", "1-3", s) for s in cfg["seeds"]]
    m, s = expected(runs, "wanli", "accuracy", Fraction(1, 3))
    row = cell(df, task="nli", method="ftft", ref_model="deberta-v3-small", dataset="wanli")
    assert row["step_fraction"] == "1/3" and row["mean"] == pytest.approx(m) and row["std"] == pytest.approx(s)
    assert "| 15.2 |" in tables.render(cfg, df, "3", "md")


def test_table3_halting_reads_the_checkpoint_of_the_full_run(results):
    cfg_h = H.tiny_config(methods={"ftft": {"mode": "halting"}})
    df = tables.build(cfg_h, results, "3")
    runs = [Run("nli", "deberta-v3-large", "dm", "deberta-v3-base", FULL, s) for s in cfg_h["seeds"]]
    m, _ = expected(runs, "anli_r1", "accuracy", Fraction(1, 3))
    assert cell(df, task="nli", method="ftft", ref_model="deberta-v3-base", dataset="anli_r1")["mean"] == pytest.approx(
        m
    )
    full, _ = expected(runs, "anli_r1", "accuracy", 1)
    assert m != pytest.approx(full)


def test_table9_hsd_fraction(built):
    df = built["9"]
    costs = df[(df["metric"] == "cost") & (df["task"] == "hsd")]
    assert cell(costs, method="ftft", ref_model="electra-small")["mean"] == pytest.approx(15.9, abs=0.15)
    assert cell(costs, method="ftft", ref_model="electra-base")["mean"] == pytest.approx(23.9, abs=0.15)
    assert set(df.loc[(df["method"] == "ftft") & (df["task"] == "hsd"), "step_fraction"]) == {"7/15"}


def test_table4_pflops(cfg, built, results):
    df = built["4"]
    paper = pd.read_csv(H.REPO / "src" / "ftft" / "paper" / "table4.csv")
    for r in paper.itertuples():
        assert cell(df, main_model=r.model, task=r.task)["mean"] == pytest.approx(r.pflops)
    assert "2 N_nonembed + 2 n_layer n_ctx d_model" in (results / "tables" / "table4.md").read_text()


def _system(results, runs, sets):
    preds, labels = [], None
    for r in runs:
        if r in H.FAILED:
            continue
        p = pd.read_parquet(results / r.path / "predictions.parquet")
        p = p[(p["step"] == p["step"].max()) & p["dataset"].isin(sets)].sort_values(["dataset", "uid"])
        probs = p[[c for c in p.columns if c.startswith("prob_")]].to_numpy()
        preds.append(probs.argmax(1))
        labels = p["label"].to_numpy()
    return np.stack(preds), labels


def test_table5_multibootstrap(cfg, built, results):
    df = built["5"]
    sig = cfg["significance"]
    for task in ("nli", "hsd"):
        sets = grid.task_eval_sets(cfg, task)[1:]
        systems = grid.significance_runs(cfg, task)
        erm, labels = _system(results, systems["erm"], sets)
        for ref in ("deberta-v3-small", "electra-large"):
            dm, _ = _system(results, systems[ref], sets)
            mean, p = stats.multibootstrap(dm, erm, labels, cfg["tasks"][task]["metric"], sig["samples"], sig["seed"])
            got = df[(df["task"] == task) & (df["ref_model"] == ref)].set_index("metric")["mean"]
            assert got["mean_diff"] == pytest.approx(mean * 100) and got["p_value"] == pytest.approx(p)
    failed = df[(df["task"] == "nli") & (df["ref_model"] == "deberta-v3-small")].iloc[0]
    assert (failed["n_seeds_dm"], failed["n_seeds_erm"], failed["n_failed"]) == (2, 3, 1)
    assert failed["n_instances"] == H.N_EVAL * 4


def test_table5_p_value_formatting():
    assert tables.fmt_p(0.0123, "md") == "**0.0123**"
    assert tables.fmt_p(0.0552, "md") == "*0.0552*"
    assert tables.fmt_p(0.2288, "md") == "0.2288"
    assert tables.fmt_p(0.0123, "tex") == r"\textbf{0.0123}"
    assert tables.fmt_p(0.0578, "tex") == r"\emph{0.0578}"


def test_table8_easy_ratio(cfg, built, results):
    from ftft import datamap

    df = built["8"]
    for task in ("nli", "hsd"):
        for q in cfg["easy_ratio"]["qs"]:
            vals = [
                100 * datamap.easy_ratio(pd.read_parquet(results / grid.datamap_path(task, "deberta-v3-base", s)), q)
                for s in cfg["seeds"]
            ]
            row = cell(df, task=task, ref_model="deberta-v3-base", q=tables.q_percent(q))
            assert row["mean"] == pytest.approx(np.mean(vals))
    marks = df.groupby(["task", "ref_model"])["marked"].first()
    assert marks[("nli", "tinybert")] and marks[("hsd", "tinybert")]
    assert not marks[("nli", "electra-small")]  # DM into DeBERTaV3-L / ELECTRA-L from ELECTRA-S succeeds here
    assert set(df["q"]) == {"25", "33", "50"}
    assert "‡" in (results / "tables" / "table8.md").read_text()


def test_cli_and_compare(cfg, built, results, tmp_path):
    cfg_json = tmp_path / "cfg.json"
    cfg_json.write_text(json.dumps(cfg))
    prefix = tmp_path / "t4"
    rc = cli.main(
        ["table", "--id", "4", "--config-json", str(cfg_json), "--results", str(results), "--out-prefix", str(prefix)]
    )
    assert rc == 0 and all((tmp_path / f"t4.{e}").stat().st_size > 0 for e in ("csv", "md", "tex"))
    assert (
        cli.main(
            [
                "table",
                "--id",
                "12",
                "--config-json",
                str(cfg_json),
                "--results",
                str(results),
                "--out-prefix",
                str(prefix),
            ]
        )
        == 1
    )

    out = tmp_path / "paper_comparison"
    rc = cli.main(["compare", "--config-json", str(cfg_json), "--results", str(results), "--out-prefix", str(out)])
    assert rc == 0
    df = pd.read_csv(f"{out}.csv", dtype=str, keep_default_na=False)
    t4 = df[df["table"] == "4"]
    assert len(t4) == 14 and np.allclose(t4["difference"].astype(float), 0, atol=1e-6)
    costs = df[(df["table"] == "3") & (df["metric"] == "cost")]
    nli = costs[costs["task"] == "nli"]
    assert np.all(np.abs(nli["difference"].astype(float)) <= 0.15)
    assert (costs.loc[costs["task"] == "hsd", "published_mean"] == "").all()  # cells the paper lacks
    t5 = df[(df["table"] == "5") & (df["task"] == "hsd") & (df["metric"] == "mean_diff")]
    assert t5["note"].str.contains("0-1 scale").all()
    assert len(df[df["table"] == "1"]) == 60
    md = open(f"{out}.md").read()
    assert "not comparable" in md and "## Table 9" in md


def test_inputs_are_within_the_grid(cfg):
    known = {r.path for r in grid.all_runs(cfg)}
    for tid in ("1", "2", "3", "4", "5", "6", "7", "8", "9"):
        files = tables.table_inputs(cfg, tid)
        assert files
        for f in files:
            if f.startswith("runs/"):
                assert f.rsplit("/", 1)[0] in known, f
    assert "datamaps/nli/tinybert/seed0.parquet" in tables.table_inputs(cfg, "8")
    assert compare.compare_inputs(cfg) == [t for t in grid.table_targets(cfg) if t.endswith(".csv")]
