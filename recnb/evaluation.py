"""Scoring and full ranking for every model that meets the contract: the ranks every metric,
validation and report is built from.

Only what the ranking reads is computed: the last position's state (``last_output``), batches
cut to their longest history, one score buffer for all batches, ranks counted in place.
Under torchrun each process ranks its share of the users (``evaluate(..., group=...)``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from recnb.data import Scene, eval_inputs, seen_items, seen_matrix
from recnb.errors import ConfigError
from recnb.metrics import (
    DEFAULT_KS,
    PROTOCOLS,
    check_ks,
    metrics_from_ranks,
    ranks_from_scores,
    sampled_candidates,
)
from recnb.models import SeqRecModel


def check_model_scene(model, scene) -> None:
    """Refuse, in one line, a model that cannot score ``scene``'s items (wrong types included)."""
    if not isinstance(model, SeqRecModel):
        raise ConfigError(f"expected a recnb model (recnb.build_model), got {type(model).__name__}")
    if not isinstance(scene, Scene):
        raise ConfigError(f"expected a recnb Scene (recnb.load_scene), got {type(scene).__name__}")
    if model.config.num_items != scene.num_items:
        raise ConfigError(f"{model.name} was built for {model.config.num_items} items, scene '{scene.name}' has "
                          f"{scene.num_items}: build it with num_items=scene.num_items")


def item_logits(model: SeqRecModel, h: torch.Tensor) -> torch.Tensor:
    """Scores of every item at hidden states ``h`` (``(P, num_items + 1)``) with the padding id
    at -inf: what full-softmax losses, distillation and full ranking all read."""
    logits = model.score(h)
    logits[:, 0] = float("-inf")
    return logits


@torch.no_grad()
def score_users(model: SeqRecModel, histories: torch.Tensor, batch_size: int = 1024, offset: int = 0,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """Scores of every item for each left-padded history (rows on the model's device);
    ``offset``: columns of padding cut from the histories' left (``cuts_padding`` models).
    Only the last position's state is computed where the model can (``last_output``).
    ``out``: a float32 buffer of at least ``(len(histories), num_items + 1)`` that the scores
    are written into (a view of it is returned) where the model scores by dot product: a fresh
    matrix of users x items per batch costs more in page faults than the product itself."""
    model.eval()
    device = next(model.parameters()).device
    last = getattr(model, "last_output", None) or (lambda seq, off: (model(seq, offset=off) if off else model(seq))[-1][:, -1])
    if out is not None and len(histories) <= batch_size and model.scores_by_product:
        h = last(histories.to(device), offset).float()
        scores = torch.mm(h, model.item_weights().float().t(), out=out[: len(h)])
        scores[:, 0] = float("-inf")
        return scores
    parts = [item_logits(model, last(histories[b: b + batch_size].to(device), offset)).float()
             for b in range(0, len(histories), batch_size)]
    return (parts[0] if len(parts) == 1 else torch.cat(parts)) if parts else torch.zeros(0, model.config.num_items + 1)


@torch.no_grad()
def user_ranks(
    model: SeqRecModel,
    scene: Scene,
    split: str = "test",
    protocol: str = "full",
    exclude_seen: bool = False,
    max_len: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    cut_padding: bool = True,
    users: torch.Tensor | None = None,
) -> torch.Tensor:
    """0-based rank of each user's held-out item (the unit every metric is built from).

    ``users``: indices of the users to rank (one process's share under torchrun), else all.
    Users go by history length and each batch is cut to its longest history where the model
    ``cuts_padding`` (the same numbers up to float rounding, a fraction of the work on short
    histories; ``cut_padding=False`` keeps the full window). Each batch's scores are ranked in
    place: no second matrix of users x items."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    check_model_scene(model, scene)
    max_len = max_len or model.config.max_len
    hist, target = eval_inputs(scene, split, max_len)
    users = torch.arange(len(hist)) if users is None else torch.as_tensor(users, dtype=torch.long)
    cand = None
    if protocol == "sampled100":
        cand = sampled_candidates(seen_items(scene, split), target, scene.num_items, 100, seed)[users]
    hist, target = hist[users], target[users]
    cut = cut_padding and model.cuts_padding
    order = torch.argsort(hist.ne(0).sum(1), stable=True) if cut else torch.arange(len(hist))
    ranks = torch.zeros(len(hist), dtype=torch.long)
    device = next(model.parameters()).device
    buffer = torch.empty(min(batch_size, len(hist)), model.config.num_items + 1, device=device)  # one for all batches
    for b in range(0, len(hist), batch_size):
        idx = order[b: b + batch_size]
        h = hist[idx]
        off = h.shape[1] - int(h.ne(0).sum(1).max()) if cut else 0
        scores = score_users(model, h[:, off:], batch_size, offset=off, out=buffer)
        tgt = target[idx].to(scores.device)
        if cand is not None:
            ranks[idx] = ranks_from_scores(scores.gather(1, cand[idx].to(scores.device)), torch.zeros_like(tgt)).cpu()
            continue
        if exclude_seen:
            mask_seen(scores, scene, split, users[idx], tgt)
        ranks[idx] = ranks_from_scores(scores, tgt, inplace=True).cpu()
    return ranks


def mask_seen(scores: torch.Tensor, scene: Scene, split: str, users: torch.Tensor, target: torch.Tensor) -> None:
    """Set, in place, each of ``users``' earlier items to -inf in their rows of ``scores``,
    except the held-out ``target`` itself: the Amazon protocol (``exclude_seen``)."""
    seen = seen_matrix(scene, split, users).to(scores.device)
    seen = seen.masked_fill(seen == target[:, None], 0)  # column 0 (padding) is -inf already
    scores.scatter_(1, seen, float("-inf"))  # one scatter for the whole batch


def evaluate(
    model: SeqRecModel,
    scene: Scene,
    split: str = "test",
    protocol: str = "full",
    exclude_seen: bool = False,
    ks=DEFAULT_KS,
    max_len: int | None = None,
    seed: int = 0,
    cut_padding: bool = True,
    group=None,
) -> pd.DataFrame:
    """HR/NDCG/MRR at each k as a DataFrame (rows k, columns metrics).

    ``group``: the processes of a torchrun job (``recnb.distributed.current()``): each ranks
    its share of the users (``user_ranks(users=...)``) and the ranks are gathered, so every
    process returns the same metrics as one process ranking all users."""
    ks = check_ks(ks, scene.num_items)
    share = group.share(len(scene.sequences)) if group is not None else None
    ranks = user_ranks(model, scene, split, protocol, exclude_seen, max_len, seed, cut_padding=cut_padding, users=share)
    if group is not None:
        ranks = group.gather(ranks, len(scene.sequences))
    return metrics_from_ranks(ranks, ks)


def popularity_ranks(scene: Scene, split: str = "test") -> torch.Tensor:
    """Ranks under "recommend the most popular training items": the floor to beat."""
    cut = 2 if split == "valid" else 1
    counts = np.bincount(np.concatenate([s[: len(s) - 2] for s in scene.sequences]), minlength=scene.num_items + 1)
    scores = torch.as_tensor(counts, dtype=torch.float64).repeat(scene.num_users, 1)
    scores[:, 0] = -1
    target = torch.as_tensor([s[len(s) - cut] for s in scene.sequences])
    return ranks_from_scores(scores, target)
