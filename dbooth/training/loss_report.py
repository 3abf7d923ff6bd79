"""The "Training" section of ``RUN/report.html``: the loss curve, drawn from ``RUN/loss.csv``.

``loss_curve_svg`` is a pure function of the history's rows; ``write_loss_report`` is the only one that
touches the disk. The section sits between its own markers above ``dbooth eval``'s section, so each verb
replaces only its own part of the page.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from dbooth.eval.report import REPORT_FILE, merge_section
from dbooth.eval.report import START as EVAL_START
from dbooth.util.fsutil import atomic_write_text
from dbooth.training.history import HISTORY_FILE, read_history

MARKERS = ("<!-- dbooth:training -->", "<!-- /dbooth:training -->")
MAX_POINTS = 200  # per line; longer runs are averaged over bins of consecutive steps
WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 60, 70, 30, 40  # room for the loss axis (left), learning rate (right), legend, steps
# (label, column, colour); the learning rate has its own axis on the right, from 0 to its largest value
LOSSES = (("instance loss", "instance_loss", "#4a7ab5"), ("prior loss", "prior_loss", "#d9822b"))
LR = ("learning rate", "lr", "#888")


def binned(rows: list[dict], key: str, points: int = MAX_POINTS) -> list[tuple[float, float]]:
    """``(step, value)`` of the rows that have ``key``, at most ``points`` of them: consecutive rows averaged
    in bins of ``ceil(n / points)`` (mean step, mean value), so a long run's curve is also smoothed."""
    have = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    size = max(1, math.ceil(len(have) / points))
    bins = [have[i:i + size] for i in range(0, len(have), size)]
    return [(sum(s for s, _ in b) / len(b), sum(v for _, v in b) / len(b)) for b in bins]


def _scale(v: float, lo: float, hi: float, a: float, b: float) -> float:
    """``lo..hi`` onto ``a..b``; a single value sits in the middle."""
    if hi == lo:
        return round((a + b) / 2, 2)
    return round(a + (v - lo) / (hi - lo) * (b - a), 2)


def loss_curve_svg(rows: list[dict]) -> str:
    """Instance and prior loss (left axis, from 0) and the learning rate (right axis, from 0) against the
    step; empty when there is nothing to draw. Without prior preservation the instance loss is the loss."""
    instance = "instance_loss" if any(r.get("instance_loss") is not None for r in rows) else "loss"
    lines = [(label, binned(rows, instance if key == "instance_loss" else key), colour)
             for label, key, colour in LOSSES]
    lines = [line for line in lines if line[1]]
    if not lines:
        return ""
    lr = binned(rows, LR[1])
    steps = [r["step"] for r in rows]
    lo, hi = min(steps), max(steps)
    top = max(v for _, points, _ in lines for _, v in points) or 1.0
    lr_top = max((v for _, v in lr), default=0.0) or 1.0
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP

    def xy(points, ceiling):
        return " ".join(f"{_scale(s, lo, hi, x0, x1)},{_scale(v, 0.0, ceiling, y0, y1)}" for s, v in points)

    parts = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" class="loss-curve" width="{WIDTH}" height="{HEIGHT}" '
         f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">'),
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#888"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#888"/>',
        f'<text x="{x0}" y="{y0 + 15}">{lo}</text>',
        f'<text x="{x1}" y="{y0 + 15}" text-anchor="end">{hi}</text>',
        f'<text x="{(x0 + x1) / 2}" y="{HEIGHT - 8}" text-anchor="middle">step</text>',
        f'<text x="{x0 - 4}" y="{y0}" text-anchor="end">0</text>',
        f'<text x="{x0 - 4}" y="{y1 + 8}" text-anchor="end">{top:.4g}</text>',
        f'<text transform="translate(14 {(y0 + y1) / 2}) rotate(-90)" text-anchor="middle">loss</text>',
    ]
    legend = []
    for label, points, colour in lines:
        parts.append(f'<polyline class="{label.replace(" ", "-")}" fill="none" stroke="{colour}" '
                     f'points="{xy(points, top)}"/>')
        legend.append((label, colour))
    if lr:
        parts += [
            f'<line x1="{x1}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#bbb"/>',
            f'<text x="{x1 + 4}" y="{y0}">0</text>',
            f'<text x="{x1 + 4}" y="{y1 + 8}">{lr_top:.3g}</text>',
            (f'<polyline class="learning-rate" fill="none" stroke="{LR[2]}" stroke-dasharray="4 3" '
             f'points="{xy(lr, lr_top)}"/>'),
        ]
        legend.append((LR[0] + " (right axis)", LR[2]))
    x = x0
    for label, colour in legend:
        parts.append(f'<line x1="{x}" y1="12" x2="{x + 18}" y2="12" stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{x + 22}" y="16">{html.escape(label)}</text>')
        x += 34 + 6 * len(label)
    parts.append("</svg>")
    return "\n".join(parts)


def training_section(rows: list[dict]) -> str:
    """The section, markers included: the curve and the last step's figures."""
    svg = loss_curve_svg(rows)
    last = rows[-1] if rows else {}
    figures = ", ".join(f"{name} {last[key]:.4g}" for name, key in
                        (("loss", "loss"), ("prior loss", "prior_loss"), ("learning rate", "lr"))
                        if last.get(key) is not None)
    body = [f"<p>{len(rows)} steps recorded in {HISTORY_FILE}"
            + (f"; at step {last['step']}: {figures}" if figures else "") + ".</p>"]
    if len(rows) > MAX_POINTS:
        body.append(f"<p class=note>Each point is the mean of {math.ceil(len(rows) / MAX_POINTS)} steps.</p>")
    if svg:
        body.append(svg)
    return "\n".join([MARKERS[0], '<section id="training"><h2>Training</h2>', *body, "</section>", MARKERS[1]])


def write_loss_report(run_dir: Path, run_id: str) -> Path | None:
    """Write (or update) the training section of ``RUN/report.html`` from ``RUN/loss.csv``; None without rows."""
    run_dir = Path(run_dir)
    rows = read_history(run_dir / HISTORY_FILE)
    if not rows:
        return None
    path = run_dir / REPORT_FILE
    page = path.read_text(encoding="utf-8") if path.is_file() else None
    atomic_write_text(path, merge_section(page, training_section(rows), run_id, MARKERS, before=EVAL_START))
    return path
