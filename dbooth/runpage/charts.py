"""The run page's charts as pure functions of their data, drawn as inline SVG (no script, no network).

``loss_chart``: the loss against the step, smoothed (a debiased exponential moving average) over the raw
curve drawn faint, with the learning rate on its own right-hand axis. ``metric_panel``: one eval figure
against the step (the base model at step 0), one small panel per figure, each with its own range.
"""

from __future__ import annotations

import html
import math

from dbooth.runpage import svg
from dbooth.runpage.svg import Axis

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 62, 78, 40, 40  # room for the loss axis, the learning-rate axis, the legend, the steps
MAX_POINTS = 300  # per line; a longer run's raw curve is averaged over bins of consecutive steps
RAW_QUANTILE = 0.98  # the loss axis ends above this share of the raw values; rarer spikes are clipped to its top
# (label, loss.csv column, colour); without prior preservation the instance line is the loss itself
LOSSES = (("instance loss", "instance_loss", "#2f6db5"), ("prior loss", "prior_loss", "#d9822b"))
LR = ("learning rate", "lr", "#6f6f6f")
LR_HEADROOM = 1.15  # a constant learning rate sits below the top of its axis, not on the frame


def smoothing_for(points: int) -> float:
    """The EMA weight for a curve of ``points`` steps: none for a handful, about a 50-step window at most."""
    return 0.0 if points <= 5 else min(0.98, 1 - 5 / points)


def ema(values: list[float], weight: float) -> list[float]:
    """Exponential moving average, debiased as TensorBoard does: the first value is itself, not pulled to 0."""
    out, average = [], 0.0
    for i, v in enumerate(values, 1):
        average = weight * average + (1 - weight) * v
        out.append(average / (1 - weight ** i))
    return out


def series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    """``(step, value)`` of the rows that have ``key``."""
    return [(r["step"], r[key]) for r in rows if r.get(key) is not None]


def binned(points: list[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most ``limit`` points: consecutive ones averaged in bins of ``ceil(n / limit)`` (mean step, mean value)."""
    size = max(1, math.ceil(len(points) / limit))
    bins = [points[i:i + size] for i in range(0, len(points), size)]
    return [(sum(s for s, _ in b) / len(b), sum(v for _, v in b) / len(b)) for b in bins]


def thinned(points: list[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """Every ``ceil(n / limit)``-th point and the last: enough for a curve that is already smooth."""
    size = max(1, math.ceil(len(points) / limit))
    kept = points[::size]
    return kept if not points or kept[-1] == points[-1] else kept + [points[-1]]


def quantile(values: list[float], share: float) -> float:
    """The nearest-rank quantile: the smallest value with at least ``share`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def loss_lines(rows: list[dict]) -> list[tuple[str, str, list, list]]:
    """``(label, colour, raw, smoothed)`` per loss line that has values; ``smoothed`` holds every step."""
    instance = "instance_loss" if any(r.get("instance_loss") is not None for r in rows) else "loss"
    out = []
    for label, key, colour in LOSSES:
        raw = series(rows, instance if key == "instance_loss" else key)
        label = "loss" if key == "instance_loss" and instance == "loss" else label
        if raw:
            smooth = ema([v for _, v in raw], smoothing_for(len(raw)))
            out.append((label, colour, raw, list(zip([s for s, _ in raw], smooth))))
    return out


def loss_axes(rows: list[dict]) -> tuple[Axis, Axis, Axis | None]:
    """The step axis, the loss axis (from 0) and the learning rate's own axis (from 0; None without one)."""
    lines = loss_lines(rows)
    steps = [s for _, _, raw, _ in lines for s, _ in raw]
    x = Axis(min(steps), max(steps), LEFT, WIDTH - RIGHT)
    raw_values = [v for _, _, raw, _ in lines for _, v in raw]
    high = max(quantile(raw_values, RAW_QUANTILE), max(v for _, _, _, sm in lines for _, v in sm))
    y = Axis(0.0, svg.nice_range(0.0, high)[1] if high > 0 else 1.0, HEIGHT - BOTTOM, TOP)
    lrs = [v for _, v in series(rows, LR[1])]
    lr = Axis(0.0, svg.nice_range(0.0, max(lrs) * LR_HEADROOM)[1], HEIGHT - BOTTOM, TOP) if any(lrs) else None
    return x, y, lr


def loss_chart(rows: list[dict], marks: list[tuple[int, str]] = ()) -> str:
    """The loss curves (left axis) and learning rate (right axis) against the step; ``marks``: ``(step, label)``
    drawn as dashed verticals (the best checkpoint). Empty when there is nothing to draw."""
    lines = loss_lines(rows)
    if not lines:
        return ""
    x, y, lr = loss_axes(rows)
    parts = [svg.open_svg(WIDTH, HEIGHT, "loss-curve", x_lo=x.lo, x_hi=x.hi, loss_top=y.hi,
                          lr_top=lr.hi if lr else "", smoothing=f"{smoothing_for(len(lines[0][2])):.3g}")]
    parts += _frame(x, y, lr)
    legend = []
    for label, colour, raw, smooth in lines:
        name = label.replace(" ", "-")
        parts.append(svg.polyline([(x.at(s), y.at(v)) for s, v in binned(raw)], f"{name}-raw", colour,
                                  stroke_opacity="0.3", stroke_width="1"))
        parts.append(svg.polyline([(x.at(s), y.at(v)) for s, v in thinned(smooth)], name, colour,
                                  stroke_width="2"))
        legend.append((label, colour, ""))
    if lr is not None:
        points = binned([(s, v) for s, v in series(rows, LR[1])])
        parts.append(svg.polyline([(x.at(s), lr.at(v)) for s, v in points], "learning-rate", LR[2],
                                  stroke_dasharray="5 3", stroke_width="1.5"))
        legend.append((LR[0] + " (right axis)", LR[2], "5 3"))
    for step, text in marks:
        if x.lo <= step <= x.hi:
            parts.append(svg.line(x.at(step), y.a, x.at(step), y.b, "#2a8a2a", stroke_dasharray="2 3"))
            parts.append(svg.text(x.at(step) + 3, y.b + 10, text, fill="#2a8a2a"))
    parts += svg.legend(legend, LEFT, 16)
    parts.append("</svg>")
    return "\n".join(parts)


def _frame(x: Axis, y: Axis, lr: Axis | None) -> list[str]:
    """Grid lines and tick labels for the step, loss and learning-rate axes, and the axes' titles."""
    parts = []
    for v in svg.ticks(*svg.nice_range(0.0, y.hi)):
        parts.append(svg.line(x.a, y.at(v), x.b, y.at(v), "#e4e4e4"))
        parts.append(svg.text(x.a - 5, y.at(v) + 4, svg.label(v), "end"))
    step = svg.nice_step(x.hi - x.lo, 6)
    first = math.ceil(x.lo / step) * step
    for v in [first + i * step for i in range(int((x.hi - first) // step) + 1)]:
        parts.append(svg.line(x.at(v), y.a, x.at(v), y.a + 4))
        parts.append(svg.text(x.at(v), y.a + 16, svg.label(v), "middle"))
    parts += [svg.line(x.a, y.a, x.b, y.a), svg.line(x.a, y.a, x.a, y.b),
              svg.text((x.a + x.b) / 2, HEIGHT - 6, "step", "middle"),
              svg.vertical_title(14, (y.a + y.b) / 2, "loss")]
    if lr is not None:
        parts.append(svg.line(x.b, lr.a, x.b, lr.b, LR[2]))
        for v in svg.ticks(*svg.nice_range(0.0, lr.hi)):
            parts.append(svg.text(x.b + 5, lr.at(v) + 4, svg.label(v), fill=LR[2]))
        parts.append(svg.vertical_title(WIDTH - 10, (lr.a + lr.b) / 2, LR[0]))
    return parts


PANEL_WIDTH, PANEL_HEIGHT = 300, 210
P_LEFT, P_RIGHT, P_TOP, P_BOTTOM = 50, 16, 28, 36


def metric_panel(title: str, points: list[tuple[str, int, float]], best: str | None = None) -> str:
    """One figure against the step: ``points`` are ``(name, step, value)`` with the base model as ``"base"`` at
    step 0, drawn as a dashed reference line too; the best checkpoint is ringed. Empty with fewer than 2 points."""
    points = sorted(points, key=lambda p: p[1])
    if len(points) < 2:
        return ""
    values = [v for _, _, v in points]
    bottom, top, step = svg.nice_range(min(values), max(values), 4)
    x = Axis(0, max(s for _, s, _ in points), P_LEFT, PANEL_WIDTH - P_RIGHT)
    y = Axis(bottom, top, PANEL_HEIGHT - P_BOTTOM, P_TOP)
    parts = [svg.open_svg(PANEL_WIDTH, PANEL_HEIGHT, "metric-panel", y_lo=y.lo, y_hi=y.hi, x_hi=x.hi),
             svg.text(P_LEFT, 16, title)]
    for v in svg.ticks(bottom, top, step):
        parts.append(svg.line(x.a, y.at(v), x.b, y.at(v), "#e4e4e4"))
        parts.append(svg.text(x.a - 5, y.at(v) + 4, svg.label(v), "end"))
    parts += [svg.line(x.a, y.a, x.b, y.a), svg.line(x.a, y.a, x.a, y.b),
              svg.text(x.a, y.a + 15, "0", "middle"), svg.text(x.b, y.a + 15, svg.label(x.hi), "middle"),
              svg.text((x.a + x.b) / 2, PANEL_HEIGHT - 6, "step", "middle")]
    base = next((v for n, _, v in points if n == "base"), None)
    if base is not None:
        parts.append(svg.line(x.a, y.at(base), x.b, y.at(base), "#c33", stroke_dasharray="4 3",
                              **{"class": "base-line"}))
    parts.append(svg.polyline([(x.at(s), y.at(v)) for _, s, v in points], "metric-line", "#2f6db5"))
    parts += [_point(name, x.at(s), y.at(v), s, v, best) for name, s, v in points]
    parts.append("</svg>")
    return "\n".join(parts)


def _point(name: str, cx: float, cy: float, step: int, value: float, best: str | None) -> str:
    kind = "base" if name == "base" else "best" if name == best else "step"
    fill, stroke = {"base": ("white", "#c33"), "best": ("#2a2", "#000"), "step": ("#2f6db5", "#2f6db5")}[kind]
    tip = f"{name} (step {step}): {value:.4f}" + (" (best)" if kind == "best" else "")
    return (f'<circle class="point {kind}" cx="{cx}" cy="{cy}" r="{6 if kind == "best" else 4}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="2" data-name="{html.escape(name)}" data-step="{step}" '
            f'data-value="{value}"><title>{html.escape(tip)}</title></circle>')
