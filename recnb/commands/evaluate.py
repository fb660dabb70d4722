"""``recnb evaluate``: re-evaluate a checkpoint on a scene."""

from __future__ import annotations

import json

from recnb.commands.common import add_data_args
from recnb.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint (prints JSON)")
    p.add_argument("--model", required=True, help="path to model.pt")
    add_data_args(p)
    p.add_argument("--split", default="test", help="valid or test")
    p.add_argument("--protocol", default="full", help="full or sampled100")
    p.add_argument("--exclude-seen", action="store_true")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    from recnb.data import load_scene
    from recnb.metrics import flatten
    from recnb.train import evaluate, load_checkpoint

    if args.split not in ("valid", "test"):
        raise ConfigError(f"--split: expected valid or test, got {args.split!r}")
    model, meta = load_checkpoint(args.model, args.device)
    scene = load_scene(args.dataset, args.data_dir)
    check_compatible(model, meta, scene, args.model)
    df = evaluate(model, scene, args.split, args.protocol, args.exclude_seen)
    print(json.dumps({"dataset": scene.name, "model": model.name, "split": args.split,
                      "protocol": args.protocol, "exclude_seen": args.exclude_seen, "metrics": flatten(df)}, indent=2))
    return 0


def check_compatible(model, meta: dict, scene, path) -> None:
    """The checkpoint's item ids must be the scene's, or every score is meaningless."""
    maps = meta.get("id_maps") or {}
    if maps.get("item_ids") and list(maps["item_ids"]) != list(scene.item_ids):
        raise ConfigError(f"--model {path}: trained on '{meta.get('dataset')}', whose item ids differ from '{scene.name}'")
    if model.config.num_items != scene.num_items:
        raise ConfigError(f"--model {path}: has {model.config.num_items} items, dataset has {scene.num_items}")
