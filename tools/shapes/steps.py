"""The optimiser step that every toy-world training loop takes, and the EMA its snapshots are made of.

The VAE, decoder, UNet, upscaler and oracle loops differ in their batches and losses, not in the step:
learning rate, ``zero_grad``, ``backward``, clip, ``step``, scheduler, EMA, in that order, then the loss
their log lines show. Taking it in one place keeps that order the same in every script, which the
recipes in the shipped models' READMEs rely on to reproduce.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch

from dbooth.training.ema import ema_decay, ema_update_


class EMA:
    """An averaged copy of a module, saved by the snapshots instead of the live weights.

    The decay follows the product's warm-up ramp (``dbooth.training.ema``) one update later: update ``n``
    (from 1) decays by ``ema_decay(n)``, as when these models were trained."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    def update(self, module: torch.nn.Module) -> None:
        self.updates += 1
        ema_update_(dict(self.shadow.named_parameters()), dict(module.named_parameters()),
                    ema_decay(self.updates, self.decay))


class Steps:
    """One loop's optimiser steps and their count.

    ``clip``: (parameters, max norm) clipped after ``backward``; ``scheduler`` steps after the optimiser;
    ``emas``: (EMA, live module) pairs updated after each step. ``smoothing``: the weight of the newest loss
    in ``smoothed`` (reading each loss waits for the device); without it only ``window_mean`` keeps the
    losses, summed on the device and read once per log line.
    """

    def __init__(self, optimiser: torch.optim.Optimizer, *,
                 clip: tuple[Iterable[torch.Tensor], float] | None = None, scheduler=None,
                 emas: Sequence[tuple[EMA, torch.nn.Module]] = (), smoothing: float | None = None):
        self.optimiser, self.scheduler, self.emas, self.smoothing = optimiser, scheduler, emas, smoothing
        self.clip_params, self.max_norm = (list(clip[0]), clip[1]) if clip else ([], None)
        self.count = 0
        self.smoothed: float | None = None
        self._window: torch.Tensor | None = None
        self._window_steps = 0

    def take(self, loss: torch.Tensor, lr: float | None = None) -> int:
        """One update from ``loss`` (at learning rate ``lr``, when given); returns the steps taken so far."""
        if lr is not None:
            for group in self.optimiser.param_groups:
                group["lr"] = lr
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.clip_params, self.max_norm)
        self.optimiser.step()
        if self.scheduler is not None:
            self.scheduler.step()
        for ema, module in self.emas:
            ema.update(module)
        self.count += 1
        self._track(loss.detach())
        return self.count

    def due(self, every: int) -> bool:
        """Whether the step just taken is one of every ``every``: time for a log line."""
        return self.count % every == 0

    def window_mean(self) -> float:
        """The mean loss of the steps since the last call."""
        mean = float(self._window) / self._window_steps
        self._window, self._window_steps = None, 0
        return mean

    def _track(self, loss: torch.Tensor) -> None:
        if self.smoothing is not None:
            value, weight = loss.item(), self.smoothing
            self.smoothed = value if self.smoothed is None else (1 - weight) * self.smoothed + weight * value
            return
        self._window = loss if self._window is None else self._window + loss
        self._window_steps += 1
