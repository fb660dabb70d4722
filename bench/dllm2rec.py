"""DLLM2Rec: a teacher's artifacts, distilled vs plain students, ablation.

    RECNB_DATA_DIR=/path/to/data python bench/dllm2rec.py [--seeds 3] [--budget 60]
    python bench/dllm2rec.py --dataset beauty --exclude-seen --artifacts DIR  # from `recnb teacher-artifacts --teacher CKPT`

Stages (each timed): load the scene, encode titles (cached after the first run), train the
BIGRec-shaped semantic teacher, write its artifacts, then for each student train the
distilled and the plain student under the same budget for every seed, and finally the
ablation (SASRec: full, without each weight, without each channel). Students train on their
best plain recipe for the scene (the settings `recnb train` uses), with and without the
teacher. Full ranking (``--exclude-seen`` masks seen items), leave-one-out; means over seeds. Prints markdown tables and writes
them (and all numbers as JSON) to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from recnb.checkpoint import load_checkpoint
from recnb.data import load_scene
from recnb.dllm2rec.artifacts import load_artifacts
from recnb.dllm2rec.pipeline import DLLM2RecConfig, relative_gain, run_dllm2rec
from recnb.dllm2rec.teachers import build_semantic_teacher, make_artifacts, model_report, scene_text, teacher_recipe
from recnb.runs import mean_over_seeds
from recnb.train import TrainConfig, fit, recipe

ABLATIONS = {
    "full": {},
    "w/o position": {"position": False},
    "w/o confidence": {"confidence": False},
    "w/o consistency": {"consistency": False},
    "w/o embedding distillation": {"embedding": False},
    "w/o ranking distillation": {"ranking": False},
}
COLS = ("NDCG@10", "HR@10", "NDCG@20", "HR@20")


def table(header: list[str], rows: list[list]) -> str:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def finished(path: Path, seeds: tuple, train: TrainConfig) -> dict | None:
    """A student's results from an earlier run of the same seeds and training settings (means
    recomputed from its per-seed runs), else None."""
    if not path.exists():
        return None
    done = json.loads(path.read_text())
    same = {k: v for k, v in dataclasses.asdict(train).items() if k not in ("seed", "progress", "device")}
    kept = {k: v for k, v in done["config"]["train"].items() if k in same}
    if [r["seed"] for r in done["per_seed"]["distilled"]] != list(seeds) or kept != same:
        return None
    for part in ("distilled", "baseline"):
        done[part] = mean_over_seeds(done["per_seed"][part]) if done["per_seed"].get(part) else None
    return done


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=2020, help="seeds are first-seed, first-seed + 1, ...")
    p.add_argument("--ablation-seeds", type=int, default=1, help="0 skips the ablation")
    p.add_argument("--students", default="sasrec,gru4rec")
    p.add_argument("--epochs", type=int, default=200, help="max epochs per student run (early stopping on valid)")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--budget", type=float, default=0.0,
                   help="seconds of training per student run (same for all; 0 = none: train to early stopping)")
    p.add_argument("--lr", type=float, default=None, help="student lr (default: recnb's recipe for each student)")
    p.add_argument("--loss", default=None,
                   help="students' own loss: ce, sampled or bce (the paper's); default: each student's recipe on the scene")
    p.add_argument("--exclude-seen", action="store_true", help="mask each user's earlier items when measuring (Amazon protocol)")
    p.add_argument("--teacher-budget", type=float, default=0.0, help="seconds of teacher training (0 = to early stopping)")
    p.add_argument("--top-n", type=int, default=20)
    p.add_argument("--backbone", default="gru", help="the semantic teacher's sequence model: gru or attention")
    p.add_argument("--ablation-student", default="sasrec", help="the student the ablation trains")
    p.add_argument("--ablations", default=",".join(ABLATIONS), help="which ablation rows to train ('' for none)")
    p.add_argument("--lam-sweep", default="", help="extra ablation rows with another lam, e.g. 0.4,2")
    p.add_argument("--lam", type=float, default=2.0, help="(the reference is 0.8; 2 won on validation)")
    p.add_argument("--ed-weight", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--artifacts", default=None, help="reuse a teacher folder written by an earlier run")
    p.add_argument("--reuse", action="store_true",
                   help="read back a student whose OUT/<student>/metrics.json holds these seeds and training settings")
    p.add_argument("--out", default="runs/bench/dllm2rec")
    p.add_argument("--merge", default="",
                   help="DIR,DIR,...: no training; one table from earlier --out folders (their seeds and ablation rows)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        return merge([Path(d) for d in args.merge.split(",") if d], out, args.ablation_student)
    times, t0 = {}, time.perf_counter()

    def progress(line):
        print(line, flush=True)

    def stage(name, start):
        times[name] = round(time.perf_counter() - start, 1)
        print(f"[{name}: {times[name]}s]", flush=True)

    start = time.perf_counter()
    scene = load_scene(args.dataset)
    stage("load scene", start)
    if args.artifacts:
        start = time.perf_counter()
        art = load_artifacts(args.artifacts, num_items=scene.num_items)
        report = dict(art.info["report"], **{k: art.info[k] for k in ("epochs", "best_epoch", "train_seconds") if k in art.info})
        if "checkpoint" in art.info and report.get("exclude_seen", False) != args.exclude_seen:  # measure it as the students
            teacher, _ = load_checkpoint(art.info["checkpoint"], scene=scene, what="the artifacts' teacher")
            report.update(model_report(teacher, scene, args.exclude_seen))
        stage("reload artifacts", start)
    else:
        start = time.perf_counter()
        text = scene_text(scene, progress=False)
        stage("encode titles (cached after the first run)", start)
        start = time.perf_counter()
        teacher = build_semantic_teacher(scene, text=text, backbone=args.backbone)
        tcfg = teacher_recipe(teacher, epochs=200, patience=args.patience, progress=False, device="cpu",
                              time_budget=args.teacher_budget or None, seed=2020)
        tres = fit(teacher, scene, tcfg, exclude_seen=args.exclude_seen)
        stage("train semantic teacher", start)
        start = time.perf_counter()
        report = model_report(teacher, scene, args.exclude_seen)
        report.update(epochs=tres.epochs, best_epoch=tres.best_epoch, train_seconds=round(tres.train_seconds, 1))
        make_artifacts(scene, teacher, args.top_n, out / "artifacts", info={"report": report})
        art = load_artifacts(out / "artifacts", num_items=scene.num_items)
        stage("write + reload artifacts", start)
    print(f"teacher: test NDCG@10 {report['test']['NDCG@10']:.4f} HR@10 {report['test']['HR@10']:.4f} "
          f"({report.get('epochs')} epochs)", flush=True)

    def student_train(student: str) -> TrainConfig:
        """The best plain recipe of the student on this scene (what `recnb train` uses), the same
        with and without the teacher: the twin is never trained on weaker settings."""
        model = "sasrec" if student == "dros" else student
        given = {k: v for k, v in (("lr", args.lr), ("loss", args.loss)) if v}
        return recipe(model, scene, **given, epochs=args.epochs, patience=args.patience,
                      progress=False, device="cpu", time_budget=args.budget or None)

    base_cfg = DLLM2RecConfig(lam=args.lam, ed_weight=args.ed_weight)
    seeds = tuple(args.first_seed + i for i in range(args.seeds))
    results = {}
    for student in [s for s in args.students.split(",") if s]:  # --students "" runs the ablation alone
        start = time.perf_counter()
        done = finished(out / student / "metrics.json", seeds, student_train(student)) if args.reuse else None
        results[student] = done or run_dllm2rec(scene, art, student, seeds, student_train(student), base_cfg,
                                                out=out / student, exclude_seen=args.exclude_seen, log=progress)
        stage(f"{student}: distilled + plain x {len(seeds)} seeds{' (read back)' if done else ''}", start)

    ab_seeds = seeds[: args.ablation_seeds]
    ablation = {}
    ab_student = args.ablation_student
    if ab_student in results and ab_seeds:  # the full model on the ablation's seeds, from the runs above
        ablation["full"] = {"distilled": mean_over_seeds(results[ab_student]["per_seed"]["distilled"][: len(ab_seeds)])}
    chosen = [a for a in args.ablations.split(",") if a]
    unknown = sorted(set(chosen) - set(ABLATIONS))
    if unknown:
        raise SystemExit(f"--ablations: unknown {unknown}; choose from {list(ABLATIONS)}")
    runs = {name: ABLATIONS[name] for name in chosen}
    runs.update({f"lam {lam}": {"lam": float(lam)} for lam in args.lam_sweep.split(",") if lam})
    for name, change in runs.items() if ab_seeds else ():
        if name == "full" and name in ablation:
            continue
        start = time.perf_counter()
        cfg = dataclasses.replace(base_cfg, **change)
        ablation[name] = run_dllm2rec(scene, art, ab_student, ab_seeds, student_train(ab_student), cfg, baseline=False,
                                      exclude_seen=args.exclude_seen, log=progress)
        stage(f"ablation {name} x {len(ab_seeds)} seed(s)", start)
    times["total"] = round(time.perf_counter() - t0, 1)

    recipes = {st: {k: getattr(student_train(st), k) for k in ("lr", "batch_size", "batch_targets", "context", "loss",
                                                              "ema", "label_smoothing")} for st in results}
    header = (f"dataset {scene.name}, full ranking, exclude_seen={args.exclude_seen}, leave-one-out; seeds {list(seeds)} "
              f"(ablation {list(ab_seeds)}); per-run budget {args.budget or 'none'}s / max {args.epochs} epochs, patience "
              f"{args.patience}, student settings {recipes}; teacher budget {args.teacher_budget}s; threads {args.threads}; "
              f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    write_report(out, header, report, results, ablation, ab_student, times, vars(args), args.backbone)
    return 0


def merge(dirs: list[Path], out: Path, ab_student: str) -> int:
    """One report from several runs of this script on the same teacher and settings (e.g. one
    seed per core): each student's seeds and each ablation row's seeds are pooled, means and
    gains recomputed, and a seed given twice, another teacher or other settings refused."""
    parts = {d: json.loads((d / "results.json").read_text()) for d in dirs}
    report = parts[dirs[0]]["teacher"]
    pooled, ablation, times = {}, {}, {}
    for d, part in parts.items():
        if part["teacher"]["test"] != report["test"]:
            raise SystemExit(f"--merge: {d} was run with another teacher")
        for name, r in [*part["students"].items(), *(("ablation " + n, a) for n, a in part["ablation"].items())]:
            if "per_seed" not in r:  # an ablation's "full" row read from its run's students
                continue
            into = pooled.setdefault(name, {"config": r["config"], "distilled": [], "baseline": []})
            if r["config"] != into["config"]:
                raise SystemExit(f"--merge: {d}: {name} was trained with other settings")
            for kind in ("distilled", "baseline"):
                into[kind] += r["per_seed"].get(kind) or []
        times.update({f"{d.name}: {k}": v for k, v in part["times"].items()})
    results = {}
    for name, r in pooled.items():
        seeds = [m["seed"] for m in r["distilled"]]
        if len(set(seeds)) < len(seeds):
            raise SystemExit(f"--merge: {name} has seed {max(seeds, key=seeds.count)} twice")
        per_seed = {k: sorted(r[k], key=lambda m: m["seed"]) for k in ("distilled", "baseline")}
        row = {"config": r["config"], "per_seed": per_seed, "distilled": mean_over_seeds(per_seed["distilled"]),
               "baseline": mean_over_seeds(per_seed["baseline"]) if per_seed["baseline"] else None}
        if row["baseline"]:
            row["gain"] = {c: relative_gain(row["distilled"]["test"][c], row["baseline"]["test"][c]) for c in COLS}
        (ablation if name.startswith("ablation ") else results)[name.removeprefix("ablation ")] = row
    if ablation and ab_student in results:  # the full model and the plain student on the ablation's seeds
        seeds = set(next(iter(ablation.values()))["distilled"]["seeds"])
        rows = {label: [m for m in results[ab_student]["per_seed"][kind] if m["seed"] in seeds]
                for label, kind in (("full", "distilled"), ("plain (no teacher)", "baseline"))}
        rows = {label: {"distilled": mean_over_seeds(runs)} for label, runs in rows.items() if runs}
        ablation = {**{k: v for k, v in rows.items() if k == "full"}, **ablation, **{k: v for k, v in rows.items() if k != "full"}}
    header = (f"merged from {', '.join(str(d) for d in dirs)}; {parts[dirs[0]]['args']['dataset']}, full ranking, "
              f"exclude_seen={parts[dirs[0]]['args']['exclude_seen']}, leave-one-out; each part's settings in its "
              f"results.md; {platform.processor() or platform.machine()}, torch {torch.__version__}")
    write_report(out, header, report, results, ablation, ab_student, times, {"merge": [str(d) for d in dirs]},
                 parts[dirs[0]]["args"].get("backbone", "gru"))
    return 0


def write_report(out: Path, header: str, report: dict, results: dict, ablation: dict, ab_student: str, times: dict,
                 args: dict, backbone: str) -> None:
    """Print the tables (teacher and students, gains, ablation, stage times) and write them to
    ``out/results.md``, every number to ``out/results.json``."""
    teacher_name = (f"semantic, BIGRec-shaped, {report.get('backbone', backbone)}"
                    if report.get("model", "semantic_teacher") == "semantic_teacher" else f"{report['model']} checkpoint")
    rows = [[f"teacher ({teacher_name})", *[report["test"][c] for c in COLS], report["params"],
             report["latency_cpu_b256_ms"]]]
    for student, r in results.items():
        for kind in ("baseline", "distilled"):
            m = r[kind]
            label = f"{student} {'plain' if kind == 'baseline' else '+ DLLM2Rec'}"
            rows.append([label, *[m["test"][c] for c in COLS], m["params"], round(m["latency_cpu_b256_ms"], 2)])
    main_table = table(["model", *[f"test {c}" for c in COLS], "params", "CPU ms / 256 users"], rows)
    per_seed = lambda r, kind: " / ".join(f"{x['test']['NDCG@10']:.4f}" for x in r["per_seed"][kind])
    gain_rows = [[s, r["baseline"]["test"]["NDCG@10"], r["distilled"]["test"]["NDCG@10"],
                  f"{100 * r['gain']['NDCG@10']:+.1f}%", r["baseline"]["test"]["HR@10"],
                  r["distilled"]["test"]["HR@10"], f"{100 * r['gain']['HR@10']:+.1f}%",
                  f"{r['distilled']['test']['NDCG@10_std']:.4f} / {r['baseline']['test']['NDCG@10_std']:.4f}",
                  per_seed(r, "distilled"), per_seed(r, "baseline")]
                 for s, r in results.items()]
    gain_table = table(["student", "plain NDCG@10", "DLLM2Rec NDCG@10", "gain", "plain HR@10", "DLLM2Rec HR@10",
                        "gain", "std NDCG@10 (distilled / plain)", "per seed distilled", "per seed plain"], gain_rows)
    ab_rows = [[name, *[r["distilled"]["test"][c] for c in COLS], r["distilled"]["valid"]["NDCG@10"],
                len(r["distilled"]["seeds"])] for name, r in ablation.items()]
    ab_table = table([f"{ab_student} variant", *[f"test {c}" for c in COLS], "valid NDCG@10", "seeds"], ab_rows)
    time_table = table(["stage", "seconds"], [[k, v] for k, v in times.items()])
    text_out = f"{header}\n\nTeacher and students (test, mean over seeds)\n\n{main_table}\n\nGain of DLLM2Rec over the same student without it\n\n{gain_table}\n\nAblation\n\n{ab_table}\n\nStage times\n\n{time_table}"
    print("\n" + text_out)
    (out / "results.md").write_text(text_out + "\n")
    (out / "results.json").write_text(json.dumps(
        {"teacher": report, "students": results, "ablation": ablation, "times": times, "args": args},
        indent=1, default=str) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
