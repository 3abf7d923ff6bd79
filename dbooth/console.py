"""Rich output for the CLI: progress bars with rate and ETA, warnings, one-line errors."""

from __future__ import annotations

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

from dbooth.reporting import Reporter

console = Console(stderr=True, highlight=False)


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
    def __init__(self, out: Console = console):
        self.console = out
        self.progress: Progress | None = None
        self.task = None

    def info(self, message: str) -> None:
        self.console.print(f"[dim]{message}[/]")

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}")

    def start(self, description: str, total: int, completed: int = 0) -> None:
        self.stop()
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

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def error(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
