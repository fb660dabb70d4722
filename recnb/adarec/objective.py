"""AdaRec's target-oriented objective: the cost-sensitive loss over the supernet's op
weights and the total ``(1 - gamma) CE + gamma KD + beta L_E`` (the KD and EMD parts live
in :mod:`recnb.kd`, shared with DLLM2Rec's students)."""

from __future__ import annotations

import torch


def cost_loss(op_weights: torch.Tensor, op_costs: torch.Tensor) -> torch.Tensor:
    """Expected cost per edge: ``sum_cells sum_edges sum_ops w_o * cost_o / #edges``.

    ``op_weights`` is ``(cells, edges, ops)`` (softmax or Gumbel weights); ``op_costs`` is
    ``(ops,)``, normalised so the costliest op costs 1, so the loss lies in [0, 1] whatever
    the number of cells and nodes (the spec's plain sum, divided by the edge count, so one
    ``beta`` means the same for every supernet size). Rises with the weight of any op
    costlier than the others on its edge.
    """
    per_edge = (op_weights * op_costs.to(op_weights.device, op_weights.dtype)).sum(-1)
    return per_edge.mean()


def combined_loss(ce: torch.Tensor, kd: torch.Tensor, cost: torch.Tensor, gamma: float = 0.5, beta: float = 0.1) -> torch.Tensor:
    """The target-oriented total ``(1 - gamma) CE + gamma KD + beta L_E`` (``kd`` already
    holds the prediction and EMD parts)."""
    return (1.0 - gamma) * ce + gamma * kd + beta * cost


# ----------------------------------------------------------------------------- teacher targets
