"""Seeded fingerprints: the numbers a restructure must not move.

    RECNB_DATA_DIR=../shared/data PYTHONPATH=OLD_CHECKOUT python bench/fingerprint.py > old.json
    RECNB_DATA_DIR=../shared/data python bench/fingerprint.py > new.json

Trains SASRec, GRU4Rec and NextItNet (their ml-100k recipes, seed 7, one epoch, one thread)
and prints, per model, the best validation NDCG@10, test NDCG@10, test NDCG@10 with seen
items masked, and the sum of the trained weights: equal to the last digit in two checkouts
means the code between them trains, ranks and evaluates the same.
"""

from __future__ import annotations

import json

import torch

import recnb
from recnb.train import seed_everything


def main() -> None:
    torch.set_num_threads(1)
    scene = recnb.load_scene("ml-100k")
    out = {}
    for name in ("sasrec", "gru4rec", "nextitnet"):
        seed_everything(7)  # the initial weights too
        model = recnb.build_model(name, num_items=scene.num_items, **recnb.recipe_model_config(name))
        result = recnb.fit(model, scene, recnb.recipe(name, epochs=1, progress=False, seed=7))
        test = recnb.evaluate(model, scene, "test")
        masked = recnb.evaluate(model, scene, "test", exclude_seen=True)
        out[name] = [float(result.valid["NDCG@10"]), float(test.loc[10, "NDCG"]), float(masked.loc[10, "NDCG"]),
                     float(sum(p.detach().double().sum() for p in model.parameters()))]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
