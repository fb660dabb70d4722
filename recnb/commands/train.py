"""``recnb train``: train one model on a scene, write ``model.pt`` and ``metrics.json``."""

from __future__ import annotations

import dataclasses
import time

from recnb.commands.common import add_data_args, add_run_args, prepare_out_dir, read_json_file
from recnb.errors import ConfigError
from recnb.models import BASE_MODELS, model_class
from recnb.train import recipe

TRAIN_FIELDS = ("epochs", "batch_size", "lr", "weight_decay", "loss", "patience", "max_len", "context", "time_budget", "warmup", "lr_decay", "label_smoothing", "ema", "ema_warmup", "ema_start", "reorder")


def _model_fields() -> dict:
    """Every hyper-parameter of every base model, as ``{field: type}``."""
    out = {}
    for name in BASE_MODELS:
        for f in dataclasses.fields(model_class(name).config_class):
            if f.name not in ("num_items", "max_len"):
                out[f.name] = f.type
    return out


def register(sub) -> None:
    p = sub.add_parser("train", help="train a sequential model and evaluate it")
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--model", required=True, help=f"one of {', '.join(BASE_MODELS)}")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--loss", default=None, help="ce (full softmax, default) or bce (one sampled negative)")
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--max-len", type=int, default=None)
    p.add_argument("--context", type=int, default=None, help="overlap of training windows (more context per target)")
    p.add_argument("--time-budget", type=float, default=None, help="stop after the epoch that crosses this many seconds")
    p.add_argument("--warmup", type=float, default=None,
                   help="epochs of linear lr warm-up (lets SASRec take a higher lr; 0 = off)")
    p.add_argument("--lr-decay", default=None,
                   help="none (default), cosine or linear: the lr falls to 0 at the end of --epochs after the warm-up")
    p.add_argument("--label-smoothing", type=float, default=None,
                   help="share of each CE target spread over all items (0 = off)")
    p.add_argument("--ema", type=float, default=None,
                   help="decay of a moving average of the weights that is validated and kept instead (e.g. 0.995; 0 = off)")
    p.add_argument("--ema-warmup", type=float, default=None,
                   help="the average's decay at step t is at most (1 + t) / (this + t): 10 (default) averages "
                        "about the last tenth of the steps, 2 about all of them until --ema takes over")
    p.add_argument("--ema-start", type=float, default=None,
                   help="epochs before the average starts (it follows the weights until then; 0 = from the start)")
    p.add_argument("--reorder", type=float, default=None,
                   help="shuffle a random span of this fraction of each training window (augmentation; 0 = off)")
    p.add_argument("--protocol", default="full", help="full or sampled100")
    p.add_argument("--exclude-seen", action="store_true", help="mask items the user already interacted with")
    p.add_argument("--kcore", type=int, default=None)
    p.add_argument("--config", default=None, help="JSON file of model and training options")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run in --out from its train_state.pt (same settings; else it starts over)")
    group = p.add_argument_group("model hyper-parameters (each applies to the models that have it)")
    for field, typ in _model_fields().items():
        kind = {"int": int, "float": float}.get(str(getattr(typ, "__name__", typ)), None)
        if field == "dilations":
            group.add_argument("--dilations", default=None, help="comma-separated, e.g. 1,4")
        else:
            group.add_argument(f"--{field.replace('_', '-')}", dest=field, type=kind, default=None)
    p.set_defaults(func=run)


def split_options(model: str, args) -> tuple[dict, dict]:
    """Model config and training options from ``--config`` then the flags (flags win)."""
    cls = model_class(model)
    model_names = {f.name for f in dataclasses.fields(cls.config_class)} - {"num_items"}
    file_opts = read_json_file(args.config, "--config") if args.config else {}
    model_cfg, train_cfg = {}, {}
    for key, value in file_opts.items():
        if key in TRAIN_FIELDS:
            train_cfg[key] = value
        elif key in model_names:
            model_cfg[key] = value
        else:
            raise ConfigError(f"--config {args.config}: unknown option '{key}' for model {model}")
    for key in TRAIN_FIELDS:
        if getattr(args, key, None) is not None:
            train_cfg[key] = getattr(args, key)
    for key in _model_fields():
        value = getattr(args, key, None)
        if value is None:
            continue
        if key not in model_names:
            raise ConfigError(f"--{key.replace('_', '-')} does not apply to model {model}")
        if key == "dilations":
            value = [int(x) for x in str(value).split(",")]
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
    from recnb.data import load_scene
    from recnb.experiment import train_and_report

    if args.model not in BASE_MODELS:
        raise ConfigError(f"--model: unknown model '{args.model}'; choose one of {', '.join(BASE_MODELS)}")
    if args.protocol not in ("full", "sampled100"):
        raise ConfigError(f"--protocol: expected full or sampled100, got {args.protocol!r}")
    model_cfg, train_cfg = split_options(args.model, args)
    out = prepare_out_dir(args.out, args.force, resume=args.resume)
    if args.resume and not (out / "train_state.pt").exists() and any(out.iterdir()):
        raise ConfigError(f"--resume: {out} holds no train_state.pt to resume from (a finished run deletes it); "
                          "pass --force to start over")
    start = time.perf_counter()
    scene = load_scene(args.dataset, args.data_dir, kcore=args.kcore)
    cfg = recipe(args.model, device=args.device, seed=args.seed, progress=not args.quiet and group.is_main, **train_cfg)  # flags win
    if cfg.batch_size < group.world_size:
        raise ConfigError(f"--batch-size {cfg.batch_size}: the global batch must hold at least one window per process "
                          f"({group.world_size} under torchrun)")
    metrics = train_and_report(scene, args.model, model_cfg, cfg, out, args.protocol, args.exclude_seen, resume=args.resume)
    if not group.is_main:
        return 0
    where = f" ({group.world_size} processes)" if group.parallel else ""
    print(f"{args.model} on {scene.name}: test NDCG@10 {metrics['test']['NDCG@10']:.4f} "
          f"HR@10 {metrics['test']['HR@10']:.4f} (best epoch {metrics['best_epoch']}, "
          f"{time.perf_counter() - start:.0f}s){where} -> {out}")
    return 0
