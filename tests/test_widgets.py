"""recnb.widgets: the budget explorer picks the best architecture within budget and updates at once."""

import math

import numpy as np
import pytest

from recnb import analysis, widgets
from recnb.adarec.architecture import derive
from recnb.adarec.search import DEFAULT_PRIMITIVES
from recnb.errors import ConfigError


def _arch(seed):
    return derive(
        np.random.default_rng(seed).normal(size=(2, 5, len(DEFAULT_PRIMITIVES))), DEFAULT_PRIMITIVES
    ).to_dict()


@pytest.fixture()
def rows():
    return [
        {"name": "teacher", "role": "teacher", "architecture": None, "params": 50_000, "test": {"NDCG@10": 0.12}},
        {
            "name": "tiny",
            "role": "student",
            "beta": 1.0,
            "architecture": _arch(1),
            "params": 1_000,
            "valid": {"NDCG@10": 0.06},
            "test": {"NDCG@10": 0.05},
        },
        {
            "name": "small",
            "role": "student",
            "beta": 0.1,
            "architecture": _arch(2),
            "params": 3_000,
            "valid": {"NDCG@10": 0.10},
            "test": {"NDCG@10": 0.09, "HR@10": 0.2},
        },
        {
            "name": "mid-worse",
            "role": "student_no_kd",
            "beta": 0.1,
            "architecture": _arch(2),
            "params": 4_000,
            "valid": {"NDCG@10": 0.08},
            "test": {"NDCG@10": 0.07},
        },
        {
            "name": "big",
            "role": "student",
            "beta": 0.01,
            "architecture": _arch(3),
            "params": 9_000,
            "valid": {"NDCG@10": 0.11},
            "test": {"NDCG@10": 0.10},
        },
        {"name": "no-metric", "role": "student", "architecture": _arch(4), "params": 500, "test": {}},
    ]


def test_best_within_budget(rows):
    assert analysis.best_within(rows, 999) is None
    assert analysis.best_within(rows, 1_000)["name"] == "tiny"
    assert analysis.best_within(rows, 4_500)["name"] == "small"  # the bigger mid-worse is less accurate
    assert analysis.best_within(rows, 1e9)["name"] == "big"  # the teacher has no architecture: not a candidate
    with pytest.raises(ConfigError, match="cost must be one of"):
        analysis.best_within(rows, 1, cost="weight")


def test_only_the_given_roles_are_candidates(rows):
    rows[3]["test"]["NDCG@10"] = 0.095  # a no-KD twin that beats the distilled "small"
    assert analysis.best_within(rows, 4_500)["name"] == "small"
    assert analysis.best_within(rows, 4_500, roles=None)["name"] == "mid-worse"
    assert analysis.best_within(rows, 4_500, roles=("student_no_kd",))["name"] == "mid-worse"


def test_ties_go_to_the_cheaper(rows):
    rows[4]["test"]["NDCG@10"] = 0.09
    assert analysis.best_within(rows, 1e9)["name"] == "small"


def test_pareto_front_is_what_best_within_returns(rows):
    front = analysis.pareto_front(rows)
    assert [r["name"] for r in front] == ["tiny", "small", "big"]
    for budget in (1_000, 2_000, 3_000, 5_000, 9_000, 20_000):
        assert analysis.best_within(rows, budget) in front


def test_metrics_html_lists_sizes_and_metrics(rows):
    html = widgets.metrics_html(rows[2], reference=rows[0], plain=rows[3])
    assert "small" in html and "teacher" in html and "mid-worse" in html and "3.0k" in html and "50.0k" in html
    assert "0.0900" in html and "0.1200" in html and "valid NDCG@10" in html
    assert "% of the teacher" in html and "75%" in html  # 0.09 / 0.12
    assert "nan" not in html.lower()  # the teacher's missing HR@10 shows as a dash
    assert "Nothing fits" in widgets.metrics_html(None)
    assert (
        widgets.format_cost(2.5e9, "flops") == "2.5G" and widgets.format_cost(1.234, "latency_cpu_b1_ms") == "1.23 ms"
    )


def test_explorer_moves_with_the_slider(rows):
    drawn = []
    ex = widgets.BudgetExplorer(
        rows, reference=rows[0], draw=lambda row: drawn.append(row["name"]) or f"<svg>{row['name']}</svg>"
    )
    # a stop at every candidate's cost (students and plain models), from the cheapest student
    assert [v for _, v in ex.slider.options] == [1_000.0, 3_000.0, 4_000.0, 9_000.0]
    assert ex.current["name"] == "tiny" and "tiny" in ex.name.value and drawn == ["tiny"] and ex.plain is None
    before = ex.table.value
    ex.slider.value = 4_000.0
    assert ex.current["name"] == "small" and ex.plain["name"] == "mid-worse" and "mid-worse" in ex.name.value
    ex.slider.value = 9_000.0  # what dragging the slider does
    assert ex.current["name"] == "big" and "big" in ex.name.value and drawn[-1] == "big"
    assert ex.table.value != before and "0.1000" in ex.table.value and "% of the teacher" in ex.table.value
    assert "recnb-explorer" in ex.widget._dom_classes and "recnb-budget-slider" in ex.slider._dom_classes


def test_explorer_chooses_on_validation_not_test(rows):
    rows[2]["test"]["NDCG@10"] = 0.20  # best on test, but not on validation
    rows[2]["valid"]["NDCG@10"] = 0.01
    ex = widgets.BudgetExplorer(rows, draw=lambda row: None)
    ex.slider.value = 9_000.0
    assert ex.current["name"] == "big"
    ex.select(3_000.0)
    assert ex.current["name"] == "tiny"
    on_test = widgets.BudgetExplorer(rows, draw=lambda row: None, split="test")
    on_test.select(9_000.0)
    assert on_test.current["name"] == "small"


def test_explorer_on_other_costs(rows):
    for r, ms in zip(rows[1:], (0.5, 0.9, 1.0, 2.0, 0.1)):
        r["latency_cpu_b1_ms"] = ms
    ex = widgets.BudgetExplorer(rows, cost="latency_cpu_b1_ms", draw=lambda row: None)
    assert [label for label, _ in ex.slider.options] == ["≤ 0.50 ms", "≤ 0.90 ms", "≤ 1.00 ms", "≤ 2.00 ms"]


def test_explorer_draws_real_architecture_diagrams(rows):
    ex = widgets.BudgetExplorer(rows)
    svg = ex.diagram.value
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    n_edges = sum(len(node) for cell in ex.current["architecture"]["cells"] for node in cell["nodes"])
    assert svg.count('stroke-width="2.5"') == n_edges  # one coloured line per kept edge
    ex.slider.value = ex.slider.options[-1][1]
    assert ex.diagram.value != svg and ex.current["name"] == "big"
    assert not math.isnan(analysis.metric_of(ex.current, "NDCG@10"))


def test_explorer_on_the_kept_beauty_models():
    from recnb import results

    beauty = results.beauty_models()
    ex = widgets.BudgetExplorer(beauty, cost="params_no_embedding", reference=results.teacher_of(beauty),
                                roles=("distilled",), plain_roles=("plain",), draw=lambda row: "<svg/>")
    assert len(ex.slider.options) >= 5
    seen = set()
    for _, v in ex.slider.options:
        ex.slider.value = v
        seen.add((ex.current["name"], ex.plain and ex.plain["name"]))
    assert len(seen) >= 4 and any(p and "large-sparse" in p for _, p in seen)
    assert "% of the teacher" in ex.table.value


def test_explorer_needs_candidates(rows):
    with pytest.raises(ConfigError, match="nothing to explore"):
        widgets.BudgetExplorer([rows[0]])
