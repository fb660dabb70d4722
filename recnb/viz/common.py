"""What every figure shares: the offline renderer, the template, one colour per op, and
plotly figures with a slider over frames."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

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
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#393b79", "#637939")


def assigned_names(source: str) -> set[str]:
    """The names a cell's top-level statements assign."""
    import ast

    try:
        body = ast.parse(source).body
    except SyntaxError:
        return set()
    names = set()
    for node in body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def unknown_parameters(history: list) -> list[str]:
    """Names papermill injected (its cell opens with ``# Parameters``) that the notebook's own
    parameters cell (the last earlier cell that assigns names) does not define: papermill runs
    on silently with them, so the notebook stops instead."""
    injected = [i for i, src in enumerate(history) if isinstance(src, str) and src.lstrip().startswith("# Parameters")]
    if not injected:
        return []
    i = injected[-1]
    own = next((assigned_names(src) for src in reversed(history[:i]) if assigned_names(src)), set())
    return sorted(assigned_names(history[i]) - own)


def check_parameters() -> None:
    """Stop a papermill run that set a parameter the notebook does not have (a typo such as
    ``-p EPOCHS 50`` would otherwise run at the default). Outside IPython: nothing to check."""
    from recnb.errors import ConfigError

    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    ip = get_ipython()
    history = list(ip.user_ns.get("In", [])) if ip is not None else []
    unknown = unknown_parameters(history)
    if unknown:
        raise ConfigError(f"papermill set {', '.join(map(repr, unknown))}, which this notebook's parameters cell "
                          "does not define (a typo? names are case-sensitive)")


def setup_notebook(renderer: str = RENDERER) -> str:
    """Make plotly figures render offline in JupyterLab (and in HTML exports), and stop on a
    papermill parameter the notebook does not have; returns the renderer."""
    check_parameters()
    pio.renderers.default = renderer
    pio.templates.default = TEMPLATE
    return renderer


def op_color(op: str) -> str:
    """A fixed colour per op name (parameter-free ops in greys/cyans), the same in every figure."""
    if op in OP_COLORS:
        return OP_COLORS[op]
    return PALETTE[sum(map(ord, op)) % len(PALETTE)]


def subsample(values, limit: int) -> list:
    """At most ``limit`` of the distinct ``values``, evenly spread, first and last kept."""
    values = sorted(set(values))
    if len(values) <= limit:
        return values
    idx = np.unique(np.linspace(0, len(values) - 1, limit).round().astype(int))
    return [values[i] for i in idx]


def _play_button() -> dict:
    play = {"duration": 150, "redraw": True}
    return {
        "type": "buttons",
        "showactive": False,
        "x": 0,
        "y": -0.08,
        "xanchor": "right",
        "yanchor": "top",
        "buttons": [{"label": "▶", "method": "animate", "args": [None, {"frame": play, "fromcurrent": True}]}],
    }


def slider_figure(frames: list, labels: list, prefix: str, base: list, layout: dict, play: bool = True) -> go.Figure:
    """A figure whose traces ``base`` are replaced by ``frames[i]`` as a plotly slider moves
    (plus a play button): works offline, in JupyterLab and in exported HTML alike."""
    fig = go.Figure(data=base, frames=[go.Frame(data=f, name=str(label)) for f, label in zip(frames, labels)])
    jump = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    steps = [{"method": "animate", "label": str(label), "args": [[str(label)], jump]} for label in labels]
    slider = {"active": 0 if play else len(labels) - 1, "steps": steps, "currentvalue": {"prefix": prefix}}
    fig.update_layout(sliders=[{**slider, "pad": {"t": 40}}], **layout)
    if play and len(labels) > 1:
        fig.update_layout(updatemenus=[_play_button()])
    return fig
