"""Metrics against rankings computed by hand."""

import math

import pytest
import torch

from recnb.metrics import flatten, metrics_from_ranks, ranks_from_scores, sampled_candidates


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
