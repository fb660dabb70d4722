"""Scoring and full ranking for every model that meets the contract: the ranks every metric,
validation and report is built from.

Only what the ranking reads is computed: the last position's state (``last_output``), batches
cut to their longest history, one score buffer for all batches, ranks counted in place.
Under torchrun each process ranks its share of the users (``evaluate(..., group=...)``).
How the held-out items are ranked (protocol, masking, padding cut) is one value, :class:`Evaluation`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

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


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """How held-out items are ranked, as one value that goes from a command's options to
    ``fit``'s validation, ``evaluate`` and a run's report: a protocol or masking chosen once
    reaches every place that ranks, instead of a flag each caller has to pass on.

    ``protocol``: ``full`` (every item) or ``sampled100`` (the held-out item among 100 sampled
    ones); ``exclude_seen``: each user's earlier items masked (the Amazon protocol);
    ``cut_padding``: batches cut to their longest history where the model can (the same numbers
    up to float rounding). A run (:func:`recnb.runs.run_model`) also reads ``also``, extra test
    protocols reported as ``test_<protocol>``, and ``test_scene``, whose test split it measures
    when it is not the training scene (official DLLM2Rec data keeps valid and test apart)."""

    protocol: str = "full"
    exclude_seen: bool = False
    _: dataclasses.KW_ONLY
    cut_padding: bool = True
    also: tuple[str, ...] = ()
    test_scene: Scene | None = None

    CHOICES: ClassVar[dict] = {"protocol": PROTOCOLS}
    # one line of help per field a command line sets: the options of every command that ranks are
    # generated from it (recnb.commands.common.add_evaluation_args)
    HELP: ClassVar[dict] = {
        "protocol": "full or sampled100",
        "exclude_seen": "mask each user's earlier items wherever this command ranks: validation (early stopping), "
                        "test, candidates and recommendations (the Amazon protocol)",
    }

    def __post_init__(self):
        also, choices = (self.also,) if isinstance(self.also, str) else tuple(self.also), self.CHOICES["protocol"]
        for name, value in (("protocol", self.protocol), *(("also", p) for p in also)):
            if value not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        object.__setattr__(self, "also", also)
        object.__setattr__(self, "exclude_seen", bool(self.exclude_seen))
        object.__setattr__(self, "cut_padding", bool(self.cut_padding))

    @classmethod
    def of(cls, evaluation: Evaluation | str | None = None, **loose) -> Evaluation:
        """``evaluation``, else the loose ``protocol`` / ``exclude_seen`` / ``cut_padding``
        keywords of the older call forms (a protocol name may stand in ``evaluation``'s place)
        folded into one, so every caller ranks through the value; both at once are refused."""
        loose = {k: v for k, v in loose.items() if v is not None}
        if isinstance(evaluation, str):
            evaluation, loose = None, {"protocol": evaluation, **loose}
        if evaluation is None:
            return cls(**loose)
        if not isinstance(evaluation, cls):
            raise ConfigError(f"evaluation: expected a recnb Evaluation, got {type(evaluation).__name__}")
        if loose:
            raise ConfigError(f"give the Evaluation or {', '.join(loose)}, not both")
        return evaluation


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
    evaluation: Evaluation | str | None = None,
    exclude_seen: bool | None = None,
    *,
    max_len: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    users: torch.Tensor | None = None,
    protocol: str | None = None,
    cut_padding: bool | None = None,
) -> torch.Tensor:
    """0-based rank of each user's held-out item (the unit every metric is built from), ranked
    as ``evaluation`` says (:class:`Evaluation`; the loose ``protocol``, ``exclude_seen`` and
    ``cut_padding`` of the older form are folded into one, :meth:`Evaluation.of`).

    ``users``: indices of the users to rank (one process's share under torchrun), else all.
    Users go by history length and each batch is cut to its longest history where the model
    ``cuts_padding`` (the same numbers up to float rounding, a fraction of the work on short
    histories; ``cut_padding=False`` keeps the full window). Each batch's scores are ranked in
    place: no second matrix of users x items."""
    ev = Evaluation.of(evaluation, protocol=protocol, exclude_seen=exclude_seen, cut_padding=cut_padding)
    check_model_scene(model, scene)
    max_len = max_len or model.config.max_len
    hist, target = eval_inputs(scene, split, max_len)
    users = torch.arange(len(hist)) if users is None else torch.as_tensor(users, dtype=torch.long)
    cand = None
    if ev.protocol == "sampled100":
        cand = sampled_candidates(seen_items(scene, split), target, scene.num_items, 100, seed)[users]
    hist, target = hist[users], target[users]
    cut = ev.cut_padding and model.cuts_padding
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
        if ev.exclude_seen:
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
    evaluation: Evaluation | str | None = None,
    exclude_seen: bool | None = None,
    *,
    ks=DEFAULT_KS,
    max_len: int | None = None,
    seed: int = 0,
    group=None,
    protocol: str | None = None,
    cut_padding: bool | None = None,
) -> pd.DataFrame:
    """HR/NDCG/MRR at each k as a DataFrame (rows k, columns metrics), ranked as ``evaluation``
    says (:class:`Evaluation`, else full ranking; ``evaluate(m, s, "test", "full", True)`` and
    the ``protocol`` / ``exclude_seen`` / ``cut_padding`` keywords still read, folded into one).

    ``group``: the processes of a torchrun job (``recnb.distributed.current()``): each ranks
    its share of the users (``user_ranks(users=...)``) and the ranks are gathered, so every
    process returns the same metrics as one process ranking all users."""
    ev = Evaluation.of(evaluation, protocol=protocol, exclude_seen=exclude_seen, cut_padding=cut_padding)
    ks = check_ks(ks, scene.num_items)
    share = group.share(len(scene.sequences)) if group is not None else None
    ranks = user_ranks(model, scene, split, ev, max_len=max_len, seed=seed, users=share)
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
