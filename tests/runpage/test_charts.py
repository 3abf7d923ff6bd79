"""The run page's charts on hand-made data: the smoothing's maths, each line's coordinates, the learning rate on
an axis of its own scaled to its own range, and the eval figures against the step."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from dbooth.runpage import charts, svg
from dbooth.runpage.charts import (BOTTOM, HEIGHT, LEFT, P_BOTTOM, P_LEFT, P_RIGHT, P_TOP, PANEL_HEIGHT, PANEL_WIDTH,
                                   RIGHT, TOP, WIDTH)

SVG = "{http://www.w3.org/2000/svg}"


def _points(chart: str, cls: str) -> list[tuple[float, float]]:
    found = re.search(rf'<polyline class="{cls}"[^>]* points="([^"]*)"', chart)
    assert found, cls
    return [tuple(float(v) for v in p.split(",")) for p in found.group(1).split()]


def _rows(values: list[tuple[int, float, float, float]]) -> list[dict]:
    return [{"step": s, "loss": i + p, "instance_loss": i, "prior_loss": p, "lr": lr} for s, i, p, lr in values]


def test_ema_is_debiased_and_follows_the_weight():
    assert charts.ema([2.0, 4.0, 4.0], 0.0) == [2.0, 4.0, 4.0]  # weight 0: the values themselves
    # weight 0.5: averages 1.0, 2.5, 3.25 before debiasing by 1 - 0.5^i (0.5, 0.75, 0.875)
    assert charts.ema([2.0, 4.0, 4.0], 0.5) == pytest.approx([2.0, 2.5 / 0.75 * 1.0, 3.25 / 0.875])
    assert charts.ema([3.0] * 50, 0.9) == pytest.approx([3.0] * 50)  # a constant stays itself from the start
    step = charts.ema([0.0] * 10 + [1.0] * 10, 0.8)
    assert step[9] == 0.0 and 0 < step[10] < step[15] < step[19] < 1.0  # a jump is followed, not copied


def test_smoothing_grows_with_the_run_and_has_a_ceiling():
    assert charts.smoothing_for(4) == 0.0 and charts.smoothing_for(5) == 0.0
    assert charts.smoothing_for(40) == pytest.approx(0.875)
    assert charts.smoothing_for(100) < charts.smoothing_for(200) <= 0.98
    assert charts.smoothing_for(100_000) == 0.98


def test_the_loss_lines_are_the_smoothed_and_raw_values_scaled_and_the_lr_has_its_own_axis():
    rows = _rows([(1, 0.4, 0.1, 1e-4), (2, 0.2, 0.2, 2e-4), (3, 0.3, 0.1, 2e-4), (5, 0.1, 0.05, 1e-4)])
    chart = charts.loss_chart(rows)
    root = ET.fromstring(chart)
    # loss axis: 0 up to the round value above the largest loss; lr axis: 0 up to a round value above 1.15 x its max
    assert float(root.get("data-loss-top")) == 0.4 and float(root.get("data-lr-top")) == pytest.approx(3e-4)
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP

    def at(step, value, top):  # steps 1..5 across, 0..top up (SVG y grows downwards)
        return (pytest.approx(x0 + (step - 1) / 4 * (x1 - x0), abs=0.01),
                pytest.approx(y0 - value / top * (y0 - y1), abs=0.01))

    raw = [(1, 0.4), (2, 0.2), (3, 0.3), (5, 0.1)]
    assert _points(chart, "instance-loss-raw") == [at(s, v, 0.4) for s, v in raw]
    assert _points(chart, "instance-loss") == [at(s, v, 0.4) for s, v in raw]  # 4 steps: too few to smooth
    assert _points(chart, "prior-loss") == [at(s, p, 0.4) for s, p in [(1, 0.1), (2, 0.2), (3, 0.1), (5, 0.05)]]
    lrs = [(1, 1e-4), (2, 2e-4), (3, 2e-4), (5, 1e-4)]
    assert _points(chart, "learning-rate") == [at(s, lr, 3e-4) for s, lr in lrs]
    # the largest learning rate is drawn below the top of the plot: it never sits on the frame
    assert min(y for _, y in _points(chart, "learning-rate")) > y1 + 10
    assert "learning rate (right axis)" in chart and ">3e-04<" in chart and ">0.4<" in chart


def test_a_larger_learning_rate_changes_only_its_own_axis():
    rows = _rows([(s, 0.1 + 0.01 * (s % 3), 0.05, 1e-3) for s in range(1, 41)])
    bigger = [dict(r, lr=r["lr"] * 100) for r in rows]
    a, b = charts.loss_chart(rows), charts.loss_chart(bigger)
    assert _points(a, "instance-loss") == _points(b, "instance-loss")
    assert _points(a, "learning-rate") == _points(b, "learning-rate")  # same shape on its own scale
    assert float(ET.fromstring(b).get("data-lr-top")) == pytest.approx(100 * float(ET.fromstring(a).get("data-lr-top")))


def test_a_long_noisy_run_is_smoothed_over_a_faint_raw_curve():
    rows = [{"step": s, "loss": 0.3 if s % 2 else 0.1, "lr": 1e-4} for s in range(1, 201)]
    chart = charts.loss_chart(rows)
    smooth = [y for _, y in _points(chart, "loss")]
    raw = [y for _, y in _points(chart, "loss-raw")]
    assert max(raw) - min(raw) > 5 * (max(smooth[20:]) - min(smooth[20:]))  # the raw zig-zag, the smooth line flat
    assert re.search(r'<polyline class="loss-raw"[^>]*stroke-opacity="0.3"', chart)
    assert 'class="prior-loss' not in chart  # without prior preservation there is one line, named "loss"


def test_long_runs_are_averaged_in_bins_and_rare_spikes_do_not_squash_the_axis():
    points = charts.binned([(s, float(s % 7)) for s in range(1, 1001)], limit=200)
    assert len(points) == 200  # bins of 5 steps
    assert points[0] == (3.0, (1 + 2 + 3 + 4 + 5) / 5)
    assert points[-1] == (998.0, sum(s % 7 for s in range(996, 1001)) / 5)
    assert charts.thinned([(s, 0.0) for s in range(1, 11)], limit=4)[-1] == (10, 0.0)
    rows = [{"step": s, "loss": 50.0 if s == 500 else 0.1} for s in range(1, 1001)]
    chart = charts.loss_chart(rows)
    assert len(_points(chart, "loss-raw")) == 250 <= charts.MAX_POINTS  # bins of ceil(1000 / 300) = 4 steps
    # the axis ends above the smoothed line and 98% of the raw values, not at the one raw spike of 50
    assert float(ET.fromstring(chart).get("data-loss-top")) <= 1.5
    assert min(y for _, y in _points(chart, "loss-raw")) == TOP  # the spike's bin is clipped to the top
    assert charts.quantile([5, 1, 4, 2, 3], 0.6) == 3 and charts.quantile([1.0], 0.98) == 1.0


def test_nothing_to_draw_is_an_empty_chart():
    assert charts.loss_chart([]) == ""
    assert charts.loss_chart([{"step": 1, "loss": None, "lr": 1e-4}]) == ""
    assert charts.metric_panel("x", [("base", 0, 0.5)]) == ""


def test_round_axis_values():
    assert svg.nice_range(0, 0.4) == (0.0, 0.4, 0.1)
    assert svg.nice_range(0.25, 0.31) == (0.24, 0.32, 0.02)
    assert svg.nice_range(0.0, 0.0)[0] == 0.0  # a figure of 0 everywhere gets a band above 0, not below
    assert svg.ticks(0.0, 3e-4, 1e-4) == [0.0, 1e-4, 2e-4, 3e-4]
    assert svg.Axis(0, 10, 100, 200).at(5) == 150 and svg.Axis(0, 10, 100, 200).at(20) == 200
    assert svg.Axis(1, 1, 100, 200).at(1) == 150


def test_a_metric_panel_puts_each_model_at_its_step_and_value():
    points = [("base", 0, 0.10), ("step-000100", 100, 0.35), ("step-000200", 200, 0.50), ("final", 400, 0.62)]
    chart = charts.metric_panel("DINO", points, best="step-000200")
    root = ET.fromstring(chart)
    lo, hi = float(root.get("data-y-lo")), float(root.get("data-y-hi"))
    assert (lo, hi) == (0.0, 0.8)  # round values around 0.10..0.62
    circles = {c.get("data-name"): c for c in root.iter(SVG + "circle")}
    assert list(circles) == ["base", "step-000100", "step-000200", "final"]
    for name, step, value in points:
        c = circles[name]
        assert float(c.get("cx")) == pytest.approx(P_LEFT + step / 400 * (PANEL_WIDTH - P_RIGHT - P_LEFT), abs=0.01)
        assert float(c.get("cy")) == pytest.approx(
            PANEL_HEIGHT - P_BOTTOM - (value - lo) / (hi - lo) * (PANEL_HEIGHT - P_BOTTOM - P_TOP), abs=0.01)
    assert "base" in circles["base"].get("class") and "best" in circles["step-000200"].get("class")
    assert "step" in circles["final"].get("class").split()
    base_line = next(e for e in root.iter(SVG + "line") if e.get("class") == "base-line")
    assert float(base_line.get("y1")) == float(circles["base"].get("cy"))  # the base model's level, across
