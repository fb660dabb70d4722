"""Size, FLOPs and latency of a model: one convention and one set of key names for every
table in recnb (``params``, ``params_no_embedding``, ``flops``, ``latency_<device>_b<batch>_ms``).

Latency is the median wall-clock time, after warm-up, to score every item for a batch of
``max_len`` histories (forward + last-position scores), with the torch threads the caller
set; FLOPs are counted by ``torch.utils.flop_counter`` for one such history.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

COST_KEYS = ("params", "flops", "latency_")  # the prefixes of the keys that measure a model's size and cost


def median_ms(fn, warmup: int = 3, repeats: int = 10, device: torch.device | str = "cpu") -> float:
    """Median wall-clock milliseconds of ``fn()`` after ``warmup`` calls (CUDA synchronised)."""
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            sync()
            times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def model_flops(model: nn.Module, seq_len: int | None = None) -> float:
    """FLOPs of one inference: a length-``seq_len`` history through the network, then the
    last position scored against every item. Counted by ``torch.utils.flop_counter``
    (matmuls, convolutions, attention; a multiply-add is 2 FLOPs), so it works for any
    model however it implements its layers; elementwise work (pools, norms, activations)
    is not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    seq_len = seq_len or model.config.max_len
    device = next(model.parameters()).device
    seq = torch.randint(1, model.config.num_items + 1, (1, seq_len), device=device)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.score(model.output(seq)[:, -1])
    model.train(was_training)
    return float(counter.get_total_flops())


def model_latency(model: nn.Module, device: str = "cpu", batch: int = 1, seq_len: int | None = None, warmup: int = 5, repeats: int = 20) -> float:
    """Median ms to score every item for a batch of histories (forward + last-position
    scores), after warm-up. The model is moved to ``device`` and left there."""
    seq_len = seq_len or model.config.max_len
    dev = torch.device(device)
    model.to(dev).eval()
    seq = torch.randint(1, model.config.num_items + 1, (batch, seq_len), device=dev)
    return median_ms(lambda: model.score(model.output(seq)[:, -1]), warmup, repeats, dev)


def size(model: nn.Module) -> dict:
    """Parameters, all and without the item embeddings (what grows with the catalogue)."""
    return {"params": model.num_params(), "params_no_embedding": model.num_params(embeddings=False)}


def efficiency(model: nn.Module, devices=("cpu",), batches=(1, 256)) -> dict:
    """Size, FLOPs per inference and median latency per batch on each device, under the
    key names every recnb table uses. The model is left on the CPU in eval mode."""
    model = model.cpu().eval()
    out = {**size(model), "flops": model_flops(model)}
    for dev in devices:
        for b in batches:
            small = b <= 16
            out[f"latency_{dev}_b{b}_ms"] = round(model_latency(model, dev, b, warmup=3 if small else 1,
                                                                repeats=20 if small else 5), 4)
    model.cpu()
    return out
