"""Self-contained HTML views, offline: a run's timeline and the graph itself (no JavaScript)."""

from __future__ import annotations

import html
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from graphs.core.clock import parse_iso

__all__ = ["graph_html", "graph_mermaid", "graph_svg", "timeline_html"]

_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d1d1f}
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:24px 0 6px}
.meta{color:#666;margin:0 0 12px}
.row{display:grid;grid-template-columns:230px 1fr 90px;align-items:center;gap:8px;height:22px}
.label{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;font-size:12px}
.track{position:relative;height:14px;background:#f3f3f6;border-radius:3px}
.bar{position:absolute;top:0;height:14px;border-radius:3px;min-width:2px}
.mark{position:absolute;top:1px;width:10px;height:10px;margin-left:-5px;transform:rotate(45deg)}
.dur{font-size:12px;color:#555;text-align:right}
.node .bar{background:#6c63ff}.tool .bar{background:#2a9d8f}.tool.error .bar{background:#e76f51}
.verdict .mark{background:#264653}.verdict.refused .mark{background:#e63946}
.retry .mark,.deadline .mark{background:#f4a261}.breaker .mark,.rejected .mark{background:#e63946}
.approval .mark,.decision .mark{background:#ffb703}.reuse .mark,.refresh .mark{background:#8ecae6}
.fallback .mark,.reconcile .mark{background:#adb5bd}
.axis{display:grid;grid-template-columns:230px 1fr 90px;gap:8px;font-size:11px;color:#888}
.ticks{position:relative;height:14px}
.ticks span{position:absolute;transform:translateX(-50%);white-space:nowrap}
.ticks span:last-child{transform:translateX(-100%)}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
"""


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _segment(number: int, segment: dict[str, Any]) -> str:
    start, end = parse_iso(segment["start"]), parse_iso(segment["end"])
    total = max((end - start).total_seconds(), 1e-6)

    def pos(moment: str) -> float:
        return max(0.0, min(100.0, (parse_iso(moment) - start).total_seconds() / total * 100))

    rows = []
    items: list[tuple[str, dict[str, Any]]] = [("span", s) for s in segment["spans"]]
    items += [("mark", m) for m in segment["marks"]]
    items.sort(key=lambda item: item[1].get("start") or item[1].get("at") or "")
    for kind, item in items:
        title = html.escape(f"{item['name']} {item.get('detail') or ''}".strip(), quote=True)
        label = html.escape(item["name"])
        if kind == "span" or item["kind"] == "tool":
            left, right = pos(item["start"]), pos(item["end"])
            seconds = (parse_iso(item["end"]) - parse_iso(item["start"])).total_seconds()
            outcome = item.get("outcome")
            css = f"{item['kind']} {'error' if outcome and outcome != 'ok' else ''}".strip()
            rows.append(f'<div class="row {css}"><span class="label" title="{title}">{label}'
                        f'</span><div class="track"><div class="bar" style="left:{left:.2f}%;'
                        f'width:{max(right - left, 0.3):.2f}%" title="{title}"></div></div>'
                        f'<span class="dur">{_duration(seconds)}</span></div>')
        else:
            css = item["kind"] + (" refused" if item.get("passed") is False else "")
            rows.append(f'<div class="row {css}"><span class="label" title="{title}">{label}'
                        f'</span><div class="track"><div class="mark" style="left:'
                        f'{pos(item["at"]):.2f}%" title="{title}"></div></div>'
                        f'<span class="dur"></span></div>')
    ticks = "".join(f'<span style="left:{p}%">{_duration(total * p / 100)}</span>'
                    for p in (0, 25, 50, 75, 100))
    waited = (f" · after {_duration(segment['after_wait_s'])} waiting for "
              f"{segment['waited_for']}" if number > 1 else "")
    return (f"<section><h2>Segment {number} · {html.escape(segment['start'])}{waited} · "
            f"{_duration(total)}</h2><div class=\"axis\"><span></span><div class=\"ticks\">"
            f"{ticks}</div><span></span></div>{''.join(rows)}</section>")


def timeline_html(data: dict[str, Any]) -> str:
    """A thread's timeline as one HTML file: inline CSS, no scripts, nothing fetched."""
    legend = "".join(f'<span><i style="background:{color}"></i>{name}</span>' for name, color in (
        ("node", "#6c63ff"), ("dependency attempt", "#2a9d8f"), ("failed attempt", "#e76f51"),
        ("verdict", "#264653"), ("refusal, breaker, rejection", "#e63946"),
        ("retry, deadline", "#f4a261"), ("approval", "#ffb703"), ("reuse, refresh", "#8ecae6")))
    body = "".join(_segment(n, s) for n, s in enumerate(data["segments"], start=1))
    thread = html.escape(data["thread_id"])
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Interlock trace · {thread}</title><style>{_STYLE}</style></head><body>"
            f"<h1>Thread {thread}</h1><p class=\"meta\">{data['steps']} checkpoints · "
            f"{html.escape(str(data['start']))} → {html.escape(str(data['end']))}</p>"
            f"<p class=\"legend\">{legend}</p>{body}</body></html>")


def graph_mermaid(graph: CompiledStateGraph[Any, Any, Any, Any]) -> str:
    """The graph as Mermaid text (no network involved)."""
    return graph.get_graph().draw_mermaid()


def _layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layers from `__start__`, after dropping the edges that close a cycle."""
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        out[a].append(b)
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}

    def visit(node: str) -> None:
        state[node] = 1
        for nxt in out[node]:
            if state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                visit(nxt)
        state[node] = 2

    visit("__start__") if "__start__" in out else None
    forward = [(a, b) for a, b in edges if (a, b) not in back]
    depth = {"__start__": 0}
    changed = True
    while changed:  # longest path over a DAG; bounded by the number of nodes
        changed = False
        for a, b in forward:
            if a in depth and depth.get(b, -1) < depth[a] + 1:
                depth[b] = depth[a] + 1
                changed = True
    for node in nodes:  # reached only by a command (the reconciler): beside its targets
        if node not in depth:
            targets = [depth[b] for a, b in forward if a == node and b in depth]
            depth[node] = max(min(targets, default=1) - 1, 1)
    return depth


def graph_svg(graph: CompiledStateGraph[Any, Any, Any, Any]) -> str:
    """The graph drawn as SVG: nodes in layers from the start, edges as arrows."""
    drawn = graph.get_graph()
    nodes = [n for n in drawn.nodes if not n.startswith("__error_handler__")]
    edges = [(e.source, e.target, e.conditional) for e in drawn.edges
             if e.source in nodes and e.target in nodes]
    depth = _layers(nodes, [(a, b) for a, b, _ in edges])
    layers: dict[int, list[str]] = {}
    for node in nodes:
        layers.setdefault(depth[node], []).append(node)
    width, box_w, box_h, gap_y = 980, 150, 36, 80
    where: dict[str, tuple[float, float]] = {}
    for level, members in sorted(layers.items()):
        for i, node in enumerate(members):
            where[node] = ((i + 1) * width / (len(members) + 1), 40 + level * gap_y)
    height = 40 + (max(layers) + 1) * gap_y
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="system-ui,sans-serif" font-size="12">',
             '<defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/>'
             '</marker></defs>']
    for source, target, conditional in edges:
        (x1, y1), (x2, y2) = where[source], where[target]
        y1b, y2b = (y1 + box_h / 2, y2 - box_h / 2) if y2 > y1 else (y1 - box_h / 2,
                                                                      y2 + box_h / 2)
        dash = ' stroke-dasharray="5,4"' if conditional else ""
        parts.append(f'<path d="M{x1:.0f},{y1b:.0f} C{x1:.0f},{(y1b + y2b) / 2:.0f} '
                     f'{x2:.0f},{(y1b + y2b) / 2:.0f} {x2:.0f},{y2b:.0f}" fill="none" '
                     f'stroke="#888"{dash} marker-end="url(#a)"/>')
    for node in nodes:
        x, y = where[node]
        kind = (drawn.nodes[node].metadata or {}).get("kind", "")
        fill = {"guard": "#e9f5f2", "worker": "#eeecff", "planner": "#fff4e0"}.get(
            str(kind), "#f4f4f6")
        label = html.escape(node.strip("_"))
        parts.append(f'<g><title>{html.escape(node)} {html.escape(str(kind))}</title>'
                     f'<rect x="{x - box_w / 2:.0f}" y="{y - box_h / 2:.0f}" width="{box_w}" '
                     f'height="{box_h}" rx="8" fill="{fill}" stroke="#777"/>'
                     f'<text x="{x:.0f}" y="{y + 4:.0f}" text-anchor="middle">{label}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def graph_html(graph: CompiledStateGraph[Any, Any, Any, Any]) -> str:
    """The graph's SVG in a page, with its Mermaid text below it."""
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Interlock "
            f"graph</title><style>{_STYLE}pre{{background:#f6f6f8;padding:12px}}</style></head>"
            f"<body><h1>Interlock supervisor graph</h1><p class=\"meta\">Dashed: conditional "
            f"routes (Command, Send, conditional edges). Green: guards; violet: workers.</p>"
            f"{graph_svg(graph)}<h2>Mermaid</h2><pre>{html.escape(graph_mermaid(graph))}</pre>"
            f"</body></html>")
