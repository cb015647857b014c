"""Compute costs: token counts -> forward FLOPs -> cost units (paper Table 4 and the Cost columns).

Forward FLOPs per token (Kaplan et al. 2020, eq. 2.2): C_forward = 2 * N_nonembed + 2 * n_layer * n_ctx * d_model,
with N_nonembed the parameters outside the embedding matrices and n_ctx the (padded) length. The cost of a method,
in units of one full ERM run of the unit model, is (F_ref + F_main * fraction) / F_unit with F_m model m's forward
FLOPs per epoch (every full run of a task trains the same steps, so epochs cancel); a method without ``ref_cost``
(ERM, random, PoE) counts the main model alone. docs/FIDELITY.md gives the sources.
"""

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


def method_cost(
    method: str,
    f_main: float,
    f_unit: float,
    f_ref: float | None = None,
    fraction: float = 1.0,
    sig_figs: int | None = 2,
) -> float:
    """Cost of one table row in units of a full ERM run of the unit model (the formula above). Each ratio
    F_m / F_unit is first rounded to ``sig_figs`` significant figures (None: unrounded), which reproduces the
    paper's printed costs (DeBERTaV3-Large 31.9 -> 32, -Base 8.97 -> 9.0, -Small 4.49 -> 4.5; docs/FIDELITY.md)."""
    if f_unit <= 0:
        raise ValueError(f"unit model FLOPs must be > 0, got {f_unit}")

    def ratio(f: float) -> float:  # to ``sig_figs`` significant figures (0 stays 0)
        r = f / f_unit
        if not sig_figs or r == 0 or not math.isfinite(r):
            return r
        return round(r, sig_figs - 1 - math.floor(math.log10(abs(r))))

    main = ratio(f_main) * float(fraction)
    if not methods.get(method).ref_cost:
        return main
    if f_ref is None:
        raise ValueError(f"method {method!r} needs the reference model's FLOPs")
    return ratio(f_ref) + main
