"""AdaRec search space and searcher: causal ops, architecture JSON, losses, bi-level steps,
kill-and-resume."""

import itertools
import json

import numpy as np
import ot
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from recnb.adarec.architecture import Architecture, derive, edges_per_cell
from recnb.adarec.objective import combined_loss, cost_loss
from recnb.adarec.ops import PRIMITIVES, build_op, latency_table, normalised_costs, op_flops, op_params
from recnb.adarec.search import SearchConfig, bilevel_step, load_history, search
from recnb.adarec.student import Student
from recnb.adarec.supernet import Supernet, SupernetConfig
from recnb.checkpoint import load_checkpoint, save_checkpoint
from recnb.data import synthetic_scene, train_windows
from recnb.errors import ConfigError
from recnb.kd import EMDLoss, TeacherCache, emd_flow, kd_loss
from recnb.measure import model_flops
from recnb.models import build_model

D, L = 8, 12


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny tensors run on one thread


# ----------------------------------------------------------------------------- ops
@pytest.mark.parametrize("name", PRIMITIVES)
def test_every_op_is_causal_and_keeps_shape(name):
    torch.manual_seed(0)
    op = build_op(name, D).eval()
    x = torch.randn(3, L, D)
    y = op(x)
    assert y.shape == x.shape
    t = 5
    x2 = x.clone()
    x2[:, t + 1 :] = torch.randn(3, L - t - 1, D)
    assert torch.allclose(op(x2)[:, : t + 1], y[:, : t + 1], atol=1e-6)
    if name != "zero":  # and the op does look at its inputs
        assert not torch.allclose(op(x2)[:, t + 1 :], y[:, t + 1 :])


def test_op_costs_are_known():
    assert op_params("zero", D) == op_params("skip", D) == op_params("max_pool_k3", D) == 0
    assert op_params("conv_k5", D) > op_params("conv_k3", D) > 0
    assert op_params("dil_conv_k3_d2", D) == op_params("conv_k3", D)
    assert op_flops("conv_k3", 64) == 2 * 3 * 64 * 64 + 64
    assert op_flops("self_attention", D, 50) > op_flops("self_attention", D, 10)
    c = normalised_costs("params", D)
    assert float(c.max()) == 1.0 and float(c[PRIMITIVES.index("zero")]) == 0.0


def test_latency_table_is_measured_once_and_cached(tmp_path):
    t1 = latency_table(4, seq_len=6, batch=1, directory=tmp_path)
    files = list(tmp_path.glob("op_latency_cpu_d4_L6_b1.json"))
    assert len(files) == 1 and set(t1) == set(PRIMITIVES) and t1["zero"] == 0.0
    payload = json.loads(files[0].read_text())
    payload["ms"]["conv_k3"] = 123.0  # the cache is what is read back
    files[0].write_text(json.dumps(payload))
    assert latency_table(4, seq_len=6, batch=1, directory=tmp_path)["conv_k3"] == 123.0


# ----------------------------------------------------------------------------- architecture
def small_arch() -> Architecture:
    alphas = torch.randn(2, edges_per_cell(3), len(PRIMITIVES), generator=torch.Generator().manual_seed(3))
    return derive(alphas.numpy(), meta={"scene": "x"})


def test_derive_keeps_top2_edges_with_strongest_nonzero_op():
    a = np.full((1, edges_per_cell(2), len(PRIMITIVES)), -5.0)
    z, c3, c5, sk = (PRIMITIVES.index(o) for o in ("zero", "conv_k3", "conv_k5", "skip"))
    a[0, :, z] = 10.0  # zero dominates everywhere yet is never chosen
    a[0, 0, c3], a[0, 1, sk] = 2.0, 1.0  # node 0 (edges 0, 1)
    a[0, 2, c5], a[0, 3, sk], a[0, 4, c3] = 3.0, -1.0, 0.5  # node 1 (edges 2..4): keep 2 and 4
    arch = derive(a)
    assert arch.edges() == [
        {"cell": 0, "node": 0, "input": 0, "op": "conv_k3"},
        {"cell": 0, "node": 0, "input": 1, "op": "skip"},
        {"cell": 0, "node": 1, "input": 0, "op": "conv_k5"},
        {"cell": 0, "node": 1, "input": 2, "op": "conv_k3"},
    ]


def test_architecture_json_round_trips_and_rebuilds_an_identical_student(tmp_path):
    arch = small_arch()
    again = Architecture.from_json(arch.to_json())
    assert again == arch and again.to_dict() == arch.to_dict()
    path = arch.save(tmp_path / "architecture.json")
    assert Architecture.load(path).to_dict() == arch.to_dict()
    torch.manual_seed(0)
    s1 = Student.from_architecture(Architecture.load(path), num_items=30, width=D, max_len=L)
    save_checkpoint(tmp_path / "model.pt", s1)
    s2, _ = load_checkpoint(tmp_path / "model.pt")
    seq = torch.randint(0, 31, (2, L))
    s1.eval()
    assert s2.architecture == arch
    for a, b in zip(s1(seq), s2(seq)):
        assert torch.equal(a, b)


def test_student_is_causal_and_counts_its_cells():
    torch.manual_seed(0)
    s = Student.from_architecture(small_arch(), num_items=30, width=D, max_len=L).eval()
    seq = torch.randint(1, 31, (2, L))
    seq2 = seq.clone()
    seq2[:, 8:] = torch.randint(1, 31, (2, L - 8))
    for a, b in zip(s(seq), s(seq2)):
        assert torch.allclose(a[:, :8], b[:, :8], atol=1e-6)
    assert len(s(seq)) == 1 + 2
    cells = sum(p.numel() for p in s.cells.parameters()) - sum(p.numel() for c in s.cells for p in c.norm.parameters())
    assert cells == small_arch().params(D)
    assert model_flops(s) > 0


def test_student_dropout_acts_only_in_training_and_keeps_it_causal():
    torch.manual_seed(0)
    s = Student.from_architecture(small_arch(), num_items=30, width=D, max_len=L, dropout=0.5)
    plain = Student.from_architecture(small_arch(), num_items=30, width=D, max_len=L)
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())  # 0 = no module, no random draws
    seq = torch.randint(1, 31, (2, L))
    seq2 = seq.clone()
    seq2[:, 8:] = torch.randint(1, 31, (2, L - 8))
    s.train()
    torch.manual_seed(1)
    a = s(seq)[-1]
    torch.manual_seed(1)
    b = s(seq2)[-1]  # the same dropout draws: the future may not leak into the past
    assert torch.allclose(a[:, :8], b[:, :8], atol=1e-6)
    assert not torch.allclose(s(seq)[-1], s(seq)[-1])
    s.eval()
    assert torch.equal(s(seq)[-1], s(seq)[-1])
    assert Student(s.config).config.dropout == 0.5


@pytest.mark.parametrize("bad, field", [
    ('{"cells": [{"nodes": [[{"op": "conv_k9", "input": 0}]]}]}', "cells[0].nodes[0][0].op"),
    ('{"cells": [{"nodes": [[{"op": "skip", "input": 2}]]}]}', "cells[0].nodes[0][0].input"),
    ('{"cells": [{"nodes": [[{"op": "skip"}]]}]}', "cells[0].nodes[0][0]"),
    ('{"cells": []}', "cells"),
    ('{"cells": [{"nodes": [[{"op": "skip", "input": 0}]]}], "colour": 1}', "colour"),
    ('{"cells": [', "malformed JSON"),
])
def test_bad_architecture_names_the_field(bad, field, tmp_path):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Architecture.from_json(bad)
    (tmp_path / "a.json").write_text(bad)
    with pytest.raises(ConfigError, match="a.json"):
        Architecture.load(tmp_path / "a.json")


# ----------------------------------------------------------------------------- losses
def test_emd_loss_equals_pots_cost_on_known_matrices():
    torch.manual_seed(0)
    teacher = [torch.randn(5, 6) for _ in range(3)]
    student = [torch.randn(5, 4) for _ in range(2)]
    emd = EMDLoss(3, 2, 4, 6, update="softmax")
    loss = emd(student, teacher)
    D = emd.distances(student, teacher).detach().double().numpy()
    expected_D = np.array([[((t - emd.map(s)) ** 2).mean().item() for s in student] for t in teacher])
    np.testing.assert_allclose(D, expected_D, rtol=1e-5)
    a, b = np.full(3, 1 / 3), np.full(2, 1 / 2)
    assert loss.item() == pytest.approx(ot.emd2(a, b, D), rel=1e-5)
    np.testing.assert_allclose(emd.last_flow, ot.emd(a, b, D))
    loss.backward()  # gradient flows through D into the map
    assert emd.map.weight.grad is not None and emd.map.weight.grad.abs().sum() > 0


def test_emd_flow_on_a_hand_solved_problem():
    cost = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(emd_flow([0.5, 0.5], [0.5, 0.5], cost), [[0.5, 0.0], [0.0, 0.5]])


@pytest.mark.parametrize("update", ["softmax", "normalize"])
def test_layer_weight_update_favours_cheap_layers_and_sums_to_one(update):
    emd = EMDLoss(2, 2, 2, 2, update=update, T_emd=0.1)
    emd.last_flow = np.array([[0.5, 0.0], [0.0, 0.5]])
    emd.last_cost = np.array([[1.0, 0.0], [0.0, 4.0]])  # teacher layer 1 transports dearly
    emd.update_weights()
    for w in (emd.teacher_weights, emd.student_weights):
        assert float(w.sum()) == pytest.approx(1.0)
        assert float(w[0]) > float(w[1])
    if update == "normalize":  # w_i = sum(c) / c_i normalised: c = (1, 4) -> (4/5, 1/5)
        assert emd.teacher_weights.tolist() == pytest.approx([0.8, 0.2])


def test_kd_loss_is_zero_on_identical_logits_and_scaled_by_T2():
    s = torch.randn(4, 11)
    t = torch.randn(4, 11)
    assert kd_loss(s, s, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    p = torch.softmax(t[:, 1:] / 3.0, -1)
    q = torch.softmax(s[:, 1:] / 3.0, -1)
    expected = (p * (p.log() - q.log())).sum(-1).mean() * 9.0
    assert kd_loss(s, t, 3.0).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("T", [1.0, 2.0])
def test_kd_loss_against_a_frozen_teacher_matches_autograd_through_kl_div(T):
    """The fused path (teacher without gradient) gives torch's value and gradient, column 0 ignored."""
    torch.manual_seed(0)
    s = torch.randn(9, 41, dtype=torch.float64) * 4
    s[:, 0] = float("-inf")  # the student's padding logit, as item_logits leaves it
    t = torch.randn(9, 41, dtype=torch.float64) * 4
    s.requires_grad_(True)
    fused = kd_loss(s, t, T)
    fused.backward()
    got, s.grad = s.grad.clone(), None
    ref = F.kl_div(F.log_softmax(s[:, 1:].float() / T, -1), F.log_softmax(t[:, 1:].float() / T, -1),
                   log_target=True, reduction="batchmean") * T * T
    ref.backward()
    assert fused.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.isfinite(got).all() and (got[:, 0] == 0).all()
    assert torch.allclose(got, s.grad, atol=1e-7)
    big_s, big_t = torch.randn(300, 12_001) * 4, torch.randn(300, 12_001) * 4  # a catalogue's width, in float32
    exact = F.kl_div(F.log_softmax(big_s[:, 1:].double() / T, -1), F.log_softmax(big_t[:, 1:].double() / T, -1),
                     log_target=True, reduction="batchmean") * T * T
    assert kd_loss(big_s, big_t, T).item() == pytest.approx(exact.item(), rel=1e-5)
    twice = kd_loss(s, t, T)
    twice.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second backward"):
        twice.backward()


def test_cost_loss_is_monotone_in_the_alphas_of_costly_ops():
    costs = normalised_costs("params", 16)
    costly = int(costs.argmax())
    alphas = torch.zeros(2, 5, len(PRIMITIVES))
    values = []
    for bump in (0.0, 0.5, 1.0, 2.0):
        a = alphas.clone()
        a[..., costly] += bump
        values.append(cost_loss(torch.softmax(a, -1), costs).item())
    assert all(x < y for x, y in itertools.pairwise(values))
    a = alphas.clone().requires_grad_(True)
    cost_loss(torch.softmax(a, -1), costs).backward()
    assert (a.grad[..., costly] > 0).all() and (a.grad[..., PRIMITIVES.index("zero")] < 0).all()
    assert combined_loss(torch.tensor(2.0), torch.tensor(4.0), torch.tensor(10.0), 0.5, 0.1).item() == pytest.approx(4.0)


# ----------------------------------------------------------------------------- supernet / searcher
@pytest.fixture(scope="module")
def scene():
    return synthetic_scene(num_users=60, num_items=30, seq_len=16, seed=1)


@pytest.fixture(scope="module")
def teacher(scene):
    torch.manual_seed(0)
    return build_model("nextitnet", num_items=scene.num_items, max_len=L, embedding_size=12, num_blocks=2, layer_every=2).eval()


def tiny_cfg(**kw):
    base = {"width": D, "num_cells": 2, "num_nodes": 2, "epochs": 3, "batch_size": 16, "max_len": L, "device": "cpu",
            "progress": False, "warmup_epochs": 0, "patience": 5,
            "primitives": ["zero", "skip", "avg_pool_k3", "conv_k3", "conv_k5", "self_attention"]}
    base.update(kw)
    return SearchConfig(**base)


@pytest.mark.parametrize("relaxation", ["softmax", "gumbel"])
def test_supernet_is_causal_under_both_relaxations(relaxation, scene):
    torch.manual_seed(0)
    net = Supernet(SupernetConfig(num_items=scene.num_items, max_len=L, width=D, num_cells=2, num_nodes=2, relaxation=relaxation))
    net.generator = torch.Generator().manual_seed(0)
    net.eval()
    seq = torch.randint(1, scene.num_items + 1, (2, L))
    seq2 = seq.clone()
    seq2[:, 7:] = 1
    for a, b in zip(net(seq), net(seq2)):
        assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6)
    net.train()
    net.tau = 0.5
    w = net.op_weights()
    assert w.shape == (2, edges_per_cell(2), len(PRIMITIVES))
    assert torch.allclose(w.sum(-1), torch.ones(2, edges_per_cell(2)))


def test_a_search_step_moves_the_alphas_and_teacher_runs_once_per_window(scene, teacher):
    cfg = tiny_cfg()
    windows = train_windows(scene, L)
    cache = TeacherCache(teacher, windows)
    assert cache.windows_computed == len(windows)
    net = Supernet(SupernetConfig(num_items=scene.num_items, max_len=L, width=D, num_cells=2, num_nodes=2, primitives=cfg.primitives))
    emd = EMDLoss(cache.num_layers, 2, D, cache.width)
    costs = normalised_costs("params", D, L, cfg.primitives)
    w_opt = torch.optim.Adam(net.weight_parameters() + list(emd.parameters()), lr=1e-2)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=1e-2)
    idx = torch.arange(16)
    batch = {"index": idx, "inputs": windows.inputs[idx], "targets": windows.targets[idx]}
    before, weight_before = net.alphas.detach().clone(), net.final.weight.detach().clone()
    a_terms, _ = bilevel_step(net, batch, batch, w_opt, a_opt, cache, emd, costs, cfg)
    assert not torch.equal(before, net.alphas) and not torch.equal(weight_before, net.final.weight)
    assert set(a_terms) == {"ce", "kd", "emd", "cost", "total"} and a_terms["kd"] > 0 and a_terms["emd"] > 0
    assert np.isclose(emd.teacher_weights.sum().item(), 1.0)


def test_search_writes_history_pandas_loads_and_a_high_beta_prunes(scene, teacher, tmp_path):
    cfg = tiny_cfg(epochs=2, beta=5.0, lr_alpha=0.05)
    res = search(scene, teacher, cfg, tmp_path / "s")
    h = load_history(tmp_path / "s")
    assert list(h["alphas"].columns[:7]) == ["step", "epoch", "cell", "edge", "node", "input", "op"]
    steps = h["losses"]["step"].nunique()
    assert len(h["alphas"]) == steps * 2 * edges_per_cell(2) * len(cfg.primitives)
    assert np.allclose(h["alphas"].groupby(["step", "cell", "edge"])["weight"].sum(), 1.0)
    assert set(h["losses"]["phase"]) == {"alphas", "weights"}
    assert {"ce", "kd", "emd", "cost", "total"} <= set(h["losses"].columns)
    assert set(h["flows"].columns) == {"epoch", "teacher_layer", "student_layer", "flow"}
    assert np.allclose(h["flows"].groupby("epoch")["flow"].sum(), 1.0)
    assert set(h["layer_weights"]["side"]) == {"teacher", "student"}
    assert len(h["epochs"]) == 2
    assert Architecture.load(tmp_path / "s" / "architecture.json") == res.architecture
    # a strong cost weight drives the expected cost down during the search
    cost = h["losses"].query("phase == 'alphas'")["cost"].to_numpy()
    assert cost[-1] < cost[0]


def test_a_killed_search_resumes_to_the_same_history(scene, teacher, tmp_path):
    cfg = tiny_cfg(epochs=2, relaxation="gumbel")
    full = search(scene, teacher, cfg, tmp_path / "full")

    class Killed(Exception):
        pass

    def kill(epoch, row):
        if epoch == 0:
            raise Killed

    with pytest.raises(Killed):
        search(scene, teacher, cfg, tmp_path / "part", on_epoch=kill)
    # a partly written next epoch (killed before its checkpoint) is dropped on resume
    pd.DataFrame([{"step": 99, "epoch": 1, "phase": "weights"}]).to_csv(tmp_path / "part" / "losses.csv", mode="a", header=False, index=False)
    assert len(load_history(tmp_path / "part")["epochs"]) == 1
    resumed = search(scene, teacher, cfg, tmp_path / "part")
    a, b = load_history(tmp_path / "full"), load_history(tmp_path / "part")
    for name in ("alphas", "losses", "flows", "layer_weights"):
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=False, rtol=1e-6)
    cols = [c for c in a["epochs"].columns if c != "seconds"]
    pd.testing.assert_frame_equal(a["epochs"][cols], b["epochs"][cols], check_exact=False, rtol=1e-6)
    assert resumed.architecture == full.architecture


def test_warmup_epochs_train_weights_only(scene, teacher, tmp_path):
    res = search(scene, teacher, tiny_cfg(epochs=1, warmup_epochs=1), tmp_path / "w")
    h = load_history(tmp_path / "w")
    assert set(h["losses"]["phase"]) == {"weights"} and bool(h["epochs"]["warmup"].all())
    first = h["alphas"][h["alphas"]["step"] == 0]["weight"].to_numpy()
    last = h["alphas"][h["alphas"]["step"] == h["alphas"]["step"].max()]["weight"].to_numpy()
    np.testing.assert_allclose(first, last)
    assert res.architecture.num_cells == 2
    # no epoch past the warm-up validated a choice: no best epoch is claimed (it read -1)
    assert res.best_epoch is None and json.loads((tmp_path / "w" / "result.json").read_text())["best_epoch"] is None


def test_resume_refuses_different_settings(scene, teacher, tmp_path):
    search(scene, teacher, tiny_cfg(epochs=1), tmp_path / "s")
    with pytest.raises(ConfigError, match="beta"):
        search(scene, teacher, tiny_cfg(epochs=1, beta=3.0), tmp_path / "s")


def test_resume_checks_the_teacher_and_scene_by_content(scene, teacher, tmp_path):
    """The search state records its teacher's and scene's digests: the same teacher read from
    a file resumes; another one of the same shape (used to resume silently) or of another
    shape (used to end in a RuntimeError) is refused in one line, so is another scene."""
    import copy

    cfg = tiny_cfg(epochs=1)
    search(scene, teacher, cfg, tmp_path / "s")
    save_checkpoint(tmp_path / "t.pt", teacher, scene)
    assert search(scene, tmp_path / "t.pt", cfg, tmp_path / "s").epochs == 1  # the same teacher, by content
    same_shape = copy.deepcopy(teacher)
    with torch.no_grad():
        next(same_shape.parameters()).add_(0.01)
    torch.manual_seed(1)
    other_shape = build_model("nextitnet", num_items=scene.num_items, max_len=L, embedding_size=16, num_blocks=1)
    for other in (same_shape, other_shape):
        with pytest.raises(ConfigError, match="another teacher"):
            search(scene, other, cfg, tmp_path / "s")
    renamed = copy.deepcopy(scene)
    renamed.item_ids = ["<pad>"] + [f"x{i}" for i in scene.item_ids[1:]]
    with pytest.raises(ConfigError, match="another scene's item ids"):
        search(renamed, teacher, cfg, tmp_path / "s")


def test_search_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="cost"):
        SearchConfig(cost="watts")
    with pytest.raises(ConfigError, match="primitives"):
        Supernet(SupernetConfig(num_items=5, primitives=["skip", "conv_k9"]))


def test_emd_layer_weights_stay_finite_when_one_layer_costs_far_more():
    """A softmax of very unequal layer costs can round a weight to 0; the next update divides
    by it (a NaN marginal, then ot.emd fails): every layer keeps a sliver of mass."""
    import numpy as np

    from recnb.kd import EMDLoss

    emd = EMDLoss(teacher_layers=3, student_layers=1, student_width=4, teacher_width=4, T_emd=0.01)
    for _ in range(3):
        emd.last_flow = np.array([[0.98], [0.01], [0.01]])
        emd.last_cost = np.array([[1e-9], [5.0], [1e4]])
        emd.update_weights()
        for w in (emd.teacher_weights, emd.student_weights):
            assert torch.isfinite(w).all() and (w > 0).all() and float(w.sum()) == pytest.approx(1.0)
    loss = emd([torch.randn(5, 4)], [torch.randn(5, 4) for _ in range(3)])
    assert torch.isfinite(loss)
