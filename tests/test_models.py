"""The model contract: causality, shapes, config round-trip, parameter counts."""

import pytest
import torch

from recnb.errors import ConfigError
from recnb.models import BASE_MODELS, build_model, model_class

N_ITEMS, L = 40, 12


def make(name):
    torch.manual_seed(0)
    extra = {"dropout": 0.0}
    if name in ("sasrec", "bsarec"):
        extra["attn_dropout"] = 0.0
    return build_model(name, num_items=N_ITEMS, max_len=L, **extra).eval()


@pytest.mark.parametrize("name", BASE_MODELS)
def test_future_items_never_change_past_outputs(name):
    model = make(name)
    seq = torch.randint(1, N_ITEMS + 1, (3, L))
    seq[0, :4] = 0  # left padding
    changed = seq.clone()
    t = 7
    changed[:, t + 1 :] = torch.randint(1, N_ITEMS + 1, (3, L - t - 1))
    with torch.no_grad():
        a, b = model(seq), model(changed)
    for ha, hb in zip(a, b):
        assert torch.allclose(ha[:, : t + 1], hb[:, : t + 1], atol=1e-5)
    assert not torch.allclose(a[-1][:, t + 1 :], b[-1][:, t + 1 :])  # and the future does change


@pytest.mark.parametrize("name", BASE_MODELS)
def test_contract_shapes_and_config_round_trip(name):
    model = make(name)
    states = model(torch.randint(0, N_ITEMS + 1, (2, L)))
    assert len(states) >= 2 and all(h.shape[:2] == (2, L) for h in states)
    assert states[0].shape[-1] == model.item_embedding.embedding_dim  # embedding output first
    logits = model.score(states[-1])
    assert logits.shape == (2, L, N_ITEMS + 1)
    cfg = model.config
    again = model_class(name).config_class.from_json(cfg.to_json())
    assert again == cfg
    assert model.num_params() > model.num_params(embeddings=False) > 0


@pytest.mark.parametrize("name", BASE_MODELS)
def test_last_output_is_the_last_state_of_forward(name):
    """Ranking reads ``last_output``; a model that computes it with less work (SASRec's last
    block on one query) must give the last position of ``forward``, padding cut or not."""
    model = make(name)
    seq = torch.randint(1, N_ITEMS + 1, (4, L))
    seq[:, :5] = 0
    seq[0, 5] = 3  # one row of 7 items; columns 0-4 are padding in every row
    with torch.no_grad():
        want = model(seq)[-1][:, -1]
        assert torch.allclose(model.last_output(seq), want, atol=1e-5)
        if model.cuts_padding:
            assert torch.allclose(model.last_output(seq[:, 5:], offset=5), want, atol=1e-5)


@pytest.mark.parametrize("name", ["sasrec", "bsarec"])
def test_pre_norm_blocks_are_causal_and_their_last_output_is_forwards(name):
    torch.manual_seed(0)
    model = build_model(name, num_items=N_ITEMS, max_len=L, norm="pre", dropout=0.0, attn_dropout=0.0).eval()
    seq = torch.randint(1, N_ITEMS + 1, (3, L))
    seq[:, :4] = 0
    changed = seq.clone()
    changed[:, 8:] = torch.randint(1, N_ITEMS + 1, (3, L - 8))
    with torch.no_grad():
        a, b = model(seq), model(changed)
        assert all(torch.allclose(x[:, :8], y[:, :8], atol=1e-5) for x, y in zip(a, b))
        assert torch.allclose(model.last_output(seq[:, 4:], offset=4), a[-1][:, -1], atol=1e-5)
    assert isinstance(model.final_norm, torch.nn.LayerNorm)  # the stack ends normalised
    with pytest.raises(ConfigError, match="norm must be post or pre"):
        build_model(name, num_items=N_ITEMS, norm="mid")


def test_sasrec_first_item_positions_make_padding_invisible():
    """With positions counted from the first real item (RecBole's way) left padding never
    changes a history's outputs; with slot positions (the default) it does."""
    torch.manual_seed(0)
    model = build_model("sasrec", num_items=30, max_len=8, positions="first_item").eval()
    items = torch.tensor([[4, 9, 2, 7, 5]])
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), items], 1)
    with torch.no_grad():
        assert torch.allclose(model(padded)[-1][:, 3:], model(items)[-1], atol=1e-5)
        future = padded.clone()
        future[0, -1] = 11  # causal too: a changed last item leaves every earlier output alone
        assert torch.allclose(model(future)[-1][:, :-1], model(padded)[-1][:, :-1], atol=1e-6)
        slot = build_model("sasrec", num_items=30, max_len=8).eval()
        assert slot.config.positions == "slot"
        slot.load_state_dict(model.state_dict())
        assert not torch.allclose(slot(padded)[-1][:, 3:], slot(items)[-1], atol=1e-5)
    with pytest.raises(ConfigError, match="positions"):
        build_model("sasrec", num_items=30, max_len=8, positions="relative")


@pytest.mark.parametrize("name", ["sasrec", "bsarec"])
def test_lag_positions_are_causal_and_see_only_how_long_ago(name):
    """``positions="lag"``: a history's outputs do not depend on where its window starts (left
    padding or a longer window), the future never reaches the past, the lag bias does count,
    and the last position's cheap read and a cut batch give ``forward``'s numbers."""
    torch.manual_seed(0)
    model = build_model(name, num_items=30, max_len=8, positions="lag", dropout=0.0, attn_dropout=0.0).eval()
    assert not hasattr(model, "position_embedding")
    with torch.no_grad():
        model.lag_bias.normal_()  # zeros at init: make every lag weigh differently
    items = torch.tensor([[4, 9, 2, 7, 5], [1, 3, 3, 8, 6]])
    padded = torch.cat([torch.zeros(2, 3, dtype=torch.long), items], 1)
    with torch.no_grad():
        out = model(padded)[-1]
        assert torch.allclose(out[:, 3:], model(items)[-1], atol=1e-5)
        later = model(torch.cat([items, torch.tensor([[11, 12], [13, 14]])], 1))[-1]
        assert torch.allclose(later[:, :5], out[:, 3:], atol=1e-5)  # what came after never counts
        assert torch.allclose(model.last_output(padded), out[:, -1], atol=1e-5)
        assert torch.allclose(model.last_output(padded[:, 3:], offset=3), out[:, -1], atol=1e-5)
        model.lag_bias.add_(torch.arange(8.0))
        assert not torch.allclose(model(padded)[-1][:, -1], out[:, -1], atol=1e-4)


def test_nextitnet_depth_and_exposed_layers():
    model = build_model("nextitnet", num_items=10, embedding_size=16, num_blocks=8, dilations=[1, 4], layer_every=2)
    assert len(model.blocks) == 16
    assert len(model(torch.ones(1, 5, dtype=torch.long))) == 1 + 8  # embedding, 7 pairs, final


def test_unknown_model_and_field():
    with pytest.raises(ConfigError, match="unknown model 'bert'"):
        build_model("bert", num_items=3)
    with pytest.raises(ConfigError, match="unknown field.*hiden_size"):
        build_model("sasrec", num_items=3, hiden_size=3)


def test_causal_conv_matches_left_padded_conv1d():
    import torch.nn.functional as F

    from recnb.models.nextitnet import CausalConv1d

    conv = CausalConv1d(8, 6, kernel=3, dilation=4)
    x = torch.randn(2, 20, 8)
    reference = conv.conv(F.pad(x.transpose(1, 2), (8, 0))).transpose(1, 2)
    assert torch.allclose(conv(x), reference, atol=1e-6)


def test_overlapping_windows_still_cover_each_target_once():
    from recnb.data import synthetic_scene, train_windows

    scene = synthetic_scene(num_users=20, num_items=30, seq_len=60, seed=1)
    for max_len, context in [(7, 3), (10, 5), (50, 10)]:
        w = train_windows(scene, max_len, context)
        for u, seq in enumerate(scene.sequences):
            mine = w.targets[w.users == u]
            assert sorted(mine[mine > 0].tolist()) == sorted(seq[1:-2].tolist())


def test_nextitnet_stochastic_depth_is_causal_and_off_at_eval():
    """``block_drop`` skips whole residual branches per sequence while training (deeper
    blocks more often); evaluation is deterministic and the model stays causal."""
    torch.manual_seed(0)
    model = build_model("nextitnet", num_items=N_ITEMS, max_len=L, num_blocks=4, block_drop=0.5)
    for block in model.blocks:
        torch.nn.init.constant_(block.alpha, 1.0)  # open the ReZero gates so branches matter
    assert [round(b.block_drop, 3) for b in model.blocks] == [0.062, 0.125, 0.188, 0.25, 0.312, 0.375, 0.438, 0.5]
    seq = torch.randint(1, N_ITEMS + 1, (64, L))
    model.train()
    with torch.no_grad():
        a, b = model(seq)[-1], model(seq)[-1]
        assert not torch.allclose(a, b)  # different branches were skipped
        changed = seq.clone()
        changed[:, 8:] = 1
        torch.manual_seed(1)
        x = model(seq)[-1]
        torch.manual_seed(1)
        y = model(changed)[-1]
        assert torch.allclose(x[:, :8], y[:, :8], atol=1e-5)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(seq)[-1], model(seq)[-1])
    with pytest.raises(ConfigError, match="block_drop"):
        build_model("nextitnet", num_items=3, block_drop=1.0)


def test_an_ensemble_is_one_model_whose_scores_are_the_members_sum(tmp_path):
    """The teacher of several seeds served as one: contract kept (states side by side, its
    own last_output), scores exactly the sum, and a checkpoint round trip."""
    from recnb.checkpoint import load_checkpoint, save_checkpoint
    from recnb.models.ensemble import Ensemble

    members = [make("sasrec"), make("gru4rec"),
               build_model("sasrec", num_items=N_ITEMS, max_len=L, num_layers=1, norm="pre").eval()]
    ensemble = Ensemble.of(members).eval()
    seq = torch.randint(1, N_ITEMS + 1, (3, L))
    seq[:, :3] = 0
    with torch.no_grad():
        want = sum(m.score(m(seq)[-1]) for m in members)
        assert torch.allclose(ensemble.score(ensemble(seq)[-1]), want, atol=1e-5)
        assert torch.allclose(ensemble.last_output(seq), ensemble(seq)[-1][:, -1], atol=1e-5)
        save_checkpoint(tmp_path / "e.pt", ensemble)
        again, _ = load_checkpoint(tmp_path / "e.pt")
        assert torch.equal(again.score(again(seq)[-1]), ensemble.score(ensemble(seq)[-1]))
    assert ensemble.num_params() == sum(m.num_params() for m in members)
    assert not ensemble.cuts_padding  # GRU4Rec reads padding
    with pytest.raises(ConfigError, match="different catalogues"):
        Ensemble.of([make("sasrec"), build_model("sasrec", num_items=N_ITEMS + 1)])


def test_a_weighted_ensemble_scores_the_weighted_sum_and_keeps_its_weights(tmp_path):
    from recnb.checkpoint import load_checkpoint, save_checkpoint
    from recnb.models.ensemble import Ensemble

    members = [make("sasrec"), make("bsarec"), make("nextitnet")]
    weights = [1.0, 0.5, 2.0]
    ensemble = Ensemble.of(members, weights).eval()
    seq = torch.randint(1, N_ITEMS + 1, (3, L))
    seq[:, :3] = 0
    with torch.no_grad():
        want = sum(w * m.score(m(seq)[-1]) for w, m in zip(weights, members))
        assert torch.allclose(ensemble.score(ensemble(seq)[-1]), want, atol=1e-5)
        assert torch.allclose(ensemble.score(ensemble.last_output(seq)), want[:, -1], atol=1e-5)
        assert torch.equal(ensemble(seq)[0], Ensemble.of(members).eval()(seq)[0])  # only the scored state is weighted
        save_checkpoint(tmp_path / "w.pt", ensemble)
        again, _ = load_checkpoint(tmp_path / "w.pt")
        assert again.config.weights == weights
        assert torch.allclose(again.score(again.last_output(seq)), want[:, -1], atol=1e-5)
    with pytest.raises(ConfigError, match="weights must be 3 finite numbers"):
        Ensemble.of(members, [1.0, -1.0, 1.0])
    with pytest.raises(ConfigError, match="weights must be 3 finite numbers"):
        Ensemble.of(members, [1.0, 1.0])


def test_build_model_with_a_seed_draws_the_same_initial_weights():
    from recnb.models import build_model

    a, b = (build_model("sasrec", num_items=30, hidden_size=16, max_len=8, seed=5) for _ in range(2))
    c = build_model("sasrec", num_items=30, hidden_size=16, max_len=8, seed=6)
    same = [torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values())]
    assert all(same)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_bsarec_filter_is_the_fft_low_pass_read_at_each_windows_last_position():
    """BSARec keeps the ``c`` lowest frequencies of a window and reads its last position; the
    causal kernel gives that read at every position, history before the window being zeros."""
    from recnb.models.bsarec import low_pass_kernel

    torch.manual_seed(0)
    window, bins, d = 10, 3, 4
    x = torch.randn(2, 7, d, dtype=torch.float64)  # shorter than the window: the rest is zeros
    got = torch.matmul(low_pass_kernel(window, bins).double()[:7, :7], x)
    for t in range(7):
        padded = torch.zeros(2, window, d, dtype=torch.float64)
        padded[:, window - t - 1 :] = x[:, : t + 1]
        spectrum = torch.fft.rfft(padded, dim=1, norm="ortho")
        spectrum[:, bins:] = 0
        want = torch.fft.irfft(spectrum, n=window, dim=1, norm="ortho")[:, -1]
        assert torch.allclose(got[:, t], want, atol=1e-10)


def test_bsarec_without_its_filter_is_sasrec_and_reads_only_its_window():
    torch.manual_seed(0)
    seq = torch.randint(1, N_ITEMS + 1, (3, L))
    seq[:, :4] = 0
    plain = build_model("sasrec", num_items=N_ITEMS, max_len=L, dropout=0.0, attn_dropout=0.0).eval()
    no_filter = build_model("bsarec", num_items=N_ITEMS, max_len=L, dropout=0.0, attn_dropout=0.0, filter_mix=0.0).eval()
    missing = no_filter.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all("sqrt_beta" in k or "norm_filter" in k for k in missing)
    with torch.no_grad():
        assert torch.allclose(no_filter(seq)[-1], plain(seq)[-1], atol=1e-6)
    with pytest.raises(ConfigError, match="filter_bins"):
        build_model("bsarec", num_items=N_ITEMS, max_len=L, filter_bins=L)
    # a history longer than its window (an ensemble with a wider member): only the last window counts
    short = build_model("bsarec", num_items=N_ITEMS, max_len=6, num_layers=1, dropout=0.0, attn_dropout=0.0,
                        filter_mix=1.0, filter_bins=2).eval()
    with torch.no_grad():
        assert torch.allclose(short(seq)[-1][:, -1], short(seq[:, -6:], offset=L - 6)[-1][:, -1], atol=1e-5)
