"""``recnb distill``: train a derived student from scratch, with the frozen teacher
(CE + prediction KD + EMD) or, with ``--no-teacher``, alone. Writes ``model.pt``,
``metrics.json`` (test metrics, params, FLOPs, latency) and ``history.csv``."""

from __future__ import annotations

from recnb.commands.common import add_data_args, add_run_args, parse_list, prepare_out_dir
from recnb.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("distill", help="AdaRec: train a searched student with (or without) the teacher")
    add_data_args(p)
    add_run_args(p)
    p.add_argument("--arch", required=True, help="architecture.json written by `recnb search`")
    p.add_argument("--teacher", default=None, help="teacher checkpoint (model.pt)")
    p.add_argument("--no-teacher", action="store_true", help="train the same student without distillation")
    p.add_argument("--width", type=int, default=64, help="student width (default 64)")
    p.add_argument("--gamma", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--no-emd", action="store_true", help="prediction-layer KD only")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32, help="training windows per batch (default 32)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--time-budget", type=float, default=None, help="seconds of training before stopping")
    p.add_argument("--latency-batch", default="1,256", help="batch sizes for the latency measurement")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from recnb.adarec.architecture import Architecture
    from recnb.adarec.pipeline import DistillConfig, build_student, train_model
    from recnb.data import load_scene, train_windows
    from recnb.kd import TeacherCache
    from recnb.train import TrainConfig, load_checkpoint, resolve_device

    if args.no_teacher == (args.teacher is not None):
        raise ConfigError("give exactly one of --teacher PATH or --no-teacher")
    arch = Architecture.load(args.arch)
    width = args.width
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                        max_len=args.max_len, device=args.device, seed=args.seed, progress=not args.quiet,
                        time_budget=args.time_budget)
    cfg = DistillConfig(gamma=args.gamma, T=args.temperature, emd=not args.no_emd, width=width, train=train)
    batches = parse_list(args.latency_batch, int, "--latency-batch")
    out = prepare_out_dir(args.out, args.force)
    scene = load_scene(args.dataset, args.data_dir)
    cache = None
    if args.teacher:
        device = resolve_device(args.device)
        teacher, _ = load_checkpoint(args.teacher, device=str(device), scene=scene, what="--teacher")
        cache = TeacherCache(teacher, train_windows(scene, args.max_len), device=device)
    model = build_student(scene, arch, width, args.max_len, args.seed)
    devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    m = train_model(scene, model, cfg, cache, out, devices, batches)
    print(f"student ({'KD' if cache else 'no teacher'}) on {scene.name}: test NDCG@10 {m['test']['NDCG@10']:.4f} "
          f"HR@10 {m['test']['HR@10']:.4f}; {m['params_no_embedding']} non-embedding params; "
          f"CPU b1 {m.get('latency_cpu_b1_ms', float('nan')):.3f} ms -> {out}")
    return 0
