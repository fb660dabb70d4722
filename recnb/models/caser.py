"""Caser (Tang & Wang, WSDM 2018): horizontal and vertical convolutions over the last
``window`` items. Applied at every position over the window ending there (so it is causal
and trains all positions in one pass); no user embedding, as recnb models are user-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recnb.models.base import ModelConfig, SeqRecModel


@dataclass
class CaserConfig(ModelConfig):
    embedding_size: int = 64
    window: int = 5
    num_h: int = 16  # horizontal filters per height
    num_v: int = 4  # vertical filters
    dropout: float = 0.4
    HELP: ClassVar[dict] = {"embedding_size": "item embedding width", "window": "history positions each convolution sees",
                            "num_h": "horizontal filters per height", "num_v": "vertical filters",
                            "dropout": "dropout before the output layer"}
    RANGES: ClassVar[dict] = {"embedding_size": "[1, inf)", "window": "[1, inf)", "num_h": "[1, inf)", "num_v": "[1, inf)", "dropout": "[0, 1)"}


class Caser(SeqRecModel):
    name = "caser"
    config_class = CaserConfig

    def __init__(self, config: CaserConfig):
        super().__init__(config)
        d, w = config.embedding_size, config.window
        self.item_embedding = nn.Embedding(config.num_items + 1, d, padding_idx=0)
        self.vertical = nn.Conv2d(1, config.num_v, (w, 1))
        self.horizontal = nn.ModuleList(nn.Conv2d(1, config.num_h, (h, d)) for h in range(1, w + 1))
        self.fc1 = nn.Linear(config.num_v * d + config.num_h * w, d)
        self.fc2 = nn.Linear(d, d)  # RecBole's fc2 (there over [z; user]); recnb models are user-free
        self.drop = nn.Dropout(config.dropout)
        nn.init.normal_(self.item_embedding.weight, 0.0, 1.0 / d**0.5)

    def forward(self, seq: torch.Tensor) -> list[torch.Tensor]:
        B, L = seq.shape
        w, d = self.config.window, self.config.embedding_size
        e = self.item_embedding(seq)  # (B, L, d)
        padded = F.pad(e, (0, 0, w - 1, 0))  # left pad in time
        win = padded.unfold(1, w, 1).permute(0, 1, 3, 2).reshape(B * L, 1, w, d)  # window ending at each i
        v = self.vertical(win).reshape(B * L, -1)
        hs = []
        for conv in self.horizontal:
            h = F.relu(conv(win).squeeze(3))  # (BL, num_h, w - h + 1)
            hs.append(h.max(dim=2).values)
        z = F.relu(self.fc1(self.drop(torch.cat([v] + hs, 1)))).reshape(B, L, d)
        return [e, z, self.fc2(z)]
