"""Batches cut to their longest history, the sampled-softmax loss, batched evaluation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recnb.data import seen_items, synthetic_scene, train_windows
from recnb.errors import ConfigError
from recnb.evaluation import score_users, user_ranks
from recnb.metrics import ranks_from_scores
from recnb.models import BASE_MODELS, build_model
from recnb.train import Batches, TrainConfig, fit, rec_loss, sampled_softmax


def short_scene():
    return synthetic_scene(num_users=40, num_items=30, seq_len=12, seed=7)


def perturbed(name, **kw):
    """A model whose every weight is random (NextItNet's residual scales start at 0, which
    would hide what padding does)."""
    torch.manual_seed(0)
    model = build_model(name, num_items=30, max_len=20, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("name, kw", [(n, {}) for n in BASE_MODELS] + [("sasrec", {"positions": "first_item"}),
                                                                      ("sasrec", {"positions": "lag"}),
                                                                      ("nextitnet", {"mask_padding": True}),
                                                                      ("gru4rec", {"mask_padding": True})])
def test_cuts_padding_says_whether_cutting_leading_padding_keeps_the_loss(name, kw, one_thread):
    """The flag is true exactly where a batch cut to its longest history (given the offset)
    gives the loss of the full-width batch; SASRec's slot positions need the offset."""
    model = perturbed(name, **kw)
    w = train_windows(short_scene(), 20)
    off = int((w.inputs != 0).float().argmax(1).min())
    assert off > 0  # the batch has columns that are padding in every row
    full = {"inputs": w.inputs, "targets": w.targets}
    cut = {"inputs": w.inputs[:, off:], "targets": w.targets[:, off:]}
    with torch.no_grad():
        a, _ = rec_loss(model, model(full["inputs"])[-1], full)
        b, _ = rec_loss(model, model(cut["inputs"], offset=off)[-1] if model.cuts_padding else model(cut["inputs"])[-1], cut)
    assert bool(torch.isclose(a, b, rtol=1e-5, atol=1e-6)) == model.cuts_padding
    if name == "sasrec" and kw.get("positions", "slot") == "slot":  # without the offset, slot positions move
        with torch.no_grad():
            c, _ = rec_loss(model, model(cut["inputs"])[-1], cut)
        assert not torch.isclose(a, c, rtol=1e-5, atol=1e-6)


def test_target_batches_cover_every_window_once_and_drop_only_padding():
    w = train_windows(synthetic_scene(num_users=120, num_items=50, seq_len=60, seed=2), 20, context=5)
    batches = Batches(w, batch_size=32, batch_targets=100, cut=True)
    gen = torch.Generator().manual_seed(0)
    seen, sizes = [], []
    for idx, inp, tgt, off, share in batches.epoch(gen):
        assert share == 1.0 and torch.equal(inp, w.inputs[idx, off:]) and torch.equal(tgt, w.targets[idx, off:])
        assert (w.inputs[idx, :off] == 0).all() and (w.targets[idx, :off] == 0).all()
        assert (inp[:, 0] != 0).any()  # cut to the longest history, not beyond
        seen += idx.tolist()
        sizes.append(int((tgt > 0).sum()))
    assert sorted(seen) == list(range(len(w)))
    assert len(sizes) == len(batches) and max(sizes) <= 100 + 20 and min(sizes) >= 100 // 2


def test_default_batches_are_the_windows_in_random_order():
    w = train_windows(short_scene(), 20)
    got = [idx for idx, *_ in Batches(w, batch_size=7).epoch(torch.Generator().manual_seed(3))]
    want = torch.randperm(len(w), generator=torch.Generator().manual_seed(3)).split(7)
    assert all(torch.equal(a, b) for a, b in zip(got, want)) and len(got) == len(want)


def test_sampled_softmax_with_every_item_as_negative_is_the_full_softmax():
    torch.manual_seed(0)
    h, w = torch.randn(9, 8), torch.randn(31, 8)
    tgt = torch.randint(1, 31, (9,))
    full = F.cross_entropy((h @ w.t())[:, 1:], tgt - 1)
    assert torch.isclose(sampled_softmax(h, tgt, w, torch.arange(1, 31)), full, rtol=1e-5)
    # fewer negatives: a smaller (easier) softmax
    assert sampled_softmax(h, tgt, w, torch.arange(1, 6)) < full


def test_fused_sampled_softmax_has_the_value_and_gradients_of_cross_entropy():
    """Drawn with replacement, a negative can repeat and can be the target itself (every
    occurrence left out): the fused function equals cross_entropy over [target, negatives]."""
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        h = torch.randn(40, 8, generator=gen, requires_grad=True)
        w = torch.randn(21, 8, generator=gen, requires_grad=True)
        tgt = torch.randint(1, 21, (40,), generator=gen)
        neg = torch.randint(1, 21, (30,), generator=gen)  # many repeats and collisions on 20 items
        assert (neg[None, :] == tgt[:, None]).sum() > 40
        pos = (h * w[tgt]).sum(-1, keepdim=True)
        other = (h @ w[neg].t()).masked_fill(neg[None, :] == tgt[:, None], float("-inf"))
        want = F.cross_entropy(torch.cat([pos, other], 1), torch.zeros(40, dtype=torch.long))
        got = sampled_softmax(h, tgt, w, neg)
        assert torch.isclose(got, want, rtol=1e-6)
        for a, b in zip(torch.autograd.grad(want, [h, w]), torch.autograd.grad(got, [h, w], retain_graph=True)):
            assert torch.allclose(a, b, atol=1e-6)
        with pytest.raises(RuntimeError, match="second backward"):
            got.backward()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_kd_of_the_sampled_softmax_is_kl_over_the_scored_items_with_its_gradients(smoothing):
    """With a teacher's scores of the same items the fused function also returns KL(teacher ||
    student) over [target, unmasked negatives]: value and gradients of the autograd reference."""
    gen = torch.Generator().manual_seed(4)
    h = torch.randn(40, 8, generator=gen, requires_grad=True)
    w = torch.randn(21, 8, generator=gen, requires_grad=True)
    tgt, neg = torch.randint(1, 21, (40,), generator=gen), torch.randint(1, 21, (30,), generator=gen)
    t_h, t_w = torch.randn(40, 5, generator=gen), torch.randn(21, 5, generator=gen)
    t_pos, t_neg = (t_h * t_w[tgt]).sum(-1), t_h @ t_w[neg].t()
    valid = torch.cat([torch.ones(40, 1, dtype=torch.bool), neg[None, :] != tgt[:, None]], 1)
    s_all = torch.cat([(h * w[tgt]).sum(-1, keepdim=True), h @ w[neg].t()], 1).masked_fill(~valid, float("-inf"))
    t_all = torch.cat([t_pos[:, None], t_neg], 1).masked_fill(~valid, float("-inf"))
    ce_want = sampled_softmax(h, tgt, w, neg, smoothing)
    log_s, log_t = s_all.log_softmax(1), t_all.log_softmax(1)
    kd_want = (log_t.exp() * (log_t - log_s).masked_fill(~valid, 0)).sum(1).mean()
    ce, kd = sampled_softmax(h, tgt, w, neg, smoothing, teacher=(t_pos, t_neg))
    assert torch.isclose(ce, ce_want.detach(), rtol=1e-6) and torch.isclose(kd, kd_want, rtol=1e-5)
    want = torch.autograd.grad(ce_want + 0.7 * kd_want, [h, w])
    for a, b in zip(want, torch.autograd.grad(ce + 0.7 * kd, [h, w])):
        assert torch.allclose(a, b, atol=1e-6)


def test_label_smoothing_of_the_sampled_softmax_spreads_over_the_scored_items_only():
    """As cross_entropy(label_smoothing) over [target, the negatives that are not the target]:
    a masked negative gets neither probability nor smoothing."""
    gen = torch.Generator().manual_seed(2)
    h = torch.randn(40, 8, generator=gen, requires_grad=True)
    w = torch.randn(21, 8, generator=gen, requires_grad=True)
    tgt, neg = torch.randint(1, 21, (40,), generator=gen), torch.randint(1, 21, (30,), generator=gen)
    pos = (h * w[tgt]).sum(-1, keepdim=True)
    valid = torch.cat([torch.ones(40, 1, dtype=torch.bool), neg[None, :] != tgt[:, None]], 1)
    logp = torch.cat([pos, h @ w[neg].t()], 1).masked_fill(~valid, float("-inf")).log_softmax(1)
    q = F.one_hot(torch.zeros(40, dtype=torch.long), 31) * 0.8 + 0.2 * valid / valid.sum(1, keepdim=True)
    want = -(q * logp.masked_fill(~valid, 0)).sum(1).mean()
    got = sampled_softmax(h, tgt, w, neg, label_smoothing=0.2)
    assert torch.isclose(got, want, rtol=1e-6)
    for a, b in zip(torch.autograd.grad(want, [h, w]), torch.autograd.grad(got, [h, w])):
        assert torch.allclose(a, b, atol=1e-6)


def test_target_batches_and_sampled_loss_train(one_thread):
    scene = short_scene()
    torch.manual_seed(0)
    model = build_model("sasrec", num_items=scene.num_items, max_len=20)
    res = fit(model, scene, TrainConfig(epochs=3, max_len=20, batch_targets=64, loss="sampled", negatives=8,
                                        progress=False, lr=3e-3))
    assert res.history["loss"].iloc[-1] < res.history["loss"].iloc[0]


def test_negatives_covering_the_catalogue_train_on_the_full_softmax(one_thread):
    """--negatives at least the number of items: every item once, so the first epoch's loss is
    that of --loss ce (same seed, same batches) and no item is drawn twice."""
    scene = short_scene()
    losses = {}
    for name, extra in (("ce", {"loss": "ce"}), ("all", {"loss": "sampled", "negatives": 10**6})):
        torch.manual_seed(0)
        model = build_model("sasrec", num_items=scene.num_items, max_len=20, dropout=0.0, attn_dropout=0.0)
        res = fit(model, scene, TrainConfig(epochs=1, max_len=20, batch_targets=64, progress=False, lr=1e-9, ema=0.0,
                                            clip=None, **extra))
        losses[name] = res.history["loss"].iloc[0]
    assert losses["all"] == pytest.approx(losses["ce"], rel=1e-4)


class _NegativesSeen:
    """An extra loss of zero that notes how many negatives each step scored, epoch by epoch."""
    handles_padding_cut = True

    def __init__(self):
        self.epochs = [[]]

    def __call__(self, model, batch, states, logits):
        self.epochs[-1].append(batch["negatives"].numel())
        return states[-1].sum() * 0.0

    def end_epoch(self, row):
        self.epochs.append([])


@pytest.mark.parametrize("negatives", [8, 10**6])
def test_negatives_warmup_scores_a_quarter_of_the_negatives_first(negatives, one_thread):
    """--negatives-warmup 2: the first two epochs draw a quarter of the negatives (of the catalogue
    when --negatives covers it), then every step scores them all."""
    scene = short_scene()
    torch.manual_seed(0)
    model = build_model("sasrec", num_items=scene.num_items, max_len=20)
    seen = _NegativesSeen()
    fit(model, scene, TrainConfig(epochs=3, max_len=20, batch_targets=64, loss="sampled", negatives=negatives,
                                  negatives_warmup=2, progress=False), extra_loss=seen, log=seen.end_epoch)
    full = min(negatives, scene.num_items)
    assert [set(e) for e in seen.epochs[:3]] == [{full // 4}, {full // 4}, {full}]


def test_batched_seen_masking_equals_masking_user_by_user(one_thread):
    scene = synthetic_scene(num_users=50, num_items=40, seq_len=30, seed=5)
    torch.manual_seed(0)
    model = build_model("gru4rec", num_items=scene.num_items, max_len=20)
    from recnb.data import eval_inputs

    hist, target = eval_inputs(scene, "test", 20)
    scores = score_users(model, hist)
    for u, items in enumerate(seen_items(scene, "test")):
        items = items[items != int(target[u])]
        scores[u, torch.as_tensor(items)] = float("-inf")
    want = ranks_from_scores(scores, target)
    got = user_ranks(model, scene, "test", exclude_seen=True, max_len=20, batch_size=7)
    assert torch.equal(got, want)
    assert not torch.equal(user_ranks(model, scene, "test", max_len=20, batch_size=7), want)  # masking mattered
    assert np.array_equal(user_ranks(model, scene, "valid", max_len=20), user_ranks(model, scene, "valid", max_len=20, batch_size=3))


def test_evaluation_cut_to_each_batch_history_gives_the_same_ranks(one_thread):
    scene = synthetic_scene(num_users=60, num_items=30, seq_len=30, seed=6)
    model = perturbed("sasrec")
    for ex in (False, True):
        full = user_ranks(model, scene, "test", exclude_seen=ex, max_len=20, batch_size=8)
        cut = user_ranks(model, scene, "test", exclude_seen=ex, max_len=20, batch_size=8, cut_padding=True)
        assert torch.equal(full, cut)


def sparse_scene(num_items=6000, users=300, seed=0):
    """A large catalogue and short histories (median 5): the shape of the Amazon files."""
    from recnb.data import Scene

    rng = np.random.default_rng(seed)
    seqs = [rng.choice(np.arange(1, num_items + 1), size=int(rng.integers(4, 7)), replace=False) for _ in range(users)]
    return Scene("my-category", seqs, ["<pad>"] + [str(i) for i in range(1, num_items + 1)], [str(u) for u in range(users)])


def test_the_recipe_follows_the_scene_statistics_not_its_name():
    from recnb.train import RECIPES, recipe, scene_kind

    kind, why = scene_kind(sparse_scene())
    assert kind == "large-sparse" and "6,000 items" in why and "median history 5" in why
    amazon = recipe("sasrec", sparse_scene())
    assert amazon == recipe("sasrec", "large-sparse")
    assert amazon.batch_targets > 0 and amazon.loss == "sampled" and amazon.negatives == 4096
    from recnb.train import recipe_model_config

    assert recipe_model_config("sasrec", sparse_scene()) == {"norm": "pre"} and recipe_model_config("sasrec") == {}
    assert recipe("sasrec", sparse_scene(), loss="ce").loss == "ce"  # flags win
    dense = synthetic_scene(num_users=50, num_items=6000, seq_len=30)  # many items, long histories
    small = sparse_scene(num_items=400)  # short histories, a small catalogue
    for scene in (None, "default", dense, small):
        cfg = recipe("sasrec", scene)
        assert cfg.batch_targets == 0 and cfg.loss == "ce"
        assert {k: getattr(cfg, k) for k in RECIPES["sasrec"]} == RECIPES["sasrec"]
    with pytest.raises(ConfigError, match="unknown kind of scene 'beauty'"):
        recipe("sasrec", "beauty")  # a name says nothing: give the scene


@pytest.mark.parametrize("name", BASE_MODELS)
def test_every_large_sparse_recipe_trains_on_cut_batches_of_targets(name):
    """On short histories most of a window is padding: each model the large-sparse kind has a
    recipe for counts targets and runs cut batches (GRU4Rec and NextItNet through ``mask_padding``)."""
    from recnb.train import SCENE_RECIPES, recipe, recipe_model_config

    if name not in SCENE_RECIPES["large-sparse"]:
        pytest.skip(f"{name} has no large-sparse recipe")
    cfg = recipe(name, sparse_scene())
    assert cfg.batch_targets > 0 and cfg.loss == "sampled" and cfg.negatives == 4096
    model = build_model(name, num_items=50, max_len=cfg.max_len, **recipe_model_config(name, sparse_scene()))
    assert model.cuts_padding


def test_distillation_losses_read_cut_batches_as_full_ones(one_thread):
    """Both extra losses give the same terms on a batch cut of its leading padding (read
    from ``batch["offset"]``) as on the full-width batch, so fit keeps cutting with them."""
    from recnb.adarec.pipeline import DistillConfig, distillation_loss
    from recnb.dllm2rec.artifacts import TeacherArtifacts, scene_rows
    from recnb.dllm2rec.pipeline import DLLM2RecConfig, DLLM2RecLoss
    from recnb.kd import TeacherCache

    scene = short_scene()
    w = train_windows(scene, 20)
    off = int((w.inputs != 0).float().argmax(1).min())
    assert off > 0
    teacher, student = perturbed("nextitnet"), perturbed("sasrec")
    cache = TeacherCache(teacher, w)
    assert cache.states.shape[0] == int((w.targets > 0).sum())  # only valid positions are stored
    rows = scene_rows(w, scene)
    ranks = torch.randint(1, 31, (len(rows), 10), generator=torch.Generator().manual_seed(0))
    art = TeacherArtifacts(None, ranks, torch.sort(torch.rand(len(rows), 10), 1).values)
    idx = torch.randperm(len(w), generator=torch.Generator().manual_seed(1))[:16]
    idx = idx[(w.inputs[idx] != 0).float().argmax(1).argsort()]  # any order of windows
    full = {"index": idx, "inputs": w.inputs[idx], "targets": w.targets[idx]}
    off = int((w.inputs[idx] != 0).float().argmax(1).min())
    cut = {"index": idx, "inputs": w.inputs[idx, off:], "targets": w.targets[idx, off:], "offset": off}
    for make in (lambda: distillation_loss(cache, student, DistillConfig(width=64)),
                 lambda: DLLM2RecLoss(DLLM2RecConfig(consistency=False), rows, art, seed=0)):
        assert make().handles_padding_cut
        terms = []
        for batch in (full, cut):
            torch.manual_seed(0)
            loss = make()  # fresh: the EMD map, its layer weights and the negatives' generator start alike
            with torch.no_grad():
                states = student(batch["inputs"], offset=batch.get("offset", 0))
                _, logits = rec_loss(student, states[-1], batch)
                terms.append(loss(student, batch, states, logits))
        for k in terms[0]:
            assert torch.isclose(terms[0][k], terms[1][k], rtol=1e-4, atol=1e-6), k
    # and fit cuts a SASRec student's batches when it distils
    seen = []
    loss = distillation_loss(cache, student, DistillConfig(width=64))
    def spy(model, batch, states, logits):
        seen.append(batch["offset"])
        return loss(model, batch, states, logits)
    spy.handles_padding_cut = True
    fit(student.train(), scene, TrainConfig(epochs=1, batch_targets=40, max_len=20, device="cpu", progress=False),
        extra_loss=spy, windows=w)
    assert max(seen) > 0


@pytest.mark.parametrize("base", ["sasrec", "gru4rec"])
def test_an_embedding_distilled_student_cuts_padding_as_its_student_does(base, one_thread):
    from recnb.dllm2rec.pipeline import DLLM2RecConfig, build_student

    torch.manual_seed(0)
    model = build_student(base, 30, 20, teacher=torch.randn(30, 12), cfg=DLLM2RecConfig()).eval()
    assert type(model).__name__ == "EmbeddingDistilledStudent" and model.cuts_padding == build_model(base, num_items=30).cuts_padding
    if model.cuts_padding:
        w = train_windows(short_scene(), 20)
        off = int((w.inputs != 0).float().argmax(1).min())
        with torch.no_grad():
            assert torch.allclose(model(w.inputs)[-1][:, off:], model(w.inputs[:, off:], offset=off)[-1], atol=1e-5)
