"""The frontier of accuracy against latency on one scene, for one teacher: does distillation pay?

A student is worth its training only if it beats the best plain model that is no slower.
:func:`run_frontier` trains, for one scene and teacher and over seeds:

- plain models over a size grid (:data:`DEFAULT_GRID`), each with its recnb recipe for the
  scene (``recnb.train.recipe``: what ``recnb train`` gives), a grid entry's training options
  (``lr_decay``, ``epochs``...) over it, as in a ``recnb train --config`` file;
- the same models distilled from the teacher (prediction-layer KD and EMD layer mapping,
  :class:`recnb.adarec.pipeline.DistillationLoss`), otherwise trained with that recipe;
- AdaRec students searched under the teacher, one per beta, distilled the same way;

then measures every model's batch-1 latency (eager PyTorch, and onnxruntime where installed)
interleaved in one process, so the latencies compare, and writes ``frontier.csv`` (one row
per model and seed) and ``frontier.json`` (a plotly figure of both Pareto fronts). Every
finished run is kept in its own folder: a killed frontier resumes where it stopped, and plain
runs already trained by ``recnb train`` can be taken as they are (``plain_runs``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from recnb.adarec.architecture import Architecture
from recnb.adarec.pipeline import DistillConfig, build_student, distillation_loss
from recnb.adarec.search import SearchConfig, search
from recnb.checkpoint import (
    changed_settings,
    load_checkpoint,
    model_digest,
    read_torch_file,
    write_json,
    write_torch_file,
)
from recnb.data import Scene, train_windows
from recnb.errors import ConfigError
from recnb.evaluation import Evaluation, user_ranks
from recnb.files import ids_digest
from recnb.kd import OnlineTeacher, TeacherCache
from recnb.measure import median_ms, model_latency, size
from recnb.metrics import paired_difference
from recnb.models import BASE_MODELS, build_model, model_class
from recnb.runs import evaluate_and_measure, run_model
from recnb.train import recipe, recipe_model_config, seed_everything, split_settings

# plain models and hand-made students: widths 32 and 64, one and two layers, windows of 20 and 50
# (batch-1 latency grows with the window), one entry per model (the others keep their defaults)
DEFAULT_GRID = (
    *({"model": "sasrec", "hidden_size": h, "num_layers": n, "max_len": w} for h in (32, 64) for n in (1, 2) for w in (20, 50)),
    *({"model": "gru4rec", "embedding_size": 64, "hidden_size": h, "max_len": 20} for h in (64, 128)),
    *({"model": "nextitnet", "embedding_size": e, "num_blocks": b, "max_len": 20} for e in (32, 64) for b in (1, 2)),
)
COLUMNS = ("name", "role", "seed", "params", "params_no_embedding", "latency_cpu_b1_ms", "latency_onnx_b1_ms",
           "valid_NDCG@10", "test_NDCG@10", "test_HR@10", "pareto")
ROLES = ("teacher", "plain", "student", "adarec")


@dataclasses.dataclass
class FrontierConfig:
    seeds: tuple = (2020, 2021, 2022)
    # model settings, each with "model", and training options over the recipe (a ``recnb train
    # --config`` file's names); "max_len" is its training window too
    grid: tuple = DEFAULT_GRID
    betas: tuple = (0.01, 0.1, 1.0)  # AdaRec searches (none: no searched students)
    student_width: int = 64  # width of the AdaRec students
    student_max_len: int = 20
    exclude_seen: bool = False  # mask each user's earlier items (the Amazon protocol), validation included
    epochs: int | None = None  # every run's most epochs (None: each recipe's)
    time_budget: float | None = None  # seconds of training per run (None: none)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)  # KD weights (its train field unused)
    search_epochs: int = 3
    latency_rounds: int = 7  # interleaved rounds; each model's latency is the median over them
    latency_repeats: int = 30
    onnx: bool = True  # also measure each model exported to ONNX in onnxruntime (where installed)
    # How the hand-made students read the teacher. Default: its outputs cached once over the
    # windows without overlap, and the students train on those windows without reorder. online:
    # it runs on each batch (recnb.kd.OnlineTeacher), so they keep their recipe's reorder and
    # context windows and it sees each window as shuffled. clean_teacher: cached once over the
    # recipe's context windows; the students keep their reorder and learn the teacher's view
    # of each window before its span is shuffled (a frozen teacher runs once, not every epoch).
    online_teacher: bool = False
    clean_teacher: bool = False
    # finished ``recnb train`` runs (their model.pt) taken as the plain runs they match instead of
    # training those again (see :func:`adopt_plain_runs`)
    plain_runs: tuple = ()

    def __post_init__(self):
        if not self.seeds:
            raise ConfigError("frontier: give at least one seed")
        for i, spec in enumerate(self.grid):
            if not isinstance(spec, dict) or spec.get("model") not in BASE_MODELS:
                raise ConfigError(f"frontier grid entry {i}: needs \"model\", one of {', '.join(BASE_MODELS)}; got {spec!r}")
            _, train = _split(spec, f"frontier grid entry {i}")
            if set(train) & _FRONTIER_SET:
                raise ConfigError(f"frontier grid entry {i}: {', '.join(sorted(set(train) & _FRONTIER_SET))} "
                                  "is the frontier's to set (--seeds, --time-budget)")
        if self.online_teacher and self.clean_teacher:
            raise ConfigError("frontier: online_teacher and clean_teacher are two ways to read the teacher; choose one")

    @property
    def evaluation(self) -> Evaluation:
        """How every run validates and is measured, the teacher's and the paired ranks too."""
        return Evaluation(exclude_seen=self.exclude_seen)


@dataclasses.dataclass
class Run:
    role: str  # one of ROLES
    name: str
    seed: int | None
    folder: Path
    metrics: dict


def model_name(spec: dict) -> str:
    """``sasrec-h32-l1-w20``: the model and the settings of its grid entry, short."""
    short = {"hidden_size": "h", "num_layers": "l", "max_len": "w", "embedding_size": "e", "num_blocks": "b",
             "lr_decay": "", "epochs": "ep", "patience": "p"}
    return "-".join([spec["model"], *(f"{short.get(k, k)}{v}" for k, v in spec.items() if k != "model")])


def run_frontier(scene: Scene, teacher: str | Path, out: str | Path, config: FrontierConfig | None = None,
                 log: Callable[[str], None] = print) -> pd.DataFrame:
    """Train, measure and write the frontier of ``scene`` under the checkpoint ``teacher``
    into ``out`` (see the module's docstring); finished runs there are read back, not redone."""
    cfg = config or FrontierConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    teacher_model, _ = load_checkpoint(teacher, scene=scene, what="--teacher")
    identity = {"teacher": model_digest(teacher_model), "items": ids_digest(scene.item_ids)}
    check_identity(out, identity)
    adopt_plain_runs(scene, cfg.plain_runs, out, cfg, log)
    runs = [Run("teacher", "teacher", None, out / "teacher", _teacher_metrics(scene, teacher_model, out / "teacher", cfg))]
    caches: dict[tuple, TeacherCache] = {}

    def cache(max_len: int, context: int = 0, output_only: bool = False) -> TeacherCache:
        key = (max_len, context, output_only)
        if key not in caches:  # the frozen teacher runs once per set of windows
            caches[key] = TeacherCache(teacher_model, train_windows(scene, max_len, context), output_only=output_only)
        return caches[key]

    def teacher_of_run(train) -> TeacherCache | OnlineTeacher:
        """What a distilled run with training settings ``train`` learns from (see ``online_teacher``)."""
        if cfg.online_teacher:
            return OnlineTeacher(teacher_model)
        if cfg.clean_teacher:
            return cache(train.max_len, train.context, output_only=not cfg.distill.emd)
        return cache(train.max_len)

    # the teacher's cache is built only for runs that still train (a finished frontier reads back)
    for spec in cfg.grid:
        name = model_name(spec)
        for seed in cfg.seeds:
            folder = out / "plain" / name / f"seed_{seed}"
            runs.append(Run("plain", name, seed, folder, _grid_run(scene, spec, seed, None, folder, cfg, log)))
            folder = out / "student" / name / f"seed_{seed}"
            runs.append(Run("student", f"{name}+kd", seed, folder,
                            _grid_run(scene, spec, seed, teacher_of_run, folder, cfg, log)))
    student_cache = partial(cache, cfg.student_max_len)
    for beta in cfg.betas:
        arch = _searched(scene, teacher_model, beta, student_cache, out / "search" / f"beta_{beta:g}", cfg, log)
        for seed in cfg.seeds:
            folder = out / "adarec" / f"beta_{beta:g}" / f"seed_{seed}"
            runs.append(Run("adarec", f"adarec-beta{beta:g}", seed, folder,
                            _adarec_run(scene, arch, seed, teacher_of_run, folder, cfg, log)))
    frame = _frame(runs, teacher_model, cfg, log)
    frame.to_csv(out / "frontier.csv", index=False)
    ranks: dict[str, list] = {}
    for run in runs:
        ranks.setdefault(run.name, []).append(run_ranks(run.folder, scene, cfg, teacher_model if run.role == "teacher" else None))
    frame.attrs["budgets"] = budgets(frame, ranks=ranks)
    frame.attrs["budgets"].to_csv(out / "budgets.csv", index=False)
    from recnb.viz.frontier import pareto_figure

    (out / "frontier.json").write_text(pareto_figure(frame, scene.name).to_json())
    write_json(out / "settings.json", {"dataset": scene.name, "teacher": str(teacher), "teacher_digest": identity["teacher"],
                                       "items": identity["items"], **_settings(cfg)})
    return frame


def check_identity(out: Path, identity: dict) -> None:
    """Finished runs in ``out`` are reused only under the teacher and scene that made them
    (by content: a moved copy of the teacher is the same teacher). Recorded in ``identity.json``
    before the first run, so a killed frontier is checked too."""
    path = out / "identity.json"
    if path.exists():
        saved = json.loads(path.read_text())
        changed = [k for k in identity if saved.get(k) != identity[k]]
        if changed:
            what = " and ".join({"teacher": "another teacher", "items": "another scene's items"}[k] for k in changed)
            raise ConfigError(f"--out {out}: its runs were made with {what}; use another --out (or --force "
                              "into an empty one)")
    write_json(path, identity)


def adopt_plain_runs(scene: Scene, paths, out: Path, cfg: FrontierConfig, log: Callable[[str], None] = print) -> list[Path]:
    """Place finished ``recnb train`` runs (``model.pt`` files) in ``out`` as the plain runs they
    are, so the frontier reads them back instead of training them again: a plain run is the
    model's recipe for the scene, which ``recnb train`` already ran. Each must match a grid
    entry (model and settings), the frontier's training settings for it and its protocol; a
    run that does not is refused naming its file. A run of a seed outside ``cfg.seeds`` is
    left out. Returns the folders filled."""
    placed = []
    for path in map(Path, paths):
        model, meta = load_checkpoint(path, scene=scene, what="plain run")
        metrics = (meta.get("extra") or {}).get("metrics")
        if not isinstance(metrics, dict) or "train" not in metrics or "test" not in metrics:
            raise ConfigError(f"plain run {path}: holds no finished run's metrics (a checkpoint written by recnb train is needed)")
        seed = metrics["train"].get("seed")
        if seed not in cfg.seeds:
            log(f"plain run {path}: seed {seed} is not among the frontier's seeds; left out")
            continue
        if bool(metrics.get("exclude_seen")) != cfg.exclude_seen:
            raise ConfigError(f"plain run {path}: measured with exclude_seen={bool(metrics.get('exclude_seen'))}, "
                              f"the frontier with {cfg.exclude_seen}")
        spec = _matching_spec(scene, model, metrics["train"], seed, cfg)
        if spec is None:
            raise ConfigError(f"plain run {path}: matches no grid entry with the frontier's training settings "
                              f"({model.name}, window {model.config.max_len}); train it with the grid's settings or leave it out")
        folder = out / "plain" / model_name(spec) / f"seed_{seed}"
        if (done := _finished(folder)) is not None:
            if done != json.loads(json.dumps(metrics)):
                raise ConfigError(f"plain run {path}: {folder} already holds another finished run")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / "model.pt")
        write_json(folder / "metrics.json", metrics)  # last: the run counts as finished once its metrics are there
        log(f"plain run {path} -> {folder}")
        placed.append(folder)
    return placed


def _matching_spec(scene: Scene, model, train: dict, seed: int, cfg: FrontierConfig) -> dict | None:
    """The grid entry whose model, settings and training settings a finished run has, else None."""
    for spec in cfg.grid:
        if spec["model"] != model.name:
            continue
        settings, train_cfg = _entry_configs(spec, scene, seed, cfg, False)
        expected = model_class(spec["model"]).config_class(**settings)
        wanted = dataclasses.asdict(train_cfg)
        if not changed_settings(expected.to_dict(), model.config.to_dict()) and \
                not changed_settings(wanted, train, free=("progress", "device")):
            return spec
    return None


def _settings(cfg: FrontierConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["grid"] = [dict(s) for s in cfg.grid]
    d["plain_runs"] = [str(p) for p in cfg.plain_runs]
    return d


def _finished(folder: Path) -> dict | None:
    """A finished run's metrics (its ``metrics.json``), else None."""
    path = folder / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else None


def _teacher_metrics(scene: Scene, teacher, folder: Path, cfg: FrontierConfig) -> dict:
    if (done := _finished(folder)) is not None:
        return done
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"model": teacher.name, **evaluate_and_measure(teacher, scene, cfg.evaluation)}
    write_json(folder / "metrics.json", metrics)
    return metrics


# training options a grid entry may not set: the frontier sets them for every run
_FRONTIER_SET = {"seed", "progress", "time_budget", "device"}


def _split(spec: dict, where: str = "frontier grid entry") -> tuple[dict, dict]:
    """A grid entry as (model settings, training options over the recipe)."""
    return split_settings(spec["model"], {k: v for k, v in spec.items() if k != "model"}, where)


def _train_config(model: str, scene: Scene, max_len: int, seed: int, cfg: FrontierConfig, distilled: bool,
                  options: dict | None = None):
    """The recipe of ``model`` on ``scene``, a grid entry's ``options`` over it, then what the
    frontier sets for every run (window, seed, budget, ``--epochs`` as a cap on all)."""
    over = {**(options or {}), "max_len": max_len, "seed": seed, "progress": False, "time_budget": cfg.time_budget}
    if cfg.epochs is not None:
        over["epochs"] = cfg.epochs
    if distilled and not (cfg.online_teacher or cfg.clean_teacher):
        over["reorder"] = 0.0  # the teacher's cached outputs belong to the windows as they are
    return recipe(model, scene, **over)


def _grid_run(scene, spec: dict, seed: int, teacher: Callable | None, folder: Path, cfg: FrontierConfig, log) -> dict:
    """One plain model (``teacher`` None) or its distilled twin (``teacher(train)`` what it
    learns from), trained with its recipe."""
    if (done := _finished(folder)) is not None:
        return done
    settings, train = _entry_configs(spec, scene, seed, cfg, teacher is not None)
    seed_everything(seed)
    model = build_model(spec["model"], **settings)
    return _train(scene, model, train, teacher, folder, cfg, log)


def _entry_configs(spec: dict, scene: Scene, seed: int, cfg: FrontierConfig, distilled: bool):
    """A grid entry's model settings on ``scene`` (its recipe's, then the entry's; window 50 unless
    given) and the training settings of its run of ``seed``."""
    given, options = _split(spec)
    settings = {**recipe_model_config(spec["model"], scene), **given, "max_len": given.get("max_len", 50),
                "num_items": scene.num_items}
    return settings, _train_config(spec["model"], scene, settings["max_len"], seed, cfg, distilled, options)


def _adarec_run(scene, arch: Architecture, seed: int, teacher: Callable, folder: Path, cfg: FrontierConfig, log) -> dict:
    if (done := _finished(folder)) is not None:
        return done
    model = build_student(scene, arch, cfg.student_width, cfg.student_max_len, seed, cfg.distill.dropout)
    train = _train_config("sasrec", scene, cfg.student_max_len, seed, cfg, True)  # the recipe of the scene's attention model
    return _train(scene, model, train, teacher, folder, cfg, log)


def _train(scene, model, train, teacher: Callable | None, folder: Path, cfg: FrontierConfig, log) -> dict:
    start = time.perf_counter()
    cache = teacher(train) if teacher is not None else None
    extra = distillation_loss(cache, model, cfg.distill) if cache is not None else None
    # a run with a teacher's cache trains on the windows the cache was built over
    windows = (train_windows(scene, train.max_len, train.context) if cache is None or isinstance(cache, OnlineTeacher)
               else cache.windows)
    metrics = run_model(scene, model, train, folder, extra_loss=extra, windows=windows,
                        evaluation=cfg.evaluation, resume=True,
                        info={"teacher": cache is not None})
    run_ranks(folder, scene, cfg, model)  # while the model is in memory
    log(f"{folder}: test NDCG@10 {metrics['test']['NDCG@10']:.4f} ({time.perf_counter() - start:.0f} s)")
    return metrics


def _searched(scene, teacher, beta: float, cache: Callable[[], TeacherCache], folder: Path, cfg: FrontierConfig,
              log) -> Architecture:
    path = folder / "architecture.json"
    if path.exists():
        return Architecture.load(path)
    scfg = SearchConfig(beta=beta, epochs=cfg.search_epochs, max_len=cfg.student_max_len, seed=cfg.seeds[0], progress=False)
    arch = search(scene, teacher, scfg, folder, cache=cache(), resume=True).architecture
    log(f"{folder}: searched")
    return arch


def run_ranks(folder: Path, scene: Scene, cfg: FrontierConfig, model=None) -> torch.Tensor:
    """A run's 0-based test rank of each user, kept as ``ranks.pt`` in its folder: what the
    paired differences between two models read (the same users, seed with seed). ``model``:
    the run's model, else read from the folder's ``model.pt``."""
    path = folder / "ranks.pt"
    if path.exists():
        return read_torch_file(path, "recnb ranks file")["ranks"]
    model = model if model is not None else load_checkpoint(folder / "model.pt")[0]
    ranks = user_ranks(model, scene, "test", cfg.evaluation)
    write_torch_file(path, {"ranks": ranks})
    return ranks


# ----------------------------------------------------------------------------- latency and the table
def latencies(models: dict, rounds: int = 7, repeats: int = 30, onnx: bool = True) -> dict[str, tuple[float, float]]:
    """``name -> (eager ms, onnxruntime ms)`` at batch 1 on one CPU thread, each the median
    over ``rounds`` interleaved rounds (every model measured once per round, so a busy spell
    of the machine falls on all of them alike); onnxruntime NaN where it is not installed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sessions = _onnx_sessions(models) if onnx else {}
        eager = {n: [] for n in models}
        onnx = {n: [] for n in models}
        for _ in range(rounds):
            for name, model in models.items():
                eager[name].append(model_latency(model, "cpu", 1, warmup=3, repeats=repeats))
                if name in sessions:
                    run, feed = sessions[name]
                    onnx[name].append(median_ms(lambda run=run, feed=feed: run(None, feed), 3, repeats))
        return {n: (statistics.median(eager[n]), statistics.median(onnx[n]) if onnx[n] else math.nan) for n in models}
    finally:
        torch.set_num_threads(before)


def _onnx_sessions(models: dict) -> dict:
    try:
        from recnb.export import INPUT, ScoringHead, onnx_session, write_onnx
    except ImportError:
        return {}
    sessions, folder = {}, Path(tempfile.mkdtemp(prefix="recnb-frontier-"))
    for name, model in models.items():
        head = ScoringHead(model, "topk", 10)
        try:
            write_onnx(head, folder / f"{name.replace('/', '_')}.onnx")
        except ConfigError:  # no exporter installed, or one that cannot export this model: eager only
            continue
        session = onnx_session(folder / f"{name.replace('/', '_')}.onnx", threads=1)
        sessions[name] = (session.run, {INPUT: head.example(1).numpy()})
    return sessions


def _frame(runs: list[Run], teacher, cfg: FrontierConfig, log) -> pd.DataFrame:
    """One row per model and seed. Latency depends on the network, not its weights: it is
    measured once per architecture, on its first run (a distilled grid model shares its plain
    twin's, so noise never puts one network on two sides of a budget)."""
    models = {}
    for run in runs:
        if network(run) not in models:
            models[network(run)] = teacher if run.role == "teacher" else load_checkpoint(run.folder / "model.pt")[0]
    log(f"measuring the latency of {len(models)} networks ({cfg.latency_rounds} interleaved rounds)")
    lat = latencies(models, cfg.latency_rounds, cfg.latency_repeats, cfg.onnx)
    rows = [{"name": run.name, "role": run.role, "seed": run.seed, **size(models[network(run)]),
             "latency_cpu_b1_ms": round(lat[network(run)][0], 4), "latency_onnx_b1_ms": round(lat[network(run)][1], 4),
             "valid_NDCG@10": run.metrics.get("valid", {}).get("NDCG@10"), "test_NDCG@10": run.metrics["test"]["NDCG@10"],
             "test_HR@10": run.metrics["test"]["HR@10"]} for run in runs]
    frame = pd.DataFrame(rows).astype({"seed": "Int64"})
    frame["pareto"] = frame["name"].isin(pareto_names(frame))
    return frame[list(COLUMNS)]


def network(run: Run) -> str:
    """The architecture a run trained: a distilled grid model's is its plain twin's."""
    return run.name.removesuffix("+kd") if run.role == "student" else run.name


def pareto_names(frame: pd.DataFrame, latency: str = "latency_cpu_b1_ms", metric: str = "test_NDCG@10") -> set[str]:
    """Models on the front of their side (plain models, or students of either kind): mean
    ``metric`` over seeds higher than that of every model of the side that is no slower."""
    means = frame.groupby(["role", "name"], as_index=False)[[latency, metric]].mean()
    front = set()
    for side in (("plain",), ("student", "adarec")):
        part = means[means["role"].isin(side)].sort_values([latency, metric], ascending=[True, False])
        best = -math.inf
        for _, r in part.iterrows():
            if r[metric] > best:
                front.add(r["name"])
                best = r[metric]
    return front


def budgets(frame: pd.DataFrame, latency: str = "latency_cpu_b1_ms", metric: str = "test_NDCG@10",
            ranks: dict | None = None) -> pd.DataFrame:
    """At each plain model's latency (a budget), the best plain model and the best student
    that are no slower (means over seeds), and the student's gain over the plain model: the
    question a user asks of the frontier. The budgets run from the fastest plain model up.
    With ``ranks`` (name -> per-seed test ranks, seeds in the same order for every model) the
    paired difference in NDCG@10 over test users (:func:`recnb.metrics.paired_difference`):
    its standard error, whether the student is ahead on every seed, and by more than 2 SE."""
    means = frame.groupby(["role", "name"], as_index=False)[[latency, metric]].mean()
    plain = means[means["role"] == "plain"].sort_values(latency)
    students = means[means["role"].isin(("student", "adarec"))]
    rows = []
    for budget in plain[latency]:
        best_plain = plain[plain[latency] <= budget].sort_values(metric).iloc[-1]
        fits = students[students[latency] <= budget]
        best = fits.sort_values(metric).iloc[-1] if len(fits) else None
        row = {"budget_ms": budget, "plain": best_plain["name"], "plain_ndcg": best_plain[metric],
               "student": best["name"] if best is not None else None,
               "student_ndcg": best[metric] if best is not None else math.nan,
               "gain": best[metric] / best_plain[metric] - 1 if best is not None else math.nan}
        if ranks is not None:  # no student this fast: the columns are there, empty
            paired = (paired_difference(ranks[best["name"]], ranks[best_plain["name"]]) if best is not None else
                      {"difference": math.nan, "se": math.nan, "every_seed": None, "significant": None})
            row.update(paired_diff=paired["difference"], paired_se=paired["se"], every_seed=paired["every_seed"],
                       significant=paired["significant"])
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(frame: pd.DataFrame, metric: str = "test_NDCG@10") -> str:
    """One line on the teacher against the best plain model: a teacher that does not beat it
    has nothing to teach the students that the plain recipe does not already give."""
    means = frame.groupby(["role", "name"], as_index=False)[metric].mean()
    teacher = means[means["role"] == "teacher"][metric]
    plain = means[means["role"] == "plain"].sort_values(metric)
    if teacher.empty or plain.empty:
        return "no teacher or no plain model to compare"
    best = plain.iloc[-1]
    t = float(teacher.iloc[0])
    if t <= best[metric]:
        return (f"the teacher ({t:.4f} {metric}) does not beat the best plain model, {best['name']} ({best[metric]:.4f}): "
                "distillation from it cannot be expected to pay; train a stronger teacher")
    return f"the teacher ({t:.4f} {metric}) beats the best plain model, {best['name']} ({best[metric]:.4f}), by {t / best[metric] - 1:+.1%}"
