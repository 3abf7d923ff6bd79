"""Where a run's time goes: load, caching, steps, checkpoints, validation, save.

Phases nest: time spent in an inner phase (a checkpoint inside the steps) counts for the inner one only,
so the phases and ``other`` (optimizer set-up, resuming, bookkeeping) add up to ``total``. Model-free, so
``dbooth status`` can describe a run's split without importing torch.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

PHASES = ("load", "caching", "steps", "checkpoints", "validation", "save")


class Timings:
    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.began = clock()
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.background = 0.0  # checkpoint files written by the worker thread, beside the steps
        self._inner: list[float] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.clock()
        self._inner.append(0.0)
        try:
            yield
        finally:
            inner = self._inner.pop()
            elapsed = self.clock() - start
            self.seconds[name] += elapsed - inner
            if self._inner:
                self._inner[-1] += elapsed

    def as_dict(self) -> dict:
        """Seconds per phase, ``other``, ``total`` and ``checkpoint_writes_background`` (not part of the total)."""
        total = self.clock() - self.began
        out = {k: round(v, 3) for k, v in self.seconds.items()}
        out["other"] = round(max(total - sum(self.seconds.values()), 0.0), 3)
        out["total"] = round(total, 3)
        out["checkpoint_writes_background"] = round(self.background, 3)
        return out


def describe(timings: dict) -> str:
    """One line: ``load 2.1 s, caching 0.4 s, steps 31.0 s, ... ; total 38.2 s``."""
    parts = []
    for name in (*PHASES, "other"):
        if name in timings:
            text = f"{name} {timings[name]:.1f} s"
            if name == "checkpoints" and timings.get("checkpoint_writes_background"):
                text += f" (+{timings['checkpoint_writes_background']:.1f} s written beside the steps)"
            parts.append(text)
    return ", ".join(parts) + f"; total {timings.get('total', 0.0):.1f} s"
