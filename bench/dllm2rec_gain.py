"""Gain table from per-seed runs spread over several `bench/dllm2rec.py` result files.

    python bench/dllm2rec_gain.py --student gru4rec --variant "lam 2" \
        bench/results/dllm2rec_ml-100k_gru-teacher_gru4rec.json bench/results/dllm2rec_ml-100k_gru-teacher_gru4rec-2023.json \
        bench/results/dllm2rec_ml-100k_gru-teacher_gru4rec-lam-sweep-seeds2020-2021.json \
        bench/results/dllm2rec_ml-100k_gru-teacher_gru4rec-lam2-seeds2022-2024.json

Why: a lam sweep trains only distilled students (the plain ones do not depend on lam), so
the distilled runs of one setting and the plain runs of the same seeds live in different
files. Plain runs come from the files' main student results; distilled runs from the
ablation rows named ``--variant`` (or, with ``--variant main``, the main results). Seeds
are matched, every metric is the mean over the seeds both sides have.
"""

from __future__ import annotations

import argparse
import json
import statistics

COLS = ("NDCG@10", "HR@10", "NDCG@20", "HR@20")


def collect(paths: list[str], student: str, variant: str) -> tuple[dict, dict]:
    """``{seed: run}`` for the plain and the distilled student."""
    plain, distilled = {}, {}
    for path in paths:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"{path}: cannot read a bench/dllm2rec.py results file ({exc})") from None
        main = data.get("students", {}).get(student)
        if main:
            plain.update({r["seed"]: r for r in main["per_seed"]["baseline"]})
            if variant == "main":
                distilled.update({r["seed"]: r for r in main["per_seed"]["distilled"]})
        row = data.get("ablation", {}).get(variant)
        if row and row.get("student") == student:
            distilled.update({r["seed"]: r for r in row["per_seed"]["distilled"]})
    return plain, distilled


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+")
    p.add_argument("--student", required=True)
    p.add_argument("--variant", default="main", help="an ablation row name (e.g. 'lam 2') or 'main'")
    p.add_argument("--seeds", default=None, help="comma-separated subset, e.g. 2020,2021,2022")
    args = p.parse_args()
    plain, distilled = collect(args.files, args.student, args.variant)
    seeds = sorted(set(plain) & set(distilled))
    if args.seeds:
        seeds = [s for s in seeds if str(s) in args.seeds.split(",")]
    if not seeds:
        raise SystemExit(f"no seed has both a plain and a distilled {args.student} ({args.variant}) run in these files")
    print(f"{args.student}, distilled = {args.variant!r}, seeds {seeds}")
    print("| metric | plain | DLLM2Rec | gain | plain per seed | DLLM2Rec per seed |")
    print("|---|---|---|---|---|---|")
    for split, cols in (("test", COLS), ("valid", ("NDCG@10",))):
        for c in cols:
            a = [plain[s][split][c] for s in seeds]
            b = [distilled[s][split][c] for s in seeds]
            ma, mb = statistics.mean(a), statistics.mean(b)
            print(f"| {split} {c} | {ma:.4f} ± {statistics.pstdev(a):.4f} | {mb:.4f} ± {statistics.pstdev(b):.4f} | "
                  f"{100 * (mb / ma - 1):+.1f}% | {' / '.join(f'{x:.4f}' for x in a)} | {' / '.join(f'{x:.4f}' for x in b)} |")


if __name__ == "__main__":
    main()
