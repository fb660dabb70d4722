"""What a validation costs beside the training epoch before it, recnb before and after.

    python bench/validation.py --scene beauty --repeats 3
    python bench/validation.py --scene sports --base /tmp/recnb-base --out validation_sports

Each side runs in its own subprocess with ``PYTHONPATH`` at this checkout ("new") or at a
worktree of ``--base-commit`` ("base"; made with ``git worktree add`` when absent), one torch
thread, the sides interleaved ``--repeats`` times so load on the machine hits both alike. A
worker builds SASRec with the scene's recipe (each side its own), times one training epoch
and then the full-ranking validation of every user with seen items masked, as ``fit`` runs
it (CPU seconds, so other jobs do not inflate them; wall seconds in the JSON). "evaluate()
default" is a test-split ranking through ``evaluate`` with no arguments but the protocol:
what ``recnb train`` reports with. Prints a table; writes JSON and text to bench/results/.
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

ROOT = Path(__file__).resolve().parents[1]
BASE_COMMIT = "9ec1158"


def worker(task: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    import recnb
    from recnb.evaluation import evaluate, user_ranks
    from recnb.train import _Run, recipe

    scene = recnb.load_scene(task["scene"])
    cfg = recipe("sasrec", scene if task["side"] == "new" else scene.name, progress=False, seed=2020)  # base: by name
    model = recnb.build_model("sasrec", num_items=scene.num_items, max_len=cfg.max_len)
    run = _Run.start(model, scene, cfg, None, None, None, None, None, True)
    out = {}
    for name, work in (("epoch", lambda: run.train_epoch(0)),
                       ("validation", lambda: user_ranks(model, scene, "valid", exclude_seen=True, cut_padding=True)),
                       ("evaluate_default", lambda: evaluate(model, scene, "test", exclude_seen=True))):
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        out[name] = {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}
    out["settings"] = {k: v for k, v in vars(cfg).items() if k in ("loss", "negatives", "batch_targets", "lr", "epochs")}
    return out


def run(task: dict, root: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(task)], env=env,
                          stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def base_root(given: str | None, commit: str) -> Path:
    path = Path(given or Path(tempfile.gettempdir()) / f"recnb-base-{commit}")
    if not (path / "recnb").exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True)
    return path


def report(rows: list, args) -> str:
    def med(side, part):
        return statistics.median(r[part]["cpu_s"] for r in rows if r["side"] == side)

    title = (f"recnb bench/validation.py --scene {args.scene} --repeats {args.repeats}: {platform.machine()} "
             f"{os.cpu_count()} cores, 1 torch thread, CPU seconds (median of {args.repeats}); base = {args.base_commit}")
    lines = [title, "", "| side | training epoch s | masked validation s | validation / epoch | evaluate() default s |",
             "|---|---|---|---|---|"]
    for side in ("base", "new"):
        e, v, d = med(side, "epoch"), med(side, "validation"), med(side, "evaluate_default")
        lines.append(f"| {side} | {e:.2f} | {v:.2f} | {v / e:.2f} | {d:.2f} |")
    speed = (f"validation speed-up: {med('base', 'validation') / med('new', 'validation'):.1f}x; evaluate() default: "
             f"{med('base', 'evaluate_default') / med('new', 'evaluate_default'):.1f}x")
    lines += ["", speed,
              "settings: " + json.dumps({side: next(r["settings"] for r in rows if r["side"] == side)
                                         for side in ("base", "new")})]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--scene", default="beauty")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--base", default=None, help="a worktree of --base-commit (made when absent)")
    p.add_argument("--base-commit", default=BASE_COMMIT)
    p.add_argument("--out", default=None, help="results name under bench/results/ (default validation_<scene>)")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    roots = {"base": base_root(args.base, args.base_commit), "new": ROOT}
    rows = []
    for i in range(args.repeats):
        for side in ("base", "new"):
            rows.append({"side": side, "repeat": i, **run({"scene": args.scene, "side": side}, roots[side])})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    text = report(rows, args)
    print(text)
    name = args.out or f"validation_{args.scene}"
    (ROOT / "bench" / "results" / f"{name}.json").write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    (ROOT / "bench" / "results" / f"{name}.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
