"""ipywidgets controls for the notebooks; they read stored results, so they respond at once.

:class:`BudgetExplorer` trades size for accuracy: a slider sets a budget (parameters,
FLOPs or latency) and the explorer shows the most accurate architecture within it, its
diagram and its metrics. The choice itself is the plain function
:func:`recnb.analysis.best_within`, so it is tested without a browser. Every widget carries
a CSS class (``recnb-*``) so a browser test (or a user's stylesheet) can find it.
"""

from __future__ import annotations

import html
import math

import ipywidgets as W
from IPython.display import display

from recnb.analysis import COSTS, best_within, metric_of, pareto_front
from recnb.errors import ConfigError
from recnb.viz import architecture_svg


def format_cost(value: float, cost: str) -> str:
    if cost.startswith("latency"):
        return f"{value:.2f} ms"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:.1f}{unit}"
    return f"{value:.0f}"


def metrics_html(
    row: dict | None, reference: dict | None = None, metrics=("NDCG@10", "HR@10", "MRR@10", "NDCG@20", "HR@20")
) -> str:
    """A small HTML table of a row's size, speed and metrics (and the reference's beside it)."""
    if row is None:
        return "<p class='recnb-empty'>No architecture fits this budget.</p>"
    cols = [row] + ([reference] if reference else [])
    head = "".join(f"<th>{html.escape(str(c.get('name', '?')))}</th>" for c in cols)
    lines = []
    for key in ("params", "params_no_embedding", "flops", "latency_cpu_b1_ms", "latency_cpu_b256_ms"):
        if any(c.get(key) is not None for c in cols):
            cells = "".join(
                f"<td>{format_cost(float(c[key]), key) if c.get(key) is not None else '–'}</td>" for c in cols
            )
            lines.append(f"<tr><th>{COSTS[key]}</th>{cells}</tr>")
    for m in metrics:
        if any(not math.isnan(metric_of(c, m)) for c in cols):
            cells = "".join(
                f"<td>{'–' if math.isnan(metric_of(c, m)) else f'{metric_of(c, m):.4f}'}</td>" for c in cols
            )
            lines.append(f"<tr><th>test {m}</th>{cells}</tr>")
    if row.get("beta") is not None:
        lines.append(f"<tr><th>beta</th><td>{row['beta']}</td>{'<td></td>' if reference else ''}</tr>")
    return (
        f"<table class='recnb-metrics'><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
    )


class BudgetExplorer:
    """Slide a budget, see the best architecture within it (diagram and metrics) at once.

    ``rows`` are the rows of an AdaRec ``summary.json`` (each with ``name``, ``architecture``,
    the cost fields and ``test`` metrics; only ``roles`` are offered, by default the distilled
    students); ``reference`` (e.g. the teacher's row) is shown
    beside the chosen one. The slider's stops are the budgets where the choice changes
    (the Pareto front), so every step shows another architecture.
    """

    def __init__(
        self,
        rows: list,
        cost: str = "params",
        metric: str = "NDCG@10",
        reference: dict | None = None,
        draw=None,
        roles=("student",),
    ):
        self.rows, self.cost, self.metric, self.reference, self.roles = list(rows), cost, metric, reference, roles
        self.front = pareto_front(self.rows, cost, metric, roles)
        if not self.front:
            raise ConfigError(f"no row has an architecture, a {cost} and a test {metric}: nothing to explore")
        # the diagram is an SVG in an HTML widget: it updates instantly with no JavaScript, and
        # (unlike an Output widget holding a plotly figure) it also runs headless under nbclient
        self.draw = draw or (lambda row: architecture_svg(row["architecture"]))
        options = [(f"≤ {format_cost(float(r[cost]), cost)}", float(r[cost])) for r in self.front]
        self.slider = W.SelectionSlider(
            options=options,
            value=options[0][1],
            description="budget",
            continuous_update=False,
            layout=W.Layout(width="480px"),
        )
        self.slider.add_class("recnb-budget-slider")
        self.name = W.HTML()
        self.name.add_class("recnb-arch-name")
        self.table = W.HTML()
        self.table.add_class("recnb-arch-metrics")
        self.diagram = W.HTML()
        self.diagram.add_class("recnb-arch-diagram")
        hint = W.HTML(f"<small>{COSTS[cost]} budget; shows the best test {metric} within it</small>")
        self.widget = W.VBox([W.HBox([self.slider, hint]), self.name, W.HBox([self.table]), self.diagram])
        self.widget.add_class("recnb-explorer")
        self.current: dict | None = None
        self.slider.observe(lambda change: self.select(change["new"]), names="value")
        self.select(self.slider.value)

    def title(self, row: dict) -> str:
        cost = format_cost(float(row[self.cost]), self.cost)
        return f"{row.get('name', '?')}: {cost} {self.cost}, test {self.metric} {metric_of(row, self.metric):.4f}"

    def select(self, budget: float) -> dict | None:
        """Show the best architecture within ``budget`` (what the slider calls)."""
        self.current = best_within(self.rows, budget, self.cost, self.metric, self.roles)
        row = self.current
        self.name.value = f"<b>{html.escape(self.title(row))}</b>" if row else "<b>none</b>"
        self.table.value = metrics_html(row, self.reference)
        self.diagram.value = (self.draw(row) or "") if row is not None else ""
        return row

    def _ipython_display_(self):
        display(self.widget)
