"""Training and evaluation: determinism, checkpoints, protocols, a real run."""

import pandas as pd
import pytest
import torch

from recnb.checkpoint import load_checkpoint, read_torch_file, save_checkpoint, write_torch_file
from recnb.data import load_scene, synthetic_scene, train_windows
from recnb.errors import ConfigError
from recnb.evaluation import Evaluation, evaluate, popularity_ranks, user_ranks
from recnb.metrics import PROTOCOLS, flatten, metrics_from_ranks
from recnb.models import build_model
from recnb.train import TrainConfig, fit, reorder_windows, seed_everything


@pytest.fixture(scope="module")
def scene():
    return synthetic_scene(num_users=150, num_items=60, seq_len=30, seed=0)


def quick(model_name, scene, seed=0, epochs=3, loss_kind="ce", **kw):
    seed_everything(seed)  # the initial weights come from the seed too
    model = build_model(model_name, num_items=scene.num_items, max_len=20, **kw)
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=3e-3, seed=seed, max_len=20, progress=False, device="cpu", loss=loss_kind)
    return fit(model, scene, cfg)


def test_same_seed_same_metrics(scene):
    a = quick("sasrec", scene, seed=7)
    b = quick("sasrec", scene, seed=7)
    assert flatten(evaluate(a.model, scene)) == flatten(evaluate(b.model, scene))
    assert a.history["loss"].tolist() == b.history["loss"].tolist()
    c = quick("sasrec", scene, seed=8)
    assert c.history["loss"].tolist() != a.history["loss"].tolist()


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "nextitnet", "caser"])
def test_every_model_learns_the_synthetic_scene(scene, name):
    result = quick(name, scene, epochs=6)
    model_ndcg = evaluate(result.model, scene).loc[10, "NDCG"]
    pop_ndcg = metrics_from_ranks(popularity_ranks(scene)).loc[10, "NDCG"]
    assert model_ndcg > pop_ndcg + 0.05
    assert result.history["loss"].iloc[-1] < result.history["loss"].iloc[0]


def test_bce_loss_learns(scene):
    result = quick("gru4rec", scene, epochs=3, loss_kind="bce")
    assert result.history["loss"].iloc[-1] < result.history["loss"].iloc[0]


def test_early_stopping_keeps_best_epoch(scene, monkeypatch):
    import recnb.train as train_mod

    scores = iter([0.30, 0.20, 0.25, 0.90])  # nothing improves after epoch 0 (the 0.90 is never reached)
    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: {"NDCG@10": next(scores)})
    monkeypatch.setattr(train_mod, "flatten", lambda d: d)
    model = build_model("gru4rec", num_items=scene.num_items, max_len=20)
    cfg = TrainConfig(epochs=50, patience=2, batch_size=64, max_len=20, progress=False)
    result = fit(model, scene, cfg)
    assert result.best_epoch == 0 and result.epochs == 3


def test_lr_plateau_halves_the_lr_once_validation_stalls(scene, monkeypatch):
    import recnb.train as train_mod

    scores = iter([0.30, 0.20, 0.31, 0.10, 0.10, 0.10])  # better, worse, better, then stalled
    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: {"NDCG@10": next(scores)})
    monkeypatch.setattr(train_mod, "flatten", lambda d: d)
    model = build_model("gru4rec", num_items=scene.num_items, max_len=20)
    cfg = TrainConfig(epochs=6, batch_size=64, lr=1e-3, lr_plateau=2, patience=100, max_len=20, progress=False, device="cpu")
    lrs = fit(model, scene, cfg).history["lr"].tolist()
    # the lr used in each epoch: halved after two epochs without a better score, not after one
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 5e-4])


def test_lr_plateau_starts_watching_after_the_warmup(scene, monkeypatch):
    import recnb.train as train_mod

    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: {"NDCG@10": 0.1})  # never better after epoch 0
    monkeypatch.setattr(train_mod, "flatten", lambda d: d)
    model = build_model("gru4rec", num_items=scene.num_items, max_len=20)
    cfg = TrainConfig(epochs=5, batch_size=64, lr=1e-3, lr_plateau=1, warmup=3, patience=100, max_len=20,
                      progress=False, device="cpu")
    lrs = fit(model, scene, cfg).history["lr"].tolist()
    # epochs 0-2 warm up to the full lr (no halving lost inside it); the plateau's first look is
    # epoch 2's end, its first stall epoch 3's end, so epoch 4 runs at half the lr
    assert lrs == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3, 5e-4])


def test_warmup_raises_the_lr_step_by_step_then_holds_it(scene):
    seed_everything(0)
    model = build_model("sasrec", num_items=scene.num_items, max_len=20)
    cfg = TrainConfig(epochs=3, batch_size=64, lr=1e-2, warmup=2, patience=100, max_len=20, progress=False, device="cpu")
    lrs = fit(model, scene, cfg).history["lr"].tolist()  # the lr of each epoch's last step
    assert lrs == pytest.approx([5e-3, 1e-2, 1e-2])  # halfway through the 2-epoch warm-up, then held
    with pytest.raises(ConfigError, match="warmup"):
        TrainConfig(warmup=-1)


def test_lr_decay_falls_to_zero_at_the_end_of_the_epochs(scene):
    import math

    from recnb.train import lr_factor

    # 2 warm-up steps, then cosine / linear over the remaining 8 of 10
    assert [lr_factor(s, 2, 10, "cosine") for s in (0, 1, 2, 6)] == pytest.approx([0.5, 1.0, 1.0, 0.5])
    assert lr_factor(9, 2, 10, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert [lr_factor(s, 0, 10, "linear") for s in (0, 5, 9, 12)] == pytest.approx([1.0, 0.5, 0.1, 0.0])
    assert lr_factor(7, 2, 10, "none") == 1.0
    seed_everything(0)
    model = build_model("gru4rec", num_items=scene.num_items, max_len=20)
    cfg = TrainConfig(epochs=4, batch_size=64, lr=1e-2, lr_decay="linear", patience=100, max_len=20, progress=False, device="cpu")
    result = fit(model, scene, cfg)
    steps = math.ceil(len(train_windows(scene, 20)) / 64)
    # the lr of each epoch's last step: (1 - (step / all steps)) x 1e-2
    expected = [1e-2 * (1 - ((e + 1) * steps - 1) / (4 * steps)) for e in range(4)]
    assert result.history["lr"].tolist() == pytest.approx(expected)
    with pytest.raises(ConfigError, match="lr_decay must be one of"):
        TrainConfig(lr_decay="step")
    with pytest.raises(ConfigError, match="choose one"):
        TrainConfig(lr_decay="cosine", lr_plateau=2)


def test_label_smoothing_spreads_the_target_over_real_items_only():
    import torch.nn.functional as F

    from recnb.train import rec_loss

    torch.manual_seed(0)
    model = build_model("gru4rec", num_items=5, max_len=4)
    out = torch.randn(2, 3, model.item_weights().shape[1])
    batch = {"targets": torch.tensor([[0, 2, 5], [1, 0, 3]])}
    plain, logits = rec_loss(model, out, batch)
    smooth, _ = rec_loss(model, out, batch, label_smoothing=0.1)
    assert torch.isfinite(smooth)  # the padding logit (-inf) gets no share
    real = logits[:, 1:].detach()
    tgt = torch.tensor([2, 5, 1, 3]) - 1
    logp = real.log_softmax(-1)
    by_hand = -(0.9 * logp.gather(1, tgt[:, None]).squeeze(1) + 0.1 * logp.mean(-1)).mean()
    assert smooth.item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert plain.item() == pytest.approx(F.cross_entropy(real, tgt).item(), rel=1e-5)
    with pytest.raises(ConfigError, match="label_smoothing"):
        TrainConfig(label_smoothing=0.1, loss="bce")


def test_weight_average_is_what_gets_validated_and_kept(scene):
    from recnb.train import WeightAverage

    model = build_model("gru4rec", num_items=scene.num_items, max_len=20)
    w = next(model.parameters())
    avg = WeightAverage(model, decay=0.5)
    start = w.detach().clone()
    with torch.no_grad():
        w.add_(1.0)
    avg.update()  # warm-up decay min(0.5, 2/11): shadow = start + (1 - 2/11) * 1
    with avg.swapped_in():
        assert torch.allclose(w, start + 9 / 11)
    assert torch.allclose(w, start + 1.0)  # the model's own weights come back

    seed_everything(0)
    model = build_model("sasrec", num_items=scene.num_items, max_len=20)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3, max_len=20, progress=False, device="cpu", ema=0.9)
    result = fit(model, scene, cfg)
    # the returned weights are the averaged ones that validation chose
    assert flatten(evaluate(result.model, scene, "valid"))["NDCG@10"] == pytest.approx(result.valid["NDCG@10"])
    with pytest.raises(ConfigError, match="ema must be in"):
        TrainConfig(ema=1.0)
    with pytest.raises(ConfigError, match="ema_warmup"):
        TrainConfig(ema=0.9, ema_warmup=0.5)


def test_weight_average_warmup_sets_how_far_back_it_reaches(scene):
    from recnb.train import WeightAverage

    model = build_model("gru4rec", num_items=scene.num_items, max_len=20)
    w = next(model.parameters())
    start = w.detach().clone()
    short, long = WeightAverage(model, decay=0.999), WeightAverage(model, decay=0.999, warmup=2)
    for _ in range(100):  # the weights move by 1 per step
        with torch.no_grad():
            w.add_(1.0)
        short.update()
        long.update()
    # decay (1 + t) / (2 + t) weighs all steps (init counted twice): the mean of 0, 0, 1, ..., 100
    with long.swapped_in():
        assert torch.allclose(w - start, torch.full_like(w, 5050 / 102))
    with short.swapped_in():  # (1 + t) / (10 + t): about the last tenth, far closer to 100
        assert bool(((w - start) > 85).all())

    late = WeightAverage(model, decay=0.999, warmup=2, start=50)
    for _ in range(100):
        with torch.no_grad():
            w.add_(1.0)
        late.update()
        if late.steps <= 50:  # before its start the average is the weights themselves
            assert torch.equal(late.shadow[0], w)
    # then the mean of steps 50 (counted twice, as the start) to 100, relative to step 100's weights
    with late.swapped_in():
        assert torch.allclose(w - start, torch.full_like(w, 100 + (50 + sum(range(50, 101))) / 52))
    with pytest.raises(ConfigError, match="ema_start"):
        TrainConfig(ema=0.9, ema_start=-1)


def test_a_killed_run_resumes_to_the_same_history_and_weights(scene, tmp_path):
    """Dropout (torch's RNG), window order (the generator), Adam moments, the weight average,
    the warm-up and the lr schedule all continue where they stopped."""

    def run(epochs, state):
        seed_everything(3)
        model = build_model("sasrec", num_items=scene.num_items, max_len=20)
        cfg = TrainConfig(epochs=epochs, batch_size=32, lr=3e-3, seed=3, max_len=20, progress=False, device="cpu",
                          ema=0.9, lr_plateau=1, warmup=1.5, patience=50)
        return fit(model, scene, cfg, state=state)

    straight = run(4, tmp_path / "a.pt")
    killed = run(2, tmp_path / "b.pt")  # as if killed after epoch 1
    assert len(killed.history) == 2
    resumed = run(4, tmp_path / "b.pt")
    cols = [c for c in straight.history.columns if c != "seconds"]
    pd.testing.assert_frame_equal(resumed.history[cols], straight.history[cols])
    assert resumed.best_epoch == straight.best_epoch
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert len(run(4, tmp_path / "b.pt").history) == 4  # a finished state trains nothing more


def test_a_decaying_lr_resumes_on_schedule_and_holds_its_epochs(scene, tmp_path):
    """With ``lr_decay`` the schedule spans ``epochs``, so a resumed run must keep them."""

    class Killed(Exception):
        pass

    def kill_at_epoch_1(row):
        if row["epoch"] == 1:
            raise Killed

    def run(state, epochs=3, log=None):
        seed_everything(5)
        model = build_model("sasrec", num_items=scene.num_items, max_len=20)
        cfg = TrainConfig(epochs=epochs, batch_size=32, lr=3e-3, seed=5, max_len=20, progress=False, device="cpu",
                          lr_decay="cosine", label_smoothing=0.1, patience=50)
        return fit(model, scene, cfg, state=state, log=log)

    straight = run(tmp_path / "a.pt")
    with pytest.raises(Killed):
        run(tmp_path / "b.pt", log=kill_at_epoch_1)  # the state holds epoch 0 only
    resumed = run(tmp_path / "b.pt")
    cols = [c for c in straight.history.columns if c != "seconds"]
    pd.testing.assert_frame_equal(resumed.history[cols], straight.history[cols])
    with pytest.raises(ConfigError, match="epochs"):
        run(tmp_path / "b.pt", epochs=5)


def test_resume_with_other_settings_is_a_config_error(scene, tmp_path):
    seed_everything(0)
    model = build_model("gru4rec", num_items=scene.num_items, max_len=20)
    cfg = TrainConfig(epochs=1, batch_size=32, lr=3e-3, max_len=20, progress=False, device="cpu")
    fit(model, scene, cfg, state=tmp_path / "s.pt")
    with pytest.raises(ConfigError, match="lr"):
        fit(model, scene, TrainConfig(**{**cfg.__dict__, "lr": 1e-3}), state=tmp_path / "s.pt")
    other = build_model("gru4rec", num_items=scene.num_items, max_len=20, hidden_size=16)
    with pytest.raises(ConfigError, match="hidden_size"):
        fit(other, scene, cfg, state=tmp_path / "s.pt")


def test_exclude_seen_validation_stops_and_keeps_weights_on_the_masked_metric(scene, tmp_path):
    """Under the Amazon protocol early stopping reads the metric the run reports: each epoch's
    validation masks the users' earlier items, and the kept weights score the best of them."""

    def run(exclude_seen, state=None):
        seed_everything(4)
        model = build_model("gru4rec", num_items=scene.num_items, max_len=20)
        cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3, seed=4, max_len=20, progress=False, device="cpu", patience=50)
        return fit(model, scene, cfg, state=state, exclude_seen=exclude_seen)

    masked, plain = run(True), run(False)
    assert masked.history["loss"].tolist() == plain.history["loss"].tolist()  # the same training
    for res, ex in ((masked, True), (plain, False)):
        kept = flatten(evaluate(res.model, scene, "valid", exclude_seen=ex))["NDCG@10"]
        assert kept == pytest.approx(res.history["valid_NDCG@10"].max(), abs=1e-12)
        assert res.valid["NDCG@10"] == pytest.approx(kept, abs=1e-12)
    # the scene repeats items, so the two protocols really differ
    assert (masked.history["valid_NDCG@10"] > plain.history["valid_NDCG@10"]).all()
    run(False, tmp_path / "s.pt")
    with pytest.raises(ConfigError, match="exclude_seen"):  # a best epoch chosen under the other protocol
        run(True, tmp_path / "s.pt")


def test_fit_validates_as_its_evaluation_says_and_resumes_a_state_of_before(scene, tmp_path):
    """``fit(evaluation=Evaluation(exclude_seen=True))`` validates masked, epoch for epoch as the
    ``exclude_seen=True`` keyword does; a state file records how it validated, and one saved
    before it recorded the protocol and the padding cut (full ranking, cut) still resumes."""

    def run(state=None, epochs=3, **how):
        seed_everything(4)
        model = build_model("gru4rec", num_items=scene.num_items, max_len=20)
        cfg = TrainConfig(epochs=epochs, batch_size=32, lr=3e-3, seed=4, max_len=20, progress=False, device="cpu",
                          patience=50)
        return fit(model, scene, cfg, state=state, **how)

    masked = Evaluation(exclude_seen=True)
    valued, keyword, plain = run(evaluation=masked), run(exclude_seen=True), run()
    pd.testing.assert_frame_equal(valued.history.drop(columns="seconds"), keyword.history.drop(columns="seconds"))
    assert (valued.history["valid_NDCG@10"] > plain.history["valid_NDCG@10"]).all()  # masked, not plain
    kept = flatten(evaluate(valued.model, scene, "valid", masked))["NDCG@10"]
    assert kept == pytest.approx(valued.history["valid_NDCG@10"].max(), abs=1e-12)

    run(tmp_path / "s.pt", epochs=2, exclude_seen=True)  # as if killed after epoch 1
    saved = read_torch_file(tmp_path / "s.pt", "recnb training state")
    assert {k: saved[k] for k in ("protocol", "exclude_seen", "cut_padding")} == \
        {"protocol": "full", "exclude_seen": True, "cut_padding": True}
    write_torch_file(tmp_path / "s.pt", {k: v for k, v in saved.items() if k not in ("protocol", "cut_padding")})
    resumed = run(tmp_path / "s.pt", evaluation=masked)
    pd.testing.assert_frame_equal(resumed.history.drop(columns="seconds"), valued.history.drop(columns="seconds"))
    with pytest.raises(ConfigError, match="protocol"):  # its best epoch was chosen by full ranking
        run(tmp_path / "s.pt", evaluation=Evaluation("sampled100", exclude_seen=True))
    with pytest.raises(ConfigError, match="not both"):
        run(evaluation=masked, exclude_seen=True)


def test_an_evaluation_value_and_the_older_keywords_rank_alike(scene):
    """``evaluate`` and ``user_ranks`` rank through one :class:`Evaluation`; the older calls'
    ``protocol`` / ``exclude_seen`` / ``cut_padding`` (keywords or in place) fold into it and
    give the same ranks and metrics, masked and sampled alike."""
    import recnb
    import recnb.runs

    model = quick("sasrec", scene, epochs=1).model
    ranked = {}
    for protocol in PROTOCOLS:
        for exclude_seen in (False, True):
            for cut in (True, False):
                ev = Evaluation(protocol, exclude_seen, cut_padding=cut)
                ranks = ranked[protocol, exclude_seen, cut] = user_ranks(model, scene, "test", ev)
                assert torch.equal(ranks, user_ranks(model, scene, "test", protocol=protocol, exclude_seen=exclude_seen,
                                                     cut_padding=cut))
                assert torch.equal(ranks, user_ranks(model, scene, "test", protocol, exclude_seen, cut_padding=cut))
                metrics = flatten(evaluate(model, scene, "test", ev))
                assert metrics == flatten(metrics_from_ranks(ranks))
                assert metrics == flatten(evaluate(model, scene, "test", protocol, exclude_seen, cut_padding=cut))
                assert metrics == flatten(evaluate(model, scene, protocol=protocol, exclude_seen=exclude_seen,
                                                   cut_padding=cut))
    assert not torch.equal(ranked["full", True, True], ranked["full", False, True])  # masking mattered
    assert not torch.equal(ranked["sampled100", False, True], ranked["full", False, True])
    assert flatten(evaluate(model, scene)) == flatten(evaluate(model, scene, "test", Evaluation()))
    with pytest.raises(ConfigError, match="not both"):
        evaluate(model, scene, "test", Evaluation(), exclude_seen=True)
    with pytest.raises(ConfigError, match="protocol must be one of full, sampled100"):
        evaluate(model, scene, protocol="sampled5")
    with pytest.raises(ConfigError, match="also must be one of"):
        Evaluation(also=("sampled5",))
    assert recnb.runs.Evaluation is recnb.Evaluation is Evaluation  # one class, whichever module names it


def test_recipe_gives_measured_settings_and_overrides_win():
    from recnb.train import RECIPES, recipe

    assert recipe("sasrec").context == RECIPES["sasrec"]["context"]
    assert recipe("gru4rec", lr=0.5).lr == 0.5 and recipe("gru4rec").batch_size == RECIPES["gru4rec"]["batch_size"]
    assert recipe("caser").batch_size == 32
    assert recipe("sasrec", max_len=20).context == RECIPES["sasrec"]["context"] * 20 // 50  # scales with the window
    assert recipe("sasrec", max_len=20, context=3).context == 3
    assert recipe("sasrec").label_smoothing == RECIPES["sasrec"]["label_smoothing"] > 0
    assert recipe("sasrec", loss="bce").label_smoothing == 0  # a softmax setting, not an error
    assert recipe("sasrec", loss="sampled").label_smoothing == RECIPES["sasrec"]["label_smoothing"]


def test_context_outside_the_window_is_a_config_error():
    with pytest.raises(ConfigError, match="context must be in"):
        TrainConfig(max_len=20, context=20)


def test_reorder_shuffles_one_span_and_keeps_each_window_a_window(scene):
    w = train_windows(scene, max_len=20, context=5)
    gen = torch.Generator().manual_seed(0)
    inputs, targets = reorder_windows(w.inputs, w.targets, 0.3, gen)
    before = torch.cat([w.inputs, w.targets[:, -1:]], 1)
    after = torch.cat([inputs, targets[:, -1:]], 1)
    assert torch.equal(before.sort(1).values, after.sort(1).values)  # the same items per window
    assert torch.equal(after.eq(0), before.eq(0))  # left padding stays where it was
    real = targets.ne(0)
    assert torch.equal(real, w.targets.ne(0))  # masked targets (padding, overlap) stay masked
    assert torch.equal(targets[:, :-1][real[:, :-1]], inputs[:, 1:][real[:, :-1]])  # target t = input t + 1
    moved = before.ne(after)
    assert moved.any()
    n = before.ne(0).sum(1)
    k = (0.3 * n).round().long().clamp(min=2).minimum(n)
    first = torch.where(moved.any(1), moved.float().argmax(1), 0)
    last = torch.where(moved.any(1), moved.shape[1] - 1 - moved.flip(1).float().argmax(1), 0)
    assert bool((last - first < k).all())  # every change lies inside one span of k items
    with pytest.raises(ConfigError, match="reorder"):
        TrainConfig(reorder=1.5)


def test_checkpoint_round_trip(scene, tmp_path):
    result = quick("nextitnet", scene, epochs=1)
    save_checkpoint(tmp_path / "m.pt", result.model, scene, extra={"note": 1})
    model, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["dataset"] == scene.name and meta["id_maps"]["item_ids"] == scene.item_ids
    assert meta["id_maps"]["titles"] == scene.titles and meta["extra"] == {"note": 1}
    assert torch.equal(user_ranks(model, scene), user_ranks(result.model.eval(), scene))


def test_protocols_and_exclude_seen(scene):
    model = quick("gru4rec", scene, epochs=1).model
    full = evaluate(model, scene, protocol="full")
    sampled = evaluate(model, scene, protocol="sampled100")
    assert isinstance(full, pd.DataFrame) and list(full.columns) == ["HR", "NDCG", "MRR"]
    assert (sampled["HR"] >= full["HR"] - 1e-9).all()  # 101 candidates are easier than all items
    masked = user_ranks(model, scene, exclude_seen=True)
    assert (masked <= user_ranks(model, scene)).all()


@pytest.mark.slow
def test_short_real_run_on_ml100k_beats_popularity(data_dir):
    scene = load_scene("ml-100k", data_dir)
    seed_everything(2020)
    model = build_model("gru4rec", num_items=scene.num_items, max_len=50)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False, device="cpu")
    assert len(train_windows(scene, 50)) > 2000
    fit(model, scene, cfg)
    ours = evaluate(model, scene).loc[10, "NDCG"]
    pop = metrics_from_ranks(popularity_ranks(scene)).loc[10, "NDCG"]
    assert ours > pop * 1.2, (ours, pop)
