"""``recnb frontier``: plain models and students of one scene and teacher, trained over seeds
and measured side by side (``frontier.csv``, ``frontier.json``): does distillation pay?"""

from __future__ import annotations

import math

from recnb.commands.common import (
    ConfigFlags,
    add_data_args,
    add_evaluation_args,
    checkpoint_paths,
    parse_list,
    prepare_out_dir,
    scene_of,
)
from recnb.errors import ConfigError
from recnb.files import read_json_file

DISTILL_SHOWN = ("kd_items", "top_k", "gamma", "emd")


def distill_options():
    """DistillConfig's options (its fields, help and defaults; ``train`` is the recipe's)."""
    from recnb.adarec.pipeline import DistillConfig

    return ConfigFlags(DistillConfig, skip=("train",), rename={"T": "temperature", "T_emd": "temperature-emd"})


def register(sub) -> None:
    p = sub.add_parser("frontier")
    add_data_args(p)
    p.add_argument("--teacher", required=True, help="teacher checkpoint (model.pt) trained on --dataset")
    p.add_argument("--out", required=True, help="output directory; each run keeps its own folder there")
    p.add_argument("--seeds", default="2020,2021,2022", help="seeds of every model")
    p.add_argument("--grid", default=None,
                   help="JSON file {\"models\": [model settings, each with \"model\", and training options over its "
                        "recipe, e.g. \"lr_decay\"]} (default: SASRec widths 32/64, 1/2 layers, windows 20/50; "
                        "GRU4Rec and NextItNet at window 20)")
    p.add_argument("--betas", default="0.01,0.1,1", help="AdaRec searches, one per beta (none: no searched students)")
    add_evaluation_args(p, ("exclude_seen",))
    p.add_argument("--epochs", type=int, default=None, help="most epochs of every run (default: each recipe's)")
    p.add_argument("--time-budget", type=float, default=None, help="seconds of training per run (default none)")
    distill_options().add_groups(p, "distillation of the grid's students", first=DISTILL_SHOWN)
    p.add_argument("--online-teacher", action="store_true",
                   help="run the teacher on each batch of the distilled runs instead of caching its outputs once: "
                        "they keep the recipe's reorder augmentation and context windows")
    p.add_argument("--clean-teacher", action="store_true",
                   help="cache the teacher's outputs once over the recipe's context windows; the distilled runs keep "
                        "the recipe's reorder and learn the teacher's view of each window before it is shuffled "
                        "(the teacher's cost is paid once, not every epoch)")
    p.add_argument("--plain-runs", default=None,
                   help="finished `recnb train` runs (model.pt files, run folders or quoted glob patterns, comma-separated) "
                        "taken as the plain runs of the grid entry and seed they match instead of training those again")
    p.add_argument("--no-onnx", action="store_true", help="measure eager latency only (no ONNX export)")
    p.add_argument("--resume", action="store_true", help="keep the finished runs in --out and do the rest")
    p.add_argument("--force", action="store_true", help="write into an existing, non-empty --out")
    p.set_defaults(func=run)


def config(args):
    from recnb.adarec.pipeline import DistillConfig
    from recnb.frontier import DEFAULT_GRID, FrontierConfig

    grid = read_json_file(args.grid, "--grid").get("models") if args.grid else list(DEFAULT_GRID)
    if not isinstance(grid, list) or not grid:
        raise ConfigError(f"--grid {args.grid}: expected {{\"models\": [model settings, ...]}}, a non-empty list")
    betas = () if args.betas.strip().lower() == "none" else tuple(parse_list(args.betas, float, "--betas"))
    if any(b < 0 for b in betas):
        raise ConfigError(f"--betas: expected non-negative weights, got {args.betas}")
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs: expected at least 1, got {args.epochs}")
    if args.time_budget is not None and args.time_budget <= 0:
        raise ConfigError(f"--time-budget: expected a positive number of seconds, got {args.time_budget}")
    distill = DistillConfig(**distill_options().given(args))
    return FrontierConfig(distill=distill, seeds=tuple(parse_list(args.seeds, int, "--seeds")), grid=tuple(grid), betas=betas,
                          exclude_seen=args.exclude_seen, epochs=args.epochs, time_budget=args.time_budget,
                          onnx=not args.no_onnx, online_teacher=args.online_teacher,
                          clean_teacher=args.clean_teacher,
                          plain_runs=tuple(checkpoint_paths(args.plain_runs, "--plain-runs")) if args.plain_runs else ())


def run(args) -> int:
    from recnb.frontier import run_frontier, verdict

    cfg = config(args)
    scene = scene_of(args)
    out = prepare_out_dir(args.out, args.force, resume=args.resume, inputs={"--teacher": args.teacher})
    frame = run_frontier(scene, args.teacher, out, cfg)
    table = frame.attrs["budgets"]
    print(verdict(frame))
    print("at each plain model's batch-1 latency (eager, one thread): the best plain model and student no slower")
    for r in table.itertuples():
        paired = f", paired {r.paired_diff:+.4f} ± {r.paired_se:.4f} SE" if hasattr(r, "paired_se") and not math.isnan(r.paired_se) else ""
        student = (f"{r.student} {r.student_ndcg:.4f} ({r.gain:+.1%}{paired})" if isinstance(r.student, str)
                   else "no student this fast")
        print(f"  {r.budget_ms:7.2f} ms  plain {r.plain} {r.plain_ndcg:.4f}  student {student}")
    print(f"-> {out / 'frontier.csv'}, {out / 'budgets.csv'}, {out / 'frontier.json'} (plotly figure)")
    return 0
