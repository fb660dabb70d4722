"""Where one training epoch of a recipe spends its CPU time: ``recnb.fit`` for one epoch (its
validation and test included) under ``torch.profiler``, the heaviest operators by self time.

    RECNB_DATA_DIR=../shared/data python bench/profile_epoch.py --dataset beauty --model sasrec --rows 12

What a faster epoch has to cut: on the Amazon recipe the matrix products of the encoder and
of the sampled softmax lead, so an epoch is not made much cheaper without less arithmetic.
One torch thread; prints the wall seconds and the table.
"""

from __future__ import annotations

import argparse
import time


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--model", default="sasrec")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--rows", type=int, default=12, help="operators shown")
    args = p.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    import recnb
    from recnb.train import recipe, recipe_model_config

    torch.set_num_threads(1)
    scene = recnb.load_scene(args.dataset)
    cfg = recipe(args.model, scene, epochs=1, progress=False, seed=args.seed)
    model = recnb.build_model(args.model, seed=args.seed, **{**recipe_model_config(args.model, scene),
                                                              "num_items": scene.num_items, "max_len": cfg.max_len})
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        recnb.fit(model, scene, cfg)
    print(f"{args.model} on {args.dataset}, one epoch with its validation and test, 1 thread: "
          f"{time.perf_counter() - start:.1f} s wall")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
