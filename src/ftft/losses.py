"""Per-example training losses: the method's main loss (cross-entropy unless ``Method.loss``), times the
subset's ``weight``, plus the product-of-experts term when the subset carries a bias model's
log-probabilities (Sanh et al. 2021: ce_weight * CE(main) + poe_weight * CE(log_softmax(main) + bias_logp)).
One function serves every method, so the engine never forks.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from . import methods


def poe_loss(logits: torch.Tensor, labels: torch.Tensor, bias_logp: torch.Tensor) -> torch.Tensor:
    """Per-example product-of-experts loss: CE of the renormalised sum of log-probabilities (the bias is frozen)."""
    combined = F.log_softmax(logits.float(), dim=-1) + bias_logp.float().detach()
    return F.cross_entropy(combined, labels, reduction="none")


def example_losses(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias_logp: torch.Tensor | None = None,
    ce_weight: float = 1.0,
    poe_weight: float = 1.0,
    main_loss=None,
) -> torch.Tensor:
    """Loss per example (shape [B]); the engine averages it over the batch. ``main_loss``: (logits, labels) -> [B]."""
    loss = (main_loss or partial(F.cross_entropy, reduction="none"))(logits.float(), labels)
    if bias_logp is not None:
        loss = ce_weight * loss + poe_weight * poe_loss(logits, labels, bias_logp)
    if weight is not None:
        loss = loss * weight.float()
    return loss


def for_spec(spec: dict):
    """``example_losses`` with the spec's method loss and PoE weights bound: (logits, labels, weight, bias_logp)."""
    poe = spec["poe"] or {"ce_weight": 1.0, "poe_weight": 1.0}
    return partial(example_losses, **poe, main_loss=methods.get(spec["run"]["method"]).loss)
