"""The loss curve in RUN/report.html: a pure SVG of the history, above eval's section, written by each run."""

from __future__ import annotations

import re

import pytest

from dbooth.eval.report import merge_section
from dbooth.training import loss_report
from dbooth.training.loss_report import (
    BOTTOM,
    HEIGHT,
    LEFT,
    MARKERS,
    RIGHT,
    TOP,
    WIDTH,
    binned,
    loss_curve_svg,
    training_section,
    write_loss_report,
)


def _points(svg: str, cls: str) -> list[tuple[float, float]]:
    found = re.search(rf'<polyline class="{cls}"[^>]* points="([^"]*)"', svg)
    assert found, cls
    return [tuple(float(v) for v in p.split(",")) for p in found.group(1).split()]


def test_curve_coordinates_are_the_steps_and_losses_scaled():
    rows = [{"step": s, "loss": l + p, "instance_loss": l, "prior_loss": p, "lr": lr}
            for s, l, p, lr in [(1, 0.4, 0.1, 1e-4), (2, 0.2, 0.2, 2e-4), (3, 0.3, 0.1, 2e-4), (5, 0.1, 0.05, 1e-4)]]
    svg = loss_curve_svg(rows)
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP

    def at(step, value, top):  # steps 1..5 across, 0..top up (SVG y grows downwards)
        return (pytest.approx(x0 + (step - 1) / 4 * (x1 - x0), abs=0.01),
                pytest.approx(y0 - value / top * (y0 - y1), abs=0.01))

    assert _points(svg, "instance-loss") == [at(s, l, 0.4) for s, l in [(1, 0.4), (2, 0.2), (3, 0.3), (5, 0.1)]]
    assert _points(svg, "prior-loss") == [at(s, p, 0.4) for s, p in [(1, 0.1), (2, 0.2), (3, 0.1), (5, 0.05)]]
    assert _points(svg, "learning-rate") == [at(s, lr, 2e-4) for s, lr in [(1, 1e-4), (2, 2e-4), (3, 2e-4), (5, 1e-4)]]
    assert ">0.4<" in svg and ">0.0002<" in svg and "learning rate (right axis)" in svg


def test_without_prior_the_instance_curve_is_the_loss_and_empty_history_draws_nothing():
    rows = [{"step": 1, "loss": 0.3, "instance_loss": None, "prior_loss": None, "lr": None},
            {"step": 2, "loss": 0.1, "instance_loss": None, "prior_loss": None, "lr": None}]
    svg = loss_curve_svg(rows)
    assert [y for _, y in _points(svg, "instance-loss")] == [TOP, pytest.approx(TOP + (HEIGHT - BOTTOM - TOP) * 2 / 3, abs=0.01)]
    assert "prior-loss" not in svg and "learning-rate" not in svg
    assert loss_curve_svg([]) == ""


def test_long_runs_are_averaged_in_bins():
    rows = [{"step": s, "loss": float(s % 7)} for s in range(1, 1001)]
    points = binned(rows, "loss", points=200)
    assert len(points) == 200  # bins of 5 steps
    assert points[0] == (3.0, (1 + 2 + 3 + 4 + 5) / 5) and points[-1] == (998.0, sum(s % 7 for s in range(996, 1001)) / 5)
    assert len(_points(loss_curve_svg(rows), "instance-loss")) == loss_report.MAX_POINTS
    assert "mean of 5 steps" in training_section(rows)


def test_the_training_section_sits_above_eval_and_is_replaced_in_place(tmp_path):
    from dbooth.eval.report import END, START
    from dbooth.training.history import LossHistory

    page = merge_section(None, f"{START}<p>eval</p>{END}", "r1")  # a page dbooth eval wrote
    (tmp_path / "report.html").write_text(page)
    assert write_loss_report(tmp_path, "r1") is None  # no history yet: nothing written
    log = LossHistory(tmp_path)
    log.record(1, loss=0.5, lr=1e-4)
    log.close()
    write_loss_report(tmp_path, "r1")
    text = (tmp_path / "report.html").read_text()
    assert text.index(MARKERS[0]) < text.index(START) and text.count("<p>eval</p>") == 1
    log = LossHistory(tmp_path, start=1)
    log.record(2, loss=0.25, lr=1e-4)
    log.close()
    write_loss_report(tmp_path, "r1")
    text = (tmp_path / "report.html").read_text()
    assert text.count(MARKERS[0]) == 1 and "2 steps recorded" in text and "at step 2: loss 0.25" in text


def test_a_run_writes_its_loss_history_and_curve(make_workspace):
    from dbooth import api
    from dbooth.training.history import HISTORY_FILE, read_history

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
