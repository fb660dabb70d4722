"""Serving cost: latency of eager vs TorchScript vs onnxruntime (fp32, int8) for the AdaRec
teacher and the default AdaRec student, what int8 costs in accuracy, and the peak memory of
``recnb recommend --all`` on the largest shared scene.

    RECNB_DATA_DIR=../shared/data python bench/serve.py [--threads 1] [--epochs 10]

1. Latency: median ms per call (top-10 of every item for a batch of ml-100k test histories,
   max_len 50) after warm-up, at batch 1 and 256, with ``--threads`` torch threads and as many
   onnxruntime intra-op threads. Random weights: latency does not depend on training.
   Teacher: recnb's AdaRec teacher (NextItNet, 16 residual blocks, width 128,
   ``recnb.adarec.pipeline.TEACHER_CONFIG``). Student: the architecture `recnb adarec` chose
   on ml-100k (beta 1, bench/results/adarec_ml-100k_full.json), width 64.
   With ``--teacher CKPT --student CKPT --dataset D`` the two trained checkpoints are timed
   instead, each on D's test histories at its own max_len (the Beauty teacher and default
   AdaRec student: ``bench/results/serve_beauty_cpu.txt``); the last column compares each
   runtime with the teacher in the same runtime.
2. int8 accuracy: the student and a small NextItNet (2 blocks, width 64) trained ``--epochs``
   on ml-100k (CE, seed 2020), then test NDCG@10 / HR@10 (full ranking, no masking) from the
   eager model, the fp32 ONNX graph and the int8 one.
3. ``recnb recommend --all --top-k 10`` on Sports_and_Outdoors (35,598 users; the
   one-line-per-user file is converted to a user,item,timestamp CSV first) with a random
   default student, in a child process: its peak RSS (VmHWM) for every user against the peak
   for a tenth of them (memory that does not grow with users gives about the same peak); the
   run for every user uses ``--history test`` and its top-10 are checked against the ranks
   ``evaluate`` gives the test items.

Prints a table and writes it to ``bench/results/serve_cpu.txt`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from recnb.adarec.architecture import Architecture
from recnb.adarec.pipeline import TEACHER_CONFIG
from recnb.adarec.student import Student
from recnb.checkpoint import save_checkpoint
from recnb.data import eval_inputs, load_scene
from recnb.evaluation import score_users
from recnb.export import Exported, ScoringHead, export
from recnb.metrics import flatten, metrics_from_ranks, ranks_from_scores
from recnb.models import build_model
from recnb.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
# The default student of `recnb adarec` on ml-100k (beta 1), in Architecture.signature() form.
STUDENT = ("max_pool_k3<0,max_pool_k3<1; max_pool_k3<0,max_pool_k3<2; avg_pool_k3<2,max_pool_k3<3 | "
           "max_pool_k3<0,max_pool_k3<1; avg_pool_k3<0,skip<2; skip<2,skip<3 | "
           "skip<0,skip<1; skip<1,skip<2; skip<1,skip<3 | skip<0,skip<1; skip<0,skip<1; skip<0,skip<1")


def architecture(signature: str) -> Architecture:
    """An Architecture from its signature (``op<input,...; ... | ...``)."""
    cells = [{"nodes": [[{"op": e.split("<")[0], "input": int(e.split("<")[1])} for e in node.strip().split(",")]
                        for node in cell.split(";")]} for cell in signature.split("|")]
    return Architecture.from_dict({"cells": cells})


def median_ms(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def latency_rows(name: str, model, hist: torch.Tensor, tmp: Path, threads: int, repeats: dict) -> list[dict]:
    """One row per (runtime, batch): eager head, traced head, ORT fp32, ORT int8."""
    head = ScoringHead(model, "topk", 10)
    export(model, tmp / f"{name}.pt", "torchscript", force=True)
    info = export(model, tmp / f"{name}.onnx", "onnx", force=True)
    export(model, tmp / f"{name}.int8.onnx", "onnx", quantize="int8", force=True)
    runtimes = {
        "eager": lambda x: head(torch.from_numpy(x)),
        "torchscript": Exported(tmp / f"{name}.pt"),
        f"onnxruntime fp32 ({info['exporter']})": Exported(tmp / f"{name}.onnx", threads),
        "onnxruntime int8": Exported(tmp / f"{name}.int8.onnx", threads),
    }
    rows = []
    for batch, (warmup, n) in repeats.items():
        x = hist[:batch].numpy()
        for runtime, fn in runtimes.items():
            with torch.no_grad():
                ms = median_ms(lambda fn=fn, x=x: fn(x), warmup, n)
            rows.append({"model": name, "runtime": runtime, "batch": batch, "median_ms": round(ms, 3), "calls": n})
            print(f"  {name:8s} {runtime:32s} batch {batch:3d}: {ms:9.3f} ms (median of {n})", flush=True)
    return rows


def checkpoint_latency(args, tmp: Path) -> tuple[list[dict], dict]:
    """Latency rows of two trained checkpoints, each fed ``--dataset``'s test histories at its own max_len."""
    from recnb.checkpoint import load_checkpoint

    if not args.student:
        raise SystemExit("bench/serve.py: --teacher needs --student")
    scene = load_scene(args.dataset)
    print(f"latency (top-10 of every item, {scene.name} test histories, each model's max_len):", flush=True)
    rows, params = [], {}
    for name, path, repeats in (("teacher", args.teacher, {1: (20, 200), 256: (3, 15)}),
                                ("student", args.student, {1: (50, 500), 256: (5, 50)})):
        model = load_checkpoint(path, scene=scene)[0].eval()
        params[name] = {"params": model.num_params(), "max_len": model.config.max_len, "checkpoint": str(path)}
        hist = eval_inputs(scene, "test", model.config.max_len)[0]
        rows += latency_rows(name, model, hist, tmp, args.threads, repeats)
    return rows, params


def int8_accuracy(scene, epochs: int, tmp: Path) -> list[dict]:
    """Test NDCG@10 / HR@10 of eager, ONNX fp32 and ONNX int8 for two trained small models."""
    hist, target = eval_inputs(scene, "test", 50)
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=3e-3, patience=epochs, max_len=50, device="cpu", progress=False, seed=2020)
    models = {
        "student": lambda: Student.from_architecture(architecture(STUDENT), scene.num_items, 64, 50),
        "nextitnet-2blocks": lambda: build_model("nextitnet", num_items=scene.num_items, max_len=50, embedding_size=64,
                                                 num_blocks=1, dilations=[1, 4], layer_every=2),
    }
    rows = []
    for name, make in models.items():
        torch.manual_seed(2020)
        model = make()
        start = time.perf_counter()
        fit(model, scene, cfg)
        print(f"  trained {name}: {time.perf_counter() - start:.0f}s", flush=True)
        model.eval()
        variants = {"eager": score_users(model, hist)}
        for kind, q in (("onnx fp32", None), ("onnx int8", "int8")):
            path = tmp / f"acc-{name}-{kind.split()[1]}.onnx"
            export(model, path, "onnx", "scores", quantize=q, force=True)
            variants[kind] = torch.from_numpy(Exported(path)(hist)[0])
        for kind, scores in variants.items():
            m = flatten(metrics_from_ranks(ranks_from_scores(scores, target), (10,)))
            agree = float((scores.topk(10).indices == variants["eager"].topk(10).indices).all(1).float().mean())
            rows.append({"model": name, "runtime": kind, "NDCG@10": round(m["NDCG@10"], 4), "HR@10": round(m["HR@10"], 4),
                         "same_top10_as_eager": round(agree, 4)})
            print(f"  {name:18s} {kind:10s} NDCG@10 {m['NDCG@10']:.4f} HR@10 {m['HR@10']:.4f} "
                  f"same top-10 as eager {agree:.3f}", flush=True)
    return rows


def sports_csv(path: Path, out: Path) -> Path:
    """The S3-Rec one-line-per-user file as the user,item,timestamp CSV recnb reads."""
    rows = []
    with open(path) as fh:
        for line in fh:
            user, *items = line.split()
            rows.extend((user, item, t) for t, item in enumerate(items))
    pd.DataFrame(rows, columns=["user", "item", "timestamp"]).to_csv(out, index=False)
    return out


def peak_memory(dataset: Path, tmp: Path, threads: int) -> list[dict]:
    """Peak RSS of ``recnb recommend`` in a child process, all users against a tenth."""
    scene = load_scene(dataset)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp / "sports-student.pt", Student.from_architecture(architecture(STUDENT), scene.num_items, 64, 50), scene)
    tenth = ",".join(map(str, scene.user_ids[: scene.num_users // 10]))
    rows = []
    for label, who in (("all users", ["--all", "--history", "test"]), ("a tenth of them", ["--users", tenth])):
        out = tmp / f"recs-{len(rows)}.parquet"
        # VmHWM, not getrusage's ru_maxrss: that one survives exec and would report this (larger) process's peak
        code = (f"import sys, time, torch; torch.set_num_threads({threads}); from recnb.cli import main; "
                f"t = time.perf_counter(); rc = main(sys.argv[1:]); "
                f"hwm = next(ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')).split()[1]; "
                f"print('PEAK', hwm, time.perf_counter() - t); sys.exit(rc)")
        argv = ["recommend", "--model", str(ckpt), "--dataset", str(dataset), *who, "--top-k", "10", "--out", str(out), "--quiet"]
        proc = subprocess.run([sys.executable, "-c", code, *argv], check=False, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
        if proc.returncode:
            raise SystemExit(proc.stderr)
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("PEAK"))
        peak_kib, seconds = int(line.split()[1]), float(line.split()[2])
        n = scene.num_users if "--all" in who else scene.num_users // 10
        rows.append({"scene": scene.name, "users": n, "items": scene.num_items, "peak_rss_mib": round(peak_kib / 1024, 1),
                     "seconds": round(seconds, 1), "rows_written": int(pd.read_parquet(out).shape[0])})
        print(f"  recommend --top-k 10 for {label} ({n} users, {scene.num_items} items): peak RSS {peak_kib / 1024:.0f} MiB, "
              f"{seconds:.1f}s", flush=True)
        if "--all" in who:
            rows[-1]["agrees_with_evaluate"] = agreement(ckpt, scene, out)
    return rows


def agreement(ckpt: Path, scene, recs: Path, k: int = 10) -> str:
    """Users whose test item, at rank r < k in ``evaluate``'s ranking, sits at position r of
    the written top-k (within its ties), and users ranked >= k whose test item is absent."""
    from recnb.checkpoint import load_checkpoint

    model = load_checkpoint(ckpt)[0]
    table = pd.read_parquet(recs)
    lists = table.groupby("user", sort=False)["item"].apply(list).to_dict()
    hist, target = eval_inputs(scene, "test", model.config.max_len)
    good = checked = 0
    for start in range(0, scene.num_users, 1024):  # evaluate's ranks, 1024 users at a time
        scores = score_users(model, hist[start : start + 1024])
        t = target[start : start + 1024]
        ranks = ranks_from_scores(scores, t)
        ties = (scores == scores.gather(1, t.view(-1, 1))).sum(1) - 1
        for j in range(len(t)):
            u = start + j
            items, item = lists[str(scene.user_ids[u])], scene.item_ids[int(t[j])]
            r, n = int(ranks[j]), int(ties[j])
            if r < k:
                checked += 1
                good += item in items and r <= items.index(item) <= r + n
            elif r - n >= k:
                checked += 1
                good += item not in items
    print(f"  agreement with evaluate's test ranks: {good} of {checked} users", flush=True)
    return f"{good}/{checked}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=10, help="training epochs of the int8-accuracy models")
    p.add_argument("--sports", default=None, help="Sports_and_Outdoors.txt (default: $RECNB_DATA_DIR/amazon/...)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: latency, int8, memory")
    p.add_argument("--teacher", default=None, help="a trained teacher checkpoint: time it and --student instead of random ml-100k models")
    p.add_argument("--student", default=None, help="a trained student checkpoint (with --teacher)")
    p.add_argument("--dataset", default="ml-100k", help="whose test histories feed the trained checkpoints (default ml-100k)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_cpu.txt"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    scene = load_scene("ml-100k")
    hist = eval_inputs(scene, "test", 50)[0]
    result = {"command": " ".join(["python", "bench/serve.py", *sys.argv[1:]]), "threads": args.threads,
              "ort_intra_op_threads": args.threads, "torch": torch.__version__,
              "hardware": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"}
    import onnxruntime

    result["onnxruntime"] = onnxruntime.__version__
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.teacher and "latency" not in skip:
            result["latency"], result["params"] = checkpoint_latency(args, tmp)
        elif "latency" not in skip:
            print("latency (top-10 of every item, ml-100k test histories, max_len 50):", flush=True)
            torch.manual_seed(0)
            teacher = build_model("nextitnet", num_items=scene.num_items, max_len=50, **TEACHER_CONFIG)
            student = Student.from_architecture(architecture(STUDENT), scene.num_items, 64, 50)
            result["params"] = {"teacher": teacher.num_params(), "student": student.num_params()}
            result["latency"] = latency_rows("teacher", teacher, hist, tmp, args.threads, {1: (20, 200), 256: (3, 15)})
            result["latency"] += latency_rows("student", student, hist, tmp, args.threads, {1: (50, 500), 256: (5, 50)})
        if "int8" not in skip:
            print(f"int8 accuracy (ml-100k test, full ranking, {args.epochs} epochs):", flush=True)
            result["int8"] = int8_accuracy(scene, args.epochs, tmp)
        if "memory" not in skip:
            src = Path(args.sports or Path(os.environ.get("RECNB_DATA_DIR", ROOT.parent / "shared" / "data")) / "amazon" / "Sports_and_Outdoors.txt")
            print(f"recommend --all peak memory ({src.name}):", flush=True)
            result["memory"] = peak_memory(sports_csv(src, tmp / "Sports_and_Outdoors.csv"), tmp, args.threads)
    text = report(result)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n" + json.dumps(result, indent=1) + "\n")


def _same_runtime(df: pd.DataFrame, runtime: str) -> float:
    """The teacher's batch-1 ms in ``runtime`` (the exporter in parentheses may differ)."""
    kind = runtime.split(" (")[0]
    return next(ms for (model, rt), ms in df["batch 1 ms"].items() if model == "teacher" and rt.split(" (")[0] == kind)


def report(r: dict) -> str:
    threads = (f"# torch {r['torch']} ({r['threads']} threads), onnxruntime {r['onnxruntime']} "
               f"({r['ort_intra_op_threads']} intra-op threads), {r['hardware']}")
    lines = [f"# {r['command']}", threads, ""]
    if "latency" in r:
        df = pd.DataFrame(r["latency"]).pivot_table(index=["model", "runtime"], columns="batch", values="median_ms", sort=False)
        df.columns = [f"batch {c} ms" for c in df.columns]
        eager_teacher_b1 = df.loc[("teacher", "eager"), "batch 1 ms"]
        df["teacher eager b1 / this b1"] = (eager_teacher_b1 / df["batch 1 ms"]).round(1)
        df["teacher b1 / this b1, same runtime"] = [round(_same_runtime(df, runtime) / ms, 1)
                                                    for (_, runtime), ms in df["batch 1 ms"].items()]
        lines += [f"params: {r['params']}", df.to_string(), ""]
    if "int8" in r:
        lines += [pd.DataFrame(r["int8"]).to_string(index=False), ""]
    if "memory" in r:
        lines += [pd.DataFrame(r["memory"]).to_string(index=False), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
