"""Several trained models served as one: the (weighted) sum of their item scores, behind the contract.

A teacher does not have to be fast, only right, and the mean of a few independently seeded
models ranks better than any of them. The ensemble is exact and still one model: its states
are the members' states side by side (widths add up), and its item vectors are the members'
item vectors side by side, so the dot product ``score(h)`` is the sum of the members' scores.
Distillation, evaluation, export and every consumer of the contract read it like any model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from recnb.errors import ConfigError
from recnb.models.base import ModelConfig, SeqRecModel


def valid_weights(weights: list, count: int) -> bool:
    """Member weights an ensemble of ``count`` members takes: one finite number >= 0 each."""
    return len(weights) == count and all(isinstance(w, (int, float)) and 0 <= w < math.inf for w in weights)


@dataclass
class EnsembleConfig(ModelConfig):
    # one {"model": name, "config": {...}} per member, in order
    members: list = field(default_factory=list)
    # one weight per member on its scores (empty: all 1), e.g. chosen on validation
    weights: list = field(default_factory=list)
    HELP: ClassVar[dict] = {"members": "the members' model names and configs",
                            "weights": "one weight per member on its scores (empty: all 1)"}

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.members, list) or not self.members or not all(
                isinstance(m, dict) and isinstance(m.get("model"), str) and isinstance(m.get("config"), dict)
                for m in self.members):
            raise ConfigError("ensemble: members must be a non-empty list of {'model': name, 'config': {...}}")
        if self.weights and not valid_weights(self.weights, len(self.members)):
            raise ConfigError(f"ensemble: weights must be {len(self.members)} finite numbers >= 0 (one per member), "
                              f"got {self.weights!r}")
        for m in self.members:
            if m["config"].get("num_items") != self.num_items:
                raise ConfigError(f"ensemble: a {m['model']} member has {m['config'].get('num_items')} items, "
                                  f"the ensemble {self.num_items}")


class Ensemble(SeqRecModel):
    name = "ensemble"
    config_class = EnsembleConfig

    def __init__(self, config: EnsembleConfig):
        super().__init__(config)
        from recnb.models.registry import model_class  # the registry: members of any registered family

        self.members = nn.ModuleList(
            model_class(m["model"])(model_class(m["model"]).config_class.from_dict(m["config"])) for m in config.members)
        if config.max_len < max(m.config.max_len for m in self.members):
            raise ConfigError(f"ensemble: max_len {config.max_len} is shorter than a member's window")
        for m in self.members:
            if not m.scores_by_product:
                raise ConfigError(f"ensemble: a {m.name} member does not score by dot product; its scores cannot add up")
        self.cuts_padding = all(m.cuts_padding for m in self.members)
        was = self.training
        self.eval()  # widths from one run in eval mode: no random number drawn
        with torch.no_grad():
            self._widths = [int(s.shape[-1]) for s in self(torch.ones(1, 1, dtype=torch.long))]
        self.train(was)

    @classmethod
    def of(cls, models: list[SeqRecModel], weights: list[float] | None = None) -> Ensemble:
        """The ensemble of trained ``models`` (their weights copied in), member ``i``'s scores
        times ``weights[i]`` (default 1)."""
        if not models:
            raise ConfigError("ensemble: give at least one model")
        items = {m.config.num_items for m in models}
        if len(items) != 1:
            raise ConfigError(f"ensemble: the members score different catalogues ({sorted(items)} items)")
        config = EnsembleConfig(num_items=items.pop(), max_len=max(m.config.max_len for m in models),
                                members=[{"model": m.name, "config": m.config.to_dict()} for m in models],
                                weights=[float(w) for w in weights or []])
        ensemble = cls(config)
        for mine, given in zip(ensemble.members, models):
            mine.load_state_dict(given.state_dict())
        return ensemble

    def forward(self, seq: torch.Tensor, offset: int = 0) -> list[torch.Tensor]:
        """State ``i`` is the members' states ``i`` side by side; a member with fewer layers
        repeats its output for the layers it lacks."""
        runs = [m(seq, offset=offset) if offset else m(seq) for m in self.members]
        hidden = [torch.cat([r[min(i, len(r) - 1)] for r in runs], -1) for i in range(max(map(len, runs)) - 1)]
        return [*hidden, torch.cat([self._weighted(j, r[-1]) for j, r in enumerate(runs)], -1)]  # only the scored state is weighted

    def last_output(self, seq: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return torch.cat([self._weighted(j, m.last_output(seq, offset)) for j, m in enumerate(self.members)], -1)

    def _weighted(self, member: int, state: torch.Tensor) -> torch.Tensor:
        """A member's scored state times its weight: its share of the summed scores."""
        return state * self.config.weights[member] if self.config.weights else state

    def item_weights(self) -> torch.Tensor:
        return torch.cat([m.item_weights() for m in self.members], 1)

    def layer_widths(self) -> list[int] | None:
        return None if len(set(self._widths)) == 1 else list(self._widths)
