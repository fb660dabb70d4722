"""``recnb adarec``: the whole AdaRec pipeline on one scene (teacher, one search per beta,
distillation, no-KD twins, a hand-made small NextItNet with the same KD), writing
``OUT/summary.csv`` and ``OUT/summary.json``."""

from __future__ import annotations

import contextlib
import functools

from recnb.commands.common import (
    add_data_args,
    add_evaluation_args,
    add_run_args,
    more_group,
    parse_list,
    prepare_out_dir,
    scene_of,
)
from recnb.commands.distill import distill_config, distill_flags
from recnb.commands.search import add_search_args
from recnb.commands.search import configs as search_configs
from recnb.errors import ConfigError


def pipeline_distill_flags():
    """The students' DistillConfig options, ``--distill-*`` beside the search's (the search's
    ``--max-len`` is theirs too: the teacher cache holds windows of that length)."""
    return distill_flags(prefix="distill-", rename={"width": "student-width", "time_budget": "time-budget"},
                         skip=("max_len",))


def register(sub) -> None:
    p = parser = sub.add_parser("adarec")
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--teacher", default=None, help="teacher checkpoint to reuse (else one is trained)")
    p.add_argument("--betas", default="0.01,0.1,1", help="cost-loss weights, one search each")
    p.add_argument("--default-beta", type=float, default=None,
                   help="the student the claims are about (default: the best on validation among students with "
                        "at most 1/8 of the teacher's non-embedding parameters)")
    p.add_argument("--seeds", type=int, default=3, help="distillation seeds per student")
    p.add_argument("--twins", default="all", help="no-KD twins for: all, default or none")
    p.add_argument("--resume", action="store_true", help="reuse finished pieces in --out")
    add_evaluation_args(p, ("exclude_seen",))
    p = more_group(parser, "pipeline options")
    p.add_argument("--no-baseline", action="store_true", help="skip the hand-made students of the default one's size")
    p.add_argument("--baselines", default="nextitnet,sasrec",
                   help="the hand-made students of the default one's size, trained with the same KD (default nextitnet,sasrec)")
    p.add_argument("--dropouts", default=None,
                   help="student dropouts to choose from per beta, e.g. 0,0.1,0.2,0.3: the no-teacher twin's best on "
                        "validation is given to the distilled students and the twins (default: --distill-dropout)")
    p.add_argument("--latency-batch", default="1,256", help="batch sizes for the latency measurement")
    p.add_argument("--parallel", default="none",
                   help="none (one piece after another here) or ray (searches and distillations as Ray tasks, "
                        "pip install recnb[sweep]) (default none)")
    p.add_argument("--address", default=None, help="with --parallel ray: a Ray cluster to join (auto or HOST:PORT); "
                                                   "default: a local Ray")
    p.add_argument("--resources-per-trial", default="cpu=1,gpu=0",
                   help="with --parallel ray: cpu=N,gpu=M per piece, torch on N threads (default cpu=1,gpu=0)")
    add_search_args(parser, skip=("beta",))  # --betas: one search each
    own, train = pipeline_distill_flags()
    own.add_groups(parser, "distillation options of the students (DistillConfig)")
    train.add_groups(parser, "training options of the students and of a trained teacher (DistillConfig.train)",
                     first=("epochs", "time_budget"))
    parser.set_defaults(func=run)


def configs(args):
    """The SearchConfig and DistillConfig of an ``adarec`` command line."""
    scfg = search_configs(args)
    return scfg, distill_config(args, *pipeline_distill_flags(), max_len=scfg.max_len)


def pool_of(args, device: str):
    """A maker of the pool ``--parallel`` names (in this process, or Ray tasks) and the latency
    devices (None: as the machine has), checked before anything runs (a missing extra is one
    line). The teacher cache is built on ``device`` and sent to the tasks as it is, so a CUDA
    one needs tasks with a GPU; tasks without one measure latency on the CPU only."""
    from recnb.adarec.pipeline import InProcess

    if args.parallel not in ("none", "ray"):
        raise ConfigError(f"--parallel: expected none or ray, got {args.parallel!r}")
    if args.parallel == "none":
        if args.address is not None:
            raise ConfigError("--address: only with --parallel ray")
        return (lambda: contextlib.nullcontext(InProcess())), None
    from recnb.checkpoint import resolve_device
    from recnb.parallel import RayPool
    from recnb.sweep import import_ray, parse_resources

    resources = parse_resources(args.resources_per_trial)
    if resources["gpu"] <= 0 and resolve_device(device).type == "cuda":
        raise ConfigError("--resources-per-trial: gpu=0 gives the Ray tasks no GPU, but the teacher and its cache live on "
                          "--device cuda here; give each task a GPU (gpu=1, or gpu=0.5 for two) or pass --device cpu")
    import_ray()
    return functools.partial(RayPool, args.address, resources), (("cpu",) if resources["gpu"] <= 0 else None)


def run(args) -> int:
    from recnb.adarec.pipeline import check_baselines, run_pipeline

    if args.seeds < 1:  # checked before the search, not after it has run
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    scfg, dcfg = configs(args)
    betas = parse_list(args.betas, float, "--betas")
    batches = parse_list(args.latency_batch, int, "--latency-batch")
    dropouts = parse_list(args.dropouts, float, "--dropouts") if args.dropouts else None
    baselines = check_baselines([b.strip() for b in args.baselines.split(",") if b.strip()], "--baselines")
    make_pool, devices = pool_of(args, dcfg.train.device)
    scene = scene_of(args)
    out = prepare_out_dir(args.out, args.force, resume=args.resume)
    with make_pool() as pool:
        summary = run_pipeline(scene, out, args.teacher, betas, args.default_beta, args.seeds, scfg, dcfg,
                               twins=args.twins, baseline=not args.no_baseline, baselines=baselines, devices=devices, batches=batches,
                               data_dir=args.data_dir, reuse=args.resume, pool=pool,
                               exclude_seen=args.exclude_seen, dropouts=dropouts)
    for r in summary["rows"]:
        print(f"{r['name']:<32} {r['role']:<14} params(no emb) {r['params_no_embedding']:>9} "
              f"NDCG@10 {r['test']['NDCG@10']:.4f} CPU b1 {r.get('latency_cpu_b1_ms', float('nan')):.3f} ms")
    from recnb.adarec.summary import story

    print("\n".join(story(summary)))
    print(f"-> {out / 'summary.json'}")
    return 0
