"""The pretraining scripts' shared clock: step or time budget, warm-up + cosine learning rate, snapshot times."""

import math
import time

import pytest

from tools.shapes.run_clock import RunClock


def test_a_fixed_step_count_runs_exactly_that_many_steps_and_decays_to_a_tenth():
    clock = RunClock(time.time(), minutes=0.0, steps=10, snapshot_minutes=10)
    assert [clock.running(s) for s in (0, 9, 10)] == [True, True, False]
    assert clock.progress(5) == 0.5 and clock.progress(20) == 1.0
    assert clock.learning_rate(1e-3, 0, warmup=4) == pytest.approx(1e-3 / 4)  # warm-up: a quarter at the first step
    assert clock.learning_rate(1e-3, 5, warmup=1) == pytest.approx(1e-3 * (0.1 + 0.45 * (1 + math.cos(math.pi / 2))))
    assert clock.learning_rate(1e-3, 10, warmup=1) == pytest.approx(1e-4)  # the end of the run: 10% of the base


def test_a_time_budget_stops_after_its_minutes_and_snapshots_come_on_time():
    clock = RunClock(time.time() - 61, minutes=1.0, steps=None, snapshot_minutes=0.0)
    assert not clock.running(0) and clock.progress(0) == 1.0  # 61 s into a 60 s budget
    fresh = RunClock(time.time(), minutes=1.0, steps=None, snapshot_minutes=1.0)
    assert fresh.running(10**6) and fresh.progress(0) < 0.1 and not fresh.snapshot_due()
    fresh.last_snapshot -= 61
    assert fresh.snapshot_due() and not fresh.snapshot_due()  # due once, then the timer restarts
