"""A distilled AdaRec student's training step with prediction KD through torch's autograd
(``log_softmax`` + ``kl_div``, the previous ``kd_loss``) against the fused frozen-teacher
path of :func:`recnb.kd.kd_loss`, side by side in one process on the same batches.

    RECNB_DATA_DIR=../shared/data python bench/kd_step.py --dataset beauty --teacher TEACHER.pt \\
        --arch ARCH.json --max-len 20 --batch-targets 2048 --steps 20

Each variant trains its own copy of the same student (same seed) for ``--steps`` steps of the
real batches of an epoch (sampled softmax over 1,024 items, KD + EMD as ``recnb distill``);
the variants alternate in blocks of ``--block`` steps so a busy machine slows both alike.
Prints seconds per step, the speed-up, and the largest loss difference seen (the two paths
compute the same loss and gradient up to float rounding).
"""

from __future__ import annotations

import argparse
import time

import torch

from recnb.adarec.pipeline import DistillConfig, build_student, distillation_loss
from recnb.checkpoint import load_checkpoint
from recnb.data import load_scene
from recnb.kd import TeacherCache, autograd_kd_loss, kd_loss
from recnb.train import Batches, TrainConfig, rec_loss, train_windows


class Variant:
    """One student, its optimiser and distillation loss, with one way of computing KD."""

    def __init__(self, name, kd, scene, cache, args):
        cfg = DistillConfig(width=args.width, train=TrainConfig(loss="sampled", negatives=1024, max_len=args.max_len))
        self.name, self.kd, self.seconds, self.losses = name, kd, 0.0, []
        self.model = build_student(scene, args.arch, args.width, args.max_len, seed=2020)
        self.extra = distillation_loss(cache, self.model, cfg)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=3e-3, foreach=True)

    def step(self, batch: dict) -> None:
        from recnb.adarec import pipeline

        pipeline.kd_loss = self.kd  # DistillationLoss reads it from its module
        t0 = time.perf_counter()
        states = self.model(batch["inputs"], offset=batch["offset"]) if batch["offset"] else self.model(batch["inputs"])
        loss, logits = rec_loss(self.model, states[-1], batch, "sampled")
        total = loss + sum(self.extra(self.model, batch, states, logits).values())
        self.opt.zero_grad()
        total.backward()
        self.opt.step()
        self.seconds += time.perf_counter() - t0
        self.losses.append(float(total.detach()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--arch", required=True, help="architecture.json of a search")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--batch-targets", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scene = load_scene(args.dataset)
    teacher, _ = load_checkpoint(args.teacher, scene=scene, what="--teacher")
    windows = train_windows(scene, args.max_len)
    cache = TeacherCache(teacher, windows)
    gen = torch.Generator().manual_seed(0)
    variants = [Variant("autograd (log_softmax + kl_div)", autograd_kd_loss, scene, cache, args),
                Variant("fused frozen-teacher KD", kd_loss, scene, cache, args)]
    cut = variants[0].model.cuts_padding  # as fit batches them
    batches = list(Batches(windows, 32, args.batch_targets, cut=cut).epoch(gen))[: args.steps]
    negatives = torch.randint(1, scene.num_items + 1, (len(batches), 1024), generator=gen)
    for v in variants:  # one warm-up step each, not timed, on the same batch (weights stay equal)
        v.step({**_as_dict(batches[0]), "negatives": negatives[0]})
        v.seconds, v.losses = 0.0, []
    for start in range(0, len(batches), args.block):
        for v in variants:
            for i in range(start, min(start + args.block, len(batches))):
                v.step({**_as_dict(batches[i]), "negatives": negatives[i]})
    targets = sum(int((b[2] > 0).sum()) for b in batches)
    print(f"{args.dataset}: {len(batches)} steps, {targets / len(batches):.0f} targets per step, {scene.num_items} items, "
          f"{args.threads} torch thread(s), torch {torch.__version__}")
    print(f"{'KD':<34}{'s / step':>10}")
    for v in variants:
        print(f"{v.name:<34}{v.seconds / len(batches):>10.3f}")
    diff = max(abs(a - b) for a, b in zip(variants[0].losses, variants[1].losses))
    print(f"speed-up {variants[0].seconds / variants[1].seconds:.2f}x; largest difference of the total loss over the steps: {diff:.2e}")


def _as_dict(batch) -> dict:
    index, inputs, targets, offset, _ = batch
    return {"index": index, "inputs": inputs, "targets": targets, "offset": offset}


if __name__ == "__main__":
    main()
