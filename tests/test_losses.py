"""Per-example losses: ERM CE, JTT weights, product of experts (Sanh et al. 2021)."""

import math

import pytest
import torch
import torch.nn.functional as F

from ftft.train.engine import example_losses, poe_loss

LABELS = torch.tensor([0, 1, 2, 0, 1, 2])
WEIGHT = torch.tensor([1.0, 4.0, 1.0, 4.0, 1.0, 3.0])


def _logits(seed: int = 0) -> torch.Tensor:
    return torch.randn(6, 3, generator=torch.Generator().manual_seed(seed))


def test_cross_entropy_and_poe_times_weight_computed_in_float32():
    logits, ce = _logits(), F.cross_entropy(_logits(), LABELS, reduction="none")
    out = example_losses(logits, LABELS)
    assert out.shape == (6,)
    torch.testing.assert_close(out, ce)
    torch.testing.assert_close(out.mean(), F.cross_entropy(logits, LABELS))
    torch.testing.assert_close(example_losses(logits, LABELS, weight=WEIGHT), WEIGHT * ce)
    half = example_losses(logits.to(torch.bfloat16), LABELS)
    assert half.dtype == torch.float32
    assert half == pytest.approx(F.cross_entropy(logits.to(torch.bfloat16).float(), LABELS, reduction="none"))
    bias_p = torch.softmax(_logits(1), -1)
    # PoE: CE of softmax(log p_main + log p_bias) = renormalised product p_main * p_bias
    prod = torch.softmax(logits, -1) * bias_p
    expected = -(prod[torch.arange(6), LABELS] / prod.sum(-1)).log()
    torch.testing.assert_close(poe_loss(logits, LABELS, bias_p.log()), expected)
    both = 0.3 * ce + expected
    torch.testing.assert_close(example_losses(logits, LABELS, bias_logp=bias_p.log(), ce_weight=0.3), both)
    weighted = example_losses(logits, LABELS, weight=WEIGHT, bias_logp=bias_p.log(), ce_weight=0.3)
    torch.testing.assert_close(weighted, WEIGHT * both)


def test_poe_gradient_vanishes_where_bias_is_certain_and_right():
    logits = _logits().requires_grad_(True)
    # examples 0-2: bias model certain of the gold label (log of one-hot, floored at 1e-6 as in
    # the subset files); examples 3-5: bias model certain of a wrong label
    bias_logp = torch.full((6, 3), math.log(1e-6))
    bias_logp[torch.arange(3), LABELS[:3]] = 0.0
    bias_logp[torch.arange(3, 6), (LABELS[3:] + 1) % 3] = 0.0
    poe_loss(logits, LABELS, bias_logp).sum().backward()
    assert logits.grad[:3].abs().max() < 1e-4  # nothing left to learn from these
    assert logits.grad[3:].abs().max() > 0.1  # the bias is wrong: the main model must learn
    assert not poe_loss(logits.detach(), LABELS, bias_logp.clone().requires_grad_(True)).requires_grad  # frozen bias
    # with the CE term: on examples the bias explains, only the CE part's gradient is left
    logits.grad = None
    bias_logp[torch.arange(3, 6)] = math.log(1e-6)
    bias_logp[torch.arange(3, 6), LABELS[3:]] = 0.0
    example_losses(logits, LABELS, bias_logp=bias_logp, ce_weight=0.3, poe_weight=1.0).sum().backward()
    ref = logits.detach().clone().requires_grad_(True)
    (0.3 * F.cross_entropy(ref, LABELS, reduction="sum")).backward()
    torch.testing.assert_close(logits.grad, ref.grad, atol=1e-4, rtol=0)
