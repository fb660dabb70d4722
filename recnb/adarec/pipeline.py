"""AdaRec end to end: teacher, search per beta, distillation, twins, baseline, summary.

- :func:`distillation_loss`: the ``extra_loss`` that ``recnb.train.fit`` adds to CE for a
  student learning from a frozen teacher (prediction KD + EMD over cached teacher layers).
- :func:`train_model`: train one model with or without the teacher, evaluate it, measure
  its size, FLOPs and latency, and write ``model.pt``, ``metrics.json``, ``history.csv``.
- :func:`run_pipeline`: the whole experiment, writing ``summary.csv`` and
  ``summary.json`` = ``{"rows": [...], ...}`` (one row per model, test metrics averaged
  over seeds).

``fit`` trains ``CE + extra``; with ``extra = g (KD + EMD)``, ``g = gamma / (1 - gamma)``,
this is the target-oriented loss ``(1 - gamma) CE + gamma (KD + EMD)`` scaled by
``1 / (1 - gamma)``, i.e. the same objective as in the search.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from recnb.adarec.architecture import Architecture
from recnb.adarec.search import SearchConfig, search
from recnb.adarec.student import Student
from recnb.adarec.summary import load_summary, summary_frame
from recnb.data import Scene, load_scene, train_windows
from recnb.errors import ConfigError, check_fields
from recnb.kd import EMDLoss, TeacherCache, kd_loss
from recnb.measure import efficiency, model_flops
from recnb.metrics import flatten
from recnb.models import SeqRecModel, build_model
from recnb.train import (
    TrainConfig,
    changed_settings,
    evaluate,
    fit,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
    seed_everything,
    write_json,
)

# 16 residual blocks of width 128; dropout 0.2 in the residual branch keeps it from overfitting ml-100k
TEACHER_CONFIG = {"embedding_size": 128, "num_blocks": 8, "dilations": [1, 4], "layer_every": 2, "dropout": 0.2}
# How a missing teacher is trained, on top of the distillation's training settings: the reorder
# augmentation gave the best validation NDCG@10 of nine 16 x 128 teachers on ml-100k (docs/adarec.md).
TEACHER_TRAIN = {"reorder": 0.2}
ROLES = ("teacher", "student", "student_no_kd", "baseline", "baseline_no_kd")


@dataclass
class DistillConfig:
    """How a derived student (or the baseline) learns from the frozen teacher."""

    gamma: float = 0.5
    T: float = 1.0
    emd: bool = True
    emd_update: str = "softmax"
    T_emd: float = 10.0
    width: int = 64
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, batch_size=32, lr=1e-3, patience=5))

    # one line of help per field: the options of `recnb distill` and `recnb adarec` are generated from it
    HELP: ClassVar[dict] = {
        "gamma": "weight of KD against CE: the KD and EMD terms are weighted gamma / (1 - gamma)",
        "T": "KD temperature", "emd": "EMD distillation of the hidden states besides prediction-layer KD",
        "emd_update": "softmax, normalize or none: how the EMD layer weights are updated",
        "T_emd": "temperature of the softmax EMD layer-weight update", "width": "student width",
    }

    def __post_init__(self):
        check_fields(self, {"T": "(0, inf)", "T_emd": "(0, inf)", "width": "[1, inf)"}, "distillation options")
        if not 0.0 <= self.gamma < 1.0:
            raise ConfigError(f"gamma must be in [0, 1) for distillation, got {self.gamma}")


# ----------------------------------------------------------------------------- distillation
def distillation_loss(cache: TeacherCache, student: SeqRecModel, cfg: DistillConfig) -> Callable:
    """``extra_loss`` for ``fit``: ``g * KD`` and ``g * EMD`` (``g = gamma / (1 - gamma)``),
    logged per epoch as ``kd`` and ``emd``. With ``cfg.emd`` the learned map student ->
    teacher width is attached to the student as ``distill_emd`` so ``fit`` trains it;
    :func:`train_model` removes it afterwards."""
    g = cfg.gamma / (1.0 - cfg.gamma)
    emd = None
    if cfg.emd:
        n_student = len(student(torch.zeros(1, 2, dtype=torch.long, device=next(student.parameters()).device))) - 1
        emd = EMDLoss(cache.num_layers, n_student, _width(student), cache.width, cfg.emd_update, cfg.T_emd)
        student.add_module("distill_emd", emd.to(next(student.parameters()).device))

    def extra(model, batch, states, logits):
        mask = batch["targets"] > 0
        out = {"kd": g * kd_loss(logits, cache.logits(batch["index"], mask), cfg.T)}
        if emd is not None:
            out["emd"] = g * emd([s[mask] for s in states[1:]], cache.layers(batch["index"], mask))
            emd.update_weights()
        return out

    return extra


def _width(model: SeqRecModel) -> int:
    return model.item_embedding.weight.shape[1]


def train_model(
    scene: Scene,
    model: SeqRecModel,
    cfg: DistillConfig,
    cache: TeacherCache | None = None,
    out: str | Path | None = None,
    devices=("cpu",),
    batches=(1, 256),
    reuse: bool = False,
) -> dict:
    """Train ``model`` from its current (fresh) weights with CE, plus KD + EMD when a
    teacher ``cache`` is given; evaluate on test (full ranking and sampled100); measure.
    With ``reuse`` and an existing ``out/metrics.json``, return that instead."""
    out = Path(out) if out is not None else None
    if reuse and out is not None and (out / "metrics.json").exists():
        metrics = json.loads((out / "metrics.json").read_text())
        if (out / "model.pt").exists():  # FLOPs are cheap: recount with the current counter
            metrics["flops"] = model_flops(load_checkpoint(out / "model.pt")[0])
            write_json(out / "metrics.json", metrics)
        return metrics
    tcfg = cfg.train
    if cache is not None and tcfg.reorder:
        raise ConfigError("reorder: cannot be combined with a teacher, whose cached outputs belong to the unshuffled windows")
    windows = train_windows(scene, tcfg.max_len)
    extra = distillation_loss(cache, model, cfg) if cache is not None else None
    result = fit(model, scene, tcfg, extra_loss=extra, windows=windows)
    if hasattr(model, "distill_emd"):
        del model.distill_emd  # the map only serves training; the model keeps its contract
    metrics = {
        "dataset": scene.name,
        "model": model.name,
        "teacher": cache is not None,
        "protocol": "full",
        "test": flatten(evaluate(model, scene, "test")),
        "test_sampled100": flatten(evaluate(model, scene, "test", protocol="sampled100")),
        "valid": flatten(evaluate(model, scene, "valid")),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "train_seconds": round(result.train_seconds, 2),
        "seed": tcfg.seed,
        "config": model.config.to_dict(),
        **efficiency(model, devices, batches),
        "threads": torch.get_num_threads(),
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_checkpoint(out / "model.pt", model, scene, extra={"metrics": metrics})
        write_json(out / "metrics.json", metrics)
        result.history.to_csv(out / "history.csv", index=False)
    return metrics


def build_student(scene: Scene, architecture: Architecture | str | Path, width: int = 64, max_len: int = 50, seed: int = 2020) -> Student:
    arch = architecture if isinstance(architecture, Architecture) else Architecture.load(architecture)
    seed_everything(seed)
    return Student.from_architecture(arch, scene.num_items, width, max_len)


def baseline_config(target_params: int, width: int = 64, dilations=(1, 4)) -> dict:
    """A hand-made small NextItNet at ``width`` whose non-embedding size is closest to
    ``target_params`` (whole repetitions of the dilation pattern; at least one)."""
    best = None
    for blocks in range(1, 17):
        cfg = {"embedding_size": width, "num_blocks": blocks, "dilations": list(dilations), "layer_every": 2}
        n = build_model("nextitnet", num_items=1, **cfg).num_params(embeddings=False)
        if best is None or abs(n - target_params) < best[0]:
            best = (abs(n - target_params), cfg)
    return best[1]


# ----------------------------------------------------------------------------- pipeline
def _aggregate(runs: list[dict]) -> dict:
    """Mean (and std) of each test metric over seeds; size/latency from the first seed."""
    first = runs[0]
    test = {}
    for key in first["test"]:
        vals = [r["test"][key] for r in runs]
        test[key] = float(np.mean(vals))
        test[f"{key}_std"] = float(np.std(vals))
    sampled = {k: float(np.mean([r["test_sampled100"][k] for r in runs])) for k in first.get("test_sampled100", {})}
    valid = {k: float(np.mean([r["valid"][k] for r in runs])) for k in first.get("valid", {})}
    keep = {k: v for k, v in first.items() if k.startswith(("params", "flops", "latency_"))}
    return {**keep, "test": test, "valid": valid, "test_sampled100": sampled, "seeds": [r["seed"] for r in runs],
            "train_seconds": float(np.mean([r["train_seconds"] for r in runs])), "epochs": [r["epochs"] for r in runs]}


def choose_default_beta(students: dict, teacher_params_no_embedding: int, max_param_ratio: float = 1 / 8) -> float:
    """The beta whose distilled student has the best mean validation NDCG@10 among those
    with at most ``max_param_ratio`` of the teacher's non-embedding parameters (the
    smallest student if none is that small). Validation, never test, picks it: the most
    accurate student that is small enough is what a user ships."""
    if not students:
        raise ConfigError("choose_default_beta: no students")
    small = {b: a for b, a in students.items() if a["params_no_embedding"] <= max_param_ratio * teacher_params_no_embedding}
    if not small:
        return min(students, key=lambda b: (students[b]["params_no_embedding"], b))
    return max(small, key=lambda b: (small[b]["valid"]["NDCG@10"], b))


def _row(name, role, beta, default, architecture, agg) -> dict:
    return {"name": name, "role": role, "beta": beta, "default": default, "architecture": architecture, **agg}


def run_pipeline(
    scene: Scene | str,
    out_dir: str | Path,
    teacher: str | Path | None = None,
    betas=(0.01, 0.1, 1.0),
    default_beta: float | None = None,
    seeds: int = 3,
    search_config: SearchConfig | None = None,
    distill_config: DistillConfig | None = None,
    teacher_train: TrainConfig | None = None,
    twins: str = "all",
    baseline: bool = True,
    devices=None,
    batches=(1, 256),
    data_dir=None,
    reuse: bool = True,
    max_param_ratio: float = 1 / 8,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Run AdaRec on one scene and write ``summary.csv`` / ``summary.json``.

    ``teacher`` is a checkpoint to reuse (else a NextItNet teacher of 16 residual blocks,
    width 128, is trained to ``out_dir/teacher``). One search per beta (``search/beta_*``);
    each derived student is distilled from scratch for each seed (``students/...``), its
    no-teacher twin too (``twins``: ``all`` betas, ``default`` only, or ``none``), and a
    hand-made NextItNet of the default student's size learns with the same KD (and, with
    ``twins="all"``, without a teacher as well: role ``baseline_no_kd``). Without a
    ``default_beta`` the default student is chosen on validation (:func:`choose_default_beta`:
    the best validation NDCG@10 among students with at most ``max_param_ratio`` of the
    teacher's non-embedding parameters), before the twins are trained. With
    ``reuse``, finished pieces (a ``metrics.json`` or ``architecture.json`` on disk) are
    read back instead of recomputed. ``log=None`` keeps it quiet. Returns the summary dict.
    """
    log = log or (lambda message: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scene = scene if isinstance(scene, Scene) else load_scene(scene, data_dir)
    betas = [float(b) for b in betas]
    if not betas:
        raise ConfigError("betas: give at least one value")
    default_beta = float(default_beta) if default_beta is not None else None
    if default_beta is not None and default_beta not in betas:
        raise ConfigError(f"default beta {default_beta} is not among --betas {betas}")
    if not 0.0 < max_param_ratio <= 1.0:
        raise ConfigError(f"max_param_ratio must be in (0, 1], got {max_param_ratio}")
    if twins not in ("all", "default", "none"):
        raise ConfigError(f"twins: expected all, default or none, got {twins!r}")
    scfg = search_config or SearchConfig()
    dcfg = distill_config or DistillConfig()
    devices = tuple(devices) if devices else (("cpu", "cuda") if torch.cuda.is_available() else ("cpu",))
    device = resolve_device(dcfg.train.device)
    _check_resume_settings(out / "settings.json", {
        "dataset": scene.name, "teacher": str(teacher) if teacher else None,
        "teacher_train": dataclasses.asdict(teacher_train) if teacher_train else None,
        "search": scfg.to_dict(), "distill": dataclasses.asdict(dcfg), "max_param_ratio": max_param_ratio}, reuse)
    stages: dict = {}

    def stage(name, t0):
        stages[name] = round(stages.get(name, 0.0) + time.perf_counter() - t0, 2)
        log(f"[adarec {scene.name}] {name}: {stages[name]:.1f}s")

    # 1. teacher
    t0 = time.perf_counter()
    if teacher is None:
        teacher_path = out / "teacher" / "model.pt"
        if not (reuse and teacher_path.exists()):
            from recnb.experiment import train_and_report

            tcfg = teacher_train or dataclasses.replace(dcfg.train, **TEACHER_TRAIN)
            train_and_report(scene, "nextitnet", dict(TEACHER_CONFIG), tcfg, out / "teacher", resume=reuse)
    else:
        teacher_path = Path(teacher)
    teacher_model, meta = load_checkpoint(teacher_path, device=str(device), scene=scene, what="--teacher")
    stage("teacher", t0)
    t0 = time.perf_counter()
    teacher_metrics_path = out / "teacher_metrics.json"
    if reuse and teacher_metrics_path.exists():
        tm = json.loads(teacher_metrics_path.read_text())
        tm["flops"] = model_flops(teacher_model)
        write_json(teacher_metrics_path, tm)
    else:
        tm = {"test": flatten(evaluate(teacher_model, scene, "test")),
              "test_sampled100": flatten(evaluate(teacher_model, scene, "test", protocol="sampled100")),
              **efficiency(teacher_model, devices, batches), "seed": (meta.get("extra") or {}).get("metrics", {}).get("seed"),
              "train_seconds": (meta.get("extra") or {}).get("metrics", {}).get("train_seconds", float("nan")), "epochs": None}
        write_json(teacher_metrics_path, tm)
    teacher_model.to(device)
    stage("teacher_eval_and_latency", t0)

    # 2. the teacher runs once per training window
    t0 = time.perf_counter()
    cache = TeacherCache(teacher_model, train_windows(scene, scfg.max_len), device=device)
    stage("teacher_cache", t0)
    log(f"[adarec {scene.name}] teacher cache: {cache.windows_computed} windows, {cache.nbytes() / 2**20:.0f} MiB")

    # 3. one search per beta
    archs = {}
    for beta in betas:
        t0 = time.perf_counter()
        sdir = out / "search" / f"beta_{beta:g}"
        if reuse and (sdir / "architecture.json").exists():
            archs[beta] = Architecture.load(sdir / "architecture.json")
        else:
            res = search(scene, teacher_model, dataclasses.replace(scfg, beta=beta), sdir, cache=cache, resume=reuse)
            archs[beta] = res.architecture
        stage(f"search_beta_{beta:g}", t0)
        log(f"[adarec {scene.name}] beta={beta:g}: {archs[beta].signature()} ({archs[beta].params(scfg.width)} cell params)")

    # 4. students with and without the teacher, per seed; the default beta, unless given,
    #    is chosen on validation among the students small enough (see choose_default_beta)
    rows = [_row(f"{teacher_model.name}-teacher", "teacher", None, False, None, {
        **{k: v for k, v in tm.items() if k.startswith(("params", "flops", "latency_"))},
        "test": {**tm["test"], **{f"{k}_std": 0.0 for k in tm["test"]}}, "test_sampled100": tm["test_sampled100"],
        "seeds": [tm.get("seed")], "train_seconds": tm.get("train_seconds"), "epochs": []})]

    def train_seeds(make_model: Callable[[int], SeqRecModel], run_dir: Path, use_teacher: bool) -> dict:
        """One model per seed (``run_dir/seed_<seed>``), aggregated over the seeds."""
        runs = []
        for s in range(seeds):
            seed = dcfg.train.seed + s
            cfg = dataclasses.replace(dcfg, train=dataclasses.replace(dcfg.train, seed=seed))
            runs.append(train_model(scene, make_model(seed), cfg, cache if use_teacher else None, run_dir / f"seed_{seed}",
                                    devices, batches, reuse))
        return _aggregate(runs)

    def distil_all(beta: float, use_teacher: bool) -> dict:
        t0 = time.perf_counter()
        agg = train_seeds(lambda seed: build_student(scene, archs[beta], dcfg.width, scfg.max_len, seed),
                          out / "students" / f"beta_{beta:g}" / ("kd" if use_teacher else "no_kd"), use_teacher)
        stage(f"{'student' if use_teacher else 'student_no_kd'}_beta_{beta:g}", t0)
        log(f"[adarec {scene.name}] student-beta{beta:g}{'' if use_teacher else '-no-kd'}: NDCG@10 "
            f"{agg['test']['NDCG@10']:.4f} ± {agg['test']['NDCG@10_std']:.4f} (valid {agg['valid']['NDCG@10']:.4f})")
        return agg

    students = {beta: distil_all(beta, True) for beta in betas}
    if default_beta is None:
        default_beta = choose_default_beta(students, tm["params_no_embedding"], max_param_ratio)
        log(f"[adarec {scene.name}] default beta {default_beta:g}: best validation NDCG@10 among students with "
            f"<= {max_param_ratio:g} of the teacher's non-embedding parameters")
    twin_betas = {"all": betas, "default": [default_beta], "none": []}[twins]
    twins_agg = {beta: distil_all(beta, False) for beta in twin_betas}
    for beta in betas:
        arch_path = str(out / "search" / f"beta_{beta:g}" / "architecture.json")
        rows.append(_row(f"student-beta{beta:g}", "student", beta, beta == default_beta, arch_path, students[beta]))
        if beta in twins_agg:
            rows.append(_row(f"student-beta{beta:g}-no-kd", "student_no_kd", beta, beta == default_beta, arch_path, twins_agg[beta]))
    default_student_params = students[default_beta]["params_no_embedding"]

    # 5. a hand-made NextItNet of the default student's size, same KD
    if baseline:
        t0 = time.perf_counter()
        bcfg = baseline_config(default_student_params, dcfg.width)
        blocks = f"{bcfg['num_blocks'] * len(bcfg['dilations'])}blocks"

        def small_nextitnet(seed: int) -> SeqRecModel:
            seed_everything(seed)
            return build_model("nextitnet", num_items=scene.num_items, max_len=scfg.max_len, **bcfg)

        agg = train_seeds(small_nextitnet, out / "baseline" / blocks, True)  # keyed by size: reuse never mixes sizes
        stage("baseline", t0)
        rows.append(_row(f"nextitnet-small-kd-{blocks}", "baseline", None, False, None, agg))
        log(f"[adarec {scene.name}] baseline: NDCG@10 {agg['test']['NDCG@10']:.4f}")
        if twins == "all":  # does the teacher help a hand-made conv student too?
            t0 = time.perf_counter()
            agg = train_seeds(small_nextitnet, out / "baseline" / f"{blocks}-no-kd", False)
            stage("baseline_no_kd", t0)
            rows.append(_row(f"nextitnet-small-{blocks}-no-kd", "baseline_no_kd", None, False, None, agg))
            log(f"[adarec {scene.name}] baseline without teacher: NDCG@10 {agg['test']['NDCG@10']:.4f}")

    summary = {
        "rows": rows,
        "scene": {k: (float(v) if isinstance(v, (int, float, np.number)) else str(v)) for k, v in scene.describe().items()},
        "dataset": scene.name,
        "protocol": "full ranking (test_sampled100: 100 sampled negatives)",
        "teacher": str(teacher_path),
        "betas": betas,
        "default_beta": default_beta,
        "architectures": {f"{b:g}": archs[b].signature() for b in betas},
        "stages_seconds": stages,
        "hardware": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                     "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "settings": {"search": scfg.to_dict(), "distill": {**{k: v for k, v in dataclasses.asdict(dcfg).items() if k != "train"},
                                                           "train": dataclasses.asdict(dcfg.train)}, "seeds": seeds, "twins": twins},
    }
    write_json(out / "summary.json", summary)
    summary_frame(rows).to_csv(out / "summary.csv", index=False)
    return summary


# settings that change no finished piece: where it runs, how it reports, how long a run may take
_FREE_SETTINGS = ("device", "progress", "cost_device", "cache_dir")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_resume_settings(path: Path, settings: dict, reuse: bool) -> None:
    """A resumed pipeline reuses finished pieces, so it must run with the settings that made
    them: changed ones are refused by name (start over with --force, or keep them)."""
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back
    if reuse and path.exists():
        changed = changed_settings(_flat(json.loads(path.read_text())), _flat(settings), _FREE_SETTINGS)
        if changed:
            raise ConfigError(f"--resume: {path.parent} was run with other settings ({', '.join(changed)}); "
                              "resume with the same ones or start over with --force")
    write_json(path, settings)


__all__ = [
    "TEACHER_CONFIG",
    "TEACHER_TRAIN",
    "DistillConfig",
    "baseline_config",
    "build_student",
    "choose_default_beta",
    "distillation_loss",
    "load_summary",
    "run_pipeline",
    "summary_frame",
    "train_model",
]
