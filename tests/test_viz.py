"""recnb.analysis and recnb.viz: analysis tables are right, figures are built from real inputs and
render offline, and the one summary.json reader resolves what a run wrote."""

import json
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch

import recnb
from recnb import analysis, viz
from recnb.adarec.architecture import Architecture, derive
from recnb.adarec.search import DEFAULT_PRIMITIVES
from recnb.adarec.summary import load_summary, read_summary
from recnb.data import synthetic_scene
from recnb.errors import ConfigError
from recnb.models import build_model


@pytest.fixture(scope="module")
def scene():
    return synthetic_scene(num_users=60, num_items=40, seq_len=16, seed=3)


@pytest.fixture(scope="module")
def model(scene):
    torch.manual_seed(0)
    return build_model("nextitnet", num_items=scene.num_items, max_len=12, embedding_size=8, num_blocks=2).eval()


@pytest.fixture()
def arch():
    rng = np.random.default_rng(0)
    return derive(rng.normal(size=(3, 9, len(DEFAULT_PRIMITIVES))), DEFAULT_PRIMITIVES, meta={"beta": 0.1})


def test_setup_notebook_picks_an_offline_renderer():
    old = pio.renderers.default
    try:
        assert viz.setup_notebook() == "plotly_mimetype+notebook"
        assert pio.renderers.default == "plotly_mimetype+notebook"
        # the 'notebook' renderer embeds plotly.js instead of fetching it from a CDN
        assert "cdn" not in pio.renderers.default
    finally:
        pio.renderers.default = old


def test_scene_figures_and_table(scene):
    table = analysis.scene_table(scene)
    assert table.loc[scene.name, "users"] == 60 and table["users"].dtype == np.int64
    hist = viz.length_histogram(scene)
    assert sum(len(t.x) for t in hist.data) == scene.num_users
    pop = viz.popularity_curve(scene)
    counts = pop.data[0].y
    assert counts.sum() == sum(len(s) for s in scene.sequences)
    assert list(counts) == sorted(counts, reverse=True)
    assert pop.data[1].y[-1] == pytest.approx(1.0)


def test_user_buckets_split_by_quantiles(scene):
    labels = analysis.user_buckets(scene, "length", buckets=4)
    assert len(labels) == scene.num_users
    lengths = analysis.sequence_lengths(scene)
    # every user in a later bucket has a history at least as long as every user in an earlier one
    codes = labels.cat.codes.to_numpy()
    for a in range(codes.max()):
        assert lengths[codes == a].max() <= lengths[codes == a + 1].min()
    with pytest.raises(ConfigError, match="bucket by"):
        analysis.user_buckets(scene, "colour")


def test_bucket_metrics_recombine_to_overall(scene):
    ranks = torch.arange(scene.num_users) % 15  # a hit@10 for ranks 0..9
    df = analysis.bucket_metrics(scene, ranks, by="popularity", buckets=3, ks=(10,))
    assert df["users"].sum() == scene.num_users
    overall = float((ranks < 10).float().mean())
    assert (df["HR@10"] * df["users"]).sum() / scene.num_users == pytest.approx(overall)
    fig = viz.bucket_bars({"popularity": df}, "HR@10")
    assert list(fig.data[0].y) == list(df["HR@10"])


def test_linear_cka_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    assert analysis.linear_cka(x, x) == pytest.approx(1.0)
    assert analysis.linear_cka(x, 3 * x @ q) == pytest.approx(1.0, abs=1e-5)  # rotation and scale invariant
    assert analysis.linear_cka(x, torch.randn(200, 4, generator=g)) < 0.2


def test_layer_statistics_of_a_model(scene, model):
    states = analysis.hidden_states(model, scene, users=30)
    assert len(states) == len(model(torch.zeros(1, 3, dtype=torch.long)))
    norms, sim = analysis.layer_statistics(states)
    assert list(norms["layer"]) == list(sim.index) and norms["layer"].iloc[0] == "embedding"
    assert np.allclose(np.diag(sim.to_numpy()), 1.0, atol=1e-5)
    assert np.allclose(sim.to_numpy(), sim.to_numpy().T, atol=1e-6)
    assert isinstance(viz.similarity_heatmap(sim), go.Figure) and isinstance(viz.layer_norm_figure(norms), go.Figure)


def test_recommendations_show_titles_and_hits(scene, model):
    df = analysis.recommendations(model, scene, users=[0, 1, 2], k=5, history=4)
    assert len(df) == 3 and "top-5" in df
    assert df["top-5"].str.count(r" \| ").eq(4).all()
    for _, row in df.iterrows():
        hit = row["hit rank"]
        assert (hit is None or pd.isna(hit)) == ("✔" not in row["top-5"])
    assert df["history (oldest first)"].str.startswith("item ").all()


def test_architecture_graph_draws_every_edge(arch):
    fig = viz.architecture_graph(arch)
    edges = analysis.architecture_edges(arch)
    assert len(edges) == 3 * (2 + 2 + 2)  # top-2 edges into each of 3 nodes, 3 cells
    marker_points = sum(len(t.x) for t in fig.data if t.mode == "markers+text" and t.legendgroup)
    assert marker_points == len(edges)
    # every op and every node is written on the drawing, not only on hover
    op_text = sorted(x for t in fig.data if t.legendgroup and t.mode == "markers+text" for x in t.text)
    assert op_text == sorted(edges["op"])
    nodes = next(t for t in fig.data if not t.legendgroup and t.mode == "markers+text")
    assert "emb" in nodes.text and "c0 n0" in nodes.text and "out 2" in nodes.text
    assert {t.name for t in fig.data if t.legendgroup} == set(edges["op"])
    # the JSON value, a path to it and the object draw the same figure
    assert viz.architecture_graph(arch.to_dict()).to_dict() == fig.to_dict()


def test_architecture_graph_from_path(tmp_path, arch):
    path = arch.save(tmp_path / "architecture.json")
    assert len(analysis.architecture_edges(str(path))) == len(analysis.architecture_edges(arch))
    with pytest.raises(ConfigError):
        viz.architecture_graph(42)


def test_architecture_schema_and_table(arch):
    schema = analysis.architecture_schema(arch)
    assert schema.loc["format", "value"] == "recnb-architecture/1"
    assert schema.loc["cells", "value"] == 3
    assert schema.loc["edge fields", "value"] == "input, op"
    table = analysis.architecture_table({"a": arch, "b": Architecture(arch.cells[:1])})
    assert table.loc["(cells)"].tolist() == [3, 1]
    assert table.drop("(cells)")["a"].sum() == 18


def _history():
    rows, steps = [], range(6)
    for s in steps:
        for c in range(2):
            for e, (n, i) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]):
                for o, op in enumerate(("skip", "conv_k3", "zero")):
                    rows.append(
                        {
                            "step": s,
                            "epoch": s // 3,
                            "cell": c,
                            "edge": e,
                            "node": n,
                            "input": i,
                            "op": op,
                            "weight": [0.2, 0.5, 0.3][o],
                        }
                    )
    alphas = pd.DataFrame(rows)
    flows = pd.DataFrame(
        [
            {"epoch": ep, "teacher_layer": t, "student_layer": j, "flow": 1 / 6}
            for ep in range(2)
            for t in range(3)
            for j in range(2)
        ]
    )
    lw = pd.DataFrame(
        [
            {"epoch": ep, "side": side, "layer": k, "weight": 0.5}
            for ep in range(2)
            for side in ("teacher", "student")
            for k in range(2)
        ]
    )
    losses = pd.DataFrame(
        [
            {
                "step": s,
                "epoch": s // 3,
                "phase": ph,
                "ce": 5.0 - s,
                "kd": 1.0,
                "emd": 0.2,
                "cost": 0.4,
                "total": 6.0 - s,
                "tau": 1.0,
            }
            for s in steps
            for ph in ("weights", "alphas")
        ]
    )
    return alphas, flows, lw, losses


def test_alpha_evolution_has_a_frame_per_step():
    alphas, *_ = _history()
    fig = viz.alpha_evolution(alphas)
    assert len(fig.frames) == 6 and len(fig.layout.sliders[0].steps) == 6
    z = np.array(fig.frames[0].data[0].z)
    assert z.shape == (10, 3)  # 2 cells x 5 edges, 3 ops
    assert np.allclose(z.sum(1), 1.0)
    # the colour scale spans the weights reached, the same in every frame (not a fixed 0-1)
    scales = {(f.data[0].zmin, f.data[0].zmax) for f in fig.frames}
    assert len(scales) == 1
    lo, hi = scales.pop()
    assert lo == pytest.approx(alphas["weight"].min()) and hi == pytest.approx(alphas["weight"].max())
    assert len(viz.alpha_evolution(alphas, max_frames=3).frames) == 3
    lines = viz.alpha_lines(alphas, cell=1)
    assert len(lines.data) == 5 * 3
    with pytest.raises(ConfigError):
        viz.alpha_evolution(alphas.iloc[:0])


def test_transport_layer_weight_and_loss_figures():
    _, flows, lw, losses = _history()
    fig = viz.transport_heatmaps(flows)
    assert len(fig.frames) == 2 and np.array(fig.frames[1].data[0].z).shape == (3, 2)
    # the slider starts at the last epoch, and the figure shows that epoch's matrix
    assert fig.layout.sliders[0].active == 1
    assert np.array_equal(np.array(fig.data[0].z), np.array(fig.frames[1].data[0].z))
    assert len(viz.layer_weights_figure(lw).data) == 4
    loss = viz.loss_figure(losses)
    assert [a.text for a in loss.layout.annotations] == [viz.search.TERM_TITLES[t] for t in viz.LOSS_TERMS]
    assert list(loss.data[1].y) == [5.0 - s for s in range(6)]
    with pytest.raises(ConfigError, match="EMD"):
        viz.transport_heatmaps(flows.iloc[:0])


def _summary(tmp_path, arch):
    path = arch.save(tmp_path / "search" / "beta_0.1" / "architecture.json")
    rows = [
        {
            "name": "teacher",
            "role": "teacher",
            "beta": None,
            "architecture": None,
            "params": 10_000,
            "latency_cpu_b256_ms": 8.0,
            "test": {"NDCG@10": 0.10, "NDCG@10_std": 0.0},
        },
        {
            "name": "s0.1",
            "role": "student",
            "beta": 0.1,
            "architecture": str(path),
            "params": 2_000,
            "latency_cpu_b256_ms": 2.0,
            "test": {"NDCG@10": 0.08, "NDCG@10_std": 0.01},
        },
        {
            "name": "s1",
            "role": "student",
            "beta": 1.0,
            "architecture": "elsewhere/search/beta_0.1/architecture.json",
            "params": 1_000,
            "latency_cpu_b256_ms": 1.0,
            "test": {"NDCG@10": 0.05, "NDCG@10_std": 0.0},
        },
    ]
    (tmp_path / "summary.json").write_text(json.dumps({"rows": rows}))
    return tmp_path / "summary.json"


def test_load_rows_inlines_architectures(tmp_path, arch):
    rows = analysis.load_rows(_summary(tmp_path, arch).parent)
    assert rows[0]["architecture"] is None
    assert rows[1]["architecture"] == arch.to_dict()
    assert rows[2]["architecture"] == arch.to_dict()  # resolved under the summary's folder
    with pytest.raises(ConfigError, match="no such summary"):
        analysis.load_rows(tmp_path / "nothing")


def test_one_summary_reader_for_paths_frames_and_rows(tmp_path, arch):
    summary = _summary(tmp_path, arch)
    rows = read_summary(tmp_path)["rows"]
    moved = tmp_path / "search" / "beta_0.1" / "architecture.json"
    assert rows[2]["architecture"] == str(moved)  # the written path did not exist: found under the folder
    frame = load_summary(summary)
    assert frame.equals(load_summary(tmp_path)) and frame.equals(recnb.load_summary(tmp_path))
    assert list(frame["test_NDCG@10"]) == [0.10, 0.08, 0.05] and list(frame["architecture"])[1:] == [str(moved)] * 2
    summary.write_text('{"rows": [')
    with pytest.raises(ConfigError, match=r"summary.json:1: malformed JSON"):
        read_summary(summary)
    summary.write_text('{"rows": 3}')
    with pytest.raises(ConfigError, match="no list of rows"):
        load_summary(tmp_path)


def test_architecture_svg_draws_every_edge_and_op(arch):
    svg = ElementTree.fromstring(viz.architecture_svg(arch, width=600))
    ns = "{http://www.w3.org/2000/svg}"
    edges = analysis.architecture_edges(arch)
    op_lines = [e for e in svg.iter(f"{ns}line") if e.find(f"{ns}title") is not None]
    assert sorted(e.find(f"{ns}title").text for e in op_lines) == sorted(edges["op"])
    assert len(list(svg.iter(f"{ns}circle"))) == 1 + 3 * (3 + 1)  # embedding, per cell 3 nodes and its output
    texts = [t.text for t in svg.iter(f"{ns}text")]
    assert set(edges["op"]) <= set(texts)  # the legend and the label on every edge
    assert sum(t in set(edges["op"]) for t in texts) == len(edges) + edges["op"].nunique()
    assert "emb" in texts and "c1 n2" in texts and "out 2" in texts  # node labels
    xs = [float(e.get(k)) for e in svg.iter(f"{ns}line") for k in ("x1", "x2")]
    assert 0 <= min(xs) and max(xs) <= 600


def test_comparison_table_and_frontier(tmp_path, arch):
    rows = analysis.load_rows(_summary(tmp_path, arch))
    table = analysis.comparison_table(rows)
    assert list(table.index) == ["teacher", "s0.1", "s1"]
    assert table.loc["s1", "compression"] == pytest.approx(10.0)
    assert table.loc["s0.1", "speedup_b256"] == pytest.approx(4.0)
    fig = viz.frontier_figure(rows)
    students = next(t for t in fig.data if t.name == "student")
    assert list(students.x) == [2_000, 1_000] and list(students.y) == [0.08, 0.05]  # beta order
    assert {t.name for t in fig.data} == {"teacher", "student"}


def test_scene_runs_put_scenes_architectures_and_frontier_side_by_side(tmp_path, arch):
    full = tmp_path / "full"
    path = _summary(full, arch)
    summary = json.loads(path.read_text())
    summary.update(dataset="beauty", default_beta=0.1, scene={"users": 100, "items": 50, "seq_len_median": 6.0})
    path.write_text(json.dumps(summary))
    only = tmp_path / "sports"  # a search-only run: architectures and scene.json, no summary
    arch.save(only / "search" / "beta_1" / "architecture.json")
    arch.save(only / "search" / "beta_0.01" / "architecture.json")
    (only / "scene.json").write_text(json.dumps({"users": 300, "items": 90, "seq_len_median": 5.0}))
    df = analysis.scene_runs([full, only])
    assert list(zip(df["scene"], df["beta"])) == [("beauty", 0.1), ("sports", 0.01), ("sports", 1.0)]
    assert df["users"].tolist() == [100, 300, 300] and df["default"].tolist() == [True, False, False]
    assert (df["architecture"] == arch.signature()).all() and (df["cell params (width 64)"] == arch.params(64)).all()
    assert df.loc[0, "NDCG@10"] == 0.08 and df.loc[0, "teacher NDCG@10"] == 0.10 and pd.isna(df.loc[1, "NDCG@10"])


def test_committed_runs_are_the_kept_scenes(tmp_path):
    names = [p.name for p in analysis.committed_runs()]
    assert {"beauty", "sports", "ml-100k"} <= set(names)  # bench/results/adarec beside the package
    assert analysis.committed_runs(tmp_path / "absent") == []


def test_papermill_parameters_the_notebook_lacks_are_found():
    from recnb.viz.common import unknown_parameters

    params = "epochs = 3  # full: 50\nlr = 3e-3\n"
    assert unknown_parameters(["", params, "# Parameters\nepochs = 50\n", "import torch"]) == []
    assert unknown_parameters(["", params, "# Parameters\nEPOCHS = 50\nlr = 1\n", "x"]) == ["EPOCHS"]
    assert unknown_parameters(["", params, "import torch"]) == []  # nothing injected: nothing to check


def test_kept_results_read_from_bench_results():
    from recnb import results

    rows = results.beauty_models()
    roles = {r["role"] for r in rows}
    assert {"teacher", "plain", "distilled", "ensemble"} <= roles
    table = results.models_table(rows)
    assert table.loc["SASRec 4 x 128 (teacher)", "% of teacher"] == "100%"
    assert len(table.columns) <= 6  # narrow enough for a notebook column
    stats = results.scene_stats()
    assert stats.loc["users", "Amazon Beauty"] == "22,363"  # counts print as integers
    assert "." not in stats.loc["items"].str.cat()
    students, parts = results.dllm2rec_beauty()
    assert students["gain"].str.endswith("%").sum() == 2  # a percentage, not a raw fraction
    assert len(viz.models_figure(rows).data) == 4
    assert len(viz.dllm2rec_figure(students, parts).data) == 4
    fig = viz.search_progress_figure(results.search_epochs())
    assert fig.layout.xaxis.title.text.startswith("search epoch")
    assert len(results.search_summary()) == 9


def test_sentences_follow_the_numbers():
    from recnb import results

    m = pd.DataFrame({"NDCG@10": [0.0167, 0.0220]}, index=["teacher", "popularity"])
    assert "popularity matches or beats the teacher" in results.versus_popularity(m)
    m.loc["teacher", "NDCG@10"] = 0.05
    assert "teacher is above popularity" in results.versus_popularity(m)
    sim = pd.DataFrame(np.full((3, 3), 0.99), index=list("abc"), columns=list("abc"))
    assert "has not used its depth" in results.cka_sentence(sim)
    rows = [{"name": "t", "role": "teacher", "params": 100, "test": {"NDCG@10": 0.12}},
            {"name": "s", "role": "student", "beta": 1.0, "params": 10, "test": {"NDCG@10": 0.08}},
            {"name": "tw", "role": "student_no_kd", "beta": 1.0, "params": 10, "test": {"NDCG@10": 0.09}},
            {"name": "b", "role": "baseline", "params": 4, "test": {"NDCG@10": 0.15}}]
    s = results.pipeline_sentence(rows)
    assert s.startswith("Highest test NDCG@10 in this run: b (baseline") and "does not beat its no-teacher twin" in s
    table = pd.DataFrame({"NDCG@10": [0.03, 0.0216, 0.018]}, index=["teacher", "no distillation", "DLLM2Rec"])
    assert results.gain_sentence(table).startswith("No distillation scores 0.0216; no distilled variant beats it")


def test_importance_panels_have_their_own_fitted_scales():
    rows = [{"user": u, "rank": r, "candidate": f"c{r}", "position": 1 / r, "confidence": 0.5 + r / 100,
             "consistency": float(r % 2), "weight": 0.1 + r / 1000} for u in (1, 2) for r in range(1, 4)]
    fig = viz.importance_figure(pd.DataFrame(rows))
    assert len(fig.data) == 4 and all(t.colorbar.orientation == "h" for t in fig.data)
    assert fig.data[3].zmin == pytest.approx(0.101) and fig.data[3].zmax == pytest.approx(0.103)
