"""How long-running library calls tell the outside world what they are doing.

The library never prints; the CLI passes a reporter that draws rich progress bars.
"""

from __future__ import annotations


class Reporter:
    """Silent by default; subclass to show progress."""

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def start(self, description: str, total: int, completed: int = 0) -> None:
        pass

    def advance(self, completed: int, **fields) -> None:
        """``completed`` is the absolute count so far; fields are shown beside the bar (loss, lr, ...)."""

    def stop(self) -> None:
        pass
