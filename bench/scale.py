"""Scenes at scale: read time, windows, padding, epoch cost and accuracy, recnb before and after.

    python bench/scale.py --parts read,speed --scenes ml-100k,beauty,sports
    python bench/scale.py --parts train --scenes beauty --seeds 2020
    python bench/scale.py --parts stress                 # 10M interactions, 1M users, 100k items

Every measurement runs in its own subprocess (peak memory is that process's), with
``PYTHONPATH`` at this checkout ("new") or at a worktree of the commit before this work
("base", ``--base``; made with ``git worktree add`` when absent). The base reads the Amazon
files through the ``user item`` text it can read (written here, same scene). Threads: 1
unless ``--threads``. Seconds per epoch are the worker's CPU seconds for one training epoch
(evaluation left out), so other jobs on the machine do not inflate them; wall seconds are in
the JSON. Training runs report wall seconds. "s to ICLRec" is the training time until
the first epoch whose test NDCG@10 (full ranking, seen items masked) reaches ICLRec's
published number (test is read after each epoch for this measurement only; the model kept
is the best on validation). Prints a table and writes JSON and text to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__" and "--worker" not in sys.argv:
    sys.path.insert(0, str(ROOT))  # the driver reads scenes with this checkout's recnb
BASE_COMMIT = "52d1d3a"
# ICLRec (Chen et al., WWW 2022), test NDCG@10 / HR@10 under this protocol
ICLREC = {"beauty": (0.0403, 0.0744), "sports": (0.0238, 0.0437)}
# what each side trains with: the base's measured ml-100k recipe; the new one per scene
BASE_SETTINGS: dict = {}
NEW_SETTINGS = {"ml-100k": {}, "beauty": None, "sports": None, "stress": None}  # None: recnb.train.SCENE_RECIPES["large-sparse"]


# ----------------------------------------------------------------------------- worker side
def worker(task: dict) -> dict:
    import torch

    torch.set_num_threads(task["threads"])
    from recnb.data import load_scene, train_windows

    t, cpu = time.perf_counter(), time.process_time()
    scene = stress_scene(task["stress_file"]) if task["scene"] == "stress" else load_scene(task["source"])
    out = {"read_s": time.perf_counter() - t, "read_cpu_s": time.process_time() - cpu,
           "users": scene.num_users, "items": scene.num_items,
           "interactions": int(sum(len(s) for s in scene.sequences))}
    settings = settings_for(task)
    from recnb.train import recipe

    cfg = recipe("sasrec", **settings)
    t = time.perf_counter()
    w = train_windows(scene, 50, cfg.context)
    out.update(windows_s=time.perf_counter() - t, windows=len(w), targets=int((w.targets > 0).sum()),
               padding=1 - float((w.inputs > 0).sum()) / w.inputs.numel())
    if getattr(cfg, "batch_targets", 0):  # the share of padding the network still sees once batches are cut
        from recnb.train import Batches

        b = Batches(w, cfg.batch_size, cfg.batch_targets, cut=True)
        seen = sum(inp.numel() for _, inp, *_ in b.epoch(torch.Generator().manual_seed(0)))
        out["padding_cut"] = 1 - float((w.inputs > 0).sum()) / seen
        out["positions"] = seen
    else:
        out["positions"] = w.inputs.numel()
    if task["part"] in ("speed", "stress"):  # training only (stress: scoring 1M users x 100k items is 13 TFLOP)
        import pandas as pd

        import recnb.train

        recnb.train.evaluate = lambda *a, **k: pd.DataFrame({"NDCG": [0.0], "HR": [0.0], "MRR": [0.0]}, index=[10])
    if task["part"] == "stress" and task.get("share", 1.0) < 1.0:  # a random share of the epoch's windows
        from recnb.data import Windows

        keep = torch.randperm(len(w), generator=torch.Generator().manual_seed(0))[: round(task["share"] * len(w))]
        w = Windows(w.inputs[keep], w.targets[keep], w.users[keep])
        out["share"] = task["share"]
    if task["part"] in ("speed", "stress"):
        out.update(one_epoch(scene, cfg, w, task))
    elif task["part"] == "train":
        out.update(train(scene, cfg, task))
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out["settings"] = settings
    return out


def settings_for(task: dict) -> dict:
    if task["side"] == "base":
        return dict(BASE_SETTINGS)
    fixed = NEW_SETTINGS.get(task["scene"])
    if fixed is not None:
        return {**fixed, **task.get("set", {})}
    from recnb.train import RECIPES, SCENE_RECIPES

    settings = {k: v for k, v in SCENE_RECIPES["large-sparse"]["sasrec"].items() if k != "model"}  # model: model_for
    settings.update(task.get("set", {}))
    if task["side"] == "new-ce":  # the same batches with the full-softmax CE of the ml-100k recipe
        settings.update(loss="ce", label_smoothing=RECIPES["sasrec"]["label_smoothing"])
        settings.pop("negatives")
    if settings.get("loss", "ce") == "bce":  # as recnb.train.recipe resolves it: smoothing is a softmax setting
        settings.pop("label_smoothing", None)
    return settings


def parse_setting(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--set {text!r}: expected NAME=VALUE")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def model_for(scene, seed: int, side: str = "new"):
    """SASRec with the model settings of the side's recipe for the scene (the base: defaults)."""
    from recnb.models import build_model
    from recnb.train import seed_everything

    seed_everything(seed)
    extra = {}
    if side != "base":
        from recnb.train import recipe_model_config

        extra = recipe_model_config("sasrec", scene)
    return build_model("sasrec", num_items=scene.num_items, max_len=50, **extra)


def one_epoch(scene, cfg, windows, task) -> dict:
    import dataclasses

    from recnb.train import fit

    cfg = dataclasses.replace(cfg, epochs=1, progress=False, seed=task["seed"])
    model = model_for(scene, task["seed"], task["side"])
    cpu = time.process_time()  # CPU seconds: what the epoch costs, whatever else shares the machine
    res = fit(model, scene, cfg, windows=windows)
    cpu = time.process_time() - cpu
    targets = int((windows.targets > 0).sum())
    return {"epoch_s": cpu, "wall_s": res.train_seconds, "targets_per_s": targets / cpu}


def train(scene, cfg, task) -> dict:
    import dataclasses

    try:
        from recnb.evaluation import evaluate
    except ImportError:  # the base: evaluate lived in recnb.train before recnb/evaluation.py
        from recnb.train import evaluate
    from recnb.metrics import flatten
    from recnb.train import fit

    cfg = dataclasses.replace(cfg, epochs=task["epochs"], progress=False, seed=task["seed"],
                              time_budget=task.get("time_budget"))
    model = model_for(scene, task["seed"], task["side"])
    goal = ICLREC.get(task["scene"], (None,))[0]
    cut = task["side"] == "new"  # the base has no cut evaluation (same numbers, more work)
    reached, curve = {"seconds": None, "epoch": None}, []

    def watch(row):  # measurement only: when does test first reach ICLRec's number?
        test = flatten(evaluate(model, scene, "test", exclude_seen=True, **({"cut_padding": True} if cut else {})))["NDCG@10"]
        curve.append((int(row["epoch"]), round(row["seconds"], 1), round(row.get("valid_NDCG@10", float("nan")), 4),
                      round(test, 4)))
        print(f"  epoch {curve[-1][0]} {curve[-1][1]} s valid {curve[-1][2]} test(excl.) {curve[-1][3]}", file=sys.stderr,
              flush=True)
        if goal is not None and reached["seconds"] is None and test >= goal:
            reached.update(seconds=row["seconds"], epoch=int(row["epoch"]))

    res = fit(model, scene, cfg, log=watch)
    out = {"best_epoch": res.best_epoch, "epochs": res.epochs, "train_s": res.train_seconds,
           "seconds_to_best": res.seconds_to_best, "s_to_iclrec": reached["seconds"],
           "epoch_to_iclrec": reached["epoch"], "curve": curve}
    for ex in (True, False):
        m = flatten(evaluate(res.model, scene, "test", exclude_seen=ex, **({"cut_padding": True} if cut else {})))
        key = "excl" if ex else "all"
        out[f"test_{key}"] = {k: m[k] for k in ("NDCG@10", "HR@10", "NDCG@20", "HR@20")}
    return out


def stress_scene(path: str):
    from recnb.data import load_scene

    return load_scene(path, format="user-item")


def write_stress_file(path: Path, users=1_000_000, items=100_000, interactions=10_000_000, seed=0) -> None:
    """A seeded ``user item`` file: 1M users with at least 3 items each (10M in all), items
    drawn from a Zipf-like popularity, written with numpy (no Python loop per line)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = 3 + rng.multinomial(interactions - 3 * users, np.ones(users) / users)
    user = np.repeat(np.arange(1, users + 1), lengths)
    pop = 1.0 / np.arange(1, items + 1) ** 0.8
    item = rng.choice(np.arange(1, items + 1), size=interactions, p=pop / pop.sum())
    np.savetxt(path, np.stack([user, item], 1), fmt="%d")


# ----------------------------------------------------------------------------- driver side
def run(task: dict, side_root: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(side_root), "OMP_NUM_THREADS": str(task["threads"])}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(task)], env=env,
                          stdout=subprocess.PIPE, text=True, check=False)  # stderr (progress) passes through
    if proc.returncode:
        return {"error": f"worker exit {proc.returncode} (its stderr is above)"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def base_root(given: str | None) -> Path:
    path = Path(given or Path(tempfile.gettempdir()) / "recnb-base")
    if not (path / "recnb").exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), BASE_COMMIT], check=True)
    return path


def pairs_file(name: str, folder: Path) -> Path:
    """The scene as ``user item`` lines (time order), a format the base reads the same way."""
    from recnb.data import load_scene

    path = folder / f"{name}.txt"
    if not path.exists():
        s = load_scene(name)
        with open(path, "w") as fh:
            fh.writelines(f"{u} {s.item_ids[i]}\n" for u, seq in zip(s.user_ids, s.sequences) for i in seq)
    return path


def matmul_gflops(threads: int) -> float:
    """Measured fp32 matmul throughput of this machine (the shape of a scoring step)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 64), torch.randn(64, 12102)
    a @ b
    t, n = time.process_time(), 0  # CPU seconds, like the epochs it is compared with
    while time.process_time() - t < 2:
        a @ b
        n += 1
    return 2 * 2048 * 64 * 12102 * n / (time.process_time() - t) / 1e9


def epoch_gflop(row: dict, settings: dict) -> float:
    """FLOPs of one SASRec epoch (d 64, inner 256, 2 layers), forward + backward = 3x forward:
    the blocks over every position the network sees, plus the scoring of every target."""
    d, inner, layers = 64, 256, 2
    per_position = layers * 2 * (4 * d * d + 2 * d * inner)  # qkv, proj, feed-forward
    attention = layers * 2 * 2 * d * 50  # scores and mix, at most 50 keys
    scored = settings.get("negatives", 1024) + 1 if settings.get("loss") == "sampled" else row["items"] + 1
    return 3 * (row["positions"] * (per_position + attention) + row["targets"] * 2 * d * scored) / 1e9


def fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--parts", default="read,speed", help="read, speed, train, stress (comma-separated)")
    p.add_argument("--scenes", default="ml-100k,beauty,sports")
    p.add_argument("--sides", default="base,new", help="base, new, new-ce (new batches, full-softmax CE)")
    p.add_argument("--seeds", default="2020")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=200, help="most epochs of a training run")
    p.add_argument("--time-budget", type=float, default=None, help="seconds of training per run, at most")
    p.add_argument("--base", default=None, help="worktree of the commit before this work")
    p.add_argument("--stress-share", type=float, default=1.0,
                   help="train the stress epoch on this random share of its windows (targets/s, memory)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a training setting of the new sides changed from the recipe (JSON value; repeatable)")
    p.add_argument("--out", default="scale", help="results name under bench/results/")
    p.add_argument("--table", default=None, help="re-print saved results (names under bench/results/, comma-separated)")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.table:  # print the table again from saved rows (and a fresh matmul measurement)
        rows = []
        for name in args.table.split(","):
            rows += json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text())["rows"]
        return report(rows, args)
    parts, sides = args.parts.split(","), args.sides.split(",")
    roots = {"new": ROOT, "new-ce": ROOT, "base": base_root(args.base) if "base" in sides else None}
    tmp = Path(tempfile.mkdtemp(prefix="recnb-scale-"))
    rows = []
    for part in parts:
        scenes = ["stress"] if part == "stress" else args.scenes.split(",")
        for scene in scenes:
            for side in (["new"] if part == "stress" else sides):
                for seed in map(int, args.seeds.split(",")):
                    task = {"part": part, "scene": scene, "side": side, "seed": seed, "threads": args.threads,
                            "epochs": args.epochs, "time_budget": args.time_budget, "source": scene,
                            "share": args.stress_share, "set": dict(parse_setting(a) for a in args.set)}
                    if scene == "stress":
                        task["stress_file"] = str(tmp / "stress.txt")
                        if not Path(task["stress_file"]).exists():
                            write_stress_file(Path(task["stress_file"]))
                    elif side == "base" and scene in ICLREC:
                        task["source"] = str(pairs_file(scene, tmp))
                    print(f"{part} {scene} {side} seed {seed} ...", file=sys.stderr, flush=True)
                    label = side + "".join(f" {a}" for a in args.set) if side != "base" else side
                    row = {"part": part, "scene": scene, "side": label, "seed": seed, **run(task, roots[side])}
                    rows.append(row)
                    print(json.dumps({k: v for k, v in row.items() if k != "curve"}), file=sys.stderr, flush=True)
    report(rows, args)


def report(rows: list, args) -> None:
    gflops = matmul_gflops(args.threads)
    title = (f"recnb bench/scale.py, {platform.machine()} {os.cpu_count()} cores, torch threads {args.threads}, "
             f"measured fp32 matmul {gflops:.1f} GFLOP/s; base = {BASE_COMMIT}")
    lines = [title, ""]
    head = ["part", "scene", "side", "seed", "interactions", "read s (CPU)", "windows", "padding", "padding cut", "s/epoch",
            "targets/s", "limit s", "peak GiB", "best ep", "s to best", "s to ICLRec", "NDCG@10 excl", "HR@10 excl",
            "NDCG@10 all", "HR@10 all"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['part']} | {r['scene']} | {r['side']} | {r.get('seed', '-')} | error: {r['error']} |")
            continue
        limit = epoch_gflop(r, r["settings"]) / gflops if "epoch_s" in r else None  # the whole epoch
        ex, al = r.get("test_excl", {}), r.get("test_all", {})
        epoch_s = r.get("epoch_s") / r["share"] if "epoch_s" in r and r.get("share") else r.get("epoch_s")
        cells = [r["part"], r["scene"], r["side"], str(r.get("seed", "-")), fmt(r["interactions"]), fmt(r.get("read_cpu_s", r["read_s"])),
                 fmt(r["windows"]),
                 f"{r['padding']:.0%}", f"{r['padding_cut']:.0%}" if "padding_cut" in r else "-",
                 fmt(epoch_s, 1), fmt(r.get("targets_per_s"), 0), fmt(limit, 1), fmt(r["peak_rss_gib"]),
                 fmt(r.get("best_epoch")), fmt(r.get("seconds_to_best"), 0), fmt(r.get("s_to_iclrec"), 0),
                 fmt(ex.get("NDCG@10"), 4), fmt(ex.get("HR@10"), 4), fmt(al.get("NDCG@10"), 4), fmt(al.get("HR@10"), 4)]
        lines.append("| " + " | ".join(cells) + " |")
    settings = {f"{r['side']} {r['scene']}": r.get("settings") for r in rows}
    lines += ["", "settings: " + json.dumps(settings)]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "bench" / "results"
    (out / f"{args.out}.txt").write_text(text + "\n")
    (out / f"{args.out}.json").write_text(json.dumps({"argv": sys.argv[1:], "gflops": gflops, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
