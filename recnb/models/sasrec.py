"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recnb.models.base import ModelConfig, SeqRecModel, init_weights


@dataclass
class SASRecConfig(ModelConfig):
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.5
    attn_dropout: float = 0.5


class SASRec(SeqRecModel):
    name = "sasrec"
    config_class = SASRecConfig

    def __init__(self, config: SASRecConfig):
        super().__init__(config)
        d = config.hidden_size
        self.item_embedding = nn.Embedding(config.num_items + 1, d, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_len, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d, config.num_heads, config.inner_size, config.dropout, activation="gelu",
                batch_first=True, norm_first=False, layer_norm_eps=1e-12,
            )
            for _ in range(config.num_layers)
        )
        for layer in self.layers:  # attention dropout separate from hidden dropout, as in RecBole
            layer.self_attn.dropout = config.attn_dropout
        init_weights(self)

    def forward(self, seq: torch.Tensor) -> list[torch.Tensor]:
        L = seq.shape[1]
        pos = torch.arange(L, device=seq.device).clamp(max=self.config.max_len - 1)
        x = self.drop(self.norm(self.item_embedding(seq) + self.position_embedding(pos)))
        states = [x]
        mask = self.attention_mask(seq)
        for layer in self.layers:
            x = layer(x, src_mask=mask)
            states.append(x)
        return states

    def attention_mask(self, seq: torch.Tensor) -> torch.Tensor:
        """Causal and padding-aware: a position attends to earlier real items and itself
        (itself always, so padded rows never become all-masked NaNs)."""
        B, L = seq.shape
        future = torch.triu(torch.ones(L, L, dtype=torch.bool, device=seq.device), 1)
        blocked = future.unsqueeze(0) | (seq == 0).unsqueeze(1)  # (B, L, L): True = not allowed
        blocked = blocked & ~torch.eye(L, dtype=torch.bool, device=seq.device)
        return blocked.repeat_interleave(self.config.num_heads, dim=0)
