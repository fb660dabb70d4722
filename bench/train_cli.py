"""`recnb train` as a user runs it, over seeds, recnb now and at an earlier commit side by side.

    python bench/train_cli.py --dataset beauty --model sasrec --seeds 2020,2021,2022 --sides new
    python bench/train_cli.py --dataset beauty --model sasrec --seeds 2020 --sides base,new --jobs 2

Each run is ``python -m recnb train --dataset D --model M --exclude-seen --seed S --out DIR``
(plus ``--flags``) in its own process with one torch thread, ``PYTHONPATH`` at this checkout
("new") or at a worktree of ``--base-commit`` ("base"; made with ``git worktree add`` when
absent); ``--jobs`` runs at a time (at most one per core, or the timings mean nothing). Wall
seconds are the whole command (reading, training, every validation, the test); "train s" is
what the run's ``metrics.json`` counts as training. Runs already finished in ``--out`` are
read, not repeated. Prints a table; writes it and the rows to ``bench/results/<name>``.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE_COMMIT = "9ec1158"


def base_root(given: str | None, commit: str) -> Path:
    path = Path(given or Path(tempfile.gettempdir()) / f"recnb-base-{commit}")
    if not (path / "recnb").exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True)
    return path


def one_run(side: str, root: Path, seed: int, args) -> dict:
    out = Path(args.out) / f"{side}-seed{seed}"
    if not (out / "metrics.json").exists():
        cmd = [sys.executable, "-m", "recnb", "train", "--dataset", args.dataset, "--model", args.model, "--exclude-seen",
               "--seed", str(seed), "--out", str(out), "--force", "--quiet", *args.flags.split()]
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        if proc.returncode:
            return {"side": side, "seed": seed, "error": proc.stderr.strip().splitlines()[-1:]}
        (out / "wall_seconds.txt").write_text(f"{wall:.1f}\n")
    m = json.loads((out / "metrics.json").read_text())
    wall = float((out / "wall_seconds.txt").read_text())
    return {"side": side, "seed": seed, "test_ndcg10": m["test"]["NDCG@10"], "test_hr10": m["test"]["HR@10"],
            "valid_ndcg10": m["valid"]["NDCG@10"], "epochs": m["epochs"], "best_epoch": m["best_epoch"],
            "train_s": m["train_seconds"], "wall_s": wall, "recipe": m.get("recipe"), "train": m["train"],
            "config": m["config"]}


def table(rows: list, args) -> str:
    title = (f"recnb bench/train_cli.py --dataset {args.dataset} --model {args.model} --seeds {args.seeds} "
             f"--flags '{args.flags}': {platform.machine()} {os.cpu_count()} cores, 1 torch thread per run, "
             f"{args.jobs} run(s) at a time; base = {args.base_commit}")
    lines = [title, "",
             "| side | seed | test NDCG@10 | test HR@10 | valid NDCG@10 | epochs (best) | train s | wall s | wall / train |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['side']} | {r['seed']} | error: {r['error']} |||||||")
            continue
        lines.append(f"| {r['side']} | {r['seed']} | {r['test_ndcg10']:.4f} | {r['test_hr10']:.4f} | "
                     f"{r['valid_ndcg10']:.4f} | {r['epochs']} ({r['best_epoch']}) | {r['train_s']:.0f} | "
                     f"{r['wall_s']:.0f} | {r['wall_s'] / r['train_s']:.2f} |")
    for side in dict.fromkeys(r["side"] for r in rows):
        ok = [r for r in rows if r["side"] == side and "error" not in r]
        if len(ok) > 1:
            nd = [r["test_ndcg10"] for r in ok]
            lines.append(f"| {side} | mean ± std | {statistics.mean(nd):.4f} ± {statistics.pstdev(nd):.4f} | "
                         f"{statistics.mean(r['test_hr10'] for r in ok):.4f} | | | "
                         f"{statistics.mean(r['train_s'] for r in ok):.0f} | {statistics.mean(r['wall_s'] for r in ok):.0f} | |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--model", default="sasrec")
    p.add_argument("--seeds", default="2020,2021,2022")
    p.add_argument("--sides", default="new", help="new and/or base")
    p.add_argument("--flags", default="", help="more `recnb train` flags, as one string")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (at most one per core)")
    p.add_argument("--base", default=None, help="a worktree of --base-commit (made when absent)")
    p.add_argument("--base-commit", default=BASE_COMMIT)
    p.add_argument("--out", default=None, help="run folders (default a temporary folder)")
    p.add_argument("--name", default=None, help="results name under bench/results/")
    args = p.parse_args(argv)
    args.out = args.out or tempfile.mkdtemp(prefix="recnb-train-cli-")
    sides = args.sides.split(",")
    roots = {"new": ROOT, **({"base": base_root(args.base, args.base_commit)} if "base" in sides else {})}
    work = [(side, int(seed)) for seed in args.seeds.split(",") for side in sides]
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda w: one_run(w[0], roots[w[0]], w[1], args), work))
    text = table(rows, args)
    print(text)
    if args.name:
        folder = ROOT / "bench" / "results" / args.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.md").write_text(text + "\n")
        (folder / "results.json").write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
