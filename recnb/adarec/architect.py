"""The bi-level update of the architecture search (first-order DARTS): the AdaRec loss of a
batch, then one step of the architecture weights (alphas) on one half of the data and one of
the network weights on the other. :mod:`recnb.adarec.search` runs it over epochs, with the
history, validation and resume around it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recnb.adarec.objective import combined_loss, cost_loss
from recnb.adarec.supernet import Supernet
from recnb.evaluation import item_logits
from recnb.kd import EMDLoss, TeacherCache, kd_loss


def loss_terms(model: Supernet, batch: dict, cache: TeacherCache | None, emd: EMDLoss | None,
               costs: torch.Tensor, cfg) -> dict:
    """Every term of the AdaRec loss on one batch (``total`` included); ``cfg`` a
    :class:`recnb.adarec.search.SearchConfig` (``T``, ``gamma``, ``beta``)."""
    mask = batch["targets"] > 0
    states = model(batch["inputs"])
    logits = item_logits(model, states[-1][mask]).float()
    ce = F.cross_entropy(logits, batch["targets"][mask])
    zero = ce.new_zeros(())
    kd = kd_loss(logits, cache.logits(batch["index"], mask), cfg.T) if cache is not None and cfg.gamma > 0 else zero
    hid = emd([s[mask] for s in states[1:]], cache.layers(batch["index"], mask)) if emd is not None and cache is not None and cfg.gamma > 0 else zero
    cost = cost_loss(model.op_weights(sample=False), costs)
    total = combined_loss(ce, kd + hid, cost, cfg.gamma, cfg.beta)
    return {"ce": ce, "kd": kd, "emd": hid, "cost": cost, "total": total}


def bilevel_step(model: Supernet, batch_w: dict, batch_a: dict | None, w_opt, a_opt, cache, emd, costs, cfg) -> tuple[dict | None, dict]:
    """One first-order DARTS step: alphas on ``batch_a`` (half B; ``None`` during warm-up),
    then weights on ``batch_w`` (half A). Returns the loss terms of both phases."""
    model.train()
    alpha_terms = None
    if batch_a is not None:
        alpha_terms = loss_terms(model, batch_a, cache, emd, costs, cfg)
        grads = torch.autograd.grad(alpha_terms["total"], model.arch_parameters())
        a_opt.zero_grad(set_to_none=True)
        for p, g in zip(model.arch_parameters(), grads):
            p.grad = g
        a_opt.step()

    weights = [p for g in w_opt.param_groups for p in g["params"]]
    weight_terms = loss_terms(model, batch_w, cache, emd, costs, cfg)
    grads = torch.autograd.grad(weight_terms["total"], weights, allow_unused=True)
    w_opt.zero_grad(set_to_none=True)
    for p, g in zip(weights, grads):
        p.grad = g
    if cfg.clip:
        torch.nn.utils.clip_grad_norm_(weights, cfg.clip)
    w_opt.step()
    if emd is not None:
        emd.update_weights()
    detach = lambda terms: {k: float(v.detach()) for k, v in terms.items()}
    return (detach(alpha_terms) if alpha_terms is not None else None, detach(weight_terms))


__all__ = ["bilevel_step", "loss_terms"]
