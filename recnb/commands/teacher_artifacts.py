"""``recnb teacher-artifacts``: build a teacher (or load a trained recnb model) and write
DLLM2Rec's ``all_embeddings.pt``, ``myrank_train.txt``, ``confidence_train.txt``, the scene
in the official data layout (``data/``), ``teacher.json`` and (semantic) ``teacher.pt``."""

from __future__ import annotations

import time
from pathlib import Path

from recnb.commands.common import (
    RUN_FIELDS,
    ConfigFlags,
    add_data_args,
    add_evaluation_args,
    add_run_args,
    evaluation_of,
    prepare_out_dir,
    scene_of,
)
from recnb.commands.train import train_flags
from recnb.errors import ConfigError

# the semantic teacher's training where it differs from the recipe of the model it is shaped like
TRAINING = {"epochs": 60, "patience": 10}


def teacher_flags() -> tuple[ConfigFlags, ConfigFlags]:
    """The semantic teacher's model options (its max_len is --max-len, its text width the
    encoder's) and its training options (its backbone's recipe, then :data:`TRAINING`)."""
    from recnb.dllm2rec.teachers import SemanticTeacherConfig

    model = ConfigFlags(SemanticTeacherConfig, skip=("num_items", "max_len", "text_dim"), defaults={"backbone": "gru"},
                        notes={"dropout": "; --attn-dropout too unless given"})
    train = train_flags(skip=RUN_FIELDS, models=("gru4rec", "sasrec"), defaults=TRAINING)
    return model, train


def register(sub) -> None:
    p = sub.add_parser("teacher-artifacts")
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--teacher", required=True, help="'semantic' (BIGRec-shaped, trained here) or a recnb checkpoint path")
    p.add_argument("--top-n", type=int, default=20, help="candidates per training row (default 20)")
    add_evaluation_args(p, ("exclude_seen",))
    model, train = teacher_flags()
    model.add_groups(p, "semantic teacher (SemanticTeacherConfig; --teacher semantic only)", first=("backbone", "encoder"))
    train.add_groups(p, "semantic teacher training (TrainConfig: its backbone's recipe, gru4rec or sasrec, then these)",
                     first=("epochs", "time_budget"))
    p.set_defaults(func=run)


def settings(args) -> tuple[dict, dict]:
    """The semantic teacher's model settings (for ``build_semantic_teacher``) and training
    overrides (for ``teacher_recipe``) of a command line."""
    from recnb.dllm2rec.teachers import SemanticTeacherConfig
    from recnb.train import TrainConfig

    model_flags, train_flags_ = teacher_flags()
    model = {"backbone": "gru", "encoder": model_flags.default("encoder"), **model_flags.given(args)}
    if "dropout" in model:
        model.setdefault("attn_dropout", model["dropout"])
    train = {**TRAINING, "max_len": train_flags_.default("max_len"), **train_flags_.given(args),
             "device": args.device, "seed": args.seed, "progress": not args.quiet}
    model["max_len"] = train["max_len"]
    SemanticTeacherConfig(**model), TrainConfig(**train)  # a bad value is refused before the titles are encoded
    return model, train


def run(args) -> int:
    from recnb.checkpoint import load_checkpoint, save_checkpoint
    from recnb.dllm2rec.artifacts import is_official_dir
    from recnb.dllm2rec.teachers import (
        build_semantic_teacher,
        make_artifacts,
        model_report,
        scene_text,
        teacher_recipe,
    )
    from recnb.train import fit

    if args.top_n < 1:
        raise ConfigError(f"--top-n must be at least 1, got {args.top_n}")
    if is_official_dir(args.dataset):
        raise ConfigError(
            f"--dataset {args.dataset}: an official DLLM2Rec data folder has no titles or users; "
            "make artifacts from a recnb scene (it is exported in the official layout under OUT/data)"
        )
    model, train = settings(args) if args.teacher == "semantic" else ({}, {})
    out = prepare_out_dir(args.out, args.force, inputs={"--teacher": args.teacher, "--dataset": args.dataset})
    scene = scene_of(args)
    info, start = {}, time.perf_counter()
    if args.teacher == "semantic":
        t0 = time.perf_counter()
        text = scene_text(scene, model["encoder"], progress=not args.quiet)
        info["encode_seconds"] = round(time.perf_counter() - t0, 2)
        teacher = build_semantic_teacher(scene, text=text, **model)
        cfg = teacher_recipe(teacher, **train)  # the recipe of the model it is shaped like, flags win
        result = fit(teacher, scene, cfg, evaluation=evaluation_of(args))  # validated as its artifacts will rank
        info.update(train_seconds=round(result.train_seconds, 2), epochs=result.epochs, best_epoch=result.best_epoch)
        teacher.cpu()
        save_checkpoint(out / "teacher.pt", teacher, scene)
    else:
        path = Path(args.teacher)
        teacher, _ = load_checkpoint(path, scene=scene, what="--teacher")
        info["checkpoint"] = str(path)
    info["report"] = model_report(teacher, scene, args.exclude_seen)
    t0 = time.perf_counter()
    art = make_artifacts(scene, teacher, args.top_n, out, info=info, exclude_seen=args.exclude_seen)
    art.info["artifact_seconds"] = round(time.perf_counter() - t0, 2)
    test = info["report"]["test"]
    print(f"teacher {teacher.name} on {scene.name}: test NDCG@10 {test['NDCG@10']:.4f} HR@10 {test['HR@10']:.4f}; "
          f"{art.num_rows} rows x top-{args.top_n}, embeddings {tuple(art.embeddings.shape)} "
          f"({time.perf_counter() - start:.0f}s) -> {out}")
    return 0
