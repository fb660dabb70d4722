"""Training speed and accuracy of recnb's models against RecBole 1.2.1.

    python bench/train_eval.py                       # ml-100k and wikipedia, 3 seeds, CPU
    python bench/train_eval.py --device cuda         # the same on a GPU
    python bench/train_eval.py --datasets ml-100k --models sasrec --seeds 1

Protocol: leave-one-out, full ranking, no seen-item masking, max_len 50, CE loss, the
RecBole default model configurations; early stopping on validation NDCG@10. Seconds
count training only (evaluation excluded). "s to RecBole quality" is the training time
until the first epoch whose test NDCG@10 reaches RecBole's (test is read after each epoch
for this measurement only; the reported model is still the best-on-validation one).
Prints a markdown table and writes JSON next to this file (bench/results/).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from recnb.checkpoint import resolve_device
from recnb.data import load_scene
from recnb.evaluation import evaluate
from recnb.metrics import flatten
from recnb.models import build_model
from recnb.runs import train_and_report
from recnb.train import TrainConfig, fit, recipe, recipe_model_config, seed_everything

# RecBole 1.2.1 on ml-100k, same protocol, measured on a 2-core CPU like CI's (issue #3)
RECBOLE = {
    "sasrec": {"NDCG@10": 0.0637, "HR@10": 0.1400, "MRR@10": 0.0409, "best_epoch": 18, "s_epoch_cpu": 106},
    "gru4rec": {"NDCG@10": 0.0628, "HR@10": 0.1315, "MRR@10": 0.0422, "best_epoch": 18, "s_epoch_cpu": 59},
    "nextitnet": {"NDCG@10": 0.0623, "HR@10": 0.1273, "MRR@10": 0.0429, "best_epoch": 9, "s_epoch_cpu": 67},
}
def settings(model_name: str, seed: int, device: str, epochs: int, patience: int | None) -> tuple[dict, TrainConfig]:
    """What a run trains with: the model's recipe (model and training settings, the ones
    `recnb train` uses: RecBole's default model configurations plus the recipe's changes, such
    as NextItNet's dropout 0.3), with only the run's epochs, seed, device and patience given."""
    given = {"patience": patience} if patience is not None else {}  # else the recipe's (10 unless it says)
    return recipe_model_config(model_name), recipe(model_name, epochs=epochs, seed=seed, device=device, max_len=50,
                                                   progress=False, **given)


def run_one(scene, model_name: str, seed: int, device: str, epochs: int, patience: int | None) -> dict:
    """One run through the path `recnb train` takes (``train_and_report``)."""
    target = RECBOLE.get(model_name, {}).get("NDCG@10") if scene.name == "ml-100k" else None
    reached = {"seconds": None, "epoch": None}

    def watch(row, model):  # measurement only: when does test quality first reach RecBole's?
        if target is not None and reached["seconds"] is None \
                and flatten(evaluate(model, scene, "test"))["NDCG@10"] >= target:
            reached.update(seconds=row["seconds"], epoch=int(row["epoch"]))

    model_cfg, cfg = settings(model_name, seed, device, epochs, patience)
    m = train_and_report(scene, model_name, model_cfg, cfg, log=watch)
    return {
        "model": model_name, "dataset": scene.name, "seed": seed, "test": m["test"], "valid": m["valid"],
        "params": m["params"], "params_no_embedding": m["params_no_embedding"],
        "best_epoch": m["best_epoch"], "epochs": m["epochs"],
        "seconds_to_best": m["seconds_to_best"], "seconds_per_epoch": m["train_seconds"] / m["epochs"],
        "seconds_to_recbole_quality": reached["seconds"], "epoch_reached": reached["epoch"],
        "device": m["device"], "config": m["config"], "train": m["train"],
    }


def summarise(runs: list[dict]) -> dict:
    first = runs[0]
    mean = lambda key: statistics.mean(r["test"][key] for r in runs)
    reached = [r["seconds_to_recbole_quality"] for r in runs]
    row = {
        "model": first["model"], "dataset": first["dataset"], "seeds": len(runs),
        "NDCG@10": mean("NDCG@10"), "NDCG@10_std": statistics.pstdev(r["test"]["NDCG@10"] for r in runs),
        "HR@10": mean("HR@10"), "MRR@10": mean("MRR@10"), "params": first["params"],
        "s_to_best": statistics.mean(r["seconds_to_best"] for r in runs),
        "s_per_epoch": statistics.mean(r["seconds_per_epoch"] for r in runs),
        "best_epoch": statistics.mean(r["best_epoch"] for r in runs),
        "s_to_recbole_quality": statistics.mean(reached) if all(x is not None for x in reached) else None,
        "device": first["device"],
    }
    ref = RECBOLE.get(first["model"]) if first["dataset"] == "ml-100k" else None
    if ref:
        recbole_time = ref["s_epoch_cpu"] * (ref["best_epoch"] + 1)
        row.update(recbole_NDCG10=ref["NDCG@10"], recbole_s_to_best_cpu=recbole_time)
        if row["s_to_recbole_quality"]:
            row["speedup_vs_recbole_cpu"] = recbole_time / row["s_to_recbole_quality"]
    return row


def markdown(rows: list[dict]) -> str:
    head = ("| model | dataset | seeds | NDCG@10 (± std) | HR@10 | MRR@10 | params | s to best | s/epoch | best epoch "
            "| RecBole NDCG@10 | s to RecBole quality | RecBole s to best (CPU) | speed-up | device |")
    lines = [head, "|" + "---|" * 15]
    f = lambda x, p=4: "n/a" if x is None else (f"{x:.{p}f}" if isinstance(x, float) else str(x))
    speedup = lambda x: "n/a" if x is None else f"{x:.1f}x"
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['dataset']} | {r['seeds']} | {r['NDCG@10']:.4f} ± {r['NDCG@10_std']:.4f} | "
            f"{r['HR@10']:.4f} | {r['MRR@10']:.4f} | {r['params']:,} | {r['s_to_best']:.1f} | {r['s_per_epoch']:.2f} | "
            f"{r['best_epoch']:.1f} | {f(r.get('recbole_NDCG10'))} | {f(r.get('s_to_recbole_quality'), 1)} | "
            f"{f(r.get('recbole_s_to_best_cpu'), 0)} | {speedup(r.get('speedup_vs_recbole_cpu'))} | {r['device']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="ml-100k,wikipedia")
    p.add_argument("--models", default="sasrec,gru4rec,nextitnet")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--patience", type=int, default=None, help="epochs without a better validation (default: the recipe's)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--timing-only", type=int, default=0, metavar="EPOCHS",
                   help="only time this many epochs per model (no early stopping), for a quiet machine")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.timing_only:
        return time_epochs(args)
    rows, all_runs = [], []
    for ds in args.datasets.split(","):
        scene = load_scene(ds)
        for m in args.models.split(","):
            runs = []
            for seed in range(2020, 2020 + args.seeds):
                start = time.perf_counter()
                runs.append(run_one(scene, m, seed, args.device, args.epochs, args.patience))
                print(f"  {m} {ds} seed {seed}: NDCG@10 {runs[-1]['test']['NDCG@10']:.4f} "
                      f"best epoch {runs[-1]['best_epoch']} ({time.perf_counter() - start:.0f}s)", flush=True)
            all_runs += runs
            rows.append(summarise(runs))
    hardware = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    print(f"\nHardware: {hardware}\n")
    print(markdown(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = str(resolve_device(args.device)).split(":")[0]
    name = f"train_eval_{dev}_{args.datasets.replace(',', '-')}_{args.models.replace(',', '-')}.json"
    (out / name).write_text(json.dumps({"hardware": hardware, "rows": rows, "runs": all_runs}, indent=2))


def time_epochs(args) -> None:
    """Seconds per training epoch (evaluation excluded), seed 2020, on a quiet machine."""
    print("| model | dataset | s/epoch | epochs timed | threads | device |\n|---|---|---|---|---|---|")
    for ds in args.datasets.split(","):
        scene = load_scene(ds)
        for m in args.models.split(","):
            model_cfg, cfg = settings(m, 2020, args.device, args.timing_only, 10**6)
            seed_everything(2020)
            model = build_model(m, num_items=scene.num_items, **{"max_len": 50, **model_cfg})
            r = fit(model, scene, cfg)
            print(f"| {m} | {ds} | {r.train_seconds / r.epochs:.2f} | {r.epochs} | {torch.get_num_threads()} | "
                  f"{resolve_device(args.device)} |", flush=True)


if __name__ == "__main__":
    main()
