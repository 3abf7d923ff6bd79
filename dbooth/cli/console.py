"""Rich output for the CLI: progress bars with rate and ETA, warnings, one-line errors."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from dbooth.util.reporting import Reporter



def _console(stderr: bool) -> Console:
    """On a terminal rich wraps at its width; piped or saved, a line stays whole, so a path or a command in it can be
    copied (rich would hard-wrap at 80 columns)."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty())
    return Console(stderr=stderr, highlight=False, soft_wrap=piped)


console = _console(stderr=True)  # progress, warnings and errors
answer = _console(stderr=False)  # a command's result (tables, paths): stdout, so it can be piped or saved


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("  -- it/s", style="progress.data.speed")
        return Text(f"{speed:6.2f} it/s" if speed >= 0.1 else f"{1 / speed:6.1f} s/it", style="progress.data.speed")


class _Fields(ProgressColumn):
    def render(self, task) -> Text:
        parts = []
        for key, value in task.fields.items():
            if isinstance(value, float):
                value = f"{value:.2e}" if key == "lr" else f"{value:.4f}"
            parts.append(f"{key} {value}")
        return Text("  ".join(parts), style="cyan")


class RichReporter(Reporter):
    """Progress bars on a terminal; on a pipe or a log file (where a bar would print nothing until the
    end), one plain line every ``log_every`` seconds and at the end, with rate, ETA and the fields."""

    def __init__(self, out: Console = console, *, log_every: float = 10.0, clock=time.monotonic):
        self.console = out
        self.progress: Progress | None = None
        self.task = None
        self.log_every, self.clock = log_every, clock
        self._plain: dict | None = None

    def info(self, message: str) -> None:
        self.console.print(f"[dim]{message}[/]")

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}")

    def start(self, description: str, total: int, completed: int = 0) -> None:
        self.stop()
        if not self.console.is_terminal:
            now = self.clock()
            self._plain = {"what": description, "total": total, "first": completed, "done": completed,
                           "began": now, "shown": now, "fields": {}}
            return
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Rate(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            _Fields(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, completed=completed)

    def advance(self, completed: int, **fields) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=completed, **fields)
        elif self._plain is not None:
            self._plain.update(done=completed, fields=fields)
            if self.clock() - self._plain["shown"] >= self.log_every:
                self._print_plain()

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self._plain is not None:
            if self._plain["done"] != self._plain.get("printed"):
                self._print_plain()
            self._plain = None

    def _print_plain(self) -> None:
        p = self._plain
        now = self.clock()
        elapsed, done = now - p["began"], p["done"] - p["first"]
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        line = f"{p['what']}: {p['done']}/{p['total']}"
        if rate is not None:
            eta = (p["total"] - p["done"]) / rate
            line += f", {rate:.2f} it/s" if rate >= 0.1 else f", {1 / rate:.1f} s/it"
            line += f", elapsed {_clock(elapsed)}, eta {_clock(eta)}"
        for key, value in p["fields"].items():
            if isinstance(value, float):
                value = f"{value:.2e}" if key == "lr" else f"{value:.4f}"
            line += f", {key} {value}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        p["shown"], p["printed"] = now, p["done"]


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def error(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
