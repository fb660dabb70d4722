"""The teacher's family weights, chosen on validation: an ensemble of runs of several families
(``recnb ensemble``) sums their scores; this weighs each family's share and keeps the weights
with the best masked validation NDCG@10, then reads the test once for them and for equal weights.

    python bench/teacher_weights.py --families sasrec=runs/s1,runs/s2 bsarec=runs/b1,runs/b2 \\
        --grid '{"bsarec": [1, 2], "gru4rec": [0.5, 1]}' --dataset beauty --out bench/results/beauty_teacher_families

A family missing from ``--grid`` keeps weight 1. Prints a table; writes ``weights.json`` (every
point's validation, the choice, both tests) and the ``recnb ensemble`` command that builds the
chosen teacher. One torch thread.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", nargs="+", required=True, help="NAME=run,run,... (run folders holding model.pt)")
    p.add_argument("--grid", default="{}", help="JSON: family name -> weights to try")
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    import recnb
    from recnb.checkpoint import load_checkpoint
    from recnb.evaluation import evaluate
    from recnb.metrics import flatten
    from recnb.models.ensemble import Ensemble

    scene = recnb.load_scene(args.dataset)
    families = {}
    for spec in args.families:
        name, runs = spec.split("=", 1)
        families[name] = [Path(r) for r in runs.split(",")]
    members, owner = [], []
    for name, runs in families.items():
        for run in runs:
            members.append(load_checkpoint(run / "model.pt", "cpu", scene, "--families")[0])
            owner.append(name)
    grid = json.loads(args.grid)
    names = list(families)
    points = [dict(zip(names, ws)) for ws in itertools.product(*(grid.get(n, [1.0]) for n in names))]

    def ensemble(point):
        return Ensemble.of(members, [float(point[o]) for o in owner]).eval()

    rows = []
    for point in points:
        start = time.perf_counter()
        valid = flatten(evaluate(ensemble(point), scene, "valid", exclude_seen=True))["NDCG@10"]
        rows.append({"weights": point, "valid_ndcg10": valid, "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda r: r["valid_ndcg10"])
    equal = {n: 1.0 for n in names}
    tests = {}
    for label, point in (("chosen", best["weights"]), ("equal", equal)):
        tests[label] = flatten(evaluate(ensemble(point), scene, "test", exclude_seen=True))
    equal_valid = next((r["valid_ndcg10"] for r in rows if r["weights"] == equal), None)
    runs = ",".join(str(run) for name in names for run in families[name])
    weights = ",".join(f"{best['weights'][o]:g}" for o in owner)
    result = {"dataset": args.dataset, "families": {n: [str(r) for r in families[n]] for n in names}, "grid": grid,
              "points": rows, "chosen": best["weights"], "chosen_valid_ndcg10": best["valid_ndcg10"],
              "equal_valid_ndcg10": equal_valid,
              "test_chosen": tests["chosen"], "test_equal": tests["equal"],
              "command": f"python -m recnb ensemble --models {runs} --weights {weights} --dataset {args.dataset} "
                         f"--exclude-seen --out runs/teacher"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "weights.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"chosen on validation: {best['weights']} (valid NDCG@10 {best['valid_ndcg10']:.4f}); test NDCG@10 "
          f"{tests['chosen']['NDCG@10']:.4f}, equal weights {tests['equal']['NDCG@10']:.4f}")


if __name__ == "__main__":
    main()
