"""Figures of notebook 01 (the teacher): the scene's distributions, metrics by user bucket,
hidden states layer by layer, and a training curve."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from recnb.analysis import item_popularity, sequence_lengths
from recnb.data import Scene


def length_histogram(scene: Scene, bins: int = 50) -> go.Figure:
    """How long users' histories are (log-scaled count axis: the tail is long)."""
    lengths = sequence_lengths(scene)
    fig = go.Figure(go.Histogram(x=lengths, nbinsx=bins, marker_color="#1f77b4", name="users"))
    fig.add_vline(x=float(np.median(lengths)), line_dash="dash", annotation_text=f"median {np.median(lengths):.0f}")
    fig.update_layout(
        title=f"{scene.name}: sequence lengths",
        xaxis_title="interactions per user",
        yaxis_title="users",
        yaxis_type="log",
        bargap=0.05,
        height=360,
    )
    return fig


def popularity_curve(scene: Scene) -> go.Figure:
    """Items sorted by popularity (log-log) and the share of interactions the top items take."""
    pop = np.sort(item_popularity(scene)[1:])[::-1]
    rank = np.arange(1, len(pop) + 1)
    share = np.cumsum(pop) / max(1, pop.sum())
    fig = make_subplots(rows=1, cols=2, subplot_titles=("interactions per item (by rank)", "cumulative share"))
    fig.add_trace(go.Scatter(x=rank, y=pop, mode="lines", name="interactions"), 1, 1)
    fig.add_trace(go.Scatter(x=rank / len(rank), y=share, mode="lines", name="share"), 1, 2)
    fig.update_xaxes(type="log", title_text="item rank", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="fraction of items (most popular first)", tickformat=".0%", row=1, col=2)
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_layout(title=f"{scene.name}: item popularity", showlegend=False, height=360)
    return fig


def bucket_bars(tables: dict, metric: str = "NDCG@10") -> go.Figure:
    """Side-by-side bars of one metric per bucket, one panel per bucketing (``{"length": df, ...}``,
    tables of ``recnb.analysis.bucket_metrics``)."""
    fig = make_subplots(rows=1, cols=len(tables), subplot_titles=[f"by {k}" for k in tables])
    for c, (name, df) in enumerate(tables.items(), 1):
        fig.add_trace(
            go.Bar(
                x=df["bucket"],
                y=df[metric],
                text=[f"{u} users" for u in df["users"]],
                name=name,
                hovertemplate="%{x}<br>%{y:.4f}<br>%{text}<extra></extra>",
            ),
            1,
            c,
        )
    for c, name in enumerate(tables, 1):
        unit = "history length (items)" if name == "length" else "held-out item's training interactions"
        fig.update_xaxes(title_text=unit, row=1, col=c)
    fig.update_yaxes(title_text=f"test {metric}", row=1, col=1)
    fig.update_layout(title=f"{metric} by user bucket", showlegend=False, height=380)
    return fig


def layer_norm_figure(norms: pd.DataFrame) -> go.Figure:
    """Hidden-state norm per layer (``recnb.analysis.layer_statistics``), with its spread."""
    fig = go.Figure(
        go.Scatter(
            x=norms["layer"],
            y=norms["norm_mean"],
            mode="lines+markers",
            error_y={"type": "data", "array": norms["norm_std"]},
            name="L2 norm",
        )
    )
    fig.update_layout(
        title="hidden-state norm per layer (mean ± std over positions)", xaxis_title="layer",
        yaxis_title="L2 norm of the hidden state", height=360
    )
    return fig


def similarity_heatmap(sim: pd.DataFrame, title: str = "similarity across layers (linear CKA)") -> go.Figure:
    fig = go.Figure(
        go.Heatmap(
            z=sim.to_numpy(),
            x=list(sim.columns),
            y=list(sim.index),
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            text=np.round(sim.to_numpy(), 2),
            texttemplate="%{text}",
        )
    )
    fig.update_layout(title=title, yaxis_autorange="reversed", height=420)
    return fig


def history_figure(history: pd.DataFrame, title: str = "training", metric: str = "valid_NDCG@10") -> go.Figure:
    """Loss (left axis) and a validation metric (right axis) per epoch from ``TrainResult.history``."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=history["epoch"], y=history["loss"], name="train loss"), secondary_y=False)
    if metric in history:
        fig.add_trace(go.Scatter(x=history["epoch"], y=history[metric], name=metric), secondary_y=True)
    fig.update_yaxes(title_text="training loss", secondary_y=False)
    fig.update_yaxes(title_text=metric.replace("_", " "), secondary_y=True)
    fig.update_layout(title=title, xaxis_title="epoch", height=340, legend={"orientation": "h", "y": -0.25})
    return fig


def scene_bars(df: pd.DataFrame, metric: str = "NDCG@10") -> go.Figure:
    """Teachers and plain models per kept scene (``recnb.results.teachers_and_plain``): one
    colour per role (teacher, plain, ensemble), grouped by scene; hover names the model."""
    fig = go.Figure()
    colors = {"teacher": "#d62728", "plain": "#7f7f7f", "ensemble": "#1f77b4"}
    for role, g in df.groupby("role", sort=False):
        fig.add_trace(go.Bar(x=g["scene"], y=g[metric], name=role, marker_color=colors.get(role, "#bcbd22"),
                             text=[f"{v:.4f}" for v in g[metric]], textposition="outside", customdata=g["model"],
                             hovertemplate="%{x}<br>%{customdata}: %{y:.4f}<extra></extra>"))
    fig.update_layout(title=f"teachers and plain models, test {metric}", yaxis_title=f"test {metric}",
                      barmode="group", height=420, legend={"orientation": "h", "y": -0.15})
    return fig
