"""Dropout for a derived AdaRec student, with or without its teacher: is the no-teacher twin
weak because it lacks the teacher, or because nothing stops it overfitting?

    RECNB_DATA_DIR=../shared/data python bench/adarec_dropout.py --arch ARCH.json --dropouts 0,0.1,0.2,0.3 \\
        --out runs/dropout -- --dataset beauty --exclude-seen --batch-targets 2048 --loss sampled --lr 3e-3 ...

Each dropout is one ``recnb distill`` run (``--no-teacher`` unless ``--teacher`` is given; the
options after ``--`` go to every run); finished runs are read back and a killed one resumes
(``recnb distill --resume``). Prints one row per dropout:
the best epoch, validation and test NDCG@10 / HR@10 (the protocol the runs were given), and
writes the table as JSON beside ``--out``. ``--against DIR[,DIR...]`` (finished runs
with a ``model.pt``, e.g. the KD student) adds each row's paired difference from each in test NDCG@10
over the same users (``recnb.metrics.paired_difference``: bootstrap SE over users).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from recnb.cli import main as recnb


def run(args, extra: list[str], dropout: float) -> dict:
    out = Path(args.out) / f"dropout_{dropout:g}"
    if not (out / "metrics.json").exists():
        who = ["--teacher", args.teacher] if args.teacher else ["--no-teacher"]
        t0 = time.perf_counter()
        rc = recnb(["distill", "--arch", args.arch, *who, "--dropout", str(dropout), "--out", str(out), "--resume",
                    "--quiet", *extra])
        if rc:
            raise SystemExit(rc)
        print(f"[dropout {dropout:g}: {time.perf_counter() - t0:.0f}s]", flush=True)
    m = json.loads((out / "metrics.json").read_text())
    return {"dropout": dropout, "teacher": bool(args.teacher), "epochs": m.get("epochs"), "best_epoch": m.get("best_epoch"),
            "valid_NDCG@10": round(m["valid"]["NDCG@10"], 4), "test_NDCG@10": round(m["test"]["NDCG@10"], 4),
            "test_HR@10": round(m["test"]["HR@10"], 4), "exclude_seen": m.get("exclude_seen"),
            "train_seconds": round(m.get("train_seconds", float("nan")), 1)}


def add_paired(rows: list[dict], args, extra: list[str]) -> None:
    """Each row's test NDCG@10 minus the ``--against`` run's, paired over the same users."""
    from recnb.checkpoint import load_checkpoint
    from recnb.data import load_scene
    from recnb.evaluation import user_ranks
    from recnb.metrics import paired_difference

    scene = load_scene(extra[extra.index("--dataset") + 1])

    def ranks(run_dir) -> list:
        model = load_checkpoint(Path(run_dir) / "model.pt", scene=scene)[0]
        return [user_ranks(model, scene, "test", exclude_seen="--exclude-seen" in extra, cut_padding=True)]

    mine = {r["dropout"]: ranks(Path(args.out) / f"dropout_{r['dropout']:g}") for r in rows}
    for i, against in enumerate(args.against.split(",")):
        base, tag = ranks(against), f"_{i + 1}" if "," in args.against else ""
        for r in rows:
            d = paired_difference(mine[r["dropout"]], base)
            r.update({f"minus_against{tag}": round(d["difference"], 4), f"se{tag}": round(d["se"], 4),
                      f"z{tag}": round(d["z"], 1)})


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", required=True)
    p.add_argument("--teacher", default=None, help="distil from this checkpoint (default: no teacher)")
    p.add_argument("--dropouts", default="0,0.1,0.2,0.3")
    p.add_argument("--out", required=True)
    p.add_argument("--against", default=None,
                   help="finished run folders (comma-separated): paired test NDCG@10 difference of each row from each")
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    rows = [run(args, extra, float(d)) for d in args.dropouts.split(",")]
    if args.against:
        add_paired(rows, args, extra)
    cols = list(rows[0])
    lines = [f"# python bench/adarec_dropout.py {' '.join(argv)}", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    print("\n".join(lines))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "dropout.json").write_text(json.dumps({"command": lines[0], "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
