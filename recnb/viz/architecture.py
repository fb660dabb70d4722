"""A derived architecture drawn left to right, as a plotly figure (notebooks 02 and 03) and
as a self-contained SVG (the budget explorer's diagram): one layout serves both."""

from __future__ import annotations

import html

import plotly.graph_objects as go

from recnb.analysis import architecture_dict
from recnb.viz.common import op_color

MARK = 0.6  # where along an edge its op marker sits (towards the node it feeds)


def architecture_layout(d: dict) -> tuple[dict, dict, list]:
    """Node positions, labels and op edges ``(source, node, op)`` of the left-to-right
    drawing. Input 0 of a cell is the output two cells below, input 1 the one just below; the
    embedding stands in below the first cell."""
    pos, labels, edges = {"emb": (0.0, 0.0)}, {"emb": "embedding"}, []
    for c, cell in enumerate(d["cells"]):
        n_nodes = len(cell["nodes"])
        base = c * (n_nodes + 2)
        for n in range(n_nodes):
            pos[(c, n)] = (base + 1.0 + n, (n - (n_nodes - 1) / 2) * 1.2)
            labels[(c, n)] = f"cell {c} · node {n}"
        pos[("out", c)] = (base + n_nodes + 1.5, 0.0)
        labels[("out", c)] = f"cell {c} output"
        for n, node in enumerate(cell["nodes"]):
            for e in node:
                inp = e["input"]
                if inp >= 2:
                    src = (c, inp - 2)
                else:
                    below = c - 2 + inp  # input 0: two cells below, input 1: just below
                    src = ("out", below) if below >= 0 else "emb"
                edges.append((src, (c, n), e["op"]))
    return pos, labels, edges


def _combine_pairs(d: dict) -> list:
    """Each intermediate node and the output of its cell (the dotted lines of the drawing)."""
    return [((c, n), ("out", c)) for c, cell in enumerate(d["cells"]) for n in range(len(cell["nodes"]))]


def short_label(key) -> str:
    """The label written on a node: ``emb``, ``c0 n1`` (cell 0, node 1), ``out 0``."""
    if key == "emb":
        return "emb"
    return f"out {key[1]}" if key[0] == "out" else f"c{key[0]} n{key[1]}"


def _is_big(key) -> bool:
    """The embedding and the cell outputs are drawn as large dark nodes."""
    return key == "emb" or key[0] == "out"


def _mark(p0, p1) -> tuple[float, float]:
    (x0, y0), (x1, y1) = p0, p1
    return x0 + MARK * (x1 - x0), y0 + MARK * (y1 - y0)


def _polyline(pos: dict, pairs) -> tuple[list, list]:
    """Coordinates of disjoint segments in one trace (``None`` breaks the line)."""
    xs, ys = [], []
    for a, b in pairs:
        (x0, y0), (x1, y1) = pos[a], pos[b]
        xs += [x0, x1, None]
        ys += [y0, y1, None]
    return xs, ys


def _op_traces(pos: dict, edges: list) -> list:
    """Per op: its edges as lines and a diamond marker on each (one legend entry per op)."""
    by_op: dict = {}
    for src, dst, op in edges:
        by_op.setdefault(op, []).append((src, dst))
    traces = []
    for op, pairs in sorted(by_op.items()):
        xs, ys = _polyline(pos, pairs)
        marks = [_mark(pos[a], pos[b]) for a, b in pairs]
        line = {"color": op_color(op), "width": 2.5}
        traces.append(go.Scatter(x=xs, y=ys, mode="lines", line=line, name=op, legendgroup=op, hoverinfo="skip"))
        traces.append(
            go.Scatter(
                x=[m[0] for m in marks],
                y=[m[1] for m in marks],
                mode="markers+text",
                marker={"color": op_color(op), "size": 9, "symbol": "diamond"},
                text=[op] * len(marks),
                textposition="top center",
                textfont={"size": 10, "color": op_color(op)},
                name=op,
                legendgroup=op,
                showlegend=False,
                hovertemplate=f"{op}<extra></extra>",
            )
        )
    return traces


def _node_trace(pos: dict, labels: dict) -> go.Scatter:
    keys = list(pos)
    return go.Scatter(
        x=[pos[k][0] for k in keys],
        y=[pos[k][1] for k in keys],
        mode="markers+text",
        marker={
            "size": [18 if _is_big(k) else 12 for k in keys],
            "color": ["#333333" if _is_big(k) else "white" for k in keys],
            "line": {"color": "#333333", "width": 1.5},
        },
        text=[short_label(k) for k in keys],
        textposition="bottom center",
        textfont={"size": 10, "color": "#333333"},
        customdata=[labels[k] for k in keys],
        hovertemplate="%{customdata}<extra></extra>",
        showlegend=False,
    )


def architecture_graph(arch, title: str | None = None, height: int = 320) -> go.Figure:
    """The derived student drawn left to right: embedding, then per cell its intermediate
    nodes (fed by the kept edges, labelled and coloured by op) and its output (the combination
    of the nodes, dotted); see :func:`architecture_layout`."""
    d = architecture_dict(arch)
    pos, labels, edges = architecture_layout(d)
    fig = go.Figure()
    for trace in _op_traces(pos, edges):
        fig.add_trace(trace)
    cx, cy = _polyline(pos, _combine_pairs(d))
    dotted = {"color": "#cccccc", "width": 1, "dash": "dot"}
    fig.add_trace(go.Scatter(x=cx, y=cy, mode="lines", line=dotted, name="combine", hoverinfo="skip"))
    fig.add_trace(_node_trace(pos, labels))
    fig.update_layout(
        title=title or f"{len(d['cells'])} cells, {len(edges)} edges",
        height=height,
        xaxis={"visible": False},
        yaxis={"visible": False, "scaleanchor": None},
        legend={"orientation": "h", "y": -0.05},
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return fig


# ----------------------------------------------------------------------------- SVG
def _svg_scale(pos: dict, width: int, height: int, pad: int = 30):
    """Layout coordinates -> SVG pixels (y up becomes y down; room for the legend below)."""
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    sx = (width - 2 * pad) / max(1e-9, max(xs) - min(xs))
    sy = (height - 2 * pad - 40) / max(1e-9, max(ys) - min(ys)) if max(ys) > min(ys) else 1.0
    return {key: (pad + (x - min(xs)) * sx, pad + (max(ys) - y) * sy) for key, (x, y) in pos.items()}


def _svg_line(p0, p1, attrs: str, inner: str = "") -> str:
    (x0, y0), (x1, y1) = p0, p1
    line = f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" {attrs}'
    return f"{line}>{inner}</line>" if inner else f"{line}/>"


def _svg_edges(at: dict, d: dict, edges: list) -> list:
    parts = [_svg_line(at[a], at[b], 'stroke="#cccccc" stroke-dasharray="3,3"') for a, b in _combine_pairs(d)]
    for src, dst, op in edges:
        color = op_color(op)
        mx, my = _mark(at[src], at[dst])
        title = f"<title>{html.escape(op)}</title>"
        parts.append(_svg_line(at[src], at[dst], f'stroke="{color}" stroke-width="2.5"', title))
        parts.append(
            f'<rect x="{mx - 4:.1f}" y="{my - 4:.1f}" width="8" height="8" fill="{color}" '
            f'transform="rotate(45 {mx:.1f} {my:.1f})"/>'
            f'<text x="{mx:.1f}" y="{my - 7:.1f}" text-anchor="middle" fill="{color}" font-size="9">{html.escape(op)}</text>'
        )
    return parts


def _svg_nodes(at: dict, labels: dict) -> list:
    parts = []
    for key, label in labels.items():
        x, y = at[key]
        big = _is_big(key)
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{9 if big else 6}" fill="{"#333333" if big else "white"}" '
            f'stroke="#333333" stroke-width="1.5"><title>{html.escape(label)}</title></circle>'
            f'<text x="{x:.1f}" y="{y + (20 if big else 16):.1f}" text-anchor="middle" fill="#333333">'
            f"{html.escape(short_label(key))}</text>"
        )
    return parts


def _svg_legend(ops: list, width: int, height: int, pad: int = 30) -> list:
    """One swatch per op along the bottom, wrapping to a new line near the right edge."""
    parts, lx, ly = [], pad, height - 14
    for op in ops:
        parts.append(
            f'<rect x="{lx}" y="{ly - 8}" width="14" height="4" fill="{op_color(op)}"/>'
            f'<text x="{lx + 18}" y="{ly - 3}">{html.escape(op)}</text>'
        )
        lx += 26 + 6.2 * len(op)
        if lx > width - 120:
            lx, ly = pad, ly + 14
    return parts


def architecture_svg(arch, width: int = 900, height: int = 260) -> str:
    """The same drawing as :func:`architecture_graph` as a self-contained SVG string (no
    JavaScript): for HTML widgets, which update instantly and render anywhere."""
    d = architecture_dict(arch)
    pos, labels, edges = architecture_layout(d)
    at = _svg_scale(pos, width, height)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="recnb-arch-svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">'
    )
    ops = sorted({op for _, _, op in edges})
    body = _svg_edges(at, d, edges) + _svg_nodes(at, labels) + _svg_legend(ops, width, height)
    return "".join([head, *body, "</svg>"])
