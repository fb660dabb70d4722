"""``recnb dllm2rec``: train a student with and without a teacher's DLLM2Rec artifacts
(same budget, validation-only model selection); write ``student.pt`` and ``metrics.json``
= ``{"teacher", "distilled", "baseline", ...}`` (means over seeds)."""

from __future__ import annotations

import time

from recnb.commands.common import (
    ConfigFlags,
    add_data_args,
    add_evaluation_args,
    add_run_args,
    prepare_out_dir,
    scene_of,
)
from recnb.commands.train import train_flags
from recnb.errors import ConfigError


def dllm2rec_flags() -> tuple[ConfigFlags, ConfigFlags]:
    """DLLM2RecConfig's options and the students' training options (unset ones come from the
    student's recipe, so the plain twin is trained as well as `recnb train` trains it)."""
    from recnb.dllm2rec.pipeline import DLLM2RecConfig

    return (ConfigFlags(DLLM2RecConfig, notes={"dros_alpha": "; 1 with --student dros"}),
            train_flags(models=("sasrec", "gru4rec")))


def register(sub) -> None:
    p = sub.add_parser("dllm2rec")
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--artifacts", required=True, help="folder with all_embeddings.pt, myrank_train.txt, confidence_train.txt")
    p.add_argument("--student", default="sasrec", help="sasrec, gru4rec or dros (SASRec + DROS loss)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (seed, seed+1, ...)")
    p.add_argument("--no-baseline", action="store_true", help="skip the same student without the teacher")
    add_evaluation_args(p, ("exclude_seen",))
    own, train = dllm2rec_flags()
    own.add_groups(p, "distillation options (DLLM2RecConfig)", first=("lam", "ed_weight"))
    train.add_groups(p, "training options of each student, with and without the teacher (unset ones come from the "
                        "student's recipe for the scene, recnb.train.recipe; --seed/--seeds set the seeds)",
                     first=("epochs", "time_budget"))
    p.set_defaults(func=run)


def configs(args, scene=None):
    """The DLLM2RecConfig and TrainConfig of a ``dllm2rec`` command line on ``scene``: the
    student's recipe there (``scene``: a Scene or a kind of scene, ``recnb.train.recipe``; DROS trains a SASRec), the flags given on top."""
    from recnb.dllm2rec.pipeline import DLLM2RecConfig
    from recnb.train import recipe

    own, train = dllm2rec_flags()
    given = own.given(args)
    if args.student == "dros":
        given.setdefault("dros_alpha", 1.0)
    model = "sasrec" if args.student == "dros" else args.student
    return DLLM2RecConfig(**given), recipe(model, scene, **train.given(args), device=args.device, progress=not args.quiet)


def run(args) -> int:
    from recnb.dllm2rec.artifacts import is_official_dir, load_artifacts, read_official
    from recnb.dllm2rec.pipeline import STUDENTS, run_dllm2rec

    if args.student not in STUDENTS:
        raise ConfigError(f"--student: unknown student '{args.student}'; choose one of {', '.join(STUDENTS)}")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    if is_official_dir(args.dataset):
        data = read_official(args.dataset)
        num_items, scene = data.item_num, None
    else:
        data = scene_of(args)
        num_items, scene = data.num_items, data
    cfg, train = configs(args, scene)
    art = load_artifacts(args.artifacts, num_items=num_items, ranking=cfg.ranking, embeddings=cfg.embedding, scene=scene)
    out = prepare_out_dir(args.out, args.force, inputs={"--artifacts": args.artifacts, "--dataset": args.dataset})
    start = time.perf_counter()
    seeds = tuple(args.seed + i for i in range(args.seeds))
    res = run_dllm2rec(data, art, args.student, seeds, train, cfg, out=out, baseline=not args.no_baseline,
                       log=None if args.quiet else print, exclude_seen=args.exclude_seen)
    d = res["distilled"]["test"]
    if res["baseline"] is None:
        print(f"{args.student} on {res['dataset']} ({len(seeds)} seeds): NDCG@10 {d['NDCG@10']:.4f} "
              f"HR@10 {d['HR@10']:.4f} ({time.perf_counter() - start:.0f}s) -> {out}")
        return 0
    b = res["baseline"]["test"]
    print(f"{args.student} on {res['dataset']} ({len(seeds)} seeds): NDCG@10 {d['NDCG@10']:.4f} vs {b['NDCG@10']:.4f} "
          f"plain ({100 * res['gain']['NDCG@10']:+.1f}%), HR@10 {d['HR@10']:.4f} vs {b['HR@10']:.4f} "
          f"({100 * res['gain']['HR@10']:+.1f}%) ({time.perf_counter() - start:.0f}s) -> {out}")
    return 0
