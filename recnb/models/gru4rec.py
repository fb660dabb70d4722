"""GRU4Rec (Hidasi et al., ICLR 2016) as in RecBole: embedding, GRU, dense back to the
embedding width so scores stay tied to the item embeddings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from recnb.models.base import ModelConfig, SeqRecModel


@dataclass
class GRU4RecConfig(ModelConfig):
    embedding_size: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.3
    # Read padding as a zero input. The GRU has no biases, so its state then stays exactly zero
    # through leading padding, outputs never depend on how much padding a window has, and
    # batches can be cut to their longest history. Off keeps RecBole's layout, where the
    # padding row of the embedding holds its random initial values and moves the state.
    mask_padding: bool = False
    HELP: ClassVar[dict] = {"embedding_size": "item embedding width", "hidden_size": "GRU state width",
                            "num_layers": "stacked GRU layers", "dropout": "dropout on the item embeddings",
                            "mask_padding": "read padding as a zero input, so batches can be cut to their longest history"}
    RANGES: ClassVar[dict] = {"embedding_size": "[1, inf)", "hidden_size": "[1, inf)", "num_layers": "[1, inf)", "dropout": "[0, 1)"}


class GRU4Rec(SeqRecModel):
    name = "gru4rec"
    config_class = GRU4RecConfig

    def __init__(self, config: GRU4RecConfig):
        super().__init__(config)
        self.item_embedding = nn.Embedding(config.num_items + 1, config.embedding_size, padding_idx=0)
        self.drop = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.embedding_size, config.hidden_size, config.num_layers, batch_first=True, bias=False)
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        nn.init.xavier_normal_(self.item_embedding.weight)
        for w in self.gru.parameters():
            nn.init.xavier_uniform_(w)

    def layer_widths(self) -> list[int]:
        """Embedding, the GRU's state, and the dense layer back to the embedding width."""
        return [self.config.embedding_size, self.config.hidden_size, self.config.embedding_size]

    @property
    def cuts_padding(self) -> bool:
        return self.config.mask_padding

    def forward(self, seq: torch.Tensor, offset: int = 0) -> list[torch.Tensor]:
        """``offset``: columns of left padding cut from ``seq`` (no effect: no positions here)."""
        e = self.drop(self.item_embedding(seq))
        if self.config.mask_padding:
            e = e * seq.ne(0).unsqueeze(-1).to(e.dtype)
        h, _ = self.gru(e)  # a GRU is causal by construction
        return [e, h, self.dense(h)]
