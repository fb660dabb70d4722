"""The derived student: built from an :class:`~recnb.adarec.architecture.Architecture`
and the op registry alone (no supernet code, no alphas).

It meets the model contract, so ``fit``, ``evaluate`` and the checkpoint functions treat
it like any other model; the registry name is ``"student"`` and the architecture travels
inside the config (and so inside ``model.pt``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from recnb.adarec.architecture import Architecture
from recnb.adarec.ops import build_op, cell_output
from recnb.models import register_model
from recnb.models.base import ModelConfig, SeqRecModel


@dataclass
class StudentConfig(ModelConfig):
    architecture: dict = field(default_factory=dict)  # Architecture.to_dict()
    width: int = 64
    dropout: float = 0.0  # on the embeddings and every cell's output while training
    RANGES: ClassVar[dict] = {"width": "[1, inf)", "dropout": "[0, 1)"}

    def __post_init__(self):
        if isinstance(self.architecture, Architecture):
            self.architecture = self.architecture.to_dict()
        super().__post_init__()


class StudentCell(nn.Module):
    def __init__(self, width: int, nodes):
        super().__init__()
        self.inputs = [[e.input for e in node] for node in nodes]
        self.ops = nn.ModuleList(nn.ModuleList(build_op(e.op, width) for e in node) for node in nodes)
        self.norm = nn.LayerNorm(width)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [s0, s1]
        for inputs, ops in zip(self.inputs, self.ops):
            states.append(sum(op(states[i]) for i, op in zip(inputs, ops)))
        return cell_output(states[2:], s1, self.norm)


@register_model
class Student(SeqRecModel):
    name = "student"
    config_class = StudentConfig

    def __init__(self, config: StudentConfig):
        super().__init__(config)
        self.architecture = Architecture.from_dict(config.architecture, where="student.architecture")
        d = config.width
        self.item_embedding = nn.Embedding(config.num_items + 1, d, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, 0.0, 1.0 / d**0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        self.cells = nn.ModuleList(StudentCell(d, cell) for cell in self.architecture.cells)
        self.final = nn.Linear(d, d)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()

    def forward(self, seq: torch.Tensor) -> list[torch.Tensor]:
        x = self.dropout(self.item_embedding(seq))
        states, s0, s1 = [x], x, x
        for cell in self.cells:
            s0, s1 = s1, self.dropout(cell(s0, s1))
            states.append(s1)
        states[-1] = self.final(states[-1])
        return states

    @classmethod
    def from_architecture(cls, architecture: Architecture | dict, num_items: int, width: int = 64, max_len: int = 50,
                          dropout: float = 0.0) -> Student:
        arch = architecture.to_dict() if isinstance(architecture, Architecture) else architecture
        return cls(StudentConfig(num_items=num_items, max_len=max_len, architecture=arch, width=width, dropout=dropout))
