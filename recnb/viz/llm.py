"""Figures of notebook 04 (DLLM2Rec): the importance weights of the teacher's candidates,
from ``recnb.analysis.importance_rows``."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

IMPORTANCE_PARTS = ("position", "confidence", "consistency", "weight")


def importance_figure(df: pd.DataFrame) -> go.Figure:
    """Heatmaps (users x candidate rank) of the three importance parts and the combined
    weight; hover shows the candidate's title."""
    parts = list(IMPORTANCE_PARTS)
    fig = make_subplots(rows=1, cols=len(parts), subplot_titles=parts, shared_yaxes=True, horizontal_spacing=0.03)
    users = list(dict.fromkeys(df["user"]))
    text = df.pivot(index="user", columns="rank", values="candidate").reindex(users)
    for c, part in enumerate(parts, 1):
        z = df.pivot(index="user", columns="rank", values=part).reindex(users)
        fig.add_trace(
            go.Heatmap(
                z=z.to_numpy(),
                x=list(z.columns),
                y=[f"user {u}" for u in users],
                text=text.to_numpy(),
                colorscale="Blues",
                showscale=c == len(parts),
                zmin=0,
                hovertemplate="%{y}, rank %{x}<br>%{text}<br>" + part + " %{z:.3f}<extra></extra>",
            ),
            1,
            c,
        )
        fig.update_xaxes(title_text="teacher rank", row=1, col=c)
    fig.update_layout(title="importance of the teacher's top candidates", height=120 + 40 * len(users))
    return fig
