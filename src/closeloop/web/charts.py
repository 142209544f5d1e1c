"""Charts as server-rendered SVG (no JavaScript, no CDN): bars and trend lines."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from html import escape

from markupsafe import Markup


def _num(value: object) -> float:
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return 0.0


def bar_chart(items: Sequence[tuple[str, object]], *, width: int = 420, bar: int = 18, title: str = "") -> Markup:
    """Horizontal bars, one per (label, value)."""
    if not items:
        return Markup("")
    top = max((_num(v) for _, v in items), default=0.0) or 1.0
    label_w, gap = 170, 6
    height = len(items) * (bar + gap) + gap
    parts = [f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}"'
             f' width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, value) in enumerate(items):
        y = gap + i * (bar + gap)
        w = max(1.0, (width - label_w - 50) * _num(value) / top)
        parts.append(f'<text x="0" y="{y + bar - 5}" class="chart-label">{escape(str(label))}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar}" class="chart-bar"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + bar - 5}" class="chart-value">{escape(str(value))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def trend(points: Sequence[tuple[str, object]], *, width: int = 220, height: int = 60) -> Markup:
    """A small line chart over periods: (period, value) in order; labels on the first and last point."""
    values = [_num(v) for _, v in points]
    if len(values) < 2:
        return Markup("")
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = (width - 10) / (len(values) - 1)
    coords = [(5 + i * step, height - 15 - (v - lo) / span * (height - 25)) for i, v in enumerate(values)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" class="chart-dot"><title>{escape(p)}: '
                   f'{escape(str(v))}</title></circle>' for (x, y), (p, v) in zip(coords, points, strict=True))
    return Markup(
        f'<svg class="chart trend" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' xmlns="http://www.w3.org/2000/svg"><polyline points="{path}" class="chart-line" fill="none"/>{dots}'
        f'<text x="0" y="{height - 2}" class="chart-label">{escape(points[0][0])}</text>'
        f'<text x="{width}" y="{height - 2}" text-anchor="end" class="chart-label">{escape(points[-1][0])}</text>'
        "</svg>")


def stacked_bars(labels: Sequence[str], series: Sequence[tuple[str, Sequence[object]]], *, width: int = 640,
                 height: int = 200, title: str = "") -> Markup:
    """Vertical bars, one per label, stacking each series (name, values) in order; a legend below."""
    if not labels or not series:
        return Markup("")
    totals = [sum(max(0.0, _num(values[i])) for _, values in series) for i in range(len(labels))]
    top = max(totals) or 1.0
    plot_h, left, gap = height - 40, 6, 6
    bar_w = max(4.0, (width - left) / len(labels) - gap)
    parts = [f'<svg class="chart columns" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}"'
             f' width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for i, label in enumerate(labels):
        x = left + i * (bar_w + gap)
        y = float(plot_h)
        for k, (name, values) in enumerate(series):
            v = max(0.0, _num(values[i]))
            h = plot_h * v / top
            y -= h
            if h > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}"'
                             f' class="chart-bar series-{k}"><title>{escape(str(label))} {escape(name)}:'
                             f' {escape(str(values[i]))}</title></rect>')
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{plot_h + 14}" text-anchor="middle"'
                     f' class="chart-label">{escape(str(label)[-5:] if len(labels) > 8 else str(label))}</text>')
    x = left
    for k, (name, _) in enumerate(series):
        parts.append(f'<rect x="{x}" y="{height - 12}" width="10" height="10" class="chart-bar series-{k}"/>'
                     f'<text x="{x + 14}" y="{height - 3}" class="chart-label">{escape(name)}</text>')
        x += 20 + 7 * len(name)
    parts.append("</svg>")
    return Markup("".join(parts))
