"""One training run of a recipe variant of one model on one scene and seed, logged epoch by epoch: the
probes behind a recipe's choices (docs/benchmarks.md).

    python bench/recipe_probe.py --name pre_reorder --scene beauty \\
        --train '{"negatives": 4096, "reorder": 0.2, "label_smoothing": 0.1}' --model '{"norm": "pre"}'
    python bench/recipe_probe.py --table bench/results/amazon_recipe_probes

``--train`` and ``--model`` are laid over the scene's recipe (``recnb.train.recipe`` and
``recipe_model_config``); the JSON written beside the log holds every setting the run used,
so a probe reruns from it whatever the recipe is later. Validation is masked (seen items),
as the Amazon protocol reports; the test is read once, for the kept weights. One torch
thread. ``--table`` prints the best validation (and test, where the run finished) of every
probe log in a folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def probe(args) -> dict:
    import torch

    torch.set_num_threads(1)
    import recnb
    from recnb.evaluation import evaluate
    from recnb.metrics import flatten
    from recnb.train import fit, recipe, recipe_model_config, seed_everything

    scene = recnb.load_scene(args.scene)
    cfg = recipe(args.family, scene, progress=False, seed=args.seed, **json.loads(args.train))
    model_cfg = {**recipe_model_config(args.family, scene), **json.loads(args.model)}
    seed_everything(args.seed)  # the initial weights from the seed, as `recnb train` draws them
    model = recnb.build_model(args.family, num_items=scene.num_items, max_len=cfg.max_len, **model_cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(out / f"{args.name}.log", "w") as log:
        def row(r):
            log.write(json.dumps({"epoch": r["epoch"], "loss": round(r["loss"], 5), "seconds": round(r["seconds"], 1),
                                  "valid_NDCG@10": round(r.get("valid_NDCG@10", float("nan")), 5)})
                      + f" wall={time.time() - start:.0f}\n")
            log.flush()

        res = fit(model, scene, cfg, log=row, exclude_seen=True)
    test = flatten(evaluate(model, scene, "test", exclude_seen=True))
    result = {"name": args.name, "scene": args.scene, "family": args.family, "cfg": vars(cfg), "model": model_cfg, "best_epoch": res.best_epoch,
              "epochs": res.epochs, "train_s": res.train_seconds, "wall": time.time() - start,
              "valid": res.valid.get("NDCG@10"), "test_ndcg10": test["NDCG@10"], "test_hr10": test["HR@10"]}
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def table(folder: Path) -> str:
    lines = ["| probe | epochs (best) | best valid NDCG@10 | test NDCG@10 / HR@10 |", "|---|---|---|---|"]
    for log in sorted(folder.glob("*.log")):
        rows = [json.loads(line.split(" wall=")[0]) for line in log.read_text().splitlines() if line.startswith("{")]
        if not rows:
            continue
        best = max(rows, key=lambda r: r["valid_NDCG@10"])
        done = log.with_suffix(".json")
        test = json.loads(done.read_text()) if done.exists() else None
        lines.append(f"| {log.stem} | {len(rows)} ({best['epoch']}){'' if test else ', stopped'} | "
                     f"{best['valid_NDCG@10']:.4f} | "
                     + (f"{test['test_ndcg10']:.4f} / {test['test_hr10']:.4f} |" if test else "- |"))
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", help="the probe's name (its files: NAME.log, NAME.json)")
    p.add_argument("--scene", default="beauty")
    p.add_argument("--family", default="sasrec", help="the model (sasrec, gru4rec, nextitnet, ...)")
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--train", default="{}", help="training settings over the recipe, as JSON")
    p.add_argument("--model", default="{}", help="model settings over the recipe, as JSON")
    p.add_argument("--out", default="bench/results/amazon_recipe_probes")
    p.add_argument("--table", default=None, help="print the summary of the probes in this folder")
    args = p.parse_args(argv)
    if args.table:
        print(table(Path(args.table)))
        return
    if not args.name:
        p.error("--name is required to run a probe")
    print(json.dumps(probe(args)))


if __name__ == "__main__":
    main()
