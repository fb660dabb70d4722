"""One training run per (model, settings, seed): the sweep behind recnb's recipes.

    python bench/sweep.py nextitnet '{"dropout": 0.3}' '{"batch_size": 32, "lr": 1e-3}' 2020,2021 n_do3

Arguments: model, model options (JSON), training options (JSON), seeds, a tag, and optionally
the dataset (default ml-100k). Same protocol as bench/train_eval.py (leave-one-out, full
ranking, max_len 50, early stopping on validation NDCG@10, 1 torch thread). Prints one JSON
line per seed and appends it to bench/results/sweep.jsonl: test NDCG@10 of the
best-on-validation epoch, that validation score, the best epoch, and (for reading the
noise only, never for selection) the best test NDCG@10 over all epochs and its epoch.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from recnb.data import load_scene
from recnb.evaluation import evaluate
from recnb.metrics import flatten
from recnb.models import build_model
from recnb.train import TrainConfig, fit, seed_everything


def run_seed(scene, model_name: str, model_opts: dict, train_opts: dict, epochs: int, seed: int, tag: str,
             results: str = "sweep.jsonl", windows=None, extra: dict | None = None, echo: bool = False) -> dict:
    """One training run; its JSON line (``extra`` keys after the tag) is printed and appended to
    ``bench/results/<results>``. ``windows`` replaces the scene's training windows; ``echo``
    prints (epoch, seconds, valid NDCG@10, test NDCG@10) after every epoch."""
    seed_everything(seed)
    model = build_model(model_name, num_items=scene.num_items, max_len=50, **model_opts)
    tests = []
    start = time.time()
    cfg = TrainConfig(seed=seed, device="cpu", progress=False, max_len=50, epochs=epochs, **train_opts)

    def watch(row):
        tests.append(flatten(evaluate(model, scene, "test"))["NDCG@10"])
        if echo:
            print(row["epoch"], round(row["seconds"]), round(row["valid_NDCG@10"], 4), round(tests[-1], 4), flush=True)

    result = fit(model, scene, cfg, log=watch, windows=windows)
    test = flatten(evaluate(result.model, scene, "test"))
    line = {"tag": tag, **(extra or {}), "dataset": scene.name, "model": model_name, "model_options": model_opts,
            "train_options": train_opts, "seed": seed, "test": round(test["NDCG@10"], 4),
            "valid": round(result.valid["NDCG@10"], 4), "best_epoch": result.best_epoch,
            "max_test": round(max(tests), 4), "argmax": tests.index(max(tests)),
            "s_per_epoch": round(result.train_seconds / result.epochs, 2), "wall": round(time.time() - start),
            "test_per_epoch": [round(t, 4) for t in tests],
            "valid_per_epoch": [round(v, 4) for v in result.history["valid_NDCG@10"]]}
    print(json.dumps(line), flush=True)
    with (Path(__file__).parent / "results" / results).open("a") as f:
        f.write(json.dumps(line) + "\n")
    return line


def main(argv: list[str]) -> None:
    if len(argv) < 5:
        raise SystemExit(__doc__)
    model_name, model_opts, train_opts = argv[0], json.loads(argv[1]), json.loads(argv[2])
    seeds, tag = [int(s) for s in argv[3].split(",")], argv[4]
    torch.set_num_threads(1)
    scene = load_scene(argv[5] if len(argv) > 5 else "ml-100k")
    epochs = train_opts.pop("epochs", 100)
    for seed in seeds:
        run_seed(scene, model_name, model_opts, train_opts, epochs, seed, tag)


if __name__ == "__main__":
    main(sys.argv[1:])
