"""SVG building blocks for the run page's charts: an axis that maps values onto pixels, "nice" tick values
and the few elements the charts draw. Pure string building, no dependencies beyond the standard library."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

FONT = 'font-family="sans-serif" font-size="11"'


@dataclass(frozen=True)
class Axis:
    """Values ``lo..hi`` onto pixels ``a..b`` (``b < a`` for a vertical axis: SVG's y grows downwards)."""

    lo: float
    hi: float
    a: float
    b: float

    def at(self, value: float) -> float:
        """The pixel of ``value``, clipped to the axis; a range of one value puts everything in the middle."""
        if self.hi == self.lo:
            return round((self.a + self.b) / 2, 2)
        share = min(1.0, max(0.0, (value - self.lo) / (self.hi - self.lo)))
        return round(self.a + share * (self.b - self.a), 2)


def nice_step(span: float, count: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that cuts ``span`` into about ``count`` parts."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))


def nice_range(lo: float, hi: float, count: int = 4) -> tuple[float, float, float]:
    """``(bottom, top, step)``: round values with ``bottom <= lo`` and ``top >= hi``, ticks ``step`` apart."""
    if hi <= lo:  # one value: a band around it, not below 0 for a figure that cannot be negative
        pad = abs(hi) * 0.1 or 0.5
        lo, hi = (max(0.0, lo - pad) if lo >= 0 else lo - pad), hi + pad
    step = nice_step(hi - lo, count)
    bottom = math.floor(lo / step + 1e-9) * step
    top = math.ceil(hi / step - 1e-9) * step
    return _tidy(bottom), _tidy(top), step


def ticks(bottom: float, top: float, step: float) -> list[float]:
    n = int(round((top - bottom) / step))
    return [_tidy(bottom + i * step) for i in range(n + 1)]


def _tidy(v: float) -> float:
    """Drop the float noise of ``3 * 0.1`` so labels and tests read 0.3."""
    return float(f"{v:.12g}")


def label(value: float) -> str:
    """A tick label: 0.0002 as 2e-04, 0.25 as 0.25, 400 as 400."""
    if value == 0:
        return "0"
    if abs(value) < 1e-3 or abs(value) >= 1e5:
        return f"{value:.1e}".replace(".0e", "e")
    return f"{value:.6g}"


def open_svg(width: int, height: int, css_class: str, **data: float | str) -> str:
    """The ``<svg>`` tag; ``data`` becomes ``data-*`` attributes (the axes' ranges, for readers and tests)."""
    extra = "".join(f' data-{k.replace("_", "-")}="{html.escape(str(v))}"' for k, v in data.items())
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" {FONT}{extra}>')


def text(x: float, y: float, content: str, anchor: str = "start", **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x}" y="{y}" text-anchor="{anchor}"{extra}>{html.escape(content)}</text>'


def line(x1: float, y1: float, x2: float, y2: float, stroke: str = "#888", **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{stroke}"{extra}/>'


def polyline(points: list[tuple[float, float]], css_class: str, stroke: str, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    coords = " ".join(f"{x},{y}" for x, y in points)
    return f'<polyline class="{css_class}" fill="none" stroke="{stroke}"{extra} points="{coords}"/>'


def vertical_title(x: float, y: float, content: str) -> str:
    """An axis title written upwards, centred on ``(x, y)``."""
    return (f'<text transform="translate({x} {y}) rotate(-90)" text-anchor="middle">'
            f"{html.escape(content)}</text>")


def legend(entries: list[tuple[str, str, str]], x: float, y: float) -> list[str]:
    """One short stroke and its label per ``(label, colour, dash)``, left to right from ``(x, y)``."""
    parts = []
    for name, colour, dash in entries:
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 18}" y2="{y - 4}" stroke="{colour}" '
                     f'stroke-width="2"{dashed}/>')
        parts.append(text(x + 22, y, name))
        x += 34 + 6 * len(name)
    return parts
