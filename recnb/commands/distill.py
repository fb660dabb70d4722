"""``recnb distill``: train a derived student from scratch, with the frozen teacher
(CE + prediction KD + EMD) or, with ``--no-teacher``, alone. Writes ``model.pt``,
``metrics.json`` (test metrics, params, FLOPs, latency) and ``history.csv``; ``--resume``
continues a killed run from its per-epoch training state, under the settings it was started
with (``settings.json``)."""

from __future__ import annotations

import dataclasses

from recnb.commands.common import (
    RUN_FIELDS,
    ConfigFlags,
    add_data_args,
    add_evaluation_args,
    add_run_args,
    parse_list,
    prepare_out_dir,
    scene_of,
)
from recnb.commands.train import train_flags
from recnb.errors import ConfigError


def distill_flags(prefix: str = "", rename: dict | None = None, skip=()) -> tuple[ConfigFlags, ConfigFlags]:
    """DistillConfig's options and those of its training settings (``DistillConfig().train``
    gives their defaults: the one place distillation defaults are written)."""
    from recnb.adarec.pipeline import DistillConfig

    base = DistillConfig()
    rename = {"T": f"{prefix}temperature", "T_emd": f"{prefix}temperature-emd", **(rename or {})}
    own = ConfigFlags(DistillConfig, skip=("train",), prefix=prefix, rename=rename)
    train = train_flags(skip=(*RUN_FIELDS, *skip), models=(), prefix=prefix, rename=rename,
                        defaults=dataclasses.asdict(base.train))
    return own, train


def distill_config(args, own: ConfigFlags, train: ConfigFlags, **train_overrides):
    """The DistillConfig the flags describe, laid over ``DistillConfig()``."""
    from recnb.adarec.pipeline import DistillConfig

    base = DistillConfig()
    settings = dataclasses.replace(base.train, **train.given(args), device=args.device, seed=args.seed,
                                   progress=not args.quiet, **train_overrides)
    return dataclasses.replace(base, **own.given(args), train=settings)


def register(sub) -> None:
    p = sub.add_parser("distill")
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--arch", required=True, help="architecture.json written by `recnb search`")
    p.add_argument("--teacher", default=None, help="teacher checkpoint (model.pt)")
    p.add_argument("--no-teacher", action="store_true", help="train the same student without distillation")
    p.add_argument("--latency-batch", default="1,256", help="batch sizes for the latency measurement")
    add_evaluation_args(p, ("exclude_seen",))
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run in --out from its train_state.pt (the same settings, else refused); "
                        "a finished run is read back")
    own, train = distill_flags()
    own.add_groups(p, "distillation options (DistillConfig)", first=("width",))
    train.add_groups(p, "training options of the student (DistillConfig.train)", first=("epochs", "time_budget"))
    p.set_defaults(func=run)


def configs(args):
    """The DistillConfig of a ``distill`` command line."""
    return distill_config(args, *distill_flags())


def run(args) -> int:
    import torch

    from recnb.adarec.architecture import Architecture
    from recnb.adarec.pipeline import build_student, check_resume_settings, train_model
    from recnb.checkpoint import load_checkpoint, model_digest, resolve_device
    from recnb.data import train_windows
    from recnb.files import ids_digest
    from recnb.kd import TeacherCache

    if args.no_teacher == (args.teacher is not None):
        raise ConfigError("give exactly one of --teacher PATH or --no-teacher")
    arch = Architecture.load(args.arch)
    cfg = configs(args)
    max_len = cfg.train.max_len
    batches = parse_list(args.latency_batch, int, "--latency-batch")
    out = prepare_out_dir(args.out, args.force, args.resume, "settings.json", "recnb distill run (no settings.json)",
                          inputs={"--teacher": args.teacher, "--arch": args.arch})
    scene = scene_of(args)
    teacher = None
    if args.teacher:
        device = resolve_device(args.device)
        teacher, _ = load_checkpoint(args.teacher, device=str(device), scene=scene, what="--teacher")
    # a resume must continue with the same teacher and scene: compared by content, not by path
    settings = {"arch": arch.signature(), "teacher": model_digest(teacher) if teacher is not None else None,
                "scene_items": ids_digest(scene.item_ids), "exclude_seen": args.exclude_seen,
                "distill": dataclasses.asdict(cfg)}
    check_resume_settings(out / "settings.json", settings, args.resume)
    cache = TeacherCache(teacher, train_windows(scene, max_len), device=device) if teacher is not None else None
    model = build_student(scene, arch, cfg.width, max_len, args.seed, cfg.dropout)
    devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    m = train_model(scene, model, cfg, cache, out, devices, batches, reuse=args.resume, exclude_seen=args.exclude_seen)
    print(f"student ({'KD' if cache else 'no teacher'}) on {scene.name}: test NDCG@10 {m['test']['NDCG@10']:.4f} "
          f"HR@10 {m['test']['HR@10']:.4f}; {m['params_no_embedding']} non-embedding params; "
          f"CPU b1 {m.get('latency_cpu_b1_ms', float('nan')):.3f} ms -> {out}")
    return 0
