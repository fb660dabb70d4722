"""AdaRec's losses, and the cached teacher targets they read.

- :func:`kd_loss`: prediction-layer distillation, ``KL(p_T || p_S)`` at temperature ``T``
  times ``T**2``.
- :class:`EMDLoss`: hidden-layer many-to-many distillation (BERT-EMD). The ground
  distance ``D_ij = MSE(H^T_i, W H^S_j)`` over valid positions; the flow ``F`` is exact
  optimal transport (``ot.emd``) on the *detached* ``D`` with the layer weights as
  marginals; ``L = sum(F * D) / sum(F)`` (gradient through ``D`` only). After each step
  :meth:`EMDLoss.update_weights` re-weights layers from their transport cost.
- :func:`cost_loss`: expected cost of the supernet under its current op weights.
- :func:`combined_loss`: ``(1 - gamma) CE + gamma KD + beta L_E``.
- :class:`TeacherCache`: the frozen teacher's outputs, computed once per training window.
"""

from __future__ import annotations

import numpy as np
import ot
import torch
import torch.nn.functional as F
from torch import nn

from recnb.errors import ConfigError

WEIGHT_UPDATES = ("softmax", "normalize", "none")


# ----------------------------------------------------------------------------- prediction layer
def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Temperature-scaled KL(teacher || student) over items, averaged over positions, × T².

    Both are ``(P, num_items + 1)`` logits; column 0 (padding) is ignored.
    """
    s = F.log_softmax(student_logits[:, 1:].float() / T, dim=-1)
    t = F.log_softmax(teacher_logits[:, 1:].float() / T, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * T * T


# ----------------------------------------------------------------------------- hidden layers
class EMDLoss(nn.Module):
    """Many-to-many hidden-layer distillation through Earth Mover's Distance.

    ``student_width -> teacher_width`` is one learned linear map shared by all student
    layers. ``update`` picks the layer-weight rule: ``softmax`` (``softmax(w / T_emd)``,
    the AdaRec code), ``normalize`` (``w / sum(w)``, later BERT-EMD) or ``none`` (fixed
    uniform weights).
    """

    def __init__(self, teacher_layers: int, student_layers: int, student_width: int, teacher_width: int,
                 update: str = "softmax", T_emd: float = 10.0):
        super().__init__()
        if update not in WEIGHT_UPDATES:
            raise ConfigError(f"emd_update: expected one of {', '.join(WEIGHT_UPDATES)}, got {update!r}")
        self.map = nn.Linear(student_width, teacher_width)
        self.update, self.T_emd = update, T_emd
        self.register_buffer("teacher_weights", torch.full((teacher_layers,), 1.0 / teacher_layers, dtype=torch.float64))
        self.register_buffer("student_weights", torch.full((student_layers,), 1.0 / student_layers, dtype=torch.float64))
        self.last_flow: np.ndarray | None = None
        self.last_cost: np.ndarray | None = None

    def distances(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        """``D[i, j] = MSE(teacher_i, map(student_j))``; inputs are ``(P, d)`` per layer."""
        mapped = self.map(torch.stack(student).float())  # (N, P, d_t)
        t = torch.stack(teacher).float()  # (M, P, d_t)
        diff = t[:, None] - mapped[None]  # (M, N, P, d_t)
        return diff.pow(2).mean(dim=(-1, -2))

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        D = self.distances(student, teacher)
        flow = emd_flow(self.teacher_weights.cpu().numpy(), self.student_weights.cpu().numpy(), D.detach().double().cpu().numpy())
        self.last_flow, self.last_cost = flow, D.detach().double().cpu().numpy()
        f = torch.as_tensor(flow, dtype=D.dtype, device=D.device)
        return (f * D).sum() / f.sum()

    @torch.no_grad()
    def update_weights(self) -> None:
        """BERT-EMD's cost attention from the last flow: ``c_i = sum_j F_ij D_ij / w_i``,
        ``w_i = sum(c) / c_i``, then ``softmax(w / T_emd)`` or ``w / sum(w)``."""
        if self.update == "none" or self.last_flow is None:
            return
        fd = self.last_flow * self.last_cost
        for buf, per_layer in ((self.teacher_weights, fd.sum(1)), (self.student_weights, fd.sum(0))):
            c = per_layer / buf.cpu().numpy()
            c = np.maximum(c, 1e-12)
            w = c.sum() / c
            w = torch.as_tensor(w, dtype=torch.float64)
            w = torch.softmax(w / self.T_emd, 0) if self.update == "softmax" else w / w.sum()
            buf.copy_(w.to(buf.device))


def emd_flow(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Exact optimal transport plan (POT's ``ot.emd``) between marginals ``a`` (rows) and
    ``b`` (columns), each renormalised to sum to 1 in float64."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return ot.emd(a / a.sum(), b / b.sum(), np.ascontiguousarray(cost, dtype=np.float64))


# ----------------------------------------------------------------------------- efficiency
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
class TeacherCache:
    """The frozen teacher's outputs for every training window, computed once.

    Stored per window as float16: the hidden layers used for EMD (every state after the
    embedding; the last is the scored output) and nothing else: the teacher's logits are
    recomputed from its (cached) output state by one matmul with its item table, which is
    exact and far smaller than caching ``(positions, items)`` logits.
    """

    def __init__(self, teacher, windows, batch_size: int = 256, device: str | torch.device = "cpu", dtype=torch.float16):
        self.teacher = teacher.to(device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.device = torch.device(device)
        self.windows_computed = 0
        chunks = []
        with torch.no_grad():
            for b in range(0, len(windows), batch_size):
                states = self.teacher(windows.inputs[b : b + batch_size].to(device))[1:]
                chunks.append(torch.stack(states, 2).to(dtype).cpu())  # (B, L, M, d)
                self.windows_computed += len(states[0])
        self.states = torch.cat(chunks) if chunks else torch.zeros(0)
        self.item_weights = self.teacher.item_weights().detach().float().to(device)

    @property
    def num_layers(self) -> int:
        return self.states.shape[2]

    @property
    def width(self) -> int:
        return self.states.shape[3]

    def nbytes(self) -> int:
        return self.states.numel() * self.states.element_size()

    def layers(self, index: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Teacher hidden layers at the valid positions of windows ``index``: ``M x (P, d)``."""
        s = self.states[index.cpu()].to(mask.device)[mask]  # (P, M, d)
        return [s[:, i].float() for i in range(s.shape[1])]

    def logits(self, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Teacher logits ``(P, num_items + 1)`` at the valid positions of windows ``index``."""
        out = self.states[index.cpu(), :, -1].to(mask.device)[mask].float()
        return out @ self.item_weights.t().to(out.device)
