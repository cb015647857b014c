"""Compute costs: token counts -> forward FLOPs -> cost units (paper Table 4, Cost columns).

Forward FLOPs of one pass over a training set (Kaplan et al. 2020, eq. 2.2, per token):
    C_forward = 2 * N_nonembed + 2 * n_layer * n_ctx * d_model
summed over every position of each training batch padded to its longest instance (the engine
also records the real-token count), where N_nonembed is the number of parameters outside the
embedding matrices and n_ctx the padded length. The paper's Table 4 labels one epoch's count
"PFLOPs" but prints FLOPs / 1e12 (docs/FIDELITY.md); ``forward_flops`` below sums real lengths.

Cost of a method, in units of one full ERM run of the unit model (ELECTRA-Small):
    cost = (ref_cost_per_epoch * ref_epochs_ratio + main_cost * step_fraction) / unit
with every full run trained for the same number of steps, i.e.
    cost = (F_ref + F_main * fraction) / F_unit
where F_m is model m's forward FLOPs per epoch (the training step count is the same for all
full runs of a task, so the epoch count cancels). A method without ``ref_cost`` (ERM, random, PoE) counts
the main model alone (PoE's TinyBERT is negligible and the paper prints 32.0 for it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from . import methods


def forward_flops_per_token(non_embedding_params: int, n_layer: int, d_model: int, n_ctx: int) -> float:
    return 2.0 * non_embedding_params + 2.0 * n_layer * n_ctx * d_model


def forward_flops(lengths: Iterable[int], non_embedding_params: int, n_layer: int, d_model: int) -> float:
    """Forward FLOPs of one pass over instances with the given token lengths."""
    total = 0.0  # a plain loop: Python 3.12's sum() compensates, which would move the last digits
    for n in lengths:
        total += n * forward_flops_per_token(non_embedding_params, n_layer, d_model, n)
    return total


# --- method costs (Tables 3 and 9) -------------------------------------------------------------

#: methods whose cost includes training a reference model (``Method.ref_cost``; PoE's bias model is not counted)
REF_COST_METHODS = tuple(m.name for m in methods.REGISTRY.values() if m.ref_cost)
#: the paper's rounding of F_m / F_unit before combining (see ``method_cost``)
PAPER_SIG_FIGS = 2


def round_sig(x: float, sig: int) -> float:
    """Round ``x`` to ``sig`` significant figures (0 stays 0)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, sig - 1 - math.floor(math.log10(abs(x))))


def method_cost(
    method: str,
    f_main: float,
    f_unit: float,
    f_ref: float | None = None,
    fraction: float = 1.0,
    sig_figs: int | None = PAPER_SIG_FIGS,
) -> float:
    """Cost of one table row in units of a full ERM run of the unit model (the formula above). Each ratio
    F_m / F_unit is first rounded to ``sig_figs`` significant figures (None: unrounded), which reproduces the
    paper's printed costs (DeBERTaV3-Large 31.9 -> 32, -Base 8.97 -> 9.0, -Small 4.49 -> 4.5; docs/FIDELITY.md)."""
    if f_unit <= 0:
        raise ValueError(f"unit model FLOPs must be > 0, got {f_unit}")

    def ratio(f: float) -> float:
        r = f / f_unit
        return round_sig(r, sig_figs) if sig_figs else r

    main = ratio(f_main) * float(fraction)
    if not methods.get(method).ref_cost:
        return main
    if f_ref is None:
        raise ValueError(f"method {method!r} needs the reference model's FLOPs")
    return ratio(f_ref) + main
