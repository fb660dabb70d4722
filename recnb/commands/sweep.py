"""``recnb sweep``: a grid of runs as Ray Tune trials (local Ray, or a cluster with
``--address``), one row per trial in ``OUT/results.parquet`` and ``OUT/results.csv``;
the best trial by validation NDCG@10 is printed. A killed sweep resumes from ``OUT``."""

from __future__ import annotations

from recnb.commands.common import add_data_args, prepare_out_dir
from recnb.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("sweep")
    add_data_args(p, data_format=False)  # trials read --dataset themselves
    p.add_argument("--grid", required=True, help="JSON object: one value = fixed, a list of values = a grid axis")
    p.add_argument("--kind", default="train", help="train, adarec (beta x seed) or dllm2rec (lam, ed_weight)")
    p.add_argument("--address", default=None, help="a Ray cluster to join (auto or HOST:PORT); default: a local Ray")
    p.add_argument("--resources-per-trial", default="cpu=1,gpu=0", help="cpu=N,gpu=M per trial (default cpu=1,gpu=0)")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials at a time (default: as resources allow)")
    p.add_argument("--out", required=True, help="output directory; a killed sweep there resumes")
    p.add_argument("--force", action="store_true", help="discard a previous sweep in --out and start over")
    p.add_argument("--quiet", action="store_true", help="print only the best trial")
    p.set_defaults(func=run)


def run(args) -> int:
    from recnb.sweep import SELECT_BY, clear, import_ray, parse_resources, read_grid, run_sweep

    grid = read_grid(args.grid, args.kind)
    import_ray()  # a missing extra is one line, before anything starts
    resources = parse_resources(args.resources_per_trial)
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise ConfigError(f"--max-concurrent must be at least 1, got {args.max_concurrent}")
    if args.force:
        clear(args.out)
    out = prepare_out_dir(args.out, force=False, resume=True)
    frame = run_sweep(args.kind, args.dataset, grid, out, args.address, resources, args.max_concurrent, args.data_dir,
                      log=(lambda m: None) if args.quiet else print)
    done = frame[frame[SELECT_BY].notna()] if SELECT_BY in frame else frame.iloc[:0]
    failed = len(frame) - len(done)
    if done.empty:
        print(f"sweep on {args.dataset}: no trial finished ({failed} failed) -> {out / 'results.csv'}")
        return 1
    best = done.iloc[0]
    settings = ", ".join(f"{k}={best[k]}" for k in grid if k in best)
    print(f"sweep on {args.dataset}: {len(done)} trials{f' ({failed} failed)' if failed else ''}; best by valid NDCG@10 "
          f"{best[SELECT_BY]:.4f} ({settings}): test NDCG@10 {best['test_NDCG@10']:.4f} -> {out / 'results.parquet'}")
    return 0
