"""Exponential moving average of trained weights, as small pure functions."""

from __future__ import annotations

import torch


def ema_decay(updates_done: int, max_decay: float) -> float:
    """The decay for the next update after ``updates_done`` earlier ones: (1 + n) / (10 + n), capped at ``max_decay``.

    The ramp (diffusers' and OneTrainer's) keeps a short run's average from clinging to the base weights:
    the first update keeps only 10% of the old average, and ``max_decay`` takes over after a few hundred.
    """
    return min(max_decay, (1 + updates_done) / (10 + updates_done))


@torch.no_grad()
def ema_update_(shadow: dict[str, torch.Tensor], params: dict[str, torch.Tensor], decay: float) -> None:
    """In place: ``shadow[k] = decay * shadow[k] + (1 - decay) * params[k]`` (params moved to each shadow's device)."""
    for name, avg in shadow.items():
        avg.lerp_(params[name].detach().to(avg.device, avg.dtype), 1.0 - decay)
