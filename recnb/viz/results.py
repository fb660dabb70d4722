"""Figures of notebook 03 (distillation results): the cost-accuracy frontier of the beta
sweep against the teacher and the baselines, from the rows of a ``summary.json``."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from recnb.analysis import frontier_points

ROLE_STYLES = {  # marker symbol and colour per row role; open markers: trained without the teacher
    "teacher": ("star", "#d62728"),
    "student": ("circle", "#1f77b4"),
    "student_no_kd": ("circle-open", "#1f77b4"),
    "baseline": ("square", "#2ca02c"),
    "baseline_no_kd": ("square-open", "#2ca02c"),
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
        title=f"{metric} versus {cost}",
        xaxis_title=cost,
        yaxis_title=f"test {metric}",
        height=420,
        xaxis_type="log" if log_x else "linear",
    )
    return fig
