"""A step's losses and guard values are read from the device in batches, with the same figures and the same stop."""

from __future__ import annotations

import math

import pytest
import torch

from dbooth.training import loop, readings
from dbooth.training.history import HISTORY_FILE, read_history
from dbooth.training.numerics import NonFiniteError
from dbooth.training.readings import Readings

GUARD = {"mixed_precision": "no", "learning_rate": 1e-4}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_figures_come_back_as_floats_in_order_from_one_read(monkeypatch):
    clock = Clock()
    r = Readings(GUARD, every_seconds=1.0, clock=clock)
    for step in (1, 2, 3):
        r.check(step, "loss", torch.tensor(0.5 * step))
        r.record(step, {"loss": torch.tensor(0.5 * step), "lr": 1e-4, "prior_loss": None})
    assert not r.due()  # under a second since the last read
    clock.now = 1.5
    assert r.due()
    stacks = []
    real_stack = torch.stack
    monkeypatch.setattr(torch, "stack", lambda *a, **k: stacks.append(1) or real_stack(*a, **k))
    seen = []
    r.flush(None, lambda step, figures: seen.append((step, figures)))
    assert stacks == [1]  # six tensors, one copy
    assert seen == [(step, {"loss": 0.5 * step, "lr": 1e-4, "prior_loss": None}) for step in (1, 2, 3)]
    assert all(isinstance(f["loss"], float) for _, f in seen)
    assert not r.due()  # nothing pending
    r.flush(None, lambda *a: pytest.fail("nothing was pending"))


def test_the_first_non_finite_value_stops_after_the_steps_before_it():
    r = Readings(GUARD)
    r.check(1, "loss", torch.tensor(1.0))
    r.record(1, {"loss": torch.tensor(1.0)})
    r.check(2, "loss", torch.tensor(2.0))
    r.check(2, "gradient norm", torch.tensor(float("inf")))
    r.record(2, {"loss": torch.tensor(2.0)})
    r.check(3, "loss", torch.tensor(float("nan")))
    seen = []
    with pytest.raises(NonFiniteError) as err:
        r.flush(2, lambda step, figures: seen.append(step))
    assert seen == [1]  # step 1 reached the history; step 2 did not, as before
    message = str(err.value)
    assert message.startswith("step 2: the gradient norm is inf") and "checkpoint step 2 is kept" in message


def test_a_run_reads_its_losses_in_batches_and_records_the_same_history(make_workspace, monkeypatch):
    flushes = []
    real = Readings.flush

    def counted(self, last_checkpoint, on_step):
        flushes.append(len(self._pending))
        return real(self, last_checkpoint, on_step)

    monkeypatch.setattr(Readings, "flush", counted)
    settings = {"train.method": "lora", "train.max_steps": 6, "prior.enabled": False}

    monkeypatch.setattr(loop, "READ_EVERY_SECONDS", 0.0)  # a read every step: how the loop read before
    from dbooth import api

    every = api.train(make_workspace("every", **settings)).run
    assert [n for n in flushes if n] == [3] * 6  # the loss and gradient-norm checks and the figures, each step
    flushes.clear()
    monkeypatch.setattr(loop, "READ_EVERY_SECONDS", 3600.0)  # no read before something needs the figures
    batched = api.train(make_workspace("batched", **settings)).run
    assert [n for n in flushes if n] == [18]  # one read, at the last step
    a, b = read_history(every.dir / HISTORY_FILE), read_history(batched.dir / HISTORY_FILE)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6] and a == b
    assert math.isclose(batched.info()["final_loss"], b[-1]["loss"], rel_tol=1e-6)


def test_checkpoints_and_validation_read_first(make_workspace, monkeypatch):
    from dbooth import api

    monkeypatch.setattr(loop, "READ_EVERY_SECONDS", 3600.0)
    flushes = []
    real = Readings.flush
    monkeypatch.setattr(Readings, "flush", lambda self, *a: flushes.append(len(self._pending)) or real(self, *a))
    api.train(make_workspace(**{"train.method": "lora", "train.max_steps": 6, "prior.enabled": False,
                                "train.checkpoint_every": 2, "train.validation_every": 3}))
    # reads at 2 (checkpoint), 3 (validation), 4 (checkpoint), 6 (the end): 3 events per step
    assert [n for n in flushes if n] == [6, 3, 3, 6]
    assert readings.READ_EVERY_SECONDS == 1.0  # the shipped interval
