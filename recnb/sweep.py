"""Sweeps on Ray Tune: one objective per kind of run, one flat row per trial.

A grid file is a JSON object whose values are either one value (fixed for every trial) or a
list of values (an axis of the grid; a list-valued setting such as ``dilations`` is written
as a list of lists). The kinds:

- ``train``: one model trained on the scene (:func:`recnb.runs.train_and_report` with
  :func:`recnb.train.recipe`); keys ``model``, ``seed``, training and model settings.
- ``adarec``: one AdaRec unit for a ``(beta, seed)``: the search with that ``beta`` (same
  search seed for every trial), then the derived student distilled from the frozen teacher
  with that ``seed`` (:func:`recnb.adarec.pipeline.train_model`).
- ``dllm2rec``: one DLLM2Rec student for a ``(lam, ed_weight, seed)`` from teacher artifacts
  (:func:`recnb.dllm2rec.pipeline.train_student`).

Each trial returns the same flat schema (``valid_<metric>``, ``test_<metric>``, ``params``,
``params_no_embedding``, ``latency_cpu_b1_ms``, ``epochs``, ``best_epoch``,
``train_seconds``, plus the trial's settings), the columns of a pipeline summary
(:func:`recnb.adarec.summary.summary_frame`). Selection reads validation only.
:func:`run_trial` is the objective without Ray, so a sweep's numbers can be checked against
running its configurations one by one.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import torch

from recnb.errors import ConfigError, accepts, annotation_types
from recnb.files import read_json_file

KINDS = ("train", "adarec", "dllm2rec")
SELECT_BY = "valid_NDCG@10"
RESULT_FILES = ("results.parquet", "results.csv")
EXPERIMENT = "tune"  # Ray Tune's experiment folder inside the sweep's --out
SWEEP_EXTRA = "pip install recnb[sweep]"
# settings a trial never takes from the grid: where it runs and whether it prints
_NOT_IN_GRID = ("device", "progress", "amp", "eval_every")
# an ``adarec`` trial's keys that are config fields: key -> (SearchConfig "search", DistillConfig
# "distill" or its "train" settings, field); their types and defaults are read from there
ADAREC_FIELDS = {"seed": ("train", "seed"), "search_seed": ("search", "seed"), "search_epochs": ("search", "epochs"),
                 "search_max_steps": ("search", "max_steps"), "search_width": ("search", "width"),
                 "distill_epochs": ("train", "epochs"), "distill_patience": ("train", "patience"),
                 "distill_batch_size": ("train", "batch_size"), "distill_lr": ("train", "lr"),
                 "student_width": ("distill", "width"), "max_len": ("search", "max_len"),
                 "time_budget": ("train", "time_budget")}
ADAREC_KEYS = {"beta": (int, float), "teacher": (str,), "kd": (bool,)}  # the others
# the TrainConfig fields a ``dllm2rec`` trial takes (beside DLLM2RecConfig's), and its other keys
DLLM2REC_TRAIN = ("epochs", "patience", "lr", "loss", "max_len", "time_budget", "seed")
DLLM2REC_KEYS = {"artifacts": (str,), "student": (str,), "distill": (bool,)}


def _adarec_configs() -> dict:
    from recnb.adarec.pipeline import DistillConfig
    from recnb.adarec.search import SearchConfig

    distill = DistillConfig()
    return {"search": SearchConfig(), "distill": distill, "train": distill.train}


def adarec_defaults() -> dict:
    """An ``adarec`` trial's settings where the grid sets none: those of ``recnb adarec``,
    read from SearchConfig and DistillConfig (the one place they are written)."""
    configs = _adarec_configs()
    return {"kd": True, **{key: getattr(configs[cfg], name) for key, (cfg, name) in ADAREC_FIELDS.items()}}


# ----------------------------------------------------------------------------- grid files
def _check_value(where: str, key: str, value, types: tuple | None) -> None:
    if not accepts(types, value):
        names = "/".join(sorted({t.__name__ if t is not type(None) else "null" for t in types}))
        raise ConfigError(f"{where}: '{key}' must be {names}, got {json.dumps(value)}")


def _keys(kind: str, model: str | None = None) -> dict:
    """``{key: allowed types}`` a grid of ``kind`` (and, for ``train``, ``model``) may set."""
    from recnb.train import TrainConfig

    if kind == "adarec":
        types = {cfg: {f.name: annotation_types(f.type) for f in dataclasses.fields(obj)}
                 for cfg, obj in _adarec_configs().items()}
        return {**ADAREC_KEYS, **{key: types[cfg][name] for key, (cfg, name) in ADAREC_FIELDS.items()}}
    if kind == "dllm2rec":
        from recnb.dllm2rec.pipeline import DLLM2RecConfig

        out = dict(DLLM2REC_KEYS)
        out.update({f.name: annotation_types(f.type) for f in dataclasses.fields(TrainConfig) if f.name in DLLM2REC_TRAIN})
        out.update({f.name: annotation_types(f.type) for f in dataclasses.fields(DLLM2RecConfig)})
        return out
    out = {"model": (str,)}
    out.update({f.name: annotation_types(f.type) for f in dataclasses.fields(TrainConfig) if f.name not in _NOT_IN_GRID})
    if model is not None:
        from recnb.models import BASE_MODELS, model_class

        if model not in BASE_MODELS:
            raise ConfigError(f"unknown model '{model}'; choose one of {', '.join(BASE_MODELS)}")
        fields = dataclasses.fields(model_class(model).config_class)
        out.update({f.name: annotation_types(f.type) for f in fields if f.name not in ("num_items",)})
    return out


def read_grid(path: str | Path, kind: str = "train") -> dict:
    """The grid file as ``{key: value or [values]}``, refused with one line naming the file
    and the key when it is not JSON, names an unknown key, or holds a value of the wrong type.
    Every point of the grid is built once here, so a bad value fails before Ray starts."""
    if kind not in KINDS:
        raise ConfigError(f"--kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    path = Path(path)
    where = f"--grid {path}"
    grid = read_json_file(path, "--grid")
    if not grid:
        raise ConfigError(f"{where}: expected a JSON object of settings (a list of values is a grid axis)")
    for key, value in grid.items():
        if isinstance(value, list) and not value:
            raise ConfigError(f"{where}: '{key}' is an empty list (an axis needs at least one value)")
    points = list(grid_points(grid))
    for point in points:
        _check_point(where, kind, point)
    return grid


def _axis(key: str, value) -> bool:
    return isinstance(value, list)


def grid_points(grid: dict):
    """Every configuration of ``grid`` (the product of its axes), in a stable order."""
    axes = {k: v for k, v in grid.items() if _axis(k, v)}
    fixed = {k: v for k, v in grid.items() if not _axis(k, v)}
    for combo in itertools.product(*axes.values()):
        yield {**fixed, **dict(zip(axes, combo))}


def _check_point(where: str, kind: str, point: dict) -> None:
    """One configuration: known keys, right types, and settings the configs accept."""
    from recnb.train import TrainConfig

    if kind == "train" and "model" not in point:
        raise ConfigError(f"{where}: 'model' is required for --kind train")
    if kind == "adarec" and "beta" not in point:
        raise ConfigError(f"{where}: 'beta' is required for --kind adarec")
    if kind == "dllm2rec" and "artifacts" not in point:
        raise ConfigError(f"{where}: 'artifacts' (the teacher's folder) is required for --kind dllm2rec")
    if kind == "train" and not isinstance(point["model"], str):
        raise ConfigError(f"{where}: 'model' must be str, got {json.dumps(point['model'])}")
    keys = _keys(kind, point.get("model") if kind == "train" else None)
    unknown = sorted(set(point) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} for --kind {kind}"
                          + (f" model {point['model']}" if kind == "train" else "") + f"; known: {', '.join(sorted(keys))}")
    for key, value in point.items():
        _check_value(where, key, value, keys[key])
    try:
        if kind == "train":
            model_cfg, train_cfg = split_train(point)
            from recnb.models import model_class

            cls = model_class(point["model"])
            cls.config_class.from_dict({**model_cfg, "num_items": 1})
            TrainConfig(**train_cfg)
        elif kind == "dllm2rec":
            _dllm2rec_configs(point)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def split_train(point: dict) -> tuple[dict, dict]:
    """A ``train`` point as (model settings, training settings), as ``recnb train --config`` splits them."""
    from recnb.train import split_settings

    return split_settings(point["model"], {k: v for k, v in point.items() if k != "model"}, "--grid")


def _dllm2rec_configs(point: dict):
    from recnb.dllm2rec.pipeline import DLLM2RecConfig
    from recnb.train import TrainConfig

    names = {f.name for f in dataclasses.fields(DLLM2RecConfig)}
    cfg = DLLM2RecConfig(**{k: v for k, v in point.items() if k in names})
    train = TrainConfig(**{k: point[k] for k in DLLM2REC_TRAIN if k in point}, progress=False)
    return cfg, train


# ----------------------------------------------------------------------------- objectives
def _flat(metrics: dict, point: dict, kind: str) -> dict:
    """One trial in the flat schema: settings, then valid_/test_ metrics, size and latency."""
    row = {"kind": kind, "dataset": metrics.get("dataset")}
    row.update({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in point.items()})
    row.update({f"valid_{k}": v for k, v in metrics["valid"].items()})
    row.update({f"test_{k}": v for k, v in metrics["test"].items()})
    for key in ("model", "params", "params_no_embedding", "flops", "latency_cpu_b1_ms", "best_epoch", "train_seconds",
                "seed", "architecture"):
        if key in metrics:
            row[key] = metrics[key]
    row["epochs_trained"] = metrics["epochs"]  # ``epochs`` may be a setting of the grid
    row["threads"] = torch.get_num_threads()
    return row


def _latency_b1(model) -> float:
    from recnb.measure import model_latency

    return round(model_latency(model.cpu(), "cpu", 1, repeats=20, warmup=3), 4)


def run_trial(kind: str, point: dict, dataset: str, out: str | Path, data_dir: str | None = None) -> dict:
    """One trial without Ray: train / distil what ``point`` says on ``dataset``, writing its
    files under ``out``, and return its row in the flat schema."""
    from recnb.data import load_scene

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scene = load_scene(dataset, data_dir)
    if kind == "train":
        from recnb.checkpoint import load_checkpoint
        from recnb.runs import train_and_report
        from recnb.train import recipe

        model_cfg, train_cfg = split_train(point)
        cfg = recipe(point["model"], scene, progress=False, **train_cfg)
        metrics = train_and_report(scene, point["model"], model_cfg, cfg, out)
        metrics["latency_cpu_b1_ms"] = _latency_b1(load_checkpoint(out / "model.pt")[0])
    elif kind == "adarec":
        metrics = _adarec_trial(scene, {**adarec_defaults(), **point}, out)
    elif kind == "dllm2rec":
        metrics = _dllm2rec_trial(scene, point)
    else:
        raise ConfigError(f"--kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    return _flat(metrics, point, kind)


def adarec_trial_configs(p: dict):
    """The SearchConfig and DistillConfig of an ``adarec`` trial: ``recnb adarec``'s, with the
    fields :data:`ADAREC_FIELDS` maps set from the trial (the one map of keys to fields)."""
    configs = _adarec_configs()
    given = {cfg: {} for cfg in configs}
    for key, (cfg, name) in ADAREC_FIELDS.items():
        given[cfg][name] = p[key]
    scfg = dataclasses.replace(configs["search"], **given["search"], beta=float(p["beta"]), progress=False)
    train = dataclasses.replace(configs["train"], **given["train"], max_len=scfg.max_len, progress=False)
    return scfg, dataclasses.replace(configs["distill"], **given["distill"], train=train)


def _adarec_trial(scene, p: dict, out: Path) -> dict:
    """Search with ``beta`` (seed ``search_seed``), then distil the derived student with ``seed``."""
    from recnb.adarec.pipeline import build_student, train_model
    from recnb.adarec.search import search
    from recnb.checkpoint import load_checkpoint, resolve_device
    from recnb.data import train_windows
    from recnb.kd import TeacherCache

    device = resolve_device("auto")
    teacher, _ = load_checkpoint(p["teacher"], device=str(device))
    scfg, dcfg = adarec_trial_configs(p)
    cache = TeacherCache(teacher, train_windows(scene, scfg.max_len), device=device)
    arch = search(scene, teacher, scfg, out / "search", cache=cache, resume=False).architecture
    student = build_student(scene, arch, dcfg.width, scfg.max_len, p["seed"], dcfg.dropout)
    metrics = train_model(scene, student, dcfg, cache if p["kd"] else None, out / "student", batches=(1,))
    metrics["architecture"] = arch.signature()
    return metrics


def _dllm2rec_trial(scene, point: dict) -> dict:
    from recnb.dllm2rec.artifacts import load_artifacts
    from recnb.dllm2rec.pipeline import DistillTask, train_student

    cfg, train = _dllm2rec_configs(point)
    art = load_artifacts(point["artifacts"], num_items=scene.num_items, ranking=cfg.ranking, embeddings=cfg.embedding,
                         scene=scene)
    task = DistillTask.from_scene(scene, train.max_len)
    task.check(art)
    model, metrics = train_student(task, point.get("student", "sasrec"), art, train, cfg, distill=point.get("distill", True))
    metrics.update(model=point.get("student", "sasrec"), latency_cpu_b1_ms=_latency_b1(model))
    return metrics


def _tune_objective(config: dict, kind: str, dataset: str, runs: str, data_dir: str | None, threads: int) -> None:
    """The Ray Tune trainable: one :func:`run_trial`, reported once. Each execution appends a
    line to ``runs/<trial>/attempts.log`` (a resumed sweep shows which trials ran again)."""
    from ray import tune

    torch.set_num_threads(threads)
    trial = tune.get_context().get_trial_id()
    out = Path(runs) / trial
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "attempts.log", "a") as fh:
        fh.write(f"{datetime.datetime.now(datetime.timezone.utc).isoformat()} pid {os.getpid()}\n")
    row = run_trial(kind, config, dataset, out, data_dir)
    tune.report({**row, "trial": trial})


# ----------------------------------------------------------------------------- the runner
def parse_resources(text: str) -> dict:
    """``cpu=1,gpu=0`` as ``{"cpu": 1.0, "gpu": 0.0}`` (one line naming the option if bad)."""
    out = {"cpu": 1.0, "gpu": 0.0}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        key, _, value = part.partition("=")
        if key not in out or not value:
            raise ConfigError(f"--resources-per-trial: expected cpu=N,gpu=M, got {text!r}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ConfigError(f"--resources-per-trial: {key} must be a number, got {value!r}") from None
        if out[key] < 0:
            raise ConfigError(f"--resources-per-trial: {key} must be at least 0, got {value}")
    if out["cpu"] <= 0 and out["gpu"] <= 0:
        raise ConfigError("--resources-per-trial: a trial needs some cpu or gpu")
    return out


def import_ray():
    """Ray Tune, or one line saying which extra to install."""
    try:
        import ray
        from ray import tune
    except ModuleNotFoundError:
        raise ConfigError(f"Ray Tune is not installed: {SWEEP_EXTRA}") from None
    return ray, tune


def _start_ray(ray, address: str | None) -> bool:
    """Join ``address`` or start a quiet local Ray on this machine's cores; True if started here."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "configure_logging": True, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"--address {address or 'local'}: cannot start or reach Ray ({str(exc).splitlines()[0]})") from None
    return True


def run_sweep(kind: str, dataset: str, grid: dict, out: str | Path, address: str | None = None,
              resources: dict | None = None, max_concurrent: int | None = None, data_dir: str | None = None,
              log=print) -> pd.DataFrame:
    """Run every point of ``grid`` as a Ray Tune trial and write ``out/results.parquet`` and
    ``out/results.csv`` (one row per trial, sorted by validation NDCG@10, best first).

    ``out/tune`` is Ray Tune's experiment: if it exists (a killed sweep) it is restored and
    only the trials not finished run again. A different grid in the same ``out`` is refused."""
    ray, tune = import_ray()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    resources = resources or {"cpu": 1.0, "gpu": 0.0}
    saved_grid = out / "grid.json"
    if saved_grid.exists() and json.loads(saved_grid.read_text()) != {"kind": kind, "dataset": dataset, "grid": grid}:
        raise ConfigError(f"--out {out}: holds a sweep of another grid, kind or dataset; use another --out or --force")
    saved_grid.write_text(json.dumps({"kind": kind, "dataset": dataset, "grid": grid}, indent=2) + "\n")
    if kind == "adarec" and "teacher" not in grid:
        grid = {**grid, "teacher": str(_adarec_teacher(dataset, data_dir, out / "teacher", grid, log))}
    threads = max(1, int(resources["cpu"]))
    trainable = tune.with_resources(
        tune.with_parameters(_tune_objective, kind=kind, dataset=str(dataset), runs=str(out / "runs"),
                             data_dir=None if data_dir is None else str(data_dir), threads=threads),
        {"cpu": resources["cpu"], "gpu": resources["gpu"]})
    started = _start_ray(ray, address)
    try:
        path = out / EXPERIMENT
        if tune.Tuner.can_restore(str(path)):
            log(f"[sweep] resuming {path}: finished trials are kept")
            tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True)
        else:
            space = {k: tune.grid_search(v) if _axis(k, v) else v for k, v in grid.items()}
            tuner = tune.Tuner(trainable, param_space=space,
                               tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True),
                               run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(out), verbose=0))
        results = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    rows = []
    for res in results:
        if res.error is not None:
            rows.append({"trial": Path(res.path).name, "error": str(res.error).strip().splitlines()[-1]})
        else:
            rows.append(dict(res.metrics))
    frame = results_frame(rows)
    frame.to_parquet(out / RESULT_FILES[0], index=False)
    frame.to_csv(out / RESULT_FILES[1], index=False)
    return frame


def results_frame(rows: list[dict]) -> pd.DataFrame:
    """Trial rows in the flat schema (Ray's own bookkeeping dropped), best validation first."""
    ray_keys = {"timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date", "time_this_iter_s",
                "time_total_s", "pid", "hostname", "node_ip", "time_since_restore", "iterations_since_restore", "config",
                "experiment_tag"}
    frame = pd.DataFrame([{k: v for k, v in r.items() if k not in ray_keys} for r in rows])
    if SELECT_BY in frame:
        frame = frame.sort_values(SELECT_BY, ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    return frame


def _adarec_teacher(dataset: str, data_dir, out: Path, grid: dict, log) -> Path:
    """The AdaRec teacher every trial shares, trained once here as ``recnb adarec`` does
    (kept in ``out``: a resumed sweep reuses it)."""
    path = out / "model.pt"
    if path.exists():
        return path
    from recnb.adarec.pipeline import TEACHER_CONFIG, TEACHER_TRAIN
    from recnb.data import load_scene
    from recnb.runs import train_and_report
    from recnb.train import TrainConfig

    p = {**adarec_defaults(), **{k: v for k, v in grid.items() if not _axis(k, v)}}
    log(f"[sweep] training the AdaRec teacher once -> {out}")
    cfg = TrainConfig(epochs=p["distill_epochs"], batch_size=p["distill_batch_size"], lr=p["distill_lr"],
                      patience=p["distill_patience"], max_len=p["max_len"], seed=p["search_seed"], progress=False,
                      time_budget=p["time_budget"], **TEACHER_TRAIN)
    train_and_report(load_scene(dataset, data_dir), "nextitnet", dict(TEACHER_CONFIG), cfg, out, resume=True)
    return path


def clear(out: str | Path) -> None:
    """Remove a sweep's files from ``out`` (``--force``)."""
    out = Path(out)
    for name in (EXPERIMENT, "runs", "teacher"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (*RESULT_FILES, "grid.json"):
        (out / name).unlink(missing_ok=True)


def load_results(out: str | Path) -> pd.DataFrame:
    """A sweep's ``results.parquet`` (``results.csv`` without pyarrow) as a DataFrame, one row
    per trial with the ``valid_``/``test_`` columns of a pipeline summary, best validation first."""
    out = Path(out)
    parquet, csv = (out / name for name in RESULT_FILES)
    if parquet.exists():
        try:
            return pd.read_parquet(parquet)
        except ImportError:  # no pyarrow here: the CSV holds the same rows
            pass
    if not csv.exists():
        raise ConfigError(f"{out}: no sweep results (run `recnb sweep --out {out}` first)")
    return pd.read_csv(csv)
