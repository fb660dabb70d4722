"""What a distilled epoch costs against a plain one, for one student on one scene.

    RECNB_DATA_DIR=../shared/data python bench/kd_cost.py --dataset beauty --threads 1
    RECNB_DATA_DIR=../shared/data python bench/kd_cost.py --dataset beauty --teacher runs/ensemble/model.pt \\
        --model bsarec --layers 2 --max-len 50 --ways plain,online,clean

Trains the same student (same seed) for one epoch through ``recnb.train.fit`` several ways,
in one process, so the seconds compare (``--ways``, in this order):

- ``plain``: its recipe for the scene, no teacher;
- ``all-emd``, ``sampled-emd``, ``sampled``: under a cache of the teacher's outputs (windows
  without overlap, no reorder), KD + EMD over every item, KD + EMD over the batch's sampled
  items, KD alone over the sampled items;
- ``online``: KD over the sampled items, the teacher run on each batch (``recnb frontier
  --online-teacher``: the recipe's reorder and context windows kept);
- ``clean``: KD over the sampled items, the teacher's scored output cached once over the
  recipe's context windows, the recipe's reorder kept (``recnb frontier --clean-teacher``).

Without ``--teacher`` the teacher is a SASRec 4 x 128 as initialised (the cost does not
depend on its weights). Caches are built before the clock starts; their seconds are printed
apart. Prints each epoch's training seconds and its ratio to the plain epoch; ``--json``
writes them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import torch

from recnb.adarec.pipeline import DistillConfig, distillation_loss
from recnb.checkpoint import load_checkpoint
from recnb.data import load_scene, train_windows
from recnb.kd import OnlineTeacher, TeacherCache
from recnb.models import build_model
from recnb.train import fit, recipe, recipe_model_config, seed_everything

WAYS = ("plain", "all-emd", "sampled-emd", "sampled", "online", "clean")
LABELS = {"plain": "plain (its recipe)", "all-emd": "KD + EMD, every item", "sampled-emd": "KD + EMD, sampled items",
          "sampled": "KD, sampled items", "online": "KD, sampled items, teacher every batch",
          "clean": "KD, sampled items, clean teacher"}


def student(scene, args):
    seed_everything(args.seed)
    settings = {**recipe_model_config(args.model, scene), "hidden_size": args.width, "num_layers": args.layers,
                "max_len": args.max_len}
    return build_model(args.model, num_items=scene.num_items, **settings)


def train_config(scene, args, reorder: bool = True):
    return recipe(args.model, scene, epochs=1, max_len=args.max_len, seed=args.seed, progress=False,
                  **({} if reorder else {"reorder": 0.0}))


def epoch_seconds(scene, args, cfg, teacher=None, distill=None, windows=None) -> float:
    model = student(scene, args)
    extra = distillation_loss(teacher, model, distill) if teacher is not None else None
    return fit(model, scene, cfg, extra_loss=extra, windows=windows).train_seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--teacher", default=None, help="teacher checkpoint (default: a SASRec 4 x 128 as initialised)")
    ap.add_argument("--model", default="sasrec", help="the student's family")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--ways", default="plain,all-emd,sampled-emd,sampled", help=f"comma-separated, of {', '.join(WAYS)}")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    ways = [w.strip() for w in args.ways.split(",")]
    if not ways or ways[0] != "plain" or any(w not in WAYS for w in ways):
        ap.error(f"--ways: plain first, then any of {', '.join(WAYS[1:])}; got {args.ways!r}")
    torch.set_num_threads(args.threads)
    scene = load_scene(args.dataset)
    seed_everything(args.seed)
    if args.teacher:
        teacher = load_checkpoint(args.teacher, scene=scene, what="--teacher")[0]
    else:
        teacher = build_model("sasrec", num_items=scene.num_items, hidden_size=128, num_layers=4, max_len=args.max_len,
                              **{k: v for k, v in recipe_model_config("sasrec", scene).items() if k == "norm"})
    kd = DistillConfig(width=args.width, kd_items="sampled", emd=False)
    caches, cache_seconds, rows = {}, {}, {}

    def cache(name: str, context: int, output_only: bool) -> TeacherCache:
        if name not in caches:
            start = time.perf_counter()
            caches[name] = TeacherCache(teacher, train_windows(scene, args.max_len, context), output_only=output_only)
            cache_seconds[name] = time.perf_counter() - start
        return caches[name]

    for way in ways:
        if way == "plain":
            rows[way] = epoch_seconds(scene, args, train_config(scene, args))
        elif way == "online":
            cfg = train_config(scene, args)
            rows[way] = epoch_seconds(scene, args, cfg, OnlineTeacher(teacher), kd, train_windows(scene, args.max_len, cfg.context))
        elif way == "clean":
            cfg = train_config(scene, args)
            c = cache("clean (context windows, output only)", cfg.context, True)
            rows[way] = epoch_seconds(scene, args, cfg, c, kd, c.windows)
        else:
            c = cache("every layer (windows without overlap)", 0, False)
            distill = {"all-emd": DistillConfig(width=args.width), "sampled-emd": DistillConfig(width=args.width, kd_items="sampled"),
                       "sampled": kd}[way]
            rows[way] = epoch_seconds(scene, args, train_config(scene, args, reorder=False), c, distill, c.windows)
    plain = rows["plain"]
    built = "; ".join(f"{k} built once in {s:.1f} s" for k, s in cache_seconds.items()) or "no cache"
    print(f"{scene.name}: {args.model} student {args.layers} x {args.width}, window {args.max_len}, one epoch, "
          f"{args.threads} thread(s), {platform.machine()}; teacher {args.teacher or 'SASRec 4 x 128'}; {built}")
    print(f"{'training':<40} {'seconds':>8} {'x plain':>8}")
    for way, sec in rows.items():
        print(f"{LABELS[way]:<40} {sec:8.1f} {sec / plain:8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": scene.name, "args": vars(args), "cache_seconds": cache_seconds,
                       "epoch_seconds": {LABELS[w]: s for w, s in rows.items()}, "machine": platform.machine(),
                       "torch": torch.__version__, "recipe": dataclasses.asdict(recipe(args.model, scene))}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
