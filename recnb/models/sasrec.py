"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence.

Post-norm blocks as in RecBole (attention, dropout, residual, LayerNorm; then a GELU
feed-forward the same way), attention through ``scaled_dot_product_attention``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recnb.errors import ConfigError
from recnb.models.base import ModelConfig, SeqRecModel, init_weights


@dataclass
class SASRecConfig(ModelConfig):
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.5
    attn_dropout: float = 0.5
    # "slot": position = slot in the left-padded window. "first_item": position 0 is the
    # first real item, as in RecBole, so padding never changes an output and a short
    # history's last position tells its length. Measured on ml-100k (3 seeds, docs/benchmarks.md):
    # no better than "slot", which the documented numbers use, so "slot" stays the default.
    # "lag": no position embedding; each head's attention adds a learned bias per lag (how many
    # steps back a key is), so a position's output depends only on the items before it and how
    # long ago they came, never on where the window starts: every training target is scored as
    # the last position of a test history is. Measured on Amazon Beauty (3 seeds, docs/benchmarks.md):
    # no better than "slot" for SASRec or BSARec.
    positions: str = "slot"
    # "post": LayerNorm after each residual sum (RecBole's blocks). "pre": LayerNorm before each
    # sub-layer, residual sums left unnormalised, one LayerNorm after the last block (the original
    # SASRec's layout): gradients reach the embeddings undamped.
    norm: str = "post"
    HELP: ClassVar[dict] = {"hidden_size": "model width", "num_layers": "transformer blocks", "num_heads": "attention heads",
                            "inner_size": "feed-forward width", "dropout": "hidden dropout",
                            "attn_dropout": "attention dropout",
                            "positions": "slot (position = slot in the left-padded window), first_item or lag (a learned attention bias per lag)",
                            "norm": "post (LayerNorm after each residual sum) or pre (before each sub-layer, one after the last block)"}
    RANGES: ClassVar[dict] = {"hidden_size": "[1, inf)", "num_layers": "[1, inf)", "num_heads": "[1, inf)", "inner_size": "[1, inf)", "dropout": "[0, 1)", "attn_dropout": "[0, 1)"}

    def __post_init__(self):
        super().__post_init__()
        if self.positions not in ("first_item", "slot", "lag"):
            raise ConfigError(f"sasrec: positions must be slot, first_item or lag, got {self.positions!r}")
        if self.norm not in ("post", "pre"):
            raise ConfigError(f"sasrec: norm must be post or pre, got {self.norm!r}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"sasrec: hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}")


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``last_only``: queries of the last position only (keys and values of all), ``(B, 1, d)``."""
        B, L, d = x.shape
        if last_only:
            q = F.linear(x[:, -1:], self.qkv.weight[:d], self.qkv.bias[:d]).view(B, 1, self.heads, d // self.heads)
            k, v = F.linear(x, self.qkv.weight[d:], self.qkv.bias[d:]).view(B, L, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            q, mask, L = q.transpose(1, 2), mask[:, :, -1:], 1
        else:
            q, k, v = self.qkv(x).view(B, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, L, d))


class Block(nn.Module):
    def __init__(self, c: SASRecConfig):
        super().__init__()
        d = c.hidden_size
        self.attn = CausalSelfAttention(d, c.num_heads, c.attn_dropout)
        self.norm1 = nn.LayerNorm(d, eps=1e-12)
        self.ff = nn.Sequential(nn.Linear(d, c.inner_size), nn.GELU(), nn.Linear(c.inner_size, d))
        self.norm2 = nn.LayerNorm(d, eps=1e-12)
        self.drop = nn.Dropout(c.dropout)
        self.pre = c.norm == "pre"

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``last_only``: the last position's output only, ``(B, 1, d)`` (it reads every position)."""
        if self.pre:
            x = (x[:, -1:] if last_only else x) + self.drop(self.attn(self.norm1(x), mask, last_only))
            return x + self.drop(self.ff(self.norm2(x)))
        x = self.norm1((x[:, -1:] if last_only else x) + self.drop(self.attn(x, mask, last_only)))
        return self.norm2(x + self.drop(self.ff(x)))


class SASRec(SeqRecModel):
    name = "sasrec"
    config_class = SASRecConfig
    cuts_padding = True  # padding is masked out of attention; ``offset`` keeps slot positions
    block_class = Block

    def __init__(self, config: SASRecConfig):
        super().__init__(config)
        if config.hidden_size % config.num_heads:
            raise ConfigError(f"sasrec: hidden_size {config.hidden_size} is not divisible by num_heads {config.num_heads}")
        d = config.hidden_size
        self.item_embedding = nn.Embedding(config.num_items + 1, d, padding_idx=0)
        if config.positions == "lag":
            self.lag_bias = nn.Parameter(torch.zeros(config.num_heads, config.max_len))
        else:
            self.position_embedding = nn.Embedding(config.max_len, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(self.block_class(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(d, eps=1e-12) if config.norm == "pre" else nn.Identity()
        init_weights(self)

    def forward(self, seq: torch.Tensor, offset: int = 0) -> list[torch.Tensor]:
        """``offset``: columns of left padding dropped from ``seq`` (slot positions count them)."""
        x, mask = self._embed(seq, offset), self._context(seq)
        states = [x]
        for layer in self.layers:
            x = layer(x, mask)
            states.append(x)
        states[-1] = self.final_norm(states[-1])
        return states

    def last_output(self, seq: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """The last position's output with the last block run for that position alone: the
        same numbers as ``forward(seq)[-1][:, -1]`` at a fraction of the last block's work."""
        x, mask = self._embed(seq, offset), self._context(seq)
        for layer in self.layers[:-1]:
            x = layer(x, mask)
        return self.final_norm(self.layers[-1](x, mask, last_only=True)[:, 0])

    def _context(self, seq: torch.Tensor):
        """What every block reads besides its input: here the attention mask."""
        return self._attention_mask(seq)

    def _attention_mask(self, seq: torch.Tensor) -> torch.Tensor:
        """:func:`attention_mask`, or with ``positions="lag"`` the float mask that adds each
        head's bias for a key's lag, ``(B, heads, L, L)``."""
        allowed = attention_mask(seq)
        if self.config.positions != "lag":
            return allowed
        L = seq.shape[1]
        steps = torch.arange(L, device=seq.device)
        bias = self.lag_bias[:, (steps[:, None] - steps[None, :]).clamp(0, self.config.max_len - 1)]
        return bias.masked_fill(~allowed, float("-inf"))

    def _embed(self, seq: torch.Tensor, offset: int) -> torch.Tensor:
        x = self.item_embedding(seq)
        if self.config.positions != "lag":  # lag positions live in the attention mask instead
            pos = torch.arange(offset, offset + seq.shape[1], device=seq.device).expand_as(seq)
            if self.config.positions == "first_item":  # shift each row by its leading padding
                pos = (pos - offset - (seq.ne(0).cumsum(1) == 0).sum(1, keepdim=True)).clamp(min=0)
            x = x + self.position_embedding(pos.clamp(max=self.config.max_len - 1))
        return self.drop(self.norm(x))


def attention_mask(seq: torch.Tensor) -> torch.Tensor:
    """``(B, 1, L, L)``, True = may attend: earlier real items and always itself (so a
    padded row never becomes all-masked and NaN)."""
    L = seq.shape[1]
    causal = torch.tril(torch.ones(L, L, dtype=torch.bool, device=seq.device))
    allowed = causal.unsqueeze(0) & (seq != 0).unsqueeze(1)
    return (allowed | torch.eye(L, dtype=torch.bool, device=seq.device)).unsqueeze(1)
