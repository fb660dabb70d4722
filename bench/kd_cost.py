"""What a distilled epoch costs against a plain one, for one student on one scene.

    RECNB_DATA_DIR=../shared/data python bench/kd_cost.py --dataset beauty --threads 1

Trains the same student (same seed) for one epoch through ``recnb.train.fit`` four ways,
in one process: plain with its recipe for the scene; and with a teacher (a SASRec 4 x 128,
its weights as initialised: the cost does not depend on them) under prediction-layer KD + EMD
over every item (``kd_items="all"``), under KD + EMD over the batch's sampled items
(``kd_items="sampled"``), and under KD alone over the sampled items. The teacher's cache is
built once, before the clock starts. Prints each epoch's training seconds and its ratio to
the plain epoch; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import torch

from recnb.adarec.pipeline import DistillConfig, distillation_loss
from recnb.data import load_scene, train_windows
from recnb.kd import TeacherCache
from recnb.models import build_model
from recnb.train import fit, recipe, recipe_model_config, seed_everything


def student(scene, args):
    seed_everything(args.seed)
    settings = {**recipe_model_config("sasrec", scene), "hidden_size": args.width, "num_layers": args.layers,
                "max_len": args.max_len}
    return build_model("sasrec", num_items=scene.num_items, **settings)


def epoch_seconds(scene, args, cache=None, distill=None) -> float:
    cfg = recipe("sasrec", scene, epochs=1, max_len=args.max_len, seed=args.seed, progress=False,
                 **({"reorder": 0.0} if cache is not None else {}))
    model = student(scene, args)
    extra = distillation_loss(cache, model, distill) if cache is not None else None
    windows = train_windows(scene, args.max_len) if cache is not None else None
    return fit(model, scene, cfg, extra_loss=extra, windows=windows).train_seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    scene = load_scene(args.dataset)
    seed_everything(args.seed)
    teacher = build_model("sasrec", num_items=scene.num_items, hidden_size=128, num_layers=4, max_len=args.max_len,
                          **{k: v for k, v in recipe_model_config("sasrec", scene).items() if k == "norm"})
    start = time.perf_counter()
    cache = TeacherCache(teacher, train_windows(scene, args.max_len))
    cache_seconds = time.perf_counter() - start
    rows = {"plain (its recipe)": epoch_seconds(scene, args)}
    for name, cfg in (("KD + EMD, every item", DistillConfig(width=args.width)),
                      ("KD + EMD, sampled items", DistillConfig(width=args.width, kd_items="sampled")),
                      ("KD, sampled items", DistillConfig(width=args.width, kd_items="sampled", emd=False))):
        rows[name] = epoch_seconds(scene, args, cache, cfg)
    plain = rows["plain (its recipe)"]
    print(f"{scene.name}: SASRec student {args.layers} x {args.width}, window {args.max_len}, one epoch, "
          f"{args.threads} thread(s), {platform.machine()}; teacher cache built once in {cache_seconds:.1f} s")
    print(f"{'training':<28} {'seconds':>8} {'x plain':>8}")
    for name, sec in rows.items():
        print(f"{name:<28} {sec:8.1f} {sec / plain:8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": scene.name, "args": vars(args), "cache_seconds": cache_seconds, "epoch_seconds": rows,
                       "machine": platform.machine(), "torch": torch.__version__,
                       "recipe": dataclasses.asdict(recipe("sasrec", scene))}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
