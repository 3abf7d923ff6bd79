"""RUN/loss.csv: a row per step, appended as steps go; a resumed run drops the rows past its checkpoint."""

from __future__ import annotations

import math

from dbooth.training.history import HISTORY_FILE, LossHistory, read_history


def test_rows_round_trip_and_a_resume_keeps_each_step_once(tmp_path):
    log = LossHistory(tmp_path)
    for step in range(1, 6):
        log.record(step, loss=0.1 * step, prior_loss=0.01 * step, lr=1e-4, instance_loss=None)
    log.close()
    rows = read_history(tmp_path / HISTORY_FILE)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[2] == {"step": 3, "loss": 0.1 * 3, "instance_loss": None, "prior_loss": 0.01 * 3, "lr": 1e-4}

    # resumed from the checkpoint at step 3: steps 4 and 5 are trained again and recorded once
    again = LossHistory(tmp_path, start=3)
    assert [r["step"] for r in read_history(tmp_path / HISTORY_FILE)] == [1, 2, 3]
    again.record(4, loss=0.7, lr=2e-4)
    again.close()
    rows = read_history(tmp_path / HISTORY_FILE)
    assert [(r["step"], r["loss"], r["prior_loss"]) for r in rows] == [(1, 0.1, 0.01), (2, 0.2, 0.02),
                                                                     (3, 0.1 * 3, 0.01 * 3), (4, 0.7, None)]

    # a new run (start 0) begins an empty file
    LossHistory(tmp_path).close()
    assert read_history(tmp_path / HISTORY_FILE) == []


def test_a_torn_last_line_and_non_finite_values_are_skipped(tmp_path):
    log = LossHistory(tmp_path)
    log.record(1, loss=0.5, lr=1e-4)
    log.record(2, loss=math.nan, lr=math.inf)
    log.close()
    with (tmp_path / HISTORY_FILE).open("a") as f:
        f.write("3,0.2")  # killed mid-write
    rows = read_history(tmp_path / HISTORY_FILE)
    assert [(r["step"], r["loss"], r["lr"]) for r in rows] == [(1, 0.5, 1e-4), (2, None, None)]
    LossHistory(tmp_path, start=2).close()  # resuming rewrites the file without the torn line
    assert (tmp_path / HISTORY_FILE).read_text().splitlines()[-1].startswith("2,")
    assert read_history(tmp_path / "missing.csv") == []
