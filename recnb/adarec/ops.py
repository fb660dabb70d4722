"""The AdaRec search space: causal sequence operations, each with a known cost.

Every op maps ``(B, L, d) -> (B, L, d)`` and is causal (output ``i`` sees inputs ``<= i``).
``OPS[name](d)`` builds one; ``PRIMITIVES`` lists them in a fixed order (the order of the
architecture parameters). Costs come three ways: parameters and FLOPs per position are
exact functions of the width; latency is measured on a device and cached as a small JSON
table (:func:`latency_table`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from recnb.data import cache_root
from recnb.errors import ConfigError
from recnb.files import atomic_write
from recnb.measure import median_ms


class CausalConv(nn.Module):
    """Causal (left-padded) 1-D convolution followed by ReLU."""

    def __init__(self, d: int, kernel: int, dilation: int = 1):
        super().__init__()
        self.kernel, self.dilation = kernel, dilation
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(d, d, kernel, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(F.pad(x.transpose(1, 2), (self.pad, 0)))).transpose(1, 2)


class CausalPool(nn.Module):
    """Max or mean over the last ``k`` positions (the window never reaches ahead)."""

    def __init__(self, kind: str, kernel: int):
        super().__init__()
        self.kind, self.kernel = kind, kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        if self.kind == "max":
            x = F.max_pool1d(F.pad(x, (self.kernel - 1, 0), value=float("-inf")), self.kernel, stride=1)
        else:
            # mean over the real (non-padded) window: divide by how many positions exist
            s = F.avg_pool1d(F.pad(x, (self.kernel - 1, 0)), self.kernel, stride=1) * self.kernel
            n = torch.arange(1, x.shape[-1] + 1, device=x.device).clamp(max=self.kernel)
            x = s / n
        return x.transpose(1, 2)


class CausalSelfAttention(nn.Module):
    """Single-head causal self-attention with an output projection."""

    def __init__(self, d: int):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True))


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """No edge. Contributes nothing (and costs nothing)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.0


# name -> (constructor(d), flops per position as a function of (d, L))
# FLOPs count a multiply-add as 2; the attention term averages over positions (L / 2 keys).
OPS = {
    "zero": lambda d: Zero(),
    "skip": lambda d: Identity(),
    "max_pool_k3": lambda d: CausalPool("max", 3),
    "avg_pool_k3": lambda d: CausalPool("avg", 3),
    "conv_k3": lambda d: CausalConv(d, 3, 1),
    "conv_k5": lambda d: CausalConv(d, 5, 1),
    "dil_conv_k3_d2": lambda d: CausalConv(d, 3, 2),
    "dil_conv_k5_d2": lambda d: CausalConv(d, 5, 2),
    "dil_conv_k3_d4": lambda d: CausalConv(d, 3, 4),
    "dil_conv_k5_d4": lambda d: CausalConv(d, 5, 4),
    "self_attention": lambda d: CausalSelfAttention(d),
}
PRIMITIVES = tuple(OPS)
COSTS = ("params", "flops", "latency")
PARAMETER_FREE = ("zero", "skip", "max_pool_k3", "avg_pool_k3")


def check_op(name: str, where: str = "op") -> str:
    if name not in OPS:
        raise ConfigError(f"{where}: unknown op {name!r}; known ops: {', '.join(PRIMITIVES)}")
    return name


def build_op(name: str, d: int) -> nn.Module:
    return OPS[check_op(name)](d)


def op_params(name: str, d: int) -> int:
    return sum(p.numel() for p in build_op(name, d).parameters())


def op_flops(name: str, d: int, seq_len: int = 50) -> float:
    """FLOPs per position of one op at width ``d`` (sequence length matters for attention)."""
    op = build_op(name, d)
    if isinstance(op, CausalConv):
        return 2.0 * op.kernel * d * d + d  # the conv, its bias, and the ReLU folded in
    if isinstance(op, CausalPool):
        return float(op.kernel * d)
    if isinstance(op, CausalSelfAttention):
        return 2.0 * 4 * d * d + 2.0 * 2 * d * (seq_len + 1) / 2
    return 0.0


def cache_dir(explicit: str | Path | None = None) -> Path:
    """Where measured tables live: ``explicit``, else recnb's cache (``$RECNB_CACHE``, else ``~/.cache/recnb``)."""
    path = Path(explicit) if explicit else cache_root()
    path.mkdir(parents=True, exist_ok=True)
    return path


def measure_op_latency(name: str, d: int, seq_len: int = 50, batch: int = 1, device="cpu", repeats: int = 20) -> float:
    op = build_op(name, d).to(device).eval()
    x = torch.randn(batch, seq_len, d, device=device)
    return median_ms(lambda: op(x), warmup=3, repeats=repeats, device=device)


def latency_table(
    d: int,
    seq_len: int = 50,
    batch: int = 1,
    device: str = "cpu",
    directory: str | Path | None = None,
    refresh: bool = False,
) -> dict:
    """Median ms per op at this width/length/batch on ``device``, measured once and cached
    as ``op_latency_<device>_d<d>_L<len>_b<batch>.json``."""
    dev = torch.device(device)
    path = cache_dir(directory) / f"op_latency_{dev.type}_d{d}_L{seq_len}_b{batch}.json"
    if path.exists() and not refresh:
        try:
            table = json.loads(path.read_text())["ms"]
            if set(table) >= set(PRIMITIVES):
                return table
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # a broken cache is re-measured
    table = {name: round(measure_op_latency(name, d, seq_len, batch, dev), 5) for name in PRIMITIVES}
    table["zero"] = 0.0  # no edge is no work in the derived network
    payload = {"device": dev.type, "width": d, "seq_len": seq_len, "batch": batch, "threads": torch.get_num_threads(), "ms": table}
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=1)))
    return table


def op_costs(kind: str, d: int, seq_len: int = 50, primitives=PRIMITIVES, device: str = "cpu", directory=None) -> dict:
    """``{op: cost}`` of one kind (``params``, ``flops`` or ``latency``) at width ``d``."""
    if kind == "params":
        return {o: float(op_params(o, d)) for o in primitives}
    if kind == "flops":
        return {o: op_flops(o, d, seq_len) for o in primitives}
    if kind == "latency":
        table = latency_table(d, seq_len, 1, device, directory)
        return {o: float(table[o]) for o in primitives}
    raise ConfigError(f"cost: expected one of {', '.join(COSTS)}, got {kind!r}")


def normalised_costs(kind: str, d: int, seq_len: int = 50, primitives=PRIMITIVES, device="cpu", directory=None) -> torch.Tensor:
    """Op costs divided by the most expensive op (so the costliest op costs 1)."""
    costs = op_costs(kind, d, seq_len, primitives, device, directory)
    top = max(costs.values()) or 1.0
    return torch.tensor([max(0.0, costs[o]) / top for o in primitives], dtype=torch.float32)


# ----------------------------------------------------------------------------- cells
def cell_output(nodes: list[torch.Tensor], previous: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """How a cell (supernet or derived) turns its intermediate nodes into its output:
    the mean of the nodes, added to the previous cell's output, then layer norm."""
    return norm(previous + torch.stack(nodes).mean(0))
