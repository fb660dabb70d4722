"""``recnb recommend``: top-k for some users (printed) or every user (--all) of a scene,
written to CSV or parquet in chunks."""

from __future__ import annotations

from pathlib import Path

from recnb.commands.common import add_data_args, add_evaluation_args, scene_of
from recnb.errors import ConfigError
from recnb.files import check_writable


def register(sub) -> None:
    p = sub.add_parser("recommend")
    p.add_argument("--model", required=True, help="checkpoint (model.pt)")
    add_data_args(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", default=None, help="comma-separated raw user ids")
    who.add_argument("--all", action="store_true", help="every user of the scene")
    p.add_argument("--top-k", type=int, default=10, help="recommendations per user")
    add_evaluation_args(p, ("exclude_seen",))
    p.add_argument("--history", default="full",
                   help="full (every interaction, default), test or valid (the history evaluate scores that item from)")
    p.add_argument("--out", default=None, help="FILE.csv or FILE.parquet (required with --all; else printed)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument("--batch-size", type=int, default=256, help="users scored at once (bounds memory)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from recnb.recommend import Recommender

    if args.all and not args.out:
        raise ConfigError("--all writes a file: give --out FILE.csv or FILE.parquet")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: must be at least 1, got {args.batch_size}")
    if args.out and (args.force or not Path(args.out).exists()):
        check_writable(args.out)  # before the model and every user's scores, not after
    rec = Recommender.load(args.model, device=args.device)
    kcore = getattr(args, "kcore", None)
    kcore = kcore if kcore is not None else (rec.meta.get("scene") or {}).get("kcore")
    rec.use_scene(scene_of(args, kcore=kcore), args.model)  # built as the model's scene was, as evaluate does
    users = None if args.all else [u.strip() for u in args.users.split(",") if u.strip()]
    if users is not None and not users:
        raise ConfigError("--users: give at least one user id")
    if args.out:
        rows = rec.recommend_all(args.out, users, args.top_k, args.exclude_seen, args.history, args.batch_size,
                                 progress=not args.quiet, force=args.force)
        print(f"{rows} recommendations for {len(users) if users else rec.scene.num_users} users -> {args.out}")
        return 0
    import pandas as pd

    frames = []
    for u in users:
        rec.user_history(u, args.history)  # an unknown user fails before anything is printed
    for u in users:
        df = rec.recommend(u, args.top_k, args.exclude_seen, args.history)
        df.insert(0, "user", u)
        frames.append(df)
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(pd.concat(frames, ignore_index=True).to_string(index=False))
    return 0
