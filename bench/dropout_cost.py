"""How much of a SASRec training step on CPU goes to drawing dropout masks, and what a mask from
``torch.rand`` would cost instead (a lead for a faster dropout; not used by recnb, because another
way of drawing changes every model's random stream and so every documented number).

    RECNB_DATA_DIR=../shared/data python bench/dropout_cost.py [--threads 2]

Prints the ms per call of F.dropout and of a rand mask on SASRec's two dropout shapes (batch 32,
window 50: attention (32, 2, 50, 50), hidden (32, 50, 64)), the ms per training step of the SASRec
recipe on ml-100k, and the share of that step's CPU time spent in ``aten::bernoulli_``.
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from recnb.data import load_scene, train_windows
from recnb.models import build_model
from recnb.train import rec_loss, recipe


def ms_per_call(fn, repeats: int = 50) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print("| shape | F.dropout ms | rand mask ms |\n|---|---|---|")
    for shape in [(32, 2, 50, 50), (32, 50, 64)]:
        x = torch.randn(shape)
        plain = ms_per_call(lambda x=x: F.dropout(x, 0.5, True))
        masked = ms_per_call(lambda x=x: x * (torch.rand_like(x) >= 0.5) * 2.0)
        print(f"| {shape} | {plain:.3f} | {masked:.3f} |")

    scene = load_scene("ml-100k")
    cfg = recipe("sasrec")
    windows = train_windows(scene, cfg.max_len, cfg.context)
    model = build_model("sasrec", num_items=scene.num_items, max_len=cfg.max_len)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)

    def step(i: int) -> None:
        idx = torch.arange(i * cfg.batch_size, (i + 1) * cfg.batch_size)
        batch = {"inputs": windows.inputs[idx], "targets": windows.targets[idx]}
        loss, _ = rec_loss(model, model(batch["inputs"])[-1], batch, cfg.loss, cfg.label_smoothing)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()

    steps = iter(range(10**6))
    print(f"\nSASRec recipe step (batch {cfg.batch_size}, {args.threads} threads): "
          f"{ms_per_call(lambda: step(next(steps)), repeats=30):.1f} ms")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            step(next(steps))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    bern = sum(e.self_cpu_time_total for e in events if e.key == "aten::bernoulli_")
    print(f"aten::bernoulli_ share of self CPU time: {100 * bern / total:.1f}%")


if __name__ == "__main__":
    main()
