"""A batch on the terminal: one live table row per workspace; on a pipe or log file, one line per change."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from dbooth.batch.task import WorkspaceResult

STYLES = {"complete": "green", "failed": "red", "retrying": "yellow", "running": "cyan", "queued": "dim"}


class BatchView:
    """Call ``update(result)`` as results change, inside ``with BatchView(console):``."""

    def __init__(self, console: Console):
        self.console = console
        self.rows: dict[str, WorkspaceResult] = {}
        self.live: Live | None = None
        self.said: dict[str, tuple] = {}

    def __enter__(self) -> BatchView:
        if self.console.is_terminal:
            self.live = Live(self.table(), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.update(self.table())
            self.live.stop()
            self.live = None

    def update(self, result: WorkspaceResult) -> None:
        self.rows[result.workspace] = result
        if self.live is not None:
            self.live.update(self.table())
            return
        key = (result.status, result.stage, result.attempts)  # plain lines: a change of state, not every step
        if self.said.get(result.workspace) != key:
            self.said[result.workspace] = key
            self.console.print(line(result), markup=False, highlight=False, soft_wrap=True)

    def table(self) -> Table:
        table = Table(title="dbooth batch", title_justify="left")
        for name, justify in (("workspace", "left"), ("status", "left"), ("progress", "left"), ("run", "left"),
                              ("steps", "right"), ("loss", "right"), ("time", "right"), ("host / error", "left")):
            table.add_column(name, justify=justify, overflow="fold")
        for r in self.rows.values():
            status = r.status + (f" ({r.attempts})" if r.attempts > 1 else "")
            table.add_row(r.workspace, f"[{STYLES.get(r.status, '')}]{status}[/]", progress(r), r.run_id or "",
                          "" if r.steps is None else str(r.steps), _loss(r.final_loss if r.final_loss is not None
                                                                         else r.progress.get("loss")),
                          "" if r.seconds is None else f"{r.seconds:.0f}s",
                          f"[red]{r.error}[/]" if r.error else (r.host or ""))
        return table


def progress(r: WorkspaceResult) -> str:
    if r.status not in ("running", "retrying") or not r.stage:
        return ""
    done, total = r.progress.get("done"), r.progress.get("total")
    return r.stage + (f" {done}/{total}" if done is not None and total else "")


def line(r: WorkspaceResult) -> str:
    """One plain line for a workspace's state."""
    if r.status == "complete":
        text = (f"{r.workspace}: complete, run {r.run_id}" + (" (resumed)" if r.resumed else "")
                + f", {r.steps} steps, loss {_loss(r.final_loss)}, {r.seconds:.0f}s on {r.host}")
        if r.eval:
            text += ", " + ", ".join(f"{k} {v:.3f}" for k, v in r.eval.items() if isinstance(v, float))
        return text + (f", exported to {r.export}" if r.export else "")
    if r.status in ("failed", "retrying"):
        then = "retrying" if r.status == "retrying" else "failed"
        return f"{r.workspace}: {then} after attempt {r.attempts}" + (f" ({r.stage})" if r.stage else "") + f": {r.error}"
    if r.status == "running":
        return f"{r.workspace}: {r.stage or 'started'}" + (f" on {r.host}" if r.host else "") + (
            f" (attempt {r.attempts})" if r.attempts > 1 else "")
    return f"{r.workspace}: {r.status}"


def _loss(value) -> str:
    return "" if value is None else f"{value:.4f}"
