"""Small server-side charts for the dashboard: inline SVG strings, no JavaScript, no CDN.

Labels are escaped; every chart carries a <title> and role="img" with an aria-label, so a
screen reader gets the gist and the numbers are in the tables next to it.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

WIDTH, HEIGHT, PAD = 360, 140, 28


def cumulative_svg(times: list[datetime], *, label: str) -> str:
    """A step line of how many ``label`` there were over time (``times`` sorted)."""
    if not times:
        return ""
    start, end = times[0].timestamp(), times[-1].timestamp()
    span = max(end - start, 1.0)
    n = len(times)
    points: list[tuple[float, float]] = [(float(PAD), float(HEIGHT - PAD))]
    for count, moment in enumerate(times, start=1):
        x = PAD + (moment.timestamp() - start) / span * (WIDTH - 2 * PAD)
        y = HEIGHT - PAD - count / n * (HEIGHT - 2 * PAD)
        points += [(x, points[-1][1]), (x, y)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    title = f"{n} {label}, {times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M} UTC"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<polyline fill="none" stroke="#2b5797" stroke-width="2" points="{path}"/>'
        f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="11">{times[0]:%H:%M}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" font-size="11" text-anchor="end">{times[-1]:%H:%M}</text>'
        f'<text x="{PAD}" y="{PAD - 10}" font-size="11">{n} {escape(label)}</text></svg>'
    )


def bars_svg(rows: list[tuple[str, int]], *, label: str) -> str:
    """Horizontal bars, one per (name, value)."""
    if not rows:
        return ""
    top = max(value for _, value in rows) or 1
    bar, gap, left = 18, 6, 110
    height = len(rows) * (bar + gap) + gap
    parts = []
    for i, (name, value) in enumerate(rows):
        y = gap + i * (bar + gap)
        length = value / top * (WIDTH - left - 50)
        parts.append(
            f'<text x="{left - 6}" y="{y + 13}" font-size="11" text-anchor="end">{escape(str(name))}</text>'
            f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar}" fill="#2b5797"/>'
            f'<text x="{left + length + 4:.1f}" y="{y + 13}" font-size="11">{value}</text>'
        )
    title = f"{label} per condition: " + ", ".join(f"{name} {value}" for name, value in rows)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(parts)}</svg>'
    )
