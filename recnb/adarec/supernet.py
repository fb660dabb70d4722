"""The AdaRec supernet: ``K`` cells of ``N`` nodes, every edge a mixture of all ops.

Each cell reads the outputs of the two cells below it (the embedding stands in below the
first); intermediate node ``i`` sums a :class:`MixedOp` applied to every earlier node of
the cell; the cell output is :func:`recnb.adarec.ops.cell_output` of its nodes, exactly
as in the derived :class:`recnb.adarec.student.Student`. The architecture parameters
``alphas[cell, edge, op]`` weigh the ops through a softmax, or a Gumbel-softmax whose
temperature the searcher anneals. The supernet meets the model contract, so the trainer's
``evaluate`` scores it (with plain softmax weights) for early stopping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recnb.adarec.architecture import derive, edges_per_cell
from recnb.adarec.ops import PRIMITIVES, build_op, cell_output, check_op
from recnb.errors import ConfigError
from recnb.models.base import ModelConfig, SeqRecModel

RELAXATIONS = ("softmax", "gumbel")


@dataclass
class SupernetConfig(ModelConfig):
    width: int = 64
    num_cells: int = 4
    num_nodes: int = 3
    primitives: list = field(default_factory=lambda: list(PRIMITIVES))
    share_alphas: bool = False  # one set of alphas for all cells (the released code's choice)
    relaxation: str = "softmax"
    hard: bool = False  # straight-through one-hot Gumbel samples

    RANGES: ClassVar[dict] = {"width": "[1, inf)", "num_cells": "[1, inf)", "num_nodes": "[1, inf)"}

    def __post_init__(self):
        super().__post_init__()  # the base fields' checks (num_items, max_len, dropout...) and the ranges above
        for i, o in enumerate(self.primitives):
            check_op(o, f"primitives[{i}]")
        if self.relaxation not in RELAXATIONS:
            raise ConfigError(f"relaxation: expected one of {', '.join(RELAXATIONS)}, got {self.relaxation!r}")


class MixedOp(nn.Module):
    """``sum_o w_o * o(x)`` over all candidate ops (``zero`` is skipped: it adds nothing)."""

    def __init__(self, width: int, primitives):
        super().__init__()
        self.names = list(primitives)
        self.ops = nn.ModuleList(build_op(o, width) for o in primitives)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = 0.0
        for name, w, op in zip(self.names, weights, self.ops):
            if name != "zero":
                out = out + w * op(x)
        return out if torch.is_tensor(out) else x * 0.0


class SearchCell(nn.Module):
    def __init__(self, width: int, num_nodes: int, primitives):
        super().__init__()
        self.num_nodes = num_nodes
        self.edges = nn.ModuleList(MixedOp(width, primitives) for _ in range(edges_per_cell(num_nodes)))
        self.norm = nn.LayerNorm(width)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        inputs, k = [s0, s1], 0
        for _ in range(self.num_nodes):
            h = sum(self.edges[k + j](x, weights[k + j]) for j, x in enumerate(inputs))
            k += len(inputs)
            inputs.append(h)
        return cell_output(inputs[2:], s1, self.norm)


class Supernet(SeqRecModel):
    name = "supernet"
    config_class = SupernetConfig

    def __init__(self, config: SupernetConfig):
        super().__init__(config)
        d = config.width
        self.item_embedding = nn.Embedding(config.num_items + 1, d, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, 0.0, 1.0 / d**0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        self.cells = nn.ModuleList(SearchCell(d, config.num_nodes, config.primitives) for _ in range(config.num_cells))
        self.final = nn.Linear(d, d)
        n_sets = 1 if config.share_alphas else config.num_cells
        self.alphas = nn.Parameter(1e-3 * torch.randn(n_sets, edges_per_cell(config.num_nodes), len(config.primitives)))
        self.tau = 1.0  # Gumbel temperature, annealed by the searcher
        self.generator: torch.Generator | None = None  # the searcher's, so resumes replay

    # ------------------------------------------------------------------ parameter groups
    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "alphas"]

    def num_params(self, embeddings: bool = True) -> int:
        return sum(p.numel() for p in self.weight_parameters()) - (0 if embeddings else self.item_embedding.weight.numel())

    # ------------------------------------------------------------------ relaxation
    def op_weights(self, sample: bool | None = None) -> torch.Tensor:
        """``(cells, edges, ops)`` mixing weights. Training with ``gumbel`` samples
        Gumbel-softmax at temperature ``tau``; otherwise (and in eval mode) softmax."""
        a = self.alphas
        sample = self.training and self.config.relaxation == "gumbel" if sample is None else sample
        if sample:
            u = torch.rand(a.shape, generator=self.generator, device=a.device if self.generator is None else self.generator.device)
            u = u.to(a.device).clamp(1e-10, 1.0 - 1e-7)
            g = -torch.log(-torch.log(u))
            y = F.softmax((a + g) / self.tau, dim=-1)
            if self.config.hard:
                hard = F.one_hot(y.argmax(-1), y.shape[-1]).to(y.dtype)
                y = hard - y.detach() + y
        else:
            y = F.softmax(a, dim=-1)
        return y.expand(self.config.num_cells, -1, -1) if self.config.share_alphas else y

    def alpha_softmax(self) -> torch.Tensor:
        """``softmax(alpha)`` per cell, edge and op (what the history records)."""
        return F.softmax(self.alphas.detach(), dim=-1).expand(self.config.num_cells, -1, -1).cpu()

    def genotype(self, top_k: int = 2, meta: dict | None = None):
        """The discrete :class:`~recnb.adarec.architecture.Architecture` under the DARTS rule."""
        return derive(self.alpha_softmax().numpy(), self.config.primitives, top_k, meta)

    # ------------------------------------------------------------------ forward
    def forward(self, seq: torch.Tensor) -> list[torch.Tensor]:
        weights = self.op_weights()
        x = self.item_embedding(seq)
        states, s0, s1 = [x], x, x
        for c, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, weights[c])
            states.append(s1)
        states[-1] = self.final(states[-1])
        return states
