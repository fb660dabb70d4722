"""``recnb evaluate``: re-evaluate a checkpoint on a scene."""

from __future__ import annotations

import json

from recnb.commands.common import add_data_args, add_evaluation_args, evaluation_of, scene_of
from recnb.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("evaluate")
    p.add_argument("--model", required=True, help="path to model.pt")
    add_data_args(p)
    p.add_argument("--split", default="test", help="valid or test")
    add_evaluation_args(p)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--kcore", type=int, default=None, help="k-core filter (default: the one the model was trained with)")
    p.set_defaults(func=run)


def run(args) -> int:
    from recnb.checkpoint import check_compatible, load_checkpoint
    from recnb.evaluation import evaluate
    from recnb.metrics import flatten

    if args.split not in ("valid", "test"):
        raise ConfigError(f"--split: expected valid or test, got {args.split!r}")
    evaluation = evaluation_of(args)
    model, meta = load_checkpoint(args.model, args.device)
    kcore = args.kcore if args.kcore is not None else (meta.get("scene") or {}).get("kcore")
    scene = scene_of(args, kcore=kcore)  # built as the model's scene was
    check_compatible(model, meta, scene, args.model)
    df = evaluate(model, scene, args.split, evaluation)
    print(json.dumps({"dataset": scene.name, "model": model.name, "split": args.split,
                      "protocol": evaluation.protocol, "exclude_seen": evaluation.exclude_seen, "metrics": flatten(df)},
                     indent=2))
    return 0

