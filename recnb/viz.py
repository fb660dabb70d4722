"""What the notebooks show: small analysis tables and the plotly figures drawn from them.

Each figure function takes plain data (a scene, a DataFrame, an architecture dict, the rows
of a ``summary.json``) and returns a ``plotly.graph_objects.Figure``; nothing here trains or
searches. Table helpers (``bucket_metrics``, ``layer_statistics``, ...) turn model outputs
into the DataFrames those figures draw. :func:`setup_notebook` picks a renderer that needs
no network, so figures show in JupyterLab and in exported HTML alike.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import torch
from plotly.subplots import make_subplots

from recnb.data import Scene, eval_inputs
from recnb.errors import ConfigError
from recnb.metrics import metrics_from_ranks

RENDERER = "plotly_mimetype+notebook"  # JupyterLab's own renderer + offline HTML (no CDN)
TEMPLATE = "plotly_white"
OP_COLORS = {
    "zero": "#bbbbbb",
    "none": "#bbbbbb",
    "skip": "#7f7f7f",
    "max_pool_k3": "#17becf",
    "avg_pool_k3": "#9edae5",
}


def setup_notebook(renderer: str = RENDERER) -> str:
    """Make plotly figures render offline in JupyterLab (and in HTML exports); returns the renderer."""
    pio.renderers.default = renderer
    pio.templates.default = TEMPLATE
    return renderer


# ----------------------------------------------------------------------------- scene
def scene_table(*scenes: Scene) -> pd.DataFrame:
    """Statistics of one or more scenes, one row each (counts as integers)."""
    df = pd.DataFrame([s.describe() for s in scenes])
    return df.astype({c: "int64" for c in ("users", "items", "interactions") if c in df})


def sequence_lengths(scene: Scene) -> np.ndarray:
    return np.array([len(s) for s in scene.sequences])


def item_popularity(scene: Scene) -> np.ndarray:
    """Interactions per item id (index 0, the padding id, is always 0)."""
    return np.bincount(np.concatenate(scene.sequences), minlength=scene.num_items + 1)


def length_histogram(scene: Scene, bins: int = 50) -> go.Figure:
    """How long users' histories are (log-scaled count axis: the tail is long)."""
    lengths = sequence_lengths(scene)
    fig = go.Figure(go.Histogram(x=lengths, nbinsx=bins, marker_color="#1f77b4", name="users"))
    fig.add_vline(x=float(np.median(lengths)), line_dash="dash", annotation_text=f"median {np.median(lengths):.0f}")
    fig.update_layout(title=f"{scene.name}: sequence lengths", xaxis_title="interactions per user",
                      yaxis_title="users", yaxis_type="log", bargap=0.05, height=360)
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


# ----------------------------------------------------------------------------- teacher metrics by bucket
def user_buckets(scene: Scene, by: str = "length", buckets: int = 4, split: str = "test") -> pd.Series:
    """Each user's bucket label: quantiles of history length, or of the target item's popularity
    in the training part (``by="popularity"``: is the held-out item a head or tail item?)."""
    if by == "length":
        values = sequence_lengths(scene).astype(float)
        unit = "items"
    elif by == "popularity":
        cut = 2 if split == "valid" else 1
        counts = np.bincount(np.concatenate([s[: len(s) - 2] for s in scene.sequences]), minlength=scene.num_items + 1)
        values = np.array([counts[s[len(s) - cut]] for s in scene.sequences], dtype=float)
        unit = "train interactions"
    else:
        raise ConfigError(f"bucket by 'length' or 'popularity', got {by!r}")
    edges = np.unique(np.quantile(values, np.linspace(0, 1, buckets + 1)))
    if len(edges) < 2:
        edges = np.array([values.min(), values.max() + 1])
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    labels = [f"{edges[i]:.0f}-{edges[i + 1]:.0f} {unit}" for i in range(len(edges) - 1)]
    return pd.Series(pd.Categorical([labels[i] for i in idx], categories=labels, ordered=True), name=by)


def bucket_metrics(scene: Scene, ranks, by: str = "length", buckets: int = 4, ks=(10,), split: str = "test") -> pd.DataFrame:
    """Metrics per user bucket from per-user 0-based ranks (``recnb.train.user_ranks``)."""
    ranks = torch.as_tensor(ranks)
    labels = user_buckets(scene, by, buckets, split)
    rows = []
    for label in labels.cat.categories:
        mask = torch.as_tensor(np.array(labels == label, dtype=bool))
        if not bool(mask.any()):
            continue
        m = metrics_from_ranks(ranks[mask], ks)
        row = {"bucket": label, "users": int(mask.sum())}
        for k in ks:
            row.update({f"{name}@{k}": float(m.loc[k, name]) for name in m.columns})
        rows.append(row)
    return pd.DataFrame(rows)


def bucket_bars(tables: dict, metric: str = "NDCG@10") -> go.Figure:
    """Side-by-side bars of one metric per bucket, one panel per bucketing (``{"length": df, ...}``)."""
    fig = make_subplots(rows=1, cols=len(tables), subplot_titles=[f"by {k}" for k in tables])
    for c, (name, df) in enumerate(tables.items(), 1):
        fig.add_trace(go.Bar(x=df["bucket"], y=df[metric], text=[f"{u} users" for u in df["users"]],
                             name=name, hovertemplate="%{x}<br>%{y:.4f}<br>%{text}<extra></extra>"), 1, c)
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_layout(title=f"{metric} by user bucket", showlegend=False, height=380)
    return fig


# ----------------------------------------------------------------------------- hidden states
@torch.no_grad()
def hidden_states(model, scene: Scene, users: int = 256, split: str = "test", seed: int = 0):
    """Per-layer hidden states of ``users`` random users' histories at their valid positions:
    a list of ``(positions, d_i)`` tensors, one per layer (embedding first)."""
    max_len = model.config.max_len
    hist, _ = eval_inputs(scene, split, max_len)
    rng = np.random.default_rng(seed)
    pick = torch.as_tensor(rng.choice(len(hist), size=min(users, len(hist)), replace=False))
    hist = hist[pick]
    model.eval()
    device = next(model.parameters()).device
    states = model(hist.to(device))
    mask = (hist > 0).to(device)
    return [h[mask].float().cpu() for h in states]


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment of two ``(n, d)`` representations (widths may differ):
    1 when one is a rotation/scaling of the other, near 0 when unrelated."""
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    num = (x.t() @ y).pow(2).sum()
    den = (x.t() @ x).pow(2).sum().sqrt() * (y.t() @ y).pow(2).sum().sqrt()
    return float(num / den) if den > 0 else 0.0


def layer_statistics(states: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-layer norm statistics and the layer-by-layer CKA similarity matrix."""
    names = layer_names(len(states))
    norms = pd.DataFrame(
        [{"layer": n, "dim": h.shape[1], "norm_mean": float(h.norm(dim=1).mean()), "norm_std": float(h.norm(dim=1).std())}
         for n, h in zip(names, states)]
    )
    sim = np.array([[linear_cka(a, b) for b in states] for a in states])
    return norms, pd.DataFrame(sim, index=names, columns=names)


def layer_names(n: int) -> list[str]:
    return ["embedding"] + [f"layer {i}" for i in range(1, n - 1)] + ["output"] if n > 1 else ["output"]


def layer_norm_figure(norms: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Scatter(x=norms["layer"], y=norms["norm_mean"], mode="lines+markers",
                               error_y=dict(type="data", array=norms["norm_std"]), name="L2 norm"))
    fig.update_layout(title="hidden-state norm per layer (mean ± std over positions)", yaxis_title="L2 norm", height=360)
    return fig


def similarity_heatmap(sim: pd.DataFrame, title: str = "similarity across layers (linear CKA)") -> go.Figure:
    fig = go.Figure(go.Heatmap(z=sim.to_numpy(), x=list(sim.columns), y=list(sim.index), zmin=0, zmax=1,
                               colorscale="Viridis", text=np.round(sim.to_numpy(), 2), texttemplate="%{text}"))
    fig.update_layout(title=title, yaxis_autorange="reversed", height=420)
    return fig


# ----------------------------------------------------------------------------- recommendations
@torch.no_grad()
def recommendations(model, scene: Scene, users, k: int = 10, history: int = 8, split: str = "test") -> pd.DataFrame:
    """For each user: the last ``history`` titles, the held-out item, and the model's top-k
    (with a mark on the held-out one); one row per user."""
    from recnb.train import score_users

    hist, target = eval_inputs(scene, split, model.config.max_len)
    users = list(users)
    scores = score_users(model, hist[users]).cpu()
    top = scores.topk(k, dim=1).indices.numpy()
    rows = []
    for r, u in enumerate(users):
        seq = [int(i) for i in hist[u] if i > 0][-history:]
        t = int(target[u])
        rows.append({
            "user": scene.user_ids[u],
            "history (oldest first)": " | ".join(scene.title(i) for i in seq),
            "held-out item": scene.title(t),
            f"top-{k}": " | ".join(("✔ " if int(i) == t else "") + scene.title(int(i)) for i in top[r]),
            "hit rank": next((n + 1 for n, i in enumerate(top[r]) if int(i) == t), None),
        })
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- training curves
def history_figure(history: pd.DataFrame, title: str = "training", metric: str = "valid_NDCG@10") -> go.Figure:
    """Loss (left axis) and a validation metric (right axis) per epoch from ``TrainResult.history``."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=history["epoch"], y=history["loss"], name="train loss"), secondary_y=False)
    if metric in history:
        fig.add_trace(go.Scatter(x=history["epoch"], y=history[metric], name=metric), secondary_y=True)
    fig.update_layout(title=title, xaxis_title="epoch", height=340)
    return fig


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


# ----------------------------------------------------------------------------- architectures
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#393b79", "#637939")


def op_color(op: str) -> str:
    """A fixed colour per op name (parameter-free ops in greys/cyans), the same in every figure."""
    if op in OP_COLORS:
        return OP_COLORS[op]
    return PALETTE[sum(map(ord, op)) % len(PALETTE)]


def _architecture_dict(arch) -> dict:
    if hasattr(arch, "to_dict"):
        return arch.to_dict()
    if isinstance(arch, dict):
        return arch
    raise ConfigError(f"expected an Architecture or its JSON dict, got {type(arch).__name__}")


def architecture_edges(arch) -> pd.DataFrame:
    """One row per kept edge: ``cell, node, input, op`` (inputs 0/1 are the two cells below)."""
    d = _architecture_dict(arch)
    rows = [
        {"cell": c, "node": n, "input": e["input"], "op": e["op"]}
        for c, cell in enumerate(d["cells"])
        for n, node in enumerate(cell["nodes"])
        for e in node
    ]
    return pd.DataFrame(rows, columns=["cell", "node", "input", "op"])


def architecture_graph(arch, title: str | None = None, height: int = 320) -> go.Figure:
    """The derived student drawn left to right: embedding, then per cell its intermediate
    nodes (fed by the kept edges, labelled and coloured by op) and its output (the combination
    of the nodes, dotted). Input 0 of a cell is the output two cells below, input 1 the one
    just below; the embedding stands in below the first cell."""
    d = _architecture_dict(arch)
    cells = d["cells"]
    pos = {"emb": (0.0, 0.0)}
    labels = {"emb": "embedding"}
    for c, cell in enumerate(cells):
        n_nodes = len(cell["nodes"])
        base = c * (n_nodes + 2)
        for n in range(n_nodes):
            pos[(c, n)] = (base + 1.0 + n, (n - (n_nodes - 1) / 2) * 1.2)
            labels[(c, n)] = f"cell {c} · node {n}"
        pos[("out", c)] = (base + n_nodes + 1.5, 0.0)
        labels[("out", c)] = f"cell {c} output"

    def source(c: int, inp: int):
        if inp >= 2:
            return (c, inp - 2)
        below = c - 2 + inp  # input 0: two cells below, input 1: just below
        return ("out", below) if below >= 0 else "emb"

    fig = go.Figure()
    by_op: dict = {}
    for c, cell in enumerate(cells):
        for n, node in enumerate(cell["nodes"]):
            for e in node:
                by_op.setdefault(e["op"], []).append((source(c, e["input"]), (c, n)))
    for op, pairs in sorted(by_op.items()):
        xs, ys, mx, my = [], [], [], []
        for a, b in pairs:
            (x0, y0), (x1, y1) = pos[a], pos[b]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
            mx.append(x0 + 0.6 * (x1 - x0))
            my.append(y0 + 0.6 * (y1 - y0))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=op_color(op), width=2.5),
                                 name=op, legendgroup=op, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=mx, y=my, mode="markers", marker=dict(color=op_color(op), size=9, symbol="diamond"),
                                 name=op, legendgroup=op, showlegend=False, hovertemplate=f"{op}<extra></extra>"))
    cx, cy = [], []
    for c, cell in enumerate(cells):
        for n in range(len(cell["nodes"])):
            (x0, y0), (x1, y1) = pos[(c, n)], pos[("out", c)]
            cx += [x0, x1, None]
            cy += [y0, y1, None]
    fig.add_trace(go.Scatter(x=cx, y=cy, mode="lines", line=dict(color="#cccccc", width=1, dash="dot"),
                             name="combine", hoverinfo="skip"))
    keys = list(pos)
    fig.add_trace(go.Scatter(
        x=[pos[k][0] for k in keys], y=[pos[k][1] for k in keys], mode="markers",
        marker=dict(size=[18 if k == "emb" or k[0] == "out" else 12 for k in keys],
                    color=["#333333" if k == "emb" or k[0] == "out" else "white" for k in keys],
                    line=dict(color="#333333", width=1.5)),
        text=[labels[k] for k in keys], hovertemplate="%{text}<extra></extra>", showlegend=False))
    n_edges = sum(len(node) for cell in cells for node in cell["nodes"])
    fig.update_layout(title=title or f"{len(cells)} cells, {n_edges} edges", height=height,
                      xaxis=dict(visible=False), yaxis=dict(visible=False, scaleanchor=None),
                      legend=dict(orientation="h", y=-0.05), margin=dict(l=10, r=10, t=50, b=10))
    return fig


def architecture_table(archs: dict) -> pd.DataFrame:
    """Op counts side by side for named architectures (``{"ml-100k": arch, ...}``)."""
    counts = {name: architecture_edges(a)["op"].value_counts() for name, a in archs.items()}
    df = pd.DataFrame(counts).fillna(0).astype(int)
    df.index.name = "op"
    cells = {name: len(_architecture_dict(a)["cells"]) for name, a in archs.items()}
    return pd.concat([df.sort_index(), pd.DataFrame([cells], index=["(cells)"])])
