"""The one contract every sequential model meets.

``forward(seq)`` returns the per-layer hidden states, embedding output first, each
``(B, L, d)``; ``score(h)`` turns a hidden state into logits over all items (column 0 is
padding and is never recommended). Position ``i`` never sees positions ``> i``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
from torch import nn

from recnb.errors import ConfigError, from_checked_dict


@dataclass
class ModelConfig:
    """Shared fields; each model adds its own. Round-trips through JSON."""

    num_items: int = 0
    max_len: int = 50

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return from_checked_dict(cls, d, cls.__name__)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


class SeqRecModel(nn.Module):
    """Base class: item embedding (``padding_idx=0``), tied scoring, parameter counts."""

    name = "base"
    config_class = ModelConfig
    # True where the outputs at real positions stay the same when columns that are padding in
    # every row are dropped from the left of a batch, given ``forward(seq, offset=<columns
    # dropped>)``: training then cuts each batch to its longest history (``TrainConfig.batch_targets``)
    cuts_padding = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.num_items <= 0:
            raise ConfigError(f"{self.name}: num_items must be positive, got {config.num_items}")
        self.config = config

    # subclasses set self.item_embedding and implement forward()
    def forward(self, seq: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def output(self, seq: torch.Tensor) -> torch.Tensor:
        """The last hidden state, the one scored against items."""
        return self.forward(seq)[-1]

    def item_weights(self) -> torch.Tensor:
        """Item vectors the output is scored against (tied to the input embedding)."""
        return self.item_embedding.weight

    def score(self, h: torch.Tensor) -> torch.Tensor:
        """Logits over all items (``..., num_items + 1``) from an output hidden state."""
        return h @ self.item_weights().t()

    def num_params(self, embeddings: bool = True) -> int:
        total = sum(p.numel() for p in self.parameters())
        if not embeddings:
            total -= sum(p.numel() for n, p in self.named_parameters() if _is_embedding(n))
        return total


def _is_embedding(name: str) -> bool:
    return "item_embedding" in name or "position_embedding" in name


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Normal(0, std) init for linear and embedding weights, zero bias (as RecBole does)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
