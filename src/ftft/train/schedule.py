"""The engine's schedules (sources in docs/FIDELITY.md): K checkpoints evenly spaced at ``round(k * steps / K)``
(a full run's checkpoint k is what halting at fraction k/K reads); the linear schedule with ``int(ratio * steps)``
warm-up steps, stepped every optimiser step; ``ReduceLROnPlateau`` (JTT), stepped at every checkpoint on the running
mean training loss since the first step. No evaluation score steers training.
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
