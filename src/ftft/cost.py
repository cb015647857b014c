"""Compute costs: token counts -> forward FLOPs -> cost units (paper Table 4, Cost columns).

Forward FLOPs of one pass over a training set (Kaplan et al. 2020, eq. 2.2, per token):
    C_forward = 2 * N_nonembed + 2 * n_layer * n_ctx * d_model
summed over the real (non-padding) tokens of every training instance, where N_nonembed is
the number of parameters outside the embedding matrices and n_ctx the instance's length.
The paper's Table 4 reports this for one epoch in PFLOPs (1e15).

Cost of a method, in units of one full ERM run of the unit model (ELECTRA-Small):
    cost = (ref_cost_per_epoch * ref_epochs_ratio + main_cost * step_fraction) / unit
with every full run trained for the same number of steps, i.e.
    cost = (F_ref + F_main * fraction) / F_unit
where F_m is model m's forward FLOPs per epoch (the training step count is the same for all
full runs of a task, so the epoch count cancels). ERM/PoE/random have no reference cost
counted (PoE's TinyBERT is negligible and the paper prints 32.0 for it).
"""

from __future__ import annotations

from collections.abc import Iterable


def forward_flops_per_token(non_embedding_params: int, n_layer: int, d_model: int, n_ctx: int) -> float:
    return 2.0 * non_embedding_params + 2.0 * n_layer * n_ctx * d_model


def forward_flops(lengths: Iterable[int], non_embedding_params: int, n_layer: int, d_model: int) -> float:
    """Forward FLOPs of one pass over instances with the given token lengths."""
    total = 0.0
    for n in lengths:
        total += n * forward_flops_per_token(non_embedding_params, n_layer, d_model, n)
    return total
