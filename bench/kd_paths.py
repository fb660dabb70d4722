"""Two ways of reading the teacher, run for run: same students, same seeds, paired.

    python bench/kd_paths.py --runs online=FRONTIER_A --runs clean=FRONTIER_B [--json out.json]

Each ``--runs LABEL=DIR`` is a finished ``recnb frontier`` folder (for instance one made with
``--online-teacher``, one with ``--clean-teacher``). For every distilled run (grid entry and
seed) that two folders share, prints both test NDCG@10, the paired difference over test
users (``recnb.metrics.paired_difference`` on the runs' ``ranks.pt``), the median seconds of
a training epoch and its ratio to the plain twin's (its mean: a plain run taken from ``recnb
train`` keeps no history), the epochs trained and the training
seconds: whether the cheaper path scores the same, and what it saves. Reads the folders only.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

from recnb.checkpoint import read_torch_file
from recnb.metrics import paired_difference


def runs_of(folder: Path) -> dict:
    """``(grid entry, seed) -> facts`` of a frontier folder's distilled runs and their plain twins."""
    found = {}
    for metrics_path in sorted(folder.glob("student/*/seed_*/metrics.json")):
        run = metrics_path.parent
        name, seed = run.parent.name, run.name.removeprefix("seed_")
        m = json.loads(metrics_path.read_text())
        plain_path = folder / "plain" / name / run.name / "metrics.json"
        plain = json.loads(plain_path.read_text()) if plain_path.exists() else {}
        found[(name, seed)] = {
            "test_NDCG@10": m["test"]["NDCG@10"], "epochs": m["epochs"], "train_seconds": m["train_seconds"],
            "seconds_per_epoch": median_epoch(run / "history.csv", m["seconds_per_epoch"]),
            "plain_seconds_per_epoch": plain.get("seconds_per_epoch"), "ranks": run / "ranks.pt"}
    return found


def median_epoch(history: Path, mean: float) -> float:
    """The median seconds of a run's training epochs (``history.csv`` holds them cumulated): a
    spell of other work on the machine moves it less than the mean; the mean where there is no
    history (a ``recnb train`` run taken as the plain row)."""
    if not history.exists():
        return mean
    with history.open() as f:
        cumulated = [float(r["seconds"]) for r in csv.DictReader(f)]
    return statistics.median(b - a for a, b in zip([0.0, *cumulated], cumulated))


def compare(a: dict, b: dict) -> list[dict]:
    """One row per shared run, then per model with several seeds a ``mean`` row: the facts
    averaged over its seeds, the paired difference of the seed-averaged per-user NDCG@10."""
    rows = []
    shared = sorted(set(a) & set(b))
    for model in dict.fromkeys(m for m, _ in shared):
        keys = [k for k in shared if k[0] == model]
        for group in [[k] for k in keys] + ([keys] if len(keys) > 1 else []):
            paired = paired_difference([read_torch_file(b[k]["ranks"], "ranks")["ranks"] for k in group],
                                       [read_torch_file(a[k]["ranks"], "ranks")["ranks"] for k in group])
            rows.append({"model": model, "seed": int(group[0][1]) if len(group) == 1 else "mean",
                         "a": facts([a[k] for k in group]), "b": facts([b[k] for k in group]),
                         "paired_b_minus_a": paired["difference"], "paired_se": paired["se"]})
    return rows


def facts(runs: list[dict]) -> dict:
    """A run's facts, or their means over several seeds."""
    keys = [k for k in runs[0] if k != "ranks"]
    if len(runs) == 1:
        return {k: runs[0][k] for k in keys}
    return {k: (sum(r[k] for r in runs) / len(runs) if all(r[k] is not None for r in runs) else None) for k in keys}


def ratio(run: dict) -> str:
    plain = run["plain_seconds_per_epoch"]
    return f"{run['seconds_per_epoch'] / plain:.1f}x" if plain else "-"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", action="append", required=True, help="LABEL=FRONTIER_DIR, twice")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    pairs = [r.split("=", 1) for r in args.runs]
    if len(pairs) != 2 or any(len(p) != 2 or not Path(p[1]).is_dir() for p in pairs):
        print("kd_paths: give --runs LABEL=DIR twice, each an existing frontier folder", file=sys.stderr)
        return 2
    (la, da), (lb, db) = pairs
    rows = compare(runs_of(Path(da)), runs_of(Path(db)))
    if not rows:
        print(f"kd_paths: {da} and {db} share no finished distilled run", file=sys.stderr)
        return 2
    print(f"| model | seed | test NDCG@10 {la} | {lb} | paired {lb} - {la} ± SE | s/epoch {la} (x plain) | {lb} (x plain) "
          f"| epochs {la} / {lb} | training s {la} / {lb} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["a"], r["b"]
        print(f"| `{r['model']}` | {r['seed']} | {a['test_NDCG@10']:.4f} | {b['test_NDCG@10']:.4f} "
              f"| {r['paired_b_minus_a']:+.4f} ± {r['paired_se']:.4f} | {a['seconds_per_epoch']:.1f} ({ratio(a)}) "
              f"| {b['seconds_per_epoch']:.1f} ({ratio(b)}) | {a['epochs']:.3g} / {b['epochs']:.3g} "
              f"| {a['train_seconds']:,.0f} / {b['train_seconds']:,.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"a": la, "b": lb, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
