"""Figures of notebook 03 (distillation results): the cost-accuracy frontier of the beta
sweep against the teacher and the baselines, from the rows of a ``summary.json``."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from recnb.analysis import COSTS, frontier_points

ROLE_STYLES = {  # marker symbol and colour per row role; open markers: trained without the teacher
    "teacher": ("star", "#d62728"),
    "student": ("circle", "#1f77b4"),
    "student_no_kd": ("circle-open", "#1f77b4"),
    "baseline": ("square", "#2ca02c"),
    "baseline_no_kd": ("square-open", "#2ca02c"),
    "baseline_sasrec": ("triangle-up", "#2ca02c"),
}
KIND_STYLES = {  # kept full-scale models: plain models in grey, distilled ones in colour
    "teacher": ("star", "#d62728"),
    "plain": ("square", "#7f7f7f"),
    "distilled": ("circle", "#1f77b4"),
    "ensemble": ("star-open", "#d62728"),
}


def _point_labels(g: pd.DataFrame) -> list:
    return [
        f"{n}" + (f" (beta {b:g})" if isinstance(b, (int, float)) and not pd.isna(b) else "")
        for n, b in zip(g["name"], g["beta"])
    ]


def frontier_figure(rows: list, cost: str = "params", metric: str = "NDCG@10", log_x: bool = True) -> go.Figure:
    """Cost (size, FLOPs or latency) against accuracy for every model; the students of the
    beta sweep joined by a line in beta order, the teacher and baselines as separate markers."""
    fig = go.Figure()
    df = frontier_points(rows, cost, metric)
    for role, g in df.groupby("role", sort=False):
        g = g.sort_values("beta") if role.startswith("student") else g
        symbol, color = ROLE_STYLES.get(role, ("diamond", "#7f7f7f"))
        fig.add_trace(
            go.Scatter(
                x=g[cost],
                y=g[metric],
                mode="markers+lines" if role == "student" else "markers",
                name=role,
                marker={"symbol": symbol, "size": 12, "color": color},
                text=_point_labels(g),
                error_y={"type": "data", "array": g["std"].fillna(0)} if g["std"].notna().any() else None,
                hovertemplate="%{text}<br>%{x:,.4g} " + cost + f"<br>{metric} %{{y:.4f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title=f"test {metric} against {COSTS.get(cost, cost)}",
        xaxis_title=COSTS.get(cost, cost) + (" (log scale)" if log_x else ""),
        yaxis_title=f"test {metric}",
        height=420,
        xaxis_type="log" if log_x else "linear",
    )
    return fig


POSITIONS = ("middle right", "bottom right", "top left", "bottom left", "top right")


def label_positions(xs: list, ys: list, near_x: float = 0.3, near_y: float = 0.08) -> list:
    """A text position per point so that labels of points close together (in log x and in
    the share of the y range) go to different sides."""
    span = (max(ys) - min(ys)) or 1.0
    out: list = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        taken = {out[j] for j in range(i) if abs(math.log10(xs[j]) - math.log10(x)) < near_x
                 and abs(ys[j] - y) / span < near_y}
        out.append(next((p for p in POSITIONS if p not in taken), POSITIONS[0]))
    return out


def models_figure(rows: list, cost: str = "params_no_embedding", metric: str = "NDCG@10") -> go.Figure:
    """Kept full-scale models (``recnb.results.beauty_models``): cost against test metric
    (mean ± std over seeds), plain models grey, distilled ones blue, the teacher a star, each
    point labelled."""
    fig = go.Figure()
    order = [r for role in ("teacher", "plain", "distilled", "ensemble") for r in rows if r["role"] == role]
    where = dict(zip((id(r) for r in order), label_positions([r[cost] for r in order], [r["test"][metric] for r in order])))
    where[id(order[0])] = "middle left" if order[0]["role"] == "teacher" else where[id(order[0])]
    for role in ("teacher", "plain", "distilled", "ensemble"):
        g = [r for r in rows if r["role"] == role]
        if not g:
            continue
        symbol, color = KIND_STYLES[role]
        std = [r["test"].get(f"{metric}_std") for r in g]
        std = [0.0 if v is None or math.isnan(v) else v for v in std]
        fig.add_trace(go.Scatter(
            x=[r[cost] for r in g], y=[r["test"][metric] for r in g], mode="markers+text", name=role,
            marker={"symbol": symbol, "size": 13, "color": color}, text=[r["name"] for r in g],
            textposition=[where[id(r)] for r in g], textfont={"size": 10, "color": color},
            error_y={"type": "data", "array": std} if any(std) else None,
            customdata=[r.get("seeds", 1) for r in g],
            hovertemplate="%{text}<br>%{x:,} " + COSTS.get(cost, cost) + f"<br>test {metric} %{{y:.4f}}"
                          "<br>%{customdata} seed(s)<extra></extra>"))
    xs = [float(r[cost]) for r in rows]
    ticks = [v for v in (2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6) if min(xs) / 2 <= v <= max(xs) * 2]
    fig.update_layout(title=f"Amazon Beauty: test {metric} against size, every kept model",
                      xaxis={"title": COSTS.get(cost, cost) + " (log scale)", "type": "log",
                             "range": [math.log10(min(xs)) - 0.45, math.log10(max(xs)) + 0.15],
                             "tickvals": ticks, "ticktext": [f"{v / 1e3:g}k" if v < 1e6 else f"{v / 1e6:g}M" for v in ticks]},
                      yaxis_title=f"test {metric}", height=560, legend={"orientation": "h", "y": -0.15})
    return fig
