"""The run's report as one self-contained HTML page (`reports/<env>-<time>.html`, beside the
JSON): the phases as a timeline per host and batch, the monitoring window's latency and errors
as a plot, the load test's figures, the success metrics, what changed and what was rolled
back. Inline SVG and CSS only: no script, nothing fetched, it opens anywhere."""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

from tasks.inventory import host_order

COLORS = {
    "preflight": "#8da0cb",
    "build": "#66c2a5",
    "backup": "#fc8d62",
    "migrate": "#e78ac3",
    "redis": "#a6d854",
    "env_file": "#ffd92f",
    "release": "#e5c494",
    "verify": "#b3b3b3",
    "loadtest": "#1b9e77",
    "monitor": "#7570b3",
    "contract": "#d95f02",
}
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #c62828; font-weight: 600; }
.status { padding: 2px 8px; border-radius: 4px; color: #fff; white-space: nowrap; }
.ok { background: #1a7f37; } .bad { background: #c62828; } .back { background: #ef6c00; }
svg text { font: 11px system-ui, sans-serif; }
"""


def nice_ticks(low: float, high: float, most: int = 8) -> list[float]:
    """At most MOST round values (steps of 1, 2 or 5 times a power of ten) from LOW to HIGH,
    LOW and the last step at or below HIGH included: the ticks of an axis a person reads."""
    span = high - low
    if span <= 0:
        return [low]
    raw = span / max(most - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step) * step
    count = int(math.floor((high - first) / step + 1e-9)) + 1
    return [round(first + i * step, 10) for i in range(count)]


def _seconds(value: float) -> str:
    return f"{value:g} s" if value < 60 else f"{value // 60:g} min {value % 60:g} s"


def shown(value: Any) -> str:
    """A recorded value as a person reads it: structures as JSON, nothing as a dash."""
    if value is None:
        return "-"
    if isinstance(value, dict | list | bool):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _status_class(status: str) -> str:
    if status == "success":
        return "ok"
    return "back" if "rolled back" in status else "bad"


def _hosts(records: dict[str, dict[str, Any]]) -> list[str]:
    """Hosts in rollout order: batch, then name."""

    def batch(name: str) -> int:
        return records[name].get("facts", {}).get("rollout", {}).get("batch", 0)

    return sorted(records, key=lambda name: (batch(name), host_order(name)))


def timeline(records: dict[str, dict[str, Any]], width: int = 900) -> str:
    """One row per host, one bar per phase, on a shared time axis (SVG)."""
    spans = [
        (p["start"], p["start"] + p.get("seconds", 0))
        for rec in records.values()
        for p in rec["phases"]
    ]
    if not spans:
        return "<p>No phase ran.</p>"
    begin, end = min(s for s, _ in spans), max(e for _, e in spans)
    total = max(end - begin, 0.001)
    left, row = 150, 26
    hosts = _hosts(records)
    height = row * len(hosts) + 34

    def x(t: float) -> float:
        return left + (t - begin) / total * (width - left - 10)

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="timeline">']
    for i, name in enumerate(hosts):
        y = 5 + i * row
        rollout = records[name].get("facts", {}).get("rollout", {})
        label = f"{name} (batch {rollout['batch']})" if rollout else name
        parts.append(f'<text x="0" y="{y + 15}">{escape(label)}</text>')
        for p in records[name]["phases"]:
            x0, x1 = x(p["start"]), x(p["start"] + p.get("seconds", 0))
            color = COLORS.get(p["phase"], "#999")
            title = f"{p['phase']}: {p.get('seconds', 0)} s"
            parts.append(
                f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" height="{row - 6}" '
                f'fill="{color}"><title>{escape(title)}</title></rect>'
            )
            if x1 - x0 > 7 * len(p["phase"]):
                parts.append(f'<text x="{x0 + 3:.1f}" y="{y + 14}">{escape(p["phase"])}</text>')
    axis_y = height - 10
    for tick in nice_ticks(0, total):
        tx = x(begin + tick)
        parts.append(
            f'<line x1="{tx:.1f}" y1="5" x2="{tx:.1f}" y2="{axis_y - 12}" stroke="#ddd"/>'
            f'<text x="{tx:.1f}" y="{axis_y}" text-anchor="middle">{_seconds(tick)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts) + _phase_table(records, hosts)


def _phase_table(records: dict[str, dict[str, Any]], hosts: list[str]) -> str:
    """Every phase of every host with its color and seconds: the short ones the timeline has no
    room to label included."""
    phases = list(dict.fromkeys(p["phase"] for name in hosts for p in records[name]["phases"]))
    head = "".join(
        f'<th><span style="color:{COLORS.get(phase, "#999")}">&#9632;</span> {escape(phase)}</th>'
        for phase in phases
    )
    rows = []
    for name in hosts:
        took = {p["phase"]: p.get("seconds") for p in records[name]["phases"]}
        cells = "".join(
            f"<td>{'-' if took.get(phase) is None else _seconds(took[phase])}</td>"
            for phase in phases
        )
        rows.append(f"<tr><td>{escape(name)}</td>{cells}</tr>")
    return f"<table><tr><th>host</th>{head}</tr>{''.join(rows)}</table>"


def latency_plot(records: dict[str, dict[str, Any]], width: int = 900, height: int = 220) -> str:
    """The monitoring window's samples: latency per host as a line, failed samples in red."""
    series = {
        name: rec.get("facts", {}).get("monitor", {}).get("series", [])
        for name, rec in records.items()
    }
    points = [p for s in series.values() for p in s]
    if not points:
        return "<p>No monitoring window in this run.</p>"
    t0, t1 = min(p[0] for p in points), max(p[0] for p in points)
    y_ticks = nice_ticks(0, max(max(p[1] for p in points), 1.0))
    top = max(max(p[1] for p in points), 1.0)
    left, bottom = 60, height - 25

    def xy(t: float, ms: float) -> tuple[float, float]:
        xs = left + (t - t0) / max(t1 - t0, 0.001) * (width - left - 10)
        return xs, bottom - ms / top * (bottom - 10)

    palette = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22"]
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="latency">']
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{width - 10}" y2="{bottom}" stroke="#999"/>')
    for tick in y_ticks:
        _, ty = xy(t0, tick)
        parts.append(
            f'<line x1="{left}" y1="{ty:.1f}" x2="{width - 10}" y2="{ty:.1f}" stroke="#eee"/>'
            f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end">{tick:g} ms</text>'
        )
    for tick in nice_ticks(0, t1 - t0):
        tx, _ = xy(t0 + tick, 0)
        parts.append(
            f'<text x="{tx:.1f}" y="{height - 5}" text-anchor="middle">{_seconds(tick)}</text>'
        )
    for i, (name, samples) in enumerate(sorted(series.items())):
        color = palette[i % len(palette)]
        line = " ".join("{:.1f},{:.1f}".format(*xy(t, ms)) for t, ms, _, _ in samples)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(
            f'<text x="{width - 120}" y="{20 + 14 * i}" fill="{color}">{escape(name)}</text>'
        )
        for t, ms, status, errors in samples:
            if status != 200 or errors:
                cx, cy = xy(t, ms)
                parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="#c62828"/>')
    parts.append("</svg>")
    return "".join(parts)


def canary_plot(records: dict[str, dict[str, Any]], width: int = 900, height: int = 220) -> str:
    """The canary analysis: the canary's and the baseline's latency quantiles side by side over
    the same window (SVG), and the verdict on each metric."""
    found = [
        rec["facts"]["canary_analysis"]
        for name in _hosts(records)
        if "canary_analysis" in (rec := records[name]).get("facts", {})
    ]
    if not found:
        return "<p>No canary analysis in this run.</p>"
    facts = found[0]
    sides = {"canary": facts["canary_ms"], "baseline": facts["baseline_ms"]}
    colors = {"canary": "#ef6c00", "baseline": "#1f77b4"}
    top = max(max(sides["canary"] + sides["baseline"]), 1.0)
    left, bottom = 60, height - 25
    slot = (width - left - 10) / len(facts["quantiles"])
    bar = slot / 3

    def y(ms: float) -> float:
        return bottom - ms / top * (bottom - 10)

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="canary latency">']
    for tick in nice_ticks(0, top):
        parts.append(
            f'<line x1="{left}" y1="{y(tick):.1f}" x2="{width - 10}" y2="{y(tick):.1f}" '
            f'stroke="#eee"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" '
            f'text-anchor="end">{tick:g} ms</text>'
        )
    for i, q in enumerate(facts["quantiles"]):
        x0 = left + i * slot + bar / 2
        for j, (side, values) in enumerate(sides.items()):
            ms = values[i]
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{y(ms):.1f}" width="{bar:.1f}" '
                f'height="{bottom - y(ms):.1f}" fill="{colors[side]}">'
                f"<title>{side} p{q * 100:g}: {ms:g} ms</title></rect>"
            )
        parts.append(
            f'<text x="{x0 + bar:.1f}" y="{height - 5}" text-anchor="middle">p{q * 100:g}</text>'
        )
    for j, side in enumerate(sides):
        parts.append(
            f'<text x="{width - 170}" y="{20 + 14 * j}" fill="{colors[side]}">'
            f"{side} ({facts['requests'][side]} requests)</text>"
        )
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{width - 10}" y2="{bottom}" stroke="#999"/>')
    parts.append("</svg>")
    verdict = "rejected: the canary went back" if facts["rejected"] else "the rollout went on"
    summary = (
        f"<p><b>{escape(facts['result'])}</b> ({escape(facts['reason'])}) over "
        f"{facts['seconds']} s: {verdict}</p>"
    )
    return summary + "".join(parts) + _list(facts["metrics"])


def _list(items: list[str]) -> str:
    if not items:
        return "none"
    return "<ul>" + "".join(f"<li>{escape(str(i))}</li>" for i in items) + "</ul>"


def html_report(env: str, run: str, records: dict[str, dict[str, Any]]) -> str:
    """The whole page."""
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>deploy {escape(env)} {escape(run)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Deploy of {escape(env)}, run {escape(run)}</h1>",
        "<table><tr><th>host</th><th>status</th><th>version</th><th>previous</th>"
        "<th>seconds</th><th>by</th><th>failure</th></tr>",
    ]
    for name in _hosts(records):
        rec = records[name]
        out.append(
            f"<tr><td>{escape(name)}</td><td><span class='status {_status_class(rec['status'])}'>"
            f"{escape(rec['status'])}</span></td><td>{escape(str(rec['version']))}</td>"
            f"<td>{escape(rec['previous_release'] or 'first deploy')}</td><td>{rec['seconds']}</td>"
            f"<td>{escape(str(rec['deployed_by']))}</td><td>{escape(rec['failure'] or '')}</td>"
            "</tr>"
        )
    out.append("</table><h2>Phases</h2>" + timeline(records))
    out.append("<h2>Monitoring window: latency of the history endpoint</h2>")
    out.append(latency_plot(records))
    out.append("<h2>Canary analysis: the canary against the hosts on the old release</h2>")
    out.append(canary_plot(records))
    out.append("<h2>Load test (k6)</h2>")
    rows = [
        f"<tr><td>{escape(name)}</td><td>{escape(mode)}</td><td>{figures['p95_ms']} ms</td>"
        f"<td>{figures['error_rate']:.2%}</td><td>{figures['rps']} req/s</td></tr>"
        for name in _hosts(records)
        for mode, figures in sorted(records[name].get("facts", {}).get("loadtest", {}).items())
        if isinstance(figures, dict)
    ]
    if rows:
        out.append("<table><tr><th>host</th><th>test</th><th>p95</th><th>error rate</th>")
        out.append("<th>rate</th></tr>" + "".join(rows) + "</table>")
    else:
        out.append("<p>No load test in this run.</p>")
    for name in _hosts(records):
        rec = records[name]
        out.append(f"<h2>{escape(name)}: success metrics</h2><table>")
        out.append("<tr><th>metric</th><th>threshold</th><th>result</th><th>measured</th></tr>")
        for m in rec["success_metrics"]:
            result = "<span class=pass>pass</span>" if m["pass"] else "<span class=fail>FAIL</span>"
            out.append(
                f"<tr><td>{escape(m['metric'])}</td><td>{escape(shown(m['threshold']))}</td>"
                f"<td>{result}</td><td>{escape(shown(m['measured']))}</td></tr>"
            )
        out.append("</table>")
        out.append(f"<p><b>Changed:</b> {_list(rec['changed'])}</p>")
        out.append(f"<p><b>Rolled back:</b> {_list(rec['rolled_back'])}</p>")
        out.append(f"<p><b>Not rolled back:</b> {_list(rec['not_rolled_back'])}</p>")
    out.append("</body></html>\n")
    return "\n".join(out)


def drift_page(env: str, run: str, hosts: dict[str, dict[str, Any]]) -> str:
    """A drift check's page: per host, each difference (object, expected, found) and notes."""
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>drift {escape(env)} {escape(run)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Drift of {escape(env)}, run {escape(run)}</h1>",
    ]
    for name in sorted(hosts, key=host_order):
        found = hosts[name]
        verdict = "<span class=fail>drift</span>" if found["differences"] else "none"
        out.append(f"<h2>{escape(name)}: {verdict}</h2>")
        out += [f"<p>{escape(note)}</p>" for note in found["notes"]]
        if found["differences"]:
            out.append("<table><tr><th>object</th><th>expected</th><th>found</th></tr>")
            out += [
                f"<tr><td>{escape(x['object'])}</td><td>{escape(x['expected'])}</td>"
                f"<td>{escape(x['found'])}</td></tr>"
                for x in found["differences"]
            ]
            out.append("</table>")
    out.append("</body></html>\n")
    return "\n".join(out)
