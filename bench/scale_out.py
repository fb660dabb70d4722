"""What scales past one process on this machine: a 12-trial AdaRec beta x seed sweep, one
process against Ray Tune with 2 workers; the AdaRec pipeline (``recnb adarec``) in one
process against ``--parallel ray`` with 2 workers; and SASRec training throughput
(windows/s) with 1 and 2 torchrun processes (gloo, CPU).

    RECNB_DATA_DIR=/path/to/data python bench/scale_out.py [--teacher model.pt] [--out bench/results]

The AdaRec trials use small settings (``--search-epochs 2 --search-max-steps 6
--distill-epochs 1``): the point is wall time, not accuracy. A teacher is trained for one
epoch unless ``--teacher`` is given (its time is not counted). The machine's load average is
written before and after: on a shared machine other processes take cores too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recnb.data import load_scene, train_windows
from recnb.sweep import run_sweep, run_trial


def start_ray(workers: int):
    """A quiet local Ray of ``workers`` CPUs, and the seconds it took to start."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=True, logging_level="ERROR")
    return ray, time.perf_counter() - start


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def adarec_sweep(args, work: Path, lines: list) -> None:
    teacher = _teacher(args, work)
    grid = {"teacher": teacher, "beta": args.betas, "seed": args.seeds, "search_epochs": args.search_epochs,
            "search_max_steps": args.search_max_steps, "distill_epochs": args.distill_epochs, "max_len": args.max_len,
            "student_width": args.student_width}
    points = [{**{k: v for k, v in grid.items() if not isinstance(v, list)}, "beta": b, "seed": s}
              for b in args.betas for s in args.seeds]
    lines.append(f"AdaRec sweep on {args.dataset}: {len(points)} trials (betas {args.betas} x seeds {args.seeds}), "
                 f"search {args.search_epochs} epochs x {args.search_max_steps} steps, distillation {args.distill_epochs} epoch(s), "
                 f"max_len {args.max_len}, student width {args.student_width}")
    lines.append(f"  load average before: {load()}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    seq = [run_trial("adarec", p, args.dataset, work / "seq" / str(i)) for i, p in enumerate(points)]
    one = time.perf_counter() - start
    lines.append(f"  one process, {args.threads} thread(s), trials one after another: {one:.1f} s")
    ray, startup = start_ray(args.workers)
    try:
        start = time.perf_counter()
        frame = run_sweep("adarec", args.dataset, grid, work / "ray", resources={"cpu": 1.0, "gpu": 0.0},
                          max_concurrent=args.workers, log=lambda m: None)
        par = time.perf_counter() - start
    finally:
        ray.shutdown()
    lines.append(f"  Ray Tune, {args.workers} workers x 1 thread: {par:.1f} s (+ {startup:.1f} s to start Ray); "
                 f"speed-up {one / par:.2f}x ({one / (par + startup):.2f}x counting the start)")
    same = all(abs(frame.set_index(["beta", "seed"]).loc[(p["beta"], p["seed"]), "valid_NDCG@10"] - r["valid_NDCG@10"]) < 1e-9
               for p, r in zip(points, seq))
    lines.append(f"  per-trial valid NDCG@10 equal to the one-process run: {same}")
    lines.append(f"  load average after: {load()}")


def _teacher(args, work: Path) -> str:
    """``--teacher``, else a NextItNet teacher trained for one epoch (its time is not counted)."""
    if args.teacher is not None:
        return args.teacher
    path = work / "teacher" / "model.pt"
    if not path.exists():
        from recnb.adarec.pipeline import TEACHER_CONFIG
        from recnb.runs import train_and_report
        from recnb.train import TrainConfig

        train_and_report(load_scene(args.dataset), "nextitnet", dict(TEACHER_CONFIG),
                         TrainConfig(epochs=1, batch_size=32, progress=False), work / "teacher")
    return str(path)


def adarec_pipeline(args, work: Path, lines: list) -> None:
    """``run_pipeline`` with the in-process pool against ``RayPool`` (workers x 1 thread): wall
    time of the same pieces, and whether every summary metric came out the same."""
    from recnb.adarec.pipeline import DistillConfig, run_pipeline
    from recnb.adarec.search import SearchConfig
    from recnb.parallel import RayPool
    from recnb.train import TrainConfig

    teacher = _teacher(args, work)
    scene = load_scene(args.dataset)
    scfg = SearchConfig(epochs=args.search_epochs, max_steps=args.search_max_steps, max_len=args.max_len, progress=False)
    dcfg = DistillConfig(width=args.student_width, train=TrainConfig(epochs=args.distill_epochs, batch_size=32, lr=1e-3,
                                                                     patience=5, max_len=args.max_len, progress=False))
    seeds = len(args.seeds)
    pieces = len(args.betas) * (1 + seeds) + 2 * seeds  # searches, KD students; the default's twin and the baseline
    lines.append(f"AdaRec pipeline on {args.dataset}: betas {args.betas}, {seeds} seeds, twins default, baseline "
                 f"({pieces} pieces), search {args.search_epochs} epochs x {args.search_max_steps} steps, distillation "
                 f"{args.distill_epochs} epoch(s), max_len {args.max_len}, student width {args.student_width}")
    lines.append(f"  load average before: {load()}")

    def run(out, pool):
        start = time.perf_counter()
        summary = run_pipeline(scene, work / out, teacher, args.betas, None, seeds, scfg, dcfg, twins="default",
                               batches=(1,), reuse=False, log=None, pool=pool)
        keep = ("test", "valid", "test_sampled100", "params", "epochs", "seeds")
        return time.perf_counter() - start, [{k: r.get(k) for k in keep} for r in summary["rows"]]

    torch.set_num_threads(1)
    one, seq = run("pipe_seq", None)
    lines.append(f"  one process, 1 thread, pieces one after another: {one:.1f} s (load average after: {load()})")
    ray, startup = start_ray(args.workers)
    try:
        par, rows = run("pipe_ray", RayPool(resources={"cpu": 1.0, "gpu": 0.0}))
    finally:
        ray.shutdown()
    lines.append(f"  --parallel ray, {args.workers} workers x 1 thread: {par:.1f} s (+ {startup:.1f} s to start Ray); "
                 f"speed-up {one / par:.2f}x ({one / (par + startup):.2f}x counting the start)")
    lines.append(f"  every summary metric equal to the one-process run: {rows == seq}")
    lines.append(f"  load average after: {load()}")


def ddp_throughput(args, work: Path, lines: list) -> None:
    scene = load_scene(args.dataset)
    from recnb.train import recipe

    cfg = recipe("sasrec")
    windows = len(train_windows(scene, cfg.max_len, cfg.context))
    lines.append(f"SASRec on {args.dataset} (recipe: batch {cfg.batch_size} windows, context {cfg.context}; "
                 f"{windows} windows per epoch), {args.ddp_epochs} epoch(s), CPU, gloo")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = ["-m", "recnb", "train", "--dataset", args.dataset, "--model", "sasrec", "--epochs", str(args.ddp_epochs),
            "--device", "cpu", "--quiet", "--force"]
    runs = [("1 process x 1 thread", 1, 1), (f"1 process x {args.workers} threads", 1, args.workers),
            (f"{args.workers} processes x 1 thread (torchrun)", args.workers, 1)]
    rates: dict = {name: [] for name, _, _ in runs}
    for rep in range(args.repeats):  # interleaved, so a burst of outside load hits every setting alike
        for name, procs, threads in runs:
            out = work / f"ddp_{procs}x{threads}_{rep}"
            launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs)] \
                if procs > 1 else [sys.executable]
            before = load()
            subprocess.run([*launch, *base, "--out", str(out)], env={**env, "OMP_NUM_THREADS": str(threads)},
                           check=True, capture_output=True)
            m = json.loads((out / "metrics.json").read_text())
            rates[name].append(windows * m["epochs"] / m["train_seconds"])
            lines.append(f"  {name}, run {rep + 1}: {rates[name][-1]:.0f} windows/s ({m['train_seconds']:.1f} s training, "
                         f"valid NDCG@10 {m['valid']['NDCG@10']:.4f}; load average before {before})")
    for name, r in rates.items():
        lines.append(f"  {name}: best {max(r):.0f}, median {statistics.median(r):.0f} windows/s over {len(r)} run(s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--teacher", default=None)
    p.add_argument("--betas", type=lambda s: [float(x) for x in s.split(",")], default=[0.01, 0.1, 0.3, 1.0])
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[2020, 2021, 2022])
    p.add_argument("--search-epochs", type=int, default=2)
    p.add_argument("--search-max-steps", type=int, default=6)
    p.add_argument("--distill-epochs", type=int, default=1)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--student-width", type=int, default=64)
    p.add_argument("--ddp-epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1, help="runs of each DDP setting (interleaved)")
    p.add_argument("--tag", default="", help="appended to the results file name")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads of the one-process sweep")
    p.add_argument("--skip", default="", help="adarec, pipeline or ddp (comma-separated): leave those parts out")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = p.parse_args()
    lines = [f"bench/scale_out.py {' '.join(sys.argv[1:])}",
             (f"hardware: {platform.machine()} {os.cpu_count()} cores, {platform.platform()}, torch {torch.__version__}, "
              f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}"),
             "shared machine: other processes ran alongside (see the load averages), so times are upper bounds"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "ddp" not in args.skip.split(","):
            ddp_throughput(args, work, lines)
            print("\n".join(lines), flush=True)
        if "adarec" not in args.skip.split(","):
            adarec_sweep(args, work, lines)
        if "pipeline" not in args.skip.split(","):
            adarec_pipeline(args, work, lines)
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out) / f"scale_out_{args.dataset}_{platform.machine()}_{os.cpu_count()}cores{args.tag}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
