"""``recnb train``: train one model on a scene, write ``model.pt`` and ``metrics.json``."""

from __future__ import annotations

import dataclasses
import time

from recnb.commands.common import (
    RUN_FIELDS,
    ConfigFlags,
    add_data_args,
    add_evaluation_args,
    add_run_args,
    evaluation_of,
    more_group,
    parse_list,
    prepare_out_dir,
    scene_of,
    show,
)
from recnb.errors import ConfigError
from recnb.files import read_json_file
from recnb.models import BASE_MODELS, model_class
from recnb.train import RECIPES, SCENE_RECIPES, TrainConfig, recipe, scene_kind, split_settings

NOT_FLAGS = RUN_FIELDS  # TrainConfig fields set by add_run_args (--device, --seed, --quiet)


def recipe_note(field: str, models=None) -> str:
    """``"; recipe: sasrec 0.003, gru4rec 0.003; large-sparse scenes: sasrec 4096"`` where the
    recipe of one of ``models`` sets ``field`` (the default kind, then each other kind of scene
    where it differs)."""
    parts = []
    for kind, recipes in (("", RECIPES), *((k, v) for k, v in SCENE_RECIPES.items() if v)):
        got = []
        for model in RECIPES if models is None else models:
            settings = recipes.get(model, {})
            value = settings.get(field, settings.get("model", {}).get(field))
            default = RECIPES.get(model, {}).get(field, RECIPES.get(model, {}).get("model", {}).get(field))
            if value is not None and (not kind or value != default):
                got.append(f"{model} {show(value)}")
        if got:
            parts.append(f"{kind + ' scenes: ' if kind else 'recipe: '}{', '.join(got)}")
    return f"; {'; '.join(parts)}" if parts else ""


def train_flags(skip=NOT_FLAGS, models=None, **kw) -> ConfigFlags:
    """TrainConfig's options, each naming the value the recipe of ``models`` sets (every recipe
    by default, none for ``()``)."""
    return ConfigFlags(TrainConfig, skip=tuple(skip), notes={f.name: recipe_note(f.name, models)
                                                              for f in dataclasses.fields(TrainConfig)}, **kw)


def model_flags() -> list[ConfigFlags]:
    """Every hyper-parameter of every base model, once (the first model that has it gives its
    type and help)."""
    out, seen = [], {"num_items", "max_len"}
    for name in BASE_MODELS:
        cls = model_class(name).config_class
        out.append(ConfigFlags(cls, skip=tuple(seen), label=cls.__name__.removesuffix("Config"),
                               notes={f.name: recipe_note(f.name) for f in dataclasses.fields(cls)},
                               lists={"dilations": lambda text: parse_list(text, int, "--dilations")}))
        seen |= {f.name for f in dataclasses.fields(cls)}
    return out


MODEL_FIRST = ("hidden_size", "num_layers")  # the model options `train --help` shows first


def register(sub) -> None:
    p = sub.add_parser("train")
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--model", required=True, help=f"one of {', '.join(BASE_MODELS)}")
    add_evaluation_args(p)
    p.add_argument("--kcore", type=int, default=None, help="keep users and items with at least this many interactions")
    p.add_argument("--config", default=None, help="JSON file of model and training options (flags win)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run in --out from its train_state.pt (same settings; else it starts over)")
    train_flags().add_groups(p, "training options (unset ones come from the model's recipe for the kind of scene, "
                                "recnb.train.scene_kind; metrics.json records which)",
                             first=("epochs", "lr", "max_len", "time_budget"))
    title = "model hyper-parameters (each applies to the models that have it)"
    shown, more = p.add_argument_group(title), more_group(p, title)
    for flags in model_flags():
        flags.add_to(shown, names=MODEL_FIRST)
        flags.add_to(more, names=[n for n in flags.fields() if n not in MODEL_FIRST])
    p.set_defaults(func=run)


def split_options(model: str, args) -> tuple[dict, dict]:
    """Model config and training options from ``--config`` then the flags (flags win)."""
    file_opts = read_json_file(args.config, "--config") if args.config else {}
    model_cfg, train_cfg = split_settings(model, file_opts, f"--config {args.config}")
    model_names = {f.name for f in dataclasses.fields(model_class(model).config_class)} - {"num_items"}
    train_cfg.update(train_flags().given(args))
    for group in model_flags():
        for key, value in group.given(args).items():
            if key not in model_names:
                raise ConfigError(f"{group.option(key)} does not apply to model {model}")
            model_cfg[key] = value
    if "max_len" in train_cfg:
        model_cfg["max_len"] = train_cfg["max_len"]
    return model_cfg, train_cfg


def run(args) -> int:
    from recnb import distributed

    group = distributed.init_from_env(args.device)  # torchrun: join the process group (else one process)
    try:
        return _run(args, group)
    finally:
        distributed.shutdown()


def _run(args, group) -> int:
    from recnb.runs import train_and_report

    if args.model not in BASE_MODELS:
        raise ConfigError(f"--model: unknown model '{args.model}'; choose one of {', '.join(BASE_MODELS)}")
    evaluation = evaluation_of(args)
    model_cfg, train_cfg = split_options(args.model, args)
    out = prepare_out_dir(args.out, args.force, args.resume, "train_state.pt",
                          "train_state.pt (a finished run deletes it)")
    start = time.perf_counter()
    scene = scene_of(args, kcore=args.kcore)
    kind, why = scene_kind(scene)  # the recipe follows the scene's statistics, never its name
    cfg = recipe(args.model, scene, device=args.device, seed=args.seed, progress=not args.quiet and group.is_main,
                 **train_cfg)  # flags win
    if cfg.batch_size < group.world_size:
        raise ConfigError(f"--batch-size {cfg.batch_size}: the global batch must hold at least one window per process "
                          f"({group.world_size} under torchrun)")
    metrics = train_and_report(scene, args.model, model_cfg, cfg, out, evaluation=evaluation, resume=args.resume,
                               info={"recipe": {"kind": kind, "rule": why, "flags": sorted(train_cfg)}})
    if not group.is_main:
        return 0
    where = f" ({group.world_size} processes)" if group.parallel else ""
    print(f"{args.model} on {scene.name}: test NDCG@10 {metrics['test']['NDCG@10']:.4f} "
          f"HR@10 {metrics['test']['HR@10']:.4f} (best epoch {metrics['best_epoch']}, "
          f"{time.perf_counter() - start:.0f}s){where} -> {out}")
    return 0
