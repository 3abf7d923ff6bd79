"""The EMA copy of a run's trained tensors: updated every N steps, checkpointed, swapped in for outputs.

Only parameters that train are averaged (a LoRA's adapters, or the whole UNet for full fine-tuning).
The average lives in float32 on the training device, or on the CPU when memory is tight; its decay
depends only on the step, so a resumed run continues the same average as an uninterrupted one.
"""

from __future__ import annotations

import contextlib

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


class EmaWeights:
    def __init__(self, models: list[torch.nn.Module], cfg):
        self.cfg = cfg
        self.params: dict[str, torch.nn.Parameter] = {
            f"{i}.{name}": p for i, model in enumerate(models) for name, p in model.named_parameters() if p.requires_grad
        }
        device = "cpu" if cfg.on_cpu else None
        self.shadow = {k: p.detach().to(device or p.device, torch.float32, copy=True) for k, p in self.params.items()}

    def after_step(self, step: int) -> None:
        """Update the average if ``step`` is one of every ``cfg.every`` steps."""
        if step % self.cfg.every == 0:
            ema_update_(self.shadow, self.params, ema_decay(step // self.cfg.every - 1, self.cfg.decay))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.contiguous() for k, v in self.shadow.items()}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(tensors))
        if missing:
            raise RuntimeError(f"EMA checkpoint lacks {len(missing)} tensors, e.g. {missing[0]}")
        for k, avg in self.shadow.items():
            avg.copy_(tensors[k])

    def copy_to_models(self) -> None:
        """Overwrite the trained parameters with their averages (before the final save)."""
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(self.shadow[k].to(p.device, p.dtype))

    @contextlib.contextmanager
    def applied(self):
        """The averages in the models for the duration (validation samples), the live weights after."""
        live = {k: p.detach().clone() for k, p in self.params.items()}
        self.copy_to_models()
        try:
            yield
        finally:
            with torch.no_grad():
                for k, p in self.params.items():
                    p.copy_(live[k])


def ema_applied(ema: EmaWeights | None, use: bool):
    """``ema.applied()`` when there is an EMA whose weights the outputs should use, else a no-op."""
    return ema.applied() if ema is not None and use else contextlib.nullcontext()
