"""Per-example training losses of the methods: (weighted) cross-entropy and product of experts.

One function serves every method, so the engine never forks:
  ERM/DM/random: ce_weight=1, no weights, no bias
  weighted:      per-example ``weight`` from the subset (JTT upsamples instead: subset ``copies``)
  PoE:           ce_weight * CE(main) + poe_weight * CE(log_softmax(main) + bias_logp)
                 (Sanh et al. 2021; the frozen bias model's log-probabilities are precomputed)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def poe_loss(logits: torch.Tensor, labels: torch.Tensor, bias_logp: torch.Tensor) -> torch.Tensor:
    """Per-example product-of-experts loss: CE of the renormalised sum of log-probabilities.

    The bias model is frozen: its log-probabilities are constants (no gradient flows to them).
    """
    combined = F.log_softmax(logits.float(), dim=-1) + bias_logp.float().detach()
    return F.cross_entropy(combined, labels, reduction="none")


def example_losses(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor | None = None,
    bias_logp: torch.Tensor | None = None,
    ce_weight: float = 1.0,
    poe_weight: float = 1.0,
) -> torch.Tensor:
    """Loss per example (shape [B]); the engine averages it over the batch."""
    loss = F.cross_entropy(logits.float(), labels, reduction="none")
    if bias_logp is not None:
        loss = ce_weight * loss + poe_weight * poe_loss(logits, labels, bias_logp)
    if weight is not None:
        loss = loss * weight.float()
    return loss
