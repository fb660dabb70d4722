"""The bi-level searcher (DARTS first order) and its history.

``search(scene, teacher, SearchConfig(...), out_dir)`` splits the training windows in two
halves; each step takes one Adam step of the alphas on a batch of half B, then one step of
the network weights on a batch of half A, both on the AdaRec loss
``(1 - gamma) CE + gamma (KD + EMD) + beta L_E``. The frozen teacher runs once per window
(:class:`~recnb.kd.TeacherCache`), before the first step.

Files written to ``out_dir`` (all CSV, read by :func:`load_history` into DataFrames):

- ``alphas.csv``: ``step, epoch, cell, edge, node, input, op, weight`` (softmax(alpha))
- ``losses.csv``: ``step, epoch, phase, ce, kd, emd, cost, total, tau`` per step and phase
- ``flows.csv``: ``epoch, teacher_layer, student_layer, flow`` (mean EMD flow of the epoch)
- ``layer_weights.csv``: ``epoch, side, layer, weight`` (EMD layer weights at epoch end)
- ``epochs.csv``: one row per epoch (valid metrics, expected cost, derived architecture)
- ``checkpoint.pt`` after every epoch (a killed search resumes from it to the same
  history), ``config.json``, ``architecture.json`` and ``result.json`` at the end.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from recnb.adarec.architect import bilevel_step, loss_terms
from recnb.adarec.architecture import Architecture, derive, edges_per_cell
from recnb.adarec.objective import cost_loss
from recnb.adarec.ops import COSTS, normalised_costs, op_costs
from recnb.adarec.supernet import Supernet, SupernetConfig
from recnb.checkpoint import (
    changed_settings,
    load_checkpoint,
    model_digest,
    read_torch_file,
    resolve_device,
    write_json,
    write_torch_file,
)
from recnb.data import Scene, train_windows
from recnb.errors import ConfigError, DataError, check_fields, from_checked_dict
from recnb.evaluation import evaluate
from recnb.files import ids_digest
from recnb.kd import WEIGHT_UPDATES, EMDLoss, TeacherCache
from recnb.metrics import flatten
from recnb.models import SeqRecModel
from recnb.train import seed_everything

# The default candidate ops: the paper's eight plus causal self-attention. The d4
# dilations exist in the registry (``ops.PRIMITIVES``) and can be added with ``primitives``.
DEFAULT_PRIMITIVES = ("zero", "skip", "max_pool_k3", "avg_pool_k3", "conv_k3", "conv_k5",
                      "dil_conv_k3_d2", "dil_conv_k5_d2", "self_attention")
HISTORY_FILES = ("alphas", "losses", "flows", "layer_weights", "epochs")


@dataclass
class SearchConfig:
    # search space. The supernet searches at a proxy width (as DARTS searches a narrow
    # network and trains a wider one): op costs are normalised, so the ranking of ops by
    # cost is the same at any width, and the derived architecture is width-free.
    width: int = 32
    num_cells: int = 4
    num_nodes: int = 3
    primitives: list = field(default_factory=lambda: list(DEFAULT_PRIMITIVES))
    share_alphas: bool = False
    relaxation: str = "softmax"  # or "gumbel"
    hard: bool = False  # straight-through one-hot Gumbel samples
    tau: float = 1.0  # initial Gumbel temperature
    tau_decay: float = 0.8  # multiplied in every ``tau_every`` epochs
    tau_every: int = 1
    tau_min: float = 0.1
    # loss
    gamma: float = 0.5
    beta: float = 0.1
    T: float = 1.0
    cost: str = "params"  # params | flops | latency
    emd: bool = True
    emd_update: str = "softmax"  # softmax | normalize | none
    T_emd: float = 10.0
    # optimisation
    epochs: int = 3
    warmup_epochs: int = 1  # weights only, alphas frozen: untrained convs would lose to skip/pool
    batch_size: int = 32  # small batches: more updates for the same compute in a short search
    lr: float = 3e-3
    lr_alpha: float = 0.02  # high for a short search: Adam moves each alpha at most ~lr per step
    weight_decay_alpha: float = 1e-3
    clip: float | None = 5.0
    patience: int = 2
    max_steps: int | None = 24  # cap on steps per epoch (None = one pass over the halves)
    max_len: int = 50
    seed: int = 2020
    device: str = "auto"
    cost_device: str = "cpu"  # where op latencies are measured for cost="latency"
    cache_dir: str | None = None
    alpha_every: int = 1  # record softmax(alpha) every this many steps
    progress: bool = True

    RANGES: ClassVar[dict] = {
        "width": "[1, inf)", "num_cells": "[1, inf)", "num_nodes": "[1, inf)", "tau": "(0, inf)", "tau_decay": "(0, 1]",
        "tau_every": "[1, inf)", "tau_min": "(0, inf)", "gamma": "[0, 1]", "beta": "[0, inf)", "T": "(0, inf)",
        "epochs": "[1, inf)", "warmup_epochs": "[0, inf)", "batch_size": "[1, inf)", "lr": "(0, inf)",
        "lr_alpha": "(0, inf)", "weight_decay_alpha": "[0, inf)", "clip": "(0, inf)", "patience": "[1, inf)",
        "max_steps": "[1, inf)", "max_len": "[1, inf)", "alpha_every": "[1, inf)", "T_emd": "(0, inf)",
    }

    # one line of help per field: the options of `recnb search` and `recnb adarec` are generated from it
    HELP: ClassVar[dict] = {
        "width": "supernet (proxy) width during the search", "num_cells": "K, cells",
        "num_nodes": "N, intermediate nodes per cell", "primitives": "comma-separated candidate ops",
        "share_alphas": "one set of alphas for all cells", "relaxation": "softmax or gumbel",
        "hard": "straight-through one-hot Gumbel samples", "tau": "initial Gumbel temperature",
        "tau_decay": "factor applied to the Gumbel temperature every --tau-every epochs",
        "tau_every": "epochs between Gumbel temperature decays", "tau_min": "lowest Gumbel temperature",
        "gamma": "weight of KD against CE (0 = search without the teacher)", "beta": "weight of the cost loss",
        "T": "KD temperature", "cost": "params, flops or latency",
        "emd": "EMD distillation of the hidden states besides prediction-layer KD",
        "emd_update": "softmax, normalize or none: how the EMD layer weights are updated",
        "T_emd": "temperature of the softmax EMD layer-weight update",
        "epochs": "search epochs", "warmup_epochs": "first epochs training the weights only, alphas frozen",
        "batch_size": "training windows per batch", "lr": "learning rate of the weights",
        "lr_alpha": "learning rate of the architecture parameters",
        "weight_decay_alpha": "weight decay of the architecture parameters", "clip": "gradient norm clip (none = off)",
        "patience": "epochs without a better validation NDCG@10 before stopping",
        "max_steps": "cap on steps per epoch (none = a full pass over the halves)", "max_len": "history window length",
        "seed": "seed of weights, order and sampling", "device": "auto, cpu or cuda", "progress": "progress bars",
        "cost_device": "where op latencies are measured for --cost latency",
        "cache_dir": "folder of the op latency tables (none = RECNB_CACHE)",
        "alpha_every": "record softmax(alpha) every this many steps",
    }

    def __post_init__(self):
        check_fields(self, self.RANGES, "search config")
        if self.cost not in COSTS:
            raise ConfigError(f"cost: expected one of {', '.join(COSTS)}, got {self.cost!r}")
        if self.emd_update not in WEIGHT_UPDATES:
            raise ConfigError(f"emd_update: expected one of {', '.join(WEIGHT_UPDATES)}, got {self.emd_update!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")
        if self.T <= 0:
            raise ConfigError(f"T must be positive, got {self.T}")
        for name in ("epochs", "batch_size", "max_len", "width", "num_cells", "num_nodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SearchConfig:
        return from_checked_dict(cls, d, "search config")


@dataclass
class SearchResult:
    architecture: Architecture
    out_dir: Path | None
    best_epoch: int | None  # None when every epoch was warm-up (the alphas never moved)
    epochs: int
    seconds: float  # search time (steps + validation), excluding the teacher cache
    teacher_seconds: float
    history: dict = field(repr=False, default_factory=dict)
    supernet: Supernet | None = field(repr=False, default=None)


# ----------------------------------------------------------------------------- history files
def _append_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    df = pd.DataFrame(rows)
    df.to_csv(path, mode="a", header=not path.exists() or path.stat().st_size == 0, index=False)


def _truncate_history(out: Path, last_epoch: int) -> None:
    """Drop history rows after ``last_epoch`` (written by a run killed before its checkpoint)."""
    for name in HISTORY_FILES:
        path = out / f"{name}.csv"
        if path.exists() and path.stat().st_size:
            df = pd.read_csv(path)
            df[df["epoch"] <= last_epoch].to_csv(path, index=False)


def load_history(out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The search history as DataFrames: ``alphas`` (long format), ``losses``, ``flows``,
    ``layer_weights`` and ``epochs`` (missing files give empty frames)."""
    out = Path(out_dir)
    frames = {}
    for name in HISTORY_FILES:
        path = out / f"{name}.csv"
        frames[name] = pd.read_csv(path) if path.exists() and path.stat().st_size else pd.DataFrame()
    return frames


def _edge_index(num_nodes: int) -> list[tuple[int, int]]:
    """``(node, input)`` of each edge of a cell, in alpha order."""
    return [(n, j) for n in range(num_nodes) for j in range(2 + n)]


def _alpha_rows(model: Supernet, step: int, epoch: int) -> list[dict]:
    w = model.alpha_softmax().numpy()
    edges = _edge_index(model.config.num_nodes)
    prims = model.config.primitives
    return [
        {"step": step, "epoch": epoch, "cell": c, "edge": e, "node": edges[e][0], "input": edges[e][1], "op": prims[o], "weight": float(w[c, e, o])}
        for c in range(w.shape[0]) for e in range(w.shape[1]) for o in range(w.shape[2])
    ]


# ----------------------------------------------------------------------------- search
def _teacher_model(teacher, device, scene: Scene) -> SeqRecModel:
    if isinstance(teacher, (str, Path)):
        model, _ = load_checkpoint(teacher, device=str(device), scene=scene, what="--teacher")
        return model
    return teacher


def search(
    scene: Scene,
    teacher: SeqRecModel | str | Path | None,
    config: SearchConfig | None = None,
    out_dir: str | Path | None = None,
    cache: TeacherCache | None = None,
    resume: bool = True,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> SearchResult:
    """Search a student architecture for ``scene`` under ``teacher`` (a model, a
    checkpoint path, or None to search without distillation).

    Pass a prebuilt ``cache`` to share the teacher's outputs across searches (it must be
    built from ``train_windows(scene, config.max_len)``). With ``out_dir`` every epoch is
    checkpointed; a later call with the same ``out_dir`` and config resumes. ``on_epoch``
    is called after each epoch's checkpoint with ``(epoch, epoch_row)``.
    """
    cfg = config or SearchConfig()
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    out = Path(out_dir) if out_dir is not None else None
    if out:
        _prepare_out(out, cfg, resume)
    windows = train_windows(scene, cfg.max_len)
    t0 = time.perf_counter()
    if cache is None and teacher is not None and cfg.gamma > 0:
        cache = TeacherCache(_teacher_model(teacher, device, scene), windows, device=device)
    run = _Search.start(scene, cfg, device, windows, cache, out, time.perf_counter() - t0)
    run.identity = {"teacher": model_digest(cache.teacher) if cache is not None else None,
                    "scene_items": ids_digest(scene.item_ids)}
    if out and resume and (out / "checkpoint.pt").exists():
        run.resume()
    bar = tqdm(range(run.state["epoch"] + 1, cfg.epochs), desc=f"search {scene.name} beta={cfg.beta}",
               disable=not cfg.progress, leave=False)
    for epoch in bar:
        if run.state["bad"] >= cfg.patience:
            break
        row = run.epoch(epoch)
        bar.set_postfix(ndcg10=f"{row['valid_NDCG@10']:.4f}", params=row["architecture_params"])
        if on_epoch:
            on_epoch(epoch, row)
    return run.finish()


def _prepare_out(out: Path, cfg: SearchConfig, resume: bool) -> None:
    """``out`` holds this search's settings: a resumed one must match them, a fresh one starts clean."""
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.exists() and resume:
        diff = changed_settings(json.loads(cfg_path.read_text()), json.loads(json.dumps(cfg.to_dict())))
        if diff:
            raise ConfigError(f"{out}: holds a search with different settings ({', '.join(diff)}); use another --out or --force")
    if not resume:
        for name in HISTORY_FILES:
            (out / f"{name}.csv").unlink(missing_ok=True)
        (out / "checkpoint.pt").unlink(missing_ok=True)
    write_json(cfg_path, cfg.to_dict())


@dataclass
class _Search:
    """One :func:`search`: the supernet, its optimisers and the two halves of the windows
    (set up once), and ``state``, what it carries from epoch to epoch (checkpointed)."""

    scene: Scene
    cfg: SearchConfig
    device: torch.device
    out: Path | None
    cache: TeacherCache | None
    teacher_seconds: float
    model: Supernet
    emd: EMDLoss | None
    costs: torch.Tensor
    params_cost: dict
    w_opt: torch.optim.Optimizer
    a_opt: torch.optim.Optimizer
    gen: torch.Generator
    halves: tuple[torch.Tensor, torch.Tensor]
    inputs: torch.Tensor
    targets: torch.Tensor
    state: dict = field(default_factory=lambda: {"epoch": -1, "step": 0, "best": -1.0, "best_epoch": -1, "bad": 0,
                                                 "best_alphas": None, "seconds": 0.0})
    identity: dict = field(default_factory=dict)  # the teacher's and the scene's digests, checked on resume

    @classmethod
    def start(cls, scene: Scene, cfg: SearchConfig, device, windows, cache, out, teacher_seconds: float) -> _Search:
        model = Supernet(SupernetConfig(
            num_items=scene.num_items, max_len=cfg.max_len, width=cfg.width, num_cells=cfg.num_cells,
            num_nodes=cfg.num_nodes, primitives=list(cfg.primitives), share_alphas=cfg.share_alphas,
            relaxation=cfg.relaxation, hard=cfg.hard)).to(device)
        emd = None
        if cache is not None and cfg.emd:
            emd = EMDLoss(cache.num_layers, cfg.num_cells, cfg.width, cache.width, cfg.emd_update, cfg.T_emd).to(device)
        costs = normalised_costs(cfg.cost, cfg.width, cfg.max_len, cfg.primitives, cfg.cost_device, cfg.cache_dir).to(device)
        params_cost = op_costs("params", cfg.width, cfg.max_len, cfg.primitives)
        w_params = model.weight_parameters() + (list(emd.parameters()) if emd is not None else [])
        w_opt = torch.optim.Adam(w_params, lr=cfg.lr, foreach=True)  # same numbers as per-tensor, cheaper on CPU
        a_opt = torch.optim.Adam(model.arch_parameters(), lr=cfg.lr_alpha, betas=(0.5, 0.999),
                                 weight_decay=cfg.weight_decay_alpha, foreach=True)
        gen = torch.Generator().manual_seed(cfg.seed)
        model.generator = gen
        perm = torch.randperm(len(windows), generator=gen)
        halves = perm[: len(perm) // 2], perm[len(perm) // 2 :]
        return cls(scene, cfg, device, out, cache, teacher_seconds, model, emd, costs, params_cost, w_opt, a_opt, gen,
                   halves, windows.inputs.to(device), windows.targets.to(device))

    def resume(self) -> None:
        """Continue from ``checkpoint.pt``: only with the teacher and scene it was made with
        (by content: a teacher of the same shape would otherwise resume silently)."""
        path = self.out / "checkpoint.pt"
        ck = read_torch_file(path, "recnb search state")
        saved = ck.get("identity") if isinstance(ck, dict) else None
        for key, what in (("teacher", "teacher"), ("scene_items", "scene's item ids")):
            if isinstance(saved, dict) and saved.get(key) != self.identity.get(key):
                was = "no teacher" if key == "teacher" and saved.get(key) is None else f"another {what}"
                raise ConfigError(f"--resume: {self.out} was searched with {was} (content digests differ); resume with "
                                  "the same one or start over with --force")
        try:
            self.model.load_state_dict(ck["model"])
            if self.emd is not None:
                self.emd.load_state_dict(ck["emd"])
            self.w_opt.load_state_dict(ck["w_opt"])
            self.a_opt.load_state_dict(ck["a_opt"])
            self.gen.set_state(ck["generator"])
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise DataError(f"{path}: does not fit this search (another teacher or settings?): {first}; start over "
                            "with --force") from None
        self.state = ck["state"]
        _truncate_history(self.out, self.state["epoch"])

    def batch(self, idx: torch.Tensor) -> dict:
        idx = idx.to(self.device)
        return {"index": idx, "inputs": self.inputs[idx], "targets": self.targets[idx]}

    def epoch(self, epoch: int) -> dict:
        """One epoch of bilevel steps, then validation; its row of ``epochs.csv``."""
        cfg, model = self.cfg, self.model
        start = time.perf_counter()
        model.tau = max(cfg.tau_min, cfg.tau * cfg.tau_decay ** (epoch // cfg.tau_every))
        steps, loss_rows, alpha_rows, flows = self.steps(epoch)
        valid = flatten(evaluate(model, self.scene, "valid", max_len=cfg.max_len))
        self.state["seconds"] += time.perf_counter() - start
        arch = model.genotype()
        self.keep_best(epoch, valid["NDCG@10"])
        row = {
            "epoch": epoch, "steps": steps, "warmup": epoch < cfg.warmup_epochs, "seconds": self.state["seconds"], "tau": model.tau,
            **{f"valid_{k}": v for k, v in valid.items()},
            "loss": float(np.mean([r["total"] for r in loss_rows if r["phase"] == "weights"])) if loss_rows else float("nan"),
            "expected_cost": float(cost_loss(model.op_weights(sample=False), self.costs).detach()),
            "architecture_params": arch.params(cfg.width),
            "architecture": arch.signature(),
        }
        if self.out:
            self.write_epoch(epoch, row, loss_rows, alpha_rows, flows)
        return row

    def steps(self, epoch: int) -> tuple[int, list, list, list]:
        """The epoch's steps: the number, loss rows, alpha rows and EMD flows."""
        cfg, model, state = self.cfg, self.model, self.state
        half_a, half_b = self.halves
        order_a = half_a[torch.randperm(len(half_a), generator=self.gen)]
        order_b = half_b[torch.randperm(len(half_b), generator=self.gen)]
        steps = -(-min(len(order_a), len(order_b)) // cfg.batch_size)
        if cfg.max_steps:
            steps = min(steps, cfg.max_steps)
        loss_rows, alpha_rows, flows = [], [], []
        for s in range(steps):
            sl = slice(s * cfg.batch_size, (s + 1) * cfg.batch_size)
            warm = epoch < cfg.warmup_epochs
            a_terms, w_terms = bilevel_step(model, self.batch(order_a[sl]), None if warm else self.batch(order_b[sl]),
                                            self.w_opt, self.a_opt, self.cache, self.emd, self.costs, cfg)
            step = state["step"]
            for phase, terms in (("alphas", a_terms), ("weights", w_terms)):
                if terms is not None:
                    loss_rows.append({"step": step, "epoch": epoch, "phase": phase, **terms, "tau": model.tau})
            if self.emd is not None and self.emd.last_flow is not None:
                flows.append(self.emd.last_flow)
            if step % cfg.alpha_every == 0:
                alpha_rows.extend(_alpha_rows(model, step, epoch))
            state["step"] += 1
        return steps, loss_rows, alpha_rows, flows

    def keep_best(self, epoch: int, ndcg: float) -> None:
        warmup = self.cfg.warmup_epochs
        if epoch < warmup:
            pass  # the alphas have not moved yet: nothing to keep or stop on
        elif ndcg > self.state["best"] or epoch == warmup:
            self.state.update(best=ndcg, best_epoch=epoch, bad=0, best_alphas=self.model.alphas.detach().cpu().clone())
        else:
            self.state["bad"] += 1
        self.state["epoch"] = epoch

    def write_epoch(self, epoch: int, row: dict, loss_rows: list, alpha_rows: list, flows: list) -> None:
        """The epoch's history rows, then the checkpoint a killed search resumes from."""
        out, emd = self.out, self.emd
        _append_csv(out / "losses.csv", loss_rows)
        _append_csv(out / "alphas.csv", alpha_rows)
        if flows:
            mean = np.mean(flows, axis=0)
            _append_csv(out / "flows.csv", [
                {"epoch": epoch, "teacher_layer": i, "student_layer": j, "flow": float(mean[i, j])}
                for i in range(mean.shape[0]) for j in range(mean.shape[1])])
        if emd is not None:
            _append_csv(out / "layer_weights.csv", [
                {"epoch": epoch, "side": side, "layer": i, "weight": float(w)}
                for side, buf in (("teacher", emd.teacher_weights), ("student", emd.student_weights))
                for i, w in enumerate(buf.cpu().tolist())])
        _append_csv(out / "epochs.csv", [row])
        payload = {"model": self.model.state_dict(), "emd": emd.state_dict() if emd is not None else None,
                   "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(), "generator": self.gen.get_state(),
                   "state": self.state, "config": self.cfg.to_dict(), "identity": self.identity}
        write_torch_file(out / "checkpoint.pt", payload)  # atomic, with its digest

    def finish(self) -> SearchResult:
        """The architecture derived from the best alphas (written with ``result.json``)."""
        cfg, state, out = self.cfg, self.state, self.out
        alphas = state["best_alphas"] if state["best_alphas"] is not None else self.model.alphas.detach().cpu()
        probs = F.softmax(alphas, -1).expand(cfg.num_cells, -1, -1).numpy()
        best = state["best_epoch"] if state["best_epoch"] >= 0 else None  # None: every epoch was warm-up
        meta = {
            "scene": self.scene.name, "beta": cfg.beta, "gamma": cfg.gamma, "cost": cfg.cost, "width": cfg.width,
            "best_epoch": best, "valid_NDCG@10": state["best"] if best is not None else None,
            "expected_cost": float((torch.as_tensor(probs) * self.costs.cpu()).sum()),
        }
        arch = derive(probs, cfg.primitives, meta=meta)
        arch.meta["params_cells"] = arch.params(cfg.width)
        result = SearchResult(arch, out, best, state["epoch"] + 1, state["seconds"], self.teacher_seconds,
                              supernet=self.model)
        if out:
            arch.save(out / "architecture.json")
            write_json(out / "result.json", {
                "architecture": "architecture.json", "signature": arch.signature(), "best_epoch": best,
                "epochs": state["epoch"] + 1, "search_seconds": round(state["seconds"], 2),
                "teacher_cache_seconds": round(self.teacher_seconds, 2), "params_cost": self.params_cost,
                **{k: arch.meta[k] for k in ("expected_cost", "params_cells")},
            })
            result.history = load_history(out)
        return result


__all__ = ["DEFAULT_PRIMITIVES", "SearchConfig", "SearchResult", "bilevel_step", "edges_per_cell", "load_history", "loss_terms", "search"]
