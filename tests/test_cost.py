"""Cost units: the paper's Table 4 PFLOPs reproduce its printed Table 3 / Table 9 costs."""

from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest

from ftft import cost, methods

PAPER = Path(cost.__file__).resolve().parent / "paper"
T4 = pd.read_csv(PAPER / "table4.csv")
F = {(r.model, r.task): float(r.pflops) * 1e15 for r in T4.itertuples()}
UNIT = "electra-small"


def printed_costs() -> list[tuple]:
    rows = []
    for t in ("table3.csv", "table9.csv"):
        df = pd.read_csv(PAPER / t, dtype=str, keep_default_na=False)
        for r in df[df["metric"] == "cost"].itertuples():
            rows.append((r.table, r.task, r.method, r.main_model, r.ref_model, r.step_fraction, float(r.mean)))
    return rows


def our_cost(method, main, ref, task, fraction, **kw) -> float:
    f_ref = F[(ref, task)] if methods.get(method).ref_cost else None
    return cost.method_cost(method, F[(main, task)], F[(UNIT, task)], f_ref, float(Fraction(fraction)), **kw)


@pytest.mark.parametrize("row", printed_costs(), ids=lambda r: f"t{r[0]}-{r[1]}-{r[2]}-{r[4] or 'none'}")
def test_paper_table4_reproduces_printed_costs(row):
    _table, task, method, main, ref, fraction, printed = row
    ours = our_cost(method, main, ref, task, fraction)
    assert ours == pytest.approx(printed, abs=0.15)
    assert round(ours, 1) == printed  # the 2-significant-figure ratios reproduce the print exactly


def test_exact_formulas_and_their_errors():
    printed = {round(c[-1], 1) for c in printed_costs()}  # every printed cost is covered by the parametrized test
    assert {15.2, 19.7, 32.0, 64.0, 11.7, 15.9, 23.9} <= printed and len(printed_costs()) == 14
    task = "nli"
    f_l, f_s, f_u = F[("deberta-v3-large", task)], F[("deberta-v3-small", task)], F[(UNIT, task)]
    assert our_cost("erm", "deberta-v3-large", "", task, "1", sig_figs=None) == pytest.approx(f_l / f_u)
    assert our_cost("ftft", "deberta-v3-large", "deberta-v3-small", task, "1/3", sig_figs=None) == pytest.approx(
        (f_s + f_l / 3) / f_u
    )
    # PoE and random: the main model only; JTT and DM: reference + main
    assert our_cost("poe", "deberta-v3-large", "tinybert", task, "1", sig_figs=None) == pytest.approx(f_l / f_u)
    assert cost.method_cost("random", 2.0, 1.0, sig_figs=None) == 2.0
    assert cost.method_cost("jtt", 2.0, 1.0, 3.0, sig_figs=None) == 5.0
    assert cost.method_cost("erm", 3.0, 3.0) == 1.0
    with pytest.raises(ValueError, match="reference"):
        cost.method_cost("dm", 1.0, 1.0)
    with pytest.raises(ValueError, match="unknown method"):
        cost.method_cost("boost", 1.0, 1.0)
    with pytest.raises(ValueError, match="unit"):
        cost.method_cost("erm", 1.0, 0.0)
    # forward FLOPs (Kaplan et al.): 2 N + 2 n_layer n_ctx d_model per token, summed over tokens
    assert cost.forward_flops_per_token(100, 2, 8, 5) == 2 * 100 + 2 * 2 * 5 * 8
    assert cost.forward_flops([5, 3], 100, 2, 8) == 5 * (200 + 160) + 3 * (200 + 96)
