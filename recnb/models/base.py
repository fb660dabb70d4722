"""The one contract every sequential model meets, and its check.

``forward(seq)`` returns the per-layer hidden states, embedding output first, state ``i``
of shape ``(B, L, layer_widths()[i])`` (one width for all layers unless the model declares
otherwise, as GRU4Rec does); ``score(h)`` turns the last state into logits over all items
(column 0 is padding and is never recommended); ``last_output(seq)`` is ``forward(seq)[-1][:, -1]``,
what ranking reads, which a model may compute with less work; every consumer scores through ``score()``
(a model may rank by distance rather than a dot product). Position ``i`` never sees
positions ``> i``. :func:`check_contract` refuses a model that breaks this.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from recnb.errors import ConfigError, check_fields, from_checked_dict


@dataclass
class ModelConfig:
    """Shared fields; each model adds its own. Round-trips through JSON."""

    num_items: int = 0
    max_len: int = 50
    # allowed interval per field (``check_fields``); subclasses add their own to this one
    RANGES: ClassVar[dict] = {"num_items": "[0, inf)", "max_len": "[1, inf)"}

    def __post_init__(self):
        ranges = {}
        for klass in reversed(type(self).__mro__):
            ranges.update(vars(klass).get("RANGES", {}))
        check_fields(self, ranges, type(self).__name__)

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
            raise ConfigError(f"{self.name}: num_items must be positive, got {config.num_items} "
                              "(pass num_items=scene.num_items)")
        self.config = config

    # subclasses set self.item_embedding and implement forward()
    def forward(self, seq: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def output(self, seq: torch.Tensor) -> torch.Tensor:
        """The last hidden state, the one scored against items."""
        return self.forward(seq)[-1]

    def last_output(self, seq: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """The last position's output state ``(B, d)``, all that ranking reads. A model may
        compute it with less work than ``forward`` (SASRec runs its last block for that
        position only); ``offset`` as in ``forward`` for ``cuts_padding`` models."""
        return (self(seq, offset=offset) if offset else self(seq))[-1][:, -1]

    def item_weights(self) -> torch.Tensor:
        """Item vectors the output is scored against (tied to the input embedding)."""
        return self.item_embedding.weight

    def score(self, h: torch.Tensor) -> torch.Tensor:
        """Logits over all items (``..., num_items + 1``) from an output hidden state."""
        return h @ self.item_weights().t()

    @property
    def scores_by_product(self) -> bool:
        """True when :meth:`score` is the output dot :meth:`item_weights` (this class's): any
        item's column can be scored alone, and scores of several models add up. A model with
        its own ``score`` (an L2 distance) is read in full."""
        return type(self).score is SeqRecModel.score

    def layer_widths(self) -> list[int] | None:
        """Width of each state ``forward`` returns; ``None`` (the default) declares them all
        equal. A model whose layers differ in width overrides this."""
        return None

    def num_params(self, embeddings: bool = True) -> int:
        total = sum(p.numel() for p in self.parameters())
        if not embeddings:
            total -= sum(p.numel() for n, p in self.named_parameters() if _is_embedding(n))
        return total


@torch.no_grad()
def check_contract(model: nn.Module) -> nn.Module:
    """Run ``model`` once on a two-item history and refuse it, with a ``ConfigError`` naming
    it, if its states or scores break the contract. Draws no random numbers (eval mode)."""
    name = getattr(model, "name", type(model).__name__)
    num_items = getattr(getattr(model, "config", None), "num_items", None)
    if not (hasattr(model, "score") and num_items):
        raise ConfigError(f"{name}: not a recnb model (needs config.num_items, forward() and score())")
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        states = model(torch.ones(1, 2, dtype=torch.long, device=device))
        if not isinstance(states, (list, tuple)) or not states or any(s.dim() != 3 or s.shape[:2] != (1, 2) for s in states):
            raise ConfigError(f"{name}: breaks the model contract: forward() must return a list of (B, L, d) states")
        widths = [int(s.shape[-1]) for s in states]
        declared = model.layer_widths() if hasattr(model, "layer_widths") else None
        if declared is None and len(set(widths)) > 1:
            raise ConfigError(f"{name}: breaks the model contract: states of widths {widths} but layer_widths() "
                              "declares them equal")
        if declared is not None and list(declared) != widths:
            raise ConfigError(f"{name}: breaks the model contract: layer_widths() says {list(declared)}, "
                              f"forward() returns {widths}")
        last = model.last_output(torch.ones(1, 2, dtype=torch.long, device=device)) if hasattr(model, "last_output") \
            else states[-1][:, -1]
        if tuple(last.shape) != (1, widths[-1]) or not torch.allclose(last, states[-1][:, -1], atol=1e-4):
            raise ConfigError(f"{name}: breaks the model contract: last_output() is not forward()'s last state "
                              "at the last position")
        scores = model.score(states[-1])
        if tuple(scores.shape) != (1, 2, num_items + 1):
            raise ConfigError(f"{name}: breaks the model contract: score() gives {tuple(scores.shape)}, "
                              f"expected (B, L, num_items + 1 = {num_items + 1})")
    finally:
        model.train(was_training)
    return model


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
