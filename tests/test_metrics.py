"""Metrics against rankings computed by hand."""

import math

import numpy as np
import pytest
import torch

from recnb.metrics import (
    flatten,
    metrics_from_ranks,
    paired_difference,
    ranks_from_scores,
    sampled_candidates,
    user_ndcg,
)


def test_ranks_from_scores_by_hand():
    scores = torch.tensor([[0.0, 0.9, 0.1, 0.5, 0.3], [0.0, 0.1, 0.2, 0.3, 0.4]])
    # row 0: target 3 (0.5) has one item above (0.9) -> rank 1; row 1: target 1 (0.1) has 0.2, 0.3, 0.4 above -> rank 3
    assert ranks_from_scores(scores, torch.tensor([3, 1])).tolist() == [1, 3]


def test_metrics_by_hand():
    ranks = [0, 1, 4, 9, 30]
    df = metrics_from_ranks(ranks, ks=(5, 10))
    assert df.loc[5, "HR"] == pytest.approx(3 / 5)
    assert df.loc[10, "HR"] == pytest.approx(4 / 5)
    ndcg5 = (1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5
    assert df.loc[5, "NDCG"] == pytest.approx(ndcg5)
    assert df.loc[10, "NDCG"] == pytest.approx(ndcg5 + 1 / math.log2(11) / 5)
    assert df.loc[10, "MRR"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10) / 5)
    flat = flatten(df)
    assert set(flat) == {f"{m}@{k}" for m in ("HR", "NDCG", "MRR") for k in (5, 10)}


def test_sampled_candidates_avoid_seen_items():
    import numpy as np

    seen = [np.array([1, 2, 3]), np.array([4])]
    cand = sampled_candidates(seen, torch.tensor([5, 6]), num_items=300, n=100, seed=1)
    assert cand.shape == (2, 101) and cand[:, 0].tolist() == [5, 6]
    assert not set(cand[0, 1:].tolist()) & {0, 1, 2, 3, 5}
    assert len(set(cand[1, 1:].tolist())) == 100
    assert torch.equal(cand, sampled_candidates(seen, torch.tensor([5, 6]), 300, 100, seed=1))


def test_ties_count_against_the_target_and_nan_ranks_last():
    nan, inf = float("nan"), float("inf")
    scores = torch.tensor([
        [-inf, 0.5, 0.5, 0.5, 0.1],  # target 1 tied with two others -> both count against it: rank 2
        [-inf, 0.3, 0.3, 0.3, 0.3],  # all equal (a collapsed model): last of the 4 real items
        [-inf, nan, nan, nan, nan],  # all NaN: last
        [-inf, 0.2, nan, inf, 0.1],  # NaN and +inf candidates never beat a finite target: rank 1 (0.2 > 0.1)
        [-inf, 0.2, 0.9, 0.1, nan],  # a NaN target ranks last among all 5 columns
    ])
    targets = torch.tensor([1, 2, 3, 4, 4])
    assert ranks_from_scores(scores, targets).tolist() == [2, 3, 4, 1, 4]
    worst = metrics_from_ranks(ranks_from_scores(torch.zeros(3, 50), torch.tensor([1, 7, 49])), ks=(10,))
    assert worst.loc[10, "HR"] == 0 and worst.loc[10, "NDCG"] == 0 and worst.loc[10, "MRR"] == 0


def test_a_collapsed_model_gets_the_worst_metrics_end_to_end():
    from recnb.data import synthetic_scene
    from recnb.evaluation import evaluate
    from recnb.models import build_model

    scene = synthetic_scene(num_users=40, num_items=30, seq_len=10, seed=1)
    model = build_model("gru4rec", num_items=scene.num_items, max_len=10)
    with torch.no_grad():
        model.item_embedding.weight.zero_()  # every item scores 0: all tied
    assert evaluate(model, scene, "test").loc[10, "HR"] == 0.0
    with torch.no_grad():
        model.item_embedding.weight.fill_(float("nan"))
    assert evaluate(model, scene, "test").loc[10, "NDCG"] == 0.0


def test_user_ndcg_is_the_per_user_term_of_ndcg():
    ranks = torch.tensor([0, 1, 3, 9, 10, 500])
    assert np.allclose(user_ndcg(ranks), [1.0, 1 / np.log2(3), 1 / np.log2(5), 1 / np.log2(11), 0.0, 0.0])
    assert np.isclose(user_ndcg(ranks).mean(), metrics_from_ranks(ranks).loc[10, "NDCG"])


def test_paired_difference_pairs_users_and_averages_seeds():
    rng = np.random.default_rng(0)
    b = [torch.as_tensor(rng.integers(0, 30, 4000)) for _ in range(2)]
    better = [torch.clamp(x - 2, min=0) for x in b]  # every user ranks its item 2 places higher
    res = paired_difference(better, b, resamples=300)
    d = np.mean([user_ndcg(x) - user_ndcg(y) for x, y in zip(better, b)], axis=0)
    assert np.isclose(res["difference"], d.mean()) and res["users"] == 4000 and len(res["per_seed"]) == 2
    assert np.isclose(res["se"], d.std(ddof=1) / np.sqrt(len(d)), rtol=0.15)  # the bootstrap agrees with the formula
    assert res["significant"] and res["every_seed"] and res["z"] > 2
    same = paired_difference(b, b, resamples=50)
    assert same["difference"] == 0.0 and not same["significant"] and not same["every_seed"]
    with pytest.raises(ValueError, match="same number"):
        paired_difference(b, b[:1])


def test_ranks_in_place_equal_ranks_on_a_copy_with_ties_and_non_finite_scores():
    """The in-place path (evaluation's: no second users x items matrix) counts exactly as the
    copying one, a target at NaN, +inf or -inf included; only its buffer is spent."""
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (64, 30), generator=gen).float()  # many ties
    bad = torch.rand(64, 30, generator=gen)
    scores[bad < 0.05] = float("nan")
    scores[(bad >= 0.05) & (bad < 0.1)] = float("inf")
    scores[(bad >= 0.1) & (bad < 0.15)] = float("-inf")
    targets = torch.randint(0, 30, (64,), generator=gen)
    clean = torch.nan_to_num(scores, nan=float("-inf"), posinf=float("-inf"))
    want = (clean >= clean.gather(1, targets[:, None])).sum(1) - 1  # the definition
    assert torch.equal(ranks_from_scores(scores, targets), want)
    kept = scores.clone()
    assert torch.equal(ranks_from_scores(scores, targets), want) and torch.equal(scores.isnan(), kept.isnan())
    assert torch.equal(ranks_from_scores(scores.clone(), targets, inplace=True), want)
