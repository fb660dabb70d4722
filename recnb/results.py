"""The full-scale results kept with recnb's source (``bench/results``), read for the notebooks.

The notebooks open on these: Amazon Beauty and Sports and ml-100k, trained to early stopping
by the commands written beside each result in ``docs/`` (the ``bench/`` scripts and ``recnb``
commands). Every function here reads files and returns data (rows, DataFrames) or a sentence
computed from numbers, so a notebook's words about a run stay true whatever that run prints.
Nothing here trains. An installed package without ``bench/results`` raises a one-line
:class:`~recnb.errors.ConfigError` naming the missing file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from recnb.errors import ConfigError

KEPT = Path(__file__).resolve().parents[1] / "bench" / "results"
SCENES = {"beauty": "Amazon Beauty", "sports": "Amazon Sports", "ml-100k": "MovieLens 100k"}
METRIC = "NDCG@10"
# the kept runs of SASRec's large-sparse recipe as `recnb train` ships it (3 seeds each)
PLAIN_SASREC = {"beauty": "train_cli_beauty_sasrec_negatives_warmup", "sports": "train_cli_sports_sasrec_negatives_warmup"}


def kept_file(*parts: str) -> Path:
    """A file under ``bench/results`` (ConfigError naming it when absent)."""
    path = KEPT.joinpath(*parts)
    if not path.exists():
        raise ConfigError(f"bench/results/{'/'.join(parts)} not found: the kept results ship with recnb's source")
    return path


def _json(*parts: str) -> dict:
    return json.loads(kept_file(*parts).read_text())


def pct(x: float) -> str:
    """A relative change as a signed percentage (``-0.167`` -> ``-16.7%``)."""
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:+.1f}%"


# ----------------------------------------------------------------------------- scenes
STAT_NAMES = {
    "users": "users", "items": "items", "interactions": "interactions",
    "seq_len_mean": "mean history (items)", "seq_len_median": "median history (items)",
    "seq_len_p90": "90th percentile history (items)", "density": "density",
    "repeat_ratio": "repeat ratio", "popularity_gini": "popularity Gini", "users_dropped": "users dropped",
}
COUNTS = ("users", "items", "interactions", "users_dropped")


def scene_summary(stats: dict) -> pd.DataFrame:
    """Scene statistics as a narrow table: one row per statistic (readable names), one column
    per scene (``{"Beauty": scene.describe(), ...}``); counts printed as integers."""

    def fmt(key, v):
        return f"{round(float(v)):,}" if key in COUNTS else f"{float(v):g}"

    keys = [k for k in STAT_NAMES if any(k in s for s in stats.values())]
    df = pd.DataFrame({name: [fmt(k, s[k]) if k in s else "" for k in keys] for name, s in stats.items()},
                      index=[STAT_NAMES[k] for k in keys])
    df.index.name = "statistic"
    return df


def scene_stats() -> pd.DataFrame:
    """The statistics of the kept scenes (Beauty, Sports, ml-100k) side by side."""
    return scene_summary({title: _json("adarec", key, "scene.json") for key, title in SCENES.items()})


# ----------------------------------------------------------------------------- Beauty models
def _row(name, role, kind, params_ne, valid, test, std, seeds, source, **extra) -> dict:
    """One model in the shape of a summary row (what the budget explorer and the tables read)."""
    return {"name": name, "role": role, "kind": kind, "params_no_embedding": params_ne,
            "valid": {METRIC: valid} if valid is not None else {},
            "test": {METRIC: test, f"{METRIC}_std": std}, "seeds": seeds, "source": source, **extra}


def _mean(values) -> tuple[float, float]:
    a = np.asarray(list(values), dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _sasrec_params(config: dict) -> int:
    from recnb.models import build_model

    return build_model("sasrec", **config).num_params(embeddings=False)


def beauty_models() -> list[dict]:
    """Every kept full-scale model on Amazon Beauty (test NDCG@10 with seen items masked,
    leave-one-out, full ranking), as summary-shaped rows: ``name, role`` (teacher, plain,
    distilled, ensemble), ``kind``, non-embedding parameters, validation and test NDCG@10
    (mean over seeds, with ``_std``), seeds and the file it comes from."""
    rows = []
    t = _json("amazon_beauty_sasrec_4x128_lr1e-3_s2020.json")
    rows.append(_row("SASRec 4 x 128 (teacher)", "teacher", "teacher", t["params_no_embedding"],
                     t["valid"][METRIC], t["test"][METRIC], float("nan"), 1,
                     "bench/results/amazon_beauty_sasrec_4x128_lr1e-3_s2020.json"))
    cli = _json(PLAIN_SASREC["beauty"], "results.json")["rows"]
    v, _ = _mean(r["valid_ndcg10"] for r in cli)
    m, s = _mean(r["test_ndcg10"] for r in cli)
    rows.append(_row("SASRec 2 x 64, large-sparse recipe", "plain", "plain (recnb train)",
                     _sasrec_params(cli[0]["config"]), v, m, s, len(cli), f"bench/results/{PLAIN_SASREC['beauty']}"))
    dl = _json("dllm2rec_beauty_3seeds", "results.json")
    for student, label in (("sasrec", "SASRec 2 x 64"), ("gru4rec", "GRU4Rec 64")):
        for part, role, kind, name in (("baseline", "plain", "plain (earlier recipe)", f"{label}, earlier recipe"),
                                       ("distilled", "distilled", "DLLM2Rec", f"{label} + DLLM2Rec")):
            r = dl["students"][student][part]
            rows.append(_row(name, role, kind, r["params_no_embedding"], r["valid"][METRIC], r["test"][METRIC],
                             r["test"].get(f"{METRIC}_std", float("nan")), len(r["seeds"]),
                             "bench/results/dllm2rec_beauty_3seeds"))
    arch = json.loads(kept_file("adarec", "beauty", "search", "beta_1", "architecture.json").read_text())
    names = {"student": ("AdaRec searched student + KD", "distilled", "searched + KD"),
             "student_no_kd": ("searched student, no teacher (twin)", "plain", "plain (pipeline settings)"),
             "baseline_sasrec": ("hand-made SASRec 3 x 64 + KD", "distilled", "hand-made + KD"),
             "baseline": ("hand-made NextItNet + KD", "distilled", "hand-made + KD")}
    for r in _json("adarec_beauty_3seeds", "summary.json")["rows"]:
        if r["role"] not in names:
            continue
        name, role, kind = names[r["role"]]
        rows.append(_row(name, role, kind, r["params_no_embedding"], (r.get("valid") or {}).get(METRIC),
                         r["test"][METRIC], r["test"].get(f"{METRIC}_std"), len(r["seeds"]),
                         "bench/results/adarec_beauty_3seeds",
                         architecture=arch if r["role"].startswith("student") else None))
    e = _json("beauty_teacher_ensemble", "metrics.json")
    rows.append(_row("ensemble of the 3 plain SASRec seeds", "ensemble", "ensemble (recnb ensemble)",
                     e["params_no_embedding"], e["valid"][METRIC], e["test"][METRIC], float("nan"), 1,
                     "bench/results/beauty_teacher_ensemble"))
    return rows


# ----------------------------------------------------------------------------- the frontier
def frontier_frame(scene: str = "beauty") -> pd.DataFrame:
    """The kept ``recnb frontier`` of ``scene`` (``bench/results/frontier/<scene>/frontier.csv``):
    one row per model and seed, with its latency and test NDCG@10."""
    frame = pd.read_csv(kept_file("frontier", scene, "frontier.csv"))
    frame["pareto"] = frame["pareto"].astype(bool)
    return frame


def frontier_budgets(scene: str = "beauty") -> pd.DataFrame:
    """Per latency budget of the kept frontier: the best plain model and the best student no
    slower, their test NDCG@10 and the paired difference over test users (``budgets.csv``)."""
    b = pd.read_csv(kept_file("frontier", scene, "budgets.csv"))
    out = pd.DataFrame({"budget (ms)": b["budget_ms"].round(2), "best plain model": b["plain"],
                        "its NDCG@10": b["plain_ndcg"].round(4), "best student": b["student"].fillna("none this fast"),
                        "its NDCG@10 ": b["student_ndcg"].round(4), "gain": [pct(g) for g in b["gain"]]})
    if "paired_diff" in b:
        out["paired difference ± SE"] = [f"{d:+.4f} ± {se:.4f}" if not math.isnan(d) else "-"
                                         for d, se in zip(b["paired_diff"], b["paired_se"])]
    return out


def frontier_rows(scene: str = "beauty") -> list[dict]:
    """The kept frontier as summary-shaped rows (mean over seeds; cost ``latency_cpu_b1_ms``)
    for the budget explorer: plain models, distilled students and the teacher."""
    frame = frontier_frame(scene)
    rows = []
    for (role, name), part in frame.groupby(["role", "name"], sort=False):
        valid, _ = _mean(part["valid_NDCG@10"])
        test, std = _mean(part["test_NDCG@10"])
        rows.append(_row(name, {"student": "distilled", "adarec": "distilled"}.get(role, role), role,
                         int(part["params_no_embedding"].iloc[0]), valid, test, std, len(part),
                         f"bench/results/frontier/{scene}/frontier.csv",
                         latency_cpu_b1_ms=float(part["latency_cpu_b1_ms"].iloc[0])))
    return rows


def frontier_sentence(scene: str = "beauty") -> str:
    """What the kept frontier says: at the fastest budget with a student, and over all budgets,
    does the best student beat the best plain model no slower than it?"""
    b = pd.read_csv(kept_file("frontier", scene, "budgets.csv")).dropna(subset=["student"])
    if b.empty:
        return "No distilled student is as fast as a plain model of this frontier."
    wins = b[b["gain"] > 0]
    best = b.loc[b["gain"].idxmax()]
    sure = int(b["significant"].astype(str).eq("True").sum()) if "significant" in b else 0
    lead = (f"At {len(wins)} of {len(b)} latency budgets the best student is ahead of the best plain model no slower "
            f"than it, at {sure} by more than two standard errors of the paired difference; its largest gain is "
            f"{pct(best['gain'])} ({best['student']} against {best['plain']} within {best['budget_ms']:.2f} ms)."
            if len(wins) else
            f"At none of the {len(b)} latency budgets does a distilled student beat the best plain model no slower "
            f"than it: the closest is {best['student']} at {pct(best['gain'])} against {best['plain']}.")
    return lead


def teacher_of(rows: list) -> dict:
    return next(r for r in rows if r["role"] == "teacher")


def models_table(rows: list, metric: str = METRIC) -> pd.DataFrame:
    """A narrow table of summary-shaped rows: kind, seeds, non-embedding parameters,
    validation and test metric (mean ± std) and the test metric as a % of the teacher's."""
    teacher = teacher_of(rows)["test"][metric]
    out = []
    for r in rows:
        test, std = r["test"][metric], r["test"].get(f"{metric}_std", float("nan"))
        out.append({
            "model": r["name"], "kind": r.get("kind", r["role"]), "seeds": int(r.get("seeds") or 1),
            "params (no emb.)": f"{int(r['params_no_embedding']):,}",
            f"valid {metric}": f"{r['valid'][metric]:.4f}" if r.get("valid", {}).get(metric) is not None else "",
            f"test {metric}": f"{test:.4f}" + (f" ± {std:.4f}" if std is not None and not math.isnan(std) and std > 0 else ""),
            "% of teacher": f"{100 * test / teacher:.0f}%",
        })
    return pd.DataFrame(out).set_index("model")


def metric_of(row: dict, metric: str = METRIC, split: str = "test") -> float:
    value = (row.get(split) or {}).get(metric)
    return float(value) if value is not None else float("nan")


def within(rows: list, budget: float, cost: str = "params_no_embedding", metric: str = METRIC,
           roles=("distilled",), split: str = "valid") -> dict | None:
    """The row of one of ``roles`` with the highest ``split`` metric whose ``cost`` is at most
    ``budget`` (ties: the cheaper); None when none fits. Chosen on validation by default, so
    the test set stays a measurement, not a choice."""
    fits = [r for r in rows if r.get("role") in roles and r.get(cost) is not None and float(r[cost]) <= budget
            and not math.isnan(metric_of(r, metric, split))]
    return max(fits, key=lambda r: (metric_of(r, metric, split), -float(r[cost]))) if fits else None


def best_of(rows: list, role: str, metric: str = METRIC, split: str = "test") -> dict:
    """The row of ``role`` with the highest ``split`` metric."""
    return max((r for r in rows if r["role"] == role and r.get(split, {}).get(metric) is not None),
               key=lambda r: r[split][metric])


_NAMES = {"gru4rec": "GRU4Rec", "sasrec": "SASRec", "nextitnet": "NextItNet"}


# ----------------------------------------------------------------------------- Beauty by scene
def teachers_and_plain() -> pd.DataFrame:
    """The teacher and the best plain model of each kept scene (test NDCG@10, mean over seeds):
    what a student has to reach, and what a user gets with no teacher at all."""
    rows = []
    t = _json("amazon_beauty_sasrec_4x128_lr1e-3_s2020.json")
    cli = _json(PLAIN_SASREC["beauty"], "results.json")["rows"]
    rows.append({"scene": SCENES["beauty"], "model": "teacher: SASRec 4 x 128", "seeds": 1, METRIC: t["test"][METRIC]})
    rows.append({"scene": SCENES["beauty"], "model": "plain SASRec 2 x 64 (recnb train)", "seeds": len(cli),
                 METRIC: _mean(r["test_ndcg10"] for r in cli)[0]})
    e = _json("beauty_teacher_ensemble", "metrics.json")
    rows.append({"scene": SCENES["beauty"], "model": "ensemble of the 3 plain seeds", "seeds": 1, METRIC: e["test"][METRIC]})
    sp = _json(PLAIN_SASREC["sports"], "results.json")["rows"]
    st = _json("adarec", "sports", "teacher_metrics.json")
    rows.append({"scene": SCENES["sports"], "model": f"teacher: {_describe(st)}", "seeds": 1, METRIC: st["test"][METRIC]})
    rows.append({"scene": SCENES["sports"], "model": "plain SASRec 2 x 64 (recnb train)", "seeds": len(sp),
                 METRIC: _mean(r["test_ndcg10"] for r in sp)[0]})
    ml = _json("adarec", "ml-100k", "teacher_metrics.json")
    rows.append({"scene": SCENES["ml-100k"], "model": f"teacher: {_describe(ml)}", "seeds": 1, METRIC: ml["test"][METRIC]})
    plain = max((_json(f"train_eval_cpu_ml-100k_{m}.json")["rows"][0] for m in ("gru4rec", "sasrec")),
                key=lambda r: r["NDCG@10"])  # the best plain model of bench/train_eval.py (3 seeds each)
    rows.append({"scene": SCENES["ml-100k"], "model": f"plain {_NAMES[plain['model']]} (recnb train recipe)",
                 "seeds": plain["seeds"], METRIC: plain["NDCG@10"]})
    df = pd.DataFrame(rows)
    df.insert(1, "role", ["ensemble" if m.startswith("ensemble") else m.split(":")[0].split(" ")[0] for m in df["model"]])
    return df


def _describe(m: dict) -> str:
    c = m.get("config", {})
    if m.get("model") == "nextitnet":
        return f"NextItNet {c.get('num_blocks', '?')} x [1, 4] x {c.get('embedding_size', '?')}"
    if m.get("model") == "sasrec":
        return f"SASRec {c.get('num_layers', '?')} x {c.get('hidden_size', '?')}"
    return str(m.get("model", "?"))


def teacher_history() -> pd.DataFrame:
    """Epoch by epoch training of the kept 4 x 128 SASRec on Beauty (lr 3e-3 probe, seed 2020):
    loss and validation metrics."""
    return pd.read_csv(kept_file("amazon_beauty_sasrec_4x128_lr3e-3_s2020_history.csv"))


# ----------------------------------------------------------------------------- searches
def search_epochs() -> pd.DataFrame:
    """The kept searches (``bench/results/adarec/SCENE/search/beta_B/epochs.csv``), one row per
    scene, beta and epoch: validation NDCG@10 of the supernet, the expected cost per edge (the
    ``L_E`` that beta multiplies, 0-1) and the learnable parameters of the architecture derived
    at that epoch (width of the search)."""
    frames = []
    for key, title in SCENES.items():
        for path in sorted(kept_file("adarec", key, "search").glob("beta_*/epochs.csv")):
            df = pd.read_csv(path)
            df.insert(0, "beta", float(path.parent.name[5:]))
            df.insert(0, "scene", title)
            frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    keep = ["scene", "beta", "epoch", "warmup", "valid_NDCG@10", "expected_cost", "architecture_params"]
    return df[[c for c in keep if c in df]]


def search_architectures(beta: float | None = None) -> dict:
    """``{scene title: architecture JSON}`` of the kept searches at ``beta`` (all betas:
    ``{(scene, beta): ...}`` when None)."""
    out = {}
    for key, title in SCENES.items():
        for path in sorted(kept_file("adarec", key, "search").glob("beta_*/architecture.json")):
            b = float(path.parent.name[5:])
            if beta is None:
                out[(title, b)] = json.loads(path.read_text())
            elif b == beta:
                out[title] = json.loads(path.read_text())
    return out


# ----------------------------------------------------------------------------- DLLM2Rec on Beauty
def dllm2rec_beauty() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The kept DLLM2Rec run on Beauty: (students with and without it, mean over 3 seeds, with the
    gain as a percentage; the ablation of GRU4Rec's parts, one seed)."""
    d = _json("dllm2rec_beauty_3seeds", "results.json")
    rows = [{"student": "teacher (SASRec 4 x 128)", "distillation": "-", METRIC: d["teacher"]["test"][METRIC],
             "HR@10": d["teacher"]["test"]["HR@10"], "gain": ""}]
    for student, label in (("sasrec", "SASRec 2 x 64"), ("gru4rec", "GRU4Rec 64")):
        s = d["students"][student]
        base = s["baseline"]["test"][METRIC]
        for part, how in (("baseline", "none"), ("distilled", "DLLM2Rec")):
            t = s[part]["test"]
            rows.append({"student": label, "distillation": how, METRIC: t[METRIC], "HR@10": t["HR@10"],
                         "gain": "" if part == "baseline" else pct((t[METRIC] - base) / base)})
    students = pd.DataFrame(rows).round({METRIC: 4, "HR@10": 4})
    plain = d["ablation"]["plain (no teacher)"]["distilled"]["test"][METRIC]
    ab = [{"variant": k, METRIC: v["distilled"]["test"][METRIC],
           "gain over plain": pct((v["distilled"]["test"][METRIC] - plain) / plain) if k != "plain (no teacher)" else ""}
          for k, v in d["ablation"].items()]
    return students, pd.DataFrame(ab)


def search_summary(width: int = 64) -> pd.DataFrame:
    """One row per kept search (scene, beta): epochs run, the supernet's best validation
    NDCG@10, the expected cost per edge at the end, and the derived architecture's learnable
    cell parameters at ``width`` with its most frequent ops."""
    from recnb.adarec.architecture import Architecture

    ep = search_epochs()
    rows = []
    for key, title in SCENES.items():
        for path in sorted(kept_file("adarec", key, "search").glob("beta_*/architecture.json"),
                           key=lambda p: float(p.parent.name[5:])):
            beta = float(path.parent.name[5:])
            arch = Architecture.load(path)
            g = ep[(ep["scene"] == title) & (ep["beta"] == beta)]
            ops = pd.Series(arch.op_counts()).sort_values(ascending=False)
            rows.append({"scene": title, "beta": f"{beta:g}", "epochs": len(g),
                         "best valid NDCG@10": f"{g['valid_NDCG@10'].max():.4f}",
                         "final expected cost": f"{g['expected_cost'].iloc[-1]:.3f}",
                         f"cell params (width {width})": f"{arch.params(width):,}",
                         "most frequent ops": ", ".join(f"{op} {n}" for op, n in ops.head(3).items())})
    return pd.DataFrame(rows).set_index(["scene", "beta"])


# ----------------------------------------------------------------------------- a run of the user's
def say(text: str):
    """A computed sentence shown as Markdown under the output it describes."""
    from IPython.display import Markdown

    return Markdown(text)


def teacher_metrics(model, scene, split: str = "test") -> tuple[pd.DataFrame, object]:
    """Full-ranking metrics of ``model`` and of popularity on ``split`` (rows ``teacher``,
    ``popularity``; NDCG/HR/MRR at 10 and 20), and the model's per-user ranks."""
    try:
        from recnb.evaluation import popularity_ranks, user_ranks
    except ImportError:  # pragma: no cover - scoring lived in recnb.train before
        from recnb.train import popularity_ranks, user_ranks
    from recnb.metrics import flatten, metrics_from_ranks

    ranks = user_ranks(model, scene, split)
    table = pd.DataFrame({"teacher": flatten(metrics_from_ranks(ranks)),
                          "popularity": flatten(metrics_from_ranks(popularity_ranks(scene, split)))}).T
    keep = [c for c in table if c.split("@")[-1] in ("10", "20") and not c.startswith("MRR@20")]
    return table[keep].round(4), ranks


def recommendation_sentence(df: pd.DataFrame) -> str:
    """How many of the shown users got their held-out item, and how alike their lists are."""
    col = next(c for c in df if c.startswith("top-"))
    lists = [[t.removeprefix("✔ ") for t in s.split(" | ")] for s in df[col]]
    distinct = len({t for items in lists for t in items})
    total = sum(len(items) for items in lists)
    hits = int(df["hit rank"].notna().sum())
    s = f"{hits} of {len(df)} users find their held-out item in the list; the {len(df)} lists hold {distinct} distinct items out of {total}"
    return s + (" (nearly the same list for everyone: the model ranks by popularity)." if distinct <= total / 2 else ".")


# ----------------------------------------------------------------------------- sentences about a run
def _fmt(x: float) -> str:
    return f"{x:.4f}"


def versus_popularity(metrics: pd.DataFrame, metric: str = METRIC) -> str:
    """One sentence on a teacher's metric against popularity's (rows ``teacher`` and
    ``popularity`` of a metrics table)."""
    t, p = float(metrics.loc["teacher", metric]), float(metrics.loc["popularity", metric])
    if t > p:
        return (f"In this run the teacher is above popularity on {metric} ({_fmt(t)} against {_fmt(p)}, "
                f"{pct((t - p) / p) if p else 'n/a'}).")
    return (f"In this run popularity matches or beats the teacher on {metric} ({_fmt(p)} against {_fmt(t)}): "
            "the teacher has not learned more than the most popular items yet; train longer before trusting it.")


def bucket_sentence(table: pd.DataFrame, metric: str = METRIC) -> str:
    """Which buckets the model serves best and worst, and how many score zero."""
    best, worst = table.loc[table[metric].idxmax()], table.loc[table[metric].idxmin()]
    zeros = int((table[metric] == 0).sum())
    s = (f"Best bucket: {best['bucket']} ({_fmt(best[metric])}, {int(best['users'])} users); "
         f"worst: {worst['bucket']} ({_fmt(worst[metric])}, {int(worst['users'])} users).")
    if zeros:
        s += f" {zeros} of {len(table)} buckets score exactly 0: too few hits to read a difference."
    return s


def cka_sentence(similarity: pd.DataFrame) -> str:
    """How alike the layers are (linear CKA off the diagonal)."""
    a = similarity.to_numpy()
    off = a[~np.eye(len(a), dtype=bool)]
    if len(off) == 0:
        return "One layer only: nothing to compare."
    s = f"Linear CKA between different layers ranges {off.min():.2f}-{off.max():.2f}."
    if off.min() > 0.95:
        s += " Every layer carries nearly the same information: this model has not used its depth."
    return s


def alpha_sentence(alphas: pd.DataFrame) -> str:
    """How far the op weights moved from uniform by the last recorded step."""
    last = alphas[alphas["step"] == alphas["step"].max()]
    n_ops = last["op"].nunique()
    lo, hi = last["weight"].min(), last["weight"].max()
    strongest = last.loc[last.groupby(["cell", "edge"])["weight"].idxmax(), "op"].value_counts()
    return (f"At the last step the weights span {lo:.3f}-{hi:.3f} (uniform: {1 / n_ops:.3f}); "
            f"the strongest op is {strongest.index[0]} on {int(strongest.iloc[0])} of {int(strongest.sum())} edges.")


def pipeline_sentence(rows: list, metric: str = METRIC) -> str:
    """Which model of a pipeline run scores highest, against the teacher and the searched
    students, and whether distillation beat the no-teacher twin."""
    scored = [r for r in rows if (r.get("test") or {}).get(metric) is not None]
    top = max(scored, key=lambda r: r["test"][metric])
    teacher = next((r for r in scored if r["role"] == "teacher"), None)
    students = [r for r in scored if r["role"] == "student"]
    first = (f"Highest test {metric} in this run: {top['name']} ({top['role']}, {int(top['params']):,} parameters, "
             f"{_fmt(top['test'][metric])})")
    parts = [first]
    if teacher is not None and top is not teacher:
        parts.append(f"above the teacher's {_fmt(teacher['test'][metric])}")
    if students and top["role"] != "student":
        best = max(students, key=lambda r: r["test"][metric])
        parts.append(f"and the best searched student's {_fmt(best['test'][metric])}")
    s = ", ".join(parts) + "."
    for twin in (r for r in scored if r["role"] == "student_no_kd"):
        kd = next((r for r in students if r.get("beta") == twin.get("beta")), None)
        if kd is not None:
            verb = "beats" if kd["test"][metric] > twin["test"][metric] else "does not beat"
            s += (f" The distilled {kd['name']} {verb} its no-teacher twin "
                  f"({_fmt(kd['test'][metric])} against {_fmt(twin['test'][metric])}).")
    return s


def with_gain(table: pd.DataFrame, metric: str = METRIC) -> pd.DataFrame:
    """A ``dllm2rec_table`` rounded, its gain over no distillation as a percentage (blank for the
    teacher and the undistilled student)."""
    col = f"gain {metric}"
    out = table.round(4)
    if col in table:
        out[col] = ["" if name in ("teacher", "no distillation") else pct(v) for name, v in table[col].items()]
    return out


def gain_sentence(table: pd.DataFrame, metric: str = METRIC) -> str:
    """DLLM2Rec against no distillation in a ``dllm2rec_table``."""
    base = float(table.loc["no distillation", metric])
    rows = [(name, float(v)) for name, v in table[metric].items() if name not in ("teacher", "no distillation")]
    better = [n for n, v in rows if v > base]
    best = max(rows, key=lambda x: x[1])
    s = f"No distillation scores {_fmt(base)}; "
    s += (f"{len(better)} of {len(rows)} distilled variants beat it" if better else "no distilled variant beats it")
    return s + f" (best: {best[0]}, {_fmt(best[1])}, {pct((best[1] - base) / base) if base else 'n/a'})."
