"""``recnb dllm2rec``: train a student with and without a teacher's DLLM2Rec artifacts
(same budget, validation-only model selection); write ``student.pt`` and ``metrics.json``
= ``{"teacher", "distilled", "baseline", ...}`` (means over seeds)."""

from __future__ import annotations

import time

from recnb.commands.common import add_data_args, add_run_args, prepare_out_dir
from recnb.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("dllm2rec", help="distil teacher artifacts into GRU4Rec / SASRec / DROS (DLLM2Rec)")
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--artifacts", required=True, help="folder with all_embeddings.pt, myrank_train.txt, confidence_train.txt")
    p.add_argument("--student", default="sasrec", help="sasrec, gru4rec or dros (SASRec + DROS loss)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (seed, seed+1, ...)")
    p.add_argument("--no-baseline", action="store_true", help="skip the same student without the teacher")
    for part in ("ranking", "embedding", "position", "confidence", "consistency"):
        p.add_argument(f"--no-{part}", action="store_true", help=f"switch off {part} {'distillation' if part in ('ranking', 'embedding') else 'weight'}")
    p.add_argument("--lam", type=float, default=2.0,
                   help="weight of ranking distillation (default 2, chosen on ml-100k validation; the reference is 0.8)")
    p.add_argument("--ed-weight", type=float, default=0.2)
    p.add_argument("--candidate-topk", type=int, default=10)
    p.add_argument("--gamma-position", type=float, default=0.3)
    p.add_argument("--gamma-confidence", type=float, default=0.5)
    p.add_argument("--gamma-consistency", type=float, default=0.1)
    p.add_argument("--projector", default="linear", help="linear or mlp")
    p.add_argument("--dros-alpha", type=float, default=None, help="DROS weight (default: 1 for dros, else 0)")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", default="ce", help="student L_rec: ce (full softmax) or bce (one negative, the paper's)")
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--time-budget", type=float, default=None, help="seconds per training run (same for both)")
    p.set_defaults(func=run)


def run(args) -> int:
    from recnb.data import load_scene
    from recnb.dllm2rec.artifacts import is_official_dir, load_artifacts, read_official
    from recnb.dllm2rec.pipeline import STUDENTS, DLLM2RecConfig, run_dllm2rec
    from recnb.train import TrainConfig

    if args.student not in STUDENTS:
        raise ConfigError(f"--student: unknown student '{args.student}'; choose one of {', '.join(STUDENTS)}")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    cfg = DLLM2RecConfig(
        ranking=not args.no_ranking, embedding=not args.no_embedding, position=not args.no_position,
        confidence=not args.no_confidence, consistency=not args.no_consistency, lam=args.lam,
        candidate_topk=args.candidate_topk, gamma_position=args.gamma_position,
        gamma_confidence=args.gamma_confidence, gamma_consistency=args.gamma_consistency,
        ed_weight=args.ed_weight, projector=args.projector,
        dros_alpha=args.dros_alpha if args.dros_alpha is not None else (1.0 if args.student == "dros" else 0.0),
    )
    train = TrainConfig(epochs=args.epochs, patience=args.patience, lr=args.lr, loss=args.loss, max_len=args.max_len,
                        device=args.device, progress=not args.quiet, time_budget=args.time_budget)
    if is_official_dir(args.dataset):
        data = read_official(args.dataset)
        num_items = data.item_num
    else:
        data = load_scene(args.dataset, args.data_dir)
        num_items = data.num_items
    art = load_artifacts(args.artifacts, num_items=num_items, ranking=cfg.ranking, embeddings=cfg.embedding)
    out = prepare_out_dir(args.out, args.force)
    start = time.perf_counter()
    seeds = tuple(args.seed + i for i in range(args.seeds))
    res = run_dllm2rec(data, art, args.student, seeds, train, cfg, out=out, baseline=not args.no_baseline,
                       log=None if args.quiet else print)
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
