"""ipywidgets controls for the notebooks; they read stored results, so they respond at once.

:class:`BudgetExplorer` trades size for accuracy: a slider sets a budget (parameters,
FLOPs or latency) and the explorer shows the best distilled student and the best plain model
within it, chosen on validation, beside the teacher (the student's diagram and every one's
metrics, as a % of the teacher's). Every widget carries
a CSS class (``recnb-*``) so a browser test (or a user's stylesheet) can find it.
"""

from __future__ import annotations

import html
import math

import ipywidgets as W
from IPython.display import display

from recnb.analysis import COSTS
from recnb.errors import ConfigError
from recnb.results import metric_of
from recnb.viz import architecture_svg


def format_cost(value: float, cost: str) -> str:
    if cost.startswith("latency"):
        return f"{value:.2f} ms"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:.1f}{unit}"
    return f"{value:.0f}"


def _cell(value, fmt) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt(value)


def metrics_html(
    row: dict | None,
    reference: dict | None = None,
    metrics=("NDCG@10", "HR@10", "MRR@10", "NDCG@20", "HR@20"),
    plain: dict | None = None,
    split: str = "valid",
) -> str:
    """A small HTML table: the chosen model, the best plain model within the same budget
    (``plain``) and the reference (the teacher) side by side: size, speed, the ``split``
    metric the choice was made on, test metrics and each one's test metric as a % of the
    reference's."""
    if row is None and plain is None:
        return "<p class='recnb-empty'>Nothing fits this budget.</p>"
    cols = [c for c in (row, plain, reference) if c is not None]
    head = "".join(f"<th>{html.escape(str(c.get('name', '?')))}</th>" for c in cols)
    lines = []
    for key in ("params", "params_no_embedding", "flops", "latency_cpu_b1_ms", "latency_cpu_b256_ms"):
        if any(c.get(key) is not None for c in cols):
            cells = "".join(f"<td>{_cell(c.get(key), lambda v, k=key: format_cost(float(v), k))}</td>" for c in cols)
            lines.append(f"<tr><th>{COSTS[key]}</th>{cells}</tr>")
    if split != "test" and any(not math.isnan(metric_of(c, metrics[0], split)) for c in cols):
        cells = "".join(f"<td>{_cell(metric_of(c, metrics[0], split), '{:.4f}'.format)}</td>" for c in cols)
        lines.append(f"<tr><th>{split} {metrics[0]} (chosen on)</th>{cells}</tr>")
    for m in metrics:
        if any(not math.isnan(metric_of(c, m)) for c in cols):
            cells = "".join(f"<td>{_cell(metric_of(c, m), '{:.4f}'.format)}</td>" for c in cols)
            lines.append(f"<tr><th>test {m}</th>{cells}</tr>")
    ref = metric_of(reference, metrics[0]) if reference else float("nan")
    if not math.isnan(ref) and ref > 0:
        cells = "".join(f"<td>{_cell(metric_of(c, metrics[0]) / ref, '{:.0%}'.format)}</td>" for c in cols)
        lines.append(f"<tr><th>% of the teacher (test {metrics[0]})</th>{cells}</tr>")
    return (
        f"<table class='recnb-metrics'><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
    )


def _best(rows, budget, cost, metric, roles, split):
    fits = [r for r in rows if r.get("role") in roles and r.get(cost) is not None and float(r[cost]) <= budget
            and not math.isnan(metric_of(r, metric, split))]
    return max(fits, key=lambda r: (metric_of(r, metric, split), -float(r[cost]))) if fits else None


class BudgetExplorer:
    """Slide a budget, see the best student and the best plain model within it at once.

    ``rows`` are summary rows (an AdaRec ``summary.json``'s, or
    :func:`recnb.results.beauty_models`): each with ``name``, ``role``, the cost fields and
    ``valid`` / ``test`` metrics. The students are the rows of ``roles``, the plain models
    (trained without a teacher) those of ``plain_roles``; both are chosen on ``split``
    (validation by default: the test set measures, it does not choose), and ``reference``
    (the teacher) is shown beside them with each one's test metric as a % of the teacher's.
    The slider stops at every candidate's cost, so each model can be reached; a student's
    searched architecture is drawn when it has one.
    """

    def __init__(
        self,
        rows: list,
        cost: str = "params",
        metric: str = "NDCG@10",
        reference: dict | None = None,
        draw=None,
        roles=("student",),
        plain_roles=("student_no_kd", "plain"),
        split: str = "valid",
    ):
        if cost not in COSTS:
            raise ConfigError(f"cost must be one of {', '.join(COSTS)}, got {cost!r}")
        self.rows, self.cost, self.metric, self.reference = list(rows), cost, metric, reference
        self.roles, self.plain_roles, self.split = tuple(roles), tuple(plain_roles or ()), split
        everyone = self.roles + self.plain_roles
        pool = [r for r in self.rows if r.get("role") in everyone and r.get(cost) is not None]
        self.pool = [r for r in pool if not math.isnan(metric_of(r, metric, split))]
        if not any(r["role"] in self.roles for r in self.pool):
            raise ConfigError(f"no {'/'.join(self.roles)} row has a {cost} and a {split} {metric}: nothing to explore")
        self.draw = draw or (lambda row: architecture_svg(row["architecture"]))
        stops = sorted({float(r[cost]) for r in self.pool})
        first = min(float(r[cost]) for r in self.pool if r["role"] in self.roles)
        options = [(f"≤ {format_cost(v, cost)}", v) for v in stops if v >= first]
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
        hint = W.HTML(f"<small>{COSTS[cost]}: the best student and plain model within it, chosen on {split} {metric}</small>")
        self.widget = W.VBox([W.HBox([self.slider, hint]), self.name, W.HBox([self.table]), self.diagram])
        self.widget.add_class("recnb-explorer")
        self.current: dict | None = None
        self.plain: dict | None = None
        self.slider.observe(lambda change: self.select(change["new"]), names="value")
        self.select(self.slider.value)

    def title(self, row: dict) -> str:
        cost = format_cost(float(row[self.cost]), self.cost)
        return f"{row.get('name', '?')}: {cost} {COSTS[self.cost]}, {self.split} {self.metric} " \
               f"{metric_of(row, self.metric, self.split):.4f}"

    def select(self, budget: float) -> dict | None:
        """Show the best student and plain model within ``budget`` (what the slider calls)."""
        self.current = _best(self.pool, budget, self.cost, self.metric, self.roles, self.split)
        self.plain = _best(self.pool, budget, self.cost, self.metric, self.plain_roles, self.split)
        row = self.current
        parts = [f"student: {html.escape(self.title(row))}" if row else "student: none fits"]
        if self.plain_roles:
            parts.append(f"plain: {html.escape(self.title(self.plain))}" if self.plain else "plain: none fits")
        self.name.value = "<b>" + "<br>".join(parts) + "</b>"
        self.table.value = metrics_html(row, self.reference, plain=self.plain, split=self.split)
        if row is not None and row.get("architecture"):
            self.diagram.value = self.draw(row) or ""
        else:
            self.diagram.value = "<p class='recnb-empty'>a hand-made student: no searched architecture to draw</p>" if row else ""
        return row

    def _ipython_display_(self):
        display(self.widget)
