"""Where a run's time goes: phases that nest, add up to the total, and reach run.json and `dbooth status`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dbooth import api
from dbooth.training.timings import PHASES, Timings, describe


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_nested_phases_count_once_and_add_up_to_the_total():
    clock = FakeClock()
    t = Timings(clock)
    with t.phase("load"):
        clock.now += 2.0
    with t.phase("steps"):
        clock.now += 5.0
        with t.phase("checkpoints"):
            clock.now += 1.5
        clock.now += 3.0
        with t.phase("validation"):
            clock.now += 4.0
    clock.now += 0.5  # bookkeeping outside every phase
    t.background = 7.25
    d = t.as_dict()
    assert d == {"load": 2.0, "caching": 0.0, "steps": 8.0, "checkpoints": 1.5, "validation": 4.0, "save": 0.0,
                 "other": 0.5, "total": 16.0, "checkpoint_writes_background": 7.25}
    assert sum(d[k] for k in (*PHASES, "other")) == pytest.approx(d["total"])
    assert describe(d) == ("load 2.0 s, caching 0.0 s, steps 8.0 s, checkpoints 1.5 s (+7.2 s written beside the "
                           "steps), validation 4.0 s, save 0.0 s, other 0.5 s; total 16.0 s")


def test_a_run_records_its_split_and_status_shows_it(make_workspace):
    from run_cli import subprocess_env

    from dbooth.workspace.status import run_status

    from dbooth.util.reporting import Reporter

    lines = []

    class Collect(Reporter):
        def info(self, message: str) -> None:
            lines.append(message)

    ws = make_workspace(**{"train.max_steps": 4, "train.checkpoint_every": 2, "train.validation_every": 2,
                           "train.validation_images": 1})
    api.prior(ws)
    run = api.train(ws, reporter=Collect()).run
    t = run.info()["timings"]
    assert set(t) == {*PHASES, "other", "total", "checkpoint_writes_background"}
    for name in ("load", "caching", "steps", "checkpoints", "validation", "save"):
        assert t[name] > 0, name
    assert t["checkpoint_writes_background"] > 0  # the step-2 checkpoint was written by the worker
    assert sum(t[k] for k in (*PHASES, "other")) == pytest.approx(t["total"], abs=0.01)
    assert t["total"] >= run.info()["train_seconds"]  # loading and caching come before the steps' clock starts
    assert lines[-1] == "time: " + describe(t)
    assert run_status(run).timings == t

    out = subprocess.run([sys.executable, "-m", "dbooth", "status", "-w", str(ws.root)], env=subprocess_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"time: {describe(t)}" in out.stdout
