"""The clock the built-in models' pretraining scripts share: a wall-clock budget or a fixed step count, the
learning-rate schedule over it, snapshot times and log lines stamped with the seconds since the start."""

from __future__ import annotations

import math
import time


def log(msg: str, start: float) -> None:
    print(f"[{time.time() - start:7.1f}s] {msg}", flush=True)


class RunClock:
    """``steps`` fixes the step count (reproducible); otherwise training runs until ``minutes`` after ``start``."""

    def __init__(self, start: float, minutes: float, steps: int | None, snapshot_minutes: float):
        self.start, self.budget, self.steps = start, minutes * 60, steps
        self.snapshot_seconds, self.last_snapshot = snapshot_minutes * 60, time.time()

    def running(self, step: int) -> bool:
        return step < self.steps if self.steps else time.time() - self.start < self.budget

    def progress(self, step: int) -> float:
        """How far through the run, 0..1."""
        done = step / self.steps if self.steps else (time.time() - self.start) / self.budget
        return min(done, 1.0)

    def learning_rate(self, base: float, step: int, warmup: int) -> float:
        """Linear warm-up over ``warmup`` steps, then cosine decay to 10% of ``base`` at the end of the run."""
        return base * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * self.progress(step))))

    def snapshot_due(self) -> bool:
        """True once every ``snapshot_minutes``; the caller then writes its snapshot."""
        if time.time() - self.last_snapshot <= self.snapshot_seconds:
            return False
        self.last_snapshot = time.time()
        return True
