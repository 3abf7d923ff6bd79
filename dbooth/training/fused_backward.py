"""The optimizer applied inside the backward pass (``train.fused_backward``): no full gradient buffer.

Each trained parameter gets a post-accumulate-grad hook that steps an AdamW of its own as soon as its
gradient is complete and then frees that gradient, so at most a few gradients exist at any moment
instead of one per parameter (for an SD 1.5 full fine-tune, 3.2 GB less at the peak). What it costs:

- Clipping is per parameter, as kohya's fused backward pass does it: each gradient is scaled to at most
  ``max_grad_norm`` on its own, since the global norm is only known after the whole backward, when the
  earlier parameters have already been updated.
- No gradient accumulation (a step per micro-batch would be a different optimisation), no fp16
  GradScaler (it unscales all gradients together), AdamW only (``inputs.py`` refuses the rest).
- The NaN guard cannot look at the gradient norm before the update, so each gradient is checked as it
  arrives: a non-finite one is zeroed before its AdamW step (nothing NaN reaches the weights or the
  states) and remembered, and the loop stops the run with the ordinary path's message when it next reads
  the steps' figures (``dbooth.training.readings``). One flag per step, a device tensor: no host sync.

The run's AdamW (the one accelerate prepares and the LR scheduler drives) keeps the states: every
per-parameter AdamW shares its ``state`` mapping and reads its learning rate from it, so checkpoints,
resume and the schedule work as for the ordinary step. Its own ``step()`` finds no gradients and does nothing.
"""

from __future__ import annotations

import torch


class FusedBackward:
    def __init__(self, optimizer: torch.optim.Optimizer, max_grad_norm: float | None):
        self.optimizer = optimizer  # the run's AdamW: param groups with the scheduled lr, and the states
        self.max_grad_norm = max_grad_norm
        self.steppers: dict[torch.Tensor, tuple[torch.optim.Optimizer, int]] = {}
        self.handles = []
        self.finite: torch.Tensor | None = None  # all of this step's gradients finite so far (a 0-d bool tensor)
        for index, group in enumerate(optimizer.param_groups):
            settings = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                self.steppers[p] = (torch.optim.AdamW([{"params": [p], **settings}]), index)
                self.handles.append(p.register_post_accumulate_grad_hook(self._step))

    def _step(self, p: torch.Tensor) -> None:
        own, index = self.steppers[p]
        # looked up at every step: loading a checkpoint (load_state_dict) replaces the run optimizer's
        # state mapping and param groups, and the scheduler sets the learning rate in the new groups
        own.state = self.optimizer.state
        own.param_groups[0]["lr"] = self.optimizer.param_groups[index]["lr"]
        finite = torch.isfinite(p.grad).all()
        self.finite = finite if self.finite is None else self.finite & finite
        p.grad.masked_fill_(~finite, 0.0)  # a non-finite gradient never reaches the weights
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([p], self.max_grad_norm, foreach=False)
        own.step()
        p.grad = None

    def gradients_finite(self) -> torch.Tensor | float:
        """1.0 when every gradient since the last call was finite, else NaN (for the guard); resets. A 0-d
        tensor on the device, so that asking costs no host sync (``dbooth.training.readings``)."""
        finite, self.finite = self.finite, None
        return 1.0 if finite is None else torch.where(finite, 1.0, float("nan"))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def inner_optimizer(optimizer) -> torch.optim.Optimizer:
    """The torch optimizer under accelerate's wrapper."""
    return getattr(optimizer, "optimizer", optimizer)
