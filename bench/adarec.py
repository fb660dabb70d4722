"""Reproduce the AdaRec tables: the pipeline per scene, the time of each stage, the claims.

    python bench/adarec.py --scene ml-100k --teacher runs/adarec/teacher-ml-100k/model.pt \
        --betas 0.01,0.1,1 --seeds 1 --out runs/adarec/ml-100k
    python bench/adarec.py --scene wikipedia --search-only --betas 0.1 --out runs/adarec/wikipedia
    python bench/adarec.py --compare runs/adarec/ml-100k runs/adarec/wikipedia
    python bench/adarec.py --scene beauty --teacher T.pt --exclude-seen --batch-targets 2048 --loss sampled \
        --lr 3e-3 --ema 0.995 --betas 0.1,1 --seeds 3 --out runs/adarec/beauty   # the Amazon protocol and batching

Full settings are ``--seeds 3`` and no ``--time-budget``; smaller ones fit a shared CPU.
Every table prints the command line, seeds and hardware beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recnb import analysis
from recnb.adarec.architecture import Architecture
from recnb.adarec.pipeline import TEACHER_CONFIG, TEACHER_TRAIN, DistillConfig, run_pipeline
from recnb.adarec.search import SearchConfig, search
from recnb.checkpoint import load_checkpoint
from recnb.data import load_scene
from recnb.runs import train_and_report
from recnb.train import recipe


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return f"{cpu}; {os.cpu_count()} cores visible; torch threads {torch.get_num_threads()}; GPU {gpu}; torch {torch.__version__}"


def teacher_for(scene, out: Path, budget: float, log) -> Path:
    path = out / "teacher" / "model.pt"
    if path.exists():
        return path
    t0 = time.perf_counter()
    # the pipeline's teacher augmentation, at lr 1e-3 without label smoothing, the settings every
    # documented teacher was trained with (the NextItNet recipe is for RecBole-sized models)
    cfg = recipe("nextitnet", epochs=50, patience=5, device="cpu", progress=False, time_budget=budget or None,
                 lr=1e-3, label_smoothing=0.0, **TEACHER_TRAIN)
    m = train_and_report(scene, "nextitnet", dict(TEACHER_CONFIG), cfg, out / "teacher", resume=True)
    log(f"teacher trained in {time.perf_counter() - t0:.0f}s ({m['epochs']} epochs, best {m['best_epoch']}): "
        f"test NDCG@10 {m['test']['NDCG@10']:.4f}")
    return path


def print_summary(summary: dict) -> None:
    rows = summary["rows"]
    teacher = next(r for r in rows if r["role"] == "teacher")
    table = []
    for r in rows:
        t = r["test"]
        table.append({
            "name": r["name"], "role": r["role"], "beta": r["beta"], "default": r["default"],
            "params": r["params"], "params_no_emb": r["params_no_embedding"],
            "x_teacher_no_emb": round(r["params_no_embedding"] / teacher["params_no_embedding"], 4),
            "MFLOPs": round(r["flops"] / 1e6, 3),
            **{k[8:]: round(v, 3) for k, v in r.items() if k.startswith("latency_")},
            "NDCG@10": round(t["NDCG@10"], 4), "±": round(t.get("NDCG@10_std", 0.0), 4),
            "HR@10": round(t["HR@10"], 4), "MRR@5": round(t["MRR@5"], 4), "HR@5": round(t["HR@5"], 4),
            "NDCG@5": round(t["NDCG@5"], 4), "s100 NDCG@10": round(r.get("test_sampled100", {}).get("NDCG@10", float("nan")), 4),
            "seeds": len(r.get("seeds") or []),
        })
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(pd.DataFrame(table).to_string(index=False))
    print("\nstages (seconds):", json.dumps(summary["stages_seconds"]))
    print("architectures:")
    for b, sig in summary["architectures"].items():
        print(f"  beta={b}: {sig}")
    claims(summary)


def claims(summary: dict) -> None:
    rows = summary["rows"]
    t = next(r for r in rows if r["role"] == "teacher")
    s = next((r for r in rows if r["role"] == "student" and r["default"]), None)
    print(f"\nclaims (default beta = {summary['default_beta']}):")
    if s is None:
        return
    arch = Architecture.load(s["architecture"]) if s.get("architecture") and Path(s["architecture"]).exists() else None
    checks = [
        ("student has learnable ops (cell parameters at width 64)", arch.params(64) if arch else float("nan"), lambda v: v > 0),
        ("student non-embedding params <= 1/8 teacher", s["params_no_embedding"] / t["params_no_embedding"], lambda v: v <= 1 / 8),
        ("CPU latency b1 speed-up >= 5x", t["latency_cpu_b1_ms"] / s["latency_cpu_b1_ms"], lambda v: v >= 5),
        ("CPU latency b256 speed-up", t["latency_cpu_b256_ms"] / s["latency_cpu_b256_ms"] if "latency_cpu_b256_ms" in s else float("nan"), lambda v: True),
        ("student NDCG@10 >= 100% teacher", s["test"]["NDCG@10"] / t["test"]["NDCG@10"], lambda v: v >= 1.0),
    ]
    comparisons = summary.get("comparisons", {})
    for role, label in (("student_no_kd", "no-KD twin"), ("baseline", "hand-made NextItNet + KD"),
                        ("baseline_sasrec", "hand-made SASRec + KD")):
        other = next((r for r in rows if r["role"] == role and (r["default"] or role != "student_no_kd")), None)
        if other is None:
            continue
        checks.append((f"student NDCG@10 > {label}", s["test"]["NDCG@10"] - other["test"]["NDCG@10"], lambda v: v > 0))
        c = comparisons.get(role)
        if c:
            checks.append((f"  ... on every seed ({', '.join(f'{x:+.4f}' for x in c['per_seed'])})", c["per_seed"],
                           lambda v: all(x > 0 for x in v)))
            checks.append((f"  ... by > 2 SE ({c['difference']:+.4f}, SE {c['se']:.4f}, {c['test']})", c["z"],
                           lambda v: v > 2))
    sweep = sorted((r["beta"], r["params_no_embedding"]) for r in rows if r["role"] == "student")
    costs = [p for _, p in sweep]
    checks.append(("cost falls as beta rises (non-increasing params)", costs, lambda v: all(x >= y for x, y in itertools.pairwise(v))))
    checks.append(("distinct architectures in the sweep", len(set(summary["architectures"].values())), lambda v: v >= 2))
    for name, value, ok in checks:
        print(f"  [{'met' if ok(value) else 'NOT met'}] {name}: {value if isinstance(value, list) else round(value, 4)}")


def compare(dirs: list[str]) -> None:
    """Architectures and frontiers of several scenes side by side, with each scene's statistics."""
    with pd.option_context("display.width", 250, "display.max_colwidth", 120, "display.max_columns", 30):
        print(analysis.scene_runs(dirs).to_string(index=False))


KEPT = ("summary.json", "summary.csv", "scene.json", "search/beta_*/architecture.json", "search/beta_*/epochs.csv")


def keep(out: Path, dest: Path) -> None:
    """Copy a run's small result files (summary, scene statistics, each search's architecture
    and epochs) to ``dest``, the layout ``analysis.scene_runs`` and notebook 03 read."""
    for pattern in KEPT:
        for f in out.glob(pattern):
            target = dest / f.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
    print(f"kept {sum(1 for _ in dest.rglob('*.*'))} files in {dest}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", default="ml-100k")
    p.add_argument("--out", default=None)
    p.add_argument("--teacher", default=None, help="teacher checkpoint (else trained under --teacher-budget)")
    p.add_argument("--teacher-budget", type=float, default=540.0, help="seconds to train a missing teacher")
    p.add_argument("--betas", default="0.01,0.1,1")
    p.add_argument("--default-beta", type=float, default=None)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--search-epochs", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--time-budget", type=float, default=0.0, help="training seconds per distilled model (0 = none: every model trains to early stopping, the fair way to compare KD with no KD)")
    p.add_argument("--distill-epochs", type=int, default=DistillConfig().train.epochs)
    p.add_argument("--batch-size", type=int, default=DistillConfig().train.batch_size,
                   help="training windows per batch for every distilled model")
    p.add_argument("--twins", default="default")
    p.add_argument("--no-baseline", action="store_true", help="skip the hand-made NextItNet (e.g. a second process sharing --out)")
    p.add_argument("--search-only", action="store_true", help="teacher + one search per beta (scene adaptivity)")
    p.add_argument("--compare", nargs="+", default=None, help="print the architectures of these output dirs side by side")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--keep", default=None, help="copy the run's summary, scene and architectures here (bench/results/adarec/SCENE)")
    p.add_argument("--exclude-seen", action="store_true", help="mask each user's earlier items when measuring (Amazon protocol)")
    p.add_argument("--lr", type=float, default=DistillConfig().train.lr, help="students' lr")
    p.add_argument("--loss", default="ce", help="students' own loss (ce or sampled; KD always sees every item)")
    p.add_argument("--negatives", type=int, default=1024, help="shared sampled items with --loss sampled")
    p.add_argument("--batch-targets", type=int, default=0, help="batches of about this many targets (0: --batch-size windows)")
    p.add_argument("--ema", type=float, default=0.0, help="weight average of the students (0: off)")
    p.add_argument("--patience", type=int, default=DistillConfig().train.patience)
    p.add_argument("--dropouts", default=None, help="student dropouts to choose from on the twin's validation (e.g. 0,0.1,0.2,0.3)")
    p.add_argument("--max-len", type=int, default=SearchConfig().max_len,
                   help="window of the search, the teacher cache and the students (Amazon: 20 holds 90%% of histories)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("command:", "python bench/adarec.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print("hardware:", hardware())
    if args.compare:
        compare(args.compare)
        return 0
    out = Path(args.out or f"runs/adarec/{args.scene}")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    scene = load_scene(args.scene)
    (out / "scene.json").write_text(json.dumps({k: float(v) for k, v in scene.describe().items()}, indent=1))
    print("scene:", scene.describe().to_dict())
    teacher = Path(args.teacher) if args.teacher else teacher_for(scene, out, args.teacher_budget, print)
    betas = [float(b) for b in args.betas.split(",")]
    scfg = SearchConfig(device="cpu", progress=False, max_len=args.max_len, **{k: v for k, v in (("epochs", args.search_epochs), ("max_steps", args.max_steps)) if v is not None})
    if args.search_only:
        model, _ = load_checkpoint(teacher)
        for beta in betas:
            t0 = time.perf_counter()
            res = search(scene, model, SearchConfig(**{**scfg.to_dict(), "beta": beta}), out / "search" / f"beta_{beta:g}")
            print(f"search beta={beta:g}: {time.perf_counter() - t0:.0f}s ({res.epochs} epochs, teacher cache "
                  f"{res.teacher_seconds:.0f}s) -> {res.architecture.signature()}")
        compare([str(out)])
        if args.keep:
            keep(out, Path(args.keep))
        return 0
    train = dataclasses.replace(DistillConfig().train, epochs=args.distill_epochs, batch_size=args.batch_size, device="cpu",
                                progress=False, time_budget=args.time_budget or None, lr=args.lr, loss=args.loss,
                                negatives=args.negatives, batch_targets=args.batch_targets, ema=args.ema,
                                patience=args.patience, max_len=args.max_len)
    summary = run_pipeline(scene, out, teacher, betas, args.default_beta, args.seeds, scfg, DistillConfig(train=train),
                           twins=args.twins, baseline=not args.no_baseline, exclude_seen=args.exclude_seen,
                           dropouts=[float(d) for d in args.dropouts.split(",")] if args.dropouts else None,
                           devices=("cpu", "cuda") if torch.cuda.is_available() else ("cpu",))
    print(f"\n== AdaRec on {scene.name}: full ranking, {args.seeds} seed(s), test split; hardware above ==")
    print_summary(summary)
    print(f"\ntotal {time.perf_counter() - start:.0f}s")
    if args.keep:
        keep(out, Path(args.keep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
