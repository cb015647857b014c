"""Step budgets and learning-rate schedules: halting vs limiting (paper appendix A.1).

Two ways to train "for a fraction f of the steps":
  halting   train the full run (schedule set for ``total_steps``) and read the checkpoint at
            f * total_steps: the learning rate there is still high (linear decay stopped
            part-way). Needs no extra run: it is checkpoint k = f * K of the full run.
  limiting  a separate run whose schedule is set for ``round(f * total_steps)`` steps: warmup
            and linear decay to zero happen within the shorter budget.

The linear schedule is the one of transformers' ``get_linear_schedule_with_warmup`` (the
paper's "linear learning rate scheduler with 10% warmup"); the number of warmup steps is
``ceil(warmup_ratio * steps)`` as in ``TrainingArguments.get_warmup_steps``.
"""

from __future__ import annotations

import math
from fractions import Fraction


def _fraction(value) -> Fraction:
    frac = Fraction(value) if isinstance(value, str | int | Fraction) else Fraction(value).limit_denominator(1000)
    if not 0 < frac <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {value!r}")
    return frac


def checkpoint_steps(total_steps: int, K: int) -> list[int]:
    """Steps at which a run of ``total_steps`` saves and evaluates its K checkpoints."""
    return [round(k * total_steps / K) for k in range(1, K + 1)]


def halting_steps(total_steps: int, K: int, fraction) -> int:
    """Step of the full run's checkpoint that halting at ``fraction`` evaluates.

    ``fraction * K`` must be a whole checkpoint index (e.g. 1/3 of 15 checkpoints = the 5th);
    a fraction between checkpoints has no evaluated model and raises ValueError.
    """
    frac = _fraction(fraction)
    k = frac * K
    if k.denominator != 1:
        raise ValueError(f"fraction {frac} of {K} checkpoints is not a checkpoint (k = {float(k):.3f})")
    return checkpoint_steps(total_steps, K)[int(k) - 1]


def warmup_steps(steps: int, warmup_ratio: float) -> int:
    """Warmup steps of a schedule set for ``steps``: ceil(ratio * steps) (transformers' rule)."""
    return int(math.ceil(warmup_ratio * steps))


def limiting_schedule(total_steps: int, fraction, warmup_ratio: float) -> tuple[int, int]:
    """(steps, warmup_steps) of a limiting run: the whole schedule is set for the short budget.

    steps = round(fraction * total_steps) (at least 1), as ``grid.Run.steps``.
    """
    steps = max(1, round(total_steps * _fraction(fraction)))
    return steps, warmup_steps(steps, warmup_ratio)


def linear_lr_lambda(steps: int, warmup: int):
    """LR multiplier for ``torch.optim.lr_scheduler.LambdaLR``: linear warmup then linear decay to 0.

    Identical to transformers.get_linear_schedule_with_warmup(num_warmup_steps=warmup,
    num_training_steps=steps).
    """

    def fn(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return fn


def lr_curve(steps: int, warmup: int, base_lr: float = 1.0, until: int | None = None) -> list[float]:
    """Learning rate used at each optimizer step 0 .. until-1 (default: the whole schedule),
    computed with torch's LambdaLR exactly as the engine steps it."""
    import torch

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_lr_lambda(steps, warmup))
    out = []
    for _ in range(steps if until is None else until):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out
