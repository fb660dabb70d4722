"""A training run as the CLI and benchmarks report it: train, evaluate, write files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from recnb import distributed
from recnb.data import Scene
from recnb.metrics import flatten
from recnb.models import build_model
from recnb.train import (
    TrainConfig,
    evaluate,
    fit,
    recipe_model_config,
    resolve_device,
    save_checkpoint,
    seed_everything,
    write_json,
)


def train_and_report(
    scene: Scene,
    model_name: str,
    model_cfg: dict,
    cfg: TrainConfig,
    out: str | Path | None = None,
    protocol: str = "full",
    exclude_seen: bool = False,
    resume: bool = False,
    log=None,
) -> dict:
    """Train one model, evaluate valid and test, and (with ``out``) write ``model.pt`` and
    ``metrics.json``. Returns the metrics dict with the keys the CLI documents. ``model_cfg``
    overrides the model settings of the model's recipe (:func:`recnb.train.recipe_model_config`);
    ``log(row, model)`` sees each epoch's history row and the model (benchmarks watch test quality with it).

    With ``out``, the training state is kept in ``out/train_state.pt`` after every epoch
    until the run ends; ``resume`` continues a killed run from it (else it starts over)."""
    model_cfg = {"max_len": cfg.max_len, **recipe_model_config(model_name), **model_cfg, "num_items": scene.num_items}
    seed_everything(cfg.seed)  # the initial weights come from the seed too
    model = build_model(model_name, **model_cfg)
    state = Path(out) / "train_state.pt" if out is not None else None
    if state is not None:
        state.parent.mkdir(parents=True, exist_ok=True)
        if not resume:
            state.unlink(missing_ok=True)
    result = fit(model, scene, cfg, state=state, log=(lambda row: log(row, model)) if log else None)
    metrics = {
        "dataset": scene.name,
        "model": model_name,
        "protocol": protocol,
        "exclude_seen": exclude_seen,
        "test": flatten(evaluate(model, scene, "test", protocol, exclude_seen)),
        "valid": flatten(evaluate(model, scene, "valid", protocol, exclude_seen)),
        "params": model.num_params(),
        "params_no_embedding": model.num_params(embeddings=False),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "train_seconds": round(result.train_seconds, 2),
        "seconds_to_best": round(result.seconds_to_best, 2),
        "seconds_per_epoch": round(result.train_seconds / max(1, result.epochs), 3),
        "device": str(resolve_device(cfg.device)),
        "seed": cfg.seed,
        "config": model.config.to_dict(),
        "train": dataclasses.asdict(cfg),  # the settings that produced it (recipe + flags)
    }
    if out is not None and distributed.current().is_main:  # under torchrun rank 0 writes the files
        out = Path(out)
        save_checkpoint(out / "model.pt", model, scene, extra={"metrics": metrics})
        write_json(out / "metrics.json", metrics)
        result.history.to_csv(out / "history.csv", index=False)
        state.unlink(missing_ok=True)  # finished: model.pt holds what is worth keeping
    return metrics
