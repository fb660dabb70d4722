"""What the notebooks draw: plotly figures built from the data ``recnb.analysis`` computes.

Each figure function takes plain data (a scene, a DataFrame, an architecture, the rows of a
``summary.json``) and returns a ``plotly.graph_objects.Figure``; nothing here computes a
result, trains or searches. One module per notebook (:mod:`.teacher` 01, :mod:`.search`
02, :mod:`.results` 03, :mod:`.llm` 04), the architecture drawing they share
(:mod:`.architecture`) and the common style (:mod:`.common`: :func:`setup_notebook` picks a
renderer that needs no network, so figures show in JupyterLab and in exported HTML alike).
"""

from recnb.viz.architecture import architecture_graph, architecture_layout, architecture_svg
from recnb.viz.common import OP_COLORS, RENDERER, TEMPLATE, op_color, setup_notebook, slider_figure
from recnb.viz.frontier import pareto_figure
from recnb.viz.llm import dllm2rec_figure, importance_figure
from recnb.viz.results import frontier_figure, models_figure
from recnb.viz.search import (
    LOSS_TERMS,
    alpha_evolution,
    alpha_lines,
    edge_label,
    layer_weights_figure,
    loss_figure,
    search_progress_figure,
    transport_heatmaps,
)
from recnb.viz.teacher import (
    bucket_bars,
    history_figure,
    layer_norm_figure,
    length_histogram,
    popularity_curve,
    scene_bars,
    similarity_heatmap,
)

__all__ = [
    "LOSS_TERMS",
    "OP_COLORS",
    "RENDERER",
    "TEMPLATE",
    "alpha_evolution",
    "alpha_lines",
    "architecture_graph",
    "architecture_layout",
    "architecture_svg",
    "bucket_bars",
    "dllm2rec_figure",
    "edge_label",
    "frontier_figure",
    "history_figure",
    "importance_figure",
    "layer_norm_figure",
    "layer_weights_figure",
    "length_histogram",
    "loss_figure",
    "models_figure",
    "op_color",
    "pareto_figure",
    "popularity_curve",
    "scene_bars",
    "search_progress_figure",
    "setup_notebook",
    "similarity_heatmap",
    "slider_figure",
    "transport_heatmaps",
]
