"""Per-example losses: ERM CE, JTT weights, product of experts (Sanh et al. 2021)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ftft.losses import example_losses, poe_loss


def _batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    return logits, labels


def test_no_extras_is_cross_entropy():
    logits, labels = _batch()
    out = example_losses(logits, labels)
    assert out.shape == (6,)
    torch.testing.assert_close(out, F.cross_entropy(logits, labels, reduction="none"))
    torch.testing.assert_close(out.mean(), F.cross_entropy(logits, labels))


def test_jtt_weighted_ce_is_weight_times_ce():
    logits, labels = _batch()
    w = torch.tensor([1.0, 4.0, 1.0, 4.0, 1.0, 1.0])
    ce = F.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(example_losses(logits, labels, weight=w), w * ce)


def test_poe_loss_value():
    logits, labels = _batch()
    bias_p = torch.softmax(torch.randn(6, 3, generator=torch.Generator().manual_seed(1)), -1)
    bias_logp = bias_p.log()
    # PoE: CE of softmax(log p_main + log p_bias) = renormalised product p_main * p_bias
    prod = torch.softmax(logits, -1) * bias_p
    expected = -(prod[torch.arange(6), labels] / prod.sum(-1)).log()
    torch.testing.assert_close(poe_loss(logits, labels, bias_logp), expected)
    ce = F.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(
        example_losses(logits, labels, bias_logp=bias_logp, ce_weight=0.3, poe_weight=1.0), 0.3 * ce + expected
    )


def test_poe_gradient_vanishes_where_bias_is_certain_and_right():
    logits, labels = _batch()
    logits.requires_grad_(True)
    # examples 0-2: bias model certain of the gold label (log of one-hot, floored at 1e-6 as in
    # the subset files); examples 3-5: bias model certain of a wrong label
    floor = math.log(1e-6)
    bias_logp = torch.full((6, 3), floor)
    bias_logp[torch.arange(3), labels[:3]] = 0.0
    wrong = (labels[3:] + 1) % 3
    bias_logp[torch.arange(3, 6), wrong] = 0.0
    poe_loss(logits, labels, bias_logp).sum().backward()
    grad = logits.grad
    assert grad[:3].abs().max() < 1e-4  # nothing left to learn from these
    assert grad[3:].abs().max() > 0.1  # the bias is wrong: the main model must learn
    # the frozen bias receives no gradient
    b = bias_logp.clone().requires_grad_(True)
    assert not poe_loss(logits.detach(), labels, b).requires_grad


def test_poe_combined_gradient_is_ce_part_only_on_certain_examples():
    logits, labels = _batch()
    logits.requires_grad_(True)
    bias_logp = torch.full((6, 3), math.log(1e-6))
    bias_logp[torch.arange(6), labels] = 0.0
    example_losses(logits, labels, bias_logp=bias_logp, ce_weight=0.3, poe_weight=1.0).sum().backward()
    ref = logits.detach().clone().requires_grad_(True)
    (0.3 * F.cross_entropy(ref, labels, reduction="sum")).backward()
    torch.testing.assert_close(logits.grad, ref.grad, atol=1e-4, rtol=0)


def test_weight_and_poe_together():
    logits, labels = _batch()
    w = torch.tensor([2.0, 1.0, 1.0, 1.0, 1.0, 3.0])
    bias_logp = torch.log_softmax(torch.randn(6, 3), -1)
    base = example_losses(logits, labels, bias_logp=bias_logp, ce_weight=0.3)
    torch.testing.assert_close(example_losses(logits, labels, weight=w, bias_logp=bias_logp, ce_weight=0.3), w * base)


def test_half_precision_logits_computed_in_float32():
    logits, labels = _batch()
    out = example_losses(logits.to(torch.bfloat16), labels)
    assert out.dtype == torch.float32
    assert out == pytest.approx(F.cross_entropy(logits.to(torch.bfloat16).float(), labels, reduction="none"))
