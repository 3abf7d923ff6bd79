"""A reporter that behaves like Ctrl-C arriving during a given step (interrupt-and-resume tests)."""

from __future__ import annotations

from dbooth.util.reporting import Reporter


class InterruptAt(Reporter):
    """Behaves like Ctrl-C arriving during the given step."""

    def __init__(self, step: int):
        self.step = step

    def advance(self, completed: int, **fields) -> None:
        if completed == self.step:
            raise KeyboardInterrupt
