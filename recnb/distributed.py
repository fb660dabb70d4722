"""Data-parallel training under ``torchrun``: one process per device, gradients averaged by DDP.

``torchrun --nproc-per-node N -m recnb train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_from_env` joins the process group (gloo on CPU, NCCL on CUDA)
and :func:`current` hands ``recnb.train.fit`` a :class:`Group` that:

- draws each epoch's window order from a generator seeded by (seed, epoch), the same on
  every rank (a distributed sampler reseeded per epoch), and gives each rank its slice of
  every batch, so ``batch_size`` stays the global batch and the lr keeps its meaning;
- weights each rank's loss by its share of the batch's targets, so the averaged gradient
  is the one-process gradient of the whole batch (up to the order of the float sums);
- scores each rank's share of the users at validation and gathers the ranks, so the
  metrics, and every early-stopping and weight-average decision made from them, are
  identical on all ranks;
- lets rank 0 alone write checkpoints, states and metrics.

Augmentations (reorder, sampled negatives) and dropout draw per rank from streams seeded by
(seed, epoch, rank): equal in distribution to one process, not the same numbers, and a
resumed run draws what an uninterrupted one would. One process is :data:`SINGLE`, which
changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from recnb.errors import ConfigError

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Group:
    """This process's place in a data-parallel run (``world_size`` 1: a plain process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """What the training step calls: ``DistributedDataParallel(model)`` under torchrun."""
        if not self.parallel:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def order(self, n: int, gen: torch.Generator, epoch: int, seed: int) -> torch.Tensor:
        """The epoch's window order. One process: drawn from ``gen``. Under torchrun: the same
        on every rank, the epoch-th permutation of a generator seeded with ``seed`` (what one
        process draws when nothing else uses ``gen``, and what a resumed run draws too);
        ``gen`` and the global RNG (dropout) are then reseeded per (seed, epoch, rank)."""
        if not self.parallel:
            return torch.randperm(n, generator=gen, device=gen.device)
        key = (seed, n, str(gen.device))
        done, shared = _SHARED.get(key, (-1, None))
        if shared is None or done >= epoch:
            done, shared = -1, torch.Generator(device=gen.device).manual_seed(seed)
        for _ in range(done, epoch):
            order = torch.randperm(n, generator=shared, device=gen.device)
        _SHARED[key] = (epoch, shared)
        own = (seed * 1_000_003 + epoch) * 65_537 + self.rank + 1
        gen.manual_seed(own)
        torch.manual_seed(own)
        return order

    def shard(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, float]:
        """This rank's windows of the global batch ``idx`` and the factor on its mean loss that
        makes the DDP average the whole batch's mean (``targets``: all windows' targets)."""
        if not self.parallel:
            return idx, 1.0
        parts = idx.tensor_split(self.world_size)
        mine = parts[self.rank]
        total = int((targets[idx] > 0).sum())
        if len(mine) == 0:  # a last batch smaller than the world: take part, add nothing
            return idx[:1], 0.0
        return mine, float((targets[mine] > 0).sum()) * self.world_size / max(1, total)

    def share(self, count: int) -> torch.Tensor | None:
        """This rank's part of ``count`` users to rank (``None`` on one process: all of them)."""
        if not self.parallel:
            return None
        return torch.arange(count).tensor_split(self.world_size)[self.rank]

    def gather(self, ranks: torch.Tensor, count: int) -> torch.Tensor:
        """Every rank's ``ranks`` of its :meth:`share`, gathered in user order on every rank."""
        if not self.parallel:
            return ranks
        shares = torch.arange(count).tensor_split(self.world_size)
        # all_gather wants equal sizes: pad every share to the largest, then trim
        device = _collective_device()
        padded = torch.zeros(len(shares[0]), dtype=ranks.dtype, device=device)
        padded[: len(ranks)] = ranks.to(device)
        parts = [torch.empty_like(padded) for _ in shares]
        torch.distributed.all_gather(parts, padded)
        return torch.cat([p[: len(u)].cpu() for p, u in zip(parts, shares)])

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (a time budget ends the run for all)."""
        if not self.parallel:
            return bool(flag)
        t = torch.tensor([int(bool(flag))], device=_collective_device())
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())


SINGLE = Group()
_SHARED: dict = {}  # (seed, windows, device) -> (last epoch drawn, the shared order generator)


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment {name}={value!r}: expected a whole number (set by torchrun)") from None


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher setting WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ


def init_from_env(device: str = "auto") -> Group:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA; each rank on its
    ``LOCAL_RANK`` GPU); a plain process gets :data:`SINGLE`. Bad settings are one line."""
    if not launched():
        return SINGLE
    world, rank = _env_int("WORLD_SIZE"), _env_int("RANK")
    local = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    if world < 1:
        raise ConfigError(f"environment WORLD_SIZE={world}: must be at least 1")
    if not 0 <= rank < world:
        raise ConfigError(f"environment RANK={rank}: must be in [0, WORLD_SIZE={world})")
    if world == 1:
        return SINGLE
    if not torch.distributed.is_available():
        raise ConfigError("torchrun: this torch build has no torch.distributed; run without torchrun "
                          "or install a torch with distributed support")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine")
        if local >= torch.cuda.device_count():
            raise ConfigError(f"environment LOCAL_RANK={local}: this node has {torch.cuda.device_count()} GPU(s); "
                              "use --nproc-per-node at most that")
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return current()


def current() -> Group:
    """The group of this process: torchrun's once :func:`init_from_env` ran, else :data:`SINGLE`."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return SINGLE
    return Group(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                 int(os.environ.get("LOCAL_RANK", torch.distributed.get_rank())))


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun command)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
