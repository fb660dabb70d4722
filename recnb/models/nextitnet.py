"""NextItNet (Yuan et al., WSDM 2019): stacked residual blocks of dilated causal 1-D
convolutions. The reference teacher: depth and width are free."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from recnb.errors import ConfigError
from recnb.models.base import ModelConfig, SeqRecModel


@dataclass
class NextItNetConfig(ModelConfig):
    embedding_size: int = 64
    num_blocks: int = 5  # repetitions of the dilation pattern
    dilations: list = field(default_factory=lambda: [1, 4])
    kernel_size: int = 3
    dropout: float = 0.0
    layer_every: int = 1  # expose a hidden state every this many residual blocks
    # Stochastic depth (Huang et al., ECCV 2016): during training a residual block is skipped
    # per sequence with a probability rising linearly with depth up to this value; a
    # regulariser for deep teachers on small scenes. 0 = off (the default).
    block_drop: float = 0.0
    # Zero padded positions before every convolution: outputs then never depend on how much
    # padding a window has, so batches can be cut to their longest history (short-history
    # scenes: most of a window is padding). Off keeps the published layout, padding included.
    mask_padding: bool = False
    HELP: ClassVar[dict] = {
        "embedding_size": "item embedding and channel width", "num_blocks": "repetitions of the dilation pattern",
        "dilations": "dilations of one repetition's residual blocks", "kernel_size": "causal convolution width",
        "dropout": "dropout in each residual branch", "layer_every": "expose a hidden state every this many blocks",
        "block_drop": "stochastic depth: the deepest block's skip probability in training (0 = off)",
        "mask_padding": "zero padded positions before every convolution, so batches can be cut to their longest history"}
    RANGES: ClassVar[dict] = {"embedding_size": "[1, inf)", "num_blocks": "[1, inf)", "dilations": "[1, inf)", "kernel_size": "[1, inf)", "dropout": "[0, 1)", "layer_every": "[1, inf)", "block_drop": "[0, 1)"}

    def __post_init__(self):
        super().__post_init__()
        if not self.dilations:
            raise ConfigError("NextItNetConfig: dilations must hold at least one dilation")


class CausalConv1d(nn.Module):
    """Conv over time that pads on the left only, so output ``i`` sees inputs ``<= i``.

    Weights are a ``Conv1d``'s, but it runs as one matmul over the ``kernel`` shifted copies
    of the input (channels-last, no transposes): about a third faster on CPU.
    """

    def __init__(self, channels_in: int, channels_out: int, kernel: int, dilation: int = 1):
        super().__init__()
        self.kernel, self.dilation = kernel, dilation
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(channels_in, channels_out, kernel, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, L, C)
        L = x.shape[1]
        xp = F.pad(x, (0, 0, self.pad, 0))
        taps = torch.cat([xp[:, i * self.dilation : i * self.dilation + L] for i in range(self.kernel)], -1)
        w = self.conv.weight.permute(0, 2, 1).reshape(self.conv.out_channels, -1)  # (out, k * in), tap-major
        return F.linear(taps, w, self.conv.bias)


class ResidualBlock(nn.Module):
    """Two dilated causal convs (dilation d then 2d) with layer norm and ReLU, plus a
    residual scale that starts at zero so a deep stack trains stably."""

    def __init__(self, d: int, kernel: int, dilation: int, dropout: float, block_drop: float = 0.0):
        super().__init__()
        self.block_drop = block_drop
        self.conv1 = CausalConv1d(d, d, kernel, dilation)
        self.norm1 = nn.LayerNorm(d)
        self.conv2 = CausalConv1d(d, d, kernel, dilation * 2)
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``keep``: ``(B, L, 1)``, 0 at padding, which each convolution then reads as zeros."""
        h = F.relu(self.norm1(self.conv1(x if keep is None else x * keep)))
        h = F.relu(self.norm2(self.conv2(h if keep is None else h * keep)))
        if self.training and self.block_drop > 0:  # keep or skip the whole branch per sequence
            kept = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.block_drop
            h = h * kept / (1.0 - self.block_drop)
        return x + self.alpha * self.drop(h)


class NextItNet(SeqRecModel):
    name = "nextitnet"
    config_class = NextItNetConfig

    def __init__(self, config: NextItNetConfig):
        super().__init__(config)
        d = config.embedding_size
        self.item_embedding = nn.Embedding(config.num_items + 1, d, padding_idx=0)
        n = config.num_blocks * len(config.dilations)
        self.blocks = nn.ModuleList(
            ResidualBlock(d, config.kernel_size, dil, config.dropout, config.block_drop * (i + 1) / n)
            for i, dil in enumerate(config.dilations * config.num_blocks)
        )
        self.final = nn.Linear(d, d)
        nn.init.normal_(self.item_embedding.weight, 0.0, 1.0 / d**0.5)

    @property
    def cuts_padding(self) -> bool:
        return self.config.mask_padding

    def forward(self, seq: torch.Tensor, offset: int = 0) -> list[torch.Tensor]:
        """``offset``: columns of left padding cut from ``seq`` (no effect: no positions here)."""
        x = self.item_embedding(seq)
        keep = seq.ne(0).unsqueeze(-1).to(x.dtype) if self.config.mask_padding else None
        states = [x]
        for i, block in enumerate(self.blocks, 1):
            x = block(x, keep)
            if i % self.config.layer_every == 0 and i < len(self.blocks):
                states.append(x)
        states.append(self.final(x))
        return states
