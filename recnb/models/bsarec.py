"""BSARec (Shin et al., AAAI 2024), causal: SASRec blocks whose token mixing blends causal
self-attention with a frequency filter.

BSARec's filter keeps the ``c`` lowest Fourier frequencies of the window (the slow trend
of a history) and scales the rest by a learned ``beta`` per channel; a block mixes it with
attention as ``alpha * filter + (1 - alpha) * attention``. The released model filters the
whole window and reads only its last position, training on every prefix. Here the filter is
that last-position read, for every position at once: the output at ``t`` is the last row of
the low-pass projection of the window ending at ``t`` (history before the window start
counts as zeros), a fixed causal convolution. So every position sees only its past, the
model trains on all positions in one pass like SASRec, and padding can be cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from recnb.errors import ConfigError
from recnb.models.sasrec import Block as SASRecBlock
from recnb.models.sasrec import SASRec, SASRecConfig


@dataclass
class BSARecConfig(SASRecConfig):
    # BSARec's Beauty settings: alpha 0.7, c 5 (of a 50-window's 26 frequencies)
    filter_mix: float = 0.7
    filter_bins: int = 5
    HELP: ClassVar[dict] = {**SASRecConfig.HELP,
                            "filter_mix": "weight of the frequency filter against attention in each block (alpha)",
                            "filter_bins": "lowest Fourier frequencies of the window the filter keeps (c)"}
    RANGES: ClassVar[dict] = {**SASRecConfig.RANGES, "filter_mix": "[0, 1]", "filter_bins": "[1, inf)"}

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.filter_mix <= 1.0:
            raise ConfigError(f"bsarec: filter_mix must be in [0, 1], got {self.filter_mix}")
        if not 1 <= self.filter_bins <= self.max_len // 2 + 1:
            raise ConfigError(f"bsarec: filter_bins must be in [1, {self.max_len // 2 + 1}] for max_len {self.max_len}, "
                              f"got {self.filter_bins}")


def low_pass_kernel(window: int, bins: int, length: int | None = None) -> torch.Tensor:
    """``(length, length)`` lower-triangular Toeplitz matrix ``T`` (``length`` defaults to
    ``window``): ``T @ x`` at row ``t`` is what keeping the ``bins`` lowest frequencies of the
    ``window`` positions ending at ``t`` (``rfft``/``irfft``, orthonormal) gives at that window's
    last position; nothing more than ``window - 1`` steps back counts."""
    length = length or window
    spectrum = torch.fft.rfft(torch.eye(window, dtype=torch.float64), dim=0, norm="ortho")
    spectrum[bins:] = 0
    projection = torch.fft.irfft(spectrum, n=window, dim=0, norm="ortho")  # symmetric (window, window)
    taps = projection[-1].flip(0)  # taps[k]: weight of the item k steps back
    taps = torch.cat([taps, taps.new_zeros(max(0, length - window))])
    lag = torch.arange(length)[:, None] - torch.arange(length)[None, :]
    return torch.where(lag >= 0, taps[lag.clamp(min=0)], torch.zeros((), dtype=taps.dtype)).float()


class FilterBlock(SASRecBlock):
    """A SASRec block (either norm layout) whose attention sub-layer is
    ``alpha * filter + (1 - alpha) * attention``; post-norm normalises each branch with its
    own residual, as BSARec does."""

    def __init__(self, c: BSARecConfig):
        super().__init__(c)
        self.alpha, self.window, self.bins = c.filter_mix, c.max_len, c.filter_bins
        self.register_buffer("kernel", low_pass_kernel(c.max_len, c.filter_bins), persistent=False)
        self.sqrt_beta = nn.Parameter(torch.randn(1, 1, c.hidden_size))
        self.norm_filter = nn.Identity() if self.pre else nn.LayerNorm(c.hidden_size, eps=1e-12)

    def filtered(self, x: torch.Tensor, keep: torch.Tensor, last_only: bool) -> torch.Tensor:
        """Low-pass plus ``beta``-scaled high-pass of ``x`` with padding read as zeros."""
        L = x.shape[1]
        if L <= self.kernel.shape[0]:
            kernel = self.kernel[:L, :L]  # Toeplitz: a cut window uses the top-left block
        else:  # a longer history than the window (an ensemble's wider input): the same taps, further
            kernel = low_pass_kernel(self.window, self.bins, L).to(x)
        if last_only:
            kernel = kernel[-1:]
        low = torch.matmul(kernel, x * keep)
        return low + self.sqrt_beta ** 2 * ((x[:, -1:] if last_only else x) - low)

    def forward(self, x: torch.Tensor, context, last_only: bool = False) -> torch.Tensor:
        mask, keep = context
        here = x[:, -1:] if last_only else x
        if self.pre:
            y = self.norm1(x)
            mixed = self.alpha * self.filtered(y, keep, last_only) + (1 - self.alpha) * self.attn(y, mask, last_only)
            x = here + self.drop(mixed)
            return x + self.drop(self.ff(self.norm2(x)))
        x = (self.alpha * self.norm_filter(here + self.drop(self.filtered(x, keep, last_only)))
             + (1 - self.alpha) * self.norm1(here + self.drop(self.attn(x, mask, last_only))))
        return self.norm2(x + self.drop(self.ff(x)))


class BSARec(SASRec):
    name = "bsarec"
    config_class = BSARecConfig
    block_class = FilterBlock

    def _context(self, seq: torch.Tensor):
        return self._attention_mask(seq), seq.ne(0).unsqueeze(-1).to(self.item_embedding.weight.dtype)
