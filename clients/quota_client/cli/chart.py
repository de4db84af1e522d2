"""The trend chart: one bar per day (or hour) and series, every series on the same scale.

One scale for all series, so that two meters or two channels can be compared by eye; the bars are
as long as the width leaves after the label and the number, so that no line is wider than the
terminal (or `COLUMNS`).
"""

from __future__ import annotations

from quota_client.results import Trend

_EIGHTHS = " ▏▎▍▌▋▊▉"
MIN_BAR = 8  # narrower than this a bar says nothing; the lines are then cut at the width instead


def bar(value: int, top: int, width: int) -> str:
    """A bar of `value` on a scale where `top` fills `width` characters, in eighths of a character."""
    if top <= 0 or value <= 0 or width <= 0:
        return ""
    eighths = max(1, round(value * width * 8 / top))  # a charge never disappears into rounding
    return "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


def chart_lines(trend: Trend, width: int) -> list[str]:
    """The chart as lines of at most `width` characters."""
    points = [p for s in trend.series for p in s.points]
    top = max((p.amount for p in points), default=0)
    label_w = max((len(p.label) for p in points), default=10)
    amount_w = max((len(str(p.amount)) for p in points), default=1)
    bar_w = max(width - label_w - amount_w - 3, MIN_BAR)
    lines = [f"time zone {trend.time_zone}; one scale for every series: a full bar is {top}"]
    for series in trend.series:
        title = series.meter + (f" / {series.group}" if series.group else "")
        lines.append("")
        lines.append(f"{title} (total {sum(p.amount for p in series.points)})")
        for p in series.points:
            lines.append(f"{p.label:<{label_w}} {p.amount:>{amount_w}}  {bar(p.amount, top, bar_w)}".rstrip())
    return [line if len(line) <= width else line[: max(width - 1, 0)] + "…" for line in lines]
