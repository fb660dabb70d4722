"""Figures of notebook 02 (one architecture search): the alphas over steps, the EMD
transport matrices and layer weights, and the loss terms, from ``recnb.adarec.search.load_history``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from recnb.errors import ConfigError
from recnb.viz.common import op_color, slider_figure, subsample

LOSS_TERMS = ("total", "ce", "kd", "emd", "cost")
TERM_TITLES = {"total": "total loss", "ce": "cross-entropy", "kd": "KD (KL to the teacher)", "emd": "EMD",
               "cost": "expected cost per edge (0-1)"}


def edge_label(cell: int, node: int, inp: int) -> str:
    src = ("c-2", "c-1")[inp] if inp < 2 else f"n{inp - 2}"
    return f"cell {cell} · n{node} ← {src}"


def _alpha_heatmap(df: pd.DataFrame, rows: list, ops: list, zmin: float, zmax: float) -> go.Heatmap:
    """One step's op weights, edges by ops, on a colour scale fitted to the whole search."""
    z = df.pivot_table(index="edge_label", columns="op", values="weight").reindex(index=rows, columns=ops)
    return go.Heatmap(
        z=z.to_numpy(),
        x=ops,
        y=rows,
        zmin=zmin,
        zmax=zmax,
        colorscale="Viridis",
        colorbar={"title": "op weight"},
        hovertemplate="%{y}<br>%{x}: %{z:.3f}<extra></extra>",
    )


def alpha_evolution(alphas: pd.DataFrame, max_frames: int = 60) -> go.Figure:
    """Op weights (softmax of alpha) of every edge as a heatmap (rows: edges, columns: ops),
    with a slider (and play button) over the recorded search steps. The colour scale spans the
    weights the shown steps reach (not 0-1: they stay near uniform, 1 / number of ops), the same
    in every frame, so the frames compare."""
    if alphas.empty:
        raise ConfigError("alphas: the search history is empty")
    df = alphas.copy()
    df["edge_label"] = [edge_label(c, n, i) for c, n, i in zip(df["cell"], df["node"], df["input"])]
    ops = list(dict.fromkeys(df["op"]))
    rows = list(dict.fromkeys(df.sort_values(["cell", "edge"])["edge_label"]))
    steps = subsample(df["step"].unique(), max_frames)
    epoch_of = df.groupby("step")["epoch"].first()
    shown = df[df["step"].isin(steps)]["weight"]
    zmin, zmax = float(shown.min()), float(shown.max())
    if zmax - zmin < 1e-6:
        zmin, zmax = zmin - 1e-3, zmax + 1e-3
    frames = [[_alpha_heatmap(df[df["step"] == s], rows, ops, zmin, zmax)] for s in steps]
    layout = {
        "title": f"op weights per edge over the search (uniform: {1 / len(ops):.3f})",
        "xaxis": {"title": "candidate op"},
        "height": max(360, 22 * len(rows) + 180),
        "yaxis": {"autorange": "reversed"},
        "margin": {"l": 160},
    }
    return slider_figure(frames, [f"{s} (epoch {epoch_of[s]})" for s in steps], "step ", frames[0], layout)


def alpha_lines(alphas: pd.DataFrame, cell: int = 0) -> go.Figure:
    """One panel per edge of ``cell``: each op's weight over steps (the same colours as the
    architecture drawings)."""
    df = alphas[alphas["cell"] == cell]
    edges = df[["edge", "node", "input"]].drop_duplicates().sort_values("edge").to_numpy()
    cols = 3
    nrows = math.ceil(len(edges) / cols)
    fig = make_subplots(
        rows=nrows,
        cols=cols,
        shared_xaxes=True,
        shared_yaxes=True,
        subplot_titles=[edge_label(cell, n, i) for _, n, i in edges],
    )
    for k, (e, _, _) in enumerate(edges):
        for op, g in df[df["edge"] == e].groupby("op", sort=False):
            style = {"name": op, "legendgroup": op, "line": {"color": op_color(op)}, "showlegend": k == 0}
            trace = go.Scatter(x=g["step"], y=g["weight"], mode="lines", **style)
            fig.add_trace(trace, k // cols + 1, k % cols + 1)
    fig.update_xaxes(title_text="search step", row=nrows, col=1)
    fig.update_yaxes(title_text="op weight", row=1, col=1)
    fig.update_layout(title=f"cell {cell}: op weights over search steps", height=220 * nrows + 80)
    return fig


def transport_heatmaps(flows: pd.DataFrame) -> go.Figure:
    """The EMD transport matrix (teacher layers × student layers) per epoch, with a slider:
    which teacher layers each student layer learns from."""
    if flows.empty:
        raise ConfigError("flows: the search history has no EMD flows (was the search run with a teacher and emd on?)")
    epochs = sorted(flows["epoch"].unique())
    frames = []
    for e in epochs:
        z = flows[flows["epoch"] == e].pivot_table(index="teacher_layer", columns="student_layer", values="flow")
        frames.append(
            [
                go.Heatmap(
                    z=z.to_numpy(),
                    x=[f"student {j}" for j in z.columns],
                    y=[f"teacher {i}" for i in z.index],
                    colorscale="Viridis",
                    text=np.round(z.to_numpy(), 3),
                    texttemplate="%{text}",
                    colorbar={"title": "flow"},
                )
            ]
        )
    title = "EMD transport matrix between teacher and student layers"
    layout = {"title": title, "height": 460, "yaxis": {"autorange": "reversed", "title": "teacher layer"},
              "xaxis": {"title": "student cell"}}
    return slider_figure(frames, [f"{e}" for e in epochs], "epoch ", frames[-1], layout, play=False)


def layer_weights_figure(layer_weights: pd.DataFrame) -> go.Figure:
    """EMD layer weights per epoch, teacher and student side by side."""
    sides = [s for s in ("teacher", "student") if s in set(layer_weights["side"])]
    fig = make_subplots(rows=1, cols=len(sides), subplot_titles=[f"{s} layers" for s in sides], shared_yaxes=True)
    for c, side in enumerate(sides, 1):
        for layer, g in layer_weights[layer_weights["side"] == side].groupby("layer"):
            fig.add_trace(go.Scatter(x=g["epoch"], y=g["weight"], mode="lines+markers", name=f"{side} {layer}"), 1, c)
        fig.update_xaxes(title_text="epoch", row=1, col=c)
    fig.update_yaxes(title_text="layer weight", row=1, col=1)
    fig.update_layout(title="EMD layer weights", height=360)
    return fig


def loss_figure(losses: pd.DataFrame, phase: str = "weights") -> go.Figure:
    """Each loss term per step (one panel per term: their scales differ)."""
    df = losses[losses["phase"] == phase] if "phase" in losses else losses
    terms = [t for t in LOSS_TERMS if t in df and df[t].notna().any()]
    fig = make_subplots(rows=1, cols=len(terms), subplot_titles=[TERM_TITLES.get(t, t) for t in terms])
    for c, t in enumerate(terms, 1):
        fig.add_trace(go.Scatter(x=df["step"], y=df[t], mode="lines", name=t), 1, c)
        fig.update_xaxes(title_text="search step", row=1, col=c)
    fig.update_layout(title=f"loss terms over the search ({phase} steps)", showlegend=False, height=320)
    return fig


def search_progress_figure(epochs: pd.DataFrame) -> go.Figure:
    """Kept searches epoch by epoch (``recnb.results.search_epochs``): the supernet's validation
    NDCG@10 and the expected cost per edge, one line per scene and beta."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("supernet validation NDCG@10", "expected cost per edge (0-1)"))
    palette = {"Amazon Beauty": "#1f77b4", "Amazon Sports": "#ff7f0e", "MovieLens 100k": "#2ca02c"}
    dashes = {0.01: "dot", 0.1: "dash", 1.0: "solid"}
    for (scene, beta), g in epochs.groupby(["scene", "beta"], sort=False):
        style = {"color": palette.get(scene, "#7f7f7f"), "dash": dashes.get(beta, "solid")}
        name = f"{scene}, beta {beta:g}"
        fig.add_trace(go.Scatter(x=g["epoch"], y=g["valid_NDCG@10"], mode="lines+markers", line=style, name=name,
                                 legendgroup=name), 1, 1)
        fig.add_trace(go.Scatter(x=g["epoch"], y=g["expected_cost"], mode="lines+markers", line=style, name=name,
                                 legendgroup=name, showlegend=False), 1, 2)
    for c in (1, 2):
        fig.update_xaxes(title_text="search epoch (0: warm-up, alphas frozen)", dtick=1, row=1, col=c)
    fig.update_yaxes(title_text="NDCG@10", row=1, col=1)
    fig.update_yaxes(title_text="expected cost", row=1, col=2)
    fig.update_layout(title="the kept searches, epoch by epoch", height=420)
    return fig
