"""Distillation parts both methods use: prediction KD, EMD layer mapping, the cached teacher.

- :func:`kd_loss`: prediction-layer distillation, ``KL(p_T || p_S)`` at temperature ``T``
  times ``T**2``.
- :class:`EMDLoss`: hidden-layer many-to-many distillation (BERT-EMD). The ground
  distance ``D_ij = MSE(H^T_i, W H^S_j)`` over valid positions; the flow ``F`` is exact
  optimal transport (``ot.emd``) on the *detached* ``D`` with the layer weights as
  marginals; ``L = sum(F * D) / sum(F)`` (gradient through ``D`` only). After each step
  :meth:`EMDLoss.update_weights` re-weights layers from their transport cost.
- :class:`TeacherCache`: the frozen teacher's outputs, computed once per training window.
"""

from __future__ import annotations

import numpy as np
import ot
import torch
import torch.nn.functional as F
from torch import nn

from recnb.errors import ConfigError
from recnb.models.base import check_contract

WEIGHT_UPDATES = ("softmax", "normalize", "none")


# ----------------------------------------------------------------------------- prediction layer
def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Temperature-scaled KL(teacher || student) over items, averaged over positions, × T².

    Both are ``(P, num_items + 1)`` logits; column 0 (padding) is ignored. A frozen teacher
    (no gradient) takes a fused path with the same value and gradient.
    """
    if teacher_logits.requires_grad:
        return autograd_kd_loss(student_logits, teacher_logits, T)
    return _FrozenTeacherKD.apply(student_logits, teacher_logits, float(T))


def autograd_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """:func:`kd_loss` through torch's autograd (``log_softmax`` + ``kl_div``): a gradient for
    either side; the reference the fused path is timed against (``bench/kd_step.py``)."""
    s = F.log_softmax(student_logits[:, 1:].float() / T, dim=-1)
    t = F.log_softmax(teacher_logits[:, 1:].float() / T, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * T * T


class _FrozenTeacherKD(torch.autograd.Function):
    """``kd_loss`` against a frozen teacher in a few passes over the ``(P, items)`` scores.

    Per row ``KL = sum_j p_j (t_j - s_j) + lse(s) - lse(t)`` (``p`` the teacher's softmax, ``s``
    and ``t`` the scaled logits), and the gradient on the student's logits is ``(softmax(s) -
    p) T / P``: the student's softmax is kept from the forward pass, in the buffer the gradient
    is returned in. Autograd through ``log_softmax`` and ``kl_div`` keeps and revisits several
    full-size intermediates instead, and on a 12k-item catalogue the KD term is a large part
    of a distilled student's step."""

    @staticmethod
    def forward(ctx, student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
        s = student_logits[:, 1:].float()
        t = teacher_logits[:, 1:].float()
        if T != 1.0:
            s, t = s / T, t / T
        p, lse_t = _softmax_and_lse(t, t.new_empty(t.shape))  # contiguous
        grad = s.new_zeros(len(s), s.shape[1] + 1)  # column 0 (padding) gets no gradient
        _, lse_s = _softmax_and_lse(s, grad[:, 1:])  # the student's softmax stays in grad
        # sum_j p_j (t_j - s_j): one BLAS dot per row (one dot over all rows loses float32 precision)
        kl = torch.bmm(p.unsqueeze(1), (t - s).unsqueeze(2)).sum() + (lse_s - lse_t).sum()
        scale = T * T / max(len(s), 1)
        ctx.save_for_backward(grad, p)
        ctx.scale, ctx.dtype, ctx.spent = T / max(len(s), 1), student_logits.dtype, False
        return kl * scale

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        if ctx.spent:  # the kept softmax became the gradient in place
            raise RuntimeError("kd_loss: a second backward through the same loss (retain_graph) is not supported")
        grad, p = ctx.saved_tensors
        grad[:, 1:].sub_(p).mul_(grad_output * ctx.scale)
        ctx.spent = True
        return grad.to(ctx.dtype), None, None


def _softmax_and_lse(x: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(x)`` written into ``out`` and ``logsumexp(x)`` per row, in one shared pass."""
    m = x.amax(-1, keepdim=True)
    torch.sub(x, m, out=out).exp_()
    z = out.sum(-1, keepdim=True)
    return out.div_(z), (m + z.log()).squeeze(-1)


# ----------------------------------------------------------------------------- hidden layers
class EMDLoss(nn.Module):
    """Many-to-many hidden-layer distillation through Earth Mover's Distance.

    ``student_width -> teacher_width`` is one learned linear map shared by all student
    layers; a teacher whose layers differ in width (``teacher_width`` a list, one per layer,
    e.g. GRU4Rec's 128-wide GRU state beside its 64-wide output) gets one map per width.
    ``update`` picks the layer-weight rule: ``softmax`` (``softmax(w / T_emd)``,
    the AdaRec code), ``normalize`` (``w / sum(w)``, later BERT-EMD) or ``none`` (fixed
    uniform weights).
    """

    def __init__(self, teacher_layers: int, student_layers: int, student_width: int, teacher_width: int,
                 update: str = "softmax", T_emd: float = 10.0):
        super().__init__()
        if update not in WEIGHT_UPDATES:
            raise ConfigError(f"emd_update: expected one of {', '.join(WEIGHT_UPDATES)}, got {update!r}")
        widths = [teacher_width] * teacher_layers if isinstance(teacher_width, int) else list(teacher_width)
        if len(widths) != teacher_layers:
            raise ConfigError(f"EMD: {len(widths)} teacher widths for {teacher_layers} teacher layers")
        self.teacher_widths = widths
        self.map = nn.Linear(student_width, widths[-1])  # the scored output's width: the common case
        self.extra_maps = nn.ModuleDict({str(w): nn.Linear(student_width, w) for w in dict.fromkeys(widths) if w != widths[-1]})
        self.update, self.T_emd = update, T_emd
        self.register_buffer("teacher_weights", torch.full((teacher_layers,), 1.0 / teacher_layers, dtype=torch.float64))
        self.register_buffer("student_weights", torch.full((student_layers,), 1.0 / student_layers, dtype=torch.float64))
        self.last_flow: np.ndarray | None = None
        self.last_cost: np.ndarray | None = None

    def distances(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        """``D[i, j] = MSE(teacher_i, map(student_j))``; inputs are ``(P, d)`` per layer."""
        s = torch.stack(student).float()
        if not self.extra_maps:  # one width: all pairs at once
            mapped = self.map(s)  # (N, P, d_t)
            t = torch.stack(teacher).float()  # (M, P, d_t)
            diff = t[:, None] - mapped[None]  # (M, N, P, d_t)
            return diff.pow(2).mean(dim=(-1, -2))
        mapped = {w: (self.map if w == self.teacher_widths[-1] else self.extra_maps[str(w)])(s) for w in set(self.teacher_widths)}
        return torch.stack([(t.float()[None] - mapped[t.shape[-1]]).pow(2).mean(dim=(-1, -2)) for t in teacher])

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
            c = per_layer / np.maximum(buf.cpu().numpy(), 1e-12)
            c = np.maximum(c, 1e-12)
            w = c.sum() / c
            w = torch.as_tensor(w, dtype=torch.float64)
            w = torch.softmax(w / self.T_emd, 0) if self.update == "softmax" else w / w.sum()
            # a softmax of very unequal costs can leave a layer exactly 0, and the next update
            # divides by it: every layer keeps a sliver of mass
            w = w.clamp_min(1e-12)
            buf.copy_((w / w.sum()).to(buf.device))


def emd_flow(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Exact optimal transport plan (POT's ``ot.emd``) between marginals ``a`` (rows) and
    ``b`` (columns), each renormalised to sum to 1 in float64."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return ot.emd(a / a.sum(), b / b.sum(), np.ascontiguousarray(cost, dtype=np.float64))


class _FrozenTeacher:
    """What every way of reading a frozen teacher shares: the teacher itself, frozen on its
    device, its layer widths, its item table (read once: it does not change) and its logits
    from :meth:`output` (the scored state of a batch's valid positions)."""

    widths: list[int]

    def __init__(self, teacher, device: str | torch.device):
        self.teacher = check_contract(teacher).to(device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.device = torch.device(device)
        self._items: torch.Tensor | None = None

    @property
    def width(self) -> int | list[int]:
        """The teacher layers' width, or one width per layer where they differ."""
        return self.widths[0] if len(set(self.widths)) == 1 else list(self.widths)

    def item_weights(self) -> torch.Tensor:
        """The teacher's item vectors in float32 (a teacher that scores by dot product)."""
        if self._items is None:
            with torch.no_grad():
                self._items = self.teacher.item_weights().float()
        return self._items

    def output(self, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, index: torch.Tensor, mask: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher logits ``(P, num_items + 1)`` at the valid positions of windows ``index``;
        with ``items`` (ids) only those columns, ``(P, len(items))`` (a teacher that scores by
        dot product, ``teacher.scores_by_product``)."""
        out = self.output(index, mask)
        with torch.no_grad():
            if items is None:
                return self.teacher.score(out.to(self.device)).to(out.device)
            return (out.to(self.device) @ self.item_weights()[items.to(self.device)].t()).to(out.device)


class TeacherCache(_FrozenTeacher):
    """The frozen teacher's outputs for every training window, computed once.

    Stored as float16 at the windows' valid positions only (target > 0), packed window after
    window: short histories in long windows (Amazon: mostly under 10 of 50) cost no memory
    for their padding, and a batch that drops its leading padding columns reads the same
    rows. Kept: the hidden layers used for EMD (every state after the embedding; the last
    is the scored output), or with ``output_only`` the scored output alone (KD without EMD:
    a wide ensemble teacher's many layers would cost gigabytes); the teacher's logits are
    recomputed from its (cached) output state by one matmul with its item table, which is
    exact and far smaller than caching ``(positions, items)`` logits. ``windows`` stays
    with the cache: a run that reads it trains on exactly these windows.
    """

    def __init__(self, teacher, windows, batch_size: int = 256, device: str | torch.device = "cpu", dtype=torch.float16,
                 output_only: bool = False):
        super().__init__(teacher, device)
        self.windows, self.output_only = windows, output_only
        self.windows_computed = 0
        self.widths: list[int] = []
        valid = windows.targets > 0
        self.counts = valid.sum(1)  # valid positions per window
        self.starts = self.counts.cumsum(0) - self.counts  # first packed row of each window
        self.states = torch.zeros(0, 0, 0)
        # windows run shortest history first, each batch cut to its longest (a teacher that cuts
        # padding): Amazon windows are mostly padding; the rows land in the packed order all the same
        L = windows.inputs.shape[1]
        length = windows.inputs.ne(0).sum(1)
        order = torch.argsort(length, stable=True) if teacher.cuts_padding else torch.arange(len(windows))
        with torch.no_grad():
            for b in range(0, len(windows), batch_size):
                index = order[b : b + batch_size]
                offset = L - int(length[index].max()) if teacher.cuts_padding else 0
                x = windows.inputs[index, offset:].to(device)
                states = (self.teacher(x, offset=offset) if offset else self.teacher(x))[-1 if output_only else 1:]
                if not self.widths:  # narrower layers are zero-padded to the widest and cut back on read
                    self.widths = [int(s.shape[-1]) for s in states]
                    self.states = torch.empty(int(self.counts.sum()), len(states), max(self.widths), dtype=dtype)  # (P, M, d)
                m = valid[index, offset:].to(device)
                d = self.states.shape[-1]
                self.states[self.rows(index)] = torch.stack([F.pad(s[m], (0, d - s.shape[-1])) for s in states], 1).to(dtype).cpu()
                self.windows_computed += len(index)

    @property
    def num_layers(self) -> int:
        return self.states.shape[1]

    def nbytes(self) -> int:
        return self.states.numel() * self.states.element_size()

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """The packed rows of windows ``index``, window after window, positions left to right:
        the order in which ``x[mask]`` lists a batch's valid positions."""
        index = index.cpu()
        counts, starts = self.counts[index], self.starts[index]
        first = counts.cumsum(0) - counts  # where each window's rows begin in the batch
        return torch.arange(int(counts.sum())) + torch.repeat_interleave(starts - first, counts)

    def _checked_rows(self, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`rows` of windows ``index``, refused unless they are ``mask``'s valid positions."""
        rows = self.rows(index)
        if len(rows) != int(mask.sum()):
            raise ValueError(f"teacher cache: the batch has {int(mask.sum())} valid positions, its windows {len(rows)} "
                             "(the mask must be targets > 0 of the cached windows)")
        return rows

    def _read(self, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.states[self._checked_rows(index, mask)].to(mask.device)  # (P, M, d)

    def layers(self, index: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Teacher hidden layers at the valid positions (``mask``) of windows ``index``: ``M x (P, d)``.
        The mask may cover the whole window or only its columns after a padding cut."""
        if self.output_only:
            raise ValueError("teacher cache: built with output_only, it holds no hidden layers (EMD needs them)")
        s = self._read(index, mask)
        return [s[:, i, : self.widths[i]].float() for i in range(s.shape[1])]

    def top(self, k: int, batch_rows: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's ``k`` best items at every cached position and their logits, computed
        once (``(rows, k)`` int32 ids and float16 logits; the padding id never among them):
        KD over them costs ``k`` columns a step instead of the catalogue."""
        if getattr(self, "_top", None) is None or self._top[0].shape[1] != k:
            ids, vals = [], []
            with torch.no_grad():
                for b in range(0, len(self.states), batch_rows):
                    out = self.states[b : b + batch_rows, -1, : self.widths[-1]].float().to(self.device)
                    scores = self.teacher.score(out)
                    scores[:, 0] = float("-inf")
                    v, i = scores.topk(min(k, scores.shape[1] - 1), dim=1)
                    ids.append(i.int().cpu())
                    vals.append(v.half().cpu())
            self._top = (torch.cat(ids), torch.cat(vals))
        return self._top

    def top_logits(self, index: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`top` at the valid positions (``mask``) of windows ``index``: item ids (long) and logits."""
        rows = self._checked_rows(index, mask)
        ids, vals = self.top(k)
        return ids[rows].long().to(mask.device), vals[rows].float().to(mask.device)

    def output(self, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The teacher's scored state ``(P, d)`` at the valid positions of windows ``index``."""
        return self._read(index, mask)[:, -1, : self.widths[-1]].float()


class OnlineTeacher(_FrozenTeacher):
    """The frozen teacher run on each training batch as it is drawn, where a :class:`TeacherCache`
    fixes the windows once: augmented windows (reorder) and overlapping context then keep their
    teacher, at the price of the teacher's forward pass per step. Same reading interface as the
    cache (``output``, ``logits``, ``layers`` of the batch's valid positions) after ``see(batch)``."""

    def __init__(self, teacher, device: str | torch.device = "cpu"):
        super().__init__(teacher, device)
        with torch.no_grad():
            self.widths = [int(s.shape[-1]) for s in self.teacher(torch.ones(1, 2, dtype=torch.long, device=self.device))[1:]]
        self._seen, self._states = None, None

    @property
    def num_layers(self) -> int:
        return len(self.widths)

    def see(self, batch: dict) -> None:
        """Run the teacher on ``batch["inputs"]`` (once per batch; a batch cut of its leading
        padding is run as cut, or padded back for a teacher that does not cut padding)."""
        inputs, offset = batch["inputs"], batch.get("offset", 0)
        if self._seen is inputs:
            return
        with torch.no_grad():
            if offset and not self.teacher.cuts_padding:
                states = [s[:, offset:] for s in self.teacher(F.pad(inputs, (offset, 0)))]
            else:
                states = self.teacher(inputs, offset=offset) if offset else self.teacher(inputs)
        self._seen, self._states = inputs, states[1:]

    def layers(self, index: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        return [s[mask].float() for s in self._states]

    def output(self, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self._states[-1][mask].float()
