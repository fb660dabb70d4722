"""Ranking metrics: full ranking over all items (default) or the sampled-100 protocol.

Ranks are 0-based: the number of other candidates scored at least as high as the true item.
Ties count *against* the true item, so a model that scores every item alike (a collapsed
model) ranks its target last, never first; a NaN or +inf score counts as -inf, so a broken
score ranks last too. HR@k = rank < k, NDCG@k = 1/log2(rank + 2), MRR@k = 1/(rank + 1),
each 0 beyond k.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from recnb.errors import ConfigError

DEFAULT_KS = (5, 10, 20)
PROTOCOLS = ("full", "sampled100")


def ranks_from_scores(scores: torch.Tensor, targets: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """0-based rank of each row's target among the row's candidates (ties and non-finite
    scores against the target: see the module docstring). ``inplace`` uses ``scores`` as
    the work buffer (its values are lost): no allocation of another matrix of its size,
    which on a catalogue of 12k items costs more than the counting itself."""
    scores = scores.nan_to_num_(nan=float("-inf"), posinf=float("-inf")) if inplace else \
        torch.nan_to_num(scores, nan=float("-inf"), posinf=float("-inf"))
    true = scores.gather(1, targets.view(-1, 1).to(scores.device))
    # s - t >= 0 exactly where s >= t for a finite t (IEEE subtraction keeps the sign; -inf - t is -inf);
    # a target at -inf is at or below every candidate: last, all the others ahead of it. The 0/1
    # floats are summed as floats (exact below 2^24 candidates; a sum into int64 is 20x slower)
    ranks = scores.sub_(true).ge_(0).sum(1).long() - 1
    return torch.where(true[:, 0].isinf(), scores.shape[1] - 1, ranks)


def check_ks(ks, num_items: int | None = None) -> tuple[int, ...]:
    """The cut-offs as a tuple of positive integers (one int allowed), refused in one line
    otherwise. A catalogue of fewer than two items is refused (nothing to rank); a cut-off at
    or above the catalogue size is flagged with a warning: every item is then inside the top
    k, so HR@k is 1 whatever the model does."""
    ks = (ks,) if isinstance(ks, int) and not isinstance(ks, bool) else ks
    try:
        ks = tuple(ks)
    except TypeError:
        raise ConfigError(f"ks: expected cut-offs such as (5, 10, 20), got {ks!r}") from None
    if not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise ConfigError(f"ks: expected positive whole cut-offs such as (5, 10, 20), got {ks!r}")
    if num_items is not None and num_items < 2:
        raise ConfigError(f"a catalogue of {num_items} item(s) has nothing to rank: every metric would be perfect")
    if num_items is not None and max(ks) >= num_items:
        warnings.warn(f"cut-off {max(ks)} is at or above the catalogue size ({num_items} items): every item is in "
                      f"the top {max(ks)}, so HR@{max(ks)} is 1 whatever the model", stacklevel=3)
    return ks


def metrics_from_ranks(ranks, ks=DEFAULT_KS) -> pd.DataFrame:
    """HR, NDCG and MRR at each k (rows) from 0-based ranks."""
    r = torch.as_tensor(ranks, dtype=torch.float64)
    rows = {}
    for k in ks:
        hit = r < k
        rows[k] = {
            "HR": hit.double().mean().item(),
            "NDCG": torch.where(hit, 1.0 / torch.log2(r + 2), torch.zeros_like(r)).mean().item(),
            "MRR": torch.where(hit, 1.0 / (r + 1), torch.zeros_like(r)).mean().item(),
        }
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "k"
    return df


def flatten(df: pd.DataFrame) -> dict:
    """``{"NDCG@10": 0.07, ...}`` from the metrics table."""
    return {f"{m}@{k}": float(df.loc[k, m]) for k in df.index for m in df.columns}


def sampled_candidates(seen: list[np.ndarray], targets: torch.Tensor, num_items: int, n: int = 100, seed: int = 0) -> torch.Tensor:
    """Per user: the target first, then ``n`` random items the user never interacted with
    (fewer where the catalogue has fewer; the rest stays 0, the padding item)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((len(seen), n + 1), np.int64)
    for u, items in enumerate(seen):
        banned = np.zeros(num_items + 1, bool)
        banned[items] = True
        banned[0] = banned[int(targets[u])] = True
        allowed = np.flatnonzero(~banned)
        out[u, 0] = targets[u]
        picks = rng.choice(allowed, size=min(n, len(allowed)), replace=False)
        out[u, 1 : 1 + len(picks)] = picks  # a tiny catalogue leaves 0s: padding never outranks
    return torch.as_tensor(out)


def user_ndcg(ranks, k: int = 10) -> np.ndarray:
    """Each user's NDCG@k from the 0-based rank of their held-out item (one relevant item:
    ``1 / log2(rank + 2)`` inside the top ``k``, else 0)."""
    r = np.asarray(ranks.cpu() if torch.is_tensor(ranks) else ranks, dtype=np.float64)
    return np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)


def paired_difference(a: list, b: list, k: int = 10, resamples: int = 2000, seed: int = 0) -> dict:
    """Is model ``a`` better than ``b`` on the same test users? ``a`` and ``b`` hold the
    users' ranks per seed (seed ``i`` of one paired with seed ``i`` of the other).

    Each user's difference in NDCG@k is averaged over the seeds; the standard error of its
    mean comes from a bootstrap over users (``resamples`` draws), so it holds whatever the
    distribution of the per-user differences. ``significant``: the mean difference is more
    than twice that standard error."""
    if len(a) != len(b) or not a:
        raise ValueError("paired_difference: give the same number (at least one) of seeds for both models")
    per_seed = [user_ndcg(x, k) - user_ndcg(y, k) for x, y in zip(a, b)]
    d = np.mean(per_seed, axis=0)
    rng = np.random.default_rng(seed)
    means = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(resamples)])
    se = float(means.std(ddof=1))
    diff = float(d.mean())
    return {"metric": f"NDCG@{k}", "difference": diff, "se": se, "z": diff / se if se > 0 else float("inf"),
            "per_seed": [float(x.mean()) for x in per_seed], "users": len(d), "resamples": resamples,
            "test": "bootstrap over test users of the seed-averaged per-user difference",
            "every_seed": bool(all(x.mean() > 0 for x in per_seed)), "significant": bool(diff > 2 * se)}
