"""A run's loss history (RUN/loss.csv) and its curve on the run page: written by each run, step by step, and
read back whole after a resume. The chart's maths: tests/runpage/test_charts.py."""

from __future__ import annotations

import pytest
from runpage import fake_run  # tests/runpage/fake_run.py

from dbooth.runpage.page import write_run_page
from dbooth.training.history import HISTORY_FILE, LossHistory, read_history


def test_a_resumed_history_counts_each_step_once_on_the_page(tmp_path):
    ws = fake_run.workspace(tmp_path / "ws")
    run = fake_run.run_folder(ws, status="interrupted", steps=2)
    assert 'id="training"' not in write_run_page(run).read_text()  # no history yet: no curve
    log = LossHistory(run)
    log.record(1, loss=0.5, lr=1e-4)
    log.record(2, loss=0.75, lr=1e-4)  # trained past the checkpoint at 1, then interrupted
    log.close()
    log = LossHistory(run, start=1)  # resumed from the checkpoint at step 1: step 2 is trained again
    log.record(2, loss=0.25, lr=1e-4)
    log.close()
    assert [r["loss"] for r in read_history(run / HISTORY_FILE)] == [0.5, 0.25]
    text = write_run_page(run).read_text()
    assert text.count('id="training"') == 1 and "2 steps recorded" in text and "at step 2: loss 0.25" in text
    assert 'class="loss-curve"' in text


def test_a_run_writes_its_loss_history_and_curve(make_workspace):
    from dbooth import api

    ws = make_workspace(**{"train.method": "lora", "train.max_steps": 3})
    api.prior(ws)
    run = api.train(ws).run
    rows = read_history(run.dir / HISTORY_FILE)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:  # loss = instance + prior weight (1.0) x prior, as trained
        assert r["loss"] == pytest.approx(r["instance_loss"] + r["prior_loss"], rel=1e-5) and r["lr"] > 0
    assert rows[-1]["loss"] == pytest.approx(run.info()["final_loss"])
    page = (run.dir / "report.html").read_text()
    assert 'class="loss-curve"' in page and 'class="prior-loss"' in page
    assert "Trained 3 steps" in page and "Not scored yet" in page  # written after the run finished
