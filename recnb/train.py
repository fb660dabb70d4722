"""Training for every model that meets the contract: settings, recipes, losses, batches and
the fit loop (scoring and ranking live in ``recnb.evaluation``, files in ``recnb.checkpoint``).

One epoch runs each training window through the network once and learns all of its
positions together (RecBole re-runs the network once per prefix, which is why it is slow).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from recnb import distributed
from recnb.checkpoint import (
    all_finite,
    changed_settings,
    read_torch_file,
    resolve_device,
    save_checkpoint,
    write_torch_file,
)
from recnb.data import Scene, Windows, train_windows
from recnb.errors import ConfigError, DataError, TrainingDiverged, check_fields, from_checked_dict
from recnb.evaluation import Evaluation, check_model_scene, evaluate, item_logits
from recnb.metrics import flatten
from recnb.models import SeqRecModel, model_class

LOSSES = ("ce", "bce", "sampled")
LR_DECAYS = ("none", "cosine", "linear")


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    # "ce" (full softmax), "bce" (one sampled negative per position) or "sampled" (softmax over
    # the target and ``negatives`` uniform items shared by the batch: for large catalogues)
    loss: str = "ce"
    patience: int = 10  # epochs without a better valid NDCG@10 before stopping
    device: str = "auto"
    seed: int = 2020
    max_len: int = 50
    context: int = 0  # overlap of training windows (targets masked there): more context, more compute
    amp: bool = True  # mixed precision, used on CUDA only
    clip: float | None = 5.0
    eval_every: int = 1
    progress: bool = True
    time_budget: float | None = None  # seconds of training (validation not counted); stop after the epoch that crosses it
    lr_plateau: int = 0  # halve the lr after this many epochs without a better valid NDCG@10, counted after the warm-up (0 = off)
    # linear lr warm-up over this many epochs (fractions allowed), step by step from ~0 to ``lr``:
    # post-norm attention (SASRec) collapses at a high lr without it (0 = off)
    warmup: float = 0.0
    # after the warm-up the lr falls step by step to 0 at the end of ``epochs``: "cosine" or
    # "linear" ("none" = constant), so a fixed budget of epochs ends on small, settling steps
    # (measured for SASRec on ml-100k: it overfits then, lower validation; docs/benchmarks.md)
    lr_decay: str = "none"
    label_smoothing: float = 0.0  # of the softmax target (ce: over all items; sampled: over the scored ones): less over-confidence
    ema: float = 0.0  # decay of an exponential moving average of the weights, validated and kept instead (0 = off)
    # the average's warm-up: its decay at step t is at most (1 + t) / (ema_warmup + t). 10 (default)
    # averages about the last tenth of the steps so far, 2 about all of them until ``ema`` takes over
    ema_warmup: float = 10.0
    # epochs before the average starts (it follows the weights until then), so a long average can
    # leave out the first, fast-moving epochs (measured for SASRec: no gain, docs/benchmarks.md)
    ema_start: float = 0.0
    # Reorder augmentation (CL4SRec's "reorder"): each training window has a random span of this
    # fraction of its items shuffled, inputs and targets alike, every time it is drawn (0 = off).
    reorder: float = 0.0
    # Batches of about this many training targets instead of ``batch_size`` windows (0 = off):
    # windows sorted by length into batches, each cut to its longest history, so a step costs
    # the same on any scene and no time goes to padding (models with ``cuts_padding``)
    batch_targets: int = 0
    # shared uniform negatives per batch of the "sampled" loss; at least the catalogue: every item
    # once (the full softmax, computed by the sampled loss's fused function: a third of ce's time)
    negatives: int = 1024
    # epochs that draw a quarter of ``negatives`` first: an early epoch learns nearly as much from
    # fewer negatives at a fraction of the cost, so a useful model comes sooner (0 = off)
    negatives_warmup: int = 0

    RANGES: ClassVar[dict] = {
        "epochs": "[1, inf)", "batch_size": "[1, inf)", "lr": "(0, inf)", "weight_decay": "[0, inf)",
        "patience": "[1, inf)", "max_len": "[1, inf)", "context": "[0, inf)", "clip": "(0, inf)", "eval_every": "[1, inf)",
        "time_budget": "(0, inf)", "lr_plateau": "[0, inf)", "warmup": "[0, inf)", "label_smoothing": "[0, 1)",
        "ema": "[0, 1)", "ema_warmup": "[1, inf)", "ema_start": "[0, inf)", "reorder": "[0, 1]",
        "batch_targets": "[0, inf)", "negatives": "[1, inf)", "negatives_warmup": "[0, inf)", "seed": "[0, 4294967295]",
    }

    # one line of help per field: `recnb train --help` is generated from it (commands/train.py)
    HELP: ClassVar[dict] = {
        "epochs": "most epochs to train", "batch_size": "training windows per batch",
        "lr": "Adam learning rate", "weight_decay": "Adam weight decay",
        "loss": "ce (full softmax), sampled (softmax over the target and --negatives shared items) or bce "
                "(one sampled negative per position)",
        "patience": "epochs without a better validation NDCG@10 before stopping",
        "device": "auto, cpu or cuda", "seed": "seed of weights, order and dropout", "max_len": "history window length",
        "context": "overlap of training windows (targets masked there): more context per target, more compute",
        "amp": "bfloat16 autocast (CUDA only)", "clip": "gradient norm clip (none = off)",
        "eval_every": "epochs between validations", "progress": "progress bars",
        "time_budget": "seconds of training, validation not counted; stop after the epoch that crosses it",
        "lr_plateau": "halve the lr after this many epochs without a better validation (0 = off)",
        "warmup": "epochs of linear lr warm-up (0 = off)",
        "lr_decay": "none, cosine or linear: the lr falls to 0 at the end of --epochs after the warm-up",
        "label_smoothing": "share of each softmax target spread over the items it scores: all (ce) or the sampled "
                           "ones (sampled) (0 = off)",
        "ema": "decay of a moving average of the weights, validated and kept instead (0 = off)",
        "ema_warmup": "the average's decay at step t is at most (1 + t) / (this + t): 10 averages about the last "
                      "tenth of the steps, 2 about all of them",
        "ema_start": "epochs before the average starts (0 = from the start)",
        "reorder": "shuffle a random span of this share of each training window (augmentation; 0 = off)",
        "batch_targets": "batches of about this many targets, windows sorted by length and cut to their longest "
                         "history, instead of --batch-size windows (0 = off)",
        "negatives": "shared uniform negatives per batch of the sampled loss (at least the number of items: "
                     "every item, the full softmax at a third of --loss ce's cost)",
        "negatives_warmup": "epochs drawing a quarter of --negatives first (a useful model sooner; 0 = off)",
    }

    def __post_init__(self):
        check_fields(self, self.RANGES, "training options")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not self.context < self.max_len:
            raise ConfigError(f"context must be in [0, max_len={self.max_len}), got {self.context}")
        if self.lr_decay not in LR_DECAYS:
            raise ConfigError(f"lr_decay must be one of {', '.join(LR_DECAYS)}, got {self.lr_decay!r}")
        if self.lr_decay != "none" and self.lr_plateau:
            raise ConfigError("lr_decay and lr_plateau both set the lr: choose one")
        if self.label_smoothing and self.loss == "bce":
            raise ConfigError("label_smoothing applies to the ce and sampled losses only")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return from_checked_dict(cls, d, "training options")


# A recipe is everything that was measured for a model (bench/train_eval.py on ml-100k, 3 seeds;
# the sweep behind each choice is in docs/benchmarks.md): its training settings and, under
# "model", the model settings that differ from the model's defaults. Batches count windows of
# ``max_len`` positions (32 windows hold about 1,500 targets). `recnb train`, fit() without a
# config and every bench script take their settings from here.
RECIPES = {
    "sasrec": {"batch_size": 32, "lr": 3e-3, "context": 20, "ema": 0.995, "label_smoothing": 0.1},
    "gru4rec": {"batch_size": 32, "lr": 3e-3, "context": 20},
    "nextitnet": {"batch_size": 32, "lr": 1e-2, "ema": 0.995, "label_smoothing": 0.1, "model": {"dropout": 0.3}},
}
RECIPES["bsarec"] = RECIPES["sasrec"]  # SASRec blocks with a filter beside attention: SASRec's training
RECIPE_MAX_LEN = 50  # the window length the recipes were measured at
# Per kind of scene, where a kind needs other settings than ml-100k's (bench/scale.py, docs/benchmarks.md).
# "large-sparse": a large catalogue and short histories (Amazon Beauty and Sports: 12k-18k items,
# median history 6), so batches count targets (cut to their longest history) and the softmax runs
# over shared sampled items. :func:`scene_kind` tells the kind from the scene's own statistics.
_LARGE_SPARSE_BATCHES = {"batch_targets": 2048, "loss": "sampled", "negatives": 1024}
_LARGE_SPARSE = {
    # SASRec (bench/train_cli.py, 3 seeds on Beauty and Sports; the probes behind each choice, on Beauty
    # validation, in docs/benchmarks.md): 4,096 shared negatives (a third of Beauty's catalogue: closer to
    # the full softmax), label smoothing over them, pre-norm blocks, and a random fifth of each training
    # window shuffled each time it is drawn (short histories: order is a weak signal, easily over-fitted)
    "sasrec": {**RECIPES["sasrec"], **_LARGE_SPARSE_BATCHES, "negatives": 4096, "reorder": 0.2,
               "model": {"norm": "pre"}},
    # GRU4Rec and NextItNet: SASRec's softmax, smoothing, reorder and weight average (probes on Beauty
    # validation: GRU4Rec 0.0448 with its ml-100k settings, 0.0570 with these; NextItNet 0.0531, 0.0589),
    # NextItNet at lr 3e-3; both read padding as zeros (mask_padding), so their batches are cut like SASRec's
    "gru4rec": {**RECIPES["gru4rec"], **_LARGE_SPARSE_BATCHES, "negatives": 4096, "label_smoothing": 0.1, "reorder": 0.2,
                "ema": 0.995, "model": {"mask_padding": True}},
    "nextitnet": {**RECIPES["nextitnet"], **_LARGE_SPARSE_BATCHES, "negatives": 4096, "reorder": 0.2, "lr": 3e-3,
                  "model": {**RECIPES["nextitnet"]["model"], "mask_padding": True}}}
_LARGE_SPARSE["bsarec"] = copy.deepcopy(_LARGE_SPARSE["sasrec"])
# SASRec's first 4 epochs draw 1,024 negatives: a model at ICLRec's published Beauty NDCG@10 11%
# sooner, the same final accuracy over 3 seeds (bench/results/README.md, section 5); BSARec keeps
# the settings its seeds were measured with
_LARGE_SPARSE["sasrec"]["negatives_warmup"] = 4
SCENE_RECIPES = {"default": {}, "large-sparse": _LARGE_SPARSE}
LARGE_CATALOGUE = 5000  # items: a full softmax over more costs more than the network itself
SHORT_HISTORY = 20  # median interactions per user: most of a 50-window would be padding


def scene_kind(scene: Scene) -> tuple[str, str]:
    """Which recipes fit ``scene`` (a key of ``SCENE_RECIPES``) and why, from its own statistics
    (never its name, so a user's own file of the same shape gets the same recipe)."""
    median = float(np.median([len(s) for s in scene.sequences])) if scene.sequences else 0.0
    facts = f"{scene.num_items:,} items, median history {median:g}"
    if scene.num_items >= LARGE_CATALOGUE and median <= SHORT_HISTORY:
        return "large-sparse", f"{facts}: at least {LARGE_CATALOGUE:,} items and a median history of at most {SHORT_HISTORY}"
    return "default", f"{facts}: not both at least {LARGE_CATALOGUE:,} items and a median history of at most {SHORT_HISTORY}"


def recipe(model: str, scene: Scene | str | None = None, **overrides) -> TrainConfig:
    """The measured training settings for ``model`` (defaults for others) on ``scene`` (a
    :class:`Scene`, whose kind :func:`scene_kind` tells, or a kind name; the ml-100k settings
    where the kind has none of its own), then ``overrides``.

    A recipe's ``context`` is a share of the window: with another ``max_len`` it scales
    along (20 of 50 becomes 8 of 20) unless ``context`` is given; the ``bce`` loss drops
    the recipe's label smoothing (a softmax setting)."""
    settings = {k: v for k, v in _recipe_of(model, scene).items() if k != "model"}
    max_len = overrides.get("max_len", RECIPE_MAX_LEN)
    if "context" in settings and "context" not in overrides:
        settings["context"] = settings["context"] * max_len // RECIPE_MAX_LEN
    if {**settings, **overrides}.get("loss", "ce") == "bce":  # smoothing is a softmax setting: bce goes without it
        settings.pop("label_smoothing", None)
    return TrainConfig(**{**settings, **overrides})


def recipe_model_config(model: str, scene: Scene | str | None = None) -> dict:
    """The model settings of ``model``'s recipe on ``scene`` (those that differ from its defaults)."""
    return copy.deepcopy(_recipe_of(model, scene).get("model", {}))


def split_settings(model: str, settings: dict, where: str) -> tuple[dict, dict]:
    """``settings`` for ``model`` as (model settings, training settings): each name goes to the
    config that has it, ``max_len`` to both (the model's window is the training window); a
    name neither has is refused naming ``where`` (a config file, a sweep point)."""
    model_names = {f.name for f in dataclasses.fields(model_class(model).config_class)} - {"num_items"}
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings) - model_names - train_names)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(repr(k) for k in unknown)} for model {model}")
    model_cfg = {k: v for k, v in settings.items() if k in model_names and k not in train_names}
    train_cfg = {k: v for k, v in settings.items() if k in train_names}
    if "max_len" in train_cfg:
        model_cfg["max_len"] = train_cfg["max_len"]
    return model_cfg, train_cfg


def _recipe_of(model: str, scene: Scene | str | None) -> dict:
    """The recipe entry of ``model`` for the kind of ``scene`` (the ml-100k one where the kind has none)."""
    kind = scene_kind(scene)[0] if isinstance(scene, Scene) else (scene or "default")
    if kind not in SCENE_RECIPES:
        raise ConfigError(f"recipe: unknown kind of scene {kind!r} (give the Scene, or one of {', '.join(SCENE_RECIPES)})")
    return SCENE_RECIPES[kind].get(model) or RECIPES.get(model, {"batch_size": 32})


@dataclass
class TrainResult:
    model: SeqRecModel
    best_epoch: int
    epochs: int
    train_seconds: float
    seconds_to_best: float
    valid: dict
    history: pd.DataFrame = field(repr=False, default=None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- losses
ExtraLoss = Callable[[SeqRecModel, dict, list, torch.Tensor], "torch.Tensor | dict"]


def rec_loss(model: SeqRecModel, out: torch.Tensor, batch: dict, kind: str = "ce",
             label_smoothing: float = 0.0, teacher: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-item loss over every valid position of the batch.

    ``label_smoothing`` spreads that share of each CE target over the real items (never
    the padding id 0, whose logit is -inf).

    Returns the loss and the logits at the valid positions (``(P, num_items + 1)`` for
    ``ce``), which distillation losses reuse instead of scoring twice. With ``teacher`` (its
    scores of the targets and shared negatives) the sampled loss also distils in the same
    pass and leaves that KD term in ``batch["kd_fused"]``.
    """
    mask = batch["targets"] > 0
    h = out[mask]
    tgt = batch["targets"][mask]
    if kind == "ce":
        logits = item_logits(model, h)
        if label_smoothing:
            return F.cross_entropy(logits[:, 1:].float(), tgt - 1, label_smoothing=label_smoothing), logits
        return F.cross_entropy(logits.float(), tgt), logits
    w = model.item_weights()
    if kind == "sampled":
        if teacher is None:
            return sampled_softmax(h, tgt, w, batch["negatives"], label_smoothing), None
        loss, batch["kd_fused"] = sampled_softmax(h, tgt, w, batch["negatives"], label_smoothing, teacher)
        return loss, None
    neg = batch["negatives"][mask]
    pos_s = (h * w[tgt]).sum(-1)
    neg_s = (h * w[neg]).sum(-1)
    loss = F.binary_cross_entropy_with_logits(
        torch.cat([pos_s, neg_s]).float(), torch.cat([torch.ones_like(pos_s), torch.zeros_like(neg_s)]).float()
    )
    return loss, None


def sampled_softmax(h: torch.Tensor, tgt: torch.Tensor, w: torch.Tensor, neg: torch.Tensor,
                    label_smoothing: float = 0.0, teacher: tuple | None = None):
    """Softmax CE over each target and the ``neg`` items every position shares (uniform
    draws: their log-probability correction ``log(N / num_items)`` is the same for every
    candidate and cancels). A negative that is the position's own target is masked out.
    ``label_smoothing`` spreads that share of each target over the position's scored items
    (the target and its unmasked negatives), as ``cross_entropy(label_smoothing=...)`` does
    over all items.

    With ``teacher = (t_pos, t_neg)`` (a teacher's scores of the same targets ``(P,)`` and
    negatives ``(P, N)``) it returns ``(ce, kd)``: ``kd`` is KL(teacher || student) over the
    same scored items, computed in the same pass (distillation at about the price of the loss).

    One fused autograd function (:class:`_SampledSoftmaxCE`): the (positions x negatives)
    scores are written once and turned into their softmax, then the gradient, in place; the
    same value and gradients as ``cross_entropy`` over ``[target, negatives]`` (tested), about
    a third less time per step than that chain of copies on a CPU."""
    order = torch.argsort(neg)
    lo = torch.searchsorted(neg[order], tgt)
    counts = torch.searchsorted(neg[order], tgt, right=True) - lo  # how often each target was drawn
    rows = torch.repeat_interleave(torch.arange(len(tgt), device=h.device), counts)
    starts = torch.repeat_interleave(lo - (torch.cumsum(counts, 0) - counts), counts)
    cols = order[starts + torch.arange(len(rows), device=h.device)]
    t_pos, t_neg = teacher if teacher is not None else (None, None)
    ce, kd = _SampledSoftmaxCE.apply(h, w[tgt], w[neg], rows, cols, float(label_smoothing), t_pos, t_neg)
    return (ce, kd) if teacher is not None else ce


class _SampledSoftmaxCE(torch.autograd.Function):
    """Mean over positions of ``logsumexp([s_pos, s_neg...]) - s_pos`` with ``s = h . w``;
    the entries ``(rows, cols)`` of the negatives' scores (a negative that is the target) are
    left out. Computed in float32; the saved score buffer becomes the gradient in backward,
    so a second backward through the same loss is refused. With a teacher's scores also the
    mean KL(teacher || student) over the same items (its gradient on the student's scores is
    ``softmax(s) - softmax(t)``, folded into the same buffer)."""

    @staticmethod
    def forward(ctx, h, w_pos, w_neg, rows, cols, smoothing, t_pos=None, t_neg=None):
        dtypes = (h.dtype, w_pos.dtype, w_neg.dtype)
        h, w_pos, w_neg = h.float(), w_pos.float(), w_neg.float()
        pos = (h * w_pos).sum(-1)
        e = h @ w_neg.t()
        p_t = p_t_pos = None
        if t_neg is not None:  # the teacher's softmax over the same items, and sum_j p_t (t - s)
            t_neg, t_pos = t_neg.float(), t_pos.float()
            p_t = t_neg.clone()
            p_t[rows, cols] = float("-inf")
            m_t = torch.maximum(p_t.amax(1), t_pos)
            p_t.sub_(m_t[:, None]).exp_()
            p_t_pos = (t_pos - m_t).exp_()
            z_t = p_t.sum(1).add_(p_t_pos)
            p_t.div_(z_t[:, None])
            p_t_pos = p_t_pos / z_t
            cross = (torch.bmm(p_t.unsqueeze(1), t_neg.unsqueeze(2)) - torch.bmm(p_t.unsqueeze(1), e.unsqueeze(2))).view(-1)
            cross = cross + p_t_pos * (t_pos - pos)
            lse_t = m_t + z_t.log()
        loss = -pos
        ctx.share = None
        if smoothing:  # the smoothed target: 1 - eps on the target, eps spread over the n scored items
            e[rows, cols] = 0.0
            n = torch.full_like(pos, w_neg.shape[0] + 1).index_add_(0, rows, torch.full_like(rows, -1, dtype=pos.dtype))
            loss = (1 - smoothing) * loss - smoothing * (e.sum(1) + pos) / n
            ctx.share = smoothing / n
        e[rows, cols] = float("-inf")
        m = torch.maximum(e.amax(1), pos)
        e.sub_(m[:, None]).exp_()  # exp(s - m): the buffer that becomes the softmax, then the gradient
        p_pos = (pos - m).exp_()
        total = e.sum(1).add_(p_pos)
        lse = m + total.log()
        kd = (cross + lse - lse_t).mean() if p_t is not None else pos.new_zeros(())
        ctx.save_for_backward(h, w_pos, w_neg, e, total, p_pos, rows, cols, p_t, p_t_pos)
        ctx.dtypes, ctx.spent, ctx.smoothing = dtypes, False, smoothing
        return (lse + loss).mean(), kd

    @staticmethod
    def backward(ctx, grad, grad_kd):
        if ctx.spent:
            raise RuntimeError("sampled_softmax: a second backward through the same loss is not supported")
        ctx.spent = True
        h, w_pos, w_neg, e, total, p_pos, rows, cols, p_t, p_t_pos = ctx.saved_tensors
        scale = grad.float() / len(h)
        e.div_(total[:, None])  # softmax over [target, negatives]
        p_pos = p_pos / total
        d_pos = (p_pos - 1) * scale
        kd_scale = grad_kd.float() / len(h) if p_t is not None and grad_kd is not None else None
        if ctx.smoothing:  # minus the smoothed target's share; masked negatives have neither
            e_share = ctx.share[:, None] * scale
            d_pos = d_pos + (ctx.smoothing - ctx.share) * scale
        if kd_scale is not None:  # KD: (softmax(s) - softmax(t)) on every scored item
            d_pos = d_pos + (p_pos - p_t_pos) * kd_scale
            e.mul_(scale + kd_scale).sub_(p_t.mul_(kd_scale))
        else:
            e.mul_(scale)
        if ctx.smoothing:
            e.sub_(e_share)
            e[rows, cols] = 0.0
        grad_h = torch.addmm(d_pos[:, None] * w_pos, e, w_neg)
        grad_w_neg = e.t() @ h
        grad_w_pos = d_pos[:, None] * h
        return (grad_h.to(ctx.dtypes[0]), grad_w_pos.to(ctx.dtypes[1]), grad_w_neg.to(ctx.dtypes[2]),
                None, None, None, None, None)


def reorder_windows(inputs: torch.Tensor, targets: torch.Tensor, rate: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle one random span of ``rate`` x (real items) per window, keeping it a window.

    A window is a contiguous piece of a history (``targets[t] == inputs[t + 1]``), so the
    items ``inputs + last target`` are reordered and inputs / targets re-read from them;
    targets masked before (padding, overlap context) stay masked. Items outside the span
    keep their places, so causality and the left padding are untouched.
    """
    B, L = inputs.shape
    seq = torch.cat([inputs, targets[:, -1:]], 1)  # (B, L + 1)
    n = seq.ne(0).sum(1)  # real items per window (left-padded)
    k = (rate * n).round().long().clamp(min=2).minimum(n)  # span length
    start = (L + 1 - n) + (torch.rand(B, generator=gen, device=seq.device) * (n - k + 1)).long().clamp(max=(n - k).clamp(min=0))
    pos = torch.arange(L + 1, device=seq.device).expand(B, -1)
    inside = (pos >= start[:, None]) & (pos < (start + k)[:, None])
    # inside the span: random keys in [start, start + k); outside: the position itself
    keys = torch.where(inside, start[:, None] + torch.rand(B, L + 1, generator=gen, device=seq.device) * k[:, None], pos.float())
    seq = seq.gather(1, keys.argsort(1))
    return seq[:, :-1], seq[:, 1:] * targets.ne(0)


def sample_negatives(inputs: torch.Tensor, targets: torch.Tensor, num_items: int, gen: torch.Generator) -> torch.Tensor:
    """One uniform negative per position, re-drawn where it equals the target."""
    neg = torch.randint(1, num_items + 1, targets.shape, generator=gen, device=targets.device)
    clash = neg == targets
    while clash.any():
        neg[clash] = torch.randint(1, num_items + 1, (int(clash.sum()),), generator=gen, device=targets.device)
        clash = neg == targets
    return neg


def lr_factor(step: int, warmup_steps: int, total_steps: int, decay: str = "none") -> float:
    """The share of the base lr at ``step``: a linear ramp over the warm-up, then constant or
    falling to 0 at ``total_steps`` (cosine or linear)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "none":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1 + math.cos(math.pi * progress)) if decay == "cosine" else 1 - progress


# ----------------------------------------------------------------------------- batches
class Batches:
    """The batches of each epoch: ``(index, inputs, targets, offset)``.

    By default a random permutation of the windows cut into ``batch_size`` windows each.
    With ``batch_targets``, windows are shuffled, stably sorted by length (real items) and
    cut into ``steps`` batches of about ``batch_targets`` training targets each, visited in
    random order; with ``cut`` each batch drops its leading columns that are padding in every
    row, and ``offset`` says how many (models read positions with it)."""

    def __init__(self, windows: Windows, batch_size: int, batch_targets: int = 0, cut: bool = False,
                 device: torch.device | str = "cpu"):
        self.inputs, self.targets = windows.inputs.to(device), windows.targets.to(device)
        self.batch_size, self.batch_targets, self.cut, self.device = batch_size, batch_targets, cut, device
        if batch_targets:
            self.lengths = self.inputs.ne(0).sum(1)
            self.counts = self.targets.gt(0).sum(1)
            self.total = int(self.counts.sum())
            self.steps = max(1, math.ceil(self.total / batch_targets))
        else:
            self.steps = math.ceil(len(windows) / batch_size)

    def __len__(self) -> int:
        return self.steps

    def epoch(self, gen: torch.Generator, order: torch.Tensor | None = None, shard=None):
        """One epoch's batches from ``order`` (else a permutation drawn from ``gen``);
        ``shard(idx, targets) -> (idx, share)`` keeps one process's part of each batch
        (data-parallel training) and yields its share of the batch's targets."""
        n = len(self.inputs)
        order = torch.randperm(n, generator=gen, device=self.device) if order is None else order
        shard = shard or (lambda idx, targets: (idx, 1.0))
        if not self.batch_targets:  # exactly the pre-bucketing batches (documented numbers rest on them)
            for b in range(0, n, self.batch_size):
                idx, share = shard(order[b: b + self.batch_size], self.targets)
                yield idx, self.inputs[idx], self.targets[idx], 0, share
            return
        order = order[torch.argsort(self.lengths[order], stable=True)]
        cum = self.counts[order].cumsum(0)
        bounds = torch.searchsorted(cum, torch.arange(1, self.steps, device=self.device) * self.total // self.steps)
        pieces = [p for p in torch.tensor_split(order, bounds.cpu()) if len(p)]
        L = self.inputs.shape[1]
        for j in torch.randperm(len(pieces), generator=gen, device=self.device).tolist():
            off = L - int(self.lengths[pieces[j]].max()) if self.cut else 0
            idx, share = shard(pieces[j], self.targets)
            yield idx, self.inputs[idx, off:], self.targets[idx, off:], off, share


# ----------------------------------------------------------------------------- fit
def fit(
    model: SeqRecModel,
    scene: Scene,
    config: TrainConfig | None = None,
    extra_loss: ExtraLoss | None = None,
    windows: Windows | None = None,
    checkpoint: str | Path | None = None,
    log: Callable[[dict], None] | None = None,
    state: str | Path | None = None,
    evaluation: Evaluation | None = None,
    *,
    exclude_seen: bool | None = None,
) -> TrainResult:
    """Train with Adam and early stopping on validation NDCG@10; keep the best weights.

    ``evaluation`` (:class:`recnb.evaluation.Evaluation`, else full ranking) is how each epoch
    validates: with ``exclude_seen`` (also a keyword of its own) each user's earlier items are
    masked, so a run reported under that protocol stops, and keeps its weights, on the metric
    it reports.

    ``extra_loss(model, batch, hidden_states, logits)`` adds terms (distillation); it gets
    ``batch["index"]``, the window indices, to look up cached teacher outputs. Batches drop
    leading padding columns (``batch["offset"]`` of them) only for an extra loss whose
    ``handles_padding_cut`` is true.
    ``state``: a file that holds the whole training state after every epoch (weights,
    optimiser, weight average, random generators, history); if it exists, training resumes
    from it and continues to the same numbers an uninterrupted run gives (on CPU; the state
    an ``extra_loss`` keeps for itself is not part of it).
    """
    cfg = config or recipe(model.name)  # the measured settings, as the CLI uses
    if isinstance(cfg, dict):
        cfg = TrainConfig.from_dict(cfg)
    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"fit: config must be a TrainConfig or a dict of its fields, got {type(cfg).__name__}")
    evaluation = Evaluation.of(evaluation, exclude_seen=exclude_seen)
    check_model_scene(model, scene)
    seed_everything(cfg.seed)
    run = _Run.start(model, scene, cfg, extra_loss, windows, checkpoint, log, state, evaluation)
    bar = tqdm(range(run.first, cfg.epochs if not run.done else run.first), desc=f"train {model.name}",
               disable=not cfg.progress, leave=False)
    for epoch in bar:
        row = run.train_epoch(epoch)
        run.end_epoch(epoch, row, bar)
        if run.done:
            break
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    hist = pd.DataFrame(run.history)
    valid_best = ({k[6:]: v for k, v in hist.loc[hist["epoch"] == run.best_epoch].iloc[0].items() if k.startswith("valid_")}
                  if run.best_epoch >= 0 else {})
    return TrainResult(model, run.best_epoch, len(run.history), run.trained, run.seconds_to_best, valid_best, hist)


@dataclass
class _Run:
    """One :func:`fit`: what it trains with (set up once) and what it carries from epoch to
    epoch (the best weights, the history, the patience count: what the state file holds)."""

    model: SeqRecModel
    scene: Scene
    cfg: TrainConfig
    extra_loss: ExtraLoss | None
    checkpoint: str | Path | None
    log: Callable[[dict], None] | None
    state: str | Path | None
    device: torch.device
    ddp: object
    forward: Callable
    windows: Windows
    batches: Batches
    opt: torch.optim.Optimizer
    plateau: object
    average: WeightAverage | None
    warmup_steps: int
    gen: torch.Generator
    best: float = -1.0
    best_state: dict | None = None
    best_epoch: int = -1
    seconds_to_best: float = 0.0
    history: list = field(default_factory=list)
    bad: int = 0
    trained: float = 0.0
    first: int = 0
    done: bool = False
    evaluation: Evaluation = field(default_factory=Evaluation)  # how each epoch validates

    # the fields a state file keeps, besides the model, optimiser, schedulers and generators
    CARRIED: ClassVar[tuple[str, ...]] = ("best", "best_state", "best_epoch", "seconds_to_best", "history", "bad", "trained")

    @classmethod
    def start(cls, model, scene, cfg: TrainConfig, extra_loss, windows, checkpoint, log, state,
              evaluation: Evaluation) -> _Run:
        device = resolve_device(cfg.device)
        model.to(device)
        ddp = distributed.current()  # distributed: under torchrun, this rank's share of each batch (else no-op)
        forward = ddp.wrap(model)  # distributed: DistributedDataParallel(model) under torchrun
        windows = windows if windows is not None else train_windows(scene, cfg.max_len, cfg.context)
        # an extra loss that reads per-window tables of the full width must say it reads batch["offset"]
        cut = model.cuts_padding and (extra_loss is None or getattr(extra_loss, "handles_padding_cut", False))
        batches = Batches(windows, cfg.batch_size, cfg.batch_targets, cut, device)
        # foreach: one kernel per step for all tensors instead of one per tensor (torch's default on
        # CUDA only); on CPU 2.6x cheaper steps for NextItNet's 93 tensors, same numbers to the bit
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                               weight_decay=cfg.weight_decay, foreach=True)
        # a lower lr once validation stalls: the late epochs settle instead of jittering around the optimum
        plateau = None
        if cfg.lr_plateau:
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "max", factor=0.5, patience=cfg.lr_plateau - 1)
        steps = len(batches)
        average = WeightAverage(model, cfg.ema, cfg.ema_warmup, round(cfg.ema_start * steps)) if cfg.ema else None
        run = cls(model, scene, cfg, extra_loss, checkpoint, log, state, device, ddp, forward, windows, batches, opt,
                  plateau, average, round(cfg.warmup * steps), torch.Generator(device=device).manual_seed(cfg.seed),
                  evaluation=evaluation)
        if state is not None and Path(state).exists():
            run.resume(_load_state(state, cfg, model, evaluation))
        return run

    @functools.cached_property
    def every_item(self) -> torch.Tensor:
        """Every item: the sampled loss's negatives in a step whose count covers the catalogue
        (made once per run, when first needed: the catalogue does not change)."""
        return torch.arange(1, self.model.config.num_items + 1, device=self.device)

    def resume(self, saved: dict) -> None:
        self.model.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["optimizer"])
        if self.plateau is not None:
            self.plateau.load_state_dict(saved["plateau"])
        if self.average is not None:
            self.average.load_state_dict(saved["average"])
        self.gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        if saved.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        for name in self.CARRIED:
            setattr(self, name, saved[name])
        self.first, self.done = saved["epoch"] + 1, saved["done"]

    def train_epoch(self, epoch: int) -> dict:
        """One pass over the windows; the epoch's history row (mean loss and extra terms)."""
        start = time.perf_counter()
        self.model.train()
        steps = len(self.batches)
        order = self.ddp.order(len(self.windows), self.gen, epoch, self.cfg.seed)  # distributed: torch.randperm(len(windows), generator=gen) on one process
        total, terms_sum = 0.0, {}
        # distributed: ddp.shard keeps this rank's windows of each batch, and its share of the targets (1.0 on one process)
        for j, (idx, inp, tgt, offset, share) in enumerate(self.batches.epoch(self.gen, order, self.ddp.shard)):
            batch = {"index": idx, "inputs": inp, "targets": tgt, "offset": offset}
            total += self.step(epoch, j, epoch * steps + j, batch, share, terms_sum)
        self.trained += time.perf_counter() - start
        if not all_finite(self.model.parameters()):
            raise TrainingDiverged(_diverged(epoch, "non-finite weights", self.state))
        row = {"epoch": epoch, "loss": total / max(1, steps), "seconds": self.trained, "lr": self.opt.param_groups[0]["lr"]}
        row.update({k: v / max(1, steps) for k, v in terms_sum.items()})
        return row

    def step(self, epoch: int, j: int, step: int, batch: dict, share: float, terms_sum: dict) -> float:
        """One optimiser step on ``batch``; adds the extra loss's terms to ``terms_sum``."""
        cfg, model, gen = self.cfg, self.model, self.gen
        if step < self.warmup_steps or cfg.lr_decay != "none":
            for group in self.opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, self.warmup_steps, cfg.epochs * len(self.batches), cfg.lr_decay)
        if cfg.reorder:
            batch["inputs"], batch["targets"] = reorder_windows(batch["inputs"], batch["targets"], cfg.reorder, gen)
        if cfg.loss == "bce":
            batch["negatives"] = sample_negatives(batch["inputs"], batch["targets"], model.config.num_items, gen)
        elif cfg.loss == "sampled":
            n = model.config.num_items
            count = min(cfg.negatives, n) // (4 if epoch < cfg.negatives_warmup else 1)
            batch["negatives"] = self.every_item if count >= n else torch.randint(
                1, n + 1, (max(1, count),), generator=gen, device=self.device)
        with torch.autocast(self.device.type, enabled=cfg.amp and self.device.type == "cuda", dtype=torch.bfloat16):
            offset = batch["offset"]
            states = self.forward(batch["inputs"], offset=offset) if offset else self.forward(batch["inputs"])
            teacher = self.extra_loss.sampled_teacher(model, batch) if hasattr(self.extra_loss, "sampled_teacher") else None
            loss, logits = rec_loss(model, states[-1], batch, cfg.loss, cfg.label_smoothing, teacher)
            if self.extra_loss is not None:
                extra = self.extra_loss(model, batch, states, logits)
                if isinstance(extra, dict):
                    for k, v in extra.items():
                        terms_sum[k] = terms_sum.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
                    extra = sum(extra.values())
                loss = loss + extra
            loss = loss * share  # distributed: DDP's average of the ranks' losses = the whole batch's mean
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        self.opt.step()
        if self.average is not None:
            self.average.update()
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(_diverged(epoch, f"loss {value} at step {j + 1}", self.state))
        return value

    def end_epoch(self, epoch: int, row: dict, bar) -> None:
        """Validate (with the weight average in), keep the best, decide whether to stop, save the state."""
        cfg = self.cfg
        with self.average.swapped_in() if self.average is not None else contextlib.nullcontext():
            if (epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1:
                self.validate(epoch, row, bar)
            self.history.append(row)
            if self.log:
                self.log(row)
            if self.checkpoint is not None and self.best_epoch == epoch and self.ddp.is_main:  # distributed: rank 0 writes
                save_checkpoint(self.checkpoint, self.model, self.scene, extra={"epoch": epoch})
        done = self.bad >= cfg.patience or bool(cfg.time_budget and self.trained >= cfg.time_budget)
        self.done = self.ddp.any(done)  # distributed: the ranks' clocks differ; one that is out of time stops all
        if self.state is not None and self.ddp.is_main:  # distributed: rank 0 writes
            self.save(epoch)

    def validate(self, epoch: int, row: dict, bar) -> None:
        # distributed: users split over ranks, ranks gathered
        valid = flatten(evaluate(self.model, self.scene, "valid", self.evaluation, max_len=self.cfg.max_len, group=self.ddp))
        row.update({f"valid_{k}": v for k, v in valid.items()})
        if valid["NDCG@10"] > self.best:
            self.best, self.best_epoch, self.bad = valid["NDCG@10"], epoch, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.seconds_to_best = self.trained
        else:
            self.bad += self.cfg.eval_every
        # the plateau watches only after warm-up: a halving during it would be overwritten
        if self.plateau is not None and (epoch + 1) * len(self.batches) >= self.warmup_steps:
            self.plateau.step(valid["NDCG@10"])
        bar.set_postfix(ndcg10=f"{valid['NDCG@10']:.4f}", best=f"{self.best:.4f}")

    def save(self, epoch: int) -> None:
        _save_state(self.state, self.cfg, {
            "epoch": epoch, "done": self.done, **_validation(self.evaluation),
            "model": self.model.state_dict(), "model_config": self.model.config.to_dict(),
            "optimizer": self.opt.state_dict(), "plateau": self.plateau.state_dict() if self.plateau is not None else None,
            "average": self.average.state_dict() if self.average is not None else None,
            "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            **{name: getattr(self, name) for name in self.CARRIED}})


def _diverged(epoch: int, what: str, state) -> str:
    kept = (f"; the last good epoch's state is kept in {state}" if state is not None and Path(state).exists()
            else "")
    return f"training diverged in epoch {epoch} ({what}){kept}; lower --lr"


# settings that may differ between a run and its resumption (they do not change the numbers;
# ``epochs`` does where the lr decays over them, so there it must match)
_RESUMABLE = ("epochs", "progress", "time_budget", "device")


def _save_state(path: str | Path, cfg: TrainConfig, content: dict) -> None:
    # a kill mid-write leaves the previous epoch's state intact
    write_torch_file(path, {"format": "recnb-train-state/1", "config": dataclasses.asdict(cfg), **content})


def _validation(evaluation: Evaluation) -> dict:
    """What of ``evaluation`` a state file records: how the best epoch so far was chosen."""
    return {name: getattr(evaluation, name) for name in ("protocol", "exclude_seen", "cut_padding")}


def _load_state(path: str | Path, cfg: TrainConfig, model: SeqRecModel, evaluation: Evaluation) -> dict:
    """The saved state, refused (naming the fields) if it belongs to other settings or another model."""
    saved = read_torch_file(path, "recnb training state")
    if not isinstance(saved, dict) or saved.get("format") != "recnb-train-state/1":
        raise DataError(f"{path}: not a recnb training state")
    # a setting missing from an older state counts as saved at its default (Evaluation's, for how
    # it validated: full ranking, cut); how fit validates is a training setting too: it chose the
    # best epoch so far
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    validation = {k: saved.get(k, v) for k, v in _validation(Evaluation()).items()}
    training = {**defaults, **saved["config"], **validation}
    free = [k for k in _RESUMABLE if not (k == "epochs" and cfg.lr_decay != "none")]
    for what, old, now in (("training settings", training, {**dataclasses.asdict(cfg), **_validation(evaluation)}),
                           ("model", saved["model_config"], model.config.to_dict())):
        changed = changed_settings(old, now, free)
        if changed:
            raise ConfigError(f"{path}: saved with a different {what} ({', '.join(changed)}); "
                              "resume with the same one or start over")
    return saved


class WeightAverage:
    """Exponential moving average of a model's trainable weights (frozen tensors and
    buffers, e.g. a teacher's text table, never change, so averaging them is wasted work
    on every step).

    Validation picks one epoch out of a noisy trajectory; the average is that trajectory
    smoothed, so the epoch it picks depends less on the last few batches. The decay warms
    up as ``min(decay, (1 + t) / (warmup + t))`` so the random initialisation fades. With
    ``warmup`` 10 that cap stays below 0.995 for 1,790 steps, so in runs of a few thousand
    steps the average spans about the last tenth of training whatever ``decay`` is; with
    ``warmup`` 2 it is about the mean of all steps so far until ``decay`` takes over, a long
    average whose validation curve rises slowly and smoothly (SASRec, docs/benchmarks.md).
    Before step ``start`` the average is the weights themselves; the warm-up counts from there."""

    def __init__(self, model: nn.Module, decay: float, warmup: float = 10.0, start: int = 0):
        self.decay, self.warmup, self.start, self.steps = decay, warmup, start, 0
        self.live = [p.detach() for p in model.parameters() if p.requires_grad]
        self.shadow = [t.clone() for t in self.live]

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        t = self.steps - self.start
        if t <= 0:
            torch._foreach_copy_(self.shadow, self.live)
            return
        decay = min(self.decay, (1 + t) / (self.warmup + t))
        torch._foreach_lerp_(self.shadow, self.live, 1.0 - decay)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "shadow": [t.clone() for t in self.shadow]}

    def load_state_dict(self, saved: dict) -> None:
        self.steps = saved["steps"]
        with torch.no_grad():
            torch._foreach_copy_(self.shadow, [t.to(s.device) for t, s in zip(saved["shadow"], self.shadow)])

    @contextlib.contextmanager
    def swapped_in(self):
        """The model holds the averaged weights inside the block, its own ones after."""
        with torch.no_grad():
            own = [t.clone() for t in self.live]
            torch._foreach_copy_(self.live, self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.live, own)


# names that lived here before scoring and files had modules of their own: still importable
_MOVED = {"recnb.evaluation": ("score_users", "user_ranks", "mask_seen", "popularity_ranks"),
          "recnb.checkpoint": ("CHECKPOINT_FORMAT", "payload_digest", "load_checkpoint", "check_compatible",
                               "model_from_checkpoint", "write_json")}


def __getattr__(name: str):
    import importlib

    for module, names in _MOVED.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'recnb.train' has no attribute {name!r}")
