"""The engine's schedules: checkpoint steps, learning-rate warm-up and decay, plateau stepping.

  checkpoints   K evenly spaced evaluation steps, ``round(k * steps / K)`` for k = 1..K; a
                full run's checkpoint k is what halting at fraction k/K reads
  linear        transformers' ``get_linear_schedule_with_warmup`` (the paper's "linear learning
                rate scheduler with 10% warmup"), warm-up steps ``int(ratio * steps)`` as the
                official code (``utils.construct_scheduler``); stepped every optimiser step
  plateau       ``ReduceLROnPlateau`` with transformers' ``reduce_lr_on_plateau`` defaults
                (mode min, factor 0.1, patience 10; JTT), stepped at every checkpoint on the
                running mean of the training loss since the first step, as the official trainer
                steps it on ``avg_loss`` (``trainers.train``). No evaluation score steers training.

A limited run (appendix A.1) has the whole schedule set for its shorter ``steps``; halting
needs no schedule of its own (it reads a checkpoint of the full run).
"""

from __future__ import annotations

import torch


def checkpoint_steps(steps: int, k: int) -> list[int]:
    """The K evaluation steps, evenly spaced: round(k * steps / K) for k = 1..K."""
    return [round(i * steps / k) for i in range(1, k + 1)]


def make_scheduler(optimizer: torch.optim.Optimizer, spec: dict):
    """The spec's scheduler: 'linear' (stepped per step) or 'plateau' (stepped per checkpoint)."""
    if spec["scheduler"] == "plateau":
        p = spec["plateau"]
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=p["factor"], patience=p["patience"]
        )
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, int(spec["warmup_ratio"] * spec["steps"]), spec["steps"])
