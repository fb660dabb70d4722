"""``recnb search``: search a student architecture for a scene under a frozen teacher.

Writes ``OUT/architecture.json`` and the history (``alphas.csv``, ``losses.csv``,
``flows.csv``, ``layer_weights.csv``, ``epochs.csv``); ``--resume`` continues a killed
search from its last epoch checkpoint.
"""

from __future__ import annotations

from recnb.commands.common import RUN_FIELDS, ConfigFlags, add_data_args, add_run_args, prepare_out_dir, scene_of
from recnb.errors import ConfigError
from recnb.files import read_json_file


def _ops(text: str) -> list:
    from recnb.adarec.ops import check_op

    ops = [check_op(o.strip(), "--ops") for o in text.split(",") if o.strip()]
    if not ops:
        raise ConfigError("--ops: give at least one candidate op")
    return ops


def search_flags() -> ConfigFlags:
    """SearchConfig's options (seed, device and progress come from the run arguments)."""
    from recnb.adarec.search import SearchConfig

    return ConfigFlags(SearchConfig, skip=RUN_FIELDS, lists={"primitives": _ops},
                       rename={"T": "temperature", "T_emd": "temperature-emd", "num_cells": "cells",
                               "num_nodes": "nodes", "primitives": "ops"})


def add_search_args(p, skip=()) -> None:
    """SearchConfig's options (``skip``: fields the command sets otherwise) and ``--search-config``."""
    flags = search_flags()
    flags.skip = (*flags.skip, *skip)
    flags.add_groups(p, "search options (SearchConfig; --search-config and the flags set them)",
                     first=("epochs", "beta", "width", "max_len"))
    p.add_argument("--search-config", default=None, help="JSON file of SearchConfig fields (flags win)")


def search_config_from_args(args, **overrides):
    """SearchConfig from the dataclass defaults, then ``--search-config``, then the flags, then ``overrides``."""
    from recnb.adarec.search import SearchConfig

    opts = read_json_file(args.search_config, "--search-config") if getattr(args, "search_config", None) else {}
    opts.update(search_flags().given(args))
    opts.update(overrides)
    return SearchConfig.from_dict(opts)


def register(sub) -> None:
    p = sub.add_parser("search")
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--teacher", default=None, help="teacher checkpoint (model.pt); omit to search without KD")
    p.add_argument("--resume", action="store_true", help="continue a killed search in --out from its last checkpoint")
    add_search_args(p)
    p.set_defaults(func=run)


def configs(args):
    """The SearchConfig of a ``search`` (or ``adarec``) command line."""
    return search_config_from_args(args, seed=args.seed, device=args.device, progress=not args.quiet)


def run(args) -> int:
    from recnb.adarec.search import search

    cfg = configs(args)
    out = prepare_out_dir(args.out, args.force, resume=args.resume)
    if args.teacher is None and cfg.gamma > 0:
        raise ConfigError("--teacher: required unless --gamma 0 (search without distillation)")
    scene = scene_of(args)
    res = search(scene, args.teacher, cfg, out, resume=args.resume)
    best = f"best epoch {res.best_epoch}" if res.best_epoch is not None else \
        f"no epoch past the warm-up (--warmup-epochs {cfg.warmup_epochs}), so the alphas never moved"
    print(f"search on {scene.name} (beta={cfg.beta}, cost={cfg.cost}): {best}, "
          f"{res.epochs} epochs, {res.seconds:.0f}s (+{res.teacher_seconds:.0f}s teacher cache)")
    print(f"architecture ({res.architecture.params(cfg.width)} cell params): {res.architecture.signature()}")
    print(f"-> {out / 'architecture.json'}")
    return 0
