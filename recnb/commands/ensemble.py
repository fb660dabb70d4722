"""``recnb ensemble``: trained models of one scene served as one (their scores summed), the
teacher that ranks better than any of them; evaluated and written like a trained model."""

from __future__ import annotations

import time

from recnb.commands.common import (
    add_data_args,
    add_evaluation_args,
    checkpoint_paths,
    evaluation_of,
    parse_list,
    prepare_out_dir,
    scene_of,
)
from recnb.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("ensemble")
    p.add_argument("--models", required=True, help="model.pt files (or run folders holding one), comma-separated; a quoted pattern "
                        "such as 'runs/beauty-*/new-seed*' stands for every match, in sorted order")
    add_data_args(p)
    p.add_argument("--weights", default=None,
                   help="one weight per model on its scores, comma-separated (default: all 1)")
    p.add_argument("--out", required=True, help="output directory: model.pt and metrics.json")
    p.add_argument("--force", action="store_true", help="overwrite an existing output directory")
    add_evaluation_args(p)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from recnb.checkpoint import load_checkpoint, save_checkpoint, write_json
    from recnb.models.ensemble import Ensemble, valid_weights
    from recnb.runs import evaluate_and_measure

    evaluation = evaluation_of(args)
    paths = checkpoint_paths(args.models, "--models")
    if len(paths) < 2:
        raise ConfigError(f"--models: give at least two models to ensemble, got {len(paths)}")
    weights = parse_list(args.weights, float, "--weights") if args.weights else None
    if weights is not None and not valid_weights(weights, len(paths)):  # named by its flag, before any loading
        raise ConfigError(f"--weights: give {len(paths)} numbers >= 0, one per model, got {args.weights!r}")
    if (Path(args.out) / "model.pt").resolve() in {p.resolve() for p in paths}:
        raise ConfigError(f"--out {args.out}: holds one of the --models, which the ensemble would overwrite")
    start = time.perf_counter()
    scene = scene_of(args)
    members = [load_checkpoint(p, args.device, scene, "--models")[0] for p in paths]  # each checked against the scene
    out = prepare_out_dir(args.out, args.force)
    model = Ensemble.of(members, weights).to(members[0].item_weights().device).eval()
    metrics = {"dataset": scene.name, "model": model.name, "members": [str(p) for p in paths],
               "weights": weights or [1.0] * len(paths),
               **evaluate_and_measure(model, scene, evaluation),
               "config": model.config.to_dict()}
    save_checkpoint(out / "model.pt", model, scene, extra={"metrics": metrics})
    write_json(out / "metrics.json", metrics)
    print(f"ensemble of {len(members)} on {scene.name}: test NDCG@10 {metrics['test']['NDCG@10']:.4f} "
          f"HR@10 {metrics['test']['HR@10']:.4f} ({time.perf_counter() - start:.0f}s) -> {out}")
    return 0
