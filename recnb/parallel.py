"""A pool for :func:`recnb.adarec.pipeline.run_pipeline` that runs its pieces as Ray tasks.

``recnb adarec --parallel ray`` fans the searches and distillations out on the Ray that
``recnb sweep`` uses (a local one, or a cluster joined with ``--address``). Each piece seeds
itself, so the numbers are those of the sequential run on as many threads as a task has.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from recnb.errors import RecnbError
from recnb.sweep import _start_ray, import_ray


def _run_piece(fn: Callable, shared: dict, item, threads: int):
    """One piece in a Ray worker, on ``threads`` torch threads."""
    torch.set_num_threads(threads)
    return fn(shared, item)


class RayPool:
    """``map(fn, items, shared)`` as one Ray task per item, each holding ``resources``
    (``{"cpu": N, "gpu": M}``, as ``--resources-per-trial``) and running torch on N threads.
    ``shared`` (the scene, the teacher cache) goes to the object store once per map. Starts a
    local Ray unless one runs or ``address`` names one; :meth:`close` stops what it started."""

    def __init__(self, address: str | None = None, resources: dict | None = None):
        self.ray, _ = import_ray()
        self.resources = resources or {"cpu": 1.0, "gpu": 0.0}
        self.threads = max(1, int(self.resources["cpu"]))
        self.started = _start_ray(self.ray, address)

    def map(self, fn: Callable, items, shared: dict) -> list:
        items = list(items)
        if not items:
            return []
        task = self.ray.remote(num_cpus=self.resources["cpu"], num_gpus=self.resources["gpu"])(_run_piece)
        ref = self.ray.put(shared)
        try:
            return self.ray.get([task.remote(fn, ref, item, self.threads) for item in items])
        except self.ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, RecnbError):  # bad input stays one line
                raise exc.cause from None
            raise

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["RayPool"]
