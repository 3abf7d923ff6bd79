"""A step's figures read from the device in batches: no host sync per step.

Every step produces a few 0-d tensors: the loss (and its prior and instance parts) and the NaN guard's
values (the loss, the gradient norm, the fused backward pass's flag). Reading each with ``.item()`` makes
the host wait for the device several times a step, and at small batches the GPU mostly waits for the host
already. ``Readings`` keeps them on the device and reads them all in one copy when ``due()`` (about once a
second, and every step while steps are slower than that) and whenever something must see them first: a
checkpoint, validation, scoring, the final save. Numerics are untouched: the same values arrive, later.

The guard still stops a run at the first non-finite value with the same one-line message and step number;
what changes is that up to a second of steps may have run past it first. Nothing is written in between
(every write flushes first), so "no weights were written from this step" stays true.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from dbooth.training.numerics import check_finite

READ_EVERY_SECONDS = 1.0  # how often a single process reads its losses (and lets the guard see them)


class Readings:
    def __init__(self, guard: dict, *, every_seconds: float = READ_EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.guard = guard  # check_finite's mixed_precision and learning_rate
        self.every_seconds = every_seconds
        self.clock = clock
        # in the order the loop met them: ("check", step, what, value) and ("step", step, figures)
        self._pending: list[tuple] = []
        self._last = clock()

    def check(self, step: int, what: str, value) -> None:
        """The guard's value for ``what`` at ``step`` (a 0-d tensor or a float): must be finite."""
        self._pending.append(("check", step, what, value))

    def record(self, step: int, figures: dict) -> None:
        """A finished step's figures (loss, lr, ...): tensors, floats or None."""
        self._pending.append(("step", step, figures))

    def due(self) -> bool:
        return bool(self._pending) and self.clock() - self._last >= self.every_seconds

    def flush(self, last_checkpoint: int | None, on_step: Callable[[int, dict], None]) -> None:
        """Read everything pending in one copy, then replay it in order: ``on_step(step, figures as floats)``
        for each finished step, and the guard's error at the first non-finite check (after the steps before it)."""
        pending, self._pending = self._pending, []
        self._last = self.clock()
        values = [v for event in pending for v in ([event[3]] if event[0] == "check" else event[2].values())]
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        read = torch.stack([t.detach().float().reshape(()) for t in tensors]).tolist() if tensors else []
        as_float = dict(zip(map(id, tensors), read))  # one device-to-host copy for all of them

        def number(v):
            return as_float[id(v)] if isinstance(v, torch.Tensor) else v

        for event in pending:
            if event[0] == "check":
                _, step, what, value = event
                check_finite(number(value), what, step, last_checkpoint=last_checkpoint, **self.guard)
            else:
                _, step, figures = event
                on_step(step, {k: number(v) for k, v in figures.items()})
