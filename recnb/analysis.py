"""What the notebooks compute: tables, per-bucket metrics, layer statistics, rankings and
frontiers, each returned as data (a DataFrame, a list of rows, an array) that ``recnb.viz``
draws and ``recnb.widgets`` offers. Nothing here trains, searches or draws, so every
number a figure shows is testable without a renderer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recnb.adarec.architecture import Architecture
from recnb.adarec.summary import read_summary
from recnb.data import Scene, eval_inputs, train_windows
from recnb.dllm2rec.artifacts import scene_rows
from recnb.dllm2rec.pipeline import importance_weights
from recnb.errors import ConfigError
from recnb.evaluation import item_logits, score_users
from recnb.metrics import metrics_from_ranks


# ----------------------------------------------------------------------------- scene
def scene_table(*scenes: Scene) -> pd.DataFrame:
    """Statistics of one or more scenes, one row each (counts as integers)."""
    df = pd.DataFrame([s.describe() for s in scenes])
    return df.astype({c: "int64" for c in ("users", "items", "interactions") if c in df})


def sequence_lengths(scene: Scene) -> np.ndarray:
    return np.array([len(s) for s in scene.sequences])


def item_popularity(scene: Scene) -> np.ndarray:
    """Interactions per item id (index 0, the padding id, is always 0)."""
    return np.bincount(np.concatenate(scene.sequences), minlength=scene.num_items + 1)


# ----------------------------------------------------------------------------- metrics by user bucket
def _bucket_values(scene: Scene, by: str, split: str) -> tuple[np.ndarray, str]:
    """What users are bucketed by, and its unit."""
    if by == "length":
        return sequence_lengths(scene).astype(float), "items"
    if by == "popularity":
        cut = 2 if split == "valid" else 1
        counts = np.bincount(np.concatenate([s[: len(s) - 2] for s in scene.sequences]), minlength=scene.num_items + 1)
        return np.array([counts[s[len(s) - cut]] for s in scene.sequences], dtype=float), "train interactions"
    raise ConfigError(f"bucket by 'length' or 'popularity', got {by!r}")


def user_buckets(scene: Scene, by: str = "length", buckets: int = 4, split: str = "test") -> pd.Series:
    """Each user's bucket label: quantiles of history length, or of the target item's popularity
    in the training part (``by="popularity"``: is the held-out item a head or tail item?)."""
    values, unit = _bucket_values(scene, by, split)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, buckets + 1)))
    if len(edges) < 2:
        edges = np.array([values.min(), values.max() + 1])
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    labels = [f"{edges[i]:.0f}-{edges[i + 1]:.0f} {unit}" for i in range(len(edges) - 1)]
    return pd.Series(pd.Categorical([labels[i] for i in idx], categories=labels, ordered=True), name=by)


def bucket_metrics(
    scene: Scene, ranks, by: str = "length", buckets: int = 4, ks=(10,), split: str = "test"
) -> pd.DataFrame:
    """Metrics per user bucket from per-user 0-based ranks (``recnb.train.user_ranks``)."""
    ranks = torch.as_tensor(ranks)
    labels = user_buckets(scene, by, buckets, split)
    rows = []
    for label in labels.cat.categories:
        mask = torch.as_tensor(np.array(labels == label, dtype=bool))
        if not bool(mask.any()):
            continue
        m = metrics_from_ranks(ranks[mask], ks)
        row = {"bucket": label, "users": int(mask.sum())}
        for k in ks:
            row.update({f"{name}@{k}": float(m.loc[k, name]) for name in m.columns})
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- hidden states
@torch.no_grad()
def hidden_states(model, scene: Scene, users: int = 256, split: str = "test", seed: int = 0):
    """Per-layer hidden states of ``users`` random users' histories at their valid positions:
    a list of ``(positions, d_i)`` tensors, one per layer (embedding first)."""
    hist, _ = eval_inputs(scene, split, model.config.max_len)
    rng = np.random.default_rng(seed)
    hist = hist[torch.as_tensor(rng.choice(len(hist), size=min(users, len(hist)), replace=False))]
    model.eval()
    device = next(model.parameters()).device
    states = model(hist.to(device))
    mask = (hist > 0).to(device)
    return [h[mask].float().cpu() for h in states]


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment of two ``(n, d)`` representations (widths may differ):
    1 when one is a rotation/scaling of the other, near 0 when unrelated."""
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    num = (x.t() @ y).pow(2).sum()
    den = (x.t() @ x).pow(2).sum().sqrt() * (y.t() @ y).pow(2).sum().sqrt()
    return float(num / den) if den > 0 else 0.0


def layer_names(n: int) -> list[str]:
    return ["embedding"] + [f"layer {i}" for i in range(1, n - 1)] + ["output"] if n > 1 else ["output"]


def layer_statistics(states: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-layer norm statistics and the layer-by-layer CKA similarity matrix."""
    names = layer_names(len(states))
    norms = pd.DataFrame(
        [
            {"layer": n, "dim": h.shape[1], "norm_mean": float(norm.mean()), "norm_std": float(norm.std())}
            for n, h in zip(names, states)
            for norm in [h.norm(dim=1)]
        ]
    )
    sim = np.array([[linear_cka(a, b) for b in states] for a in states])
    return norms, pd.DataFrame(sim, index=names, columns=names)


# ----------------------------------------------------------------------------- recommendations
@torch.no_grad()
def recommendations(model, scene: Scene, users, k: int = 10, history: int = 8, split: str = "test") -> pd.DataFrame:
    """For each user: the last ``history`` titles, the held-out item, and the model's top-k
    (with a mark on the held-out one); one row per user."""
    hist, target = eval_inputs(scene, split, model.config.max_len)
    users = list(users)
    top = score_users(model, hist[users]).cpu().topk(k, dim=1).indices.numpy()
    rows = []
    for r, u in enumerate(users):
        seq = [int(i) for i in hist[u] if i > 0][-history:]
        t = int(target[u])
        rows.append(
            {
                "user": scene.user_ids[u],
                "history (oldest first)": " | ".join(scene.title(i) for i in seq),
                "held-out item": scene.title(t),
                f"top-{k}": " | ".join(("✔ " if int(i) == t else "") + scene.title(int(i)) for i in top[r]),
                "hit rank": next((n + 1 for n, i in enumerate(top[r]) if int(i) == t), None),
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- architectures
def architecture_dict(arch) -> dict:
    """An architecture's JSON value from the object, the value itself or a path to its file."""
    if hasattr(arch, "to_dict"):
        return arch.to_dict()
    if isinstance(arch, dict):
        return arch
    if isinstance(arch, (str, Path)):
        return Architecture.load(arch).to_dict()
    raise ConfigError(f"expected an Architecture or its JSON dict, got {type(arch).__name__}")


def architecture_edges(arch) -> pd.DataFrame:
    """One row per kept edge: ``cell, node, input, op`` (inputs 0/1 are the two cells below)."""
    d = architecture_dict(arch)
    rows = [
        {"cell": c, "node": n, "input": e["input"], "op": e["op"]}
        for c, cell in enumerate(d["cells"])
        for n, node in enumerate(cell["nodes"])
        for e in node
    ]
    return pd.DataFrame(rows, columns=["cell", "node", "input", "op"])


def architecture_table(archs: dict) -> pd.DataFrame:
    """Op counts side by side for named architectures (``{"ml-100k": arch, ...}``)."""
    counts = {name: architecture_edges(a)["op"].value_counts() for name, a in archs.items()}
    df = pd.DataFrame(counts).fillna(0).astype(int)
    df.index.name = "op"
    cells = {name: len(architecture_dict(a)["cells"]) for name, a in archs.items()}
    return pd.concat([df.sort_index(), pd.DataFrame([cells], index=["(cells)"])])


def architecture_schema(arch) -> pd.DataFrame:
    """The shape of an architecture's JSON value, not its choices: the fields at each level and
    the counts of cells, nodes and edges (stable across runs of the same search settings)."""
    d = architecture_dict(arch)
    cells = d["cells"]
    edges = [e for cell in cells for node in cell["nodes"] for e in node]
    rows = [
        ("top-level fields", ", ".join(sorted(d))),
        ("format", d.get("format", "")),
        ("cells", len(cells)),
        ("cell fields", ", ".join(sorted({k for c in cells for k in c}))),
        ("nodes per cell", ", ".join(str(len(c["nodes"])) for c in cells)),
        ("edges per node", ", ".join(sorted({str(len(n)) for c in cells for n in c["nodes"]}))),
        ("edge fields", ", ".join(sorted({k for e in edges for k in e}))),
        ("meta fields", ", ".join(sorted(d.get("meta", {})))),
    ]
    return pd.DataFrame(rows, columns=["part", "value"]).set_index("part")


# ----------------------------------------------------------------------------- AdaRec summaries
COSTS = {
    "params": "parameters",
    "params_no_embedding": "parameters without embeddings",
    "flops": "FLOPs per sequence",
    "latency_cpu_b1_ms": "CPU latency, batch 1 (ms)",
    "latency_cpu_b256_ms": "CPU latency, batch 256 (ms)",
}
SUMMARY_COLUMNS = ("name", "role", "beta", *COSTS)  # what comparison_table shows of each row, before its metrics


def load_rows(summary_path) -> list:
    """The rows of an AdaRec ``summary.json`` (a file or its folder) with each row's
    architecture read into its JSON value (``recnb.adarec.summary.read_summary``)."""
    return read_summary(summary_path, inline=True)["rows"]


def metric_of(row: dict, metric: str) -> float:
    """A row's test metric (``row["test"][metric]``), NaN when it has none."""
    value = (row.get("test") or {}).get(metric)
    return float(value) if value is not None else float("nan")


def comparison_table(rows: list, metrics=("NDCG@10", "HR@10", "MRR@10", "NDCG@20", "HR@20")) -> pd.DataFrame:
    """Teacher, students and baselines side by side: size, FLOPs, latency and test metrics,
    plus each one's compression and speed-up against the teacher."""
    recs = [{**{k: r.get(k) for k in SUMMARY_COLUMNS}, **{m: (r.get("test") or {}).get(m) for m in metrics}}
            for r in rows]
    df = pd.DataFrame(recs, columns=list(SUMMARY_COLUMNS) + list(metrics))
    teacher = df[df["role"] == "teacher"]
    if len(teacher):
        t = teacher.iloc[0]
        df["compression"] = t["params"] / df["params"]
        if t.get("latency_cpu_b256_ms"):
            df["speedup_b256"] = t["latency_cpu_b256_ms"] / df["latency_cpu_b256_ms"]
    return df.set_index("name")


def frontier_points(rows: list, cost: str = "params", metric: str = "NDCG@10") -> pd.DataFrame:
    """One point per model for a cost-accuracy frontier: ``name, role, beta``, the cost, the
    test metric and its standard deviation over seeds (``std``)."""
    return pd.DataFrame(
        [
            {
                **{k: r.get(k) for k in ("name", "role", "beta", cost)},
                metric: (r.get("test") or {}).get(metric),
                "std": (r.get("test") or {}).get(f"{metric}_std"),
            }
            for r in rows
        ]
    )


def candidates(rows: list, cost: str = "params", metric: str = "NDCG@10", roles=("student",)) -> list:
    """Rows a budget may pick: those with an architecture, a cost and a metric, and (when
    rows have a ``role``) one of ``roles`` (by default the distilled students; None = any)."""
    if cost not in COSTS:
        raise ConfigError(f"cost must be one of {', '.join(COSTS)}, got {cost!r}")
    out = []
    for r in rows:
        if roles is not None and r.get("role") is not None and r["role"] not in roles:
            continue
        c = r.get(cost)
        priced = c is not None and not math.isnan(float(c))
        if r.get("architecture") and priced and not math.isnan(metric_of(r, metric)):
            out.append(r)
    return sorted(out, key=lambda r: (float(r[cost]), -metric_of(r, metric)))


def best_within(
    rows: list, budget: float, cost: str = "params", metric: str = "NDCG@10", roles=("student",)
) -> dict | None:
    """The most accurate candidate whose ``cost`` is at most ``budget`` (ties: the cheaper);
    None when nothing fits."""
    fits = [r for r in candidates(rows, cost, metric, roles) if float(r[cost]) <= budget]
    if not fits:
        return None
    return max(fits, key=lambda r: (metric_of(r, metric), -float(r[cost])))


def pareto_front(rows: list, cost: str = "params", metric: str = "NDCG@10", roles=("student",)) -> list:
    """Candidates no other candidate beats on both cost and metric, cheapest first: exactly
    the rows :func:`best_within` can return."""
    front, best = [], -math.inf
    for r in candidates(rows, cost, metric, roles):
        m = metric_of(r, metric)
        if m > best:
            front.append(r)
            best = m
    return front


def committed_runs(folder: str | Path | None = None) -> list[Path]:
    """The AdaRec run folders under ``folder``; by default the runs kept with recnb's source
    (``bench/results/adarec`` beside the package: Beauty, Sports, ml-100k), none for an
    installed package that ships without them."""
    root = Path(folder) if folder else Path(__file__).resolve().parents[1] / "bench" / "results" / "adarec"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def scene_runs(folders, width: int = 64, stats=("users", "items", "seq_len_median", "seq_len_p90", "popularity_gini")) -> pd.DataFrame:
    """AdaRec runs of several scenes side by side, one row per scene and beta: the scene's
    statistics (``describe()``, from the run's summary or its ``scene.json``), the architecture
    found (its signature and learnable cell parameters at ``width``) and, where the run has a
    ``summary.json``, the beta's distilled student on the frontier (size, FLOPs, latency,
    test NDCG@10) beside its teacher. A search-only run (no summary) gives the first part."""
    rows = []
    for folder in folders:
        folder = Path(folder)
        summary = read_summary(folder, inline=True) if (folder / "summary.json").exists() else None
        scene = summary["scene"] if summary else json.loads((folder / "scene.json").read_text())
        name = summary["dataset"] if summary else folder.name
        students = {r["beta"]: r for r in (summary or {}).get("rows", []) if r["role"] == "student"}
        teacher = next((r for r in (summary or {}).get("rows", []) if r["role"] == "teacher"), None)
        for path in sorted(folder.glob("search/beta_*/architecture.json"), key=lambda p: float(p.parent.name[5:])):
            arch, beta = Architecture.load(path), float(path.parent.name[5:])
            row = {"scene": name, **{k: scene.get(k) for k in stats}, "beta": beta,
                   "default": bool(summary and summary.get("default_beta") == beta),
                   "architecture": arch.signature(), f"cell params (width {width})": arch.params(width)}
            if beta in students:
                st = students[beta]
                row.update({k: st.get(k) for k in ("params_no_embedding", "flops", "latency_cpu_b1_ms")})
                row["NDCG@10"] = metric_of(st, "NDCG@10")
                row["teacher NDCG@10"] = metric_of(teacher, "NDCG@10") if teacher else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- DLLM2Rec
def artifact_table(artifacts) -> pd.DataFrame:
    """What a teacher handed over: each file's shape and meaning (shapes only: the values
    change with training, the layout must not)."""

    def shape(t) -> str:
        return "x".join(map(str, t.shape))

    rows = []
    if artifacts.embeddings is not None:
        rows.append(("all_embeddings.pt", shape(artifacts.embeddings), "semantic embedding of every item"))
    if artifacts.ranks is not None:
        rows.append(("myrank_train.txt", shape(artifacts.ranks), "teacher's top-n items per training row"))
        rows.append(("confidence_train.txt", shape(artifacts.distances), "their L2 distances, ascending"))
    return pd.DataFrame(rows, columns=["file", "shape", "holds"]).set_index("file")


def _last_training_rows(windows, rows, users) -> torch.Tensor:
    """Each user's most recent training row (an index into the teacher's ranking rows)."""
    row_users = windows.users[rows.window].numpy()
    picks = []
    for u in users:
        idx = np.flatnonzero(row_users == u)
        if len(idx) == 0:
            raise ConfigError(f"user index {u} has no training row")
        picks.append(int(idx[-1]))
    return torch.as_tensor(picks)


@torch.no_grad()
def _student_top(student, windows, rows, picks: torch.Tensor, k: int) -> torch.Tensor:
    """The student's current top-``k`` items at the picked training rows (padding excluded)."""
    student.eval()
    device = next(student.parameters()).device
    seq = windows.inputs[rows.window[picks]].to(device)
    h = student.output(seq)[torch.arange(len(picks), device=device), rows.position[picks].to(device)]
    return item_logits(student, h).float().topk(k, dim=1).indices.cpu()


@torch.no_grad()
def importance_rows(scene: Scene, artifacts, users, max_len: int, student=None, k: int = 10, **weights) -> pd.DataFrame:
    """DLLM2Rec's importance weights on each user's most recent training row: for every one
    of the teacher's top-``k`` candidates its title, distance, the position, confidence and
    consistency parts and the combined weight (``weights`` are ``importance_weights``
    options, e.g. ``gamma_position``). Consistency needs the ``student`` (its current top-k)."""
    users = list(users)
    windows = train_windows(scene, max_len)
    rows = scene_rows(windows, scene)
    picks = _last_training_rows(windows, rows, users)
    k = min(k, artifacts.top_n)
    cand, dist = artifacts.ranks[picks, :k], artifacts.distances[picks, :k]
    student_top = _student_top(student, windows, rows, picks, k) if student is not None else None
    w, parts = importance_weights(cand, dist, student_top, return_parts=True, **weights)
    return pd.DataFrame(
        [
            {
                "user": scene.user_ids[u],
                "rank": j + 1,
                "candidate": scene.title(int(cand[r, j])),
                "distance": float(dist[r, j]),
                **{part: float(parts[part][r, j]) for part in ("position", "confidence", "consistency")},
                "weight": float(w[r, j]),
                "target": scene.title(int(rows.targets[picks[r]])),
            }
            for r, u in enumerate(users)
            for j in range(k)
        ]
    )


def dllm2rec_table(results: dict, metrics=("NDCG@10", "HR@10", "NDCG@20", "HR@20")) -> pd.DataFrame:
    """Test metrics of named ``run_dllm2rec`` results (``{"full": result, ...}``): each
    one's distilled student, and the undistilled baseline and teacher once."""
    rows = {}
    for name, res in results.items():
        if "teacher" not in rows and res.get("teacher", {}).get("test"):
            rows["teacher"] = {m: res["teacher"]["test"].get(m) for m in metrics}
        if res.get("baseline") and "no distillation" not in rows:
            rows["no distillation"] = {m: res["baseline"]["test"][m] for m in metrics}
        rows[name] = {m: res["distilled"]["test"][m] for m in metrics}
    df = pd.DataFrame(rows).T
    if "no distillation" in df.index:
        base = df.loc["no distillation", metrics[0]]
        df[f"gain {metrics[0]}"] = (df[metrics[0]] - base) / base if base else float("nan")
    return df
