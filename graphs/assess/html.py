"""The `interlock assess` scorecard as one self-contained HTML page, its figures drawn as charts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Any

__all__ = ["scorecard_html"]

_STATUSES = ("pass", "warn", "fail", "n/a")
_BLUE, _GREY, _ORANGE = "#3b6fb6", "#9aa3ae", "#d9622b"
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 520, 280, 60, 14, 62, 50
_CSS = """
body{margin:0;background:#f6f7f9;color:#1f2328;font:14px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:20px;margin:32px 0 8px}
section h2{margin-top:14px}h3{font-size:15px;margin:20px 0 6px;color:#444}
.meta{color:#555;margin:0 0 12px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:8px 20px 20px;
margin:20px 0}
table{border-collapse:collapse;width:100%}td,th{border-top:1px solid #e6e8eb;padding:6px 8px;
text-align:left;vertical-align:top}th{font-size:12px;color:#555;font-weight:600}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.badge{display:inline-block;min-width:38px;text-align:center;border-radius:4px;padding:1px 6px;
font-size:11.5px;font-weight:700;letter-spacing:.03em;text-transform:uppercase}
.s-pass{background:#1f883d;color:#fff}.s-warn{background:#f2b01e;color:#3d2c00}
.s-fail{background:#cf222e;color:#fff}.s-na{background:#6e7781;color:#fff}
.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.check{width:230px}
.side td+td{width:1%;white-space:nowrap}.title{color:#555}
.fix{margin-top:4px;padding:3px 8px;background:#fff4e5;
border-left:3px solid #d9622b}.fix b{color:#b3471a}.counts .badge{margin-right:4px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:16px}
figure{margin:0}figure svg{width:100%;height:auto}
figcaption{font-size:12.5px;color:#555;padding:0 4px}
svg text{font:11px system-ui,sans-serif;fill:#333}svg .t{font-size:14px;font-weight:600;
text-anchor:middle}svg .v{text-anchor:middle}svg .yt{text-anchor:end}svg .al{font-size:12px;
fill:#555}svg .nb{font-size:10px;fill:#cf222e;font-weight:600}
"""


@dataclass(frozen=True, slots=True)
class _NotBack:
    """A request that had not come back when the probe stopped waiting."""

    at: float
    """Where its bar ends: the probe's cap, or infinity for the chart's top."""


_Value = float | _NotBack | None


@dataclass(frozen=True, slots=True)
class _Series:
    """One set of bars in a chart, a value per group."""

    name: str
    """Its legend entry."""
    colour: str
    """Its bars' fill."""
    values: list[_Value]
    """One per group; None draws nothing."""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.2g}"


def _scale(top: float, *, whole: bool) -> tuple[float, float]:
    """The axis's top and tick step: 1, 2 or 5 times a power of ten, about four ticks."""
    if top <= 0:
        return (1.0, 1.0) if whole else (1.0, 0.25)
    power = 10 ** math.floor(math.log10(top / 4))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= top / 4)
    step = max(step, 1.0) if whole else step
    return math.ceil(top / step - 1e-9) * step, step


def _text(x: float, y: float, text: str, cls: str, turn: int = 0) -> str:
    place = f'x="{x:.1f}" y="{y:.1f}"' if not turn else (
        f'transform="translate({x:.1f},{y:.1f}) rotate({turn})"')
    return f'<text {place} class="{cls}">{_e(text)}</text>'


def _legend(items: list[tuple[str, str]]) -> str:
    """Swatches and their names in a row under the title."""
    out, x = [], float(_LEFT)
    for swatch, name in items:
        out.append(f'<g transform="translate({x:.0f},34)">{swatch}{_text(20, 10, name, "")}</g>')
        x += 30 + 6.2 * len(name)
    return "".join(out)


def _rect(x: float, y: float, width: float, height: float, style: str) -> str:
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" {style}/>'


def _bar(x: float, width: float, value: _Value, colour: str, top: float) -> str:
    """One bar with its value on top; a request not back is a dashed red bar saying so."""
    plot = _H - _TOP - _BOTTOM
    if value is None:
        return ""
    height = min(value.at if isinstance(value, _NotBack) else value, top) * plot / top
    y, mid = _TOP + plot - height, x + width / 2
    if not isinstance(value, _NotBack):
        return _rect(x, y, width, height, f'fill="{colour}"') + _text(mid, y - 4, _fmt(value), "v")
    if width >= 44:
        said = _text(mid, y + 14 if height >= 22 else y - 4, "not back", "nb v")
    else:
        said = (_text(mid + 4, y + 6, "not back", "nb", 90) if height >= 56
                else _text(mid + 4, y - 4, "not back", "nb", -90))
    return _rect(x, y, width, height, _STUCK) + said


_STUCK = 'fill="#fbe3e4" stroke="#cf222e" stroke-dasharray="4 3"'
_CAP = 'stroke="#cf222e" stroke-width="2" stroke-dasharray="6 4"'


def _chart(title: str, x_label: str, unit: str, groups: list[str], series: list[_Series],
           *, cap: float | None = None, shade_from: int | None = None, caption: str = "") -> str:
    """A bar chart (grouped when several series) as an inline SVG figure ("" without bars)."""
    if not groups:
        return ""
    known = [v.at if isinstance(v, _NotBack) else v for s in series for v in s.values
             if v is not None and (not isinstance(v, _NotBack) or math.isfinite(v.at))]
    top, step = _scale(max([*known, cap or 0.0, 0.0]), whole=unit != "seconds")
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    band = plot_w / max(len(groups), 1)
    width = min(band * 0.8 / max(len(series), 1), 56)
    legend = [(f'<rect width="11" height="11" fill="{s.colour}"/>', s.name) for s in series
              if len(series) > 1]
    parts = [_text(_W / 2, 20, title[:70], "t")]
    if shade_from is not None:
        x = _LEFT + shade_from * band
        parts.append(_rect(x, _TOP, plot_w - shade_from * band, plot_h, 'fill="#e6e9ee"')
                     + f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{_TOP + plot_h}" '
                       'stroke="#8c959f" stroke-dasharray="3 3"/>')
        legend.append(('<rect width="11" height="11" fill="#e6e9ee"/>', "last half of the run"))
    for n in range(round(top / step) + 1):
        y = _TOP + plot_h - n * step * plot_h / top
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" '
                     f'stroke="{"#888" if n == 0 else "#e3e6ea"}"/>'
                     + _text(_LEFT - 6, y + 4, _fmt(n * step), "yt"))
    chars = max(int(band / 6.5), 3)
    for g, group in enumerate(groups):
        start = _LEFT + g * band + (band - width * len(series)) / 2
        for s, one in enumerate(series):
            value = one.values[g] if g < len(one.values) else None
            parts.append(_bar(start + s * width, width, value, one.colour, top))
        label = group if len(group) <= chars else group[:chars - 1] + "…"
        parts.append(_text(_LEFT + (g + 0.5) * band, _TOP + plot_h + 15, label, "v"))
    if cap is not None:
        y = _TOP + plot_h - min(cap, top) * plot_h / top
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" {_CAP}/>')
        legend.append((f'<line x1="0" y1="6" x2="16" y2="6" {_CAP}/>', f"cap {_fmt(cap)} {unit}"))
    if any(isinstance(v, _NotBack) for s in series for v in s.values):
        legend.append((f'<rect width="11" height="11" {_STUCK}/>', "not back (probe stopped "
                                                                   "waiting)"))
    parts += [_legend(legend), _text(_LEFT + plot_w / 2, _H - 10, x_label, "al v"),
              _text(16, _TOP + plot_h / 2, unit, "al v", -90)]
    note = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return (f'<figure><svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{_e(title)}">'
            f"{''.join(parts)}</svg>{note}</figure>")


def _values(raw: object, stuck: float | None = None) -> list[_Value]:
    """Numbers as bars; a null is missing, or with `stuck` a request not back (bar to there)."""
    if not isinstance(raw, list):
        return []
    return [_num(v) if v is not None or stuck is None else _NotBack(stuck) for v in raw]


def _requests(count: int) -> list[str]:
    return [str(n + 1) for n in range(count)]


_HOSTS = (_BLUE, _ORANGE, "#2f9e44", "#862e9c", _GREY)


def _amplification(prefix: str, raw: object) -> list[str]:
    data = _dict(raw)
    calls = _values(data.get("calls_per_request"))
    hosts = ", ".join(f"{h} {c}" for h, c in _dict(data.get("hosts")).items())
    caption = (f"every dependency failing (503): {data.get('first_attempts', '?')} first "
               f"attempts by the graph + {data.get('sdk_retries', '?')} retries by the SDK; "
               f"calls by host: {hosts or 'none'}")
    by_host = _dict(data.get("by_host"))
    series = [_Series(str(host), _HOSTS[n % len(_HOSTS)],
                      _values(_dict(figures).get("per_logical_call")))
              for n, (host, figures) in enumerate(by_host.items())
              if _dict(figures).get("per_logical_call")]
    if series:
        longest = max(len(one.values) for one in series)
        series = [_Series(one.name, one.colour, [*one.values, *[None] * (longest - len(
            one.values))]) for one in series]
        return [_chart(f"{prefix}Retry amplification: attempts per logical call",
                       "request that needed it", "attempts", _requests(longest), series,
                       caption=caption)]
    return [_chart(f"{prefix}Retry amplification: calls per request", "request", "calls",
                   _requests(len(calls)), [_Series("calls", _BLUE, calls)], caption=caption)]


def _breaking(prefix: str, raw: object) -> list[str]:
    data = _dict(raw)
    calls = _values(data.get("calls_per_request"))
    before = _num(data.get("called_before"))
    caption = ("every dependency failing, requests in order: once a breaker opens the bars drop "
               "to 0" + (f"; {_fmt(before)} calls by the earlier probe" if before else ""))
    return [_chart(f"{prefix}Circuit breaking: calls per request, in order", "request (in order)",
                   "calls", _requests(len(calls)), [_Series("calls", _BLUE, calls)],
                   shade_from=len(calls) // 2, caption=caption)]


def _deadlines(prefix: str, raw: object) -> list[str]:
    data = _dict(raw)
    cap = _num(data.get("cap_s"))
    seconds = _values(data.get("seconds"), math.inf if cap is None else cap)
    return [_chart(f"{prefix}Deadlines: seconds to come back", "request", "seconds",
                   _requests(len(seconds)), [_Series("seconds", _BLUE, seconds)], cap=cap,
                   caption="every dependency hanging; the probe stops waiting at the cap")]


def _isolation(prefix: str, raw: object) -> list[str]:
    charts = []
    for outcome in (o for o in _list(raw) if isinstance(o, dict)):
        host, mode = outcome.get("host", "?"), outcome.get("mode", "?")
        cap = _num(outcome.get("cap_s"))
        base = _values(outcome.get("baseline_s"), math.inf)
        down = _values(outcome.get("seconds"), math.inf if cap is None else cap)
        hurt = [str(h) for h in _list(outcome.get("hurt"))]
        charts.append(_chart(
            f"{prefix}Isolation: {host} {mode}", f"request that never calls {host}", "seconds",
            _requests(max(len(base), len(down))),
            [_Series("healthy (baseline)", _GREY, base), _Series(f"{host} {mode}", _ORANGE, down)],
            caption=f"requests that never call {host}, while it is {mode} under load: "
                    f"{len(hurt)} of {len(down)} hurt" + "".join(f"; {h}" for h in hurt)))
    return charts


_CHARTS = {"resilience.amplification": _amplification, "resilience.breaking": _breaking,
           "resilience.deadlines": _deadlines, "resilience.isolation": _isolation}


def _graph_charts(measurements: object) -> str:
    if not isinstance(measurements, dict):
        return ""
    charts: list[str] = []
    for kind, draw in _CHARTS.items():
        for key in map(str, measurements):
            if key == kind or key.endswith("/" + kind):
                where = key[:-len(kind)].rstrip("/")
                charts.extend(c for c in draw(f"{where}: " if where else "", measurements[key])
                              if c)
    traces = measurements.get("traces")
    note = (f'<p class="meta">traces probe: {_figure(traces.get("spans"))} spans, '
            f'{_figure(traces.get("calls"))} outbound calls, {_figure(traces.get("requests"))} '
            f"requests</p>" if isinstance(traces, dict) else "")
    body = f'<div class="charts">{"".join(charts)}</div>' if charts else ""
    return f"<h3>Measurements</h3>{body}{note}" if body or note else ""


def _badge(status: object, extra: str = "") -> str:
    known = status if status in _STATUSES else "n/a"
    cls = "na" if known == "n/a" else known
    return f'<span class="badge s-{cls}">{_e(status)}</span>{extra}'


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _grouped(graph: dict[str, Any], areas: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The graph's findings by area, in the card's area order (unknown areas last)."""
    by_area = _dict(graph.get("areas"))
    return {str(a): [f for f in _list(by_area.get(a)) if isinstance(f, dict)]
            for a in [*areas, *(a for a in by_area if a not in areas)]}


def _findings(graph: dict[str, Any], areas: dict[str, str]) -> list[dict[str, Any]]:
    return [f for found in _grouped(graph, areas).values() for f in found]


def _figure(value: object) -> str:
    number = _num(value)
    return "—" if number is None else _e(_fmt(number))


def _row(finding: dict[str, Any]) -> str:
    fix = finding.get("fix") or ""
    fixed = f'<div class="fix"><b>fix:</b> {_e(fix)}</div>' if fix else ""
    return (f'<tr><td>{_badge(finding.get("status"))}</td><td class="check">'
            f'<code>{_e(finding.get("id", ""))}</code><div class="title">'
            f'{_e(finding.get("title", ""))}</div></td><td>{_e(finding.get("evidence", ""))}'
            f'{fixed}</td><td class="num">{_figure(finding.get("figure"))}</td></tr>')


def _graph(graph: dict[str, Any], areas: dict[str, str]) -> str:
    counts = _dict(graph.get("counts"))
    summary = "".join(_badge(s, f" {_e(counts.get(s, 0))} &nbsp; ") for s in _STATUSES)
    took = _num(graph.get("seconds"))
    parts = [f'<section><h2>graph <code>{_e(graph.get("name", "?"))}</code></h2>'
             f'<p class="counts">{summary}'
             + (f" · assessed in {took:.1f} s" if took is not None else "") + "</p>"]
    for area, found in _grouped(graph, areas).items():
        rows = [_row(f) for f in found]
        if rows:
            parts.append(f"<h3>{_e(areas.get(area, area))}</h3><table><tr><th>status</th>"
                         f'<th>check</th><th>evidence</th><th class="num">figure</th></tr>'
                         f'{"".join(rows)}</table>')
    return "".join(parts) + _graph_charts(graph.get("measurements")) + "</section>"


def _key_figures(measurements: Any) -> dict[str, _Value]:
    """Amplification, breaking, deadlines and isolation as one number each (None: not run)."""
    got = _dict(measurements)
    amplification = _dict(got.get("resilience.amplification"))
    worst_host = [_num(_dict(h).get("mean")) for h in _dict(amplification.get("by_host")).values()]
    per = [v for v in _values(amplification.get("calls_per_request")) if isinstance(v, float)]
    calls = [v for v in _values(_dict(got.get("resilience.breaking")).get("calls_per_request"))
             if isinstance(v, float)]
    late = _dict(got.get("resilience.deadlines"))
    cap = _num(late.get("cap_s"))
    waits = _values(late.get("seconds"), math.inf if cap is None else cap)
    stuck = [v for v in waits if isinstance(v, _NotBack)]
    iso = got.get("resilience.isolation")
    known = [v for v in worst_host if v is not None]
    return {"amp": max(known) if known else (sum(per) / len(per) if per else None),
            "break": sum(calls[len(calls) // 2:]) if calls else None,
            "late": (stuck[0] if stuck else
                     max((v for v in waits if isinstance(v, float)), default=None)),
            "hurt": float(sum(len(_list(o.get("hurt"))) for o in iso if isinstance(o, dict)))
            if isinstance(iso, list) else None}


def _comparison(graphs: list[dict[str, Any]], areas: dict[str, str]) -> str:
    """A table of every check by graph, then the probes' key figures charted side by side."""
    names = [str(g.get("name", "?")) for g in graphs]
    cells: dict[str, dict[int, str]] = {}
    titles: dict[str, str] = {}
    for n, graph in enumerate(graphs):
        for f in _findings(graph, areas):
            check = str(f.get("id", "?"))
            titles.setdefault(check, str(f.get("title", "")))
            cells.setdefault(check, {})[n] = _badge(
                f.get("status"), f' <span class="num">{_figure(f.get("figure"))}</span>')
    head = "".join(f"<th><code>{_e(name)}</code></th>" for name in names)
    rows = "".join(f'<tr><td><code>{_e(check)}</code> <span class="title">'
                   f"{_e(titles[check])}</span></td>"
                   + "".join(f"<td>{by.get(n, '—')}</td>" for n in range(len(graphs)))
                   + "</tr>" for check, by in cells.items())
    figures = [_key_figures(g.get("measurements")) for g in graphs]
    lates = zip(names, (f["late"] for f in figures), strict=True)
    caps = ", ".join(f"{name} {_fmt(late.at)} s" for name, late in lates
                     if isinstance(late, _NotBack) and math.isfinite(late.at))
    specs = [("amp", "Retry amplification: attempts per logical call (worst dependency)",
              "attempts", ""),
             ("break", "Circuit breaking: calls in the last half of the run", "calls", ""),
             ("late", "Deadlines: worst seconds to come back", "seconds",
              f"not back: drawn at the probe's cap ({caps})" if caps else ""),
             ("hurt", "Isolation: requests hurt by another's dependency", "requests", "")]
    charts = [_chart(title, "graph", unit, names,
                     [_Series(unit, _BLUE, [f[key] for f in figures])], caption=caption)
              for key, title, unit, caption in specs if any(f[key] is not None for f in figures)]
    return (f'<section><h2>Graphs side by side</h2><table class="side"><tr><th>check</th>{head}'
            f"</tr>{rows}</table>" + (f'<div class="charts">{"".join(charts)}</div>'
                                      if charts else "") + "</section>")


def scorecard_html(card: dict[str, Any]) -> str:
    """The scorecard (`Scorecard.to_json()`) as one self-contained HTML page, figures as charts."""
    areas = {str(k): str(v) for k, v in _dict(card.get("areas")).items()}
    graphs = [g for g in _list(card.get("graphs")) if isinstance(g, dict)]
    target, checks = card.get("target", "?"), ", ".join(map(str, card.get("checks_run") or []))
    body = [f"<h1>Readiness scorecard</h1><p class=\"meta\">target <code>{_e(target)}</code> · "
            f"checks run: {_e(checks or 'none')} · {len(graphs)} graph"
            f"{'' if len(graphs) == 1 else 's'}</p>"]
    if len(graphs) > 1:
        body.append(_comparison(graphs, areas))
    body.extend(_graph(g, areas) for g in graphs)
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>interlock assess: {_e(target)}</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")
