"""The frontier figure of ``recnb frontier``: test NDCG@10 against batch-1 latency, plain
models and students side by side, each side's Pareto front drawn as a step line."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from recnb.viz.common import TEMPLATE

SIDES = (("plain", ("plain",), "#7f7f7f"), ("student", ("student", "adarec"), "#1f77b4"))
SYMBOLS = {"plain": "circle", "student": "diamond", "adarec": "star", "teacher": "x"}


def pareto_figure(frame: pd.DataFrame, scene: str = "", latency: str = "latency_cpu_b1_ms") -> go.Figure:
    """One point per model (mean over its seeds, the spread as error bars), the teacher as a
    cross, and each side's front (``frame["pareto"]``) as a line; size on hover."""
    agg = frame.groupby(["role", "name"], as_index=False).agg(
        ndcg=("test_NDCG@10", "mean"), sd=("test_NDCG@10", "std"), seeds=("test_NDCG@10", "size"),
        latency=(latency, "first"), params=("params_no_embedding", "first"), pareto=("pareto", "first"))
    fig = go.Figure()
    for label, roles, colour in SIDES:
        part = agg[agg["role"].isin(roles)]
        for role in roles:
            pts = part[part["role"] == role]
            if len(pts):
                fig.add_trace(go.Scatter(
                    x=pts["latency"], y=pts["ndcg"], mode="markers", name=f"{role} models" if role != "adarec" else "AdaRec students",
                    marker={"color": colour, "symbol": SYMBOLS[role], "size": 9},
                    error_y={"type": "data", "array": pts["sd"].fillna(0), "thickness": 1, "width": 3},
                    customdata=pts[["name", "params", "seeds"]].to_numpy(),
                    hovertemplate="%{customdata[0]}<br>%{y:.4f} NDCG@10 over %{customdata[2]} seeds<br>"
                                  "%{x:.2f} ms<br>%{customdata[1]:,} non-embedding params<extra></extra>"))
        front = part[part["pareto"]].sort_values("latency")
        if len(front):
            fig.add_trace(go.Scatter(x=front["latency"], y=front["ndcg"], mode="lines", line={"shape": "hv", "color": colour},
                                     name=f"{label} front", hoverinfo="skip"))
    teacher = agg[agg["role"] == "teacher"]
    if len(teacher):
        fig.add_trace(go.Scatter(x=teacher["latency"], y=teacher["ndcg"], mode="markers", name="teacher",
                                 marker={"color": "#d62728", "symbol": "x", "size": 12},
                                 hovertemplate="teacher<br>%{y:.4f} NDCG@10<br>%{x:.2f} ms<extra></extra>"))
    which = "onnxruntime" if "onnx" in latency else "eager PyTorch"
    fig.update_layout(template=TEMPLATE, title=f"Accuracy against latency{f' on {scene}' if scene else ''}",
                      xaxis_title=f"batch-1 latency, {which}, one CPU thread (ms, log scale)",
                      yaxis_title="test NDCG@10 (mean over seeds)", xaxis_type="log", legend={"orientation": "h", "y": -0.2})
    return fig
