"""One model's run, the one way recnb trains, evaluates and reports: train it (an optional
extra loss is how distillation differs from plain training), evaluate valid and test,
measure it, write its files; and the mean of such runs over seeds.

A run's results dict (``metrics.json``) has the same keys whoever made it: ``dataset``,
``model``, ``dropped`` (users and interactions the scene's filters left out), ``protocol``,
``exclude_seen``, ``test`` (and ``test_<protocol>`` for each extra
protocol), ``valid``, the size and cost keys of :mod:`recnb.measure`, ``epochs``,
``best_epoch``, ``train_seconds``, ``seconds_to_best``, ``seconds_per_epoch``, ``device``,
``seed``, ``threads``, ``config`` (the model's) and ``train`` (the training settings).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from recnb import distributed
from recnb.checkpoint import load_checkpoint, resolve_device, save_checkpoint, write_json
from recnb.data import Scene, Windows
from recnb.evaluation import Evaluation, evaluate
from recnb.measure import COST_KEYS, efficiency, model_flops, size
from recnb.metrics import flatten
from recnb.models import SeqRecModel, build_model
from recnb.train import TrainConfig, TrainResult, fit, recipe_model_config, seed_everything

STATE_FILE = "train_state.pt"  # the training state of an unfinished run (``fit``'s ``state``)


def run_model(
    scene: Scene,
    model: SeqRecModel,
    cfg: TrainConfig,
    out: str | Path | None = None,
    *,
    extra_loss: Callable | None = None,
    windows: Windows | None = None,
    evaluation: Evaluation | None = None,
    latency: tuple[tuple[str, ...], tuple[int, ...]] | None = None,
    info: dict | None = None,
    resume: bool = False,
    reuse: bool = False,
    log: Callable[[dict], None] | None = None,
) -> dict:
    """Train ``model`` from its current weights on ``scene`` (``fit``, with ``extra_loss``
    and ``windows`` when given), evaluate it, measure it and return the results dict;
    ``info`` adds keys of the caller's (``teacher``). ``latency=(devices, batches)`` adds
    FLOPs and latencies to the size (:func:`recnb.measure.efficiency`). An ``extra_loss``
    with a ``finish(model)`` method is told when training ends (to detach what it attached).

    With ``out``: ``model.pt``, ``metrics.json`` and ``history.csv`` are written there, and
    the training state is kept in ``out/train_state.pt`` until the run ends; ``resume``
    continues a killed run from it (else it starts over). With ``reuse`` a finished run's
    ``metrics.json`` is returned instead of training again."""
    out = Path(out) if out is not None else None
    if reuse and out is not None and (out / "metrics.json").exists():
        return _finished(out)
    evaluation = Evaluation.of(evaluation)
    state = _state_file(out, resume)
    # validated with the masking and padding cut it is reported with, by full ranking whatever the
    # protocol reported: the epoch kept, and so the model, does not depend on the protocol
    result = fit(model, scene, cfg, extra_loss=extra_loss, windows=windows, state=state, log=log,
                 evaluation=dataclasses.replace(evaluation, protocol="full"))
    if hasattr(extra_loss, "finish"):
        extra_loss.finish(model)
    metrics = {"dataset": scene.name, "model": model.name, "dropped": (scene.meta or {}).get("dropped"), **(info or {}),
               **evaluate_and_measure(model, scene, evaluation, latency), **_training(result, cfg),
               "config": model.config.to_dict(), "train": dataclasses.asdict(cfg)}
    if out is not None and distributed.current().is_main:  # under torchrun rank 0 writes the files
        save_checkpoint(out / "model.pt", model, scene, extra={"metrics": metrics})
        write_json(out / "metrics.json", metrics)
        result.history.to_csv(out / "history.csv", index=False)
        state.unlink(missing_ok=True)  # finished: model.pt holds what is worth keeping
    return metrics


def train_and_report(
    scene: Scene,
    model_name: str,
    model_cfg: dict,
    cfg: TrainConfig,
    out: str | Path | None = None,
    *,
    evaluation: Evaluation | None = None,
    resume: bool = False,
    log=None,
    info: dict | None = None,
    protocol: str | None = None,
    exclude_seen: bool | None = None,
) -> dict:
    """Build ``model_name`` (its recipe's model settings, overridden by ``model_cfg``) from
    ``cfg.seed`` and run it (:func:`run_model`): what ``recnb train``, sweeps and benchmarks
    do. ``evaluation``: how it is validated and measured (``protocol`` and ``exclude_seen``
    alone are folded into one). ``log(row, model)`` sees each epoch's history row and the
    model; ``info`` adds keys to the results (``recipe``: which recipe the scene got and why)."""
    evaluation = Evaluation.of(evaluation, protocol=protocol, exclude_seen=exclude_seen)
    model_cfg = {"max_len": cfg.max_len, **recipe_model_config(model_name, scene), **model_cfg, "num_items": scene.num_items}
    seed_everything(cfg.seed)  # the initial weights come from the seed too
    model = build_model(model_name, **model_cfg)
    return run_model(scene, model, cfg, out, evaluation=evaluation, resume=resume,
                     log=(lambda row: log(row, model)) if log else None, info=info)


def _finished(out: Path) -> dict:
    """A finished run's results; FLOPs are cheap, so they are recounted with the current counter."""
    metrics = json.loads((out / "metrics.json").read_text())
    if (out / "model.pt").exists() and "flops" in metrics:
        metrics["flops"] = model_flops(load_checkpoint(out / "model.pt")[0])
        write_json(out / "metrics.json", metrics)
    return metrics


def _state_file(out: Path | None, resume: bool) -> Path | None:
    if out is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    state = out / STATE_FILE
    if not resume:
        state.unlink(missing_ok=True)
    return state


def evaluate_and_measure(model: SeqRecModel, scene: Scene, evaluation: Evaluation | None = None, latency=None) -> dict:
    """The part of a run's results that a trained model alone gives: ``protocol``,
    ``exclude_seen``, ``test`` (+ ``test_<protocol>``), ``valid``, size and cost, ``threads``."""
    ev = Evaluation.of(evaluation)
    costs = efficiency(model, *latency) if latency is not None else size(model)
    return {**_scores(model, scene, ev), **costs, "threads": torch.get_num_threads()}


def _scores(model: SeqRecModel, scene: Scene, ev: Evaluation) -> dict:
    test_scene = ev.test_scene or scene
    scores = {"protocol": ev.protocol, "exclude_seen": ev.exclude_seen, "test": flatten(evaluate(model, test_scene, "test", ev))}
    for protocol in ev.also:
        scores[f"test_{protocol}"] = flatten(evaluate(model, test_scene, "test", dataclasses.replace(ev, protocol=protocol)))
    scores["valid"] = flatten(evaluate(model, scene, "valid", ev))
    return scores


def _training(result: TrainResult, cfg: TrainConfig) -> dict:
    return {
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "train_seconds": round(result.train_seconds, 2),
        "seconds_to_best": round(result.seconds_to_best, 2),
        "seconds_per_epoch": round(result.train_seconds / max(1, result.epochs), 3),
        "device": str(resolve_device(cfg.device)),
        "seed": cfg.seed,
    }


def mean_over_seeds(runs: list[dict]) -> dict:
    """The runs of one model over seeds as one row: the mean of every metric (``test``,
    ``valid``, ``test_<protocol>``), the std of the test metrics beside them
    (``test["NDCG@10_std"]``), the mean training time, the seeds and their epochs; size and
    cost from the first run (the same model)."""
    first = runs[0]
    out = {k: v for k, v in first.items() if k.startswith(COST_KEYS)}
    out["test"] = {}
    for key in first["test"]:
        vals = [r["test"][key] for r in runs]
        out["test"][key] = float(np.mean(vals))
        out["test"][f"{key}_std"] = float(np.std(vals))
    for split in ["valid", *[k for k in first if k.startswith("test_") and isinstance(first[k], dict)]]:
        out[split] = {k: float(np.mean([r[split][k] for r in runs])) for k in first[split]}
    out.update(seeds=[r["seed"] for r in runs], train_seconds=float(np.mean([r["train_seconds"] for r in runs])),
               epochs=[r["epochs"] for r in runs])
    return out


__all__ = ["STATE_FILE", "Evaluation", "evaluate_and_measure", "mean_over_seeds", "run_model", "train_and_report"]
