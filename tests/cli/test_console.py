"""Progress where there is no terminal: plain lines with rate and ETA, instead of a bar that never draws."""

from __future__ import annotations

import io

from rich.console import Console

from dbooth.cli.console import RichReporter


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_pipe_gets_a_line_every_few_seconds_and_one_at_the_end():
    out = io.StringIO()
    clock = Clock()
    reporter = RichReporter(Console(file=out, force_terminal=False, width=200), log_every=10, clock=clock)
    reporter.start("training", total=100)
    for step in range(1, 101):
        clock.now += 0.5  # 2 steps per second
        reporter.advance(step, loss=0.25, lr=1e-4)
    reporter.stop()
    lines = out.getvalue().splitlines()
    assert len(lines) == 5  # every 10 s of a 50 s run, the last one at the end
    assert lines[0] == "training: 20/100, 2.00 it/s, elapsed 0:00:10, eta 0:00:40, loss 0.2500, lr 1.00e-04"
    assert lines[-1].startswith("training: 100/100, 2.00 it/s, elapsed 0:00:50, eta 0:00:00")


def test_a_resumed_count_measures_the_rate_from_where_it_started():
    out = io.StringIO()
    clock = Clock()
    reporter = RichReporter(Console(file=out, force_terminal=False, width=200), log_every=10, clock=clock)
    reporter.start("training", total=800, completed=600)
    clock.now = 20.0
    reporter.advance(610)
    reporter.stop()
    assert out.getvalue().splitlines() == ["training: 610/800, 0.50 it/s, elapsed 0:00:20, eta 0:06:20"]


def test_a_terminal_still_gets_the_bar():
    out = io.StringIO()
    reporter = RichReporter(Console(file=out, force_terminal=True, width=120))
    reporter.start("training", total=4)
    reporter.advance(4, loss=0.5)
    reporter.stop()
    assert "training" in out.getvalue() and "4/4" in out.getvalue()
