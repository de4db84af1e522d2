"""Draw the dashboard's main panels as one SVG picture from a real Prometheus, without Grafana.

    python deploy/monitoring/draw_panels.py --prometheus http://127.0.0.1:9090 --out docs/dashboard.svg

Each panel's queries are read from dashboard.json (the same PromQL Grafana runs, with `$instance`
as every replica and `$__rate_interval` as --rate-interval), asked of Prometheus' HTTP API
(/api/v1/query_range) and drawn as lines on a shared time axis. Only the standard library is used,
so the script runs wherever Python does.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MAIN_PANELS = ("Decisions by status and reason", "Latency p50 / p99 by method", "Calls by status code",
               "Ledger commit lag p50 / p99", "Ledger batch size", "Redis and Postgres health")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MAX_SERIES = 8  # per panel, the ones with the largest values
PANEL_W, PANEL_H, COLUMNS = 560, 300, 2
PLOT = (60, 40, 530, 210)  # left, top, right, bottom of the plot area inside a panel


@dataclass
class Series:
    legend: str
    points: list[tuple[float, float]]  # (unix time s, value); NaN values are gaps


def expand(expr: str, rate_interval: str) -> str:
    """A dashboard expression as Prometheus takes it: every replica, the given rate window."""
    return expr.replace("$__rate_interval", rate_interval).replace("$instance", ".*")


def legend_of(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template) or json.dumps(labels)


def query_range(prometheus: str, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step_s})
    with urllib.request.urlopen(f"{prometheus.rstrip('/')}/api/v1/query_range?{params}", timeout=30) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {expr!r}: {body.get('error')}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def panel_series(prometheus: str, panel: dict[str, Any], start: float, end: float, step_s: float,
                 rate_interval: str) -> list[Series]:
    out = []
    for target in panel["targets"]:
        for r in query_range(prometheus, expand(target["expr"], rate_interval), start, end, step_s):
            points = [(float(t), float(v)) for t, v in r["values"]]
            if any(math.isfinite(v) for _, v in points):
                out.append(Series(legend_of(target.get("legendFormat", ""), r["metric"]), points))
    peak = {id(s): max((v for _, v in s.points if math.isfinite(v)), default=0.0) for s in out}
    if any(peak.values()):  # series that stayed at zero (a code never returned) only crowd the legend
        out = [s for s in out if peak[id(s)]]
    out.sort(key=lambda s: -peak[id(s)])
    return out[:MAX_SERIES]


def nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above value (1 for nothing)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"
    if unit == "percentunit":
        return f"{value * 100:g}%"
    return f"{value:g}"


def draw_panel(x0: int, y0: int, title: str, unit: str, series: list[Series], start: float, end: float) -> list[str]:
    left, top, right, bottom = PLOT
    top_value = nice_max(max((v for s in series for _, v in s.points if math.isfinite(v)), default=0.0))
    out = [f'<g transform="translate({x0},{y0})">',
           f'<rect width="{PANEL_W - 10}" height="{PANEL_H - 10}" fill="#fff" stroke="#ccc"/>',
           f'<text x="10" y="22" font-size="14" font-weight="bold">{escape(title)}</text>']
    for i in range(5):  # horizontal grid lines with their values
        v = top_value * i / 4
        y = bottom - (bottom - top) * i / 4
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{escape(fmt(v, unit))}</text>')
    for t, anchor in ((start, "start"), (end, "end")):
        label = time.strftime("%H:%M:%S", time.gmtime(t))
        out.append(f'<text x="{left if anchor == "start" else right}" y="{bottom + 14}" font-size="10" '
                   f'text-anchor="{anchor}">{label} UTC</text>')
    span = max(end - start, 1e-9)
    for n, s in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        runs: list[list[str]] = [[]]
        for t, v in s.points:
            if not math.isfinite(v):
                runs.append([])
                continue
            x = left + (right - left) * (t - start) / span
            y = bottom - (bottom - top) * min(v, top_value) / top_value
            runs[-1].append(f"{x:.1f},{y:.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="1.5" fill="{colour}"/>')
            elif run:
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(run)}"/>')
        lx, ly = 10 + (n % 2) * 270, bottom + 30 + (n // 2) * 14
        out.append(f'<rect x="{lx}" y="{ly - 8}" width="10" height="3" fill="{colour}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly - 4}" font-size="10">{escape(s.legend[:44])}</text>')
    if not series:
        out.append(f'<text x="{(left + right) / 2}" y="{(top + bottom) / 2}" text-anchor="middle" fill="#999">no data</text>')
    out.append("</g>")
    return out


def draw(prometheus: str, dashboard: dict[str, Any], titles: tuple[str, ...], minutes: float, step_s: float,
         rate_interval: str, end: float | None = None) -> str:
    """The SVG text of the panels named `titles`, over the last `minutes`."""
    end = time.time() if end is None else end
    start = end - minutes * 60
    panels = {p["title"]: p for p in dashboard["panels"]}
    missing = [t for t in titles if t not in panels]
    if missing:
        raise KeyError(f"not panels of the dashboard: {missing}")
    rows = math.ceil(len(titles) / COLUMNS)
    width, height = COLUMNS * PANEL_W + 10, rows * PANEL_H + 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">',
           f'<rect width="{width}" height="{height}" fill="#f7f7f7"/>',
           f'<text x="10" y="28" font-size="18" font-weight="bold">{escape(dashboard["title"])}: main panels, '
           f'{time.strftime("%Y-%m-%d %H:%M", time.gmtime(start))}-{time.strftime("%H:%M UTC", time.gmtime(end))}</text>']
    for i, title in enumerate(titles):
        panel = panels[title]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        series = panel_series(prometheus, panel, start, end, step_s, rate_interval)
        out += draw_panel(10 + (i % COLUMNS) * PANEL_W, 45 + (i // COLUMNS) * PANEL_H, title, unit, series, start, end)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    ap.add_argument("--dashboard", type=Path, default=HERE / "dashboard.json")
    ap.add_argument("--out", type=Path, required=True, help="the SVG file to write")
    ap.add_argument("--minutes", type=float, default=10.0, help="how far back to draw")
    ap.add_argument("--step", type=float, default=5.0, help="seconds between points")
    ap.add_argument("--rate-interval", default="1m", help="what $__rate_interval stands for")
    ap.add_argument("--panel", action="append", help="a panel title (repeatable); default: the main panels")
    args = ap.parse_args(argv)
    dashboard = json.loads(args.dashboard.read_text())
    svg = draw(args.prometheus, dashboard, tuple(args.panel or MAIN_PANELS), args.minutes, args.step, args.rate_interval)
    args.out.write_text(svg)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
