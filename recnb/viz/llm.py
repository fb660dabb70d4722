"""Figures of notebook 04 (DLLM2Rec): the importance weights of the teacher's candidates,
from ``recnb.analysis.importance_rows``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

IMPORTANCE_PARTS = ("position", "confidence", "consistency", "weight")


def importance_figure(df: pd.DataFrame) -> go.Figure:
    """Heatmaps (users x candidate rank) of the three importance parts and the combined
    weight, each with its own colour bar (below its panel) fitted to its values: the parts live
    on different scales (the combined weight is normalised per row); hover shows the title."""
    parts = list(IMPORTANCE_PARTS)
    fig = make_subplots(rows=1, cols=len(parts), subplot_titles=parts, shared_yaxes=True, horizontal_spacing=0.03)
    users = list(dict.fromkeys(df["user"]))
    text = df.pivot(index="user", columns="rank", values="candidate").reindex(users)
    gap, width = 0.03, (1 - 0.03 * (len(parts) - 1)) / len(parts)
    for c, part in enumerate(parts, 1):
        z = df.pivot(index="user", columns="rank", values=part).reindex(users)
        lo, hi = float(np.nanmin(z.to_numpy())), float(np.nanmax(z.to_numpy()))
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        bar = {"orientation": "h", "x": (c - 1) * (width + gap) + width / 2, "xanchor": "center", "len": width * 0.9,
               "y": -0.28, "yanchor": "top", "thickness": 12, "title": {"text": part, "side": "top"}}
        fig.add_trace(
            go.Heatmap(
                z=z.to_numpy(),
                x=list(z.columns),
                y=[f"user {u}" for u in users],
                text=text.to_numpy(),
                colorscale="Blues",
                zmin=lo,
                zmax=hi,
                colorbar=bar,
                hovertemplate="%{y}, rank %{x}<br>%{text}<br>" + part + " %{z:.3f}<extra></extra>",
            ),
            1,
            c,
        )
        fig.update_xaxes(title_text="teacher rank", row=1, col=c)
    fig.update_layout(title="importance of the teacher's top candidates", height=260 + 40 * len(users),
                      margin={"b": 150})
    return fig


def dllm2rec_figure(students: pd.DataFrame, ablation: pd.DataFrame, metric: str = "NDCG@10") -> go.Figure:
    """The kept DLLM2Rec run (``recnb.results.dllm2rec_beauty``): each student with and without
    distillation beside the teacher, and the ablation of the distilled GRU4Rec's parts."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.42, 0.58], horizontal_spacing=0.2,
                        subplot_titles=("students with and without DLLM2Rec (3 seeds)", "GRU4Rec ablation (1 seed)"))
    colors = {"none": "#aaaaaa", "DLLM2Rec": "#1f77b4", "-": "#d62728"}
    for how, g in students.groupby("distillation", sort=False):
        name = {"none": "no distillation", "-": "teacher"}.get(how, how)
        fig.add_trace(go.Bar(x=[x.split(" (")[0] for x in g["student"]], y=g[metric], name=name, marker_color=colors.get(how, "#7f7f7f"),
                             text=[f"{v:.4f}" for v in g[metric]], textposition="outside"), 1, 1)
    ab = ablation.iloc[::-1]
    fig.add_trace(go.Bar(y=ab["variant"], x=ab[metric], orientation="h", showlegend=False, marker_color="#1f77b4",
                         text=[f"{v:.4f}" for v in ab[metric]], textposition="outside"), 1, 2)
    fig.update_yaxes(title_text=f"test {metric}", row=1, col=1)
    fig.update_xaxes(title_text=f"test {metric}", range=[0, float(ablation[metric].max()) * 1.3], row=1, col=2)
    fig.update_xaxes(tickangle=0, row=1, col=1)
    fig.update_layout(title=f"DLLM2Rec on Amazon Beauty, test {metric} (seen items masked)", barmode="group",
                      height=440, legend={"orientation": "h", "y": -0.2})
    return fig
