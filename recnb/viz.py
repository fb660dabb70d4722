"""What the notebooks show: small analysis tables and the plotly figures drawn from them.

Each figure function takes plain data (a scene, a DataFrame, an architecture dict, the rows
of a ``summary.json``) and returns a ``plotly.graph_objects.Figure``; nothing here trains or
searches. Table helpers (``bucket_metrics``, ``layer_statistics``, ...) turn model outputs
into the DataFrames those figures draw. :func:`setup_notebook` picks a renderer that needs
no network, so figures show in JupyterLab and in exported HTML alike.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

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
    "conv_k3": "#ff7f0e",
    "conv_k5": "#d62728",
    "dil_conv_k3_d2": "#9467bd",
    "dil_conv_k5_d2": "#8c564b",
    "dil_conv_k3_d4": "#e377c2",
    "dil_conv_k5_d4": "#bcbd22",
    "self_attention": "#2ca02c",
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


def bucket_metrics(
    scene: Scene, ranks, by: str = "length", buckets: int = 4, ks=(10,), split: str = "test"
) -> pd.DataFrame:
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
        [
            {
                "layer": n,
                "dim": h.shape[1],
                "norm_mean": float(h.norm(dim=1).mean()),
                "norm_std": float(h.norm(dim=1).std()),
            }
            for n, h in zip(names, states)
        ]
    )
    sim = np.array([[linear_cka(a, b) for b in states] for a in states])
    return norms, pd.DataFrame(sim, index=names, columns=names)


def layer_names(n: int) -> list[str]:
    return ["embedding"] + [f"layer {i}" for i in range(1, n - 1)] + ["output"] if n > 1 else ["output"]


def layer_norm_figure(norms: pd.DataFrame) -> go.Figure:
    fig = go.Figure(
        go.Scatter(
            x=norms["layer"],
            y=norms["norm_mean"],
            mode="lines+markers",
            error_y=dict(type="data", array=norms["norm_std"]),
            name="L2 norm",
        )
    )
    fig.update_layout(
        title="hidden-state norm per layer (mean ± std over positions)", yaxis_title="L2 norm", height=360
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
        rows.append(
            {
                "user": scene.user_ids[u],
                "history (oldest first)": " | ".join(scene.title(i) for i in seq),
                "held-out item": scene.title(t),
                f"top-{k}": " | ".join(("✔ " if int(i) == t else "") + scene.title(int(i)) for i in top[r]),
                "hit rank": next((n + 1 for n, i in enumerate(top[r]) if int(i) == t), None),
            }
        )
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
    if isinstance(arch, (str, Path)):
        from recnb.adarec.architecture import Architecture

        return Architecture.load(arch).to_dict()
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
    pos, labels, edges = _layout(d)
    fig = go.Figure()
    by_op: dict = {}
    for src, dst, op in edges:
        by_op.setdefault(op, []).append((src, dst))
    for op, pairs in sorted(by_op.items()):
        xs, ys, mx, my = [], [], [], []
        for a, b in pairs:
            (x0, y0), (x1, y1) = pos[a], pos[b]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
            mx.append(x0 + 0.6 * (x1 - x0))
            my.append(y0 + 0.6 * (y1 - y0))
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line=dict(color=op_color(op), width=2.5),
                name=op,
                legendgroup=op,
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=mx,
                y=my,
                mode="markers",
                marker=dict(color=op_color(op), size=9, symbol="diamond"),
                name=op,
                legendgroup=op,
                showlegend=False,
                hovertemplate=f"{op}<extra></extra>",
            )
        )
    cx, cy = [], []
    for c, cell in enumerate(cells):
        for n in range(len(cell["nodes"])):
            (x0, y0), (x1, y1) = pos[(c, n)], pos[("out", c)]
            cx += [x0, x1, None]
            cy += [y0, y1, None]
    fig.add_trace(
        go.Scatter(
            x=cx, y=cy, mode="lines", line=dict(color="#cccccc", width=1, dash="dot"), name="combine", hoverinfo="skip"
        )
    )
    keys = list(pos)
    fig.add_trace(
        go.Scatter(
            x=[pos[k][0] for k in keys],
            y=[pos[k][1] for k in keys],
            mode="markers",
            marker=dict(
                size=[18 if k == "emb" or k[0] == "out" else 12 for k in keys],
                color=["#333333" if k == "emb" or k[0] == "out" else "white" for k in keys],
                line=dict(color="#333333", width=1.5),
            ),
            text=[labels[k] for k in keys],
            hovertemplate="%{text}<extra></extra>",
            showlegend=False,
        )
    )
    n_edges = sum(len(node) for cell in cells for node in cell["nodes"])
    fig.update_layout(
        title=title or f"{len(cells)} cells, {n_edges} edges",
        height=height,
        xaxis=dict(visible=False),
        yaxis=dict(visible=False, scaleanchor=None),
        legend=dict(orientation="h", y=-0.05),
        margin=dict(l=10, r=10, t=50, b=10),
    )
    return fig


def architecture_table(archs: dict) -> pd.DataFrame:
    """Op counts side by side for named architectures (``{"ml-100k": arch, ...}``)."""
    counts = {name: architecture_edges(a)["op"].value_counts() for name, a in archs.items()}
    df = pd.DataFrame(counts).fillna(0).astype(int)
    df.index.name = "op"
    cells = {name: len(_architecture_dict(a)["cells"]) for name, a in archs.items()}
    return pd.concat([df.sort_index(), pd.DataFrame([cells], index=["(cells)"])])


# ----------------------------------------------------------------------------- search history
def _slider_figure(frames: list, labels: list, prefix: str, base: list, layout: dict, play: bool = True) -> go.Figure:
    """A figure whose traces ``base`` are replaced by ``frames[i]`` as a plotly slider moves
    (plus a play button): works offline, in JupyterLab and in exported HTML alike."""
    fig = go.Figure(data=base, frames=[go.Frame(data=f, name=str(label)) for f, label in zip(frames, labels)])
    steps = [
        dict(
            method="animate",
            label=str(label),
            args=[
                [str(label)],
                dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0)),
            ],
        )
        for label in labels
    ]
    fig.update_layout(
        sliders=[
            dict(
                active=len(labels) - 1 if not play else 0, steps=steps, currentvalue=dict(prefix=prefix), pad=dict(t=40)
            )
        ],
        **layout,
    )
    if play and len(labels) > 1:
        fig.update_layout(
            updatemenus=[
                dict(
                    type="buttons",
                    showactive=False,
                    x=0,
                    y=-0.08,
                    xanchor="right",
                    yanchor="top",
                    buttons=[
                        dict(
                            label="▶",
                            method="animate",
                            args=[None, dict(frame=dict(duration=150, redraw=True), fromcurrent=True)],
                        )
                    ],
                )
            ]
        )
    return fig


def _subsample(values, limit: int) -> list:
    values = sorted(set(values))
    if len(values) <= limit:
        return values
    idx = np.unique(np.linspace(0, len(values) - 1, limit).round().astype(int))
    return [values[i] for i in idx]


def edge_label(cell: int, node: int, inp: int) -> str:
    src = ("c-2", "c-1")[inp] if inp < 2 else f"n{inp - 2}"
    return f"cell {cell} · n{node} ← {src}"


def alpha_evolution(alphas: pd.DataFrame, max_frames: int = 60) -> go.Figure:
    """Op weights (softmax of alpha) of every edge as a heatmap (rows: edges, columns: ops),
    with a slider (and play button) over the recorded search steps."""
    if alphas.empty:
        raise ConfigError("alphas: the search history is empty")
    df = alphas.copy()
    df["edge_label"] = [edge_label(c, n, i) for c, n, i in zip(df["cell"], df["node"], df["input"])]
    ops = list(dict.fromkeys(df["op"]))
    rows = list(dict.fromkeys(df.sort_values(["cell", "edge"])["edge_label"]))
    steps = _subsample(df["step"].unique(), max_frames)
    epoch_of = df.groupby("step")["epoch"].first()
    frames = []
    for s in steps:
        z = (
            df[df["step"] == s]
            .pivot_table(index="edge_label", columns="op", values="weight")
            .reindex(index=rows, columns=ops)
        )
        frames.append(
            [
                go.Heatmap(
                    z=z.to_numpy(),
                    x=ops,
                    y=rows,
                    zmin=0,
                    zmax=1,
                    colorscale="Blues",
                    colorbar=dict(title="weight"),
                    hovertemplate="%{y}<br>%{x}: %{z:.3f}<extra></extra>",
                )
            ]
        )
    labels = [f"{s} (epoch {epoch_of[s]})" for s in steps]
    return _slider_figure(
        frames,
        labels,
        "step ",
        frames[0],
        dict(
            title="alpha evolution: op weights per edge over search steps",
            height=max(360, 22 * len(rows) + 180),
            yaxis=dict(autorange="reversed"),
            margin=dict(l=160),
        ),
    )


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
        sub = df[df["edge"] == e]
        for op, g in sub.groupby("op", sort=False):
            fig.add_trace(
                go.Scatter(
                    x=g["step"],
                    y=g["weight"],
                    mode="lines",
                    name=op,
                    legendgroup=op,
                    line=dict(color=op_color(op)),
                    showlegend=k == 0,
                ),
                k // cols + 1,
                k % cols + 1,
            )
    fig.update_layout(title=f"cell {cell}: op weights over steps", height=220 * nrows + 80)
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
                    colorbar=dict(title="flow"),
                )
            ]
        )
    return _slider_figure(
        frames,
        [f"{e}" for e in epochs],
        "epoch ",
        frames[-1],
        dict(
            title="EMD transport matrix between teacher and student layers",
            height=460,
            yaxis=dict(autorange="reversed"),
        ),
        play=False,
    )


def layer_weights_figure(layer_weights: pd.DataFrame) -> go.Figure:
    """EMD layer weights per epoch, teacher and student side by side."""
    sides = [s for s in ("teacher", "student") if s in set(layer_weights["side"])]
    fig = make_subplots(rows=1, cols=len(sides), subplot_titles=[f"{s} layers" for s in sides], shared_yaxes=True)
    for c, side in enumerate(sides, 1):
        for layer, g in layer_weights[layer_weights["side"] == side].groupby("layer"):
            fig.add_trace(go.Scatter(x=g["epoch"], y=g["weight"], mode="lines+markers", name=f"{side} {layer}"), 1, c)
        fig.update_xaxes(title_text="epoch", row=1, col=c)
    fig.update_yaxes(title_text="weight", row=1, col=1)
    fig.update_layout(title="EMD layer weights", height=360)
    return fig


LOSS_TERMS = ("total", "ce", "kd", "emd", "cost")


def loss_figure(losses: pd.DataFrame, phase: str = "weights") -> go.Figure:
    """Each loss term per step (one panel per term: their scales differ)."""
    df = losses[losses["phase"] == phase] if "phase" in losses else losses
    terms = [t for t in LOSS_TERMS if t in df and df[t].notna().any()]
    fig = make_subplots(rows=1, cols=len(terms), subplot_titles=terms)
    for c, t in enumerate(terms, 1):
        fig.add_trace(go.Scatter(x=df["step"], y=df[t], mode="lines", name=t), 1, c)
        fig.update_xaxes(title_text="step", row=1, col=c)
    fig.update_layout(title=f"loss terms over the search ({phase} steps)", showlegend=False, height=320)
    return fig


# ----------------------------------------------------------------------------- AdaRec summaries
def load_rows(summary_path) -> list:
    """The rows of an AdaRec ``summary.json`` (a file or its folder) with each row's
    architecture read into its JSON value (paths resolved as written, else relative to the
    summary's folder), so widgets and figures need no further file access."""
    from recnb.adarec.architecture import Architecture

    path = Path(summary_path)
    path = path / "summary.json" if path.is_dir() else path
    if not path.exists():
        raise ConfigError(f"{path}: no such summary (run `recnb adarec` or the pipeline cell first)")
    rows = json.loads(path.read_text())["rows"]
    for r in rows:
        a = r.get("architecture")
        if isinstance(a, str):
            p = Path(a)
            if not p.exists():
                p = path.parent / Path(*p.parts[-3:])  # search/beta_x/architecture.json under the summary folder
            r["architecture"] = Architecture.load(p).to_dict()
    return rows


SUMMARY_COLUMNS = (
    "name",
    "role",
    "beta",
    "params",
    "params_no_embedding",
    "flops",
    "latency_cpu_b1_ms",
    "latency_cpu_b256_ms",
    "NDCG@10",
    "HR@10",
    "MRR@10",
    "NDCG@20",
    "HR@20",
)


def comparison_table(rows: list, metrics=("NDCG@10", "HR@10", "MRR@10", "NDCG@20", "HR@20")) -> pd.DataFrame:
    """Teacher, students and baselines side by side: size, FLOPs, latency and test metrics,
    plus each one's compression and speed-up against the teacher."""
    recs = []
    for r in rows:
        rec = {k: r.get(k) for k in SUMMARY_COLUMNS[:8]}
        rec.update({m: (r.get("test") or {}).get(m) for m in metrics})
        recs.append(rec)
    df = pd.DataFrame(recs, columns=list(SUMMARY_COLUMNS[:8]) + list(metrics))
    teacher = df[df["role"] == "teacher"]
    if len(teacher):
        t = teacher.iloc[0]
        df["compression"] = t["params"] / df["params"]
        if t.get("latency_cpu_b256_ms"):
            df["speedup_b256"] = t["latency_cpu_b256_ms"] / df["latency_cpu_b256_ms"]
    return df.set_index("name")


def frontier_figure(rows: list, cost: str = "params", metric: str = "NDCG@10", log_x: bool = True) -> go.Figure:
    """Cost (size, FLOPs or latency) against accuracy for every model; the students of the
    beta sweep joined by a line in beta order, the teacher and baselines as separate markers."""
    fig = go.Figure()
    df = pd.DataFrame(
        [
            {
                **{k: r.get(k) for k in ("name", "role", "beta", cost)},
                metric: (r.get("test") or {}).get(metric),
                "std": (r.get("test") or {}).get(f"{metric}_std"),
            }
            for r in rows
        ]
    )
    styles = {
        "teacher": ("star", "#d62728"),
        "student": ("circle", "#1f77b4"),
        "student_no_kd": ("circle-open", "#1f77b4"),
        "baseline": ("square", "#2ca02c"),
        "baseline_no_kd": ("square-open", "#2ca02c"),
    }
    for role, g in df.groupby("role", sort=False):
        g = g.sort_values("beta") if role.startswith("student") else g
        symbol, color = styles.get(role, ("diamond", "#7f7f7f"))
        text = [
            f"{n}" + (f" (beta {b:g})" if isinstance(b, (int, float)) and not pd.isna(b) else "")
            for n, b in zip(g["name"], g["beta"])
        ]
        fig.add_trace(
            go.Scatter(
                x=g[cost],
                y=g[metric],
                mode="markers+lines" if role == "student" else "markers",
                name=role,
                marker=dict(symbol=symbol, size=12, color=color),
                text=text,
                error_y=dict(type="data", array=g["std"].fillna(0)) if g["std"].notna().any() else None,
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


def architecture_schema(arch) -> pd.DataFrame:
    """The shape of an architecture's JSON value, not its choices: the fields at each level and
    the counts of cells, nodes and edges (stable across runs of the same search settings)."""
    d = _architecture_dict(arch)
    cells = d["cells"]
    edges = [e for cell in cells for node in cell["nodes"] for e in node]
    rows = [
        ("top-level fields", ", ".join(sorted(d))),
        ("format", d.get("format", "")),
        ("cells", len(cells)),
        ("cell fields", ", ".join(sorted({k for c in cells for k in c}))),
        ("nodes per cell", ", ".join(str(len(c["nodes"])) for c in cells)),
        ("edges per node", ", ".join(sorted({str(len(n)) for c in cells for n in c["nodes"]}))),
        ("edge fields", ", ".join(sorted({k for e in edges for k in e}))),
        ("meta fields", ", ".join(sorted(d.get("meta", {})))),
    ]
    return pd.DataFrame(rows, columns=["part", "value"]).set_index("part")


# ----------------------------------------------------------------------------- DLLM2Rec
def artifact_table(artifacts) -> pd.DataFrame:
    """What a teacher handed over: each file's shape and meaning (shapes only: the values
    change with training, the layout must not)."""
    rows = []
    if artifacts.embeddings is not None:
        rows.append(
            ("all_embeddings.pt", "x".join(map(str, artifacts.embeddings.shape)), "semantic embedding of every item")
        )
    if artifacts.ranks is not None:
        rows.append(
            ("myrank_train.txt", "x".join(map(str, artifacts.ranks.shape)), "teacher's top-n items per training row")
        )
        rows.append(
            ("confidence_train.txt", "x".join(map(str, artifacts.distances.shape)), "their L2 distances, ascending")
        )
    return pd.DataFrame(rows, columns=["file", "shape", "holds"]).set_index("file")


@torch.no_grad()
def importance_rows(scene: Scene, artifacts, users, max_len: int, student=None, k: int = 10, **weights) -> pd.DataFrame:
    """DLLM2Rec's importance weights on each user's most recent training row: for every one
    of the teacher's top-``k`` candidates its title, distance, the position, confidence and
    consistency parts and the combined weight (``weights`` are ``importance_weights``
    options, e.g. ``gamma_position``). Consistency needs the ``student`` (its current top-k)."""
    from recnb.data import train_windows
    from recnb.dllm2rec.artifacts import scene_rows
    from recnb.dllm2rec.pipeline import importance_weights

    windows = train_windows(scene, max_len)
    rows = scene_rows(windows, scene)
    row_users = windows.users[rows.window].numpy()
    picks = []
    for u in users:
        idx = np.flatnonzero(row_users == u)
        if len(idx) == 0:
            raise ConfigError(f"user index {u} has no training row")
        picks.append(int(idx[-1]))
    picks = torch.as_tensor(picks)
    k = min(k, artifacts.top_n)
    cand, dist = artifacts.ranks[picks, :k], artifacts.distances[picks, :k]
    student_top = None
    if student is not None:
        student.eval()
        device = next(student.parameters()).device
        seq = windows.inputs[rows.window[picks]].to(device)
        h = student.output(seq)[torch.arange(len(picks), device=device), rows.position[picks].to(device)]
        scores = student.score(h).float()
        scores[:, 0] = float("-inf")
        student_top = scores.topk(k, dim=1).indices.cpu()
    w, parts = importance_weights(cand, dist, student_top, return_parts=True, **weights)
    out = []
    for r, u in enumerate(users):
        for j in range(k):
            out.append(
                {
                    "user": scene.user_ids[u],
                    "rank": j + 1,
                    "candidate": scene.title(int(cand[r, j])),
                    "distance": float(dist[r, j]),
                    "position": float(parts["position"][r, j]),
                    "confidence": float(parts["confidence"][r, j]),
                    "consistency": float(parts["consistency"][r, j]),
                    "weight": float(w[r, j]),
                    "target": scene.title(int(rows.targets[picks[r]])),
                }
            )
    return pd.DataFrame(out)


def importance_figure(df: pd.DataFrame) -> go.Figure:
    """Heatmaps (users x candidate rank) of the three importance parts and the combined
    weight; hover shows the candidate's title."""
    parts = ["position", "confidence", "consistency", "weight"]
    fig = make_subplots(rows=1, cols=4, subplot_titles=parts + [], shared_yaxes=True, horizontal_spacing=0.03)
    users = list(dict.fromkeys(df["user"]))
    for c, part in enumerate(parts, 1):
        z = df.pivot(index="user", columns="rank", values=part).reindex(users)
        text = df.pivot(index="user", columns="rank", values="candidate").reindex(users)
        fig.add_trace(
            go.Heatmap(
                z=z.to_numpy(),
                x=list(z.columns),
                y=[f"user {u}" for u in users],
                text=text.to_numpy(),
                colorscale="Blues",
                showscale=c == 4,
                zmin=0,
                hovertemplate="%{y}, rank %{x}<br>%{text}<br>" + part + " %{z:.3f}<extra></extra>",
            ),
            1,
            c,
        )
        fig.update_xaxes(title_text="teacher rank", row=1, col=c)
    fig.update_layout(title="importance of the teacher's top candidates", height=120 + 40 * len(users))
    return fig


def dllm2rec_table(results: dict, metrics=("NDCG@10", "HR@10", "NDCG@20", "HR@20")) -> pd.DataFrame:
    """Test metrics of named ``run_dllm2rec`` results (``{"full": result, ...}``): each
    one's distilled student, and the undistilled baseline and teacher once."""
    rows = {}
    for name, res in results.items():
        if "teacher" not in rows and res.get("teacher", {}).get("test"):
            rows["teacher"] = {m: res["teacher"]["test"].get(m) for m in metrics}
        if res.get("baseline") and "no distillation" not in rows:
            rows["no distillation"] = {m: res["baseline"]["test"][m] for m in metrics}
        rows[name] = {m: res["distilled"]["test"][m] for m in metrics}
    df = pd.DataFrame(rows).T
    if "no distillation" in df.index:
        base = df.loc["no distillation", metrics[0]]
        df[f"gain {metrics[0]}"] = (df[metrics[0]] - base) / base if base else float("nan")
    return df


def _layout(d: dict) -> tuple[dict, dict, list]:
    """Node positions, labels and op edges of the left-to-right architecture drawing."""
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


def architecture_svg(arch, width: int = 900, height: int = 260) -> str:
    """The same drawing as :func:`architecture_graph` as a self-contained SVG string (no
    JavaScript): for HTML widgets, which update instantly and render anywhere."""
    import html as _html

    d = _architecture_dict(arch)
    pos, labels, edges = _layout(d)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    pad = 30
    sx = (width - 2 * pad) / max(1e-9, max(xs) - min(xs))
    sy = (height - 2 * pad - 40) / max(1e-9, max(ys) - min(ys)) if max(ys) > min(ys) else 1.0

    def at(key):
        x, y = pos[key]
        return pad + (x - min(xs)) * sx, pad + (max(ys) - y) * sy

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="recnb-arch-svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">'
    ]
    for c, cell in enumerate(d["cells"]):
        for n in range(len(cell["nodes"])):
            (x0, y0), (x1, y1) = at((c, n)), at(("out", c))
            parts.append(
                f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" '
                'stroke="#cccccc" stroke-dasharray="3,3"/>'
            )
    for src, dst, op in edges:
        (x0, y0), (x1, y1) = at(src), at(dst)
        color = op_color(op)
        mx, my = x0 + 0.6 * (x1 - x0), y0 + 0.6 * (y1 - y0)
        parts.append(
            f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="{color}" stroke-width="2.5">'
            f"<title>{_html.escape(op)}</title></line>"
        )
        parts.append(
            f'<rect x="{mx - 4:.1f}" y="{my - 4:.1f}" width="8" height="8" fill="{color}" '
            f'transform="rotate(45 {mx:.1f} {my:.1f})"/>'
        )
    for key, label in labels.items():
        x, y = at(key)
        big = key == "emb" or key[0] == "out"
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{9 if big else 6}" fill="{"#333333" if big else "white"}" '
            f'stroke="#333333" stroke-width="1.5"><title>{_html.escape(label)}</title></circle>'
        )
    ops = sorted({op for _, _, op in edges})
    lx, ly = pad, height - 14
    for op in ops:
        parts.append(
            f'<rect x="{lx}" y="{ly - 8}" width="14" height="4" fill="{op_color(op)}"/>'
            f'<text x="{lx + 18}" y="{ly - 3}">{_html.escape(op)}</text>'
        )
        lx += 26 + 6.2 * len(op)
        if lx > width - 120:
            lx, ly = pad, ly + 14
    parts.append("</svg>")
    return "".join(parts)
