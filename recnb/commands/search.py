"""``recnb search``: search a student architecture for a scene under a frozen teacher.

Writes ``OUT/architecture.json`` and the history (``alphas.csv``, ``losses.csv``,
``flows.csv``, ``layer_weights.csv``, ``epochs.csv``); ``--resume`` continues a killed
search from its last epoch checkpoint.
"""

from __future__ import annotations

from recnb.commands.common import add_data_args, add_run_args, prepare_out_dir
from recnb.errors import ConfigError
from recnb.files import read_json_file

SEARCH_FLAGS = {  # flag -> (SearchConfig field, type, help)
    "--beta": ("beta", float, "weight of the cost loss (default 0.1)"),
    "--gamma": ("gamma", float, "weight of KD against CE (default 0.5)"),
    "--temperature": ("T", float, "KD temperature T (default 1)"),
    "--cost": ("cost", str, "params, flops or latency (default params)"),
    "--epochs": ("epochs", int, "search epochs (default 4)"),
    "--batch-size": ("batch_size", int, None),
    "--lr": ("lr", float, "learning rate of the weights"),
    "--lr-alpha": ("lr_alpha", float, "learning rate of the architecture parameters"),
    "--patience": ("patience", int, None),
    "--max-steps": ("max_steps", int, "cap on steps per epoch (default 8; 0 = a full pass)"),
    "--width": ("width", int, "supernet (proxy) width during the search (default 32)"),
    "--cells": ("num_cells", int, "K, cells (default 4)"),
    "--nodes": ("num_nodes", int, "N, intermediate nodes per cell (default 3)"),
    "--relaxation": ("relaxation", str, "softmax or gumbel"),
    "--emd-update": ("emd_update", str, "softmax, normalize or none"),
    "--max-len": ("max_len", int, None),
}


def add_search_args(p) -> None:
    for flag, (_, kind, help_) in SEARCH_FLAGS.items():
        p.add_argument(flag, type=kind, default=None, help=help_)
    p.add_argument("--ops", default=None, help="comma-separated candidate ops (default: the paper's 8 + self_attention)")
    p.add_argument("--hard", action="store_true", help="straight-through one-hot Gumbel samples")
    p.add_argument("--share-alphas", action="store_true", help="one set of alphas for all cells")
    p.add_argument("--search-config", default=None, help="JSON file of SearchConfig fields (flags win)")


def search_config_from_args(args, **overrides):
    from recnb.adarec.search import SearchConfig

    opts = read_json_file(args.search_config, "--search-config") if getattr(args, "search_config", None) else {}
    for flag, (name, _, _) in SEARCH_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            opts[name] = value
    if getattr(args, "ops", None):
        from recnb.adarec.ops import check_op

        opts["primitives"] = [check_op(o.strip(), "--ops") for o in args.ops.split(",") if o.strip()]
    if getattr(args, "hard", False):
        opts["hard"] = True
    if getattr(args, "share_alphas", False):
        opts["share_alphas"] = True
    opts.update(overrides)
    return SearchConfig.from_dict(opts)


def register(sub) -> None:
    p = sub.add_parser("search", help="AdaRec: search a student architecture under a frozen teacher")
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--teacher", default=None, help="teacher checkpoint (model.pt); omit to search without KD")
    p.add_argument("--resume", action="store_true", help="continue a killed search in --out from its last checkpoint")
    add_search_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from recnb.adarec.search import search
    from recnb.data import load_scene

    cfg = search_config_from_args(args, seed=args.seed, device=args.device, progress=not args.quiet)
    out = prepare_out_dir(args.out, args.force, resume=args.resume)
    if args.teacher is None and cfg.gamma > 0:
        raise ConfigError("--teacher: required unless --gamma 0 (search without distillation)")
    scene = load_scene(args.dataset, args.data_dir)
    res = search(scene, args.teacher, cfg, out, resume=args.resume)
    print(f"search on {scene.name} (beta={cfg.beta}, cost={cfg.cost}): best epoch {res.best_epoch}, "
          f"{res.epochs} epochs, {res.seconds:.0f}s (+{res.teacher_seconds:.0f}s teacher cache)")
    print(f"architecture ({res.architecture.params(cfg.width)} cell params): {res.architecture.signature()}")
    print(f"-> {out / 'architecture.json'}")
    return 0
